"""Admin API keys as console credentials, over the API keys' store (``herald keys create --scopes
admin``; :mod:`consumers.api.admin.key_store`).

The console asks one question of a key (:class:`~consumers.console.auth.OperatorVerifier`): is it a
live key holding the ``admin`` scope? Any other key (``emit``, ``recipients:write``...), a revoked
one, or one bound to a tenant gets nothing: the console sees every tenant's activity, so only an
unbound admin key may open it. The session remembers the key's id and ends when the key is revoked.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.api.admin.key_store import KeyStore, ServiceKey
from consumers.api.admin.keys import Scope, allows
from consumers.console.auth import Operator, OperatorVerifier

__all__ = ["AdminKeys", "may_operate", "operator_keys"]


def may_operate(key: ServiceKey) -> bool:
    """Pure: an admin key bound to no tenant."""
    return key.tenant is None and allows(key.scopes, Scope.ADMIN)


@dataclass(frozen=True)
class AdminKeys:
    keys: KeyStore

    async def verify(self, credential: str) -> Operator | None:
        key = await self.keys.verify(credential)
        if key is None or not may_operate(key):
            return None
        return Operator(f"key:{key.key_id} ({key.name})", key_id=key.key_id)


def operator_keys(keys: KeyStore | None) -> OperatorVerifier | None:
    """The admin-key verifier for the console; None when the API has no key store (no pepper set),
    and then operators log in with one-time links only."""
    return AdminKeys(keys) if keys is not None else None
