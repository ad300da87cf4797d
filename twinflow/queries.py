"""Named SQL queries from ``sql/queries/<name>.sql`` (psycopg ``%(param)s`` placeholders).

>>> {'alert_mtta_mttr', 'fleet_health'} <= set(names())
True
>>> load("fleet_health") is load("fleet_health")  # read once
True
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from twinflow.settings import PROJECT_ROOT

QUERIES_DIR = PROJECT_ROOT / "sql" / "queries"


def names(directory: Path = QUERIES_DIR) -> list[str]:
    """The available query names."""
    return [p.stem for p in sorted(directory.glob("*.sql"))]


@cache
def load(name: str, directory: Path = QUERIES_DIR) -> str:
    """The SQL text of a named query, read once per process (a file changed later is not read again); a clear
    error lists the names when it does not exist."""
    path = directory / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no query {name!r} in {directory}; available: {', '.join(names(directory))}")
    return path.read_text()


def run(conn: psycopg.Connection, name: str, **params: Any) -> list[dict[str, Any]]:
    """Run a named query with its parameters; rows as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(load(name), params)
        return cur.fetchall()
