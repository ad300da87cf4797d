"""What every local-stack service offers: install, up, down, health, status."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from twinflow.settings import Settings
from twinflow.stack.process import pid_alive, read_pid, stop_pid


@dataclass(frozen=True)
class Status:
    name: str
    port: int
    pid: int | None
    healthy: bool
    detail: str = ""


class Service(ABC):
    """One service of the local stack, with its state under ``<stack dir>/<name>/``."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir: Path = settings.stack.dir / self.name
        self.log = self.dir / f"{self.name}.log"
        self.pidfile = self.dir / f"{self.name}.pid"

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def port_setting(self) -> str:
        return f"TWINFLOW_STACK__{self.name.upper().replace('-', '_')}_PORT"

    @abstractmethod
    def install(self) -> None:
        """Make binaries available (packages, jars, npm modules); idempotent."""

    @abstractmethod
    def start(self) -> None:
        """Start the process (called only when it is not running)."""

    @abstractmethod
    def healthy(self) -> bool:
        """A protocol-level check, not only an open port."""

    def pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.install()
        if not (self.running() and self.healthy()):
            if not self.running():
                self.start()
            self.wait_healthy()
        self.after_start()  # idempotent: roles, databases and topics exist after every `up`

    def wait_healthy(self) -> None:
        from twinflow.stack.process import wait_until

        wait_until(self.healthy, self.start_timeout, f"{self.name} on port {self.port}", self.log)

    start_timeout: float = 90.0

    def after_start(self) -> None:
        """Post-start bootstrap (roles, topics); idempotent."""

    def down(self) -> None:
        stop_pid(self.pid())
        self.pidfile.unlink(missing_ok=True)

    def status(self) -> Status:
        pid = self.pid()
        healthy = pid is not None and self.healthy()
        return Status(
            self.name,
            self.port,
            pid,
            healthy,
            "" if healthy else "not running" if pid is None else "unhealthy",
        )
