"""Rebuild a twin's reconciliation state from its newest stored version (plain Python, no I/O).

The twin flow resumes a twin from its Bytewax snapshot; when there is none (first start, a
restart without recovery, a lost or wiped recovery folder) it resumes from the newest row of
``twin_state_history`` instead, so versions continue (they never restart at 1 and never
overwrite stored history) and readings already versioned are recognised as old (their source
timestamps are not newer than the stored ones). What the document does not hold starts afresh:
hysteresis timers, and the deadline of a command still pending (a new ``ack_timeout_s`` from
the stored clock).

>>> from datetime import UTC, datetime
>>> from operators.twin.sync_strategy import TwinPolicy
>>> t = datetime(2026, 11, 25, 8, tzinfo=UTC)
>>> doc = {"twin_id": "p1", "version": 41, "desired_version": 3, "event_time": t, "status": "desynced",
...        "mode": "normal", "reported": {"speed": {"value": 1180.0, "ts": t.isoformat()}},
...        "desired": {"speed": {"value": 1200.0, "ts": t.isoformat(), "author": "ann"}},
...        "conflicts": ["speed"], "commands": {"speed": {"command_id": "p1:40:speed", "value": 1200.0,
...        "attempt": 1, "status": "pending"}}, "desync_since": t, "consistency_score": 0.5}
>>> st = state_from_document(doc, TwinPolicy().rules_for("p1"))
>>> st.version, st.desired_version, st.params["speed"].command.status.value, st.params["speed"].driving
(41, 3, 'pending', True)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from operators.twin.connectivity import Connectivity
from operators.twin.state import CommandState, CommandStatus, ParamSync, Status, TwinState
from operators.twin.sync_strategy import TwinRules


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def state_from_document(doc: dict[str, Any], rules: TwinRules) -> TwinState:
    """The state a twin had at the stored version ``doc`` (a ``twin_state_history`` row)."""
    clock = _time(doc.get("event_time"))
    st = TwinState(str(doc["twin_id"]))
    st.version = int(doc["version"])
    st.desired_version = int(doc.get("desired_version") or 0)
    st.clock = clock
    st.mode = str(doc.get("mode") or "normal")
    st.status = Status(doc.get("status") or "synchronized")
    st.reported = {k: (float(v["value"]), _time(v["ts"])) for k, v in (doc.get("reported") or {}).items()}
    st.desired = {
        k: (float(v["value"]), _time(v["ts"]), str(v.get("author") or ""))
        for k, v in (doc.get("desired") or {}).items()
    }
    st.simulated = {k: (float(v["value"]), _time(v["ts"])) for k, v in (doc.get("simulated") or {}).items()}
    conn = doc.get("connectivity")
    if conn:  # none before migration 0145: unknown until the next reading
        lost = {k: _time(v) for k, v in (conn.get("unreachable") or {}).items()}  # none before it was kept
        st.set_connectivity(Connectivity(conn["state"], _time(conn.get("since")), conn.get("reason"), lost))  # type: ignore[arg-type]
    conflicts = set(doc.get("conflicts") or [])
    commands = doc.get("commands") or {}
    for name in st.desired:
        ps = ParamSync()
        ps.synced = name not in conflicts
        ps.hyst.in_conflict = name in conflicts
        cmd = commands.get(name)
        if cmd is not None and clock is not None:
            status = CommandStatus(cmd["status"])
            deadline = clock + timedelta(seconds=rules.param(name).ack_timeout_s)
            ps.command = CommandState(
                cmd["command_id"], float(cmd["value"]), int(cmd["attempt"]), clock, deadline, status
            )
            if status is CommandStatus.RETRY_WAIT:
                ps.command.retry_at = clock
        ps.driving = not ps.synced or (ps.command is not None and ps.command.status is CommandStatus.PENDING)
        st.params[name] = ps
    st.desync_since = _time(doc.get("desync_since"))
    st.last_sync_time = _time(doc.get("last_sync_time"))
    st.sync_latency_ms = doc.get("sync_latency_ms")
    st.consistency_score = float(doc.get("consistency_score", 1.0))
    # An escalation already due when the version was stored has been sent (or was due): not again.
    st.escalated = (
        st.status is Status.DESYNCED
        and st.desync_since is not None
        and clock is not None
        and (clock - st.desync_since).total_seconds() >= rules.max_desync_time_s
    )
    return st


def state_or_fresh(doc: dict[str, Any], rules: TwinRules) -> tuple[TwinState, str | None]:
    """:func:`state_from_document`, or, for a stored document it cannot read (a value without its
    ``ts``, a field of another type: a row another writer or an older version stored), a fresh state
    that continues the stored version numbers (history stays append-only), and why. One unreadable
    row never stops the flow, which holds every other twin too.

    >>> from operators.twin.sync_strategy import TwinPolicy
    >>> st, why = state_or_fresh({"twin_id": "p1", "version": 7, "reported": {"x": {"value": 2}}},
    ...                          TwinPolicy().rules_for("p1"))
    >>> st.version, st.reported, why
    (7, {}, "KeyError: 'ts'")
    """
    try:
        return state_from_document(doc, rules), None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        st = TwinState(str(doc["twin_id"]))
        st.version = int(doc.get("version") or 0)
        st.desired_version = int(doc.get("desired_version") or 0)
        try:
            st.clock = _time(doc.get("event_time"))
        except ValueError:
            st.clock = None
        return st, f"{type(exc).__name__}: {exc}"
