"""Names and TOML lines of generated mapping skeletons (``browse-opcua``, ``listen-mqtt``).

Device names become twin ids and parameter names by :func:`conform` (the project's own patterns:
:data:`~operators.records.envelope.TWIN_ID_PATTERN`, :data:`~operators.records.envelope.SENSOR_PATTERN`),
made unique within their asset or file by :func:`unique`.

>>> from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN
>>> conform("Pump 1 (Halle Süd)", TWIN_ID_PATTERN, "-", "asset")
'Pump-1-Halle-Sud'
>>> taken = {"temp"}
>>> unique("temp", taken, "_", SENSOR_PATTERN), toml_inline("rpm", {"path": "motor.rpm"})
('temp_2', 'rpm = { path = "motor.rpm" }')
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import tomli_w


def pattern_of(model: type, name: str) -> str:
    """The regex a schema field is validated with (one place for it: the schema)."""
    return next(m.pattern for m in model.model_fields[name].metadata if getattr(m, "pattern", None))


def conform(text: str, pattern: str, fill: str, fallback: str) -> str:
    """``text`` made to match ``pattern`` (a first-character class, then a repeated one, a maximum
    length): accents dropped, other characters replaced by ``fill`` (runs of them by one), cut at the
    maximum length; ``fallback`` when nothing usable is left."""
    rx = re.compile(pattern)
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    out = ""
    for ch in plain:
        if rx.fullmatch(out + ch):
            out += ch
        elif not out:
            if rx.fullmatch(fill + ch):
                out = fill + ch  # a name may not start with it (a digit): keep it behind the fill
        elif not rx.fullmatch(out + fill):
            break  # the maximum length
        elif not out.endswith(fill):
            out += fill
    out = out.rstrip(fill) if len(out) > 1 else out
    return out if out and rx.fullmatch(out) else fallback


def unique(name: str, taken: set[str], sep: str, pattern: str) -> str:
    """``name``, or ``name-2``, ``name-3`` … when taken, shortened where the suffix would make it too long."""
    rx = re.compile(pattern)
    n, out = 2, name
    while out in taken:
        suffix = f"{sep}{n}"
        base = name
        while base and not rx.fullmatch(base + suffix):
            base = base[:-1]
        out, n = base + suffix, n + 1
    taken.add(out)
    return out


def toml_pair(key: str, value: Any) -> str:
    """``key = value`` in TOML (keys quoted where they must be)."""
    return tomli_w.dumps({key: value}).strip()


def toml_inline(key: str, table: dict[str, Any]) -> str:
    """``key = { a = 1, b = "x" }``."""
    name = toml_pair(key, 0).rsplit(" = ", 1)[0]
    return f"{name} = {{ {', '.join(toml_pair(k, v) for k, v in table.items())} }}"


LISTED = 20  # items a skeleton's header names; the command that wrote it lists them all


def listed_lines(items: list[str], command: str) -> list[str]:
    """A skeleton header's comment lines naming up to :data:`LISTED` items, then how many more ``command`` lists.

    >>> listed_lines(["a", "b"], "twinflow mapping browse-opcua")
    ['#   a', '#   b']
    """
    lines = [f"#   {x}" for x in items[:LISTED]]
    if len(items) > LISTED:
        lines.append(f"#   … and {len(items) - LISTED} more ({command} lists them)")
    return lines
