"""The renderer's fast path (one shared scope per message, templates' globals as plain dicts,
``root_render_func`` on a context built once per file) renders exactly what jinja2's own
``Template.render`` renders from an environment configured the same way."""

from __future__ import annotations

from typing import Any

import jinja2
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import SandboxedEnvironment

from channels.templates import CHANNEL_FILES, TemplateError, TemplateRenderer
from consumers.infra.settings import PACKAGE_DIR
from schemas.models import Channel

TEMPLATES = PACKAGE_DIR / "templates"
RENDERER = TemplateRenderer(TEMPLATES, "en")
REFERENCE = SandboxedEnvironment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)
REFERENCE.filters["safe_url"] = RENDERER._safe_url

# Templates whose variables are all strings, with the names they read.
STRING_TEMPLATES = {
    "security_alert": ("device", "ip", "location"),
    "payment_receipt": ("amount", "currency", "merchant"),
    "login_code": ("code",),
    "comment_reply": ("author", "post_title", "excerpt"),
    "mention": ("author", "context"),
    "activity": ("summary",),
    "tips": ("tip",),
}
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def _reference(channel: Channel, template: str, locale: str, variables: dict[str, Any]) -> dict[str, str]:
    found = RENDERER.resolve(template, channel, locale)
    assert found is not None
    return {
        f: REFERENCE.get_template(f"{found[0]}/{found[1]}/{f}").render(variables)
        for f in CHANNEL_FILES[channel]
    }


@settings(max_examples=60, deadline=None)
@given(
    template=st.sampled_from(sorted(STRING_TEMPLATES)),
    channel=st.sampled_from([Channel.EMAIL, Channel.PUSH, Channel.SMS, Channel.IN_APP]),
    locale=st.sampled_from(["en", "pt-BR", "pt", "fr"]),
    values=st.lists(text, min_size=3, max_size=3),
    user=text,
)
def test_fast_path_renders_what_template_render_renders(
    template: str, channel: Channel, locale: str, values: list[str], user: str
) -> None:
    variables: dict[str, Any] = dict(zip(STRING_TEMPLATES[template], values, strict=False))
    variables.update(user_id=user, event_type=template, notification_id="n-1", locale=locale)
    variables["recipient"] = {"id": user, "tenant": "", "properties": {}}
    try:
        content = RENDERER.render(channel, template, locale, variables)
    except TemplateError:
        content = None
    try:
        out = _reference(channel, template, locale, variables)
    except (jinja2.TemplateError, ValueError):  # the fast path must fail too
        assert content is None
        return
    assert content is not None
    if channel is Channel.EMAIL:
        assert content.subject == " ".join(out["email.subject.j2"].split())
        assert content.html == out["email.html.j2"]
        assert content.text == out["email.txt.j2"].strip() + "\n"
    elif channel is Channel.SMS:
        assert content.text == out["sms.txt.j2"].strip()
    else:
        assert content.title == " ".join(out[f"{channel.value}.title.j2"].split())
        assert content.text == out[f"{channel.value}.body.j2"].strip()


def test_templates_globals_are_the_environments() -> None:
    template = RENDERER.env.get_template("payment_receipt/en/email.subject.j2")
    reference = dict(REFERENCE.get_template("payment_receipt/en/email.subject.j2").globals)
    del reference["lipsum"]  # the sandbox's one change: lipsum(n) writes whatever a payload's n says
    assert dict(template.globals) == reference
