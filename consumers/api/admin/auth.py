"""Who may call an admin route: a service API key with the route's scope, in the right tenant.

User tokens (JWTs) are refused here, as API keys are refused on the users' routes: the two
kinds of credential never reach each other's routes. 401 means "who are you?" (no key, not a
key, unknown, revoked); 403 means "I know you, and no" (missing scope, another tenant). A key
is never logged or echoed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from consumers.api.admin.context import AdminContext
from consumers.api.admin.key_store import ServiceKey
from consumers.api.admin.keys import Scope, allows, looks_like_key, parse_key
from consumers.api.deps import ApiContext
from consumers.api.problems import ProblemError
from consumers.api.ratelimit import RateDecision

__all__ = ["Caller", "admin_ctx", "require", "verify_key"]

_REALM = 'Bearer realm="herald-admin"'
_bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey", description="A service API key (`hrk_...`).")


@dataclass(frozen=True, slots=True)
class Caller:
    key: ServiceKey
    tenant: str  # the tenant the request acts in; '' = no tenant


def admin_ctx(request: Request) -> AdminContext:
    ctx: ApiContext = request.app.state.ctx
    if ctx.admin is None or ctx.admin.keys is None:
        raise ProblemError(
            503, "the admin API is off: HERALD_ADMIN__KEY_PEPPER is not set", kind="admin-disabled"
        )
    return ctx.admin


def _unauthorized(detail: str, error: str | None = None) -> ProblemError:
    challenge = _REALM if error is None else f'{_REALM}, error="{error}"'
    return ProblemError(401, detail, kind="unauthorized", headers={"WWW-Authenticate": challenge})


def _tenant(key: ServiceKey, asked: str | None) -> str:
    if key.tenant is None:
        return asked or ""
    if asked is not None and asked != key.tenant:
        raise ProblemError(403, "this key is bound to another tenant", kind="forbidden-tenant")
    return key.tenant


def _too_many(decision: RateDecision) -> ProblemError:
    return ProblemError(
        429,
        f"more than {decision.limit} unrecognised credentials from this address; retry later",
        kind="rate-limited",
        headers={"Retry-After": str(max(1, round(decision.reset_s)))},
    )


async def verify_key(request: Request, admin: AdminContext, token: str) -> ServiceKey | None:
    """The key ``token`` names, through the failed-lookup guard (:mod:`.lookup_guard`): a lookup the
    cache cannot answer is refused (429) for a client over its limit unless this process verified
    that key id recently, and counted against the client when it finds no live, matching key."""
    assert admin.keys is not None
    host = request.client.host if request.client else None
    looked_up = not admin.keys.cached(token)
    if looked_up:
        parsed = parse_key(token)
        refused = await admin.guard.refusal(host, parsed[0] if parsed else None)
        if refused is not None:
            raise _too_many(refused)
    key = await admin.keys.verify(token)
    if key is None:
        if looked_up:
            await admin.guard.failed(host)
        return None
    admin.guard.verified(key.key_id)
    return key


def require(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency admitting keys that hold ``scope`` (or a scope implying it)."""

    async def dependency(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        herald_tenant: Annotated[
            str | None, Header(description="Tenant to act in (keys bound to a tenant may only name theirs).")
        ] = None,
    ) -> Caller:
        admin = admin_ctx(request)
        assert admin.keys is not None
        if creds is None:
            raise _unauthorized("missing API key")
        if not looks_like_key(creds.credentials):
            raise _unauthorized("admin routes take a service API key, not a user token", "invalid_token")
        key = await verify_key(request, admin, creds.credentials)
        if key is None:
            raise _unauthorized("invalid or revoked API key", "invalid_token")
        ctx: ApiContext = request.app.state.ctx
        decision = await ctx.limiter.hit(f"key:{key.key_id}")
        if not decision.allowed:
            raise ProblemError(
                429,
                f"more than {decision.limit} requests in {ctx.api.rate_limit_window_s}s",
                kind="rate-limited",
                headers={"Retry-After": str(max(1, round(decision.reset_s)))},
            )
        if not allows(key.scopes, scope):
            raise ProblemError(403, f"this key lacks the scope {scope.value!r}", kind="insufficient-scope")
        return Caller(key, _tenant(key, herald_tenant))

    return dependency
