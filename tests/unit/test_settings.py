import pytest

from twinflow.settings import ConfigError, load_settings


def test_env_overrides_nested_fields(monkeypatch):
    monkeypatch.setenv("TWINFLOW_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("TWINFLOW_TOPICS__RAW", "plant.raw")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert s.topics.raw == "plant.raw"


def test_toml_file_is_read_and_mistakes_name_file_and_field(tmp_path, monkeypatch):
    good = tmp_path / "twinflow.toml"
    good.write_text("[mqtt]\nqos = 2\n[flow]\nbatch_size = 100\n")
    monkeypatch.setenv("TWINFLOW_CONFIG", str(good))
    s = load_settings()
    assert (s.mqtt.qos, s.flow.batch_size) == (2, 100)

    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nqos = 3\n")
    monkeypatch.setenv("TWINFLOW_CONFIG", str(bad))
    with pytest.raises(ConfigError) as exc:
        load_settings()
    text = str(exc.value)
    assert str(bad) in text and "[mqtt] qos" in text and "TWINFLOW_MQTT__QOS" in text


def test_missing_config_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TWINFLOW_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_settings()


def test_password_is_not_in_repr():
    s = load_settings(postgres={"password": "s3cret-value"})
    assert "s3cret-value" not in repr(s)
    assert "s3cret-value" in s.postgres.conninfo()


def test_clients_follow_stack_ports_unless_set(monkeypatch):
    monkeypatch.setenv("TWINFLOW_STACK__KAFKA_PORT", "19092")
    monkeypatch.setenv("TWINFLOW_STACK__POSTGRES_PORT", "15432")
    monkeypatch.setenv("TWINFLOW_STACK__MOSQUITTO_PORT", "11883")
    for var in ("TWINFLOW_KAFKA__BOOTSTRAP_SERVERS", "TWINFLOW_POSTGRES__PORT", "TWINFLOW_MQTT__PORT"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert (s.kafka.bootstrap_servers, s.postgres.port, s.mqtt.port) == ("127.0.0.1:19092", 15432, 11883)
    monkeypatch.setenv("TWINFLOW_KAFKA__BOOTSTRAP_SERVERS", "broker:9092")
    assert load_settings().kafka.bootstrap_servers == "broker:9092"


def test_two_settings_naming_one_topic_are_refused(monkeypatch):
    """Each topic carries one record type: the twin flow's desync events never share the alerts' topic."""
    monkeypatch.setenv("TWINFLOW_TWIN__DESYNC_TOPIC", "twin.alerts")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "[twin] desync_topic and [alerts] topic both name the topic 'twin.alerts'" in str(err.value)


def test_the_removed_twin_alerts_topic_says_what_replaced_it(tmp_path, monkeypatch):
    old = tmp_path / "old.toml"
    old.write_text('[twin]\nalerts_topic = "twin.alerts"\n')
    monkeypatch.setenv("TWINFLOW_CONFIG", str(old))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "`alerts_topic` is gone" in str(err.value) and "desync_topic" in str(err.value)


def test_the_removed_webhook_attempts_says_what_replaced_it(tmp_path, monkeypatch):
    old = tmp_path / "old.toml"
    old.write_text("[alerts]\nwebhook_attempts = 5\n")
    monkeypatch.setenv("TWINFLOW_CONFIG", str(old))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "`webhook_attempts` is gone" in str(err.value) and "webhook_retention_s" in str(err.value)


@pytest.mark.parametrize("key", ["consumer_group", "poll_timeout_s"])
def test_flow_settings_that_never_took_effect_are_refused_with_the_fix(tmp_path, monkeypatch, key):
    old = tmp_path / "old.toml"
    old.write_text(f"[flow]\n{key} = 1\n")
    monkeypatch.setenv("TWINFLOW_CONFIG", str(old))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert f"`{key}` is gone" in str(err.value) and "remove it" in str(err.value) and "old.toml" in str(err.value)
