"""The API's OpenAPI documents without a server: valid OpenAPI 3.0.3 and 3.1, a schema for every JSON answer, and
the parameters' constraints the same as the checks the server runs (tests/api/test_api.py checks real answers)."""

from __future__ import annotations

import re
import sys
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import TypeAdapter, ValidationError

from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN
from twinflow.alarms.state_filters import NAMES
from twinflow.api.app import create_app
from twinflow.api.problems import Problem
from twinflow.api.routes.desired import parse_if_match
from twinflow.api.routes.events import ALL_EVENT_TYPES, _types
from twinflow.api.routes.params import BUCKET_PATTERN, Time, parse_bucket, twin_id_ok
from twinflow.settings import Settings


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


@pytest.fixture(scope="module")
def spec_31() -> dict[str, Any]:
    return create_app(Settings()).openapi("3.1")  # type: ignore[call-arg]


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


def test_the_documents_are_valid_openapi_303_and_31(spec, spec_31):
    validate(spec)
    assert spec["openapi"] == "3.0.3"
    validate(spec_31)
    assert spec_31["openapi"].startswith("3.1") and spec_31["paths"].keys() == spec["paths"].keys()


def test_a_desired_change_names_only_parameters_of_the_pattern(spec, spec_31):
    """3.1 checks the names of `values` (JSON Schema 2020-12); 3.0.3 cannot, it names the pattern aside."""
    schemas = spec_31["components"]["schemas"]
    patch = Draft202012Validator({**schemas["DesiredPatch"], "$defs": {}})
    assert patch.is_valid({"values": {"speed_sp_rpm": 1450}})
    for name in ("", "0speed", "a b", "x" * 65):
        assert not patch.is_valid({"values": {name: 1}}), name
    values = spec["components"]["schemas"]["DesiredPatch"]["properties"]["values"]
    number_or_bool = {"anyOf": [{"type": "number"}, {"type": "boolean"}]}  # (an on/off parameter: a boolean)
    assert values["x-key-pattern"] == SENSOR_PATTERN and values["additionalProperties"] == number_or_bool
    assert patch.is_valid({"values": {"pump_on": True}}) and not patch.is_valid({"values": {"speed": "12"}})
    assert SENSOR_PATTERN in values["description"]


def test_state_etag_and_event_streams_are_described(spec, spec_31):
    for doc in (spec, spec_31):
        twin = doc["paths"]["/api/v1/twins/{twin_id}"]["get"]["responses"]["200"]
        stale = doc["paths"]["/api/v1/twins/{twin_id}/desired"]["patch"]["responses"]["412"]
        for answer in (twin, stale):
            assert re.fullmatch(answer["headers"]["ETag"]["schema"]["pattern"], '"12"')
        events = doc["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        event = doc["components"]["schemas"][events["schema"]["$ref"].rsplit("/", 1)[1]]
        assert set(ALL_EVENT_TYPES) < set(event["properties"]["event"]["enum"]) and "data" in event["required"]


def test_links_lead_from_answers_to_the_operations_that_take_their_ids(spec, spec_31):
    """Stateful clients (schemathesis, make api-fuzz) follow them: a twin's ETag to If-Match, alert ids to actions."""
    for doc in (spec, spec_31):
        operations = {o["operationId"]: o for ops in doc["paths"].values() for o in ops.values()}
        links = {
            (path, name): link
            for path, ops in doc["paths"].items()
            for o in ops.values()
            for answer in o["responses"].values()
            for name, link in answer.get("links", {}).items()
        }
        assert len(links) == 3 + 2 * 6  # twins → twin → desired, alerts → alert, and per action (6): to it, from it
        for link in links.values():
            names = {(p["in"], p["name"]) for p in operations[link["operationId"]]["parameters"]}
            assert {tuple(k.split(".", 1)) for k in link["parameters"]} <= names, link
        desired = links[("/api/v1/twins/{twin_id}", "change_desired")]["parameters"]
        assert desired["header.if-match"] == "$response.header.ETag"
        first_alert = {"path.alert_id": "$response.body#/items/0/alert_id"}
        assert all(links[("/api/v1/alerts", action)]["parameters"] == first_alert for action in ("ack", "shelve"))


def test_a_shelving_reason_is_blank_in_the_documents_as_on_the_server(spec_31):
    """Only spaces is no reason (str.strip); the pattern lists those characters itself, since `\\S` means other ones
    to JSON Schema (ECMA-262: U+001C is no space there) than to Python (schemathesis sent "\\x1e" as a reason)."""
    pattern = spec_31["components"]["schemas"]["ShelveBody"]["properties"]["reason"]["pattern"]
    assert re.fullmatch(r"\[\^(\\u[0-9a-f]{4})+\]", pattern), pattern
    for c in map(chr, range(sys.maxunicode + 1)):
        assert (re.search(pattern, c) is not None) == bool(c.strip()), hex(ord(c))


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
    state = schemas["TwinStateDocument"]  # the same members from every source: simulated too (null: not kept then)
    assert {"simulated", "change"} <= set(state["required"]) and state["properties"]["simulated"]["nullable"]
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
    within = _param(spec, "/api/v1/twins/{twin_id}/models", "within_h")
    assert within["exclusiveMinimum"] is True and within["maximum"] == 24 * 7
    shelve = spec["components"]["schemas"]["ShelveBody"]["properties"]["duration_s"]
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
        for value in samples + BUCKETS:
            declared = re.fullmatch(pattern, value) is not None
            assert declared == _accepts(check, value), (path, name, value, pattern)
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


# bucket bounds: 10 ms to 366 days in each unit, with at most 9 decimals
BUCKETS = [
    "1ms", "9ms", "9.999999999ms", "10ms", "0.01s", "0.009999999s", "0.000166667m", "0.000166666m", "0.000002778h",
    "0.000002777h", "0.000000116d", "0.000000115d", "0d", "0s", "366d", "366.000000001d", "366.0d", "367d", "8784h",
    "8784.000000001h", "527040m", "527041m", "31622400s", "31622400.5s", "31622400000ms", "31622400001ms", "0366d",
    "1.5h", "1.0000000001s", "999999999999d", "1e3s", "1.s", ".5s",
]  # fmt: skip


@given(
    st.decimals(min_value=0, max_value=10**12, places=9, allow_nan=False, allow_infinity=False),
    st.sampled_from(["ms", "s", "m", "h", "d"]),
)
def test_the_bucket_pattern_holds_the_bounds_the_server_checks(number, unit):
    text = f"{number:f}{unit}"
    assert (re.fullmatch(BUCKET_PATTERN, text) is not None) == _accepts(parse_bucket, text), text
    size = {"ms": Decimal("0.001"), "s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * number
    assert _accepts(parse_bucket, text) == (Decimal("0.01") <= size <= 366 * 86400), text
