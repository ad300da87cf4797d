"""Start and stop ``twinflow`` commands as child processes in their own session (tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


def start_twinflow(args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen:
    """``python -m twinflow.cli *args`` with stdout/stderr to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "twinflow.cli", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> int:
    """SIGINT to the process group, SIGKILL after 20 s; returns the exit code."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def wait_for_log(path: Path, text: bytes, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until ``text`` appears in the log at ``path`` while ``proc`` is alive."""
    deadline = time.monotonic() + timeout
    while text not in path.read_bytes():
        assert time.monotonic() < deadline, path.read_text(errors="replace")
        assert proc.poll() is None, path.read_text(errors="replace")
        time.sleep(0.2)
