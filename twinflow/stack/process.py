"""Process and host helpers for the local stack: ports, daemons, pid files, packages."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StackError(RuntimeError):
    """A stack problem the user can act on; the message says what to do."""


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_port_free(port: int, service: str, setting: str) -> None:
    """Fail with a clear message when another process holds the port we need."""
    if port_open(port):
        raise StackError(
            f"{service}: port {port} is taken by another process. Stop that process or choose "
            f"another port with {setting}=<port> (see README, Configuration)."
        )


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    """Poll ``check`` until it returns True or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    hint = f" Last lines of {log}:\n{tail(log)}" if log else ""
    raise StackError(f"{what} did not become healthy within {timeout:.0f} s.{hint}")


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start_daemon(
    cmd: Sequence[str],
    *,
    log: Path,
    pidfile: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start ``cmd`` detached in its own session; stdout/stderr go to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int | None, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if not pid_alive(pid):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def is_root() -> bool:
    return os.geteuid() == 0


def apt_install(packages: Sequence[str], why: str) -> None:
    """Install Debian packages (root only), or say exactly what to run."""
    if not is_root():
        raise StackError(
            f"{why}: missing Debian packages {' '.join(packages)}. Run as root, or install them: "
            f"sudo apt-get install -y {' '.join(packages)}"
        )
    if shutil.which("apt-get") is None:
        raise StackError(f"{why}: apt-get not found; install {' '.join(packages)} by hand.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lists = Path("/var/lib/apt/lists")
    if not any(lists.glob("*Packages*")):
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    res = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        # An old package list can miss a version: refresh once and retry.
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        res = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            env=env,
            capture_output=True,
            text=True,
        )
    if res.returncode != 0:
        raise StackError(f"{why}: apt-get install {' '.join(packages)} failed:\n{res.stderr[-2000:]}")


def run_checked(cmd: Sequence[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a setup command; on failure raise StackError with its output."""
    res = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)
    if res.returncode != 0:
        out = (res.stdout + res.stderr)[-3000:]
        raise StackError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{out}")
    return res
