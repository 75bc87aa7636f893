"""Each size in channels/template_limits.py bounds what the real operation adds to its inputs."""

from __future__ import annotations

import json
from typing import Any

import jinja2
import markupsafe
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import filters
from jinja2.nodes import EvalContext
from jinja2.utils import Namespace

from channels.template_limits import (
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
    assert len(out) <= len(fmt) + printf_size(fmt, args)  # the arguments' text is counted now


@pytest.mark.parametrize(
    ("fmt", "args", "size"),
    [
        ("%0999999999d", 1, 999999999 + 4),  # an int's text: its digits, a sign, a separator
        ("%.999999999f", 1.0, 999999999 + 26 + 310),  # a float's repr and the digits of "%f" of 1e308
        ("%.999999999s", "a", 1),  # a precision on %s cuts, it never pads
        ("%*.*f", (7, 9, 1.0), 16 + 336),
        ("%-*d", (-12, 1), 12 + 4),
        ("%(a(b))30s", {"a(b)": "xy"}, 32),  # a key's parentheses nest, as Python parses them
        ("%" + "9" * 5000 + "d", 1, 10**18 + 4),  # past int()'s digit limit: huge, not an exception
        ("100% %%", (), 0),
        ("order 123456 for %s", "x", 1),  # digits in the text are not widths
        ("%s|%(a)s", {"a": "xyz"}, 27 + 3),  # the mapping itself, then its key: both written
        ("%r", "ab", 6),  # a repr's quotes
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


# Values as a JSON payload holds them, with text that prints as itself (no quote, backslash or
# unprintable character for a repr to escape: the one case text_size counts from below).
printable = st.text("ab &<-", max_size=20)
leaves = printable | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
values = st.recursive(
    leaves | printable.map(str.encode),
    lambda inner: (
        st.lists(inner, max_size=4) | st.tuples(inner) | st.dictionaries(printable, inner, max_size=3)
    ),
    max_leaves=20,
)


@given(value=values)
def test_text_size_bounds_the_text_of_a_value(value: Any) -> None:
    assert len(str(value)) <= text_size(value)


@given(seq=st.lists(values, max_size=4) | printable, n=st.integers(-2, 30))
def test_repeat_size_bounds_the_text_a_repetition_stands_for(seq: list[Any] | str, n: int) -> None:
    repeated = seq * n
    assert len(str(repeated)) <= max(repeat_size(seq, n), 0) + (2 if n <= 0 else 0)
    if all(isinstance(item, str) for item in repeated):
        assert len("".join(repeated)) <= repeat_size(seq, n)


@given(seq=st.lists(values, max_size=4), n=st.integers(1, 30), limit=st.integers(0, 200))
def test_repeat_size_stops_early_only_past_its_limit(seq: list[Any], n: int, limit: int) -> None:
    full = repeat_size(seq, n)
    assert (repeat_size(seq, n, limit) > limit) == (full > limit)


def test_repeat_size_of_one_string_referenced_many_times() -> None:
    assert repeat_size(["x" * 100_000], 100_000, 100_000) > 100_000  # 10**10 characters joined
    assert repeat_size(["ab"], 5000) == 2 + 5000 * 6  # "'ab', " each
    assert repeat_size("ab", 3) == 6
    assert repeat_size({"a": 1}, 3) == repeat_size([1], "3") == 0  # Python refuses both


@given(keys=st.lists(st.integers(), max_size=20), value=values)
def test_fromkeys_size_bounds_the_text_of_the_values(keys: list[int], value: Any) -> None:
    made = dict.fromkeys(keys, value)
    assert len("".join(map(str, made.values()))) <= fromkeys_size(keys, value)
    assert fromkeys_size(iter(keys), value) == 0  # no length: built one by one


def test_text_size_of_a_namespace_counts_its_values() -> None:
    ns = Namespace(a="x" * 50, b=[1, 2])
    assert len(repr(ns)) <= text_size(ns)
    assert len(str([ns] * 3)) <= repeat_size([ns], 3)


def test_text_size_of_a_list_holding_itself_is_finite() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert 0 < text_size(loop) < 10_000


@given(fmt=st.sampled_from(["%s", "%r", "%(a)s", "%(a)r|%(a)s"]), value=values)
def test_printf_size_counts_the_arguments_text(fmt: str, value: Any) -> None:
    args: Any = {"a": value} if "(" in fmt else (value,)
    assert len(fmt % args) <= len(fmt) + printf_size(fmt, args)
    escaped = markupsafe.Markup(fmt) % args
    assert len(escaped) <= len(fmt) + printf_size(fmt, args, escaped=True)


@given(text=printable)
def test_escape_growth_bounds_what_escaping_adds(text: str) -> None:
    assert len(markupsafe.escape(text)) <= len(text) + escape_growth(text)


@given(sep=printable, items=st.lists(printable | st.integers(), max_size=6))
def test_join_size_bounds_an_escaping_join(sep: str, items: list[Any]) -> None:
    strings = [str(i) for i in items]
    assert len(markupsafe.Markup(sep).join(strings)) <= sum(map(len, strings)) + join_size(sep, strings, True)
    ctx = EvalContext(ENV)
    assert len(filters.sync_do_join(ctx, items, sep)) <= join_size(sep, items) + sum(
        len(i) for i in items if isinstance(i, str)
    )


@given(
    text=st.text("abc", max_size=30), table=st.dictionaries(st.sampled_from([97, 98]), printable | st.none())
)
def test_method_size_bounds_translate(text: str, table: dict[int, str | None]) -> None:
    assert len(text.translate(table)) <= len(text) + method_size("translate", text, (table,), {})


def test_translate_by_a_table_of_unknown_kind_is_refused() -> None:
    assert method_size("translate", "abc", (object(),), {}) >= 10**18
    assert method_size("translate", "abc", (["x" * 9] * 98,), {}) == 27
    assert method_size("translate", b"abc", (bytes(range(256)),), {}) == 0  # bytes never grow


@given(
    text=st.binary(max_size=20),
    width=st.integers(-5, 40),
    name=st.sampled_from(["center", "zfill", "expandtabs"]),
)
def test_method_size_bounds_bytes_methods(text: bytes, width: int, name: str) -> None:
    assert len(getattr(text, name)(width)) <= len(text) + max(method_size(name, text, (width,), {}), 0)


@given(
    value=values.filter(lambda v: not isinstance(v, bytes)),
    indent=st.integers(0, 8) | st.text(" -", max_size=3),
)
def test_json_indent_size_bounds_the_indentation(value: Any, indent: int | str) -> None:
    try:
        flat = json.dumps(value)
    except TypeError:  # bytes inside: json refuses them
        return
    assert len(json.dumps(value, indent=indent)) - len(flat) <= json_indent_size(value, indent)


@given(
    text=st.lists(st.sampled_from(["a.com", "www.b.org", "x@y.io", "word", "(http://c.net)"])).map(" ".join),
    target=st.none() | st.text("_&b", max_size=6),
    rel=st.none() | st.text("n& ", max_size=6),
)
def test_urlize_size_bounds_the_attributes(text: str, target: str | None, rel: str | None) -> None:
    ctx = EvalContext(ENV)
    plain = filters.do_urlize(ctx, text)
    assert len(filters.do_urlize(ctx, text, target=target, rel=rel)) - len(plain) <= urlize_size(
        text, target, rel
    )
