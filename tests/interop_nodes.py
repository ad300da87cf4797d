"""Third-party device implementations in their own Node.js processes, for the interop tests.

``tests/interop/`` holds the scripts and their package.json/package-lock.json; ``make test``
installs the packages (``make interop-deps``) and :func:`ensure_installed` does the same when
the tests run without make. A missing Node.js or npm is a test failure, never a skip.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

INTEROP = Path(__file__).resolve().parent / "interop"


def ensure_installed() -> None:
    """``npm ci`` in tests/interop when its node_modules are missing or older than the lock file."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the interop tests need Node.js 20+ and npm (apt-get install -y nodejs npm)")
    marker = INTEROP / "node_modules" / ".installed"
    lock = INTEROP / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=INTEROP, check=True)
    marker.touch()


class NodeProcess:
    """``node <script> <args>``: its stdout lines are collected; stdin takes commands."""

    def __init__(self, script: str, *args: object) -> None:
        ensure_installed()
        self.args = [str(a) for a in args]
        self.script = script
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            ["node", script, *self.args],
            cwd=INTEROP,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self._new.put(line)

    def wait_for(self, fragment: str, timeout: float = 60.0) -> str:
        """The first line (seen so far or arriving within ``timeout``) containing ``fragment``."""
        deadline = time.monotonic() + timeout
        for line in list(self.lines):
            if fragment in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if fragment in line:
                return line
            if self.proc.poll() is not None and self._new.empty():
                break
        tail = "\n".join(self.lines[-20:])
        raise AssertionError(
            f"{self.script} {self.args}: no line with {fragment!r} in {timeout:.0f} s; last lines:\n{tail}"
        )

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
