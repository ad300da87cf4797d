"""People's actions on alerts, shared by ``twinflow alerts`` and the HTTP API.

An action is checked against the alert's row (it exists, it is not resolved, shelving has an expiry
in the future and a reason), then authorized for its subject by the policy and the decision audited
(:mod:`twinflow.authority`), published to ``twin.alert_actions`` for the alerts flow (which applies
it to the lifecycle and writes a new version) and applied to the row at once, so a list shows it
before the flow has caught up. Queueing failed webhook deliveries again (:func:`redeliver`) is
authorized and audited the same way. Refusals raise :class:`ActionRefused` with an HTTP-like status
(403: denied by the policy, ``reason`` its reason; 503: the decision could not be audited).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.postgres.alerts_store import AlertStore
from operators.records.alerts import ACTIONS, AlertAction, encode
from twinflow.authority import ActionRefused, authorize
from twinflow.settings import Settings

Publish = Callable[[str, str, bytes], None]  # (topic, key, value); raises unless Kafka acknowledged it
PAST = {
    "ack": "acknowledged",
    "resolve": "resolved",
    "shelve": "shelved",
    "unshelve": "unshelved",
    "out_of_service": "taken out of service",
    "in_service": "returned to service",
}


@dataclass(frozen=True)
class Done:
    alert: dict[str, Any]  # the row after the immediate update
    changed: bool  # False: nothing to do (e.g. already acknowledged)
    message: str


def act(
    settings: Settings,
    store: AlertStore,
    publish: Publish,
    alert_id: str,
    action: str,
    by: str,
    *,
    until: datetime | None = None,
    note: str = "",
    now: datetime | None = None,
    subject: str | None = None,
) -> Done:
    """Check, authorize (``subject``, default ``by``), publish and record one action; see the module docs."""
    if action not in ACTIONS:
        raise ActionRefused(422, "unknown_action", f"action {action!r}: use one of {', '.join(ACTIONS)}")
    now = now or datetime.now(UTC)
    row = store.get_alert(alert_id)
    if row is None:
        raise ActionRefused(404, "no_such_alert", f"no alert {alert_id!r}")
    if row["state"] == "resolved":
        raise ActionRefused(409, "resolved", f"alert {alert_id} is already resolved ({row['resolved_by']})")
    if action == "shelve":
        longest = settings.alerts.rules.max_shelve_s
        if until is None or until.tzinfo is None:
            raise ActionRefused(422, "no_expiry", "shelving needs an expiry with a time zone (`until`)")
        if until <= now:
            raise ActionRefused(422, "expiry_in_past", f"shelving expiry {until.isoformat()} is not in the future")
        if until > now + timedelta(seconds=longest):
            limit = f"shelving lasts at most {longest:g} s (alerts.rules.max_shelve_s)"
            raise ActionRefused(422, "expiry_too_far", limit)
        if not note.strip():
            raise ActionRefused(422, "no_reason", "shelving needs a reason")
    if action == "unshelve" and row["shelved_until"] is None:
        raise ActionRefused(409, "not_shelved", f"alert {alert_id} is not shelved")
    if action == "in_service" and not row["out_of_service"]:
        raise ActionRefused(409, "in_service", f"alert {alert_id} is not out of service")
    request = {"alert_id": alert_id, "until": until.isoformat() if until else None, "note": note, "by": by}
    authorize(settings, subject or by, action, row["twin_id"], request)
    if action == "ack" and row["state"] == "acknowledged":
        return Done(row, False, f"alert {alert_id} was already acknowledged by {row['acked_by']}")
    record = AlertAction(
        alert_id=alert_id,
        twin_id=row["twin_id"],
        action=action,  # type: ignore[arg-type]
        by=by,
        ts=now,
        note=note,
        until=until,
    )
    publish(settings.alerts.actions_topic, row["twin_id"], encode(record))
    changed = store.record_action(alert_id, action, by, now, until=until, note=note)
    after = store.get_alert(alert_id) or row
    if not changed and not (action == "ack" and after["state"] == "open"):  # (a cleared alarm: the flow closes it)
        return _overtaken(alert_id, action, after)  # someone else acted in between (the CLI and the API at once)
    return Done(after, True, f"alert {alert_id} ({row['twin_id']}, {row['kind']}) {PAST[action]} by {by}")


def _overtaken(alert_id: str, action: str, row: dict[str, Any]) -> Done:
    """The answer when another person's action changed the row between our check and our update
    (ours is published too; the alerts flow ignores it as it would a late one)."""
    if row["state"] == "resolved":
        raise ActionRefused(409, "resolved", f"alert {alert_id} was resolved meanwhile ({row['resolved_by']})")
    if action == "ack" and row["state"] == "acknowledged":
        return Done(row, False, f"alert {alert_id} was already acknowledged by {row['acked_by']}")
    return Done(row, False, f"alert {alert_id}: nothing to do any more, someone changed it meanwhile")


def redeliver(
    settings: Settings, subject: str, alert_id: str | None, version: int | None = None, *, by: str | None = None
) -> list[tuple[str, int]]:
    """Queue failed webhook deliveries again (of ``alert_id``, or of every alert with None) once ``subject``
    is allowed to (``redeliver``; for every alert, by a rule without a twin condition); the ``(alert_id,
    version)`` queued, recorded as queued by ``by`` (default ``subject``). 404 when the alert does not exist."""
    from connectors.postgres.webhook_outbox import OutboxStore

    twin_id: str | None = None
    if alert_id is not None:
        alerts = AlertStore(settings.postgres.conninfo(), max_attempts=3)
        try:
            row = alerts.get_alert(alert_id)
        finally:
            alerts.close()
        if row is None:
            raise ActionRefused(404, "no_such_alert", f"no alert {alert_id!r}")
        twin_id = row["twin_id"]
    authorize(settings, subject, "redeliver", twin_id, {"alert_id": alert_id, "version": version, "by": by or subject})
    store = OutboxStore(settings.postgres.conninfo())
    try:
        return store.redeliver(alert_id, version, by=by or subject)
    finally:
        store.close()
