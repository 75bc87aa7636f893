"""Connection URLs lose their password and keep what an operator needs to debug a connection."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from consumers.infra.redact import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/herald", "postgresql://app:***@db:5432/herald"),
        ("postgresql://app@db/herald", "postgresql://app@db/herald"),  # nothing to hide
        ("postgresql://postgres:@/postgres?host=/tmp/pg", "postgresql://postgres:***@/postgres?host=/tmp/pg"),
        ("postgres://u:p@ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),  # unescaped @
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),  # unescaped /
        ("postgresql:///db?host=/tmp&password=zz&user=u", "postgresql:///db?host=/tmp&password=***&user=u"),
        ("host=db password=zz dbname=herald", "host=db password=*** dbname=herald"),  # libpq keywords
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://default:pw@cache:6380/1", "rediss://default:***@cache:6380/1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("", ""),
    ],
)
def test_table(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(SecretStr(url)) == expected


@given(password=st.text(min_size=1), user=st.text(alphabet="abcdefghij_", min_size=1, max_size=8))
def test_any_escaped_password_is_masked_whole(password: str, user: str) -> None:
    url = f"postgresql://{user}:{quote(password, safe='')}@db.internal:5432/herald?sslmode=require"
    assert redact_url(url) == f"postgresql://{user}:***@db.internal:5432/herald?sslmode=require"


@given(password=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="?#"), min_size=8))
def test_an_unescaped_password_never_shows(password: str) -> None:
    shown = redact_url(f"redis://app:{password}@cache:6379/0")
    assert shown == "redis://app:***@cache:6379/0"
