"""How large a template operation's result could be, read from its arguments before it runs. Pure.

The sandbox (:mod:`channels.jinja_env`) refuses an operation whose size here exceeds its limit, so a
width taken from a payload (``{{ name|center(n) }}``, ``{{ "%*s" % (n, "") }}``) fails the message
as a ``template_error`` instead of allocating gigabytes in a channel consumer. The sizes count what
the operation adds on top of its inputs (padding, digits, repeated separators): the inputs
themselves are already in memory. Each function is an upper bound, never an estimate from below
(tests/unit/channels/test_template_limits.py checks them against the real operations), with one
exception said where it applies: the text of a value other than a string (:func:`text_size`) is
counted for characters that print as themselves (a repr escaping others writes up to 10 for one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2.utils import Namespace

__all__ = [
    "GROWING_METHODS",
    "escape_growth",
    "format_spec_size",
    "fromkeys_size",
    "indent_size",
    "join_size",
    "json_indent_size",
    "method_size",
    "printf_size",
    "repeat_size",
    "text_size",
    "urlize_size",
    "wordwrap_size",
]

_HUGE = 10**18  # a number with more digits than any width Python would accept
_NUMERIC = frozenset("diouxXeEfFgG")  # conversions whose precision is digits written, not a cut
_DIGITS = re.compile(r"\d+")
_WORDS = re.compile(r"\S+")
_CONTAINERS = (list, tuple, set, frozenset, dict)
_DEPTH = 100  # deeper than any JSON payload a consumer accepts; below it a container counts its brackets
_SPECIAL = "&<>\"'"  # what markupsafe escapes, each to at most 5 characters
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
GROWING_METHODS = _PADDING_METHODS | {"expandtabs", "replace", "join", "translate"}
"""The ``str`` methods :func:`method_size` sizes (for every other one it is 0)."""


def _int(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else _HUGE  # int() of 5,000 digits raises on 3.11


def _star(positional: tuple[Any, ...], index: int) -> int:
    value = positional[index] if index < len(positional) else 0
    return abs(value) if isinstance(value, int) else 0  # not an int: Python's own TypeError follows


def printf_size(fmt: str, args: Any, escaped: bool = False, limit: int = _HUGE) -> int:
    """``fmt % args``: the widths of its conversions, the precisions of its numeric ones (a ``*``
    read from ``args`` as Python reads it) and the text of every argument written (its
    :func:`text_size`; five times that when ``escaped``: a ``Markup`` format escapes its arguments).
    ``"%.3s"`` cuts, so its precision does not count, but its argument is counted whole. Stops
    once past ``limit``."""
    positional = args if isinstance(args, tuple) else (args,)
    total, i, n, arg = 0, 0, len(fmt), 0
    while total <= limit and (i := fmt.find("%", i)) >= 0:
        i += 1
        keyed = i < n and fmt[i] == "("
        if keyed:
            key, i = _key(fmt, i + 1)
        while i < n and fmt[i] in "-+ #0":
            i += 1
        width = precision = 0
        if i < n and fmt[i] == "*":
            width, i, arg = _star(positional, arg), i + 1, arg + 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            width = _int(fmt[start:i]) if i > start else 0
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                precision, i, arg = _star(positional, arg), i + 1, arg + 1
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                precision = _int(fmt[start:i]) if i > start else 0
        while i < n and fmt[i] in "hlL":
            i += 1
        conversion = fmt[i] if i < n else ""
        i += 1
        total += width + (precision if conversion in _NUMERIC else 0)
        if conversion in ("%", "") or total > _HUGE:
            continue  # "%" writes itself; a format cut short is Python's ValueError
        if keyed:
            value = args.get(key, "") if isinstance(args, Mapping) else ""  # else Python's TypeError
        else:
            value, arg = (positional[arg] if arg < len(positional) else ""), arg + 1
        total += (5 if escaped else 1) * _converted_size(conversion, value, limit)
    return total


def _key(fmt: str, i: int) -> tuple[str, int]:
    """A mapping key from after its "(" to its ")", which may hold balanced parentheses: "%(a(b))s"."""
    depth, start = 1, i
    while i < len(fmt) and depth:
        depth += {"(": 1, ")": -1}.get(fmt[i], 0)
        i += 1
    return fmt[start : i - 1], i


def _converted_size(conversion: str, value: Any, limit: int) -> int:
    # "%f" of 1e308 writes 309 digits; "%r" a repr, which a list's text holds for its item
    size = _repr_size([value], limit + 15) - 15 if conversion in ("r", "a") else text_size(value, limit)
    return size + (310 if isinstance(value, float) else 0)


def format_spec_size(spec: str) -> int:
    """``format(value, spec)`` (``str.format``'s fields): every number in the spec counted, width and
    precision alike. Coarse on purpose: a type's own mini-language (a date's ``%Y``) has no
    numbers to count, and the standard one's grammar need not be parsed to bound it."""
    return sum(_int(d) for d in _DIGITS.findall(spec))


def join_size(separator: str | bytes, items: Any, escaped: bool = False, limit: int = _HUGE) -> int:
    """``separator.join(items)`` or the ``join`` filter, when ``items`` has a length (a generator's
    items are built one by one, each under the limits): the separators, the text of the items that
    are not strings (the filter writes ``str(item)``) and, when ``escaped`` (a ``Markup`` joins), what
    escaping adds to the string items. Stops once past ``limit``."""
    try:
        count = len(items)
    except TypeError:
        return 0
    total = max(count - 1, 0) * len(separator)
    if isinstance(items, str | bytes):
        return total + (escape_growth(items) if escaped and isinstance(items, str) else 0)
    for item in items:
        if isinstance(item, str):
            total += escape_growth(item) if escaped and not hasattr(item, "__html__") else 0
        elif not isinstance(item, bytes):  # bytes.join takes bytes; str.join refuses them
            total += text_size(item, limit)
        if total > limit:
            break
    return total


def escape_growth(text: str) -> int:
    """What markupsafe's escaping adds to ``text``: at most 4 characters per special character."""
    return 4 * sum(text.count(c) for c in _SPECIAL)


def text_size(value: Any, limit: int = _HUGE) -> int:
    """``len(str(value))`` of a value already in memory, without building the text: a string's
    length; a container's repr counted item by item (a string's quotes, separators, an int's
    digits), for characters that print as themselves. Stops soon after ``limit`` (its result is
    then only known to exceed it), so the cost stays within ``limit`` items however many times one
    list is referenced."""
    if isinstance(value, str):
        return len(value)
    return _repr_size([value], limit) - 15  # the outer list's count


def _repr_size(value: list[Any], limit: int) -> int:
    """The repr of ``value`` plus 13 (its outer brackets count 15). Every item waiting on the stack
    counts its least (3) already, so the stack never holds more items than ``limit`` allows."""
    total, stack = 0, list[tuple[Any, int]]([(value, 0)])
    while stack and total + 3 * len(stack) <= limit:
        item, depth = stack.pop()
        if type(item) is str:
            total += len(item) + 4  # quotes and ", "
        elif isinstance(item, str | bytes):  # b'': 5; Markup(''): 12
            total += len(item) + 12
        elif isinstance(item, bool) or item is None:
            total += 7
        elif isinstance(item, int):
            total += item.bit_length() * 31 // 100 + 4  # digits (log10 2 < 0.31), sign, ", "
        elif isinstance(item, float):
            total += 26  # "-1.2345678901234567e-308, "
        elif isinstance(item, Namespace) and depth < _DEPTH:  # <Namespace {...}>: its attributes
            total += 12
            stack.append((object.__getattribute__(item, "_Namespace__attrs"), depth + 1))
        elif isinstance(item, _CONTAINERS) and depth < _DEPTH:
            total += 15  # brackets (frozenset({}) 13) and ", "
            waiting = len(stack) + len(item) * (2 if isinstance(item, dict) else 1)
            if total + 3 * waiting > limit:
                return total + 3 * waiting
            children = (*item.keys(), *item.values()) if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        else:
            total += 64  # another object (a date): its repr, about
    return total + 3 * len(stack)


def fromkeys_size(keys: Any, value: Any, limit: int = _HUGE) -> int:
    """``dict.fromkeys(keys, value)``: ``value`` once per key, as :func:`repeat_size` counts it."""
    try:
        count = len(keys)
    except TypeError:
        return 0  # a generator's keys are built one by one, each under the limits
    return repeat_size([value], count, limit)


