"""The renderer's Jinja2 sandbox: what it changes of jinja2's own (no behaviour, only cost per render).

* Each template's globals a plain dict instead of a ChainMap over the environment's.
* Autoescaped outputs of plain strings escaped to plain strings, not ``Markup`` objects.
* Templates looked up by name (and the name of the template asking: ``extends``, ``include``)
  in a plain dict: the renderer never reloads templates (``auto_reload=False``).

And limits jinja2's sandbox lacks, on what one operation may add to memory: ``*`` and ``**``
cannot build a string, list or number larger than :data:`MAX_SIZE` (a payload's ``n`` in
``{{ "a" * n }}`` would otherwise take all memory, a MemoryError the renderer must treat as the
machine's and retry), and neither can the operations that pad to a width or repeat a separator:
``%`` formatting and the ``format`` filter (``"%*d" % (n, 1)``, ``"%.{n}f"``), ``str.format``
fields (``"{:>{n}}"``), the methods ``center``, ``ljust``, ``rjust``, ``zfill`` and
``expandtabs``, the filters ``center``, ``indent`` and ``wordwrap`` (its ``wrapstring``), and
``replace`` and ``join`` (method and filter) with a long text or separator over a long string.
Each is checked from its arguments before it runs (:mod:`channels.template_limits`) and refused
with a :class:`~jinja2.exceptions.SecurityError` naming it: the renderer's ``template_error``.
``truncate`` never grows its input, so it needs no limit. Not bounded: a result built by many
operations each under the limit (a ``range(n)`` loop writing ``"x" * m`` each time, both from the
payload); templates are the operator's, and a template that multiplies payload sizes so is the
place to bound them.

tests/unit/channels/test_templates_equivalence.py renders every shipped template with this
environment and with a stock one and compares the text.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, MutableMapping
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
    format_spec_size,
    indent_size,
    join_size,
    method_size,
    printf_size,
    wordwrap_size,
)

__all__ = ["MAX_SIZE", "SandboxEnvironment", "escape_text"]

MAX_SIZE = MAX_RANGE
"""Items of a sequence, or bits of an int, that ``*`` and ``**`` may produce in a template, and
characters that one padding, formatting, replacing or joining operation may add (jinja2's own
limit on ``range``: 100000)."""

_SEQUENCES = (str, list, tuple, bytes)
_FORMATS = frozenset({"format", "format_map"})


def _size(operator: str, left: Any, right: Any) -> int:
    """How large ``left operator right`` would be (items or bits), without computing it. Pure."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(n, int):
                return len(seq) * n
        return 0
    if isinstance(left, int) and isinstance(right, int) and right > 0:  # **: bits of the power
        return abs(left).bit_length() * right
    return 0


def _check(what: str, size: int) -> None:
    if size > MAX_SIZE:
        raise SecurityError(f"{what} would add more than {MAX_SIZE} characters")


def _capped_filters(environment: jinja2.Environment) -> dict[str, Callable[..., Any]]:
    """jinja2's growing filters, each checked before it runs (their signatures are jinja2's)."""
    newline = environment.newline_sequence

    def center(value: Any, width: int = 80) -> str:
        _check("center filter", width if isinstance(width, int) else 0)
        return filters.do_center(value, width)

    def indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        _check("indent filter", indent_size(str(s), width))
        return filters.do_indent(s, width, first, blank)

    def format_(value: Any, *args: Any, **kwargs: Any) -> str:
        _check("format filter", printf_size(str(value), kwargs or args))
        return filters.do_format(value, *args, **kwargs)

    @jinja2.pass_environment
    def wordwrap(env: jinja2.Environment, s: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
        wrapstring = args[1] if len(args) > 1 else kwargs.get("wrapstring")
        _check(
            "wordwrap filter",
            wordwrap_size(str(s), width, newline if wrapstring is None else str(wrapstring)),
        )
        return filters.do_wordwrap(env, s, width, *args, **kwargs)

    @jinja2.pass_eval_context
    def replace(ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
        args = (str(old), str(new)) if count is None else (str(old), str(new), count)
        _check("replace filter", method_size("replace", str(s), args, {}))
        return filters.do_replace(ctx, s, old, new, count)

    @jinja2.pass_eval_context
    def join(ctx: EvalContext, value: Any, d: str = "", attribute: str | int | None = None) -> str:
        _check("join filter", join_size(str(d), value))
        return filters.sync_do_join(ctx, value, d, attribute)

    return {
        "center": center,
        "indent": indent,
        "format": format_,
        "wordwrap": wordwrap,
        "replace": replace,
        "join": join,
    }


class _CappedFormatter(SandboxedFormatter):
    """``str.format``'s fields, each checked before it is formatted (the spec arrives with its
    nested fields already filled in: ``{:>{n}}``)."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if format_spec and format_spec_size(format_spec) > MAX_SIZE:  # the name built only to refuse
            _check(f"str.format field {{:{format_spec[:20]}}}", format_spec_size(format_spec))
        return super().format_field(value, format_spec)


class _CappedEscapeFormatter(_CappedFormatter, SandboxedEscapeFormatter):
    pass


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
            if isinstance(left, str):
                _check("% formatting", printf_size(left, right))
        elif _size(operator, left, right) > MAX_SIZE:
            raise SecurityError(f"the result of {operator} would exceed {MAX_SIZE} (items or bits)")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call a template makes: a ``str`` method that pads or repeats is checked first."""
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and (name := getattr(__obj, "__name__", "")) in GROWING_METHODS:
            _check(f"str.{name}", method_size(name, owner, args, kwargs))
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
        self.filters.update(_capped_filters(self))
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
