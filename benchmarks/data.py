"""Where the shared, read-only benchmark data lives (never copied into the repository)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchmarks.machine import append_result as append_results  # noqa: F401 - one writer of RESULTS.md

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """``$TWINFLOW_DATA_DIR``, else ``<parent of the repository>/shared/data``."""
    override = os.environ.get("TWINFLOW_DATA_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def require(path: Path) -> Path:
    """Exit with a clear message when the data set is missing."""
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (set TWINFLOW_DATA_DIR to the folder holding skab/ and cmapss/)")
    return path
