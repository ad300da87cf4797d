"""Remove a benchmark run's rows from the development database (never a pipeline path).

``twin_state_history`` is append-only for the pipeline (migration 0050: triggers refuse UPDATE and
DELETE). A benchmark that measures on the shared development database deletes its own rows as the
table owner, with the triggers disabled inside one transaction (other sessions never see them off).

Deleting a run's rows leaves the tables' B-tree indexes as large as they were (VACUUM makes the
pages reusable, it does not shrink the index): runs that each add and delete hundreds of thousands
of rows left the development database's ``telemetry`` primary key at 824 MB for 150,000 rows,
larger than PostgreSQL's buffers, and every later run paid for it in its writers' CPU and in
autovacuum scans of the bloated indexes (benchmarks/RESULTS.md, "The development database's
indexes"). So a table the run made up a share of (:data:`REBUILD_SHARE`) gets its indexes rebuilt.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

APPEND_ONLY = {"twin_state_history": ("twin_state_history_append_only",)}
REBUILD_SHARE = 0.1  # the run's rows were at least this share of a table: its indexes are rebuilt


def delete_run_rows(conninfo: str, tables: list[str] | tuple[str, ...], prefix: str) -> None:
    """Delete rows whose twin_id starts with ``prefix-`` from ``tables``, in one transaction; then
    rebuild the indexes of the tables the run made up :data:`REBUILD_SHARE` of (concurrently: a
    flow writing meanwhile is not blocked) and vacuum the tables: their dead rows would be
    autovacuumed during the next run, on its clock."""
    deleted: dict[str, int] = {}
    with psycopg.connect(conninfo) as db, db.transaction():
        for table in tables:
            triggers = APPEND_ONLY.get(table, ())
            for trigger in triggers:
                db.execute(
                    sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(trigger))
                )
            delete = sql.SQL("DELETE FROM {} WHERE twin_id LIKE %s").format(sql.Identifier(table))
            deleted[table] = db.execute(delete, (prefix + "-%",)).rowcount
            for trigger in triggers:
                db.execute(
                    sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(trigger))
                )
    with psycopg.connect(conninfo, autocommit=True) as db:  # (VACUUM and REINDEX CONCURRENTLY: no transaction)
        for table in tables:
            name = sql.Identifier(table)
            if deleted[table] and deleted[table] >= REBUILD_SHARE * (deleted[table] + _rows(db, table)):
                db.execute(sql.SQL("REINDEX TABLE CONCURRENTLY {}").format(name))
            db.execute(sql.SQL("VACUUM (ANALYZE) {}").format(name))


def _rows(db: psycopg.Connection, table: str) -> int:
    """The table's rows now (exact: the benchmarks' tables hold little besides their runs)."""
    return db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]  # type: ignore[index]
