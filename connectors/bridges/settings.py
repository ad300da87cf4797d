"""Settings of the protocol bridges: the ``[bridge]`` section (composed by :mod:`twinflow.settings`)."""

from __future__ import annotations

from pydantic import Field

from connectors.kafka.settings import BufferSettings
from operators.strict import StrictModel


class BridgeSettings(StrictModel):
    """Protocol bridges (OPC-UA, MQTT with a mapping, Modbus) and their command path."""

    buffer: BufferSettings = Field(default_factory=BufferSettings)
    # Consumer group prefix for `twin.commands`; the protocol is appended.
    command_group: str = "twinflow-bridge"
    # Readings of one twin collected this long into one envelope.
    batch_window_ms: float = Field(50.0, ge=0)
    # First wait before reconnecting to a device (seconds); it doubles on each failure.
    reconnect_min_s: float = Field(0.5, gt=0)
    # The longest wait between reconnect attempts (seconds).
    reconnect_max_s: float = Field(15.0, gt=0)
