"""benchmarks.step_cpu (the models step's CPU per reading, with an output digest) keeps working."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_step_cpu_times_the_step_and_finds_the_same_output_in_two_runs() -> None:
    args = ["--twins", "2", "--readings", "60", "--batch", "7", "--repeat", "2"]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.step_cpu", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    runs = [line for line in out.splitlines() if line.startswith("this     run")]
    assert len(runs) == 2 and all("ms CPU per 1k readings" in line for line in runs)
    assert "same output in every run" in out
