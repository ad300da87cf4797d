"""``GET /api/v1/twins/{id}`` answered from the state cache before the framework (the hottest read).

Only a cache hit with a valid token (or anonymous reads allowed) is answered here, with the same
body and headers as the route (twinflow/api/routes/twins.py ``get_twin``); everything else, errors
included, goes on to the application. It sits inside the rate and size limits.
"""

from __future__ import annotations

from typing import Any

from twinflow.api.problems import Problem

PREFIX = "/api/v1/twins/"


class TwinReadFastPath:
    def __init__(self, app, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(PREFIX):
            twin_id = scope["path"][len(PREFIX) :]
            body = self._hit(twin_id, scope) if twin_id and "/" not in twin_id else None
            if body is not None:
                desired, payload = body
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"etag", f'"{desired}"'.encode()),
                            (b"cache-control", b"no-cache"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": payload})
                return
        await self.app(scope, receive, send)

    def _hit(self, twin_id: str, scope) -> tuple[int, bytes] | None:
        st = self.state
        hub = st.hub
        if not st.cache.max_entries or hub.error or not hub.ready.is_set():
            return None
        entry = st.cache.get(twin_id)
        if entry is None:
            return None
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            subject = st.auth.subject_of(header)
        except Problem:
            return None  # the application answers with the problem document
        if subject is None and not st.auth.anonymous_read:
            return None
        return entry[1], entry[2]
