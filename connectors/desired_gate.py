"""The gate a desired-state update passes before reconciliation: decide, audit, record refusals.

``gate(update, subject_attrs, twin_attrs, old, conn=…, producer=…)`` asks the policy
(:func:`operators.policy.authorize`), appends the decision to the hash-chained audit trail
(:mod:`connectors.postgres.audit`) and, when denied, stores the refusal in
``desired_rejections`` and publishes it to ``twin.desired.rejected`` (key = twin_id).
The reconciliation step applies the update only when the returned decision is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from confluent_kafka import Producer

from connectors.postgres.audit import AuditEntry, append, record_rejection
from operators.policy import Decision, Policy, authorize


def _get(update: Any, name: str, default: Any = None) -> Any:
    return update.get(name, default) if isinstance(update, Mapping) else getattr(update, name, default)


def rejection_message(update: Any, subject_attrs: Mapping[str, Any], decision: Decision) -> bytes:
    """The value published to ``twin.desired.rejected``: the update, who sent it and why it was refused."""
    return orjson.dumps(
        {
            "twin_id": _get(update, "twin_id"),
            "values": _get(update, "values"),
            "expected_version": _get(update, "expected_version"),
            "author": _get(update, "author"),
            "update_reason": _get(update, "reason"),
            "subject": subject_attrs.get("id"),
            "reason": decision.reason,
            "detail": decision.detail,
            "rejected_at": datetime.now(UTC).isoformat(),
        },
        default=str,
    )


def gate(
    update: Any,
    subject_attrs: Mapping[str, Any],
    twin_attrs: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    *,
    conn: psycopg.Connection,
    producer: Producer | None,
    rejected_topic: str = "twin.desired.rejected",
    policy: Policy | None = None,
) -> Decision:
    """Authorise, audit and (when denied) record ``update``; returns the decision."""
    decision = authorize(update, subject_attrs, twin_attrs, policy)
    twin_id = str(_get(update, "twin_id"))
    actor = str(subject_attrs.get("id") or _get(update, "author") or "unknown")
    values = dict(_get(update, "values") or {})
    with conn.transaction():
        row = append(
            conn,
            AuditEntry(
                actor=actor,
                twin_id=twin_id,
                old=dict(old) if old is not None else None,
                new=values,
                version=_get(update, "expected_version"),
                decision=decision.decision,
                reason=decision.reason,
                detail=decision.detail,
            ),
        )
        if not decision.allowed:
            record_rejection(
                conn,
                twin_id=twin_id,
                actor=actor,
                request=orjson.loads(rejection_message(update, subject_attrs, decision)),
                reason=decision.reason,
                detail=decision.detail,
                audit_id=row.id,
            )
    if not decision.allowed and producer is not None:
        producer.produce(rejected_topic, key=twin_id.encode(), value=rejection_message(update, subject_attrs, decision))
        producer.poll(0)
    return decision
