"""Which service keys may open the console (pure)."""

from __future__ import annotations

import pytest

from consumers.api.admin.key_store import ServiceKey
from consumers.console.operator_keys import may_operate


@pytest.mark.parametrize(
    ("scopes", "tenant", "ok"),
    [
        (("admin",), None, True),
        (("emit", "admin"), None, True),
        (("admin",), "acme", False),  # a tenant's key never sees other tenants' activity
        (("emit",), None, False),
        (("recipients:write", "topics:write"), None, False),
        (("Admin",), None, False),
        ((), None, False),
    ],
)
def test_only_unbound_admin_keys(scopes: tuple[str, ...], tenant: str | None, ok: bool) -> None:
    assert may_operate(ServiceKey("0123456789ab", "ops", scopes, tenant)) is ok
