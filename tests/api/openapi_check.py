"""Real answers of ``twinflow serve`` against the server's own OpenAPI documents (``/api/openapi.json``, 3.0.3,
and ``/api/openapi-3.1.json``): the status is one the operation lists, the media type one that status lists,
the headers it documents are sent and fit their schemas, and the body (or each server-sent event) fits its
schema in both (3.0: ``nullable``; formats such as ``date-time``). Request bodies: what the 3.1 document takes."""

from __future__ import annotations

import re
from typing import Any

import httpx
from jsonschema import ValidationError
from openapi_schema_validator import (
    OAS30Validator,
    OAS31Validator,
    oas30_format_checker,
    oas31_format_checker,
    validate,
)


class OpenApi:
    def __init__(self, spec: dict[str, Any], spec_31: dict[str, Any]) -> None:
        self.spec, self.spec_31 = spec, spec_31
        # templates with fewer parameters first: /alerts/metrics before /alerts/{alert_id}
        templates = sorted(spec["paths"], key=lambda p: (p.count("{"), p))
        self.paths = [(re.compile(re.sub(r"\{[^}]+\}", "[^/]+", t)), t) for t in templates]

    def operation(self, method: str, path: str) -> dict[str, Any]:
        template = next((t for rx, t in self.paths if rx.fullmatch(path)), None)
        assert template is not None, f"{path} is not in the OpenAPI document"
        operation = self.spec["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the OpenAPI document"
        return operation

    def schema_of(self, r: httpx.Response, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        """The schema a document (3.0.3 unless ``spec``) gives the answer ``r``: its status and media type must be
        listed, and the headers the document gives that status sent, each fitting its schema."""
        spec = spec or self.spec
        saved, self.spec = self.spec, spec
        try:
            answers = self.operation(r.request.method, r.request.url.path)["responses"]
        finally:
            self.spec = saved
        answer = answers.get(str(r.status_code))
        assert answer is not None, f"{r.request.method} {r.request.url.path}: status {r.status_code} not documented"
        media_type = r.headers.get("content-type", "").split(";")[0].strip()
        content = answer.get("content", {})
        assert media_type in content, f"{r.request.url.path} {r.status_code}: {media_type!r} not in {list(content)}"
        for name, header in answer.get("headers", {}).items():
            assert name in r.headers, f"{r.request.url.path} {r.status_code}: no {name} header"
            assert re.fullmatch(header["schema"]["pattern"], r.headers[name]), (name, r.headers[name])
        return content[media_type]["schema"]

    def _validate(self, value: Any, schema: dict[str, Any], spec: dict[str, Any]) -> None:
        if spec is self.spec:
            cls, formats = OAS30Validator, oas30_format_checker
        else:
            cls, formats = OAS31Validator, oas31_format_checker
        validate(value, {**schema, "components": spec["components"]}, cls=cls, format_checker=formats)

    def conforms(self, r: httpx.Response) -> Any:
        """Assert that the JSON answer ``r`` is what both documents say; returns its body."""
        body = r.json()
        for spec in (self.spec, self.spec_31):
            self._validate(body, self.schema_of(r, spec), spec)
        return body

    def event_conforms(self, r: httpx.Response, event: dict[str, Any]) -> None:
        """Assert that one server-sent event of the stream ``r`` ({"event", "data", "id"}) fits both documents."""
        for spec in (self.spec, self.spec_31):
            self._validate(event, self.schema_of(r, spec), spec)

    def takes_body(self, method: str, path: str, body: Any) -> bool:
        """Whether the 3.1 document says the operation takes the JSON request body ``body``."""
        saved, self.spec = self.spec, self.spec_31
        try:
            schema = self.operation(method, path)["requestBody"]["content"]["application/json"]["schema"]
        finally:
            self.spec = saved
        try:
            self._validate(body, schema, self.spec_31)
        except ValidationError:
            return False
        return True
