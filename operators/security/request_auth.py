"""Who sent a desired request: Ed25519-signed requests checked against the subjects file.

A desired request on ``twin.desired`` is a signed envelope (plain Python, no I/O)::

    {"signed": "<the request as JSON text>", "signature": "<base64 Ed25519 signature of those bytes>"}

The signature covers the exact UTF-8 bytes of ``signed`` (no canonicalisation, so any JSON
library in any language can produce a valid request). The request names its ``subject``; the
twin flow verifies the signature with that subject's public key from the subjects file
(``security.subjects_file``), checks freshness (``issued_at``) and, with the request id,
replays (see :mod:`operators.twin.desired_gate`). A trusted service (a gateway) may sign a request
*on behalf of* another subject when its entry allows it (``act_for``)::

    [subject.ann]
    roles = ["operator"]
    site = "north"
    public_keys = ["<base64 of the raw 32-byte Ed25519 public key>"]

    [subject.api-gateway]          # e.g. the HTTP API: authenticates its users itself
    roles = ["gateway"]
    public_keys = ["..."]
    act_for = ["*"]                # globs of subject ids it may act for

Every key other than ``public_keys`` and ``act_for`` is an attribute the policy matches on.

>>> key = new_private_key()
>>> subjects = Subjects.from_dict({"subject": {"ann": {"roles": ["operator"], "public_keys": [public_key_text(key)]}}})
>>> from datetime import UTC, datetime
>>> now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
>>> req = {"twin_id": "p1", "values": {"speed": 1200.0}, "request_id": "r-0001", "issued_at": now.isoformat(),
...        "subject": "ann"}
>>> signed, signature = sign(req, key)
>>> who = authenticate(signed, signature, "ann", None, now, subjects, Freshness())
>>> who.actor, who.attrs["roles"]
('ann', ['operator'])
>>> authenticate(signed.replace(b"1200", b"9999"), signature, "ann", None, now, subjects, Freshness()).reason
'bad_signature'
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, field_validator

Attr = str | int | float | bool | list[str | int | float | bool]


class AuthReason:
    """Machine-readable reasons an authentication fails."""

    UNSIGNED = "unsigned"
    NO_SUBJECTS = "no_subjects"
    UNKNOWN_SUBJECT = "unknown_subject"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    ISSUED_IN_FUTURE = "issued_in_future"
    NOT_DELEGATED = "not_delegated"


def _public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"{text[:60]!r} is not a base64 Ed25519 public key (32 raw bytes); `twinflow key new FILE` prints one"
        ) from None


class SubjectEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    public_keys: list[str] = Field(default_factory=list)
    act_for: list[str] = Field(default_factory=list)

    @field_validator("public_keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        for k in keys:
            _public_key(k)
        return keys


class SubjectsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: dict[str, SubjectEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class Subject:
    id: str
    attrs: dict[str, Any]  # what the policy sees, with "id"
    keys: tuple[Ed25519PublicKey, ...]
    act_for: tuple[str, ...] = ()

    def verifies(self, data: bytes, signature: bytes) -> bool:
        for key in self.keys:
            try:
                key.verify(signature, data)
                return True
            except InvalidSignature:
                continue
        return False

    def may_act_for(self, other: str) -> bool:
        return any(fnmatchcase(other, pattern) for pattern in self.act_for)


class Subjects:
    """The subjects file: id → attributes, public keys and delegation."""

    def __init__(self, subjects: dict[str, Subject]) -> None:
        self._subjects = subjects

    @classmethod
    def from_model(cls, parsed: SubjectsFile) -> Subjects:
        out = {}
        for sid, entry in parsed.subject.items():
            attrs = {"id": sid, **(entry.model_extra or {})}
            keys = tuple(_public_key(k) for k in entry.public_keys)
            out[sid] = Subject(sid, attrs, keys, tuple(entry.act_for))
        return cls(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subjects:
        return cls.from_model(SubjectsFile.model_validate(data))

    def get(self, subject_id: str) -> Subject | None:
        return self._subjects.get(subject_id)

    def __len__(self) -> int:
        return len(self._subjects)

    def subject_of(self, key: Ed25519PrivateKey) -> str | None:
        """The id of the subject whose public keys include ``key``'s (None if none)."""
        mine = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        for sid, subject in self._subjects.items():
            for k in subject.keys:
                if k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == mine:
                    return sid
        return None


