"""What a channel's templates read, across what they extend and include, and whether their output is
a function of it (the renderer reuses a rendering only then)."""

from __future__ import annotations

import jinja2
import pytest

from channels.template_reads import template_reads


def _env(files: dict[str, str]) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.DictLoader(files))


def test_names_are_collected_across_extends_and_include() -> None:
    env = _env(
        {
            "layout.j2": "<html lang='{{ locale }}'>{% block body %}{% endblock %}{% include 'foot.j2' %}",
            "foot.j2": "{{ user_id }}",
            "child.j2": "{% extends 'layout.j2' %}{% block body %}{{ amount }}{% set x = 1 %}{{ x }}{% endblock %}",
            "subject.j2": "{{ merchant }}",
        }
    )
    reads = template_reads(env, ("child.j2", "subject.j2"))
    assert reads.names == {"locale", "user_id", "amount", "merchant"}
    assert reads.pure


@pytest.mark.parametrize(
    "source",
    [
        "{{ [1, 2, 3] | random }}",  # a different value per call
        "{{ lipsum(1) }}",
        "{% filter random %}abc{% endfilter %}",
        "{% include name %}",  # computed at run time: cannot be followed
        "{% extends 'missing.j2' %}",  # rendering reports it
        "{{ broken",
    ],
)
def test_output_that_is_not_a_function_of_the_names_read_is_never_reused(source: str) -> None:
    assert not template_reads(_env({"t.j2": source}), ("t.j2",)).pure


def test_a_template_referenced_twice_is_read_once() -> None:
    env = _env({"a.j2": "{% include 'b.j2' %}{% include 'b.j2' %}", "b.j2": "{% include 'a.j2' %}{{ n }}"})
    reads = template_reads(env, ("a.j2", "b.j2"))
    assert reads.names == {"n"}
    assert reads.pure
