"""How the migrator splits a no-transaction migration into the statements it sends one by one."""

from __future__ import annotations

from consumers.infra.db import MIGRATIONS, NO_TRANSACTION, statements


def test_statements_end_at_a_semicolon_that_ends_a_line() -> None:
    sql = f"{NO_TRANSACTION}\n-- why\nDROP INDEX CONCURRENTLY IF EXISTS x;\nCREATE INDEX CONCURRENTLY x\n    ON t (a, b);\n"
    assert statements(sql) == [
        "DROP INDEX CONCURRENTLY IF EXISTS x;",
        "CREATE INDEX CONCURRENTLY x\n    ON t (a, b);",
    ]
    assert statements("SELECT 1") == ["SELECT 1"]  # the last one may lack its semicolon
    assert statements("-- only a comment\n") == []


def test_every_no_transaction_migration_is_statements_the_server_takes_alone() -> None:
    # CONCURRENTLY refuses a transaction, and a string of several statements is one: each file of
    # the kind splits into statements that each say CONCURRENTLY or are plain DDL.
    found = [p for p in sorted(MIGRATIONS.glob("*.sql")) if p.read_text().startswith(NO_TRANSACTION)]
    assert found, "264 is one"
    for path in found:
        parts = statements(path.read_text())
        assert parts and all(p.count(";") == 1 and p.endswith(";") for p in parts), path.name
