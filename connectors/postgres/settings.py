"""Settings of the PostgreSQL/TimescaleDB connection: the ``[postgres]`` section (composed by
:mod:`twinflow.settings`).

>>> "dbname=twinflow" in PostgresSettings().conninfo()
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator

from connectors.config.secret_files import read_secret_file
from operators.strict import StrictModel


class PostgresSettings(StrictModel):
    host: str = "127.0.0.1"  # the database server (port: default the local stack's)
    port: int = 5432  # the server's port (default: the local stack's, stack.postgres_port)
    dbname: str = "twinflow"  # database and login role; the demo uses <dbname>_demo
    user: str = "twinflow"  # the login role
    password: SecretStr = SecretStr("twinflow")  # set it by variable or password_file, not in the file
    sslmode: str = "prefer"  # libpq sslmode: disable, prefer, require, verify-ca, verify-full
    # `auto`: use TimescaleDB when the server offers it; `on`: require it; `off`: plain PostgreSQL.
    timescaledb: str = Field("auto", pattern="^(auto|on|off)$")
    # A file holding the password (wins over `password`).
    password_file: Path | None = None
    sslrootcert: str | None = None  # the CA file that sslmode verify-ca/verify-full checks the server against
    sslcert: str | None = None  # a client certificate (libpq sslcert)
    sslkey: str | None = None  # its key (libpq sslkey)
    # Seconds to wait for a connection (libpq connect_timeout): a server that does not answer is an
    # error after this, not a command or flow that waits forever.
    connect_timeout_s: int = Field(10, ge=2)

    @model_validator(mode="after")
    def _password_from_file(self) -> PostgresSettings:
        if self.password_file is not None:
            self.password = read_secret_file(self.password_file, "postgres.password_file")
        return self

    def conninfo(self, **override: Any) -> str:
        """libpq connection string; the password is included only here, never logged."""
        from psycopg.conninfo import make_conninfo

        params = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password.get_secret_value(),
            "sslmode": self.sslmode,
            "application_name": "twinflow",
            "connect_timeout": self.connect_timeout_s,
        }
        for tls in ("sslrootcert", "sslcert", "sslkey"):
            if getattr(self, tls):
                params[tls] = getattr(self, tls)
        params.update(override)
        return make_conninfo(**params)
