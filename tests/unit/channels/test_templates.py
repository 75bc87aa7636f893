"""Jinja2 rendering: locale fallback, strictness, escaping, sandbox, and every shipped template."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.jinja_env import MAX_SIZE
from channels.sms.sns import segments
from channels.templates import CHANNEL_FILES, TemplateError, TemplateRenderer, locale_chain
from consumers.infra.settings import PACKAGE_DIR
from schemas.models import Channel

TEMPLATES = PACKAGE_DIR / "templates"

# One payload per template with every variable it uses (what the routing table sends it).
DEMO: dict[str, dict[str, object]] = {
    "security_alert": {"device": "iPhone 15", "ip": "203.0.113.7", "location": "Lisbon, PT"},
    "payment_receipt": {"amount": "12.50", "currency": "EUR", "merchant": "Corner Café"},
    "login_code": {"code": "482913"},
    "comment_reply": {"author": "Ana", "post_title": "Kafka at scale", "excerpt": "Great point about lag!"},
    "mention": {"author": "Rui", "context": "@you can you review this?"},
    "activity": {"summary": "3 people liked your post"},
    "marketing": {"headline": "Spring sale", "body": "20% off everything", "cta_url": "https://ex.com/s"},
    "tips": {"tip": "Press / to search"},
    "digest": {
        "items": [{"title": "Ana replied", "body": "Nice!", "created_at": "2026-11-25T10:00:00Z"}],
        "more": 4,
    },
}
COMMON = {"user_id": "u-1", "event_type": "x", "notification_id": "n-1"}


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(TEMPLATES, "en")


@pytest.mark.parametrize(
    ("locale", "chain"),
    [
        ("pt-BR", ["pt-BR", "pt", "en"]),
        ("pt_br", ["pt-BR", "pt", "en"]),
        ("PT", ["pt", "en"]),
        ("en", ["en"]),
        ("en-US", ["en-US", "en"]),
        ("zh-Hant-TW", ["zh-Hant-TW", "zh-Hant", "zh", "en"]),
        ("", ["en"]),
        ("../etc", ["en"]),
        ("x", ["en"]),
    ],
)
def test_locale_chain(locale: str, chain: list[str]) -> None:
    assert locale_chain(locale, "en") == chain


def test_every_default_template_ships_every_channel_in_en_and_pt() -> None:
    for template in DEMO:
        for locale in ("en", "pt"):
            for files in CHANNEL_FILES.values():
                for name in files:
                    assert (TEMPLATES / template / locale / name).is_file(), f"{template}/{locale}/{name}"


@pytest.mark.parametrize("template", sorted(DEMO))
@pytest.mark.parametrize("locale", ["en", "pt", "pt-BR"])
@pytest.mark.parametrize("channel", list(CHANNEL_FILES))
def test_default_templates_render_with_demo_payloads(
    renderer: TemplateRenderer, template: str, locale: str, channel: Channel
) -> None:
    content = renderer.render(channel, template, locale, {**DEMO[template], **COMMON, "locale": locale})
    assert content.locale == ("pt" if locale.startswith("pt") else "en")
    if channel is Channel.EMAIL:
        assert content.subject and "\n" not in content.subject
        assert content.html and content.html.startswith("<!doctype html>")
        assert content.text and content.text.strip()
    elif channel is Channel.SMS:
        assert content.text
        assert segments(content.text)[1] == 1, content.text  # demo texts fit one segment
    else:
        assert content.title and content.text


def test_two_locales_give_two_languages(renderer: TemplateRenderer) -> None:
    vars_ = {**DEMO["payment_receipt"], **COMMON, "locale": "x"}
    en = renderer.render(Channel.EMAIL, "payment_receipt", "fr-FR", vars_)  # unknown → default
    pt = renderer.render(Channel.EMAIL, "payment_receipt", "pt-BR", vars_)
    assert (en.subject, en.locale) == ("Receipt: 12.50 EUR at Corner Café", "en")
    assert (pt.subject, pt.locale) == ("Recibo: 12.50 EUR em Corner Café", "pt")


def test_html_is_autoescaped_but_text_and_subject_are_not(renderer: TemplateRenderer) -> None:
    vars_ = {**DEMO["payment_receipt"], "merchant": "<script>x</script>", **COMMON, "locale": "en"}
    c = renderer.render(Channel.EMAIL, "payment_receipt", "en", vars_)
    assert "<script>" not in (c.html or "") and "&lt;script&gt;" in (c.html or "")
    assert "<script>x</script>" in (c.text or "") and "<script>x</script>" in (c.subject or "")


def test_missing_variable_is_a_template_error_naming_it(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match=r"login_code/en/email\.subject\.j2: missing variable: 'code'"):
        renderer.render(Channel.EMAIL, "login_code", "en", {**COMMON, "locale": "en"})


@pytest.mark.parametrize("name", ["nope", "../login_code", "", "login_code/../x"])
def test_unknown_or_unsafe_template_names(renderer: TemplateRenderer, name: str) -> None:
    with pytest.raises(TemplateError):
        renderer.render(Channel.SMS, name, "en", {"code": "1"})


def test_webhook_has_no_templates(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="adapter renders"):
        renderer.render(Channel.WEBHOOK, "login_code", "en", {})


def _tree(tmp_path: Path, files: dict[str, str]) -> TemplateRenderer:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return TemplateRenderer(tmp_path, "en")


def test_sandbox_blocks_attribute_escapes(tmp_path: Path) -> None:
    r = _tree(tmp_path, {"evil/en/sms.txt.j2": "{{ x.__class__.__mro__[1].__subclasses__() }}"})
    with pytest.raises(TemplateError):
        r.render(Channel.SMS, "evil", "en", {"x": "s"})


def test_syntax_errors_and_bad_payload_types_are_template_errors(tmp_path: Path) -> None:
    r = _tree(tmp_path, {"broken/en/sms.txt.j2": "{% if %}", "typed/en/sms.txt.j2": "{{ n + 1 }}"})
    with pytest.raises(TemplateError, match="syntax error"):
        r.render(Channel.SMS, "broken", "en", {})
    with pytest.raises(TemplateError, match="cannot render"):
        r.render(Channel.SMS, "typed", "en", {"n": "text"})


@pytest.mark.parametrize(
    ("text", "payload", "raised"),
    [
        ("{{ a / b }}", {"a": 1, "b": 0}, "ZeroDivisionError"),
        ("{% for i in range(n) %}{% endfor %}", {"n": 10**6}, "OverflowError"),  # past MAX_RANGE
        ('{{ "{:d}".format(s) }}', {"s": "x"}, "ValueError"),
        ("{{ n | float }}", {"n": 10**400}, "OverflowError"),
        ("{{ xs[5] }}", {"xs": [1]}, "UndefinedError"),
    ],
)
def test_any_error_the_payload_causes_is_a_permanent_template_error(
    tmp_path: Path, text: str, payload: dict[str, object], raised: str
) -> None:
    # The same payload fails the same way on every retry: a template_error, never internal_error.
    r = _tree(tmp_path, {"t/en/sms.txt.j2": text})
    with pytest.raises(TemplateError) as info:
        r.render(Channel.SMS, "t", "en", payload)
    assert info.value.reason == "template_error"
    assert raised in str(info.value) or raised == "UndefinedError"


@pytest.mark.parametrize(
    ("text", "payload"),
    [
        ('{{ "a" * n }}', {"n": 10**12}),  # a MemoryError (retried) or all the memory, unchecked
        ("{{ n * s }}", {"n": 10**12, "s": "ab"}),
        ("{{ xs * n }}", {"xs": [1, 2], "n": 10**12}),
        ("{{ 10 ** n }}", {"n": 10**9}),  # minutes of CPU for a number of a billion digits
    ],
)
def test_a_result_too_large_to_build_is_a_permanent_template_error(
    tmp_path: Path, text: str, payload: dict[str, object]
) -> None:
    r = _tree(tmp_path, {"t/en/sms.txt.j2": text})
    with pytest.raises(TemplateError, match="unsafe template operation") as info:
        r.render(Channel.SMS, "t", "en", payload)
    assert info.value.reason == "template_error"


WIDE = MAX_SIZE + 1  # past the limit, yet small enough that an unchecked render only wastes 100 kB


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ('{{ "%0*d" % (n, 1) }}', "% formatting"),
        ('{{ ("%0" ~ n ~ "d") % 1 }}', "% formatting"),
        ('{{ ("%." ~ n ~ "f") % 1.5 }}', "% formatting"),
        ('{{ "{:>{w}}".format(1, w=n) }}', "str.format field"),
        ('{{ ("{:>" ~ n ~ "}").format(1) }}', "str.format field"),
        ('{{ "{x:0{w}}".format_map({"x": 1, "w": n}) }}', "str.format field"),
        ('{{ "x".center(n) }}', "str.center"),
        ('{{ "x".ljust(n) }}', "str.ljust"),
        ('{{ "x".rjust(n) }}', "str.rjust"),
        ('{{ "1".zfill(n) }}', "str.zfill"),
        ('{{ "a\tb".expandtabs(n) }}', "str.expandtabs"),
        ('{{ ("a" * 400).replace("a", "b" * 400) }}', "str.replace"),
        ('{{ ("-" * 400).join("a" * 400) }}', "str.join"),
        ("{{ 'x' | center(n) }}", "center filter"),
        ("{{ 'a' | indent(n, true) }}", "indent filter"),
        ("{{ ('a\\n' * 300) | indent('-' * 400, true) }}", "indent filter"),
        ('{{ "%*s" | format(n, "") }}', "format filter"),
        ('{{ ("ab " * 300) | wordwrap(1, true, "-" * 400) }}', "wordwrap filter"),
        ('{{ ("a" * 400) | replace("a", "b" * 400) }}', "replace filter"),
        ('{{ ("a" * 400) | join("-" * 400) }}', "join filter"),
    ],
)
def test_a_width_past_the_limit_is_a_permanent_template_error_naming_the_operation(
    tmp_path: Path, text: str, cause: str
) -> None:
    # A width taken from the payload must not allocate whatever the payload says (GBs in a
    # channel consumer): refused before the operation runs.
    r = _tree(tmp_path, {"t/en/sms.txt.j2": text})
    with pytest.raises(TemplateError, match="unsafe template operation") as info:
        r.render(Channel.SMS, "t", "en", {"n": WIDE})
    assert info.value.reason == "template_error"
    assert cause in str(info.value)


def test_ordinary_widths_and_formats_still_render(tmp_path: Path) -> None:
    text = (
        '{{ "%05.1f|%-4s|%*d" % (x, "a", 3, 7) }} {{ "{:>4}|{:.2f}|{:,}".format("b", x, 1234567) }} '
        "{{ 'c'.center(3) }}{{ 'd'.ljust(2) }}{{ '7'.zfill(3) }} {{ 'e' | center(3) }} "
        "{{ '%.3s' | format('abcdef') }} {{ 'a b c' | wordwrap(1, true, '/') }} "
        "{{ 'f\ng' | indent(2) }} {{ 'aa'.replace('a', 'xy') }} {{ [1, 2] | join(', ') }} {{ 'x' | truncate(n) }}"
    )
    r = _tree(tmp_path, {"t/en/sms.txt.j2": text})
    out = r.render(Channel.SMS, "t", "en", {"x": 3.14159, "n": 10**12}).text
    assert out == "003.1|a   |  7    b|3.14|1,234,567  c d 007  e  abc a/b/c f\n  g xyxy 1, 2 x"


def test_small_products_and_powers_still_render(tmp_path: Path) -> None:
    text = '{{ "-" * 3 }}{{ n * 2.5 }} {{ [0] * 2 }} {{ 2 ** 10 }} {{ "=" * n }}'
    r = _tree(tmp_path, {"t/en/sms.txt.j2": text})
    assert r.render(Channel.SMS, "t", "en", {"n": 4}).text == "---10.0 [0, 0] 1024 ===="


def test_locale_falls_back_per_channel_as_a_whole(tmp_path: Path) -> None:
    # pt has only the subject: the email must not mix a pt subject with an en body.
    r = _tree(
        tmp_path,
        {
            "t/pt/email.subject.j2": "Olá",
            "t/en/email.subject.j2": "Hi",
            "t/en/email.html.j2": "<p>body</p>",
            "t/en/email.txt.j2": "body",
            "t/pt/sms.txt.j2": "Olá sms",
        },
    )
    email = r.render(Channel.EMAIL, "t", "pt-BR", {})
    assert (email.subject, email.locale) == ("Hi", "en")
    assert r.render(Channel.SMS, "t", "pt-BR", {}).text == "Olá sms"


def test_subject_newlines_are_collapsed(tmp_path: Path) -> None:
    r = _tree(
        tmp_path, {"t/en/email.subject.j2": "{{ s }}", "t/en/email.html.j2": "x", "t/en/email.txt.j2": "x"}
    )
    assert r.render(Channel.EMAIL, "t", "en", {"s": "a\r\nBcc: evil@x"}).subject == "a Bcc: evil@x"


def test_compiled_templates_are_cached(renderer: TemplateRenderer) -> None:
    vars_ = {"code": "1", **COMMON, "locale": "en"}
    renderer.render(Channel.SMS, "login_code", "en", vars_)
    first = renderer.env.get_template("login_code/en/sms.txt.j2")
    renderer.render(Channel.SMS, "login_code", "en", vars_)
    assert renderer.env.get_template("login_code/en/sms.txt.j2") is first


# What a hostile template could make of a payload's strings, at a scale an unchecked render handles
# in kilobytes: the cap is lowered to 1000 characters, so each construct crosses it by a few times.
SMALL_CAP = 1000
HOSTILE = {"s": "x" * 100, "t": "&" * 300, "n": 2000}


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("channels.jinja_env.MAX_SIZE", SMALL_CAP)


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        # one long string repeated by a list: n references, n copies once stringified
        ("{{ ([s] * 100) | join }}", "of *"),
        ('{{ "".join([s] * 100) }}', "of *"),
        ("{{ [s] * 100 }}", "of *"),
        ("{{ ([s] * 100) | string }}", "of *"),
        ("{{ ([s] * 100) | tojson }}", "of *"),
        ('{{ [s] * 100 ~ "" }}', "of *"),
        ('{{ "%s" % ((s,) * 100,) }}', "of *"),
        ("{{ ([[s]] * 100) | sum(start=[]) }}", "of *"),
        ("{{ {}.fromkeys(range(100), s).values() | join }}", "dict.fromkeys"),
        ("{{ ([namespace(a=t)] * 10) | string }}", "of *"),  # a namespace's repr holds its values
        # format strings: a running total of what the fields write, and %s's arguments
        ('{{ ("{0}" * 30).format(s) }}', "str.format field"),
        ('{{ ("{a}" * 30).format_map({"a": s}) }}', "str.format field"),
        ('{{ ("{0:>600}" * 2).format("a") }}', "str.format field"),
        ('{{ ("%(a)s" * 30) % {"a": s} }}', "% formatting"),
        ('{{ "%s%s%s%s%s%s%s%s%s%s%s" % (s, s, s, s, s, s, s, s, s, s, s) }}', "% formatting"),
        ('{{ ("%(a)s" * 30) | format(a=s) }}', "format filter"),
        # filters and globals jinja2 leaves uncapped
        ("{{ [1, [2, [3]]] | tojson(indent=200) }}", "tojson filter"),
        ("{{ [1] | batch(100, s) | list }}", "batch filter"),
        ("{{ [1] | slice(n) | list }}", "slice filter"),  # a loop past range()'s own limit
        ("{{ [1] | slice(20, s) | list }}", "slice filter"),
        ('{{ ("a.com " * 20) | urlize(target=s, rel=s) }}', "urlize filter"),
        # bytes, and str.translate
        ('{{ "x".encode().center(n) }}', "bytes.center"),
        ('{{ ("%0" ~ n ~ "d").encode() % 1 }}', "% formatting"),
        ('{{ ("a" * 20).translate({97: s}) }}', "str.translate"),
        # Markup escapes the other operand after a check that sized it unescaped
        ('{{ (("a" * 100) | safe).replace("a", "&" * 5) }}', "Markup.replace"),
        ('{{ (("%s" * 3) | safe) % (t, t, t) }}', "% formatting"),
        ("{{ t | indent('-' | safe, true) }}", "indent filter"),
        # a list that references one string many times (built by a loop) is measured, not stringified
        (
            "{% set ns = namespace(l=[]) %}{% for i in range(20) %}{% if ns.l.append(s) %}{% endif %}"
            "{% endfor %}{{ ns.l | center(1) }}",
            "center filter",
        ),
    ],
)
@pytest.mark.usefixtures("small_cap")
def test_hostile_constructs_past_the_limit_are_refused_before_they_run(
    tmp_path: Path, text: str, cause: str
) -> None:
    r = _tree(tmp_path, {"t/en/sms.txt.j2": text})
    with pytest.raises(TemplateError, match="unsafe template operation") as info:
        r.render(Channel.SMS, "t", "en", HOSTILE)
    assert info.value.reason == "template_error"
    assert cause in str(info.value)


@pytest.mark.parametrize(
    ("html", "cause"),
    [
        ('{{ t | replace("amp", ("x" * 20) | safe) }}', "replace filter"),  # "&" escaped to "&amp;"
        ('{{ [t, t] | join("-" | safe) }}', "join filter"),
    ],
)
@pytest.mark.usefixtures("small_cap")
def test_autoescaped_operands_are_sized_escaped(tmp_path: Path, html: str, cause: str) -> None:
    files = {"t/en/email.subject.j2": "s", "t/en/email.txt.j2": "x", "t/en/email.html.j2": html}
    r = _tree(tmp_path, files)
    with pytest.raises(TemplateError, match="unsafe template operation") as info:
        r.render(Channel.EMAIL, "t", "en", HOSTILE)
    assert cause in str(info.value)


def test_lipsum_is_not_offered(tmp_path: Path) -> None:
    r = _tree(tmp_path, {"t/en/sms.txt.j2": "{{ lipsum(n) }}"})
    with pytest.raises(TemplateError, match="lipsum"):
        r.render(Channel.SMS, "t", "en", {"n": 10})


@pytest.mark.usefixtures("small_cap")
def test_the_same_constructs_under_the_limit_still_render(tmp_path: Path) -> None:
    text = (
        '{{ (["ab"] * 3) | join("-") }} {{ "{0}{0}".format("x") }} {{ "%s%s" % ("a", "b") }} '
        "{{ [1, 2, 3] | batch(2, 0) | list }} {{ [1, 2, 3] | slice(2) | list }} {{ [1] | tojson(indent=1) }} "
        '{{ "www.a.com" | urlize(target="_blank") }} {{ "ab".translate({97: "xy"}) }} {{ "x".encode().center(3) }}'
    )
    r = _tree(tmp_path, {"t/en/sms.txt.j2": text})
    assert r.render(Channel.SMS, "t", "en", {}).text == (
        "ab-ab-ab xx ab [[1, 2], [3, 0]] [[1, 2], [3]] [\n 1\n] "
        '<a href="https://www.a.com" rel="noopener" target="_blank">www.a.com</a> xyb b\' x \''
    )
