"""PATCH desired → a signed request through the twin flow's gate, as the CLI sends it
(twinflow/desired_client.py), with the API as a trusted gateway acting for the token's subject.

The server signs with ``security.key_file`` as ``security.subject``; the subjects file must let that
subject act for the API's users (``act_for``), and the policy judges the user, not the gateway
(docs/api.md, docs/security.md). The answer waits for the gate's verdict (``api.verdict_wait_s``):
applied → ``202`` with the request id as tracking id (the device's synchronisation follows on the
event stream), denied → ``403`` with the policy's reason (``412`` for a stale version, ``404`` for an
unknown twin), no verdict yet → ``202`` with status ``pending`` (the verdict follows on the stream).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from twinflow.api.problems import Problem

DENIED_STATUS = {"stale_version": 412, "unknown_twin": 404}


async def submit(app: FastAPI, subject: str, twin_id: str, body: Any, expected: int | None) -> dict[str, Any]:
    from connectors.kafka.clients import make_producer
    from twinflow.desired_client import RequestError, build, signer

    settings = app.state.settings
    try:
        gateway = signer(settings)
        request_id, value = build(
            gateway,
            twin_id,
            dict(body.values),
            mode=body.mode,
            expect_version=expected,
            reason=body.reason,
            on_behalf_of=subject if subject != gateway.subject else None,
        )
    except RequestError as exc:
        status = 422 if str(exc).startswith("not sent") else 503
        raise Problem(status, "invalid-change" if status == 422 else "no-signing-key", str(exc)) from None
    hub = app.state.hub
    verdict_future: asyncio.Future = asyncio.get_running_loop().create_future()
    hub.verdicts[request_id] = verdict_future

    def send() -> None:
        producer = getattr(app.state, "desired_producer", None) or make_producer(settings)
        app.state.desired_producer = producer
        errors: list[str] = []
        producer.produce(
            settings.twin.desired_topic,
            key=twin_id.encode(),
            value=value,
            on_delivery=lambda e, _m: e and errors.append(str(e)),
        )
        if producer.flush(15) or errors:
            raise Problem(503, "kafka-unavailable", f"Kafka did not take the request: {errors or 'timeout'}")

    try:
        await run_in_threadpool(send)
        verdict = await asyncio.wait_for(verdict_future, settings.api.verdict_wait_s)
    except TimeoutError:
        verdict = None
    finally:
        hub.verdicts.pop(request_id, None)
    answer: dict[str, Any] = {
        "tracking_id": request_id,
        "twin_id": twin_id,
        "subject": subject,
        "expected_version": expected,
        "events": f"/api/v1/twins/{twin_id}/events",
    }
    if verdict is None:
        return {**answer, "status": "pending"}
    if verdict.get("decision") != "applied":
        reason = str(verdict.get("reason"))
        raise Problem(
            DENIED_STATUS.get(reason, 403),
            reason.replace("_", "-"),
            f"denied: {reason} {verdict.get('detail', '')}".strip(),
            reason=reason,
            tracking_id=request_id,
            current_version=verdict.get("desired_version"),
        )
    return {
        **answer,
        "status": "accepted",
        "desired_version": verdict.get("desired_version"),
        "version": verdict.get("version"),
        "commands": verdict.get("commands", []),
    }
