"""How large a template operation's result could be, read from its arguments before it runs. Pure.

The sandbox (:mod:`channels.jinja_env`) refuses an operation whose size here exceeds its limit, so a
width taken from a payload (``{{ name|center(n) }}``, ``{{ "%*s" % (n, "") }}``) fails the message
as a ``template_error`` instead of allocating gigabytes in a channel consumer. The sizes count what
the operation adds on top of its inputs (padding, digits, repeated separators): the inputs
themselves are already in memory. Each function is an upper bound, never an estimate from below
(tests/unit/channels/test_template_limits.py checks them against the real operations).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "GROWING_METHODS",
    "format_spec_size",
    "indent_size",
    "join_size",
    "method_size",
    "printf_size",
    "wordwrap_size",
]

_HUGE = 10**18  # a number with more digits than any width Python would accept
_NUMERIC = frozenset("diouxXeEfFgG")  # conversions whose precision is digits written, not a cut
_DIGITS = re.compile(r"\d+")
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
GROWING_METHODS = _PADDING_METHODS | {"expandtabs", "replace", "join"}
"""The ``str`` methods :func:`method_size` sizes (for every other one it is 0)."""


def _int(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else _HUGE  # int() of 5,000 digits raises on 3.11


def _star(positional: tuple[Any, ...], index: int) -> int:
    value = positional[index] if index < len(positional) else 0
    return abs(value) if isinstance(value, int) else 0  # not an int: Python's own TypeError follows


def printf_size(fmt: str, args: Any) -> int:
    """``fmt % args``: the widths of its conversions plus the precisions of its numeric ones (a
    ``*`` read from ``args`` as Python reads it). ``"%.3s"`` cuts, so its precision does not count."""
    positional = args if isinstance(args, tuple) else (args,)
    total, i, n, arg = 0, 0, len(fmt), 0
    while (i := fmt.find("%", i)) >= 0:
        i += 1
        keyed = i < n and fmt[i] == "("
        if keyed:  # a mapping key may hold balanced parentheses: "%(a(b))s"
            depth, i = 1, i + 1
            while i < n and depth:
                depth += {"(": 1, ")": -1}.get(fmt[i], 0)
                i += 1
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
        if conversion != "%" and not keyed:
            arg += 1
    return total


def format_spec_size(spec: str) -> int:
    """``format(value, spec)`` (``str.format``'s fields): every number in the spec counted, width and
    precision alike. Coarse on purpose: a type's own mini-language (a date's ``%Y``) has no
    numbers to count, and the standard one's grammar need not be parsed to bound it."""
    return sum(_int(d) for d in _DIGITS.findall(spec))


def join_size(separator: str, items: Any) -> int:
    """``separator.join(items)`` or the ``join`` filter: the separators, when ``items`` has a length
    (a generator's items are built one by one, each under the limits)."""
    try:
        count = len(items)
    except TypeError:
        return 0
    return max(count - 1, 0) * len(separator)


def method_size(name: str, text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """A ``str`` method's padding (``center``, ``ljust``, ``rjust``, ``zfill``: the width),
    ``expandtabs``'s spaces (the tab size per tab), ``replace``'s replacements (each occurrence
    the new text's length) or ``join``'s separators; 0 for every other method."""
    if name in _PADDING_METHODS:
        width = args[0] if args else kwargs.get("width", 0)
        return width if isinstance(width, int) else 0
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        return text.count("\t") * size if isinstance(size, int) else 0
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        occurrences = text.count(args[0])  # "" occurs len(text) + 1 times, as replace counts it
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            occurrences = min(occurrences, args[2])
        return occurrences * len(args[1])
    if name == "join" and args:
        return join_size(text, args[0])
    return 0


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
