"""The asset mapping file (TOML): which twin lives where, on which protocol, and what is writable.

One file drives the bridges, the simulator and the docs (see docs/connectors.md). Loading it
validates everything up front; every mistake is reported with the file, the asset and the field:

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.toml"
>>> _ = p.write_text('''
... [[assets]]
... twin_id = "pump-1"
... type = "pump"
... protocol = "modbus"
... [assets.params.speed_rpm]
... register = "coil"
... address = 0
... ''')
>>> try:
...     load_mapping(p)
... except MappingError as exc:
...     print(str(exc).splitlines()[1])
  asset 'pump-1' (assets[0]), field params.speed_rpm.register: Input should be 'holding' or 'input'.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, ValidationError

from operators.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN
from operators.strict import StrictModel
from twinflow.config_errors import problems, sentence, toml_syntax_error
from twinflow.settings import ConfigError

Protocol = Literal["opcua", "mqtt", "modbus"]
PROTOCOLS: tuple[str, ...] = ("opcua", "mqtt", "modbus")
JSON_PATH_PATTERN = r"^(\$\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
SECURITY_MODES = ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt")


class _Strict(StrictModel):
    model_config = ConfigDict(frozen=True)


# ----------------------------------------------------------------------------- connections
class OpcuaConnection(_Strict):
    """How to reach the OPC-UA server (the simulator serves exactly this endpoint)."""

    endpoint: str = Field("opc.tcp://127.0.0.1:4840/twinflow/", pattern=r"^opc\.tcp://[^/:]+:\d+(/.*)?$")
    namespace: str = "urn:twinflow:sim"
    publishing_interval_ms: float = Field(100.0, gt=0)
    sampling_interval_ms: float = Field(50.0, ge=0)
    # Absolute deadband applied to every parameter unless the parameter sets its own.
    deadband: float = Field(0.0, ge=0)
    # Server-side queue per monitored item: it must hold the values of the longest pause between two
    # publish responses (a busy client or server: 1–2 s seen), or the server discards the oldest.
    queue_size: int = Field(100, ge=1)
    # Seconds a request (connect, subscribe, write) may take.
    request_timeout_s: float = Field(10.0, gt=0)
    # Health probe period (the probe may take this long before the link counts as lost).
    watchdog_s: float = Field(5.0, gt=0)
    security: Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"] = "None"
    # Client side (bridge): its certificate (DER/PEM) and private key (PEM); server cert optional.
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None
    application_uri: str = "urn:twinflow:bridge"
    # Server side (simulator): its certificate/key and the folder of trusted client certificates.
    server_private_key: Path | None = None
    trusted_certificates: Path | None = None
    username: str | None = None
    password: SecretStr | None = None


class MqttConnection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    qos: int = Field(1, ge=0, le=2)
    # False = persistent session: QoS 1/2 messages wait in the broker while the bridge is away.
    clean_session: bool = False
    client_id: str = "twinflow-mqtt-mapped"
    keepalive_s: int = Field(30, ge=5)
    tls: bool = False
    ca_file: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    tls_insecure: bool = False
    username: str | None = None
    password: SecretStr | None = None


class ModbusConnection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(5020, ge=1, le=65535)
    poll_interval_ms: float = Field(500.0, gt=0)
    timeout_s: float = Field(2.0, gt=0)
    # Adjacent registers are read in one request up to this many (the protocol allows 125).
    max_registers_per_request: int = Field(125, ge=1, le=125)


# ----------------------------------------------------------------------------- parameters
class _Param(_Strict):
    unit: str = ""
    writable: bool = False
    # Simulator only: the physics signal served under this name (default: the parameter name).
    signal: str | None = None


class OpcuaParam(_Param):
    node: str
    deadband: float | None = Field(None, ge=0)
    sampling_interval_ms: float | None = Field(None, ge=0)


class MqttParam(_Param):
    # Topic of the value; default: the asset's `topic`.
    topic: str | None = None
    # Dotted path into a JSON payload ("$.motor.rpm" or "motor.rpm"); omitted = plain number payload.
    path: str | None = Field(None, pattern=JSON_PATH_PATTERN)


DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]


class ModbusParam(_Param):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["holding", "input"] = Field(alias="register")
    address: int = Field(ge=0, le=65535)
    type: DataType = "uint16"
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def width(self) -> int:
        return 1 if self.type in ("int16", "uint16") else 2


# ----------------------------------------------------------------------------- assets
class _Asset(_Strict):
    twin_id: Annotated[str, Field(pattern=TWIN_ID_PATTERN)]
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*$")


class OpcuaAsset(_Asset):
    protocol: Literal["opcua"]
    params: dict[str, OpcuaParam] = Field(min_length=1)


class MqttAsset(_Asset):
    protocol: Literal["mqtt"]
    # Default topic of the asset's parameters, and where commands are published.
    topic: str | None = None
    command_topic: str | None = None
    # Paths of the source timestamp and quality inside JSON payloads (optional).
    ts_path: str | None = Field("ts", pattern=JSON_PATH_PATTERN)
    quality_path: str | None = Field("quality", pattern=JSON_PATH_PATTERN)
    params: dict[str, MqttParam] = Field(min_length=1)

    def topic_of(self, name: str) -> str:
        topic = self.params[name].topic or self.topic
        assert topic is not None  # guaranteed by validation
        return topic


class ModbusAsset(_Asset):
    protocol: Literal["modbus"]
    unit_id: int = Field(1, ge=0, le=247)
    params: dict[str, ModbusParam] = Field(min_length=1)


Asset = Annotated[OpcuaAsset | MqttAsset | ModbusAsset, Field(discriminator="protocol")]


class Mapping(_Strict):
    opcua: OpcuaConnection = Field(default_factory=OpcuaConnection)
    mqtt: MqttConnection = Field(default_factory=MqttConnection)
    modbus: ModbusConnection = Field(default_factory=ModbusConnection)
    assets: list[Asset] = Field(min_length=1)
    # Where the file was read from (set by load_mapping); relative paths resolve against its folder.
    source: Path | None = None

    def of(self, protocol: str) -> list[Any]:
        """The assets served over one protocol."""
        return [a for a in self.assets if a.protocol == protocol]

    def asset(self, twin_id: str) -> OpcuaAsset | MqttAsset | ModbusAsset | None:
        return next((a for a in self.assets if a.twin_id == twin_id), None)

    def path(self, p: Path | None) -> Path | None:
        """Resolve a path from the file against the file's folder."""
        if p is None or p.is_absolute() or self.source is None:
            return p
        return self.source.parent / p


