"""Who may take an alert action or control a twin's models, decided the same way for the HTTP API,
``twinflow alerts`` and ``twinflow model``.

The policy file's rules with ``alerts = [...]`` or ``models = [...]``
(:meth:`operators.security.authorization.Policy.authorize_action`) judge the subject's attributes
from the subjects file against the twin's (of the alert) attributes, taken as the desired-state gate
takes them (the twin registry, else the type from ``[twin.policy]``:
:func:`operators.twin.desired_gate.policy_attrs`). The files are read for every decision, so an edit applies
at once. Every decision, allow and deny, is appended to the audit chain (``desired_audit``,
:mod:`connectors.postgres.audit`) before the action is taken; if it cannot be, nothing is done
(:func:`authorize` raises :class:`ActionRefused`, 503). docs/security.md, "Alert actions and model control".
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from operators.security.authorization import EVERY_TWIN, Decision, DenyReason, Policy
from twinflow.settings import ConfigError, Settings


class ActionRefused(Exception):
    """An action cannot apply; ``status`` is 403 (denied by the policy, ``reason`` its reason) or 503 (the
    decision could not be audited), and for alert actions (twinflow.alarms.actions) 404 (no such alert),
    409 (its state) or 422 (the request)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


def load_action_policy(path: Path) -> Policy:
    """The policy file, an unchanged development policy of an earlier ``twinflow stack up`` read as the
    current one (:func:`twinflow.stack.identity.read_as_current`); ConfigError naming the file otherwise."""
    from connectors.config.security_files import load_policy
    from twinflow.stack.identity import read_as_current

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return load_policy(path)  # its error names the file
    current = read_as_current(text)
    return load_policy(path) if current == text else Policy.from_dict(tomllib.loads(current))


def decide(settings: Settings, subject: str, action: str, twin_id: str | None, kind: str = "alerts") -> Decision:
    """May ``subject`` take ``action`` of ``kind`` (``alerts``, ``models``) on ``twin_id`` (None: on every
    twin's alerts)?"""
    from connectors.config.security_files import load_subjects, load_twin_registry
    from operators.twin.desired_gate import policy_attrs

    sec = settings.security
    if sec.policy_file is None:
        return Decision(False, DenyReason.NO_POLICY, "no policy file configured (security.policy_file)")
    if sec.subjects_file is None:
        return Decision(False, DenyReason.NO_SUBJECTS, "no subjects file configured (security.subjects_file)")
    try:
        policy = load_action_policy(sec.policy_file)
        who = load_subjects(sec.subjects_file).get(subject)
        registry = load_twin_registry(sec.twin_registry) if sec.twin_registry else None
    except ConfigError as exc:
        return Decision(False, DenyReason.NO_POLICY, f"cannot decide: {exc}")
    if who is None:
        return Decision(False, DenyReason.UNKNOWN_SUBJECT, f"{subject!r} is not in {sec.subjects_file}")
    if twin_id is None:
        return policy.authorize_action(kind, action, who.attrs, EVERY_TWIN)
    attrs = policy_attrs(twin_id, registry, settings.twin.policy.type_of)
    if attrs is None:
        return Decision(False, DenyReason.UNKNOWN_TWIN, f"twin {twin_id!r} is not in the twin registry")
    return policy.authorize_action(kind, action, who.attrs, attrs)


def authorize(
    settings: Settings,
    subject: str,
    action: str,
    twin_id: str | None,
    request: dict[str, Any],
    kind: str = "alerts",
) -> Decision:
    """:func:`decide`, appended to the audit chain as ``new = {"action": "alert.<action>", **request}``
    (``model.<action>`` for model control; ``twin_id`` ``*`` for every twin); the allowing decision, else
    :class:`ActionRefused` (403 denied, 503 when the decision cannot be audited)."""
    import psycopg

    from connectors.postgres.audit import AuditEntry, append

    decision = decide(settings, subject, action, twin_id, kind)
    entry = AuditEntry(
        actor=subject,
        twin_id=twin_id or "*",
        new={"action": f"{kind.removesuffix('s')}.{action}", **request},
        decision=decision.decision,
        reason=decision.reason,
        detail=decision.detail,
    )
    try:
        with psycopg.connect(settings.postgres.conninfo(), connect_timeout=10) as conn:
            append(conn, entry)
    except psycopg.Error as exc:
        raise ActionRefused(503, "audit_unavailable", f"not taken: the decision could not be audited ({exc})") from None
    if not decision.allowed:
        raise ActionRefused(403, decision.reason, f"denied: {decision.reason}: {decision.detail}")
    return decision
