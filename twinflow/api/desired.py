"""PATCH desired → a request on ``twin.desired`` through the same path as ``twinflow twin set-desired``.

The answer is ``202`` with a tracking id; the outcome (applied, refused) follows on the twin's event
stream. The request carries the subject the bearer token maps to as its author.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from operators.envelope import Rejected
from twinflow.api.problems import Problem


async def submit(app: FastAPI, subject: str, twin_id: str, body: Any, expected: int | None) -> dict[str, Any]:
    from twinflow.twin_cli import produce_desired

    settings = app.state.settings
    tracking = f"req-{uuid.uuid4().hex[:16]}"

    def send() -> None:
        produce_desired(
            settings,
            twin_id,
            dict(body.values),
            expect_version=expected,
            author=subject,
            reason=body.reason,
            mode=body.mode,
        )

    try:
        await run_in_threadpool(send)
    except Rejected as exc:
        raise Problem(422, "invalid-change", str(exc)) from None
    except RuntimeError as exc:
        raise Problem(503, "kafka-unavailable", str(exc)) from None
    return {
        "tracking_id": tracking,
        "twin_id": twin_id,
        "status": "submitted",
        "subject": subject,
        "expected_version": expected,
        "events": f"/api/v1/twins/{twin_id}/events",
    }
