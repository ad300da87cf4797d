"""Remove a benchmark run's rows from the development database (never a pipeline path).

``twin_state_history`` is append-only for the pipeline (migration 0050: triggers refuse UPDATE and
DELETE). A benchmark that measures on the shared development database deletes its own rows as the
table owner, with the triggers disabled inside one transaction (other sessions never see them off).

Deleting a run's rows leaves the tables' B-tree indexes as large as they were (VACUUM makes the
pages reusable, it does not shrink the index): runs that each add and delete hundreds of thousands
of rows left the development database's ``telemetry`` primary key at 824 MB for 150,000 rows,
larger than PostgreSQL's buffers, and every later run paid for it in its writers' CPU and in
autovacuum scans of the bloated indexes (benchmarks/RESULTS.md, "The development database's
indexes"). So a table the run made up a share of (:data:`REBUILD_SHARE`) gets its indexes rebuilt,
and ``make bench`` rebuilds them before it measures (:func:`compact_indexes`: a database bloated
before this cleanup existed).
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
    for attempt in range(3):  # another run's REINDEX CONCURRENTLY waits for this transaction: a deadlock, retried
        try:
            with psycopg.connect(conninfo) as db, db.transaction():
                deleted = {
                    table: delete_rows(db, table, sql.SQL("twin_id LIKE %s"), (prefix + "-%",)) for table in tables
                }
            break
        except psycopg.errors.DeadlockDetected:
            if attempt == 2:
                raise
    with psycopg.connect(conninfo, autocommit=True) as db:  # (REINDEX CONCURRENTLY, VACUUM: no transaction)
        for table in tables:
            if deleted[table] and deleted[table] >= REBUILD_SHARE * (deleted[table] + _rows(db, table)):
                _reindex(db, table)
            _vacuum(db, table)


def delete_rows(db: psycopg.Connection, table: str, where: sql.Composable, params: tuple) -> int:
    """``DELETE FROM table WHERE …`` as the table's owner, an append-only table's triggers off for it;
    call it inside a transaction (other sessions never see the triggers off). Returns the rows deleted."""
    triggers = APPEND_ONLY.get(table, ())
    for trigger in triggers:
        db.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(trigger)))
    deleted = db.execute(sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table), where), params).rowcount
    for trigger in triggers:
        db.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(trigger)))
    return deleted


def vacuum(conninfo: str, tables: list[str] | tuple[str, ...]) -> None:
    """``VACUUM (ANALYZE)`` each of ``tables`` now: what autovacuum would otherwise do later, during
    whatever is measured then (it starts on a table once a fifth of its rows are new or deleted)."""
    with psycopg.connect(conninfo, autocommit=True) as db:
        for table in tables:
            _vacuum(db, table)


def compact_indexes(conninfo: str, tables: list[str] | tuple[str, ...]) -> list[str]:
    """Rebuild the indexes of ``tables`` (concurrently); returns ``"table: before → after"`` for each
    table whose indexes shrank by more than half (bloat left by earlier runs)."""
    shrunk = []
    with psycopg.connect(conninfo, autocommit=True) as db:
        for table in tables:
            before = _index_bytes(db, table)
            _reindex(db, table)
            after = _index_bytes(db, table)
            if after < before / 2:
                shrunk.append(f"{table}: {before / 2**20:,.0f} → {after / 2**20:,.0f} MiB")
    return shrunk


def _reindex(db: psycopg.Connection, table: str) -> None:
    """Rebuild the table's indexes without blocking its writers (an autocommit connection: no transaction)."""
    db.execute(sql.SQL("REINDEX TABLE CONCURRENTLY {}").format(sql.Identifier(table)))


def _vacuum(db: psycopg.Connection, table: str) -> None:
    db.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))  # (autocommit: no transaction)


def _index_bytes(db: psycopg.Connection, table: str) -> int:
    return db.execute("SELECT pg_indexes_size(%s::regclass)", (table,)).fetchone()[0]  # type: ignore[index]


def _rows(db: psycopg.Connection, table: str) -> int:
    """The table's rows now (exact: the benchmarks' tables hold little besides their runs)."""
    return db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]  # type: ignore[index]
