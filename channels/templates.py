"""Jinja2 rendering of a :class:`ChannelMessage` into :class:`Content`, per template and locale.

Layout: ``<templates_dir>/<template>/<locale>/<file>`` with these files per channel:

=========  ==============================================================
email      ``email.subject.j2``, ``email.html.j2``, ``email.txt.j2``
sms        ``sms.txt.j2``
push       ``push.title.j2``, ``push.body.j2``
in_app     ``in_app.title.j2``, ``in_app.body.j2``
=========  ==============================================================

A tenant may override any template: for each locale of the chain,
``<templates_dir>/<tenant>/<template>/<locale>/`` is tried before the shared ``<template>/<locale>/``,
so a tenant overrides only what it brands and a reader still gets their language first (a shared
Portuguese template beats the tenant's English one). Keep tenant names distinct from template names.

Variables: the event's payload keys at the top level, plus ``user_id``, ``event_type``,
``notification_id``, ``locale`` and ``recipient``: ``recipient.id``, ``recipient.tenant`` and
``recipient.properties`` (the custom properties set through the admin API). A property the
recipient does not have renders as empty (and is falsy, so ``default`` and ``if`` work): properties
are optional per recipient, and one recipient without ``first_name`` must not fail a broadcast.
Payload variables stay strict: the payload is the event type's contract.

Locales fall back ``pt-BR`` → ``pt`` → the default locale; one locale serves all the files of
a channel, so a subject and its body never mix languages. The environment is sandboxed
(templates may come from operators, and payload values from any domain service), undefined
variables raise (a blank email is worse than a ``template_error``), and only ``.html.j2``
files are autoescaped. Every URL that reaches an ``href``/``src`` passes the ``safe_url``
filter: a scheme outside the allow-list (``https``, ``http``, ``mailto``; settings
``template_url_schemes``) fails the message permanently as ``invalid_url``. Compiled templates are cached for the life of the renderer;
where each (template, channel, locale, tenant) was found, for the last ``PLAN_CACHE_SIZE`` (10,000)
of them, since an event chooses all four.

Renderings are reused: a message whose templates' output is a function of the variables they read
(:mod:`channels.template_reads`) and that reads no ``recipient`` gets the content rendered for an
earlier message with the same payload and the same values of the message fields those templates
read (``user_id``, ``event_type``, ``notification_id``, ``locale``). A broadcast renders once per
template and locale instead of once per recipient; the last ``rendered_cache_size`` renderings are
kept.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from channels.base import Content
from channels.jinja_env import SandboxEnvironment
from channels.template_reads import Reads, template_reads
from schemas.errors import HeraldError, RecordError
from schemas.models import Channel, ChannelMessage

__all__ = [
    "CHANNEL_FILES",
    "DEFAULT_URL_SCHEMES",
    "PLAN_CACHE_SIZE",
    "Properties",
    "TemplateError",
    "TemplateRenderer",
    "UnsafeUrl",
    "locale_chain",
    "template_variables",
    "url_problem",
]

CHANNEL_FILES: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: ("email.subject.j2", "email.html.j2", "email.txt.j2"),
    Channel.SMS: ("sms.txt.j2",),
    Channel.PUSH: ("push.title.j2", "push.body.j2"),
    Channel.IN_APP: ("in_app.title.j2", "in_app.body.j2"),
}

# The message fields templates see besides the payload's keys (template_variables), but recipient.
_MESSAGE_FIELDS = ("user_id", "event_type", "notification_id", "locale")
# Where each (template, channel, locale, tenant) was found and what its files read: ~0.3 KB an
# entry, so ~3 MB at most. Real traffic needs templates x channels x locales x tenants in use.
PLAN_CACHE_SIZE = 10_000
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class TemplateError(RecordError):
    """A message cannot be rendered: unknown template, missing variable, broken template."""

    reason = "template_error"


class UnsafeUrl(RecordError):
    """A URL bound for an ``href``/``src`` has a scheme outside the allow-list (``javascript:``...)."""

    reason = "invalid_url"


DEFAULT_URL_SCHEMES = ("https", "http", "mailto")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_URL_NOISE = re.compile(r"[\t\n\r]")  # browsers drop these anywhere in a URL: "java\tscript:"


def url_problem(url: str, schemes: Collection[str] = DEFAULT_URL_SCHEMES) -> str | None:
    """Why ``url`` may not be an ``href``/``src``, or None. Pure.

    Read the way a browser reads it: surrounding spaces and control characters dropped, tabs
    and newlines removed anywhere. It needs a scheme from ``schemes``; http(s) needs a host.
    """
    cleaned = _URL_NOISE.sub("", url.strip("".join(map(chr, range(0x21)))))
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in cleaned):
        return "control character in URL"
    match = _SCHEME.match(cleaned)
    if match is None:
        return "URL without a scheme"
    scheme = match.group(1).lower()
    if scheme not in {s.lower() for s in schemes}:
        return f"scheme {scheme!r} is not allowed (allowed: {', '.join(schemes)})"
    if scheme in ("http", "https") and not urlsplit(cleaned).netloc:
        return "http(s) URL without a host"
    return None


def locale_chain(locale: str | None, default: str) -> list[str]:
    """``"pt_br"`` → ``["pt-BR", "pt", default]``; junk or empty → ``[default]``. Pure."""
    chain: list[str] = []
    if locale and _LOCALE.match(locale.strip()):
        parts = locale.strip().replace("_", "-").split("-")
        parts = [parts[0].lower(), *(p.upper() if len(p) == 2 else p for p in parts[1:])]
        for n in range(len(parts), 0, -1):
            chain.append("-".join(parts[:n]))
    if default not in chain:
        chain.append(default)
    return chain


class Properties(dict[str, Any]):
    """A recipient's custom properties: a missing key is an empty, falsy value that chains
    (``recipient.properties.address.city`` with no address renders empty), never an error."""

    def __missing__(self, key: str) -> jinja2.ChainableUndefined:
        return jinja2.ChainableUndefined(name=key)

    @classmethod
    def of(cls, value: Any) -> Any:
        """``value`` with every JSON object in it a :class:`Properties`."""
        if isinstance(value, dict):
            return cls({k: cls.of(v) for k, v in value.items()})
        if isinstance(value, list):
            return [cls.of(v) for v in value]
        return value


def template_variables(
    message: ChannelMessage, properties: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The payload's keys plus ``user_id``, ``event_type``, ``notification_id``, ``locale`` and
    ``recipient`` (``id``, ``tenant``, ``properties``: the recipient's custom properties)."""
    try:
        data = message.data()
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise TemplateError(f"payload is not a JSON object: {exc}") from exc
    return {
        **data,
        "user_id": message.user_id,
        "event_type": message.event_type,
        "notification_id": message.notification_id,
        "locale": message.locale,
        "recipient": {
            "id": message.user_id,
            "tenant": message.tenant or "",
            "properties": Properties.of(dict(properties or {})),
        },
    }


