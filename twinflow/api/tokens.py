"""API bearer tokens: random secrets, stored only as SHA-256 hashes, each mapped to a policy subject.

The tokens file (TOML, ``api.tokens_file``, mode 0600)::

    [[token]]
    id = "k3f9a1c2"                 # public: names the token in lists and logs
    subject = "ann"                 # who the bearer is, for the policy and the audit
    sha256 = "…"                    # hash of the whole token; the token itself is never stored
    created = "2026-11-25T08:00:00+00:00"

A token is ``tf_<id>_<secret>`` with 256 random bits; a fast hash is enough for such secrets
(no dictionary to guess from), so a lookup is one SHA-256 and one dict access.

>>> store = TokenStore([])
>>> token, entry = store.issue("ann")
>>> store.subject_for(token), store.subject_for(token + "x"), entry.subject
('ann', None, 'ann')
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from twinflow.settings import ConfigError, Settings

SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"


@dataclass(frozen=True)
class TokenEntry:
    id: str
    subject: str
    sha256: str
    created: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Tokens in memory (hash → entry); ``load``/``save`` read and write the file."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self.entries = list(entries)
        self._by_hash = {e.sha256: e for e in entries}

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        """Read the file (a missing file is an empty store); mistakes name the file and entry."""
        if not path.exists():
            return cls([])
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the API tokens file: {exc}") from None
        entries = []
        for i, raw in enumerate(data.get("token", []), 1):
            try:
                entries.append(TokenEntry(str(raw["id"]), str(raw["subject"]), str(raw["sha256"]), str(raw["created"])))
            except (KeyError, TypeError) as exc:
                need = "each needs id, subject, sha256, created"
                raise ConfigError(f"{path}: token {i}: missing {exc}; {need}") from None
        unknown = set(data) - {"token"}
        if unknown:
            keys = ", ".join(sorted(unknown))
            raise ConfigError(f"{path}: unknown key(s) {keys}; only [[token]] entries belong here")
        return cls(entries)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for e in self.entries:
            lines.append("[[token]]")
            lines += [f'{k} = "{v}"' for k, v in asdict(e).items()]
            lines.append("")
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines))
        tmp.replace(path)

    def issue(self, subject: str) -> tuple[str, TokenEntry]:
        """A new token for ``subject`` (returned once; only its hash is kept)."""
        tid = secrets.token_hex(4)
        token = f"tf_{tid}_{secrets.token_urlsafe(32)}"
        entry = TokenEntry(tid, subject, digest(token), datetime.now(UTC).isoformat(timespec="seconds"))
        self.entries.append(entry)
        self._by_hash[entry.sha256] = entry
        return token, entry

    def revoke(self, token_id: str) -> bool:
        kept = [e for e in self.entries if e.id != token_id]
        if len(kept) == len(self.entries):
            return False
        self.__init__(kept)  # type: ignore[misc]
        return True

    def subject_for(self, token: str) -> str | None:
        entry = self._by_hash.get(digest(token))
        return entry.subject if entry else None


def tokens_path(settings: Settings) -> Path:
    return settings.api.tokens_file or settings.stack.dir / "api-tokens.toml"
