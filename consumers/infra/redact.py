"""Hiding the passwords in connection URLs: the one helper every error, log line and listing uses.

``DATABASE_URL`` and ``REDIS_URL`` carry credentials; Herald keeps them as ``SecretStr`` and
prints them only through :func:`redact_url`, which keeps what an operator needs to debug a
connection (scheme, user, host, port, database) and masks the rest.
"""

from __future__ import annotations

import re

from pydantic import SecretStr

__all__ = ["MASK", "redact_url"]

MASK = "***"
# libpq and asyncpg also take the password as a parameter: ?password=... or "password=... host=..."
_PASSWORD_PARAM = re.compile(r"(?i)\b(password|passwd|pass)=[^&\s]*")


def redact_url(url: str | SecretStr) -> str:
    """``url`` with its password (userinfo or ``password=`` parameter) replaced by ``***``. Pure.

    ``postgresql://app:s3cret@db:5432/herald`` → ``postgresql://app:***@db:5432/herald``.
    """
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    scheme, sep, rest = raw.partition("://")
    if sep:
        # The userinfo ends at the last "@" before the query: a password may contain "@", never "?"
        # unescaped (and an escaped one is masked whole either way).
        authority_path, question, query = rest.partition("?")
        userinfo, at, host_path = authority_path.rpartition("@")
        if at:
            user, colon, _ = userinfo.partition(":")
            authority_path = f"{user}:{MASK}@{host_path}" if colon else f"{user}@{host_path}"
        raw = f"{scheme}://{authority_path}{question}{query}"
    return _PASSWORD_PARAM.sub(lambda m: f"{m.group(1)}={MASK}", raw)
