"""PostgreSQL in the secure profile: ``ssl = on``, one ``hostssl … scram-sha-256 clientcert=verify-ca``
line, a random superuser password and least-privilege login roles (their grants are in the migrations).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from twinflow.settings import Settings, read_secret_file
from twinflow.stack.postgres import Postgres
from twinflow.stack.secure.material import PG_ROLES, Material

PG_TLS = """\
ssl = on
ssl_cert_file = '{cert}'
ssl_key_file = '{key}'
ssl_ca_file = '{ca}'
ssl_min_protocol_version = 'TLSv1.2'
"""

PG_HBA = """\
# written by `twinflow stack up --secure`: TLS with a client certificate and a password, nothing else
hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca
"""


class SecurePostgres(Postgres):
    def __init__(self, settings: Settings) -> None:
        self.material = Material(settings.stack.dir)
        su = read_secret_file(self.material.password_file("postgres", "postgres"), "postgres superuser")
        settings = settings.model_copy(
            update={"stack": settings.stack.model_copy(update={"postgres_superuser_password": su})}
        )
        super().__init__(settings)

    def _tls_dir(self) -> Path:
        tls = self.dir / "tls"
        tls.mkdir(exist_ok=True)
        self._chown(tls)
        os.chmod(tls, 0o700)
        for name in ("ca.pem", "server.pem", "server.key"):
            shutil.copy2(self.material.file(name), tls / name)
            os.chmod(tls / name, 0o600)
            self._chown(tls / name)
        return tls

    def _conf_text(self, sockets: Path, bindir: Path) -> str:
        tls = self._tls_dir()
        return super()._conf_text(sockets, bindir) + PG_TLS.format(
            cert=tls / "server.pem", key=tls / "server.key", ca=tls / "ca.pem"
        )

    def _hba_text(self) -> str:
        return PG_HBA

    def _superuser_tls(self) -> dict[str, str]:
        m = self.material
        return {
            "sslmode": "verify-full",
            "sslrootcert": str(m.file("ca.pem")),
            "sslcert": str(m.file("client.pem")),
            "sslkey": str(m.file("client.key")),
        }

    def after_start(self) -> None:
        """Roles with their own passwords; the database belongs to ``twinflow``; PUBLIC gets nothing."""
        import psycopg
        from psycopg import sql

        db = self.settings.postgres.dbname
        with psycopg.connect(self._superuser_conninfo(), autocommit=True) as conn:
            for role in PG_ROLES[1:]:
                exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
                conn.execute(
                    sql.SQL("{} role {} login password {}").format(
                        sql.SQL("alter" if exists else "create"),
                        sql.Identifier(role),
                        sql.Literal(self.material.password("postgres", role)),
                    )
                )
            if not conn.execute("select 1 from pg_database where datname = %s", (db,)).fetchone():
                conn.execute(sql.SQL("create database {} owner twinflow").format(sql.Identifier(db)))
            conn.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(db)))
            conn.execute(
                sql.SQL("grant connect, temporary on database {} to twinflow_ingest").format(sql.Identifier(db))
            )
            conn.execute(sql.SQL("grant connect on database {} to twinflow_audit_writer").format(sql.Identifier(db)))
            # The twin flow's sink stages batches in temporary tables; people's CLI only reads.
            conn.execute(sql.SQL("grant connect, temporary on database {} to twinflow_twin").format(sql.Identifier(db)))
            conn.execute(sql.SQL("grant connect on database {} to twinflow_operator").format(sql.Identifier(db)))
        with psycopg.connect(self._superuser_conninfo(db), autocommit=True) as conn:
            conn.execute("revoke all on schema public from public")
            conn.execute(
                "grant usage on schema public"
                " to twinflow_ingest, twinflow_audit_writer, twinflow_twin, twinflow_operator"
            )
