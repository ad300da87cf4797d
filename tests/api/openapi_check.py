"""Real answers of ``twinflow serve`` against the server's own OpenAPI document (``/api/openapi.json``):
the status is one the operation lists, the media type one that status lists, and the body fits its
schema (OpenAPI 3.0: ``nullable``, formats such as ``date-time``)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from openapi_schema_validator import OAS30Validator, oas30_format_checker, validate


class OpenApi:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        # templates with fewer parameters first: /alerts/metrics before /alerts/{alert_id}
        templates = sorted(spec["paths"], key=lambda p: (p.count("{"), p))
        self.paths = [(re.compile(re.sub(r"\{[^}]+\}", "[^/]+", t)), t) for t in templates]

    def operation(self, method: str, path: str) -> dict[str, Any]:
        template = next((t for rx, t in self.paths if rx.fullmatch(path)), None)
        assert template is not None, f"{path} is not in the OpenAPI document"
        operation = self.spec["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the OpenAPI document"
        return operation

    def schema_of(self, r: httpx.Response) -> dict[str, Any]:
        """The schema the document gives the answer ``r`` (its status and media type must be listed)."""
        answers = self.operation(r.request.method, r.request.url.path)["responses"]
        answer = answers.get(str(r.status_code))
        assert answer is not None, f"{r.request.method} {r.request.url.path}: status {r.status_code} not documented"
        media_type = r.headers.get("content-type", "").split(";")[0].strip()
        content = answer.get("content", {})
        assert media_type in content, f"{r.request.url.path} {r.status_code}: {media_type!r} not in {list(content)}"
        return content[media_type]["schema"]

    def conforms(self, r: httpx.Response) -> Any:
        """Assert that the JSON answer ``r`` is what the document says; returns its body."""
        schema = self.schema_of(r)
        body = r.json()
        validate(
            body,
            {**schema, "components": self.spec["components"]},
            cls=OAS30Validator,
            format_checker=oas30_format_checker,
        )
        return body
