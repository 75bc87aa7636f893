"""``/v1/providers/...``: feedback from providers, authenticated by the provider's own signature.

* ``POST /v1/providers/ses/events``: SES event publishing (configuration set → SNS topic →
  HTTPS subscription). Off (404) until ``HERALD_PROVIDERS__FEEDBACK__SNS_TOPIC_ARNS`` lists the
  topics: a message or subscription of any other topic is a 403. The SNS signature is verified against a certificate fetched only from an
  SNS host; SubscriptionConfirmation is confirmed; Bounce/Complaint/Delivery are applied.
* ``POST /v1/providers/twilio/status``: Twilio status callbacks, ``X-Twilio-Signature`` checked
  against ``HERALD_TWILIO__STATUS_CALLBACK_URL``.

No bearer token: providers cannot send one. Anything not genuine is a 403.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from channels.sms.twilio_signature import verify_twilio
from consumers.api.deps import Ctx
from consumers.api.feedback import ProviderFeedback, Rejected
from consumers.api.problems import ProblemError, problem_responses

__all__ = ["router"]


def _feedback(ctx: Ctx) -> ProviderFeedback:
    if ctx.feedback is None:
        raise ProblemError(404, "provider feedback is not enabled")
    return ctx.feedback


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/providers", tags=["providers"])

    @r.post(
        "/ses/events",
        responses=problem_responses(400, 403, 404),
        summary="SES events through an SNS HTTPS subscription (signature-verified)",
    )
    async def ses_events(request: Request, ctx: Ctx) -> JSONResponse:
        feedback = _feedback(ctx)
        if not feedback.ses_enabled:
            raise ProblemError(404, "SES feedback is off: set HERALD_PROVIDERS__FEEDBACK__SNS_TOPIC_ARNS")
        try:
            message: Any = json.loads(await request.body())  # SNS posts JSON as text/plain
        except ValueError:
            raise ProblemError(400, "body is not JSON") from None
        if not isinstance(message, dict):
            raise ProblemError(400, "body is not an SNS message")
        try:
            kind = await feedback.sns_message(message)
        except Rejected as exc:
            raise ProblemError(403, str(exc)) from exc
        return JSONResponse({"ok": True, "applied": kind})

    @r.post(
        "/twilio/status",
        responses=problem_responses(403, 404),
        summary="Twilio message status callbacks (X-Twilio-Signature-verified)",
    )
    async def twilio_status(request: Request, ctx: Ctx) -> JSONResponse:
        feedback = _feedback(ctx)
        token, base = feedback.twilio_auth_token, feedback.twilio_callback_url
        if not token or not base:
            raise ProblemError(404, "Twilio status callbacks are not enabled")
        params = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        query = request.url.query
        url = f"{base}{'&' if '?' in base else '?'}{query}" if query else base
        if not verify_twilio(token, url, params, request.headers.get("x-twilio-signature")):
            raise ProblemError(403, "bad X-Twilio-Signature")
        about = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        status = await feedback.twilio_status(params, notification_id=about.get("n"), user_id=about.get("u"))
        return JSONResponse({"ok": True, "applied": status})

    return r
