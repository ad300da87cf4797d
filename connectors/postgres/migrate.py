"""Versioned SQL migrations from ``sql/migrations``, recorded in ``twinflow_migrations``.

Files are named ``NNNN_name.sql`` and applied in order, each in its own transaction,
through the simple query protocol (so they also run on TimescaleDB-in-WASM).
Re-running is safe: applied versions are skipped; an applied file whose content
changed is an error (write a new migration instead).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "sql" / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(f"{path}: migration files must be named NNNN_lower_snake.sql (e.g. 0002_alerts.sql)")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return found


def enable_timescaledb(conn: psycopg.Connection, mode: str) -> bool:
    """Create the extension when wanted and available; returns whether it is active."""
    if mode == "off":
        return False
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if available:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.errors.InsufficientPrivilege as exc:
            if mode == "on":
                raise MigrationError(
                    "timescaledb is available but this role may not create it; run "
                    "`CREATE EXTENSION timescaledb` as a superuser once"
                ) from exc
            conn.rollback()
    active = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if mode == "on" and not active:
        raise MigrationError(
            "postgres.timescaledb = 'on' but the server has no timescaledb extension; "
            "install TimescaleDB or set TWINFLOW_POSTGRES__TIMESCALEDB=auto"
        )
    return bool(active)


def migrate(conninfo: str, timescaledb: str = "auto", directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    migrations = discover(directory)
    applied_now = []
    with psycopg.connect(conninfo) as conn:
        enable_timescaledb(conn, timescaledb)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS twinflow_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        done = {v: c for v, c in conn.execute("SELECT version, checksum FROM twinflow_migrations")}
        for mig in migrations:
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"{mig.path}: already applied with different content; migrations are "
                        "immutable once applied, add a new NNNN_*.sql file instead"
                    )
                continue
            with conn.transaction():
                conn.execute(mig.sql)
                # Literal values: the simple query protocol keeps this WASM-TimescaleDB friendly.
                conn.execute(
                    "INSERT INTO twinflow_migrations (version, name, checksum) VALUES ("
                    f"{mig.version:d}, '{mig.name}', '{mig.checksum}')"
                )
            applied_now.append(f"{mig.version:04d}_{mig.name}")
    return applied_now
