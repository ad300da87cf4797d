"""PostgreSQL from Debian's packages, with a cluster initialised under the stack folder.

``initdb`` and ``postgres`` refuse to run as root, so as root they run as the
``postgres`` user the package creates. The cluster listens on 127.0.0.1 only and
uses scram-sha-256 passwords; a ``twinflow`` role owns the ``twinflow`` database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

from twinflow.stack.base import Service
from twinflow.stack.process import (
    StackError,
    apt_install,
    is_root,
    port_open,
    require_port_free,
    run_checked,
)

CONF = """\
# written by `twinflow stack up`
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
password_encryption = 'scram-sha-256'
max_connections = 100
shared_buffers = '256MB'
work_mem = '16MB'
maintenance_work_mem = '128MB'
max_wal_size = '2GB'
checkpoint_timeout = '10min'
wal_compression = {wal_compression}
logging_collector = off
log_min_messages = warning
"""

HBA = """\
# written by `twinflow stack up`
local   all all                 scram-sha-256
host    all all 127.0.0.1/32    scram-sha-256
host    all all ::1/128         scram-sha-256
"""


def postgres_bindir() -> Path | None:
    """Newest installed server's bin directory (Debian layout), if any."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def wal_compression(bindir: Path) -> str:
    """``lz4`` for a PostgreSQL 15+ built with it (Debian's is), else ``on`` (pglz; 14 takes only that).

    Full-page images in the WAL compressed with lz4 cost the local stack's PostgreSQL ≈ 8 % less CPU
    per reading than pglz, the same output (benchmarks/RESULTS.md, "wal_compression lz4").

    >>> wal_compression(Path("/usr/lib/postgresql/14/bin")), wal_compression(Path("/nowhere/bin"))
    ('on', 'on')
    """
    version, pg_config = bindir.parent.name, bindir / "pg_config"  # Debian's layout: .../<major>/bin
    if not version.isdigit() or int(version) < 15 or not pg_config.exists():
        return "on"
    try:
        configure = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "on"
    return "lz4" if "--with-lz4" in configure else "on"


class Postgres(Service):
    name = "postgres"
    start_timeout = 60.0

    @property
    def port(self) -> int:
        return self.settings.stack.postgres_port

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def install(self) -> None:
        if postgres_bindir() is None:
            apt_install(["postgresql", "postgresql-client"], "PostgreSQL is not installed")
        if postgres_bindir() is None:
            raise StackError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin.")

    def _as_owner(self, cmd: list[str]) -> list[str]:
        """Run as the `postgres` user when we are root (initdb/postgres refuse root)."""
        if not is_root():
            return cmd
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "running as root but no `postgres` user exists; reinstall the postgresql package."
            ) from None
        return ["runuser", "-u", "postgres", "--", *cmd]

    def _chown(self, path: Path) -> None:
        if is_root():
            shutil.chown(path, "postgres", "postgres")

    def _check_traversable(self) -> None:
        if not is_root():
            return
        res = subprocess.run(self._as_owner(["test", "-w", str(self.dir)]))
        if res.returncode != 0:
            raise StackError(
                f"the postgres user cannot write {self.dir}: every parent folder must be "
                "searchable (chmod o+x) or set TWINFLOW_STACK__DIR to a folder it can reach."
            )

    def start(self) -> None:
        bindir = postgres_bindir()
        assert bindir is not None
        require_port_free(self.port, "postgres", self.port_setting)
        sockets = self.dir / "run"
        for d in (self.dir, sockets):
            d.mkdir(parents=True, exist_ok=True)
            self._chown(d)
        self._check_traversable()
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.dir / ".pwfile"
            pwfile.write_text(self.settings.stack.postgres_superuser_password.get_secret_value())
            os.chmod(pwfile, 0o600)
            self._chown(pwfile)
            try:
                run_checked(
                    self._as_owner(
                        [
                            str(bindir / "initdb"),
                            "-D",
                            str(self.data),
                            "-U",
                            "postgres",
                            "--auth=scram-sha-256",
                            f"--pwfile={pwfile}",
                            "-E",
                            "UTF8",
                            "--locale=C.UTF-8",
                        ]
                    ),
                    "initdb",
                )
            finally:
                pwfile.unlink(missing_ok=True)
        (self.data / "postgresql.auto.conf").write_text(self._conf_text(sockets, bindir))
        (self.data / "pg_hba.conf").write_text(self._hba_text())
        for f in ("postgresql.auto.conf", "pg_hba.conf"):
            self._chown(self.data / f)
        self.log.touch()
        self._chown(self.log)
        run_checked(
            self._as_owner(
                [str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"]
            ),
            "starting PostgreSQL",
        )

    def _conf_text(self, sockets: Path, bindir: Path) -> str:
        """The server's settings; ``bindir``: its programs (``start`` found them)."""
        return CONF.format(port=self.port, sockets=sockets, wal_compression=wal_compression(bindir))

    def _hba_text(self) -> str:
        return HBA

    def pid(self) -> int | None:
        from twinflow.stack.process import pid_alive, read_pid

        pid = read_pid(self.data / "postmaster.pid")
        return pid if pid_alive(pid) else None

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        import psycopg

        try:
            with psycopg.connect(self._superuser_conninfo(), connect_timeout=3) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False

    def _superuser_conninfo(self, dbname: str = "postgres") -> str:
        return self.settings.postgres.conninfo(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.settings.stack.postgres_superuser_password.get_secret_value(),
            dbname=dbname,
            **self._superuser_tls(),
        )

    def _superuser_tls(self) -> dict[str, str]:
        """libpq's TLS settings of the superuser's connections (none on the plain stack)."""
        return {"sslmode": "disable"}

    def after_start(self) -> None:
        """Create the application role and database (idempotent)."""
        import psycopg
        from psycopg import sql

        pg = self.settings.postgres
        with psycopg.connect(self._superuser_conninfo(), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_roles where rolname = %s", (pg.user,)).fetchone()
            verb = "alter" if exists else "create"
            conn.execute(
                sql.SQL(verb + " role {} login password {}").format(
                    sql.Identifier(pg.user), sql.Literal(pg.password.get_secret_value())
                )
            )
            if not conn.execute("select 1 from pg_database where datname = %s", (pg.dbname,)).fetchone():
                self._create_database(conn, pg.dbname)

    def fresh_database(self, name: str) -> None:
        """Drop the database ``name`` (its sessions ended) and create it again, empty, owned by the
        application role (the demo's own database)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._superuser_conninfo(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            self._create_database(conn, name)

    def _create_database(self, conn: Any, name: str) -> None:
        from psycopg import sql

        conn.execute(
            sql.SQL("create database {} owner {}").format(
                sql.Identifier(name), sql.Identifier(self.settings.postgres.user)
            )
        )

    def down(self) -> None:
        bindir = postgres_bindir()
        if bindir is None or not self.running():
            return
        run_checked(
            self._as_owner([str(bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            "stopping PostgreSQL",
        )