@dataclass(frozen=True)
class Freshness:
    """How old (or how far in the future, clock skew) a request's ``issued_at`` may be."""

    max_age: timedelta = timedelta(seconds=300)
    max_skew: timedelta = timedelta(seconds=60)


@dataclass(frozen=True)
class Authenticated:
    """The outcome of :func:`authenticate`: the subject the policy decides for, or why not."""

    actor: str  # the subject the request acts as (on_behalf_of for a gateway)
    attrs: dict[str, Any] = field(default_factory=dict)
    via: str | None = None  # the gateway subject that signed, if any
    reason: str | None = None  # None: authenticated
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


def authenticate(
    signed: bytes | None,
    signature: bytes | None,
    subject_id: str,
    on_behalf_of: str | None,
    issued_at: datetime | None,
    subjects: Subjects | None,
    freshness: Freshness,
    now: datetime | None = None,
) -> Authenticated:
    """Verify a request's signature, freshness and delegation; ``now`` defaults to ``issued_at``."""
    claimed = subject_id or "anonymous"
    if signed is None or signature is None:
        return Authenticated(
            claimed,
            reason=AuthReason.UNSIGNED,
            detail="the request is not signed; send it with `twinflow twin set-desired` (security.key_file) "
            "or sign it as docs/security.md describes",
        )
    if subjects is None:
        return Authenticated(
            claimed, reason=AuthReason.NO_SUBJECTS, detail="no subjects file configured (security.subjects_file)"
        )
    signer = subjects.get(subject_id)
    if signer is None:
        return Authenticated(
            claimed, reason=AuthReason.UNKNOWN_SUBJECT, detail=f"subject {claimed!r} is not in the subjects file"
        )
    if not signer.verifies(signed, signature):
        return Authenticated(
            claimed,
            reason=AuthReason.BAD_SIGNATURE,
            detail=f"the signature does not verify with the public keys of subject {claimed!r}",
        )
    if issued_at is None:
        return Authenticated(claimed, reason=AuthReason.UNSIGNED, detail="a signed request needs issued_at")
    now = now or issued_at
    if now - issued_at > freshness.max_age:
        age = (now - issued_at).total_seconds()
        return Authenticated(
            claimed,
            reason=AuthReason.EXPIRED,
            detail=f"issued {age:.0f} s ago, more than security.max_request_age_s "
            f"({freshness.max_age.total_seconds():g} s); send it again",
        )
    if issued_at - now > freshness.max_skew:
        ahead = (issued_at - now).total_seconds()
        return Authenticated(
            claimed,
            reason=AuthReason.ISSUED_IN_FUTURE,
            detail=f"issued {ahead:.0f} s in the future (security.max_clock_skew_s "
            f"{freshness.max_skew.total_seconds():g} s): check the sender's clock",
        )
    if on_behalf_of is None:
        return Authenticated(signer.id, dict(signer.attrs))
    target = subjects.get(on_behalf_of)
    if not signer.may_act_for(on_behalf_of):
        return Authenticated(
            on_behalf_of,
            via=signer.id,
            reason=AuthReason.NOT_DELEGATED,
            detail=f"subject {signer.id!r} may not act on behalf of {on_behalf_of!r} (act_for)",
        )
    if target is None:
        return Authenticated(
            on_behalf_of,
            via=signer.id,
            reason=AuthReason.UNKNOWN_SUBJECT,
            detail=f"subject {on_behalf_of!r} is not in the subjects file",
        )
    return Authenticated(target.id, dict(target.attrs), via=signer.id)


# ------------------------------------------------------------------ keys and signing (the sender's side)
def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public key as the subjects file writes it (base64 of the raw 32 bytes)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(request: dict[str, Any], key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """The request's JSON bytes and their signature."""
    signed = orjson.dumps(request)
    return signed, key.sign(signed)


def envelope(signed: bytes, signature: bytes) -> bytes:
    """The ``twin.desired`` record value for a signed request."""
    return orjson.dumps({"signed": signed.decode(), "signature": base64.b64encode(signature).decode()})
