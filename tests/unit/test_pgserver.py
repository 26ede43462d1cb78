"""The tests' PostgreSQL: a database per test, on the server tests/pgserver.py found."""

from __future__ import annotations

from tests import pgserver


def test_each_test_gets_an_empty_database_of_its_own(pg_database: str, pg_server: pgserver.Server) -> None:
    (rows,) = pgserver.execute(pg_database, "SELECT current_database() AS name")
    name = rows[0]["name"]  # type: ignore[index]
    assert name.startswith("qc_")
    (tables,) = pgserver.execute(pg_database, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'")
    assert tables[0]["n"] == 0  # type: ignore[index]
    pgserver.execute(pg_database, "CREATE TABLE t (x int)")
    assert pgserver.answers(pg_server.admin_url)