def _one_line(value: str) -> str:
    # Subjects and titles are single-line: a newline in a header is an injection vector.
    return " ".join(value.split())


class TemplateRenderer:
    """Renders messages from a template directory; one instance per process."""

    def __init__(
        self,
        templates_dir: Path,
        default_locale: str = "en",
        *,
        cache_size: int = 2000,
        url_schemes: Collection[str] = DEFAULT_URL_SCHEMES,
        rendered_cache_size: int = 1024,
        plan_cache_size: int = PLAN_CACHE_SIZE,
    ) -> None:
        self.templates_dir = Path(templates_dir)
        self.default_locale = default_locale
        self.url_schemes = tuple(url_schemes)
        self.env = SandboxEnvironment(
            loader=jinja2.FileSystemLoader(str(self.templates_dir)),
            undefined=jinja2.StrictUndefined,
            # Asked again by every context (three per email): the answer per file name, kept.
            autoescape=functools.cache(
                jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False)
            ),
            auto_reload=False,  # compiled once; templates change with a deploy, not at run time
            cache_size=cache_size,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["safe_url"] = self._safe_url
        # By (template, channel, locale, tenant), all four from the event or the profile (an unrouted
        # event type is its own template under a default tier; a locale is any string): bounded, the
        # least recently used dropped. lru_cache hashes the key once in C, where a dict took two.
        self._resolved = functools.lru_cache(maxsize=plan_cache_size)(self._find)
        self._plans = functools.lru_cache(maxsize=plan_cache_size)(self._make_plan)
        self._reads: dict[tuple[str, str, Channel], Reads] = {}  # by file set: bounded by the disk
        self._compiled: dict[str, jinja2.Template] = {}  # by file: only names resolve() found
        # Oldest first. An OrderedDict, because evicting a plain dict's first key scans past the
        # holes every earlier eviction left at its front (hundreds, until the dict resizes).
        self._rendered: OrderedDict[tuple[object, ...], Content] = OrderedDict()
        self._rendered_max = rendered_cache_size

    def _safe_url(self, value: object) -> str:
        """The ``safe_url`` filter: every URL that reaches ``href``/``src`` in an HTML template."""
        url = str(value)
        problem = url_problem(url, self.url_schemes)
        if problem is not None:
            raise UnsafeUrl(f"{problem}: {url[:100]!r}")
        return url.strip()

    def resolve(
        self, template: str, channel: Channel, locale: str, tenant: str = ""
    ) -> tuple[str, str] | None:
        """(directory, locale): the tenant's override, else the shared template, in the first
        locale of the chain that has every file the channel needs (cached)."""
        return self._resolved(template, channel, locale, tenant)

    def _find(self, template: str, channel: Channel, locale: str, tenant: str) -> tuple[str, str] | None:
        """:meth:`resolve` from the disk, uncached."""
        files = CHANNEL_FILES[channel]
        dirs = (
            [f"{tenant}/{template}", template]
            if _NAME.match(tenant) and not tenant.startswith(".")
            else [template]
        )
        for candidate in locale_chain(locale, self.default_locale):  # the language first, then the brand
            for directory in dirs:
                base = self.templates_dir / directory / candidate
                if all((base / f).is_file() for f in files):
                    return (directory, candidate)
        return None

    def resolve_locale(self, template: str, channel: Channel, locale: str) -> str | None:
        """The first locale of the chain that has every file the channel needs (shared templates)."""
        found = self.resolve(template, channel, locale)
        return found[1] if found else None

    def render(
        self, channel: Channel, template: str, locale: str, variables: Mapping[str, Any], tenant: str = ""
    ) -> Content:
        """Render the channel's files; raise :class:`TemplateError` with a reason a human can act on."""
        if channel not in CHANNEL_FILES:
            raise TemplateError(f"channel {channel.value!r} has no templates (its adapter renders)")
        if not template or not _NAME.match(template):
            raise TemplateError(f"invalid template name {template!r}")
        found = self.resolve(template, channel, locale, tenant)
        if found is None:
            chain = locale_chain(locale, self.default_locale)
            raise TemplateError(
                f"unknown template {template!r} for channel {channel.value} "
                f"(no {'/'.join(CHANNEL_FILES[channel])} for locales {chain})"
            )
        directory, used = found
        files = CHANNEL_FILES[channel]
        scope = {**self.env.globals, **variables}  # what Template.render builds, once for every file
        out = {name: self._render_file(f"{directory}/{used}/{name}", scope) for name in files}
        if channel is Channel.EMAIL:
            return Content(
                subject=_one_line(out["email.subject.j2"]),
                html=out["email.html.j2"],
                text=out["email.txt.j2"].strip() + "\n",
                locale=used,
            )
        if channel is Channel.SMS:
            return Content(text=out["sms.txt.j2"].strip(), locale=used)
        prefix = channel.value
        return Content(
            title=_one_line(out[f"{prefix}.title.j2"]), text=out[f"{prefix}.body.j2"].strip(), locale=used
        )

    def render_message(self, message: ChannelMessage, properties: Mapping[str, Any] | None = None) -> Content:
        """The message's content: rendered, or reused from an earlier message that renders the same."""
        key = self._reuse_key(message)
        if key is not None:
            content = self._rendered.get(key)
            if content is not None:
                return content
        content = self.render(
            message.channel,
            message.template,
            message.locale,
            template_variables(message, properties),
            message.tenant or "",
        )
        if key is not None:
            if len(self._rendered) >= self._rendered_max:
                self._rendered.popitem(last=False)
            self._rendered[key] = content
        return content

    def _reuse_key(self, message: ChannelMessage) -> tuple[object, ...] | None:
        """What the message's content depends on, or None when it cannot be reused."""
        plan = self._plan(message)
        if plan is None:
            return None
        found, reads = plan
        if not reads.pure or "recipient" in reads.names:
            return None
        fields = tuple(getattr(message, name) if name in reads.names else None for name in _MESSAGE_FIELDS)
        return (found, message.channel, message.payload, *fields)

    def uses_recipient(self, message: ChannelMessage) -> bool:
        """Whether the message's templates read ``recipient`` (so its properties are worth a
        lookup); False when they cannot be found (rendering reports that)."""
        plan = self._plan(message)
        return plan is not None and "recipient" in plan[1].names

    def _plan(self, message: ChannelMessage) -> tuple[tuple[str, str], Reads] | None:
        """The message's template files (directory, locale) and what they read, with what they
        extend or include; None when they cannot be found. Cached per template, channel, locale
        and tenant."""
        return self._plans(message.template, message.channel, message.locale, message.tenant or "")

    def _make_plan(
        self, template: str, channel: Channel, locale: str, tenant: str
    ) -> tuple[tuple[str, str], Reads] | None:
        """:meth:`_plan`, uncached."""
        if channel not in CHANNEL_FILES or not _NAME.match(template or "-"):
            return None
        found = self.resolve(template, channel, locale, tenant)
        if found is None:
            return None
        reads = self._reads.get((*found, channel))
        if reads is None:
            files = tuple(f"{found[0]}/{found[1]}/{f}" for f in CHANNEL_FILES[channel])
            reads = self._reads[(*found, channel)] = template_reads(self.env, files)
        return (found, reads)

    def _render_file(self, name: str, scope: dict[str, Any]) -> str:
        """``Template.render`` without its copy of globals and variables per file (``scope`` holds
        both, and a context never writes to it)."""
        try:
            template = self._compiled.get(name)
            if template is None:
                template = self._compiled[name] = self.env.get_template(name)
            context = template.new_context(scope, shared=True)
            try:
                return self.env.concat(template.root_render_func(context))
            except Exception:
                self.env.handle_exception()  # jinja2's own traceback rewriting, then re-raised
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{name}: missing variable: {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{name}:{exc.lineno}: template syntax error: {exc.message}") from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template file not found: {exc.name}") from exc
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{name}: unsafe template operation: {exc}") from exc
        except (HeraldError, OSError, MemoryError):
            # Ours, already classified (an unsafe URL); or the machine's, not the payload's: a file
            # an include could not read now, memory. A retry may well succeed.
            raise
        except Exception as exc:  # whatever else the template raised on this payload
            # A filter on a value of the wrong type, {{ a / b }} with b = 0, range(n) past the
            # sandbox's limit, a deep recursion: the same payload fails the same way on every
            # retry, so it is the message's fault (permanent), never an internal error retried.
            raise TemplateError(
                f"{name}: cannot render with this payload: {type(exc).__name__}: {exc}"
            ) from exc
