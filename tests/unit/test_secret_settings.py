import pytest

from connectors.kafka.clients import client_config
from twinflow.settings import ConfigError, load_settings


def test_secrets_come_from_files_and_stay_hidden(tmp_path, monkeypatch):
    for name, value in (("k", "kafka-s3cret"), ("p", "pg-s3cret"), ("m", "mqtt-s3cret")):
        (tmp_path / name).write_text(value + "\n")
    monkeypatch.setenv("TWINFLOW_KAFKA__SASL_PASSWORD_FILE", str(tmp_path / "k"))
    monkeypatch.setenv("TWINFLOW_KAFKA__EXTRA", '{"security.protocol": "SASL_SSL", "sasl.username": "u"}')
    monkeypatch.setenv("TWINFLOW_POSTGRES__PASSWORD_FILE", str(tmp_path / "p"))
    monkeypatch.setenv("TWINFLOW_POSTGRES__SSLROOTCERT", "/etc/ca.pem")
    monkeypatch.setenv("TWINFLOW_MQTT__PASSWORD_FILE", str(tmp_path / "m"))
    s = load_settings()
    conf = client_config(s)
    assert conf["sasl.password"] == "kafka-s3cret" and conf["security.protocol"] == "SASL_SSL"
    assert "password=pg-s3cret" in s.postgres.conninfo() and "sslrootcert=/etc/ca.pem" in s.postgres.conninfo()
    assert s.mqtt.password.get_secret_value() == "mqtt-s3cret"
    for secret in ("kafka-s3cret", "pg-s3cret", "mqtt-s3cret"):
        assert secret not in repr(s) and secret not in str(s.model_dump())


def test_missing_secret_file_names_the_field_not_the_content(tmp_path, monkeypatch):
    monkeypatch.setenv("TWINFLOW_POSTGRES__PASSWORD_FILE", str(tmp_path / "nope"))
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "postgres.password_file" in str(exc.value) and "nope" in str(exc.value)
