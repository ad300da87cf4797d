"""Recovery partitions for one process, a local cluster sharing a folder, and a cluster on N machines."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import MissingPartitionsError, RecoveryConfig
from bytewax.testing import TestingSink, TestingSource, run_main

from twinflow.runner import ensure_recovery_dir


def _parts(folder: Path) -> dict[str, tuple[int, int]]:
    """part file name → (part_index, part_count) as Bytewax recorded them."""
    out = {}
    for f in sorted(folder.glob("part-*.sqlite3")):
        with sqlite3.connect(f) as db:
            out[f.name] = db.execute("SELECT part_index, part_count FROM parts").fetchone()
    return out


def _resume(folder: Path) -> list[int]:
    out: list[int] = []
    flow = Dataflow("recovery-dir-test")
    op.output("out", op.map("x", op.input("in", flow, TestingSource([1, 2, 3])), lambda x: x * 2), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(str(folder)))
    return out


def test_one_process_gets_one_partition_once(tmp_path: Path) -> None:
    ensure_recovery_dir(tmp_path)
    first = (tmp_path / "part-0.sqlite3").stat().st_mtime_ns
    ensure_recovery_dir(tmp_path)
    assert _parts(tmp_path) == {"part-0.sqlite3": (0, 1)}
    assert (tmp_path / "part-0.sqlite3").stat().st_mtime_ns == first
    assert _resume(tmp_path) == [2, 4, 6]


def test_processes_sharing_a_folder_complete_one_set(tmp_path: Path) -> None:
    for i in (1, 0):  # any start order
        ensure_recovery_dir(tmp_path, process_id=i, processes=2)
    assert _parts(tmp_path) == {"part-0.sqlite3": (0, 2), "part-1.sqlite3": (1, 2)}
    assert _resume(tmp_path) == [2, 4, 6]


def test_on_separate_machines_each_process_keeps_only_its_own_partition(tmp_path: Path) -> None:
    machines = [tmp_path / "host0", tmp_path / "host1"]
    for i, folder in enumerate(machines):
        ensure_recovery_dir(folder, process_id=i, processes=2)
    assert _parts(machines[0]) == {"part-0.sqlite3": (0, 2)}
    assert _parts(machines[1]) == {"part-1.sqlite3": (1, 2)}
    with pytest.raises(MissingPartitionsError):  # alone, one machine's part is not a set
        _resume(machines[0])


def test_a_set_made_by_another_cluster_size_is_left_as_it_is(tmp_path: Path) -> None:
    ensure_recovery_dir(tmp_path)  # first run: one process
    ensure_recovery_dir(tmp_path, process_id=1, processes=2)  # later rescaled to two
    assert _parts(tmp_path) == {"part-0.sqlite3": (0, 1)}
    assert _resume(tmp_path) == [2, 4, 6]


def test_a_process_id_outside_the_cluster_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="process id 2 is outside a cluster of 2"):
        ensure_recovery_dir(tmp_path, process_id=2, processes=2)
