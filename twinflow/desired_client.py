"""Send a signed desired request to the twin flow and wait for its verdict (the CLI's side of the gate).

``twinflow twin set-desired``, ``twin mode``, ``alerts maintenance`` and ``command send`` all go
through :func:`request`: it signs the request with the subject's private key
(``security.key_file``), produces it to ``twin.desired`` and reads the gate's verdict for its
request id from ``twin.desired.outcomes``. Nothing here decides anything: the twin flow does.
"""

from __future__ import annotations

import getpass
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from operators.twin.connectivity import HELD
from twinflow.settings import Settings


class RequestError(Exception):
    """The request could not be made (no key, invalid values, Kafka did not take it); the message says why."""


@dataclass(frozen=True)
class Signer:
    subject: str
    key: Any  # Ed25519PrivateKey


def signer(settings: Settings) -> Signer:
    """The subject and private key this CLI signs with (``security.key_file``, ``security.subject``)."""
    from connectors.config.security_files import load_private_key

    sec = settings.security
    if sec.key_file is None:
        raise RequestError(
            "no signing key: set security.key_file (TWINFLOW_SECURITY__KEY_FILE) to your Ed25519 key "
            "(`twinflow key new FILE` makes one), or run `twinflow stack up` for the local development identity"
        )
    try:
        key = load_private_key(sec.key_file)
    except ValueError as exc:
        raise RequestError(f"security.key_file: {exc}") from None
    return Signer(_subject(settings, key), key)


def identity(settings: Settings) -> str:
    """Who this CLI is (what :func:`signer` signs as, without needing the key when ``security.subject``
    is set): ``security.subject``, else the subject with ``security.key_file``'s public key, else the
    login name. Alert actions and model control are authorized as this subject (twinflow.authority)."""
    from connectors.config.security_files import load_private_key

    sec = settings.security
    if sec.subject is not None or sec.key_file is None:
        return _subject(settings, None)
    try:
        return _subject(settings, load_private_key(sec.key_file))
    except ValueError as exc:
        raise RequestError(f"security.key_file: {exc}") from None


def _subject(settings: Settings, key: Any) -> str:
    from connectors.config.security_files import load_subjects

    sec = settings.security
    subject = sec.subject
    if subject is None and key is not None and sec.subjects_file is not None and sec.subjects_file.is_file():
        try:
            subject = load_subjects(sec.subjects_file).subject_of(key)
        except Exception:  # an unreadable subjects file is the flow's concern; fall back to the login name
            subject = None
    return subject or os.environ.get("USER") or getpass.getuser()


def build(
    s: Signer,
    twin_id: str,
    values: dict[str, float],
    *,
    mode: str | None = None,
    expect_version: int | None = None,
    reason: str = "",
    on_behalf_of: str | None = None,
    issued_at: datetime | None = None,
) -> tuple[str, bytes]:
    """(request id, ``twin.desired`` record value) of a signed request; validated as the flow will."""
    from operators.records.envelope import Rejected
    from operators.records.twin import decode_desired
    from operators.security.request_auth import envelope, sign

    request_id = uuid.uuid4().hex
    req: dict[str, Any] = {
        "twin_id": twin_id,
        "values": values,
        "request_id": request_id,
        "issued_at": (issued_at or datetime.now(UTC)).isoformat(),
        "subject": s.subject,
    }
    for name, value in (("mode", mode), ("expected_version", expect_version), ("on_behalf_of", on_behalf_of)):
        if value is not None:
            req[name] = value
    if reason:
        req["reason"] = reason
    value = envelope(*sign(req, s.key))
    try:
        decode_desired(value, twin_id.encode())
    except Rejected as exc:
        raise RequestError(f"not sent: {exc}") from None
    return request_id, value


def request(
    settings: Settings,
    twin_id: str,
    values: dict[str, float],
    *,
    mode: str | None = None,
    expect_version: int | None = None,
    reason: str = "",
    timeout: float = 30.0,
) -> tuple[str, dict[str, Any] | None]:
    """Sign, send and (``timeout`` > 0) wait: (request id, the verdict record or None on timeout)."""
    import msgspec
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka.clients import client_config, make_producer, produce_acknowledged, quiet_logger

    quiet = quiet_logger()  # a one-shot request: its outcome is the caller's to report

    request_id, value = build(
        signer(settings), twin_id, values, mode=mode, expect_version=expect_version, reason=reason
    )
    topic = settings.twin.outcomes_topic
    consumer = None
    if timeout > 0:
        # Start reading the verdicts at their current end, before sending: only this request's counts.
        consumer = Consumer(
            client_config(
                settings,
                **{"group.id": f"twinflow-cli-{uuid.uuid4().hex}", "enable.auto.commit": False, "logger": quiet},
            )
        )
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            consumer.close()
            raise RequestError(f"topic {topic} does not exist: run `twinflow kafka init` and the twin flow")
        parts = []
        for p in meta.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, high))
        consumer.assign(parts)
    try:
        failure = produce_acknowledged(
            make_producer(settings, logger=quiet), settings.twin.desired_topic, twin_id, value, 30
        )
        if failure is not None:
            raise RequestError(f"Kafka did not take the request on {settings.twin.desired_topic}: {failure}; try again")
        if consumer is None:
            return request_id, None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.key() != twin_id.encode():
                continue
            verdict = msgspec.json.decode(msg.value())
            if verdict.get("request_id") == request_id:
                return request_id, verdict
        return request_id, None
    finally:
        if consumer is not None:
            consumer.close()


def explain(verdict: dict[str, Any]) -> str:
    """One line for people: ``applied: …`` or ``denied: <reason> <detail>``."""
    if verdict["decision"] == "applied":
        who = verdict["actor"] + (f" via {verdict['via']}" if verdict.get("via") else "")
        sent = f"; command {', '.join(verdict['commands'])} sent" if verdict.get("commands") else ""
        held = f"; {verdict['detail']}" if HELD in (verdict.get("detail") or "") else ""
        return (
            f"applied: {verdict['twin_id']} is at desired version {verdict['desired_version']} "
            f"(state version {verdict['version']}) by {who}{sent}{held}"
        )
    return f"denied: {verdict['reason']} {verdict['detail']}"


def timeout_hint(settings: Settings, request_id: str, timeout: float) -> str:
    return (
        f"no verdict within {timeout:g} s for request {request_id}: is the twin flow running "
        f"(`twinflow run pipeline` or `twinflow run twin`) on {settings.twin.desired_topic}? It may still be "
        "decided later: `twinflow twin show` and the audit trail (desired_requests) will tell"
    )
