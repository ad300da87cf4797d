"""The API's OpenAPI document without a server: valid OpenAPI 3.0.3, a schema for every JSON answer, and the
parameters' constraints the same as the checks the server runs (tests/api/test_api.py checks real answers)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import TypeAdapter, ValidationError

from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN
from twinflow.alarms.state_filters import NAMES
from twinflow.api.app import create_app
from twinflow.api.problems import Problem
from twinflow.api.routes.desired import parse_if_match
from twinflow.api.routes.events import ALL_EVENT_TYPES, _types
from twinflow.api.routes.params import Time, parse_bucket, twin_id_ok
from twinflow.settings import Settings


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def _param(spec: dict, path: str, name: str, method: str = "get") -> dict[str, Any]:
    params = spec["paths"][path][method]["parameters"]
    return next(p for p in params if p["name"] == name)["schema"]


def _accepts(check, value: str) -> bool:
    try:
        check(value)
    except Problem:
        return False
    return True


def _accepts_time(value: str) -> bool:
    try:
        TypeAdapter(Time).validate_python(value)
    except ValidationError:
        return False
    return True


def test_the_document_is_valid_openapi_303(spec):
    validate(spec)
    assert spec["openapi"] == "3.0.3"


def test_every_json_answer_has_a_schema_of_its_own(spec):
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                for media_type, content in answer.get("content", {}).items():
                    ref = content["schema"].get("$ref", "")
                    if media_type == "text/event-stream":
                        continue
                    assert ref.removeprefix("#/components/schemas/") in schemas, (method, path, status, media_type)
                    if status.startswith("2"):
                        assert media_type == "application/json" and ref != "#/components/schemas/Problem"
                    else:
                        assert media_type in ("application/problem+json", "application/json"), (path, status)
    state = schemas["TwinStateDocument"]
    assert "simulated" not in state["required"] and "change" in state["required"]
    assert state["properties"]["last_sync_time"]["nullable"] is True
    alert = schemas["AlertDocument"]
    assert "event" not in alert["properties"] and {"chattering", "isa_state", "shelved_until"} <= set(alert["required"])
    summary = schemas["TwinSummary"]["properties"]  # null in 3.0.3: an enum's value, an option beside a $ref
    assert (
        None in summary["worst_severity"]["enum"]
        and {"$ref": "#/components/schemas/AnomalyNow"} in (summary["anomaly"]["anyOf"])
    )
    fleet = spec["paths"]["/api/v1/twins"]["get"]["responses"]["200"]["content"]["application/json"]
    assert fleet["schema"] == {"$ref": "#/components/schemas/Fleet"}


def test_parameters_declare_what_the_server_checks(spec):
    twin = _param(spec, "/api/v1/twins/{twin_id}", "twin_id")
    assert twin["pattern"] == TWIN_ID_PATTERN and twin["maxLength"] == 128
    assert _param(spec, "/api/v1/twins/{twin_id}/telemetry", "sensor")["items"]["pattern"] == SENSOR_PATTERN
    assert _param(spec, "/api/v1/alerts", "twin")["pattern"] == TWIN_ID_PATTERN
    assert _param(spec, "/api/v1/alerts", "state")["enum"] == list(NAMES)
    limit = _param(spec, "/api/v1/twins", "limit")
    assert (limit["minimum"], limit["maximum"]) == (1, 500)
    hours = _param(spec, "/api/v1/alerts/metrics", "hours")
    assert hours["exclusiveMinimum"] is True and hours["maximum"] == 24 * 366
    shelve = spec["components"]["schemas"]["AlertActionBody"]["properties"]["duration_s"]
    assert shelve["exclusiveMinimum"] is True and shelve["maximum"] == 10 * 366 * 86400

    # the declared patterns take what the server takes, and refuse what it refuses
    checks = {
        ("/api/v1/twins", "cursor"): lambda v: v and twin_id_ok(v),
        ("/api/v1/twins/{twin_id}", "twin_id"): twin_id_ok,
        ("/api/v1/twins/{twin_id}/telemetry", "bucket"): parse_bucket,
        ("/api/v1/events", "types"): lambda v: _types(v, ALL_EVENT_TYPES),
    }
    samples = [
        "", " ", "pump-001", "pump-001\n", "a:b.c_d", "-x", "x" * 128, "x" * 129, "1m", "10ms", "1.5h", "366d",
        "1m\n", " 1m", "1y", "00000000000001s", "state", "state,alert", " state , alert ,", "state,\talert", "nope",
        "state,nope", ",,", "٣s",
    ]  # fmt: skip
    for (path, name), check in checks.items():
        pattern = _param(spec, path, name)["pattern"]
        for value in samples:
            declared = re.fullmatch(pattern, value) is not None
            if declared or name != "bucket":  # a bucket's bounds (10ms to 366d) are in its description
                assert declared == _accepts(check, value), (path, name, value, pattern)
    bucket = _param(spec, "/api/v1/twins/{twin_id}/telemetry", "bucket")
    assert (
        re.fullmatch(bucket["pattern"], "1ms") and not _accepts(parse_bucket, "1ms") and "10ms" in bucket["description"]
    )
    for operations in spec["paths"].values():  # absent, never null: a client would send the text "null"
        for operation in operations.values():
            assert not [p for p in operation.get("parameters", []) if "nullable" in p["schema"]], operation
    patch = spec["paths"]["/api/v1/twins/{twin_id}/desired"]["patch"]
    assert next(p for p in patch["parameters"] if p["name"] == "if-match")["required"]  # api.require_if_match
    assert len(spec["components"]["schemas"]["DesiredPatch"]["anyOf"]) == 2  # values or mode: 422 without
    for value, ok in (("2026-11-25T08:00:00Z", True), ("2026-11-25T08:00:00.5+01:00", True), ("0.5", False)):
        assert _accepts_time(value) is ok, value
    if_match = _param(spec, "/api/v1/twins/{twin_id}/desired", "if-match", "patch")["pattern"]
    for value in ('"12"', 'W/"12"', "*", "12", '"x"', '"٣"', "**", '"1234567890123456789"'):
        assert (re.fullmatch(if_match, value) is not None) == _accepts(parse_if_match, value), value
