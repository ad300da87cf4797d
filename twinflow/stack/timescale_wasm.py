"""TimescaleDB 2.23 in WASM (PGlite + pglite-socket), served on 127.0.0.1 for tests.

TimescaleDB has no package for these machines; this serves the real extension
compiled to WASM so the Timescale path of ``sql/migrations`` is exercised.
It accepts simple-query writes to hypertables only (no COPY, no SSL): data tests
use the native PostgreSQL. The database lives in memory and is new at each start.
"""

from __future__ import annotations

import shutil

from twinflow.settings import PROJECT_ROOT
from twinflow.stack.base import Service
from twinflow.stack.process import (
    StackError,
    port_open,
    require_port_free,
    run_checked,
    start_daemon,
)

SRC = PROJECT_ROOT / "scripts" / "pglite"


class TimescaleWasm(Service):
    name = "timescale-wasm"
    start_timeout = 90.0

    @property
    def port(self) -> int:
        return self.settings.stack.timescale_wasm_port

    def install(self) -> None:
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise StackError("timescale-wasm needs Node.js 20+ and npm (apt-get install -y nodejs npm).")
        for name in ("package.json", "package-lock.json", "serve.mjs"):
            shutil.copy2(SRC / name, self.dir / name)
        marker = self.dir / "node_modules" / ".twinflow-installed"
        lock = (SRC / "package-lock.json").read_bytes()
        if marker.exists() and marker.read_bytes() == lock:
            return
        run_checked(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            "installing PGlite (TimescaleDB WASM) from npm",
            cwd=self.dir,
        )
        marker.write_bytes(lock)

    def start(self) -> None:
        require_port_free(self.port, "timescale-wasm", self.port_setting)
        start_daemon(["node", "serve.mjs", str(self.port)], log=self.log, pidfile=self.pidfile, cwd=self.dir)

    def conninfo(self) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user=postgres password=postgres "
            "dbname=postgres sslmode=disable connect_timeout=5"
        )

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        import psycopg

        try:
            with psycopg.connect(self.conninfo()) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False
