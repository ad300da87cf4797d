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

import dataclasses
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connectors.bridges.settings import BridgeSettings
from connectors.config.errors import ConfigError
from connectors.config.secret_files import read_secret_file
from connectors.kafka.settings import BufferSettings, KafkaSettings, Topics
from connectors.mqtt.settings import MqttSettings
from connectors.postgres.settings import PostgresSettings
from connectors.sim.settings import SimSettings
from flows.settings import DEV_IDENTITY, AlertSettings, FlowSettings, MlSettings, SecuritySettings
from flows.twin_settings import TwinSettings
from operators.strict import StrictModel

# The sections live beside the code they configure; they are re-exported here, where they are composed.
__all__ = [
    "DEV_IDENTITY",
    "PROJECT_ROOT",
    "AlertSettings",
    "ApiSettings",
    "BridgeSettings",
    "BufferSettings",
    "ConfigError",
    "FlowSettings",
    "KafkaSettings",
    "MlSettings",
    "MqttSettings",
    "PostgresSettings",
    "SecuritySettings",
    "Settings",
    "SimSettings",
    "StackSettings",
    "Topics",
    "TwinSettings",
    "config_path",
    "load_settings",
    "read_secret_file",
    "settings",
    "topic_fields",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class StackSettings(StrictModel):
    """Where `twinflow stack` keeps its state, and the ports its services use."""

    dir: Path = PROJECT_ROOT / ".stack"  # data, logs, recovery state and the development identity
    kafka_port: int = 9092  # the services' ports; clients follow them unless set in their sections
    kafka_controller_port: int = 9093  # the KRaft controller's listener
    # Broker JVM heap. 512m filled to 97 % (old generation) once the shared dev broker held ~10,000
    # partitions of test topics: young + concurrent GC pauses of ~40 ms per second, single pauses up
    # to ~200 ms, each delaying every produce and fetch (benchmarks/RESULTS.md, issue 7 round 3).
    kafka_heap: str = "1g"
    kafka_version: str = "4.1.1"  # the kafka_2.13 release fetched from Maven Central
    postgres_port: int = 5432  # the local PostgreSQL (clients follow it unless postgres.port is set)
    # The local cluster's superuser password (the stack creates the `twinflow` role with it).
    postgres_superuser_password: SecretStr = SecretStr("postgres")
    mosquitto_port: int = 1883  # the local Mosquitto (clients follow it unless mqtt.port is set)
    timescale_wasm_port: int = 55432  # the WASM TimescaleDB of `stack up --with-timescale-wasm`


class ApiSettings(StrictModel):
    """`twinflow serve`: the HTTP API and the web view (docs/api.md)."""

    host: str = "127.0.0.1"  # where `twinflow serve` listens (0.0.0.0: every interface)
    port: int = Field(8080, ge=0, le=65535)  # the port `twinflow serve` listens on
    # Bearer tokens, stored as SHA-256 hashes (`twinflow api token create`); default <stack dir>/api-tokens.toml.
    tokens_file: Path | None = None
    anonymous_read: bool = False  # writes always need a token
    # TLS certificate chain (PEM; the secure profile sets it and tls_key_file); without both: plain HTTP.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None  # the certificate's private key (PEM)
    max_body_bytes: int = Field(64 * 1024, ge=256)  # a larger request body is refused with 413
    # Per client (token, else address): requests per second of a token bucket; 0 = no rate limit.
    rate_per_s: float = Field(100.0, ge=0)
    rate_burst: int = Field(200, ge=1)  # the bucket's depth: requests a client may send at once
    require_if_match: bool = True  # PATCH desired without If-Match → 428
    verdict_wait_s: float = Field(10.0, ge=0)  # PATCH desired waits this long for the gate's verdict
    sse_keepalive_s: float = Field(15.0, gt=0)  # an idle event stream sends a comment this often
    sse_buffer_events: int = Field(50_000, ge=0)  # recent events kept for exact Last-Event-ID resume
    # Per stream: events queued for a client beyond this → an `overflow` event ends it (resume with Last-Event-ID).
    sse_client_buffer_bytes: int = Field(16 * 2**20, ge=4096)
    db_pool_size: int = Field(8, ge=1)  # PostgreSQL connections for the API's reads
    state_cache_entries: int = Field(200_000, ge=0)  # newest twin states kept in memory (0: always the database)


class _EnvSource(EnvSettingsSource):
    """The environment, reaching into the sections that are plain dataclasses ([ml.*], alert rules) as
    into models: ``TWINFLOW_ML__COUNTERS__SENSORS='["*_kwh"]'`` is a JSON list there too (pydantic-settings
    only decodes the fields of models and pydantic dataclasses); a list or table that is no JSON is
    a configuration error naming the variable, not a traceback."""

    def next_field(
        self, field: FieldInfo | Any | None, key: str, case_sensitive: bool | None = None
    ) -> FieldInfo | None:
        found = super().next_field(field, key, case_sensitive)
        annotation = field.annotation if isinstance(field, FieldInfo) else field
        if found is None and isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            hints = get_type_hints(annotation)
            name = key if case_sensitive else next((n for n in hints if n.lower() == key.lower()), None)
            if name in hints:
                return FieldInfo(annotation=hints[name])
        return found

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        """A value that is no JSON stays text: validation then names the variable and the fix (no traceback)."""
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TWINFLOW_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    twin: TwinSettings = Field(default_factory=TwinSettings)
    topics: Topics = Field(default_factory=Topics)
    flow: FlowSettings = Field(default_factory=FlowSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    ml: MlSettings = Field(default_factory=MlSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @model_validator(mode="after")
    def _clients_follow_stack_ports(self) -> Settings:
        """Unless set explicitly, clients talk to the local stack on the ports it was given."""
        st = self.stack
        if "bootstrap_servers" not in self.kafka.model_fields_set:
            self.kafka.bootstrap_servers = f"127.0.0.1:{st.kafka_port}"
        if "port" not in self.postgres.model_fields_set:
            self.postgres.port = st.postgres_port
        if "port" not in self.mqtt.model_fields_set:
            self.mqtt.port = st.mosquitto_port
        self.security.identity_from(st.dir)
        if self.bridge.buffer.spill_dir is None:  # the bridges' spill files, beside the stack's state
            self.bridge.buffer.spill_dir = st.dir / "buffer"
        return self

    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    sim: SimSettings = Field(default_factory=SimSettings)

    @model_validator(mode="after")
    def _one_record_type_per_topic(self) -> Settings:
        """Two settings naming one topic would mix two record types on it (docs/architecture.md)."""
        seen: dict[str, str] = {}
        for section, name, topic in topic_fields(self):
            where = f"[{section}] {name}"
            if topic in seen:
                raise ValueError(
                    f"{seen[topic]} and {where} both name the topic {topic!r}; each topic carries one"
                    " kind of record: give each its own topic"
                )
            seen[topic] = where
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        path = config_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        sources.append(file_secret_settings)
        return tuple(sources)


def topic_fields(settings: Settings) -> Iterator[tuple[str, str, str]]:
    """(section, field, topic name) of every Kafka topic the settings name.

    >>> ("twin", "desync_topic", "twin.desync") in list(topic_fields(Settings()))
    True
    """
    for section, model in settings:
        if section == "mqtt" or not isinstance(model, BaseModel):  # [mqtt] topics are MQTT's
            continue
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, str) and (section == "topics" or name == "topic" or name.endswith("_topic")):
                yield section, name, value


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
    """Settings, or a :class:`ConfigError` with one line per mistake naming the file or environment
    variable, the section, the key and the fix; unknown keys are mistakes (did-you-mean included),
    a TOML syntax error names line and column."""
    from connectors.config.errors import read_toml, settings_problems

    for name, value in os.environ.items():
        if name.upper().startswith("TWINFLOW_") and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"{name} (environment): not UTF-8 text. Fix or unset the variable.") from None
    path = config_path()
    try:
        data = read_toml(path) if path is not None else {}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    found: ValidationError | None = None
    try:
        result = Settings(**overrides)
    except ValidationError as exc:
        found = exc
    env = {k: v for k, v in os.environ.items() if k.upper().startswith("TWINFLOW_")}
    lines = settings_problems(found, Settings, file=path, data=data, environ=env, prefix="TWINFLOW_")
    if lines:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {line}" for line in lines))
    return result


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()
