"""The processes a benchmark starts and measures: flow command lines, CPU time and RSS.

>>> flow_command("twin", tail=False)[-4:]
['run', 'twin', '--no-tail', '--no-recovery']
"""

from __future__ import annotations

import sys

import psutil


def flow_command(flow: str, *, tail: bool) -> list[str]:
    """``twinflow run FLOW`` without recovery, tailing the topics or stopping at their end."""
    return [sys.executable, "-m", "twinflow.cli.main", "run", flow, "--tail" if tail else "--no-tail", "--no-recovery"]


def usage(pid: int, *, children: bool = True) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes of a process and, by default, its children;
    processes that are gone count as nothing."""
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)] if children else [p]
    except psutil.Error:
        return 0.0, 0
    cpu, rss = 0.0, 0
    for q in procs:
        try:
            t = q.cpu_times()
            cpu += t.user + t.system
            rss += q.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss
