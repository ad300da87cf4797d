"""The simulator detection benchmark on a tiny configuration: output structure, and a strong fault is found."""

from __future__ import annotations

import itertools

from benchmarks.sim_detection import COLUMNS, BenchConfig, fault_schedule, markdown, run, twin_ids
from twinflow.settings import AlertSettings


def test_schedule_is_seeded_and_faults_do_not_overlap_on_a_twin():
    cfg = BenchConfig(pumps=2, compressors=2, hours=6.0, seed=3)
    twins = twin_ids(cfg)
    faults = fault_schedule(cfg, twins)
    assert faults == fault_schedule(cfg, twins)
    assert {f.kind for f in faults} == set(cfg.kinds)  # every kind is dealt
    for twin, _ in twins:
        mine = sorted((f for f in faults if f.twin_id == twin), key=lambda f: f.onset_s)
        assert mine[0].onset_s >= cfg.first_fault_s
        for a, b in itertools.pairwise(mine):
            assert b.onset_s - a.end_s >= cfg.healthy_s[0]
        assert mine[-1].end_s + cfg.grace_s <= cfg.duration_s


def test_strong_overheating_is_detected_and_alerted():
    cfg = BenchConfig(
        pumps=1,
        compressors=1,
        hours=0.65,
        kinds=("overheating",),
        severity=3.0,
        first_fault_s=1200.0,  # the temperature and the models' baseline have settled
        fault_s=(400.0, 400.0),
        healthy_s=(300.0, 300.0),
    )
    result = run(cfg)
    assert set(result) == {"kinds", "overall", "false_alarms", "run", "config"}
    rec = result["kinds"]["overheating"]
    assert rec["faults"] == 2  # one per twin
    assert rec["detected"] == rec["faults"] and rec["detection_rate"] == 1.0
    assert 0 <= rec["delay_median_s"] <= rec["delay_p90_s"] <= 400.0
    # an anomaly alert opens only after the condition held for min_duration_s (simulated time)
    assert rec["alerted"] == rec["faults"]
    assert rec["alert_delay_median_s"] >= AlertSettings().rules.anomaly.min_duration_s
    fa = result["false_alarms"]
    assert fa["healthy_twin_days"] > 0
    assert fa["episodes"] >= 0 and fa["episodes_per_twin_day"] == fa["episodes"] / fa["healthy_twin_days"]
    assert result["run"]["samples"] == 2 * int(cfg.duration_s / cfg.tick_s)
    table = markdown(result).splitlines()
    assert len(table) == 2 + len(cfg.kinds) + 1  # header, rule, one row per kind, "all"
    assert table[0].count("|") == len(COLUMNS) + 1
