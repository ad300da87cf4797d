"""Describe the machine a benchmark ran on (for benchmarks/RESULTS.md)."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks import step_cpu

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def describe() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


PROBE = (200, 300, 1)  # the speed probe's twins, readings per twin and readings per call (tailing-like)


def speed_probe() -> float:
    """The machine's speed now: CPU ms per 1,000 readings of the live models step alone
    (:mod:`benchmarks.step_cpu`'s worker, :data:`PROBE`; ≈ 5 s, no stack needed). The same
    host gives 44–50 on different hours of one day: a run's numbers are comparable with another's
    at the same probe, not across probes."""
    return step_cpu.run(step_cpu.ROOT, *PROBE)[0]


def commit() -> str:
    """Short hash of the checked-out commit (``?`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=RESULTS.parent, capture_output=True, text=True, check=False
        )
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows of right-aligned cells under ``columns``, as a Markdown table (for RESULTS.md).

    >>> print(markdown_table(("twins", "s"), [("1,000", "0.9")]), end="")
    | twins | s |
    |---:|---:|
    | 1,000 | 0.9 |
    """
    head = "| " + " | ".join(columns) + " |\n|" + "---:|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(row) + " |\n" for row in rows)


def append_result(title: str, command: str, body: str) -> None:
    """Append a dated section (machine, commit, command, numbers) to RESULTS.md."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n### {title} — {stamp}\n\n- machine: {describe()}\n- commit: {commit()}\n"
        f"- command: `{command}`\n\n{body.strip()}\n"
    )
    with RESULTS.open("a") as fh:
        fh.write(section)
