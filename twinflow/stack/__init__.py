"""The local stack: real Kafka, PostgreSQL, Mosquitto (and TimescaleDB-in-WASM for tests)."""

from __future__ import annotations

from twinflow.settings import Settings
from twinflow.stack.base import Service, Status
from twinflow.stack.kafka import Kafka
from twinflow.stack.mosquitto import Mosquitto
from twinflow.stack.postgres import Postgres
from twinflow.stack.process import StackError
from twinflow.stack.timescale_wasm import TimescaleWasm

__all__ = ["Service", "StackError", "Status", "services"]

CORE = (Postgres, Mosquitto, Kafka)


def services(settings: Settings, with_timescale_wasm: bool = False) -> list[Service]:
    """Services in start order (Kafka last: it is the slowest to become healthy)."""
    classes = [*CORE, TimescaleWasm] if with_timescale_wasm else list(CORE)
    return [cls(settings) for cls in classes]
