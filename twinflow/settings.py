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

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from operators.alerts import AlertRules
from operators.ml_config import (
    AnomalyConfig,
    ConditionConfig,
    FailureConfig,
    ForecastConfig,
    ModelConfig,
    OperatingPointConfig,
    SensorHealthConfig,
)
from operators.sensor_limits import SensorLimit
from operators.strict import StrictModel
from twinflow.twin_settings import TwinSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Folder (in the stack dir) of the local development identity: subjects, policy, the user's key.
DEV_IDENTITY = "identity"


class Topics(StrictModel):
    """Kafka topic names."""

    raw: str = "telemetry.raw"
    dlq: str = "telemetry.dlq"
    raw_partitions: int = Field(4, ge=1)
    # Per-twin model control (`twinflow model reset`), key = twin_id.
    model_control: str = "twin.model_control"
    # Simulator ground truth (docs/connectors.md); commands/acks topics are in [twin].
    ground_truth: str = "sim.ground_truth"
    # Failure/repair events per twin (`twinflow model event`, a CMMS), key = twin_id (docs/ml.md).
    events: str = "twin.events"


class KafkaSettings(StrictModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    # Extra librdkafka properties merged into every client (e.g. security settings).
    extra: dict[str, str] = Field(default_factory=dict)
    # SASL password (librdkafka `sasl.password`), or a file holding it; never logged (docs/security.md).
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None

    @model_validator(mode="after")
    def _password_from_file(self) -> KafkaSettings:
        if self.sasl_password_file is not None:
            self.sasl_password = read_secret_file(self.sasl_password_file, "kafka.sasl_password_file")
        return self


class PostgresSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "twinflow"
    user: str = "twinflow"
    password: SecretStr = SecretStr("twinflow")
    sslmode: str = "prefer"
    # `auto`: use TimescaleDB when the server offers it; `on`: require it; `off`: plain PostgreSQL.
    timescaledb: str = Field("auto", pattern="^(auto|on|off)$")
    # A file holding the password (wins over `password`); TLS files for sslmode verify-ca/verify-full.
    password_file: Path | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None

    @model_validator(mode="after")
    def _password_from_file(self) -> PostgresSettings:
        if self.password_file is not None:
            self.password = read_secret_file(self.password_file, "postgres.password_file")
        return self

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
        for tls in ("sslrootcert", "sslcert", "sslkey"):
            if getattr(self, tls):
                params[tls] = getattr(self, tls)
        params.update(override)
        return make_conninfo(**params)


class MqttSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = 1883
    # Topic pattern the bridge subscribes to; `+` in the twin position.
    topic: str = "twinflow/+/telemetry"
    # Which level of the MQTT topic holds the twin_id (0-based).
    twin_level: int = 1
    # How payload timestamps are read: auto | iso | epoch_s | epoch_ms | epoch_us (docs/connectors.md).
    ts_format: str = Field("auto", pattern="^(auto|iso|epoch_s|epoch_ms|epoch_us)$")
    qos: int = Field(1, ge=0, le=2)
    client_id: str = "twinflow-mqtt-bridge"
    # Authentication and TLS (docs/security.md); the password may come from a file.
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _password_from_file(self) -> MqttSettings:
        if self.password_file is not None:
            self.password = read_secret_file(self.password_file, "mqtt.password_file")
        return self


class FlowSettings(StrictModel):
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
    # Python's cyclic garbage collector in flow processes: collect the youngest generation after this
    # many new objects (Python's default is 700: with ~10 objects per reading that is a collection
    # every ~70 readings). Start-up objects are frozen (never scanned again). 0 = Python's defaults.
    gc_gen0_threshold: int = Field(50_000, ge=0)
    # Bytewax epoch length when recovery is off (`twinflow run --no-recovery`). At the end of every
    # epoch each stateful step snapshots every twin it touched, also without recovery (the snapshots
    # are then thrown away): a stall of the flow per epoch. Without recovery nothing needs short
    # epochs. With recovery on, the epoch is `snapshot_interval_s`.
    epoch_without_recovery_s: float = Field(600.0, gt=0)


class StackSettings(StrictModel):
    """Where `twinflow stack` keeps its state, and the ports its services use."""

    dir: Path = PROJECT_ROOT / ".stack"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    # Broker JVM heap. 512m filled to 97 % (old generation) once the shared dev broker held ~10,000
    # partitions of test topics: young + concurrent GC pauses of ~40 ms per second, single pauses up
    # to ~200 ms, each delaying every produce and fetch (benchmarks/RESULTS.md, issue 7 round 3).
    kafka_heap: str = "1g"
    kafka_version: str = "4.1.1"
    postgres_port: int = 5432
    postgres_superuser_password: SecretStr = SecretStr("postgres")
    mosquitto_port: int = 1883
    timescale_wasm_port: int = 55432


class MlSettings(StrictModel):
    """Online models per twin (docs/ml.md); each section takes the fields of its dataclass."""

    # `rul` adds remaining-useful-life and failure-probability predictions.
    model: str = Field("none", pattern="^(none|rul)$")
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    forecasts: bool = True
    failure: FailureConfig = Field(default_factory=FailureConfig)
    # Seconds per time unit of the failure model when time is a timestamp (RUL in hours by default).
    time_unit_s: float = Field(3600.0, gt=0)
    # Live failure prediction (model = "rul"): a twin sends its features to its fleet's model every
    # `predict_every` samples (0: never); `fleets` maps fleet name -> twin_id glob (first match wins),
    # other twins belong to `default_fleet`. One failure model per fleet (docs/ml.md).
    predict_every: int = Field(60, ge=0)
    fleets: dict[str, str] = Field(default_factory=dict)
    default_fleet: str = Field("fleet", min_length=1)
    # Operating limits per sensor ([[ml.limits]] sensor/high/low/twins): forecasts predict their
    # crossing and the alerts flow opens `forecast_breach` alerts (docs/alerts.md).
    limits: list[SensorLimit] = Field(default_factory=list)
    # Context readings (setpoints) the anomaly detector is conditioned on (docs/ml.md, "Operating point").
    operating_point: OperatingPointConfig = Field(default_factory=OperatingPointConfig)
    # Slow time scale: the healthy reference, health index, relations (docs/ml.md, "Two time scales").
    condition: ConditionConfig = Field(default_factory=ConditionConfig)
    # Sensor faults (docs/ml.md, "Sensor faults"); physical ranges per sensor ([[ml.ranges]] sensor/low/high/twins):
    # a value outside is an `out_of_range` sensor fault.
    sensor_health: SensorHealthConfig = Field(default_factory=SensorHealthConfig)
    ranges: list[SensorLimit] = Field(default_factory=list)

    def model_config_for(self, failure: bool | None = None, forecasts: bool | None = None) -> ModelConfig:
        """The operators' ModelConfig; ``failure``/``forecasts`` override `model`/`forecasts`."""
        want_failure = self.model == "rul" if failure is None else failure
        want_forecast = self.forecasts if forecasts is None else forecasts
        return ModelConfig(
            anomaly=self.anomaly,
            forecast=self.forecast if want_forecast else None,
            failure=self.failure if want_failure else None,
            time_unit_s=self.time_unit_s,
            operating_point=self.operating_point,
            condition=self.condition,
            sensor_health=self.sensor_health,
        )


class SecuritySettings(StrictModel):
    """Hostile-input limits, the twin registry, desired-state policy (docs/security.md)."""

    # TOML file of known twins; when set, telemetry of other twins goes to the DLQ (`unknown_twin`).
    twin_registry: Path | None = None
    # Recent (twin_id, seq) pairs remembered per flow process to catch duplicates; 0 turns it off.
    dedup_entries: int = Field(200_000, ge=0)
    # Dead letters keep the original bytes up to this size (larger ones are truncated, with a header).
    max_dead_letter_bytes: int = Field(512 * 1024, ge=1024)
    # MQTT payloads above this are dead-lettered by the bridge itself (truncated), never forwarded.
    max_mqtt_payload_bytes: int = Field(256 * 1024, ge=256)
    # Attribute-based policy for desired-state changes (operators/policy.py); unset = deny all.
    policy_file: Path | None = None
    # Subjects (people, services) with attributes and Ed25519 public keys (operators/request_auth.py);
    # the twin flow authenticates every desired request against it. Unset = every request is denied.
    subjects_file: Path | None = None
    # The CLI's signing key (PEM, Ed25519) and the subject it signs as (default: the subject of the
    # subjects file with this key's public key, else the login name).
    key_file: Path | None = None
    subject: str | None = None
    # A signed request older than this (or further in the future than max_clock_skew_s) is refused.
    max_request_age_s: float = Field(300.0, gt=0)
    max_clock_skew_s: float = Field(60.0, ge=0)
    # Topic for refused desired-state updates.
    desired_rejected_topic: str = "twin.desired.rejected"

    def identity_from(self, stack_dir: Path) -> None:
        """Unset files default to the local stack's development identity (`twinflow stack up` writes it)."""
        dev = stack_dir / DEV_IDENTITY
        files = (("subjects_file", "subjects.toml"), ("policy_file", "policy.toml"), ("key_file", "local.key"))
        for name, file in files:
            if name not in self.model_fields_set and getattr(self, name) is None and (dev / file).is_file():
                setattr(self, name, dev / file)


class AlertSettings(StrictModel):
    """Alert lifecycle and delivery (flows/alerts.py, `twinflow alerts`, docs/alerts.md)."""

    topic: str = "twin.alerts"  # alert versions out; desync escalations from reconciliation in
    actions_topic: str = "twin.alert_actions"  # ack / resolve from `twinflow alerts`
    anomalies_topic: str = "twin.anomaly_scores"
    failures_topic: str = "twin.failure_predictions"
    forecasts_topic: str = "twin.forecasts"
    status_topic: str = "twin.status"  # maintenance on/off
    suppression_topic: str = "twin.alert_suppression"  # parent assets' alarms → children (ISA-18.2)
    operators: int = Field(1, ge=1)  # operator positions, for the alarm rate per operator-hour
    partitions: int = Field(4, ge=1)
    rules: AlertRules = Field(default_factory=AlertRules)
    # Optional webhook: HTTP POST of each alert version, signed with HMAC-SHA256.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None  # or webhook_secret_file (first line)
    webhook_secret_file: Path | None = None
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(5, ge=1)

    def webhook_key(self) -> bytes:
        """The HMAC secret; a clear error names the setting to fix."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value().encode()
        if self.webhook_secret_file is not None:
            try:
                return self.webhook_secret_file.read_text().splitlines()[0].strip().encode()
            except (OSError, IndexError) as exc:
                raise ConfigError(
                    f"alerts.webhook_secret_file={self.webhook_secret_file}: cannot read a secret ({exc}); "
                    "fix the path or set TWINFLOW_ALERTS__WEBHOOK_SECRET"
                ) from None
        raise ConfigError(
            "alerts.webhook_url is set but no secret: set TWINFLOW_ALERTS__WEBHOOK_SECRET or "
            "alerts.webhook_secret_file (a file whose first line is the secret)"
        )


class ApiSettings(StrictModel):
    """`twinflow serve`: the HTTP API and the web view (docs/api.md)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Bearer tokens, stored as SHA-256 hashes (`twinflow api token create`); default <stack dir>/api-tokens.toml.
    tokens_file: Path | None = None
    anonymous_read: bool = False  # writes always need a token
    # TLS (the secure profile sets both); without them the server speaks plain HTTP.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    max_body_bytes: int = Field(64 * 1024, ge=256)
    # Per client (token, else address): a token bucket of `rate_per_s` refilled, `rate_burst` deep; 0 = off.
    rate_per_s: float = Field(100.0, ge=0)
    rate_burst: int = Field(200, ge=1)
    require_if_match: bool = True  # PATCH desired without If-Match → 428
    verdict_wait_s: float = Field(10.0, ge=0)  # PATCH desired waits this long for the gate's verdict
    sse_keepalive_s: float = Field(15.0, gt=0)
    sse_buffer_events: int = Field(50_000, ge=0)  # recent events kept for exact Last-Event-ID resume
    db_pool_size: int = Field(8, ge=1)
    state_cache_entries: int = Field(200_000, ge=0)  # newest twin states kept in memory (0: always the database)


class BufferSettings(StrictModel):
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


class BridgeSettings(StrictModel):
    """Protocol bridges (OPC-UA, MQTT with a mapping, Modbus) and their command path."""

    buffer: BufferSettings = Field(default_factory=BufferSettings)
    # Consumer group prefix for `twin.commands`; the protocol is appended.
    command_group: str = "twinflow-bridge"
    # Readings of one twin collected this long into one envelope.
    batch_window_ms: float = Field(50.0, ge=0)
    # Reconnect backoff bounds (seconds).
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(15.0, gt=0)


class SimSettings(StrictModel):
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
        return self

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


def read_secret_file(path: Path, field: str) -> SecretStr:
    """A secret from a file (trailing newline stripped); errors name the field, never the content."""
    try:
        return SecretStr(Path(path).read_text().rstrip("\r\n"))
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror}") from None


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
    from twinflow.config_errors import read_toml, settings_problems

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
