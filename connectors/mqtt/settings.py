"""Settings of the MQTT bridge and clients: the ``[mqtt]`` section (composed by :mod:`twinflow.settings`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from connectors.config.secret_files import read_secret_file
from operators.strict import StrictModel


class MqttSettings(StrictModel):
    host: str = "127.0.0.1"  # the broker of the mapping-free `twinflow bridge mqtt` (port: the local stack's)
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
