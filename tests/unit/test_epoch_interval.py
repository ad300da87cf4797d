"""Bytewax epoch length: the snapshot interval with recovery, a long epoch without."""

from datetime import timedelta

from twinflow.runner import epoch_interval
from twinflow.settings import Settings


def test_recovery_keeps_the_snapshot_interval() -> None:
    assert epoch_interval(True, 5.0, 600.0) == timedelta(seconds=5)


def test_without_recovery_the_longer_epoch_is_used() -> None:
    assert epoch_interval(False, 5.0, 600.0) == timedelta(seconds=600)
    assert epoch_interval(False, 900.0, 600.0) == timedelta(seconds=900)
    assert epoch_interval(False, 5.0, None) == timedelta(seconds=5)


def test_setting_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("TWINFLOW_FLOW__EPOCH_WITHOUT_RECOVERY_S", "42")
    assert Settings().flow.epoch_without_recovery_s == 42.0
