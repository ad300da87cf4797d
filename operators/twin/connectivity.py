"""Whether a twin's device can be reached: its connectivity, from what the bridges report.

Plain Python. A twin is ``online`` once a good reading arrives, ``offline`` when an envelope says
its device cannot be reached (a status of :data:`NO_COMMUNICATION` on a reading, or a boolean
``online`` reading that is false: a Sparkplug NDEATH/DDEATH, an MQTT last will) or when no reading
came for its ``offline_after_s`` (``[twin]``, per type or twin in ``[twin.policy]``), and ``unknown``
before any of these. The reconciler keeps it in :class:`~operators.twin.state.TwinState`
(docs/reconciliation.md, "Connectivity").

A no-communication status is about one sensor: :func:`lost_sensors` names them, and the twin keeps
them in :attr:`Connectivity.unreachable` (sensor → since when) until a good value of that sensor.
The twin goes ``offline`` for them only when every sensor it has reported is unreachable; a
device-level signal (a death, a last will, silence, or an unreachable event naming no sensor) takes
it offline at once, and any good value brings it back (the device answers again).

>>> from datetime import datetime, UTC
>>> env = Envelope(1, "p1", datetime(2026, 1, 1, tzinfo=UTC), 1, "opcua", {"speed": None},
...                "bad", {"speed": "BadNoCommunication"})
>>> unreachable(env), lost_sensors(env)
('opcua BadNoCommunication on p1.speed', ('speed',))
>>> unreachable(Envelope(1, "p1", env.ts, 2, "mqtt", {"online": False})), unreachable(
...     Envelope(1, "p1", env.ts, 3, "mqtt", {"online": True}))
('mqtt reported online = false (Sparkplug NDEATH/DDEATH or a last will)', None)
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from operators.records.envelope import Envelope

ONLINE, OFFLINE, UNKNOWN = "online", "offline", "unknown"
UNREACHABLE = 3
"""Quality code of a :class:`~operators.records.twin.Reported` event that says the device cannot be
reached (no values; above bad, so it never enters reported values or windows)."""

MODBUS_GATEWAY_STATUS = {0x0A: "BadGatewayPathUnavailable", 0x0B: "BadGatewayTargetNoResponse"}
"""Modbus exception codes of a gateway whose device behind it cannot be reached, as status names."""

NO_COMMUNICATION = frozenset(
    {
        # OPC-UA: a gateway (Kepware-like) whose device behind it does not answer.
        "BadNoCommunication",
        "BadCommunicationError",
        "BadNotConnected",
        "BadDeviceFailure",
        "BadServerNotConnected",
        # Modbus TCP gateway exceptions 0x0A and 0x0B (connectors/modbus/bridge.py).
        *MODBUS_GATEWAY_STATUS.values(),
    }
)
"""Status code names that mean the device cannot be reached (not that one sensor failed)."""

HELD = "commands are held until it is back online"  # in a verdict's detail (twinflow.desired_client)
ONLINE_READING = "online"  # a boolean reading that says whether the device is connected


class Connectivity(msgspec.Struct, frozen=True):
    """A twin's connectivity in its state document: ``state``, ``since`` (event time), ``reason`` and
    ``unreachable``: the sensors whose last status said no communication, each with the event time it
    started (empty: none; documents and snapshots written before it load as empty)."""

    state: Literal["online", "offline", "unknown"] = UNKNOWN
    since: datetime | None = None
    reason: str | None = None
    unreachable: dict[str, datetime] = msgspec.field(default_factory=dict)


NEVER_SEEN = Connectivity()
NEVER_SEEN_JSON = msgspec.Raw(msgspec.json.encode(NEVER_SEEN))


def unreachable(env: Envelope) -> str | None:
    """Why ``env`` says its device cannot be reached, or None (it does not say so)."""
    if env.status:
        for sensor, name in env.status.items():
            if name in NO_COMMUNICATION:
                return f"{env.source} {name} on {env.twin_id}.{sensor}"
    if env.readings.get(ONLINE_READING, True) is False:
        return f"{env.source} reported {ONLINE_READING} = false (Sparkplug NDEATH/DDEATH or a last will)"
    return None


def lost_sensors(env: Envelope) -> tuple[str, ...]:
    """The sensors of ``env`` whose status says no communication (empty for a death or last will)."""
    if not env.status:
        return ()
    return tuple(sensor for sensor, name in env.status.items() if name in NO_COMMUNICATION)


def silence_reason(offline_after_s: float, key: str = "twin.offline_after_s") -> str:
    """The reason of a twin gone offline by silence; ``key``: the setting that gave ``offline_after_s``.

    >>> silence_reason(10, "twin.policy.types.plc.offline_after_s")
    'no reading for 10 s (twin.policy.types.plc.offline_after_s)'
    """
    return f"no reading for {offline_after_s:g} s ({key})"


def held_detail(conn: Connectivity, detail: str) -> str:
    """A desired change's verdict detail when the device is offline: its commands wait."""
    since = conn.since.isoformat() if conn.since else "?"
    held = f"device offline since {since} ({conn.reason}): {HELD}"
    return f"{detail}; {held}" if detail else held
