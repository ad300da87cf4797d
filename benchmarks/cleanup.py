"""Remove a benchmark run's rows from the development database (never a pipeline path).

``twin_state_history`` is append-only for the pipeline (migration 0050: triggers refuse UPDATE and
DELETE). A benchmark that measures on the shared development database deletes its own rows as the
table owner, with the triggers disabled inside one transaction (other sessions never see them off).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

APPEND_ONLY = {"twin_state_history": ("twin_state_history_append_only",)}


def delete_run_rows(conninfo: str, tables: list[str] | tuple[str, ...], prefix: str) -> None:
    """Delete rows whose twin_id starts with ``prefix-`` from ``tables``, in one transaction, then
    vacuum the tables: their dead rows would be autovacuumed during the next run, on its clock."""
    with psycopg.connect(conninfo) as db, db.transaction():
        for table in tables:
            triggers = APPEND_ONLY.get(table, ())
            for trigger in triggers:
                db.execute(
                    sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(trigger))
                )
            db.execute(sql.SQL("DELETE FROM {} WHERE twin_id LIKE %s").format(sql.Identifier(table)), (prefix + "-%",))
            for trigger in triggers:
                db.execute(
                    sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(trigger))
                )
    with psycopg.connect(conninfo, autocommit=True) as db:  # (VACUUM runs outside a transaction)
        for table in tables:
            db.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
