"""Who is calling: ``Authorization: Bearer <token>`` → the token's subject (twinflow/api/tokens.py).

Reads need a token unless ``api.anonymous_read``; writes always do. The tokens file is re-read when
it changes, so ``twinflow api token create|revoke`` take effect without a restart. Routes ask for
the caller with the dependencies :data:`Reader` and :data:`Writer`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from twinflow.api.problems import Problem
from twinflow.api.tokens import TokenStore

ANONYMOUS = "anonymous"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="twinflow"'}


class Authenticator:
    def __init__(self, path: Path, anonymous_read: bool) -> None:
        self.path, self.anonymous_read = path, anonymous_read
        self._store = TokenStore([])
        self._mtime: float | None = None
        self._checked = 0.0

    def store(self) -> TokenStore:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                mtime = None
            if mtime != self._mtime:
                self._store, self._mtime = TokenStore.load(self.path), mtime
        return self._store

    def subject(self, request: Request) -> str | None:
        return self.subject_of(request.headers.get("authorization"))

    def subject_of(self, header: str | None) -> str | None:
        """The subject of an ``Authorization`` header value (None: no header); raises a 401 problem."""
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(401, "unauthorized", "use Authorization: Bearer <token>", headers=_CHALLENGE)
        subject = self.store().subject_for(token.strip())
        if subject is None:
            raise Problem(401, "unauthorized", "unknown or revoked token", headers=_CHALLENGE)
        return subject

    def reader(self, request: Request) -> str:
        subject = self.subject(request)
        if subject is None:
            if self.anonymous_read:
                return ANONYMOUS
            raise Problem(401, "unauthorized", "a bearer token is required", headers=_CHALLENGE)
        return subject

    def writer(self, request: Request) -> str:
        subject = self.subject(request)
        if subject is None:
            raise Problem(401, "unauthorized", "changes need a bearer token (no anonymous writes)", headers=_CHALLENGE)
        return subject


# Declares bearer authentication in the OpenAPI document, on exactly the operations that take a Reader or a
# Writer; the token itself is checked by :class:`Authenticator` (problem documents, revocation).
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer")
_Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def reader(request: Request, _: _Bearer) -> str:
    return request.app.state.auth.reader(request)


def writer(request: Request, _: _Bearer) -> str:
    return request.app.state.auth.writer(request)


Reader = Annotated[str, Depends(reader)]
Writer = Annotated[str, Depends(writer)]
