"""A private secure stack (temp folder, free ports) for the tests in this folder.

It never touches the shared stack: its own folder and its own ports, started with the real
``twinflow stack up --secure`` command and stopped with ``twinflow stack down`` afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from twinflow.settings import Settings, StackSettings
from twinflow.stack.secure import Material


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SecureStack:
    root: Path
    env: dict[str, str]  # environment for `twinflow` child processes (no TWINFLOW_CONFIG)
    up_output: str
    material: Material
    base: Settings  # stack folder and ports only, no credentials

    @property
    def app(self) -> Settings:
        return self.material.client_settings(self.base)

    @property
    def admin(self) -> Settings:
        return self.material.client_settings(self.base, admin=True)

    def env_with(self, config: str) -> dict[str, str]:
        return {**self.env, "TWINFLOW_CONFIG": str(self.material.file(config))}

    def secrets(self) -> list[str]:
        return [p.read_text().strip() for p in self.material.passwords.iterdir()]


def twinflow(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twinflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="package")
def secure_stack() -> Iterator[SecureStack]:
    root = Path(tempfile.mkdtemp(prefix="twinflow-secure-"))
    os.chmod(root, 0o755)  # the postgres user must reach its data folder
    kafka, controller, pg, mqtt = free_ports(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINFLOW_")}
    env.update(
        {
            "TWINFLOW_STACK__DIR": str(root),
            "TWINFLOW_STACK__KAFKA_PORT": str(kafka),
            "TWINFLOW_STACK__KAFKA_CONTROLLER_PORT": str(controller),
            "TWINFLOW_STACK__POSTGRES_PORT": str(pg),
            "TWINFLOW_STACK__MOSQUITTO_PORT": str(mqtt),
            "COLUMNS": "200",
        }
    )
    base = Settings(
        stack=StackSettings(
            dir=root,
            kafka_port=kafka,
            kafka_controller_port=controller,
            postgres_port=pg,
            mosquitto_port=mqtt,
        )
    )
    try:
        up = twinflow(["stack", "up", "--secure"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        stack = SecureStack(root, env, up.stdout + up.stderr, Material(root), base)
        mig = twinflow(["db", "migrate"], stack.env_with("admin.toml"))
        assert mig.returncode == 0, mig.stdout + mig.stderr
        yield stack
    finally:
        down = twinflow(["stack", "down"], env)
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
