"""Settings of the dataflows: the ``[flow]``, ``[ml]``, ``[security]`` and ``[alerts]`` sections
(``[twin]`` is in :mod:`flows.twin_settings`). Composed, read and checked by :mod:`twinflow.settings`;
flows receive them as arguments.

>>> FlowSettings().batch_size
5000
>>> MlSettings().model_config_for(failure=False).failure is None
True
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import Field, SecretStr

from connectors.config.contract import ConnectorSettings
from connectors.config.errors import ConfigError
from connectors.config.shown import ShownUrl
from connectors.postgres.settings import PostgresSettings
from flows.twin_settings import TwinSettings
from operators.alerts.rules import AlertRules
from operators.ml.config import (
    AnomalyConfig,
    ConditionConfig,
    CountersConfig,
    FailureConfig,
    ForecastConfig,
    ModelConfig,
    OperatingPointConfig,
    SensorHealthConfig,
    StatesConfig,
)
from operators.ml.sensor_limits import SensorLimit
from operators.strict import StrictModel

# Folder (in the stack dir) of the local development identity: subjects, policy, the user's key.
DEV_IDENTITY = "identity"


class FlowSettings(StrictModel):
    RETIRED: ClassVar[dict[str, str]] = {
        "poll_timeout_s": "it never took effect: a caught-up partition is polled again every"
        " `poll_interval_ms`, a backlog at once; remove it",
        "consumer_group": "it never took effect: a flow's Kafka offsets live in its recovery snapshots,"
        " not in a consumer group; remove it",
    }

    # Readings per COPY into the database and messages per Kafka poll (upper bound; a poll's batch is the lower).
    batch_size: int = Field(5000, ge=1)
    # A tailing flow's Kafka partition that is caught up (its poll returned less than a batch) polls
    # again at the next multiple of this many milliseconds (all of a worker's partitions on the same
    # tick), not at once: each batch holds this long a stretch of readings, not the few an immediate
    # poll finds (every step costs per batch). Adds at most this to the latency; a backlog still
    # drains at full speed (full batches), `--no-tail` runs never wait. 0 = poll again at once
    # (Bytewax's own behaviour). At most 500: well under the path's heartbeat gap (path_pauses.GAP_S).
    # 25 by default: at 50 % of the max rate 50 left the p99 over 250 ms (docs/performance.md).
    poll_interval_ms: float = Field(25.0, ge=0, le=500)
    # A Kafka message (or an MQTT payload the bridge forwards) larger than this is dead-lettered (`too_large`).
    max_message_bytes: int = Field(64 * 1024, ge=256)
    # Readings whose timestamp is further than this in the future are rejected.
    max_future_skew_s: float = Field(300.0, ge=0)
    # Readings older than this (days) are rejected as implausible.
    max_age_days: float = Field(3650.0, gt=0)
    # Where the flows keep their recovery state (a folder per flow); unset: <stack dir>/recovery.
    recovery_dir: Path | None = None
    # The recovery snapshot interval (the Bytewax epoch): each flow's steps pickle the state of every
    # twin they touched at its end while readings wait, and a restart after a crash replays up to
    # one interval (idempotently). A clean stop commits at once, whatever the interval. 30 s: at half
    # the max rate the p99 was lower than at 5 s in most alternating pairs, the alerts flow's CPU
    # ≈ 15 % lower (docs/performance.md, "Knobs").
    snapshot_interval_s: float = Field(30.0, gt=0)
    # The pipeline flow writes the telemetry rows and dead letters itself (its ingest part). false: it
    # runs reconciliation and models only, and the telemetry flow (`twinflow run telemetry`), which
    # must then run beside it, writes them: the rows' latency no longer waits for the pipeline's epoch
    # ends, whose pause grows with the twins a process holds (≈ 0.5-1 ms per twin; at 2,000 twins
    # p99 96-154 ms instead of 0.8-1.4 s, for 0-40 % more CPU; docs/performance.md, "Twins per process").
    pipeline_ingest: bool = True
    # Python's cyclic garbage collector in flow processes: collect the youngest generation after this
    # many new objects (Python's default is 700: with ~10 objects per reading that is a collection
    # every ~70 readings). Start-up objects are frozen (never scanned again). 0 = Python's defaults.
    # 500,000: a polled batch (20,000 messages of 4 partitions) keeps ~1M objects alive while it is
    # processed; at 50,000 they survived ~20 young collections per batch into the older generations
    # (GC 1.1 s of a 50,000-reading pipeline run, 0.56 s at 500,000: benchmarks/RESULTS.md).
    gc_gen0_threshold: int = Field(500_000, ge=0)
    # How long a flow process's thread may hold the GIL while another waits for it (Python's
    # `sys.setswitchinterval`, 5 ms by default). A flow's thread shares the GIL with its background
    # PostgreSQL writers: at 1 ms the p99 at half the max rate was lower in 10 of 14 alternating pairs
    # (median 251 vs 318 ms), at the same CPU per reading (docs/performance.md, "Knobs").
    gil_switch_interval_ms: float = Field(1.0, gt=0, le=100)
    # Bytewax epoch length when recovery is off (`twinflow run --no-recovery`). At the end of every
    # epoch each stateful step snapshots every twin it touched, also without recovery (the snapshots
    # are then thrown away): a stall of the flow per epoch. Without recovery nothing needs short
    # epochs. With recovery on, the epoch is `snapshot_interval_s`.
    epoch_without_recovery_s: float = Field(600.0, gt=0)
    # Partitions of each PostgreSQL sink of the flows (telemetry rows, twin versions and windows): a
    # background writer and a connection each, a twin's records always in the same one. None: one per
    # worker of the run (`twinflow run` fills in workers × processes; 1 elsewhere). At most 16.
    sink_partitions: int | None = Field(None, ge=1, le=16)


class MlSettings(StrictModel):
    """Online models per twin (docs/ml.md); each section takes the fields of its dataclass."""

    # `rul` adds remaining-useful-life and failure-probability predictions.
    model: str = Field("none", pattern="^(none|rul)$")
    # The anomaly detector (docs/ml.md, "Anomaly scores"): its fields are listed as ml.anomaly.*.
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    # The forecasters (docs/ml.md, "Forecasts"): horizons, intervals, seasonality.
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    # Publish forecasts (twin.forecasts); false: anomaly scores and health only.
    forecasts: bool = True
    # The failure model of `model = "rul"` (docs/ml.md, "Failure prediction").
    failure: FailureConfig = Field(default_factory=FailureConfig)
    # Seconds per time unit of the failure model when time is a timestamp (RUL in hours by default).
    time_unit_s: float = Field(3600.0, gt=0)
    # Live failure prediction (model = "rul"): a twin sends its features to its fleet's model every
    # `predict_every` samples (0: never); `fleets` maps fleet name -> twin_id glob (first match wins),
    # other twins belong to `default_fleet`. One failure model per fleet (docs/ml.md).
    predict_every: int = Field(60, ge=0)
    # Fleet name -> twin_id glob (first match wins); a twin's features go to its fleet's failure model.
    fleets: dict[str, str] = Field(default_factory=dict)
    # The fleet of twins that no glob of `fleets` matches.
    default_fleet: str = Field("fleet", min_length=1)
    # Operating limits per sensor ([[ml.limits]] sensor/high/low/twins): forecasts predict their
    # crossing and the alerts flow opens `forecast_breach` alerts (docs/alerts.md).
    limits: list[SensorLimit] = Field(default_factory=list)
    # Context readings (setpoints) the anomaly detector is conditioned on (docs/ml.md, "Operating point").
    operating_point: OperatingPointConfig = Field(default_factory=OperatingPointConfig)
    # Slow time scale: the healthy reference, health index, relations (docs/ml.md, "Two time scales").
    condition: ConditionConfig = Field(default_factory=ConditionConfig)
    # Sensor faults: stuck, noisy, drifting, silent sensors (docs/ml.md, "Sensor faults").
    sensor_health: SensorHealthConfig = Field(default_factory=SensorHealthConfig)
    # Physical ranges per sensor ([[ml.ranges]] sensor/low/high/twins): a value outside is an
    # `out_of_range` sensor fault.
    ranges: list[SensorLimit] = Field(default_factory=list)
    # Counters (energy, hours, pieces) scored as their rate: detection, and name globs that are
    # always or never counters (docs/ml.md, "What the models do with each kind of signal").
    counters: CountersConfig = Field(default_factory=CountersConfig)
    # Statuses sent as numbers (a 0/1 running flag, a mode 0..3) taken as operating-point context like
    # booleans: detection, and name globs that are always or never states (docs/ml.md, same section).
    states: StatesConfig = Field(default_factory=StatesConfig)

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
            counters=self.counters,
            states=self.states,
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
    # Attribute-based policy for desired-state changes, alert actions and model control
    # (operators/security/authorization.py); unset = deny all.
    policy_file: Path | None = None
    # Subjects (people, services) with attributes and Ed25519 public keys (operators/security/request_auth.py);
    # the twin flow authenticates every desired request against it. Unset = every request is denied.
    subjects_file: Path | None = None
    # The CLI's signing key (PEM, Ed25519).
    key_file: Path | None = None
    # The subject the CLI signs as (default: the subject of the subjects file with `key_file`'s public
    # key, else the login name).
    subject: str | None = None
    # A signed request older than this is refused.
    max_request_age_s: float = Field(300.0, gt=0)
    # A signed request dated further in the future than this is refused.
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

    RETIRED: ClassVar[dict[str, str]] = {
        "webhook_attempts": "a webhook notification is now queued in the database and retried with"
        " backoff until delivered or `webhook_retention_s` has passed (docs/alerts.md, \"Webhook\"); remove it",
    }

    topic: str = "twin.alerts"  # alert versions out (the flow never reads it back)
    actions_topic: str = "twin.alert_actions"  # ack / resolve from `twinflow alerts`
    anomalies_topic: str = "twin.anomaly_scores"  # the models' outputs the alerts flow reads
    failures_topic: str = "twin.failure_predictions"  # the failure model's predictions (ml.model = "rul")
    forecasts_topic: str = "twin.forecasts"  # the forecasters' outputs
    status_topic: str = "twin.status"  # maintenance on/off
    suppression_topic: str = "twin.alert_suppression"  # parent assets' alarms → children (ISA-18.2)
    operators: int = Field(1, ge=1)  # operator positions, for the alarm rate per operator-hour
    partitions: int = Field(4, ge=1)  # of the model-output and input topics (twin.alerts has one)
    rules: AlertRules = Field(default_factory=AlertRules)
    # How often the tailing alerts flow polls a caught-up partition (flow.poll_interval_ms for the
    # others). None: 1 % of rules.reorder_window_s (300 ms with the default 30 s), at least
    # flow.poll_interval_ms, at most 500: an alert waits the reorder window anyway, and longer polls
    # take more records per batch (less CPU per record, docs/performance.md).
    poll_interval_ms: float | None = Field(None, ge=0, le=500)
    # Optional webhook: HTTP POST of each alert version, signed with HMAC-SHA256 (`settings show`
    # shows it without user, password, query and fragment: a receiver's token often rides there).
    webhook_url: ShownUrl | None = None
    webhook_secret: SecretStr | None = None  # the HMAC key (or webhook_secret_file)
    webhook_secret_file: Path | None = None  # a file whose first line is the HMAC key
    webhook_timeout_s: float = Field(5.0, gt=0)  # seconds per delivery attempt
    # Seconds before a failed delivery (network error, 429, 5xx) is tried again, doubling per attempt
    # (with jitter) up to webhook_backoff_max_s. Versions are queued in the webhook_outbox table and
    # delivered by background threads of the alerts flow, which never waits for the receiver.
    webhook_backoff_s: float = Field(1.0, gt=0)
    webhook_backoff_max_s: float = Field(300.0, gt=0)  # the longest wait between two attempts at a version
    # A version not delivered this long after it was queued fails as expired; delivered and failed
    # rows are deleted this long after they settled (3 days).
    webhook_retention_s: float = Field(3 * 86400.0, gt=0)
    webhook_concurrency: int = Field(4, ge=1, le=64)  # versions POSTed at once (each of another alert)
    webhook_poll_s: float = Field(1.0, gt=0)  # seconds between looks at an outbox that had nothing due

    def poll_interval(self, flow_poll_interval_ms: float) -> float:
        """The alerts flow's poll interval in ms (see ``poll_interval_ms``).

        >>> AlertSettings().poll_interval(25), AlertSettings(poll_interval_ms=40).poll_interval(25)
        (300.0, 40.0)
        >>> AlertSettings(rules={"reorder_window_s": 0}).poll_interval(25)
        25
        """
        if self.poll_interval_ms is not None:
            return self.poll_interval_ms
        return min(max(flow_poll_interval_ms, self.rules.reorder_window_s * 10), 500.0)

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


class DataflowSettings(ConnectorSettings, Protocol):
    """The sections a flow reads, passed in by its caller (``twinflow run``, :mod:`twinflow.dataflows`,
    a test); :class:`twinflow.settings.Settings` has them all. Flows never load configuration."""

    @property
    def postgres(self) -> PostgresSettings: ...
    @property
    def twin(self) -> TwinSettings: ...
    @property
    def security(self) -> SecuritySettings: ...
    @property
    def alerts(self) -> AlertSettings: ...
    @property
    def flow(self) -> FlowSettings: ...
    @property
    def ml(self) -> MlSettings: ...
