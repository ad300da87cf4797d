"""``PATCH /api/v1/twins/{id}/desired`` (``If-Match``: the desired version) → a signed request
through the twin flow's gate, as the CLI sends it (twinflow/desired_client.py), with the API as a
trusted gateway acting for the token's subject.

The server signs with ``security.key_file`` as ``security.subject``; the subjects file must let that
subject act for the API's users (``act_for``), and the policy judges the user, not the gateway
(docs/api.md, docs/security.md). The answer waits for the gate's verdict (``api.verdict_wait_s``):
applied → ``202`` with the request id as tracking id (the device's synchronisation follows on the
event stream), denied → ``403`` with the policy's reason (``412`` for a stale version, ``404`` for an
unknown twin), no verdict yet → ``202`` with status ``pending`` (the verdict follows on the stream).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, Strict

from operators.records.envelope import SENSOR_PATTERN
from twinflow.api import models
from twinflow.api.auth import Writer
from twinflow.api.kafka_delivery import deliver
from twinflow.api.problems import Problem
from twinflow.api.routes.params import JSON, TwinIdPath, twin_id_ok
from twinflow.api.state_cache import desired_version

router = APIRouter()

DENIED_STATUS = {"stale_version": 412, "unknown_twin": 404}
# If-Match: the ETag of GET /twins/{id} (weak or strong), or * (any version)
IF_MATCH_PATTERN = r'^(?:\*|(?:W/)?"([0-9]{1,18})")$'


# A number, or a boolean for an on/off parameter, taken as sent: "12" is no number and true is not 1.0
# (the policy tells them apart: a `bool` rule, a range), as `twinflow twin set-desired` sends them.
DesiredValue = Annotated[float, Strict()] | Annotated[bool, Strict()]


class DesiredPatch(BaseModel):
    """Desired values to set (a merge: parameters not named keep their desired value)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={  # what patch_desired checks: at least one value, or a mode (422 otherwise)
            "anyOf": [
                {"required": ["values"], "properties": {"values": {"type": "object", "minProperties": 1}}},
                {"required": ["mode"], "properties": {"mode": {"type": "string"}}},
            ]
        },
    )
    values: dict[Annotated[str, Field(pattern=SENSOR_PATTERN)], DesiredValue] = Field(
        default_factory=dict,
        max_length=256,
        description=f"parameter name → number (or true/false for an on/off parameter); a name matches "
        f"{SENSOR_PATTERN} (422 otherwise)",
        json_schema_extra={"additionalProperties": False},  # only names of the pattern (patternProperties)
    )
    mode: Literal["normal", "maintenance", "simulating"] | None = None
    reason: str = Field("", max_length=500)


def parse_if_match(header: str | None) -> int | None:
    """``"12"`` or ``W/"12"`` → 12; ``*`` → None (any version)."""
    if header is None:
        return None
    m = re.fullmatch(IF_MATCH_PATTERN, header.strip())
    if not m:
        raise Problem(400, "bad-if-match", 'If-Match: give the ETag of GET /api/v1/twins/{id}, e.g. "12"')
    return int(m.group(1)) if m.group(1) is not None else None


@router.patch(
    "/twins/{twin_id}/desired",
    response_class=JSON,
    response_model=models.DesiredAnswer,
    status_code=202,
    summary="Change desired values (If-Match: the desired version); the outcome follows on the event stream",
    responses={
        400: {"description": "malformed If-Match"},
        403: {"description": "denied by the policy (its reason in the problem)"},
        404: {"description": "no state for the twin, or a twin the registry does not know"},
        412: {"description": "stale If-Match"},
        428: {"description": "If-Match missing"},
        503: {"description": "the server has no signing key for the gate"},
    },
)
async def patch_desired(
    request: Request,
    twin_id: TwinIdPath,
    body: DesiredPatch,
    subject: Writer,
    if_match: Annotated[
        str | None,
        Header(
            description='the ETag of GET /twins/{id}, e.g. "12", or * (any version); required unless '
            "api.require_if_match = false",
            json_schema_extra={"pattern": IF_MATCH_PATTERN},
        ),
    ] = None,
) -> JSON:
    settings = request.app.state.settings
    twin_id_ok(twin_id)
    if not body.values and body.mode is None:
        raise Problem(422, "empty-change", "give `values` (parameter → number) or `mode`")
    if if_match is None and settings.api.require_if_match:
        raise Problem(428, "if-match-required", 'send If-Match with the ETag of GET /api/v1/twins/{id} (or "*")')
    expected = parse_if_match(if_match)
    row = await request.app.state.reads.twin(twin_id)
    if row is None:
        raise Problem(404, "no-such-twin", f"no state for twin {twin_id!r}")
    current = desired_version(row)
    if expected is not None and expected != current:
        raise Problem(
            412,
            "stale-version",
            f"the desired document is at version {current}, not {expected}; GET it again and retry",
            headers={"ETag": etag(row)},
            current_version=current,
        )
    return JSON(await submit(request.app, subject, twin_id, body, expected), status_code=202)


def etag(state: dict[str, Any]) -> str:
    return f'"{desired_version(state)}"'


async def submit(app: FastAPI, subject: str, twin_id: str, body: DesiredPatch, expected: int | None) -> dict[str, Any]:
    """Sign the change as the gateway acting for ``subject``, send it and wait for the gate's verdict."""
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
        deliver(producer, settings.twin.desired_topic, twin_id, value, 15, "Kafka did not take the request")

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