def repeat_size(seq: Any, n: Any, limit: int = _HUGE) -> int:
    """``seq * n`` for a string, bytes, list or tuple: the text it stands for. A string's is its
    length; a list's the text of its items (what ``join``, ``string`` or ``tojson`` would write from
    it: ``[s] * n`` is one reference ``n`` times, but ``n`` copies of ``s`` once joined)."""
    if not isinstance(n, int) or n <= 0:
        return 0
    if isinstance(seq, str | bytes):
        return len(seq) * n
    if isinstance(seq, list | tuple):
        return 2 + n * max(_repr_size([*seq], limit // n + 16) - 15, 0)  # one pair of brackets
    return 0


def method_size(
    name: str, text: str | bytes, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int = _HUGE
) -> int:
    """A ``str`` (or ``bytes``) method's padding (``center``, ``ljust``, ``rjust``, ``zfill``: the
    width), ``expandtabs``'s spaces (the tab size per tab), ``replace``'s replacements (each
    occurrence the new text's length), ``join``'s separators or ``translate``'s replacements (each
    character the longest text the table maps to); 0 for every other method. ``join`` stops counting
    once past ``limit``."""
    if name in _PADDING_METHODS:
        width = args[0] if args else kwargs.get("width", 0)
        return width if isinstance(width, int) else 0
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        tab: Any = "\t" if isinstance(text, str) else b"\t"
        tabs = text.count(tab)
        return tabs * size if isinstance(size, int) else 0
    if name == "replace" and len(args) >= 2 and all(_same(a, text) for a in args[:2]):
        occurrences = text.count(args[0])  # "" occurs len(text) + 1 times, as replace counts it
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            occurrences = min(occurrences, args[2])
        return occurrences * len(args[1])
    if name == "join" and args:
        return join_size(text, args[0], limit=limit)
    if name == "translate" and args and isinstance(text, str):
        return len(text) * _longest_mapped(args[0])
    return 0


def _same(a: Any, text: str | bytes) -> bool:
    return isinstance(a, str) if isinstance(text, str) else isinstance(a, bytes)


def _longest_mapped(table: Any) -> int:
    """The longest text ``str.translate`` may write for one character (any table but a mapping or
    a sequence: as long as the limit, refused)."""
    if isinstance(table, str):
        return 1
    if isinstance(table, Mapping):
        table = table.values()
    elif not isinstance(table, Sequence):
        return _HUGE
    return max((len(v) if isinstance(v, str) else 1 for v in table), default=1)


def json_indent_size(value: Any, indent: Any, limit: int = _HUGE) -> int:
    """``json.dumps(value, indent=indent)``: the newlines and indentation it adds, at most one line
    per value (two per container) indented ``depth`` times. Stops soon after ``limit``."""
    if indent is None:
        return 0  # one line
    each = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    nodes, deepest, stack = 0, 0, [(value, 0)]
    while stack and 2 * nodes * (deepest * max(each, 0) + 1) <= limit:
        item, depth = stack.pop()
        nodes, deepest = nodes + 1, max(deepest, depth + 1)
        if isinstance(item, dict | list | tuple) and depth < _DEPTH:
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return 2 * (nodes + len(stack)) * (deepest * max(each, 0) + 1)


def urlize_size(text: str, target: Any, rel: Any) -> int:
    """The ``urlize`` filter's ``target`` and ``rel`` attributes, escaped (five characters for one
    at most), on every link: at most one per word."""
    attributes = sum(5 * len(a) + 10 for a in (target, rel) if isinstance(a, str) and a)
    return sum(1 for _ in _WORDS.finditer(text)) * attributes if attributes else 0


def indent_size(text: str, width: Any) -> int:
    """The ``indent`` filter: its indentation (a number of spaces or a string) on every line."""
    each = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    return (len(text.splitlines()) + 1) * max(each, 0)  # splitlines: "\r", "\x0b"... end lines too


def wordwrap_size(text: str, width: Any, wrapstring: str) -> int:
    """The ``wordwrap`` filter: the separators it joins lines with. Two consecutive lines of a
    paragraph together hold more than ``width`` characters (else they were one), so a paragraph of
    ``k`` characters has at most ``2k // width + 1`` lines; a huge width is one line per paragraph.
    A long word cut at ``width`` adds no characters, only separators."""
    if not isinstance(width, int) or width < 1:
        return 0  # textwrap refuses it
    lines = 2 * len(text) // width + 2 * (len(text.splitlines()) + 1)
    return lines * len(wrapstring)
