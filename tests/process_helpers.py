"""Start and stop ``twinflow`` commands as child processes in their own session (tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def start_twinflow(args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen:
    """``python -m twinflow.cli.main *args`` with stdout/stderr to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "twinflow.cli.main", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, timeout: float = 60) -> Iterator[str]:
    """``twinflow serve`` (the HTTP API, as tests/api reach it) on a free port of 127.0.0.1, with ``env``
    and its output in ``log``: its base URL once ``/api/v1/health`` answers; stopped afterwards."""
    import httpx

    from twinflow.runner import free_ports

    base = f"http://127.0.0.1:{free_ports(1)[0]}"
    with open(log, "wb") as out:
        proc = start_twinflow(["serve"], {**env, "TWINFLOW_API__PORT": base.rsplit(":", 1)[1]}, out)
        try:
            deadline = time.monotonic() + timeout
            while True:
                assert proc.poll() is None, f"twinflow serve exited:\n{log.read_text(errors='replace')[-3000:]}"
                try:
                    if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"twinflow serve not up:\n{log.read_text(errors='replace')[-3000:]}"
                time.sleep(0.2)
            yield base
        finally:
            stop(proc)


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


class Background:
    """A ``twinflow`` command started as a background job of a non-interactive shell, as a script's
    ``nohup twinflow … &`` would: the shell starts it with SIGINT ignored. The shell waits for it,
    so its exit code is the command's (``128 + n`` when signal ``n`` killed it)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        # The job records its signal dispositions as the shell started it, before exec: the command
        # itself then handles SIGINT, so /proc says nothing about the start later.
        cmd = (
            'nohup sh -c \'grep SigIgn /proc/self/status >"$TWINFLOW_TEST_LOG.sigign"; exec "$@"\' sh "$@" '
            '>"$TWINFLOW_TEST_LOG" 2>&1 & echo $!; wait $!'
        )
        self.shell = subprocess.Popen(
            ["bash", "-c", cmd, "bash", sys.executable, "-m", "twinflow.cli.main", *args],
            env={**env, "TWINFLOW_TEST_LOG": str(log)},
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.shell.stdout is not None
        self.pid = int(self.shell.stdout.readline())

    def sigint_ignored(self) -> bool:
        """Whether the command runs with SIGINT ignored (the case this helper exists for)."""
        recorded = self.log.with_name(self.log.name + ".sigign")
        deadline = time.monotonic() + 10
        while not recorded.exists() or not recorded.read_text().strip():
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        return bool(int(recorded.read_text().split()[1], 16) & (1 << (signal.SIGINT - 1)))

    def children(self) -> list[int]:
        """Pids of the processes the command started (direct children)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.pid:
                found.append(int(stat.parent.name))
        return found

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Wait until the command logs ``text`` (it must stay alive meanwhile)."""
        deadline = time.monotonic() + timeout
        while not (self.log.exists() and text in self.output()):
            assert self.shell.poll() is None, f"exited early:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output()[-3000:]}"
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        """Send ``sig`` to the command; its exit code and the seconds it took to exit."""
        t0 = time.monotonic()
        os.kill(self.pid, sig)
        try:
            code = self.shell.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running {timeout} s after {sig!r}:\n{self.output()[-3000:]}") from None
        return code, time.monotonic() - t0

    def kill(self) -> None:
        for pid in [self.pid, *self.children()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.shell.wait()

    def assert_stops_cleanly(self, within_s: float = 10.0, sig: int = signal.SIGTERM) -> str:
        """Stop it with ``sig``: exit code 0 within ``within_s``, no panic, no traceback; returns the log."""
        code, took = self.stop(sig)
        out = self.output()
        assert code == 0, f"exit code {code} after {sig!r}:\n{out[-3000:]}"
        assert took < within_s, f"took {took:.1f} s to stop:\n{out[-3000:]}"
        assert "panicked" not in out, out[-5000:]
        assert "Traceback" not in out, out[-5000:]
        return out
