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
from consumers.api.admin.keys import Scope, allows, looks_like_key
from consumers.api.deps import ApiContext
from consumers.api.problems import ProblemError

__all__ = ["Caller", "admin_ctx", "require"]

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


async def _admit_lookup(request: Request, admin: AdminContext) -> None:
    """Bound the PostgreSQL lookups one client address can cause: a random ``hrk_`` id is never
    cached, so without this each request with one costs a query before any rate limit."""
    if admin.lookups is None:
        return
    client = request.client.host if request.client else "unknown"
    decision = await admin.lookups.hit(f"lookup:{client}")
    if not decision.allowed:
        raise ProblemError(
            429,
            f"more than {decision.limit} unrecognised API keys from this address; retry later",
            kind="rate-limited",
            headers={"Retry-After": str(max(1, round(decision.reset_s)))},
        )


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
        if not admin.keys.cached(creds.credentials):
            await _admit_lookup(request, admin)
        key = await admin.keys.verify(creds.credentials)
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
