"""Where the shared, read-only benchmark data lives (never copied into the repository)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "RESULTS.md"


def data_dir() -> Path:
    """``$TWINFLOW_DATA_DIR``, else ``<parent of the repository>/shared/data``."""
    override = os.environ.get("TWINFLOW_DATA_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def require(path: Path) -> Path:
    """Exit with a clear message when the data set is missing."""
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (set TWINFLOW_DATA_DIR to the folder holding skab/ and cmapss/)")
    return path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {psutil.cpu_count()} cores, {mem:.0f} GB, Python {platform.python_version()}"


def append_results(title: str, command: str, body: str) -> None:
    """Append one dated section to benchmarks/RESULTS.md."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        rev = "?"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"\n### {title} — {stamp}\n\n- machine: {machine()}\n- commit: {rev}\n"
        f"- command: `{command}`\n\n{body.strip()}\n"
    )
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with RESULTS.open("a") as fh:
        fh.write(text)
