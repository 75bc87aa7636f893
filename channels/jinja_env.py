"""The renderer's Jinja2 sandbox: what it changes of jinja2's own (no behaviour, only cost per render).

* Each template's globals a plain dict instead of a ChainMap over the environment's.
* Autoescaped outputs of plain strings escaped to plain strings, not ``Markup`` objects.
* Templates looked up by name (and the name of the template asking: ``extends``, ``include``)
  in a plain dict: the renderer never reloads templates (``auto_reload=False``).

And one limit jinja2's sandbox lacks: ``*`` and ``**`` cannot build a string, list or number
larger than :data:`MAX_SIZE` (a payload's ``n`` in ``{{ "a" * n }}`` would otherwise take all
memory, a MemoryError the renderer must treat as the machine's and retry). Not covered: ``%``
formatting with a payload's width (``"%*s" % (n, "")``) and the ``center``/``indent`` filters with
a payload's width can still build a huge string; templates are the operator's, so a template that
takes widths from a payload is the place to bound them.

tests/unit/channels/test_templates_equivalence.py renders every shipped template with this
environment and with a stock one and compares the text.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import jinja2
import markupsafe
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, SandboxedEnvironment

__all__ = ["MAX_SIZE", "SandboxEnvironment", "escape_text"]

MAX_SIZE = MAX_RANGE
"""Items of a sequence, or bits of an int, that ``*`` and ``**`` may produce in a template
(jinja2's own limit on ``range``: 100000)."""

_SEQUENCES = (str, list, tuple, bytes)


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
    intercepted_binops = frozenset({"*", "**"})  # compiled to call_binop

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if _size(operator, left, right) > MAX_SIZE:
            raise SecurityError(f"the result of {operator} would exceed {MAX_SIZE} (items or bits)")
        return super().call_binop(context, operator, left, right)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
