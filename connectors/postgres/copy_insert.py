"""An idempotent batch insert by binary COPY: straight into the table, staging only when rows are stored.

The usual batch holds only new rows: it is binary-COPied straight into the table under a savepoint
(a fraction of the client and server CPU of one ``INSERT`` per row). The table's primary key
rejects a batch holding a row that is already stored, or one repeated inside the batch, with a
unique violation; then the savepoint is rolled back and the batch is written the
duplicate-tolerant way: binary COPY into a temporary staging table (the written columns) and
``INSERT … SELECT … ON CONFLICT …`` with the table's own conflict rule (``DO NOTHING``, or an
upsert whose repeated rows are reduced to the last one first). A connection whose batch needed
that stages its next batches into the same table until one is all new, so a replayed epoch costs
one failed COPY, not one per batch.

A table may take rows of two widths (``short``): rows of ``short`` values fill the first ``short``
columns (the others take their defaults: ``defaults`` names those the staging table must give
them too), the full-width ones all of them; a batch is copied as
two parts then (the telemetry's plain numbers and its rarer typed readings).

>>> scores = CopyTable("anomaly_scores", ("twin_id", "ts", "score"), ("text", "timestamptz", "float8"),
...                    ("twin_id", "ts"), "DO UPDATE SET score = EXCLUDED.score")
>>> scores.stage
'anomaly_scores_stage'
>>> print(scores.setup)
CREATE TEMP TABLE IF NOT EXISTS anomaly_scores_stage (twin_id text, ts timestamptz, score float8) ON COMMIT DELETE ROWS
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
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
    short: int = 0  # rows of this many values fill only the first columns; 0: every row is full width
    defaults: tuple[tuple[str, str], ...] = ()  # (column, SQL default) of the columns short rows leave out

    @property
    def stage(self) -> str:
        return f"{self.table}_stage"

    @property
    def setup(self) -> str:
        """The staging table, per connection (a sink's ``setup`` statement): the written columns with
        their types and defaults, not ``LIKE`` the table (that needs SELECT on all of the table: a
        writer's least-privilege role may only insert)."""
        default = dict(self.defaults)
        cols = ", ".join(
            f"{c} {t}" + (f" DEFAULT {default[c]}" if c in default else "")
            for c, t in zip(self.columns, self.types, strict=True)
        )
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ({cols}) ON COMMIT DELETE ROWS"

    def copy(self, into: str, width: int | None = None) -> str:
        """COPY into ``into`` (the table or its stage) of the first ``width`` columns (default: all).
        Made once per table and width: composing it (identifiers quoted by libpq) cost a tailing
        flow's small batches more than their rows.

        >>> CopyTable("t", ("a", "b"), ("int4", "text"), ("a",)).copy("t_stage", 1)
        'COPY "t_stage" ("a") FROM STDIN (FORMAT BINARY)'
        """
        return _copy_statement(into, self.columns[:width])

    def copy_rows(self, cur: psycopg.Cursor, into: str, rows: Sequence[Sequence[Any]]) -> None:
        """Binary-COPY ``rows`` into ``into``: the short ones (if any) with their columns, then the rest."""
        if not self.short:
            copy_binary(cur, self.copy(into), self.types, rows)
            return
        full = [r for r in rows if len(r) != self.short]  # rare; a scan costs ~40 ns per row
        short = rows if not full else [r for r in rows if len(r) == self.short]
        for width, part in ((self.short, short), (len(self.columns), full)):
            if part:
                copy_binary(cur, self.copy(into, width), self.types[:width], part)

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
    remembers, per connection and table, whether the next batch goes through staging (and logs the
    switches to ``logger``: by default this module's)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._staging: weakref.WeakKeyDictionary[psycopg.Connection, set[str]] = weakref.WeakKeyDictionary()

    def write(self, cur: psycopg.Cursor, spec: CopyTable, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert ``rows`` (a conflict does what ``spec`` says); returns the rows inserted or changed."""
        staging = self._staging.setdefault(cur.connection, set())
        if spec.table not in staging:
            savepoint = sql.Identifier(f"copy_{spec.table}")
            cur.execute(sql.SQL("SAVEPOINT {}").format(savepoint))
            try:
                spec.copy_rows(cur, spec.table, rows)
                return len(rows)
            except psycopg.errors.UniqueViolation:
                cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(savepoint))
        upsert = spec.on_conflict != "DO NOTHING"
        if upsert:  # an upsert may not touch a row twice in one statement: the last one wins
            rows = list({tuple(r[i] for i in spec.key_index): r for r in rows}.values())
        spec.copy_rows(cur, spec.stage, rows)
        cur.execute(spec.move)
        changed = cur.rowcount
        new = sum(1 for (inserted,) in cur.fetchall() if inserted) if upsert else changed
        if spec.table in staging and new == len(rows):
            staging.discard(spec.table)
            self._log.info("%s batch of %d rows all new: back to COPY", spec.table, len(rows))
        elif spec.table not in staging and new < len(rows):
            staging.add(spec.table)
            self._log.info("%s batch held %d stored or repeated rows: staging", spec.table, len(rows) - new)
        return changed


@cache
def _copy_statement(into: str, columns: tuple[str, ...]) -> str:
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(into), cols).as_string(None)


def copy_binary(
    cur: psycopg.Cursor, statement: str | sql.Composed, types: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Send ``rows`` (values in ``types`` order) through one ``COPY … FROM STDIN (FORMAT BINARY)``."""
    with cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
