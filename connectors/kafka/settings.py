"""Settings of the Kafka clients: the ``[kafka]`` and ``[topics]`` sections and the bridges' buffer
(``[bridge.buffer]``, :mod:`connectors.kafka.publisher`). Composed by :mod:`twinflow.settings`.

>>> KafkaSettings(bootstrap_servers="k1:9092").bootstrap_servers
'k1:9092'
>>> Topics().raw
'telemetry.raw'
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, SerializationInfo, field_serializer, model_validator

from connectors.config.secret_files import read_secret_file
from connectors.config.shown import showing, shown_properties
from operators.strict import StrictModel


class Topics(StrictModel):
    """Kafka topic names."""

    raw: str = "telemetry.raw"  # the bridges' telemetry envelopes, key = twin_id
    dlq: str = "telemetry.dlq"  # dead letters: the original bytes with a reason (docs/security.md)
    raw_partitions: int = Field(4, ge=1)  # of telemetry.raw: the most flow workers that get readings
    # Per-twin model control (`twinflow model reset`), key = twin_id.
    model_control: str = "twin.model_control"
    # Simulator ground truth (docs/connectors.md); commands/acks topics are in [twin].
    ground_truth: str = "sim.ground_truth"
    # Failure/repair events per twin (`twinflow model event`, a CMMS), key = twin_id (docs/ml.md).
    events: str = "twin.events"


class KafkaSettings(StrictModel):
    bootstrap_servers: str = "127.0.0.1:9092"  # host:port,… of the brokers (default: the local stack's)
    # Extra librdkafka properties merged into every client (e.g. security settings); `settings show`
    # masks those named like a secret (`*password*`, `*secret*`, …) and shows `*.url` ones without credentials.
    extra: dict[str, str] = Field(default_factory=dict)
    # SASL password (librdkafka `sasl.password`); never logged (docs/security.md).
    sasl_password: SecretStr | None = None
    # A file holding the SASL password (wins over `sasl_password`).
    sasl_password_file: Path | None = None
    # Kafka answers but has acknowledged none of a producer's outstanding records for this long: the
    # producer is stuck (a librdkafka stall after a broker restart, connectors/kafka/stall.py); it is
    # purged and a new one sends its records (duplicates are possible, never loss; consumers and sinks
    # are idempotent). The flows' sinks and the bridges (unless `bridge.buffer.stall_s` is set).
    stall_s: float = Field(30.0, gt=0)

    @field_serializer("extra")
    def _extra_shown(self, extra: dict[str, str], info: SerializationInfo) -> dict[str, str]:
        return shown_properties(extra) if showing(info) else extra

    @model_validator(mode="after")
    def _password_from_file(self) -> KafkaSettings:
        if self.sasl_password_file is not None:
            self.sasl_password = read_secret_file(self.sasl_password_file, "kafka.sasl_password_file")
        return self


class BufferSettings(StrictModel):
    """The bridges' local buffer in front of Kafka (one implementation: connectors/kafka/publisher.py)."""

    # Records handed to librdkafka but not yet acknowledged; beyond this they wait in the buffer.
    max_in_flight: int = Field(20000, ge=1)
    # Records kept in memory before spilling to the file.
    memory_records: int = Field(50000, ge=1)
    # Spill file directory (twinflow's settings default it to <stack dir>/buffer).
    spill_dir: Path | None = None
    # The spill file's size limit; beyond it `when_full` decides.
    spill_max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    # When memory and file are both full: `block` the device side (back-pressure) or `drop_oldest`.
    when_full: str = Field("block", pattern="^(block|drop_oldest)$")
    # The bridges' own `kafka.stall_s` (default: that one): a stuck producer's records go back to the
    # buffer and a new producer sends them.
    stall_s: float | None = Field(None, gt=0)
