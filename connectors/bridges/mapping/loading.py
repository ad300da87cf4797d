"""Reading a mapping file: TOML, the schema, the cross-checks; every mistake named with file, asset and field.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.toml"
>>> _ = p.write_text('''
... [[assets]]
... twin_id = "pump-1"
... type = "pump"
... protocol = "modbus"
... [assets.params.speed_rpm]
... register = "flag"
... address = 0
... ''')
>>> try:
...     load_mapping(p)
... except MappingError as exc:
...     print(str(exc).splitlines()[1])
  asset 'pump-1' (assets[0]), field params.speed_rpm.register: Input should be 'holding', 'input', 'coil' or 'discrete'.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connectors.bridges.mapping.checks import cross_checks
from connectors.bridges.mapping.schema import PROTOCOLS, Mapping
from connectors.config.errors import ConfigError, not_utf8, problems, sentence, toml_syntax_error


class MappingError(ConfigError):
    """One or more mistakes in a mapping file; the message names file, asset and field."""

    def __init__(self, file: Path | str, problems: list[str]) -> None:
        self.file = str(file)
        self.problems = problems
        super().__init__(f"invalid mapping file {file}:\n" + "\n".join(f"  {p}" for p in problems))


def _asset(raw: dict[str, Any], loc: tuple[Any, ...]) -> tuple[str, str] | None:
    """('asset ... (assets[i])', 'a.b') when a pydantic error location is inside an asset."""
    if len(loc) >= 2 and loc[0] == "assets" and isinstance(loc[1], int):
        assets = raw.get("assets")
        twin = None
        if isinstance(assets, list) and loc[1] < len(assets) and isinstance(assets[loc[1]], dict):
            twin = assets[loc[1]].get("twin_id")
        rest = [str(p) for p in loc[2:]]
        if rest and rest[0] in PROTOCOLS:  # the union's tag pydantic inserts
            rest = rest[1:]
        who = f"asset {twin!r} (assets[{loc[1]}])" if twin else f"asset assets[{loc[1]}]"
        return who, ".".join(rest) or "(the asset table)"
    if len(loc) >= 2 and loc[0] == "devices":
        rest = [str(p) for p in loc[2:]]
        if rest and rest[0] in PROTOCOLS:  # the union's tag pydantic inserts
            rest = rest[1:]
        return f"device {loc[1]!r} ([devices.{loc[1]}])", ".".join(rest) or "(the device table)"
    return None


_HINTS = {
    "extra_forbidden": "remove it (docs/connectors.md lists every field)",
    "union_tag_invalid": 'use protocol = "opcua", "mqtt" or "modbus"',
    "union_tag_not_found": 'add protocol = "opcua", "mqtt" or "modbus"',
}


def _pydantic_problems(raw: dict[str, Any], exc: ValidationError) -> list[str]:
    out = []
    for err, p in zip(exc.errors(), problems(exc, Mapping), strict=True):
        fix = p.fix() if p.suggestion or p.missing else _HINTS.get(err["type"], "")
        asset = _asset(raw, p.loc)
        if asset is None:
            out.append(p.line(fix))
        else:
            out.append(sentence(f"{asset[0]}, field {asset[1]}: {p.message}", fix))
    return out


def parse_mapping(raw: dict[str, Any], file: Path | str = "<mapping>") -> Mapping:
    """Validate an already-parsed TOML document."""
    try:
        mapping = Mapping.model_validate(raw)
    except ValidationError as exc:
        raise MappingError(file, _pydantic_problems(raw, exc)) from None
    problems = cross_checks(mapping)
    if problems:
        raise MappingError(file, problems)
    return mapping.model_copy(update={"source": Path(file)})


def load_mapping(path: Path | str) -> Mapping:
    """Read and validate a mapping file; raise :class:`MappingError` naming file, asset and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(path, [f"cannot read the file: {exc.strerror} (check the --mapping path)"]) from None
    except UnicodeDecodeError as exc:
        raise MappingError(path, [not_utf8(exc)]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(path, [toml_syntax_error("", exc, text)]) from None
    return parse_mapping(raw, path)


def require(mapping: Mapping, protocol: str) -> list[Any]:
    """The assets of ``protocol``; a clear error when the file has none."""
    assets = mapping.of(protocol)
    if not assets:
        raise MappingError(
            mapping.source or "<mapping>",
            [f"no asset with protocol = {protocol!r} (add one, or run the bridge of another protocol)"],
        )
    return assets
