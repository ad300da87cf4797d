"""twinflow configuration: one settings object read from a TOML file and the environment.

Precedence (highest first): constructor arguments, environment variables
(``TWINFLOW_<SECTION>__<FIELD>``), the TOML file named by ``TWINFLOW_CONFIG``
(default ``./twinflow.toml`` when present), then the defaults below.

>>> s = Settings(kafka={"bootstrap_servers": "k1:9092"})
>>> s.kafka.bootstrap_servers
'k1:9092'
>>> s.topics.raw
'telemetry.raw'
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Topics(BaseModel):
    """Kafka topic names."""

    raw: str = "telemetry.raw"
    dlq: str = "telemetry.dlq"
    raw_partitions: int = Field(4, ge=1)
    # Command path and simulator (docs/connectors.md).
    commands: str = "twin.commands"
    acks: str = "twin.acks"
    ground_truth: str = "sim.ground_truth"


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    # Extra librdkafka properties merged into every client (e.g. security settings).
    extra: dict[str, str] = Field(default_factory=dict)


class PostgresSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "twinflow"
    user: str = "twinflow"
    password: SecretStr = SecretStr("twinflow")
    sslmode: str = "prefer"
    # `auto`: use TimescaleDB when the server offers it; `on`: require it; `off`: plain PostgreSQL.
    timescaledb: str = Field("auto", pattern="^(auto|on|off)$")

    def conninfo(self, **override: Any) -> str:
        """libpq connection string; the password is included only here, never logged."""
        from psycopg.conninfo import make_conninfo

        params = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password.get_secret_value(),
            "sslmode": self.sslmode,
            "application_name": "twinflow",
        }
        params.update(override)
        return make_conninfo(**params)


class MqttSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 1883
    # Topic pattern the bridge subscribes to; `+` in the twin position.
    topic: str = "twinflow/+/telemetry"
    # Which level of the MQTT topic holds the twin_id (0-based).
    twin_level: int = 1
    qos: int = Field(1, ge=0, le=2)
    client_id: str = "twinflow-mqtt-bridge"
    # Credentials and TLS for the broker (also used by the simulator when the mapping has none).
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None


class FlowSettings(BaseModel):
    # Readings per COPY into the database (upper bound; a Kafka poll's batch is the lower).
    batch_size: int = Field(5000, ge=1)
    # Seconds a Kafka poll waits to fill a batch.
    poll_timeout_s: float = Field(0.5, gt=0)
    max_message_bytes: int = Field(64 * 1024, ge=256)
    # Readings whose timestamp is further than this in the future are rejected.
    max_future_skew_s: float = Field(300.0, ge=0)
    # Readings older than this (days) are rejected as implausible.
    max_age_days: float = Field(3650.0, gt=0)
    recovery_dir: Path | None = None
    snapshot_interval_s: float = Field(5.0, gt=0)
    consumer_group: str = "twinflow-flow"


class StackSettings(BaseModel):
    """Where `twinflow stack` keeps its state, and the ports its services use."""

    dir: Path = PROJECT_ROOT / ".stack"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    kafka_version: str = "4.1.1"
    postgres_port: int = 5432
    postgres_superuser_password: SecretStr = SecretStr("postgres")
    mosquitto_port: int = 1883
    timescale_wasm_port: int = 55432


class BufferSettings(BaseModel):
    """The bridges' local buffer in front of Kafka (one implementation: connectors/kafka/publisher.py)."""

    # Records handed to librdkafka but not yet acknowledged; beyond this they wait in the buffer.
    max_in_flight: int = Field(20000, ge=1)
    # Records kept in memory before spilling to the file.
    memory_records: int = Field(50000, ge=1)
    # Spill file directory (default: <stack dir>/buffer) and its size limit.
    spill_dir: Path | None = None
    spill_max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    # When memory and file are both full: `block` the device side (back-pressure) or `drop_oldest`.
    when_full: str = Field("block", pattern="^(block|drop_oldest)$")


class BridgeSettings(BaseModel):
    """Protocol bridges (OPC-UA, MQTT with a mapping, Modbus) and their command path."""

    buffer: BufferSettings = Field(default_factory=BufferSettings)
    # Consumer group prefix for `twin.commands`; the protocol is appended.
    command_group: str = "twinflow-bridge"
    # Readings of one twin collected this long into one envelope.
    batch_window_ms: float = Field(50.0, ge=0)
    # Reconnect backoff bounds (seconds).
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(15.0, gt=0)


class SimSettings(BaseModel):
    """The plant simulator (`twinflow simulate`)."""

    tick_s: float = Field(0.1, gt=0)
    seed: int = 7
    # Fault schedule ground truth, one JSON object per line (also sent to topics.ground_truth).
    ground_truth_file: Path = Path("sim-ground-truth.jsonl")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TWINFLOW_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    topics: Topics = Field(default_factory=Topics)
    flow: FlowSettings = Field(default_factory=FlowSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    sim: SimSettings = Field(default_factory=SimSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        sources.append(file_secret_settings)
        return tuple(sources)


class ConfigError(Exception):
    """A configuration mistake, with the file, the field and how to fix it."""


def config_path() -> Path | None:
    """The TOML file in effect: ``$TWINFLOW_CONFIG``, else ``./twinflow.toml`` if it exists."""
    explicit = os.environ.get("TWINFLOW_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"TWINFLOW_CONFIG={explicit}: no such file. Fix the path or unset it.")
        return path
    default = Path("twinflow.toml")
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Settings with errors turned into one readable message naming file and field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = config_path() or "environment (TWINFLOW_*)"
        lines = [f"invalid configuration in {where}:"]
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            env = "TWINFLOW_" + "__".join(str(p).upper() for p in err["loc"])
            lines.append(f"  {field}: {err['msg']} (set it in the file or as {env})")
        raise ConfigError("\n".join(lines)) from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()
