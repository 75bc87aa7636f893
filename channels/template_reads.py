"""What a channel's templates read, found once from their source: the names they look up, across
every template they extend, include or import, and whether their output is a function of those.

The renderer uses it twice: to know whether a message's templates read ``recipient`` (its custom
properties are worth a lookup), and to reuse a rendering: templates whose output depends only on
the variables they read render the same content for two messages with the same payload and the
same message fields among those read (a broadcast: one payload, many recipients).

Not a function of its variables: a template that uses ``random`` or ``lipsum``, or whose
extends/include/import target is computed at run time (it cannot be followed). A template that
cannot be parsed or found is left to rendering, which reports it; it is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from jinja2 import meta, nodes

__all__ = ["Reads", "template_reads"]

# Globals and filters whose output changes from one call to the next.
_RANDOM_NAMES = frozenset({"lipsum"})
_RANDOM_FILTERS = frozenset({"random"})


@dataclass(frozen=True, slots=True)
class Reads:
    names: frozenset[str]  # every variable looked up (not the globals), across the whole chain
    pure: bool  # the output is a function of those names' values (safe to reuse)


def template_reads(env: jinja2.Environment, names: tuple[str, ...]) -> Reads:
    """What the templates ``names`` (one channel's files) read, following what they reference."""
    read: set[str] = set()
    pure = True
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
            tree = env.parse(source)
        except (jinja2.TemplateNotFound, jinja2.TemplateSyntaxError):
            pure = False  # rendering reports it; nothing to reuse
            continue
        found = meta.find_undeclared_variables(tree)
        read |= found
        if any(n.name in _RANDOM_NAMES for n in tree.find_all(nodes.Name)) or any(
            f.name in _RANDOM_FILTERS for f in tree.find_all(nodes.Filter)
        ):
            pure = False
        for ref in meta.find_referenced_templates(tree):
            if ref is None:  # a name computed at run time: cannot be followed
                pure = False
            else:
                todo.append(ref)
    return Reads(frozenset(read), pure)
