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


def services(settings: Settings, with_timescale_wasm: bool = False, secure: bool | None = None) -> list[Service]:
    """Services in start order (Kafka last: it is the slowest to become healthy).

    ``secure``: the secure profile (docs/security.md); by default, whatever the stack folder holds.
    """
    from twinflow.stack.secure import is_secure, secure_services

    if secure or (secure is None and is_secure(settings)):
        core = secure_services(settings)
    else:
        core = [cls(settings) for cls in CORE]
    return [*core, TimescaleWasm(settings)] if with_timescale_wasm else core
