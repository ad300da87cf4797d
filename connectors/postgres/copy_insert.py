"""An idempotent batch insert by binary COPY: straight into the table, staging only when rows are stored.

The usual batch holds only new rows: it is binary-COPied straight into the table under a savepoint
(a fraction of the client and server CPU of one ``INSERT`` per row). The table's primary key
rejects a batch holding a row that is already stored, or one repeated inside the batch, with a
unique violation; then the savepoint is rolled back and the batch is written the
duplicate-tolerant way: binary COPY into a temporary staging table (``LIKE`` the table) and
``INSERT … SELECT … ON CONFLICT …`` with the table's own conflict rule (``DO NOTHING``, or an
upsert whose repeated rows are reduced to the last one first). A connection whose batch needed
that stages its next batches into the same table until one is all new, so a replayed epoch costs
one failed COPY, not one per batch.

>>> scores = CopyTable("anomaly_scores", ("twin_id", "ts", "score"), ("text", "timestamptz", "float8"),
...                    ("twin_id", "ts"), "DO UPDATE SET score = EXCLUDED.score")
>>> scores.stage
'anomaly_scores_stage'
>>> print(scores.setup)
CREATE TEMP TABLE IF NOT EXISTS anomaly_scores_stage (LIKE anomaly_scores INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyTable:
    """A table written by :class:`CopyInsert`: its columns (in row order) with their PostgreSQL
    types, its key columns (the primary key's) and what a conflict on them does."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]
    on_conflict: str = "DO NOTHING"  # or "DO UPDATE SET …" (then the last of repeated rows wins)

    @property
    def stage(self) -> str:
        return f"{self.table}_stage"

    @property
    def setup(self) -> str:
        """The staging table, per connection (a sink's ``setup`` statement)."""
        return (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} (LIKE {self.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )

    def copy(self, into: str) -> sql.Composed:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(into), cols)

    @cached_property
    def move(self) -> sql.Composed:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        key = sql.SQL(", ").join(map(sql.Identifier, self.key))
        # an upsert tells inserted rows (xmax = 0) from updated ones: only a batch of new rows ends staging
        returning = "" if self.on_conflict == "DO NOTHING" else " RETURNING (xmax = 0)"
        return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}{}").format(
            sql.Identifier(self.table), cols, cols, sql.Identifier(self.stage), key, sql.SQL(self.on_conflict),
            sql.SQL(returning),
        )  # fmt: skip

    @cached_property
    def key_index(self) -> tuple[int, ...]:
        return tuple(self.columns.index(k) for k in self.key)


class CopyInsert:
    """Writes batches of row tuples into :class:`CopyTable` tables inside the caller's transaction;
    remembers, per connection and table, whether the next batch goes through staging."""

    def __init__(self) -> None:
        self._staging: weakref.WeakKeyDictionary[psycopg.Connection, set[str]] = weakref.WeakKeyDictionary()

    def write(self, cur: psycopg.Cursor, spec: CopyTable, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert ``rows`` (a conflict does what ``spec`` says); returns the rows inserted or changed."""
        staging = self._staging.setdefault(cur.connection, set())
        if spec.table not in staging:
            savepoint = sql.Identifier(f"copy_{spec.table}")
            cur.execute(sql.SQL("SAVEPOINT {}").format(savepoint))
            try:
                copy_binary(cur, spec.copy(spec.table), spec.types, rows)
                return len(rows)
            except psycopg.errors.UniqueViolation:
                cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(savepoint))
        upsert = spec.on_conflict != "DO NOTHING"
        if upsert:  # an upsert may not touch a row twice in one statement: the last one wins
            rows = list({tuple(r[i] for i in spec.key_index): r for r in rows}.values())
        copy_binary(cur, spec.copy(spec.stage), spec.types, rows)
        cur.execute(spec.move)
        changed = cur.rowcount
        new = sum(1 for (inserted,) in cur.fetchall() if inserted) if upsert else changed
        if spec.table in staging and new == len(rows):
            staging.discard(spec.table)
            log.info("%s batch of %d rows all new: back to COPY", spec.table, len(rows))
        elif spec.table not in staging and new < len(rows):
            staging.add(spec.table)
            log.info("%s batch held %d stored or repeated rows: staging", spec.table, len(rows) - new)
        return changed


def copy_binary(
    cur: psycopg.Cursor, statement: str | sql.Composed, types: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Send ``rows`` (values in ``types`` order) through one ``COPY … FROM STDIN (FORMAT BINARY)``."""
    with cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
