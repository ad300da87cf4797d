"""A private instance of the local stack: its own temp folder and free ports, never the shared one.

Started and stopped with the real ``twinflow stack up|down`` commands; its services can be
restarted one by one (fault injection). Used by tests/security, tests/faults and
benchmarks/faults.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twinflow.runner import free_ports
from twinflow.settings import Settings, StackSettings
from twinflow.stack.secure.material import Material


def twinflow(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m twinflow.cli.main *args`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class PrivateStack:
    """``with PrivateStack(secure=…) as stack:`` — up and migrated inside, stopped and removed after."""

    def __init__(self, secure: bool = False, prefix: str = "twinflow-private-") -> None:
        self.secure = secure
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.root, 0o755)  # the postgres user must reach its data folder
        kafka, controller, pg, mqtt = free_ports(4)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TWINFLOW_")}
        self.env.update(
            {
                "TWINFLOW_STACK__DIR": str(self.root),
                "TWINFLOW_STACK__KAFKA_PORT": str(kafka),
                "TWINFLOW_STACK__KAFKA_CONTROLLER_PORT": str(controller),
                "TWINFLOW_STACK__POSTGRES_PORT": str(pg),
                "TWINFLOW_STACK__MOSQUITTO_PORT": str(mqtt),
                "COLUMNS": "200",
            }
        )
        self.base = Settings(
            stack=StackSettings(
                dir=self.root,
                kafka_port=kafka,
                kafka_controller_port=controller,
                postgres_port=pg,
                mosquitto_port=mqtt,
            )
        )
        self.material = Material(self.root)
        self.up_output = ""

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> PrivateStack:
        try:
            up = twinflow(["stack", "up", *(["--secure"] if self.secure else [])], self.env)
            self.up_output = up.stdout + up.stderr
            assert up.returncode == 0, self.up_output
            mig = twinflow(["db", "migrate"], self.admin_env())
            assert mig.returncode == 0, mig.stdout + mig.stderr
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        down = twinflow(["stack", "down"], self.env)
        shutil.rmtree(self.root, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr

    # ------------------------------------------------------------------ settings and environments
    @property
    def app(self) -> Settings:
        """Least-privilege client settings (secure) or the plain defaults."""
        return self.material.client_settings(self.base) if self.secure else self.base

    @property
    def admin(self) -> Settings:
        return self.material.client_settings(self.base, admin=True) if self.secure else self.base

    def app_env(self, **extra: str) -> dict[str, str]:
        env = {**self.env, **extra}
        if self.secure:
            env["TWINFLOW_CONFIG"] = str(self.material.file("twinflow.toml"))
        return env

    def role_env(self, role: str, **extra: str) -> dict[str, str]:
        """The environment of a client role of the secure profile (twinflow.stack.secure.material.CLIENTS)."""
        from twinflow.stack.secure.material import CLIENTS

        env = {**self.env, **extra}
        if self.secure:
            env["TWINFLOW_CONFIG"] = str(self.material.file(CLIENTS[role][2]))
        return env

    def role(self, role: str) -> Settings:
        return self.material.client_settings(self.base, role=role) if self.secure else self.base

    def admin_env(self, **extra: str) -> dict[str, str]:
        env = {**self.env, **extra}
        if self.secure:
            env["TWINFLOW_CONFIG"] = str(self.material.file("admin.toml"))
        return env

    def secrets(self) -> list[str]:
        return [p.read_text().strip() for p in self.material.passwords.iterdir()]

    # ------------------------------------------------------------------ faults
    def service(self, name: str):
        from twinflow.stack import services

        return next(s for s in services(self.base) if s.name == name)

    def restart(self, name: str, downtime: float = 0.0) -> float:
        """Stop a service, wait ``downtime`` seconds, start it again; returns seconds until healthy."""
        svc = self.service(name)
        svc.down()
        time.sleep(downtime)
        t0 = time.monotonic()
        svc.up()
        return time.monotonic() - t0
