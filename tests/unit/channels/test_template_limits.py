"""Each size in channels/template_limits.py bounds what the real operation adds to its inputs."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import filters

from channels.template_limits import (
    format_spec_size,
    indent_size,
    join_size,
    method_size,
    printf_size,
    wordwrap_size,
)

ENV = jinja2.Environment()
small = st.integers(0, 40)
words = st.text("ab -\t\n\r\x0b", max_size=200)


def _arg_room(args: tuple[Any, ...]) -> int:
    # what a conversion may write beyond the widths counted: the value itself, a sign, a prefix,
    # a default precision of six digits and an exponent
    return sum(len(str(a)) + 24 for a in args)


@st.composite
def printf(draw: st.DrawFn) -> tuple[str, tuple[Any, ...]]:
    fmt, args = draw(st.text("xy ", max_size=5)), list[Any]()
    for _ in range(draw(st.integers(0, 4))):
        conversion = draw(st.sampled_from("sdxeEfgr%"))
        spec = "%" + draw(st.text("-+ #0", max_size=3))
        if draw(st.booleans()):
            if draw(st.booleans()):
                spec, width = spec + "*", draw(st.integers(-40, 40))
                args.append(width)
            else:
                spec += str(draw(small))
        if draw(st.booleans()):
            if draw(st.booleans()):
                spec += ".*"
                args.append(draw(small))
            else:
                spec += "." + str(draw(small))
        fmt += spec + conversion + draw(st.text("xy ", max_size=3))
        if conversion in "sr":
            args.append(draw(st.text("abc", max_size=10)))
        elif conversion in "dx":
            args.append(draw(st.integers(-(10**6), 10**6)))
        elif conversion != "%":
            args.append(draw(st.floats(-1e6, 1e6)))
    return fmt, tuple(args)


@given(case=printf())
def test_printf_size_bounds_what_percent_formatting_adds(case: tuple[str, tuple[Any, ...]]) -> None:
    fmt, args = case
    try:
        out = fmt % args
    except (TypeError, ValueError):  # "%%" with flags and the like: Python refuses, nothing is built
        return
    assert len(out) <= len(fmt) + printf_size(fmt, args) + _arg_room(args)


@pytest.mark.parametrize(
    ("fmt", "args", "size"),
    [
        ("%0999999999d", 1, 999999999),
        ("%.999999999f", 1.0, 999999999),
        ("%.999999999s", "a", 0),  # a precision on %s cuts, it never pads
        ("%*.*f", (7, 9, 1.0), 16),
        ("%-*d", (-12, 1), 12),
        ("%(a(b))30s", {"a(b)": 1}, 30),  # a key's parentheses nest, as Python parses them
        ("%" + "9" * 5000 + "d", 1, 10**18),  # past int()'s digit limit: huge, not an exception
        ("100% %%", (), 0),
        ("order 123456 for %s", "x", 0),  # digits in the text are not widths
    ],
)
def test_printf_size_table(fmt: str, args: Any, size: int) -> None:
    assert printf_size(fmt, args) == size


@st.composite
def format_specs(draw: st.DrawFn) -> tuple[Any, str]:
    kind = draw(st.sampled_from(["s", "d", "f"]))
    value: Any = {
        "s": draw(st.text("abc", max_size=10)),
        "d": draw(st.integers(-(10**9), 10**9)),
        "f": draw(st.floats(-1e9, 1e9)),
    }[kind]
    spec = draw(st.sampled_from(["", "<", ">", "^", "*^", "0>"]))
    if kind != "s":
        spec += draw(st.sampled_from(["", "+", "-", " "])) + draw(st.sampled_from(["", "#"]))
    spec += draw(st.sampled_from(["", "0"])) if kind != "s" else ""
    if draw(st.booleans()):
        spec += str(draw(small))
    if kind != "s":
        spec += draw(st.sampled_from(["", ",", "_"]))
    if kind != "d" and draw(st.booleans()):
        spec += "." + str(draw(small))
    return value, spec + draw(st.sampled_from(["", kind]))


@given(case=format_specs())
def test_format_spec_size_bounds_what_a_field_adds(case: tuple[Any, str]) -> None:
    value, spec = case
    try:
        out = format(value, spec)
    except ValueError:
        return
    # grouping separators: at most one per digit of the value
    assert len(out) <= 2 * len(str(value)) + 24 + format_spec_size(spec)


def test_format_spec_size_counts_every_number() -> None:
    assert format_spec_size(">999999999") == 999999999
    assert format_spec_size("0>12.3f") == 15
    assert format_spec_size("%Y-%m") == 0  # a date's own mini-language writes what it names
    assert format_spec_size("9" * 100) == 10**18


@given(
    text=st.text("ab\t", max_size=50),
    name=st.sampled_from(["center", "ljust", "rjust", "zfill", "expandtabs"]),
    width=st.integers(-5, 60),
)
def test_method_size_bounds_padding_and_tabs(text: str, name: str, width: int) -> None:
    assert len(getattr(text, name)(width)) <= len(text) + max(method_size(name, text, (width,), {}), 0)


@given(
    text=st.text("ab", max_size=40),
    old=st.text("ab", max_size=2),
    new=st.text("xyz", max_size=5),
    count=st.none() | st.integers(-1, 5),
)
def test_method_size_bounds_replace(text: str, old: str, new: str, count: int | None) -> None:
    args = (old, new) if count is None else (old, new, count)
    assert len(text.replace(*args)) <= len(text) + method_size("replace", text, args, {})


@given(
    sep=st.text("-", max_size=5),
    items=st.lists(st.text("ab", max_size=3), max_size=10) | st.text(max_size=10),
)
def test_join_size_bounds_the_separators(sep: str, items: list[str] | str) -> None:
    assert len(sep.join(items)) <= sum(map(len, items)) + join_size(sep, items)
    assert method_size("join", sep, (items,), {}) == join_size(sep, items)


def test_method_size_reads_keywords_and_ignores_other_methods() -> None:
    assert method_size("center", "x", (), {"width": 50}) == 50
    assert method_size("expandtabs", "\t\t", (), {"tabsize": 100}) == 200
    assert method_size("expandtabs", "\t\t", (), {}) == 16  # the default tab size
    assert method_size("upper", "x" * 10, (), {}) == 0
    assert join_size("-", iter(["a", "b"])) == 0  # no length: each item is built under the limits


@given(
    text=words, width=st.integers(0, 20) | st.text("->", max_size=4), first=st.booleans(), blank=st.booleans()
)
def test_indent_size_bounds_the_indentation(text: str, width: int | str, first: bool, blank: bool) -> None:
    assert len(filters.do_indent(text, width, first, blank)) <= len(text) + 1 + indent_size(text, width)


@given(
    text=words,
    width=st.integers(1, 30),
    wrapstring=st.text("<br>", max_size=6),
    long_words=st.booleans(),
    hyphens=st.booleans(),
)
def test_wordwrap_size_bounds_the_separators(
    text: str, width: int, wrapstring: str, long_words: bool, hyphens: bool
) -> None:
    out = filters.do_wordwrap(ENV, text, width, long_words, wrapstring, hyphens)
    assert len(out) <= len(text) + wordwrap_size(text, width, wrapstring)


def test_wordwrap_size_of_a_width_textwrap_refuses_is_nothing() -> None:
    assert wordwrap_size("abc", 0, "-") == wordwrap_size("abc", "x", "-") == 0
