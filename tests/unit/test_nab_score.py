"""The NAB changepoint score used for SKAB's changepoint problem (benchmarks/nab.py, benchmarks/skab.py)."""

from __future__ import annotations

import doctest

import pytest

from benchmarks import nab
from benchmarks.skab import changepoint_scores, detected_changepoints


def test_module_examples():
    assert doctest.testmod(nab).failed == 0


def test_overlapping_windows_are_cut_and_reward_falls_across_the_window():
    assert nab.windows([100.0, 110.0], 30.0) == [(85.0, 115.0), (115.0, 125.0)]
    a_tp, a_fp, _ = nab.PROFILES["standard"]
    rewards = [nab.reward(p, a_tp, a_fp) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert rewards[0] == pytest.approx(a_tp) and rewards[-1] == pytest.approx(a_fp)
    assert rewards == sorted(rewards, reverse=True)
    assert rewards[2] == pytest.approx((a_tp + a_fp) / 2)


def test_profiles_weigh_false_alarms_and_misses_differently():
    # two changepoints: one hit at its centre, one missed, three false detections
    counts, scores = changepoint_scores([[100.0, 500.0]], [[100.0, 300.0, 310.0, 320.0]], 30.0)
    assert (counts.hits, counts.misses, counts.false_alarms) == (1, 1, 3)
    assert scores["low_fp"] < scores["standard"]  # false alarms cost twice as much
    assert scores["low_fn"] > scores["standard"]  # the null detector is further below


def test_detected_changepoints_are_episode_starts_or_every_flag_change():
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    flags = [1, 1, 0, 0, 1, 0]
    assert detected_changepoints(times, flags) == [0.0, 4.0]
    assert detected_changepoints(times, flags, ends_too=True) == [0.0, 2.0, 4.0, 5.0]
