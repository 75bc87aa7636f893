"""The user's own settings and signals: preferences, quiet hours, push devices, push receipts.

The classifier caches profiles for ``classifier.lookup_cache_ttl_s``: a change made here takes
effect within that time.
"""

from __future__ import annotations

import functools
import logging
import zoneinfo
from datetime import UTC, datetime, time
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Path, Response
from fastapi.exceptions import RequestValidationError

from consumers.api.deps import Ctx, User, invalid, kafka_down
from consumers.api.models import (
    Device,
    DeviceIn,
    DeviceList,
    PreferenceOut,
    PreferencesIn,
    PreferencesOut,
    QuietHours,
    ReceiptIn,
    ReceiptOut,
)
from consumers.api.preferences import preference_view, reject_changes
from consumers.api.problems import ProblemError, problem_responses
from consumers.runtime import metrics
from schemas.models import Channel, Receipt, ReceiptStatus

log = logging.getLogger(__name__)

__all__ = ["router"]

_MAX_RECEIPT_SKEW_S = 86_400.0
_TOKEN_PATH = r"^[\x21-\x7e]+$"


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


async def _preferences(ctx: Ctx, user_id: str, tenant: str) -> PreferencesOut:
    rows = await ctx.pool.fetch(
        "SELECT category, channel, enabled FROM herald_preferences WHERE tenant = $1 AND user_id = $2",
        tenant,
        user_id,
    )
    stored = {(r["category"], Channel(r["channel"])): bool(r["enabled"]) for r in rows}
    digest = await ctx.pool.fetchval(
        "SELECT digest FROM herald_recipients WHERE tenant = $1 AND user_id = $2", tenant, user_id
    )
    return PreferencesOut(
        digest=digest is not False,  # no recipients row: on
        preferences=[
            PreferenceOut(
                category=e.category, channel=e.channel, enabled=e.enabled, default=e.default, locked=e.locked
            )
            for e in preference_view(ctx.slots, stored)
        ],
    )


def _quiet_out(timezone: str, start: time | None, end: time | None) -> QuietHours:
    return QuietHours(
        timezone=timezone,
        start=start.strftime("%H:%M") if start else None,
        end=end.strftime("%H:%M") if end else None,
    )


def _quiet_window(body: QuietHours) -> tuple[time | None, time | None]:
    """The quiet window a PUT asks for, checked: a known zone, both ends or neither, not empty."""
    if body.timezone not in _zones():
        raise invalid(
            ("body", "timezone"),
            f"{body.timezone!r} is not an IANA time zone (e.g. Europe/Lisbon)",
            "timezone",
        )
    if (body.start is None) != (body.end is None):
        raise invalid(
            ("body", "end" if body.end is None else "start"),
            "start and end go together (both null: no quiet hours)",
            "quiet_window",
        )
    if body.start is not None and body.start == body.end:
        raise invalid(("body", "end"), "an empty window: end must differ from start", "quiet_window")
    start = time.fromisoformat(body.start) if body.start else None
    end = time.fromisoformat(body.end) if body.end else None
    return start, end


router = APIRouter(prefix="/v1")


@router.get(
    "/preferences",
    response_model=PreferencesOut,
    tags=["preferences"],
    summary="Every category x channel the user can choose, with critical ones locked",
)
async def get_preferences(who: User, ctx: Ctx) -> PreferencesOut:
    return await _preferences(ctx, who.user_id, who.tenant)


@router.put(
    "/preferences",
    response_model=PreferencesOut,
    tags=["preferences"],
    summary="Turn channels on or off per category (only the listed pairs change) and the email digest",
)
async def put_preferences(body: PreferencesIn, who: User, ctx: Ctx) -> PreferencesOut:
    changes = [(p.category, p.channel, p.enabled) for p in body.preferences]
    errors = reject_changes(ctx.slots, changes)
    if errors:
        raise RequestValidationError(
            [{"loc": ("body", "preferences", i), "msg": msg, "type": kind} for i, kind, msg in errors]
        )
    # A locked pair is always on: storing it would only mislead a reader of the table.
    kept = {(c, ch): on for c, ch, on in changes if not ctx.slots[(c, ch)].locked}
    if kept:
        await ctx.pool.execute(
            """
            INSERT INTO herald_preferences (tenant, user_id, category, channel, enabled)
            SELECT $5, $1, c, ch, e FROM unnest($2::text[], $3::text[], $4::bool[]) AS t(c, ch, e)
            ON CONFLICT (tenant, user_id, category, channel)
            DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()
            """,
            who.user_id,
            [c for c, _ in kept],
            [ch.value for _, ch in kept],
            list(kept.values()),
            who.tenant,
        )
    if body.digest is not None:
        await ctx.pool.execute(
            "INSERT INTO herald_recipients (user_id, digest, tenant) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant, user_id) DO UPDATE SET digest = EXCLUDED.digest, updated_at = now()",
            who.user_id,
            body.digest,
            who.tenant,
        )
    return await _preferences(ctx, who.user_id, who.tenant)


