"""The API's written-out patterns agree with the server's own checks."""

from __future__ import annotations

import re
import sys

from twinflow.api.routes.alerts import NOT_BLANK


def test_not_blank_excludes_exactly_what_python_strips_as_whitespace() -> None:
    listed = {int(h, 16) for h in re.findall(r"\\u([0-9a-f]{4})", NOT_BLANK)}
    assert listed == {c for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    pattern = re.compile(NOT_BLANK)  # Python's re reads \uXXXX as JSON Schema does
    assert pattern.search(" \u3000\x1c ok") and not pattern.search(" \t\u2028\x85")
