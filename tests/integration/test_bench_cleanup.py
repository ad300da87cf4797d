"""A benchmark's cleanup leaves the development database's indexes as small as its rows need."""

import uuid

import psycopg
import pytest

from benchmarks.cleanup import compact_indexes, delete_run_rows

pytestmark = pytest.mark.integration


def _index(db: psycopg.Connection, table: str) -> tuple[int, int]:
    """(relfilenode, bytes) of the table's primary key index: a rebuild gives it a new file."""
    row = db.execute(
        "SELECT c.relfilenode, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize(("run_rows", "other_rows", "rebuilt"), [(20_000, 100, True), (50, 5_000, False)])
def test_a_table_the_run_made_up_a_share_of_gets_its_index_rebuilt(stack_settings, run_rows, other_rows, rebuilt):
    conninfo, table, prefix = stack_settings.postgres.conninfo(), f"cleanup_probe_{uuid.uuid4().hex[:8]}", "run1"
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (twin_id text PRIMARY KEY, pad text)")
        try:
            db.execute(
                f"INSERT INTO {table} SELECT %s || g, repeat('x', 40) FROM generate_series(1, %s) g",
                (f"{prefix}-", run_rows),
            )
            db.execute(f"INSERT INTO {table} SELECT 'other-' || g, '' FROM generate_series(1, %s) g", (other_rows,))
            before = _index(db, table)

            delete_run_rows(conninfo, [table], prefix)

            after = _index(db, table)
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (other_rows,)
            assert (after[0] != before[0]) is rebuilt, (before, after)
            if rebuilt:  # the rows that stay need a fraction of the index the run's rows had grown
                assert after[1] < before[1] / 10, (before, after)
        finally:
            db.execute(f"DROP TABLE {table}")


def test_make_bench_starts_from_compact_indexes(stack_settings):
    """``compact_indexes`` rebuilds a table's indexes and names it when earlier deletes had bloated them."""
    conninfo, table = stack_settings.postgres.conninfo(), f"cleanup_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (twin_id text PRIMARY KEY, pad text)")
        try:
            db.execute(f"INSERT INTO {table} SELECT 'run-' || g, repeat('x', 40) FROM generate_series(1, 20000) g")
            db.execute(f"DELETE FROM {table} WHERE twin_id <> 'run-1'")
            db.execute(f"VACUUM {table}")  # dead rows gone, the index as large as before

            bloated = compact_indexes(conninfo, [table])
            again = compact_indexes(conninfo, [table])

            assert len(bloated) == 1 and bloated[0].startswith(f"{table}: "), bloated
            assert again == []  # nothing left to shrink
            assert db.execute(f"SELECT twin_id FROM {table}").fetchall() == [("run-1",)]
        finally:
            db.execute(f"DROP TABLE {table}")
