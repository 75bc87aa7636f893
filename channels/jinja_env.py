"""The renderer's Jinja2 sandbox: what it changes of jinja2's own (no behaviour, only cost per render).

* Each template's globals a plain dict instead of a ChainMap over the environment's.
* Autoescaped outputs of plain strings escaped to plain strings, not ``Markup`` objects.
* Templates looked up by name (and the name of the template asking: ``extends``, ``include``)
  in a plain dict: the renderer never reloads templates (``auto_reload=False``).

And limits jinja2's sandbox lacks, on what one operation may add to memory (:data:`MAX_SIZE`
characters, items or bits): a payload's ``n`` in ``{{ "a" * n }}`` would otherwise take all memory,
a MemoryError the renderer must treat as the machine's and retry. ``*`` counts a repeated list's
text (``[s] * n`` is ``n`` references but ``n`` copies of ``s`` once joined, printed, ``tojson``-ed
or summed; ``{}.fromkeys(keys, s)`` likewise), ``**`` the bits of the power; ``%`` formatting (bytes too) its widths and its
arguments' text; ``str.format`` a running total of what its fields write; the ``str`` and
``bytes`` methods ``center``, ``ljust``, ``rjust``, ``zfill``, ``expandtabs``, ``replace``,
``join`` and ``translate``; the filters ``center``, ``indent``, ``format``, ``wordwrap``,
``replace``, ``join``, ``batch`` and ``slice`` (their fill value; ``slice``'s count too, a loop
``range`` would refuse), ``tojson`` (its ``indent``) and ``urlize`` (its ``target`` and ``rel``).
Where a ``Markup`` operand makes jinja2 escape the other after the call, the check counts the
escaped text. Each is checked from its arguments before it runs (:mod:`channels.template_limits`)
and refused with a :class:`~jinja2.exceptions.SecurityError` naming it: the renderer's
``template_error``. A check never builds the text it measures (a value that is not yet a string
is measured before a filter stringifies it), so no check raises MemoryError. ``lipsum`` is
removed from the globals. ``truncate`` never grows its input, so it needs no limit. Not bounded:
a result built by many operations each under the limit (a loop appending one long string to a
list that is then joined, a ``range(n)`` loop writing ``"x" * m``, both from the payload);
templates are the operator's, and a template that multiplies payload sizes so is the place to
bound them. Constant factors of an input already in memory are not counted either (escaping an
output, a repr's escapes: at most 10 characters for one).

tests/unit/channels/test_templates_equivalence.py renders every shipped template with this
environment and with a stock one and compares the text.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import jinja2
import markupsafe
from jinja2 import filters
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter

from channels.template_limits import (
    GROWING_METHODS,
    escape_growth,
    format_spec_size,
    fromkeys_size,
    indent_size,
    join_size,
    json_indent_size,
    method_size,
    printf_size,
    repeat_size,
    text_size,
    urlize_size,
    wordwrap_size,
)

__all__ = ["MAX_SIZE", "SandboxEnvironment", "escape_text"]

MAX_SIZE = MAX_RANGE
"""Items of a sequence, or bits of an int, that ``*`` and ``**`` may produce in a template, and
characters that one padding, formatting, replacing or joining operation may add (jinja2's own
limit on ``range``: 100000)."""

_FORMATS = frozenset({"format", "format_map"})
_TEXTS = (str, bytes)
_ESCAPING_METHODS = frozenset({"replace", "join"})  # Markup's: they escape their arguments


def _size(operator: str, left: Any, right: Any) -> int:
    """How large ``left operator right`` would be (characters, items or bits), without computing
    it. Pure. A list repeated counts the text of its items: ``[s] * n`` is ``n`` references, but
    ``n`` copies of ``s`` for ``join``, ``string``, ``tojson`` or ``~``."""
    if operator == "*":
        if isinstance(right, int) and not isinstance(left, int):
            return repeat_size(left, right, MAX_SIZE)
        return repeat_size(right, left, MAX_SIZE)
    if isinstance(left, int) and isinstance(right, int) and right > 0:  # **: bits of the power
        return abs(left).bit_length() * right
    return 0


def _check(what: str, size: int, unit: str = "characters") -> None:
    if size > MAX_SIZE:
        raise SecurityError(f"{what} would add more than {MAX_SIZE} {unit}")


def _text(what: str, value: Any) -> str:
    """``value`` as the filter will see it, a string: one that is not yet is measured first (a list
    referencing one long string many times), so no check builds a text past the limit."""
    if isinstance(value, str):
        return value
    _check(what, text_size(value, MAX_SIZE))
    return str(value)


def _escaped(*values: Any) -> bool:
    return any(hasattr(v, "__html__") for v in values)


def _center(value: Any, width: int = 80) -> str:
    _check("center filter", width if isinstance(width, int) else 0)
    return filters.do_center(_text("center filter", value), width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = _text("indent filter", s)
    grows = escape_growth(text) if _escaped(width) and not _escaped(s) else 0  # Markup + line
    _check("indent filter", indent_size(text, width) + grows)
    return filters.do_indent(s, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check(
        "format filter", printf_size(_text("format filter", value), kwargs or args, _escaped(value), MAX_SIZE)
    )
    return filters.do_format(value, *args, **kwargs)


@jinja2.pass_environment
def _wordwrap(env: jinja2.Environment, s: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
    wrapstring = args[1] if len(args) > 1 else kwargs.get("wrapstring")
    text = _text("wordwrap filter", s)
    wrap = env.newline_sequence if wrapstring is None else _text("wordwrap filter", wrapstring)
    _check("wordwrap filter", wordwrap_size(text, width, wrap))
    return filters.do_wordwrap(env, s, width, *args, **kwargs)


@jinja2.pass_eval_context
def _replace(ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
    # Each operand made text first (measured if it is not yet), then jinja2's choice of what to
    # escape, made here so that the check sees the escaped text (an "&" becomes "&amp;", where
    # "amp" occurs); do_replace then finds the operands already escaped.
    s, old, new = (v if _escaped(v) else _text("replace filter", v) for v in (s, old, new))
    if ctx.autoescape and (_escaped(old) or (_escaped(new) and not _escaped(s))):
        s = markupsafe.escape(s)
    if ctx.autoescape and _escaped(s):
        old, new = markupsafe.escape(old), markupsafe.escape(new)
    args = (str(old), str(new)) if count is None else (str(old), str(new), count)
    _check("replace filter", method_size("replace", str(s), args, {}))
    return filters.do_replace(ctx, s, old, new, count)


@jinja2.pass_eval_context
def _join(ctx: EvalContext, value: Any, d: str = "", attribute: str | int | None = None) -> str:
    if attribute is not None:
        value, attribute = map(filters.make_attrgetter(ctx.environment, attribute), value), None
    if not isinstance(value, (list, tuple, str)):
        value = list(value)  # as join does: its items are counted before they are joined
    # a string's characters are never Markup: only a separator that is makes them escaped
    escaped = ctx.autoescape and (
        _escaped(d) or (not isinstance(value, str) and any(_escaped(v) for v in value))
    )
    _check("join filter", join_size(_text("join filter", d), value, escaped, MAX_SIZE))
    return filters.sync_do_join(ctx, value, d, attribute)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    if fill_with is not None:  # the last batch padded to linecount
        _check("batch filter", repeat_size([fill_with], linecount, MAX_SIZE))
    return filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    # one list per slice, however few the items: the loop range() would refuse
    _check("slice filter", slices if isinstance(slices, int) else 0, "slices")
    if fill_with is not None:
        _check("slice filter", repeat_size([fill_with], slices, MAX_SIZE))
    return filters.sync_do_slice(value, slices, fill_with)


@jinja2.pass_eval_context
def _tojson(ctx: EvalContext, value: Any, indent: int | str | None = None) -> Any:
    _check("tojson filter", json_indent_size(value, indent, MAX_SIZE))
    return filters.do_tojson(ctx, value, indent)  # type: ignore[arg-type]  # json takes a str too


@jinja2.pass_eval_context
def _urlize(ctx: EvalContext, value: str, *args: Any, **kwargs: Any) -> str:
    target = args[2] if len(args) > 2 else kwargs.get("target")
    rel = args[3] if len(args) > 3 else kwargs.get("rel")
    _check("urlize filter", urlize_size(_text("urlize filter", value), target, rel))
    return filters.do_urlize(ctx, value, *args, **kwargs)


def _capped_filters() -> dict[str, Callable[..., Any]]:
    """jinja2's growing filters, each checked before it runs (their signatures are jinja2's). Where
    a ``Markup`` operand makes jinja2 escape the other after the check, the check counts it."""
    return {
        "center": _center,
        "indent": _indent,
        "format": _format,
        "wordwrap": _wordwrap,
        "replace": _replace,
        "join": _join,
        "batch": _batch,
        "slice": _slice,
        "tojson": _tojson,
        "urlize": _urlize,
    }


class _CappedFormatter(SandboxedFormatter):
    """``str.format``'s fields, checked before each is formatted (the spec arrives with its nested
    fields already filled in: ``{:>{n}}``) against what the fields before it wrote: a running total
    per call, so that ``("{0}" * 30000).format(s)`` is refused at the field that crosses the limit."""

    _growth = 1  # what escaping multiplies a value's text by
    _written = 0

    def vformat(self, format_string: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        self._written = 0
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        size = self._written + self._growth * text_size(value, MAX_SIZE)
        if format_spec:
            size += format_spec_size(format_spec)
        if size > MAX_SIZE:  # the name built only to refuse
            _check(f"str.format field {{:{format_spec[:20]}}}", size)
        out = super().format_field(value, format_spec)
        self._written += len(out)
        return out


class _CappedEscapeFormatter(_CappedFormatter, SandboxedEscapeFormatter):
    _growth = 5


def _escaped_str(value: str) -> str:
    return str(markupsafe.escape(value))


# markupsafe's escaping of a str (its C speed-up when built), as its own escape() calls it (3.x).
# It is not public API: a markupsafe without it gets the same text through escape().
_escape_inner: Callable[[str], str] = getattr(markupsafe, "_escape_inner", _escaped_str)


def escape_text(value: Any) -> str:
    """What compiled templates call to escape an output: a plain string's escaped text as a plain
    string. markupsafe's ``escape`` wraps it in a ``Markup`` (a Python-level ``__new__``, a quarter
    of an email's rendering); the generated code only ever yields that value into the output, which
    is joined into a ``str`` (and a buffered block is wrapped in ``Markup`` after the join), so
    the text rendered is the same. Anything else (``Markup``, objects with ``__html__``, numbers)
    goes through markupsafe."""
    if type(value) is str:
        return _escape_inner(value)
    return markupsafe.escape(value)


class _Template(jinja2.Template):
    """A compiled template whose module calls :func:`escape_text` for autoescaped outputs."""

    @classmethod
    def _from_namespace(
        cls,
        environment: jinja2.Environment,
        namespace: MutableMapping[str, Any],
        globals: MutableMapping[str, Any],
    ) -> jinja2.Template:
        namespace["escape"] = escape_text  # the module's global, read by its render functions at call time
        return super()._from_namespace(environment, namespace, globals)


class SandboxEnvironment(SandboxedEnvironment):
    """The sandbox, with each template's globals a plain dict (a snapshot) instead of jinja2's
    ChainMap over the environment's: every render builds a context, which copies the globals'
    keys into a set, and iterating a ChainMap costs about a microsecond where a dict costs a
    tenth of that, three times per email. The environment's globals are set once, before any
    template is loaded, so a snapshot sees the same values."""

    template_class = _Template
    intercepted_binops = frozenset({"*", "**", "%"})  # compiled to call_binop

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            if isinstance(left, _TEXTS):  # bytes as latin-1: one character per byte
                fmt = left if isinstance(left, str) else left.decode("latin-1")
                _check("% formatting", printf_size(fmt, right, _escaped(left), MAX_SIZE))
        elif _size(operator, left, right) > MAX_SIZE:
            raise SecurityError(
                f"the result of {operator} would exceed {MAX_SIZE} (characters, items or bits)"
            )
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call a template makes: a ``str`` or ``bytes`` method that pads or repeats is
        checked first (a ``Markup``'s ``replace`` and ``join`` against their escaped arguments)."""
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, _TEXTS) and (name := getattr(__obj, "__name__", "")) in GROWING_METHODS:
            if name == "join" and args and _escaped(owner):
                size = join_size(owner, args[0], True, MAX_SIZE)
            else:
                if name in _ESCAPING_METHODS and _escaped(owner):
                    args = tuple(markupsafe.escape(a) if isinstance(a, str) else a for a in args)
                size = method_size(name, owner, args, kwargs, MAX_SIZE)
            _check(f"{type(owner).__name__}.{name}", size)
        elif owner is dict and args and getattr(__obj, "__name__", "") == "fromkeys":
            # {}.fromkeys(range(n), s): one reference per key, like [s] * n
            _check("dict.fromkeys", fromkeys_size(args[0], args[1] if len(args) > 1 else None, MAX_SIZE))
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """jinja2's (3.1) wrapper of a string's ``format``/``format_map``, with a formatter that
        checks each field: jinja2 builds its formatter inside this method, out of reach."""
        if (
            not isinstance(value, types.MethodType | types.BuiltinMethodType)
            or value.__name__ not in _FORMATS
        ):
            return None
        f_self = value.__self__
        if not isinstance(f_self, str):
            return None
        formatter: SandboxedFormatter
        if isinstance(f_self, markupsafe.Markup):
            formatter = _CappedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _CappedFormatter(self)
        str_type, is_format_map = type(f_self), value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.update(_capped_filters())
        # lipsum(n) writes n paragraphs of up to 100 words each: nothing a notification needs
        del self.globals["lipsum"]
        # Every rendering of a template that extends a layout asks for the layout: jinja2 joins
        # the names, then looks in its LRU cache (a weak reference, a lock and a reordering per
        # hit). With auto_reload off a name's template never changes, so the first answer is kept.
        self._loaded: dict[tuple[str, str | None], jinja2.Template] = {}

    def get_template(
        self,
        name: str | jinja2.Template,
        parent: str | None = None,
        globals: MutableMapping[str, Any] | None = None,
    ) -> jinja2.Template:
        if globals or not isinstance(name, str) or self.auto_reload:
            return super().get_template(name, parent, globals)
        template = self._loaded.get((name, parent))
        if template is None:
            template = self._loaded[name, parent] = super().get_template(name, parent)
        return template

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}
