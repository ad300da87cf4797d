"""Settings of the MQTT bridge and clients: the ``[mqtt]`` section (composed by :mod:`twinflow.settings`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from connectors.config.secret_files import read_secret_file
from operators.strict import StrictModel


class MqttSettings(StrictModel):
    host: str = "127.0.0.1"  # the broker of the mapping-free `twinflow bridge mqtt` (port: the local stack's)
    port: int = 1883  # the broker's port (default: the local stack's, stack.mosquitto_port)
    # Topic pattern the bridge subscribes to; `+` in the twin position.
    topic: str = "twinflow/+/telemetry"
    # Which level of the MQTT topic holds the twin_id (0-based).
    twin_level: int = 1
    # How payload timestamps are read: auto | iso | epoch_s | epoch_ms | epoch_us (docs/connectors.md).
    ts_format: str = Field("auto", pattern="^(auto|iso|epoch_s|epoch_ms|epoch_us)$")
    qos: int = Field(1, ge=0, le=2)  # of the bridge's subscription
    # The bridge's MQTT client id; its session is persistent, so one id per running bridge.
    client_id: str = "twinflow-mqtt-bridge"
    # Authentication and TLS (docs/security.md):
    username: str | None = None  # the broker login
    password: SecretStr | None = None  # set it by variable or password_file, not in the file
    password_file: Path | None = None  # a file holding the password (wins over `password`)
    tls: bool = False  # connect with TLS
    ca_file: Path | None = None  # the CA that signed the broker's certificate
    cert_file: Path | None = None  # the client certificate (mutual TLS)
    key_file: Path | None = None  # the client certificate's key

    @model_validator(mode="after")
    def _password_from_file(self) -> MqttSettings:
        if self.password_file is not None:
            self.password = read_secret_file(self.password_file, "mqtt.password_file")
        return self
