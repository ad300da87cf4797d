"""The OpenAPI documents as clients and the bundled Swagger UI read them: OpenAPI 3.0.3 (FastAPI writes
3.1 schemas; Swagger UI 4 and strict 3.0 code generators take 3.0) and the same in 3.1 (JSON Schema 2020-12
can say what 3.0 cannot: the names a `values` object takes), with bearer authentication, the problem
documents every operation can answer with, the `ETag` header and one server-sent event's schema.

>>> doc = {"openapi": "3.1.0", "info": {"title": "t", "summary": "s"}, "paths": {}, "components": {"schemas": {
...     "A": {"properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "null"}], "exclusiveMinimum": 0}}}}}}
>>> as_openapi_30(doc)["components"]["schemas"]["A"]["properties"]["x"]
{'type': 'integer', 'exclusiveMinimum': True, 'nullable': True, 'minimum': 0}
>>> doc["openapi"], "summary" in doc["info"]
('3.0.3', False)
>>> _schema_30({"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "null"}]})["anyOf"][1]
{'type': 'object', 'nullable': True, 'enum': [None]}
>>> _schema_30({"anyOf": [{"enum": ["minor", "major"], "type": "string"}, {"type": "null"}]})
{'enum': ['minor', 'major', None], 'type': 'string', 'nullable': True}
"""

from __future__ import annotations

import copy
from typing import Any, get_args

from operators.records.alerts import ActionName
from twinflow.api.problems import MEDIA_TYPE

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem document",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {"type": "object", "properties": {"where": {"type": "string"}, "message": {"type": "string"}}},
        },
    },
    "required": ["type", "title", "status"],
}
# null in OpenAPI 3.0 (which has no type "null"): `nullable` applies to the `type` beside it, `enum` leaves only null
NULL = {"type": "object", "nullable": True, "enum": [None]}
# One event of a text/event-stream answer (OpenAPI 3.2 calls it the media type's itemSchema; tools of 3.0 and
# 3.1, schemathesis among them, read an event stream's `schema` as that of each event).
EVENT_SCHEMA = {
    "type": "object",
    "description": "one server-sent event: `data` is a JSON document, of `state` a TwinStateDocument, of `alert` "
    "an AlertDocument, of `overflow` why the stream ends (then reconnect with Last-Event-ID)",
    "properties": {
        "event": {"type": "string", "enum": ["state", "alert", "twin_alert", "desired", "score", "overflow"]},
        "data": {"type": "string"},
        "id": {
            "type": "string",
            "pattern": "^[0-9]+-[0-9]+-[0-9]+-[0-9]+$",
            "description": "a Kafka position (<timestamp ms>-<topic>-<partition>-<offset>); none on `overflow`",
        },
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["event", "data"],
}
ETAG = {
    "ETag": {
        "description": 'the desired document\'s version, e.g. "12": send it back as If-Match',
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    }
}
# The actions on an alert, each its own operation (twinflow/api/routes/alerts.py).
ALERT_ACTIONS: tuple[str, ...] = get_args(ActionName)
FIRST_ALERT = "$response.body#/items/0/alert_id"
# OpenAPI links: where an answer's ids (and the ETag) are taken next, for clients and stateful testers
# (schemathesis follows them): (from path, method, status) → name → (to path, method, parameters).
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/api/v1/twins", "get", "200"): {
        "twin": ("/api/v1/twins/{twin_id}", "get", {"path.twin_id": "$response.body#/items/0/twin_id"}),
    },
    ("/api/v1/twins/{twin_id}", "get", "200"): {
        "change_desired": (
            "/api/v1/twins/{twin_id}/desired",
            "patch",
            {"path.twin_id": "$request.path.twin_id", "header.if-match": "$response.header.ETag"},
        ),
    },
    ("/api/v1/alerts", "get", "200"): {
        "alert": ("/api/v1/alerts/{alert_id}", "get", {"path.alert_id": "$response.body#/items/0/alert_id"}),
        **{
            action: (f"/api/v1/alerts/{{alert_id}}/{action}", "post", {"path.alert_id": FIRST_ALERT})
            for action in ALERT_ACTIONS
        },
    },
    **{
        (f"/api/v1/alerts/{{alert_id}}/{action}", "post", "200"): {
            "alert": ("/api/v1/alerts/{alert_id}", "get", {"path.alert_id": "$response.body#/alert/alert_id"}),
        }
        for action in ALERT_ACTIONS
    },
}
PROBLEMS = {
    "400": "malformed request (a parameter, the JSON, a time without a time zone)",
    "401": "no token, or an unknown or revoked one",
    "404": "no such twin, alert or path",
    "422": "the body or a parameter does not fit its schema",
    "429": "rate limit: retry after Retry-After seconds",
    "500": "the server failed; its log has the details",
}