@router.get(
    "/quiet-hours",
    response_model=QuietHours,
    tags=["quiet hours"],
    summary="The user's time zone and quiet window (local wall-clock times)",
)
async def get_quiet_hours(who: User, ctx: Ctx) -> QuietHours:
    row = await ctx.pool.fetchrow(
        "SELECT timezone, quiet_start, quiet_end FROM herald_recipients WHERE tenant = $1 AND user_id = $2",
        who.tenant,
        who.user_id,
    )
    if row is None:
        return QuietHours()
    return _quiet_out(row["timezone"], row["quiet_start"], row["quiet_end"])


@router.put(
    "/quiet-hours",
    response_model=QuietHours,
    tags=["quiet hours"],
    summary="Set the time zone (IANA) and quiet window; start and end both null turn it off",
)
async def put_quiet_hours(body: QuietHours, who: User, ctx: Ctx) -> QuietHours:
    start, end = _quiet_window(body)
    await ctx.pool.execute(
        """
        INSERT INTO herald_recipients (user_id, timezone, quiet_start, quiet_end, tenant)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (tenant, user_id) DO UPDATE
           SET timezone = EXCLUDED.timezone, quiet_start = EXCLUDED.quiet_start,
               quiet_end = EXCLUDED.quiet_end, updated_at = now()
        """,
        who.user_id,
        body.timezone,
        start,
        end,
        who.tenant,
    )
    return _quiet_out(body.timezone, start, end)


@router.get("/devices", response_model=DeviceList, tags=["devices"], summary="The user's push devices")
async def list_devices(who: User, ctx: Ctx) -> DeviceList:
    return DeviceList(
        devices=[
            Device(token=t.token, platform=t.platform)
            for t in await ctx.devices.tokens(who.user_id, who.tenant)
        ]
    )


@router.post(
    "/devices",
    response_model=Device,
    status_code=201,
    tags=["devices"],
    summary="Register (or refresh) this device's FCM token; the user keeps the most recent "
    "HERALD_API__DEVICES_PER_USER (20)",
)
async def register_device(body: DeviceIn, who: User, ctx: Ctx) -> Device:
    previous = await ctx.devices.register(
        who.user_id, body.token, body.platform, who.tenant, keep=ctx.api.devices_per_user
    )
    if previous is not None:
        # Deliberate (docs/bad-input.md, "Smaller rules"): the token follows the device to its new
        # user. Logged without the token (a device secret); counted for the alert on bursts.
        log.info("device token moved from user %r to user %r (%s)", previous, who.user_id, body.platform)
        metrics.DEVICE_TOKENS_MOVED.inc()
    return Device(token=body.token, platform=body.platform)


@router.delete(
    "/devices/{token:path}",  # a token with an encoded "/" still reaches this route (then 422/404)
    status_code=204,
    response_class=Response,
    tags=["devices"],
    responses=problem_responses(404),
    summary="Forget a device token (logout)",
)
async def delete_device(
    who: User, ctx: Ctx, token: Annotated[str, Path(max_length=4096, pattern=_TOKEN_PATH)]
) -> Response:
    if await ctx.devices.delete(who.user_id, [token], who.tenant) == 0:
        raise ProblemError(404, "no such device")
    return Response(status_code=204)


@router.post(
    "/receipts",
    response_model=ReceiptOut,
    status_code=202,
    tags=["receipts"],
    responses=problem_responses(503),
    summary="A push was delivered to / opened on the device (published to herald.receipts)",
)
async def post_receipt(body: ReceiptIn, who: User, ctx: Ctx) -> ReceiptOut:
    now = datetime.now(UTC)
    at = body.at or now
    if abs((at - now).total_seconds()) > _MAX_RECEIPT_SKEW_S:
        raise invalid(("body", "at"), "must be within a day of now", "out_of_range")
    receipt = Receipt(
        notification_id=body.notification_id,
        user_id=who.user_id,
        status=ReceiptStatus(body.status),
        at=at,
        channel=Channel(body.channel),
        source="api",
        tenant=who.tenant,  # the fallback compares (tenant, user) with the notification's
    )
    try:
        await ctx.producer.send_and_wait(
            ctx.topics.receipts, ctx.codec.encode(receipt), key=body.notification_id.encode()
        )
    except KafkaError as exc:
        raise kafka_down("receipt not recorded") from exc
    return ReceiptOut(notification_id=body.notification_id, status=body.status, published=True)
