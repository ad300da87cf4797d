import msgspec
import pytest

from connectors.kafka.clients import topic_specs
from operators.records.model_control import ControlRecord, decode, encode
from twinflow.settings import Settings


def test_record_round_trip_and_validation():
    rec = ControlRecord(twin_id="pump-001", action="reset", requested_at="2026-11-25T08:00:00+00:00")
    assert decode(encode(rec)) == rec
    with pytest.raises(msgspec.ValidationError):
        decode(b'{"twin_id":"pump 001","action":"reset","requested_at":"x"}')
    with pytest.raises(msgspec.ValidationError):
        decode(b'{"twin_id":"p1","action":"explode","requested_at":"x"}')


def test_model_control_topic_is_declared():
    s = Settings()
    assert s.topics.model_control == "twin.model_control"
    assert s.topics.model_control in [spec.name for spec in topic_specs(s)]


def test_ml_settings_build_operator_config(monkeypatch):
    monkeypatch.setenv("TWINFLOW_ML__ANOMALY__WINDOW", "7")
    monkeypatch.setenv("TWINFLOW_ML__MODEL", "rul")
    s = Settings()
    cfg = s.ml.model_config_for()
    assert cfg.anomaly.window == 7 and cfg.failure is not None and cfg.forecast is not None
    assert s.ml.model_config_for(failure=False, forecasts=False).failure is None


def test_ml_settings_errors_name_the_field(monkeypatch):
    from twinflow.settings import ConfigError, load_settings

    monkeypatch.setenv("TWINFLOW_ML__ANOMALY__WINDOWW", "7")
    with pytest.raises(ConfigError, match=r"TWINFLOW_ML__ANOMALY__WINDOWW .*\[ml\.anomaly\] windoww: unknown key"):
        load_settings()
    monkeypatch.delenv("TWINFLOW_ML__ANOMALY__WINDOWW")
    monkeypatch.setenv("TWINFLOW_ML__FAILURE__RUL_CAP", "-1")
    with pytest.raises(ConfigError, match=r"FailureConfig\.rul_cap=-1"):
        load_settings()