def _schema_30(node: Any) -> Any:
    """A JSON schema of OpenAPI 3.1 (JSON Schema 2020-12) in the 3.0 dialect, recursively."""
    if isinstance(node, list):
        return [_schema_30(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _schema_30(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del out[key]
            if len(rest) == 1 and "$ref" not in rest[0]:
                out = {**rest[0], **out, "nullable": True}
            elif rest:  # 3.0.3: `nullable` counts only beside a `type`, so null is an option of its own
                out["anyOf"] = [*rest, NULL]
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        out["type"] = types[0] if len(types) == 1 else types
        if len(types) < len(node["type"]):
            out["nullable"] = True
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[plain], out[bound] = out[bound], True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if out.get("nullable") and isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]  # 3.0: an enum's null is one of its values, `nullable` alone is not enough
    if isinstance(out.get("patternProperties"), dict):  # 3.0 has none: the values' schema, the keys' pattern aside
        patterns = out.pop("patternProperties")
        if len(patterns) == 1:  # (the 3.1 document has it; a 3.0 validator cannot check names)
            [(pattern, values)] = patterns.items()
            out["additionalProperties"] = values
            out["x-key-pattern"] = pattern
    if isinstance(out.get("examples"), list):
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    return out


def as_openapi_30(doc: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``doc`` (FastAPI's, 3.1) in place as OpenAPI 3.0.3; returns it."""
    doc["openapi"] = "3.0.3"
    summary = doc.get("info", {}).pop("summary", None)
    if summary and not doc["info"].get("description"):
        doc["info"]["description"] = summary
    for name in ("paths", "components"):
        if name in doc:
            doc[name] = _schema_30(doc[name])
    return doc


def with_auth_and_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Bearer authentication as the document's default (FastAPI marks the operations whose routes take a
    Reader or Writer, :data:`twinflow.api.auth.BEARER`; the others say they need none), the problem documents
    every operation may answer with (the server sends them as ``application/problem+json``), and the
    event streams' media type (``text/event-stream``; the JSON answers' schemas are the routes' models,
    :mod:`twinflow.api.models`)."""
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(Problem=PROBLEM_SCHEMA, Event=EVENT_SCHEMA)
    problem = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    doc["security"] = [{"bearer": []}]
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):  # a parameter is sent or not: it has no null
                parameter["schema"] = _not_null(parameter.get("schema", {}))
            public = not operation.get("security")
            if public:
                operation["security"] = []
            for status, answer in operation["responses"].items():
                if not status.startswith("2") or "content" not in answer:
                    continue
                if path.endswith("/events"):  # server-sent events, not a JSON body
                    answer["content"] = {"text/event-stream": {"schema": {"$ref": "#/components/schemas/Event"}}}
            for status, what in PROBLEMS.items():
                if status == "401" and public:
                    continue
                answer = operation["responses"].setdefault(status, {"description": what})
                answer["content"] = problem
            if "requestBody" in operation:
                operation["responses"]["413"] = {"description": "the body is too large (api.max_body_bytes)"}
            for status, answer in operation["responses"].items():  # the routes' own errors: problems too
                if not status.startswith("2") and "content" not in answer:
                    answer["content"] = problem
    _links(doc)
    twin = doc.get("paths", {}).get("/api/v1/twins/{twin_id}", {}).get("get")
    desired = doc.get("paths", {}).get("/api/v1/twins/{twin_id}/desired", {}).get("patch")
    for operation, status in ((twin, "200"), (desired, "412")):  # the state's ETag; a stale If-Match: the current
        if operation and status in operation["responses"]:
            operation["responses"][status]["headers"] = ETAG
    return doc


def _links(doc: dict[str, Any]) -> None:
    """:data:`LINKS` on the answers of ``doc`` (by operationId), for the operations it has."""
    paths = doc.get("paths", {})

    def operation(path: str, method: str) -> dict[str, Any] | None:
        return paths.get(path, {}).get(method)

    for (path, method, status), links in LINKS.items():
        source = operation(path, method)
        answer = source["responses"].get(status) if source else None
        if answer is None:
            continue
        for name, (to_path, to_method, parameters) in links.items():
            target = operation(to_path, to_method)
            if target is not None:
                answer.setdefault("links", {})[name] = {"operationId": target["operationId"], "parameters": parameters}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without null (3.0: ``nullable``, a null in ``enum``; 3.1: a ``{"type": "null"}`` option).

    >>> _not_null({"anyOf": [{"type": "string", "pattern": "^a$"}, {"type": "null"}], "title": "T"})
    {'type': 'string', 'pattern': '^a$', 'title': 'T'}
    """
    if schema.pop("nullable", None) and isinstance(schema.get("enum"), list):
        schema["enum"] = [v for v in schema["enum"] if v is not None]
    options = schema.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del schema["anyOf"]
        schema = {**rest[0], **schema} if len(rest) == 1 else {**schema, "anyOf": rest}
    return schema


def openapi_documents(doc_31: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """FastAPI's document ``doc_31`` as served: (OpenAPI 3.0.3, OpenAPI 3.1), each with auth, problems and events."""
    return with_auth_and_problems(as_openapi_30(copy.deepcopy(doc_31))), with_auth_and_problems(doc_31)
