"""schemathesis hooks of ``make api-fuzz`` (tests/api/fuzz_schemathesis.py), loaded by schemathesis in its own
environment (tests/api/schemathesis.toml), not by pytest.

OpenAPI 3.0.3 cannot constrain an object's keys (no ``patternProperties``, no ``propertyNames``): the 3.0.3
document gives the names a desired change's ``values`` take as ``x-key-pattern`` beside ``additionalProperties``
(docs/api.md). Read so, schemathesis would send names the server refuses (422) as valid data; this hook tells
it what the extension means, as the 3.1 document says it itself (``patternProperties``).

A shelving's expiry is a time to come, at most ``alerts.rules.max_shelve_s`` away: a rule of the clock and of
the server's settings, which no schema can hold. A schema-valid shelving refused for it (422, the problem types
below, as the document's 422 says) is the server doing its job, not a failure.
"""

from __future__ import annotations

from typing import Any

import schemathesis

CLOCK_RULES = {"/api/problems/expiry-in-past", "/api/problems/expiry-too-far"}


def key_patterns(node: Any) -> None:
    """Every schema with ``x-key-pattern`` also says it as JSON Schema: names of the pattern only."""
    if isinstance(node, list):
        for item in node:
            key_patterns(item)
    elif isinstance(node, dict):
        for value in node.values():
            key_patterns(value)
        pattern = node.get("x-key-pattern")
        if isinstance(pattern, str) and isinstance(node.get("additionalProperties"), dict):
            node["patternProperties"] = {pattern: node["additionalProperties"]}
            node["additionalProperties"] = False


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    if str(raw_schema.get("openapi", "")).startswith("3.0"):
        key_patterns(raw_schema)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a schema-valid shelving refused for its expiry's time (:data:`CLOCK_RULES`)."""
    if failure.code != "ST202" or response.status_code != 422 or not case.path.endswith("/shelve"):
        return True
    try:
        problem = response.json()
    except ValueError:
        return True
    return not (isinstance(problem, dict) and problem.get("type") in CLOCK_RULES)
