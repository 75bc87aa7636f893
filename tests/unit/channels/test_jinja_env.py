"""The sandbox's escape writes what markupsafe's writes (the rendering equivalence as a whole is
tests/unit/channels/test_templates_equivalence.py)."""

from __future__ import annotations

import jinja2
import markupsafe
from hypothesis import given
from hypothesis import strategies as st

from channels.jinja_env import SandboxEnvironment, _escaped_str, escape_text

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(value=st.one_of(text, st.integers(), st.builds(markupsafe.Markup, text), st.none()))
def test_the_templates_escape_writes_what_markupsafe_escape_writes(value: object) -> None:
    escaped = escape_text(value)
    assert escaped == str(markupsafe.escape(value))
    # a plain string escapes to a plain string; what marks itself safe stays Markup
    assert isinstance(escaped, markupsafe.Markup) is (
        not isinstance(value, str) or hasattr(value, "__html__")
    )


@given(value=text)
def test_without_markupsafes_inner_escape_a_string_escapes_the_same(value: str) -> None:
    escaped = _escaped_str(value)  # what a markupsafe lacking _escape_inner gets
    assert escaped == str(markupsafe.escape(value)) and type(escaped) is str


def test_templates_are_looked_up_once_by_name_and_asking_template() -> None:
    env = SandboxEnvironment(
        loader=jinja2.DictLoader({"base": "<{% block b %}{% endblock %}>", "child": "{% extends 'base' %}"}),
        auto_reload=False,
    )
    child = env.get_template("child")
    base = env.get_template("base", "child")
    assert env.cache is not None
    env.cache.clear()  # jinja2's own cache would load them again: the first answers are kept
    assert env.get_template("child") is child
    assert env.get_template("base", "child") is base
    assert child.render() == "<>"
    assert env.get_template("base", globals={"x": 1}).globals["x"] == 1  # globals: jinja2's own path


def test_compiled_templates_escape_with_escape_text() -> None:
    """The speed-up is in which function the compiled code calls: a jinja2 that stopped reading
    the module's ``escape`` would render the same text, slower, and only this would say so."""
    env = SandboxEnvironment(loader=jinja2.DictLoader({"t": "{{ x }}"}), autoescape=True)
    template = env.get_template("t")
    assert template.root_render_func.__globals__["escape"] is escape_text
    assert template.render(x="<b>") == "&lt;b&gt;"