# ----------------------------------------------------------------------------- errors
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


def _check_opcua(i: int, a: OpcuaAsset) -> Iterator[str]:
    from asyncua import ua

    for name, p in a.params.items():
        try:
            ua.NodeId.from_string(p.node)
        except Exception:
            yield (
                f"asset {a.twin_id!r} (assets[{i}]), field params.{name}.node: {p.node!r} is not an "
                'OPC-UA NodeId (write it like "ns=2;s=pump-001.speed_rpm" or "ns=2;i=1001")'
            )


def _check_mqtt(i: int, a: MqttAsset) -> Iterator[str]:
    who = f"asset {a.twin_id!r} (assets[{i}])"
    for name, p in a.params.items():
        if (p.topic or a.topic) is None:
            yield f"{who}, field params.{name}.topic: no topic (set it, or the asset's `topic`)"
        elif any(c in (p.topic or a.topic or "") for c in "+#"):
            yield f"{who}, field params.{name}.topic: wildcards (+, #) are not allowed in a parameter topic"
    if any(p.writable for p in a.params.values()) and not a.command_topic:
        yield f"{who}, field command_topic: required because a parameter is writable (commands go there)"
    by_topic: dict[str, list[str]] = {}
    for name, p in a.params.items():
        by_topic.setdefault(p.topic or a.topic or "", []).append(name)
    for topic, names in by_topic.items():
        plain = [n for n in names if a.params[n].path is None]
        if plain and len(names) > 1:
            yield (
                f"{who}, field params.{plain[0]}.path: topic {topic!r} carries several parameters, so each "
                "needs a JSON `path` (a plain-number payload holds one value)"
            )


def _check_modbus(i: int, a: ModbusAsset, seen: dict[tuple[int, str, int], str]) -> Iterator[str]:
    who = f"asset {a.twin_id!r} (assets[{i}])"
    for name, p in a.params.items():
        if p.writable and p.kind == "input":
            yield (
                f"{who}, field params.{name}.writable: input registers are read-only; "
                'use register = "holding" or writable = false'
            )
        if p.address + p.width > 65536:
            yield f"{who}, field params.{name}.address: {p.type} at {p.address} runs past register 65535"
        if p.scale == 0:
            yield f"{who}, field params.{name}.scale: must not be 0"
        for reg in range(p.address, p.address + p.width):
            key = (a.unit_id, p.kind, reg)
            if key in seen:
                yield (
                    f"{who}, field params.{name}.address: {p.kind} register {reg} of unit {a.unit_id} "
                    f"is already used by {seen[key]}"
                )
                break
            seen[key] = f"{a.twin_id}.{name}"


def _cross_checks(m: Mapping) -> list[str]:
    problems: list[str] = []
    first: dict[str, int] = {}
    modbus_regs: dict[tuple[int, str, int], str] = {}
    for i, a in enumerate(m.assets):
        who = f"asset {a.twin_id!r} (assets[{i}])"
        if a.twin_id in first:
            problems.append(f"{who}, field twin_id: duplicate of assets[{first[a.twin_id]}]; twin ids are unique")
        first.setdefault(a.twin_id, i)
        for name in a.params:
            if not re.match(SENSOR_PATTERN, name):
                problems.append(
                    f"{who}, field params.{name}: parameter names must match {SENSOR_PATTERN} "
                    "(letters, digits, _ . -; start with a letter or _)"
                )
        if isinstance(a, OpcuaAsset):
            problems += _check_opcua(i, a)
        elif isinstance(a, MqttAsset):
            problems += _check_mqtt(i, a)
        else:
            problems += _check_modbus(i, a, modbus_regs)
    return problems


def parse_mapping(raw: dict[str, Any], file: Path | str = "<mapping>") -> Mapping:
    """Validate an already-parsed TOML document."""
    try:
        mapping = Mapping.model_validate(raw)
    except ValidationError as exc:
        raise MappingError(file, _pydantic_problems(raw, exc)) from None
    problems = _cross_checks(mapping)
    if problems:
        raise MappingError(file, problems)
    return mapping.model_copy(update={"source": Path(file)})


def load_mapping(path: Path | str) -> Mapping:
    """Read and validate a mapping file; raise :class:`MappingError` naming file, asset and field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise MappingError(path, [f"cannot read the file: {exc.strerror} (check the --mapping path)"]) from None
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
