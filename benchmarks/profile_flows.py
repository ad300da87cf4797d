"""Where a flow spends its time: py-spy samples one flow draining a filled topic.

    python -m benchmarks.profile_flows --flow models --readings 100000
    python -m benchmarks.profile_flows --flow telemetry --flow twin --keep /tmp/prof
    python -m benchmarks.profile_flows --flow pipeline --processes 2     # both processes of -p 2
    python -m benchmarks.profile_flows --flow pipeline --gil --batch-size 125   # a tailing flow's batches

Fills fresh topics with N envelopes (the e2e load generator), runs each flow alone with
``--no-tail --no-recovery`` under ``py-spy record`` and prints the functions with the most
samples (self and inclusive). ``--keep DIR`` keeps the collapsed stacks per flow (input for flame
graph tools). Needs py-spy (``uv pip install py-spy``) and root or ptrace permission.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from benchmarks.e2e import cleanup
from benchmarks.ingest import SHAPES, generate
from benchmarks.processes import cleaning_up, flow_command, interruptible, stop
from connectors.kafka.clients import ensure_topics
from connectors.stopping import STOP_WITHIN_S
from twinflow.demo.plant import topic_env
from twinflow.settings import load_settings

LINE_NO = re.compile(r":\d+\)$")  # "fn (file.py:12)" → "fn (file.py)": one entry per function


def collapsed_top(path: Path, n: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, top ``n`` frames by self samples and by inclusive samples (py-spy raw format)."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = [LINE_NO.sub(")", f) for f in stack.split(";")]
        own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    return total, own.most_common(n), incl.most_common(n)


def profile(flow: str, env: dict[str, str], out: Path, rate: int, processes: int = 1, gil: bool = False) -> None:
    cmd = flow_command(flow, tail=False)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cluster = ["-p", str(processes)] if processes > 1 else []
    subprocesses = ["--subprocesses"] if processes > 1 else []
    options = ["--rate", str(rate), "--format", "raw", *subprocesses, *(["--gil"] if gil else [])]
    proc = subprocess.Popen(
        [spy, "record", *options, "-o", str(out), "--", *cmd, *cluster],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    flows: list[psutil.Process] = []  # py-spy's child: kept, it outlives a py-spy that a signal ended
    try:
        while not flows and proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                flows = psutil.Process(proc.pid).children()
            time.sleep(0.05)
        rc = proc.wait()
    finally:  # (Ctrl-C, SIGTERM: the flow is stopped and waited for before its rows are deleted)
        with cleaning_up():
            for flow in flows:
                with contextlib.suppress(psutil.Error):
                    flow.terminate()
            for flow in psutil.wait_procs(flows, timeout=STOP_WITHIN_S + 1)[1]:
                flow.kill()
            stop(proc)
    if rc:
        raise subprocess.CalledProcessError(rc, proc.args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flow", action="append", help="flow(s) to profile (default: telemetry, twin, models)")
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--twins", type=int, default=200)
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--keep", type=Path, help="keep <flow>.collapsed.txt (py-spy raw stacks) here")
    ap.add_argument("--processes", type=int, default=1, help="run each flow as a local cluster (-p N), all sampled")
    ap.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    ap.add_argument("--batch-size", type=int, help="flow.batch_size for the flows (default: the settings')")
    ap.add_argument("--shape", choices=SHAPES, default="ramp", help="the readings' values (benchmarks.ingest.SHAPES)")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:6]
    base = load_settings()
    env = {**os.environ, **topic_env(base, f"prof.{run}.")}
    if args.batch_size:
        env["TWINFLOW_FLOW__BATCH_SIZE"] = str(args.batch_size)
    os.environ.update(env)
    settings = load_settings()
    prefix = f"prof{run}"
    try:
        ensure_topics(settings)
        generate(env, args.readings, args.twins, args.sensors, prefix, args.shape)
        for flow in args.flow or ["telemetry", "twin", "models"]:
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / f"{flow}.txt"
                profile(flow, env, raw, args.rate, args.processes, args.gil)
                total, own, incl = collapsed_top(raw, args.top)
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(raw, args.keep / f"{flow}.collapsed.txt")
            print(f"\n== {flow}: {total} samples ==\n-- self --")
            for f, c in own:
                print(f"{c / total:6.1%}  {f}")
            print("-- inclusive --")
            for f, c in incl:
                print(f"{c / total:6.1%}  {f}")
    finally:
        with cleaning_up():
            cleanup(settings, prefix)


if __name__ == "__main__":
    with interruptible():
        main()
