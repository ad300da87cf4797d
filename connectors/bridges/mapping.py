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
... register = "flag"
... address = 0
... ''')
>>> try:
...     load_mapping(p)
... except MappingError as exc:
...     print(str(exc).splitlines()[1])
  asset 'pump-1' (assets[0]), field params.speed_rpm.register: Input should be 'holding', 'input', 'coil' or 'discrete'.

Many devices in one file: ``[devices.NAME]`` tables (``protocol`` plus that protocol's connection
fields, whose defaults come from the ``[opcua]``/``[modbus]``/``[mqtt]`` section), and
``device = "NAME"`` on each asset; assets without ``device`` use the section itself.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, ValidationError, model_validator

from connectors.config.errors import ConfigError, problems, sentence, toml_syntax_error
from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN
from operators.strict import StrictModel

Protocol = Literal["opcua", "mqtt", "modbus"]
PROTOCOLS: tuple[str, ...] = ("opcua", "mqtt", "modbus")
# Dotted path into a JSON document; a segment may select a list element by a field: metrics[name=temp].
_SEGMENT = r"[A-Za-z0-9_-]+(\[[A-Za-z0-9_-]+=[^\]]+\])?"
JSON_PATH_PATTERN = rf"^(\$\.)?{_SEGMENT}(\.{_SEGMENT})*$"
# Device timestamps (MQTT, Sparkplug): how a payload's ts is read (docs/connectors.md, "Timestamps").
TsFormat = Literal["auto", "iso", "epoch_s", "epoch_ms", "epoch_us"]
DEVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
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
    # How payload timestamps are read unless an asset says otherwise (docs/connectors.md, "Timestamps").
    ts_format: TsFormat = "auto"
    # Assets with an `ack_topic`: seconds to wait for the device's ack of a command.
    ack_timeout_s: float = Field(10.0, gt=0)


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
    # A NodeId ("ns=2;s=Pump1.Flow", or portable: "nsu=urn:acme:line1;s=Pump1.Flow") or a browse path
    # from the Objects folder (["Line1", "Pump1", "Flow"]; names in the device's `namespace`, or
    # "0:Name" for a namespace index, "nsu=URI;Name" for another namespace). Exactly one of the two.
    node: str | None = None
    browse_path: list[str] | None = Field(None, min_length=1)
    deadband: float | None = Field(None, ge=0)
    sampling_interval_ms: float | None = Field(None, ge=0)


class MqttParam(_Param):
    # Topic of the value; default: the asset's `topic`.
    topic: str | None = None
    # Dotted path into a JSON payload ("$.motor.rpm", "motor.rpm", "metrics[name=temp].value");
    # omitted = plain number payload.
    path: str | None = Field(None, pattern=JSON_PATH_PATTERN)
    # Sparkplug B (asset `sparkplug` set): the metric's name in the birth certificate.
    metric: str | None = Field(None, min_length=1)
    # "auto": numbers and booleans as sent; "text": a string value (stored in telemetry.text_value).
    type: Literal["auto", "text"] = "auto"


DataType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string", "bool"]


class ModbusParam(_Param):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # Holding/input registers (16 bit), coils (read/write bits), discrete inputs (read-only bits).
    kind: Literal["holding", "input", "coil", "discrete"] = Field(alias="register")
    address: int = Field(ge=0, le=65535)
    type: DataType | None = None  # default: uint16 for registers, bool for coils and discrete inputs
    # Order of the 16-bit words of a multi-register value (big = high word first) and of the two
    # bytes inside each register (big = high byte first, the Modbus convention).
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    # string: its length in registers (two characters each).
    length: int | None = Field(None, ge=1, le=125)
    # Bit field of an integer register value: `bits` bits from bit `bit` (0 = least significant);
    # one bit reads as a boolean.
    bit: int | None = Field(None, ge=0, le=63)
    bits: int = Field(1, ge=1, le=64)
    scale: float = 1.0
    offset: float = 0.0
    # Plausible range of the engineering value: outside it the reading is stored with quality bad
    # and status BadOutOfRange (a wrong word/byte order decodes to nonsense like 7e35).
    min: float | None = None
    max: float | None = None
    # Function used to write a holding register value: 6 (single register) or 16 (multiple).
    write_function: Literal[6, 16] = 16

    @property
    def data_type(self) -> str:
        if self.type is not None:
            return self.type
        return "bool" if self.kind in ("coil", "discrete") else "uint16"

    @property
    def width(self) -> int:
        """Registers (or bits, for coils and discrete inputs) the value occupies."""
        t = self.data_type
        if self.kind in ("coil", "discrete"):
            return 1
        if t == "string":
            return self.length or 1
        return {"int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}.get(t, 1)


# ----------------------------------------------------------------------------- assets
class _Asset(_Strict):
    # A twin id; MQTT assets whose topic has {placeholders} may use them here ("{line}-{machine}").
    twin_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9{][A-Za-z0-9._:{}-]{0,127}$")]
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    # The [devices.NAME] connection serving this asset; default: the protocol's own section.
    device: str | None = None


class OpcuaAsset(_Asset):
    protocol: Literal["opcua"]
    params: dict[str, OpcuaParam] = Field(min_length=1)


class SparkplugAddress(_Strict):
    """Where a Sparkplug B device publishes: spBv1.0/<group>/<message type>/<node>[/<device>].

    Each may be "+" (any) when the asset's twin_id uses {group}, {node} or {device}."""

    group: str = Field(min_length=1)
    node: str = Field(min_length=1)
    device: str | None = None  # None: the edge node's own metrics (NBIRTH/NDATA)


class MqttAsset(_Asset):
    protocol: Literal["mqtt"]
    # Default topic of the asset's parameters, and where commands are published. A topic may hold
    # {name} placeholders (one topic level each, subscribed as +): one asset then serves every
    # device publishing there, its twin_id built from the placeholders.
    topic: str | None = None
    command_topic: str | None = None
    # Where the device answers commands {"command_id", "status": applied|rejected|failed, "error"};
    # without it a command counts as applied once the broker took it.
    ack_topic: str | None = None
    # Paths of the source timestamp and quality inside JSON payloads (optional).
    ts_path: str | None = Field("ts", pattern=JSON_PATH_PATTERN)
    quality_path: str | None = Field("quality", pattern=JSON_PATH_PATTERN)
    # How the timestamp is read; default: the [mqtt] section's ts_format.
    ts_format: TsFormat | None = None
    # Sparkplug B device (protobuf payloads, birth/death, aliases): its group/node/device ids.
    sparkplug: SparkplugAddress | None = None
    params: dict[str, MqttParam] = Field(min_length=1)

    def topic_of(self, name: str) -> str:
        topic = self.params[name].topic or self.topic
        assert topic is not None  # guaranteed by validation
        return topic

    @property
    def is_template(self) -> bool:
        """One asset for many devices: the twin id is built from topic or Sparkplug ids."""
        return "{" in self.twin_id


class ModbusAsset(_Asset):
    protocol: Literal["modbus"]
    unit_id: int = Field(1, ge=0, le=255)
    params: dict[str, ModbusParam] = Field(min_length=1)


class OpcuaDevice(OpcuaConnection):
    protocol: Literal["opcua"]


class MqttDevice(MqttConnection):
    protocol: Literal["mqtt"]


class ModbusDevice(ModbusConnection):
    protocol: Literal["modbus"]


Device = Annotated[OpcuaDevice | MqttDevice | ModbusDevice, Field(discriminator="protocol")]


Asset = Annotated[OpcuaAsset | MqttAsset | ModbusAsset, Field(discriminator="protocol")]


class Mapping(_Strict):
    opcua: OpcuaConnection = Field(default_factory=OpcuaConnection)
    mqtt: MqttConnection = Field(default_factory=MqttConnection)
    modbus: ModbusConnection = Field(default_factory=ModbusConnection)
    # Named connections (many PLCs, gateways, brokers in one file); fields default to the section's.
    devices: dict[str, Device] = Field(default_factory=dict)
    assets: list[Asset] = Field(min_length=1)
    # Where the file was read from (set by load_mapping); relative paths resolve against its folder.
    source: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _device_defaults(cls, raw: Any) -> Any:
        """A device's missing fields come from its protocol's section."""
        if not isinstance(raw, dict) or not isinstance(raw.get("devices"), dict):
            return raw
        devices = {}
        for name, dev in raw["devices"].items():
            proto = dev.get("protocol") if isinstance(dev, dict) else None
            section = raw.get(proto) if proto in PROTOCOLS else None
            devices[name] = {**section, **dev} if isinstance(section, dict) and isinstance(dev, dict) else dev
        return {**raw, "devices": devices}

    def of(self, protocol: str) -> list[Any]:
        """The assets served over one protocol."""
        return [a for a in self.assets if a.protocol == protocol]

    def connection(self, device: str | None, protocol: str) -> Any:
        """The connection settings of a device name (None: the protocol's section)."""
        if device is None:
            return getattr(self, protocol)
        return self.devices[device]

    def devices_of(self, protocol: str) -> dict[str, tuple[Any, list[Any]]]:
        """Device name → (connection, its assets), for the assets of one protocol; the section's
        own device is named after the protocol ("opcua", "modbus", "mqtt")."""
        out: dict[str, tuple[Any, list[Any]]] = {}
        for a in self.of(protocol):
            name = a.device or protocol
            if name not in out:
                out[name] = (self.connection(a.device, protocol), [])
            out[name][1].append(a)
        return out

    def asset(self, twin_id: str) -> OpcuaAsset | MqttAsset | ModbusAsset | None:
        """The asset of a twin (an MQTT asset template's, when its pattern builds ``twin_id``)."""
        found = next((a for a in self.assets if a.twin_id == twin_id), None)
        if found is None:
            found = next(
                (a for a in self.assets if isinstance(a, MqttAsset) and a.is_template
                 and twin_pattern(a.twin_id).fullmatch(twin_id)),
                None,
            )  # fmt: skip
        return found

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


def _check_opcua(i: int, a: OpcuaAsset) -> Iterator[str]:
    from asyncua import ua

    who = f"asset {a.twin_id!r} (assets[{i}])"
    for name, p in a.params.items():
        if (p.node is None) == (p.browse_path is None):
            yield f"{who}, field params.{name}: give exactly one of `node` and `browse_path`"
            continue
        if p.browse_path is not None:
            for seg in p.browse_path:
                if not _browse_segment_ok(seg):
                    yield (
                        f"{who}, field params.{name}.browse_path: {seg!r} is not a browse name (write "
                        '"Name", "0:Name" for namespace index 0, or "nsu=URI;Name")'
                    )
            continue
        try:
            ua.NodeId.from_string(p.node)
        except Exception:
            yield (
                f"{who}, field params.{name}.node: {p.node!r} is not an OPC-UA NodeId (write it like "
                '"nsu=urn:acme:line1;s=Pump1.Flow" (portable), "ns=2;s=pump-001.speed_rpm" or "ns=2;i=1001")'
            )


def _browse_segment_ok(seg: str) -> bool:
    if seg.startswith("nsu="):
        uri, sep, name = seg[4:].partition(";")
        return bool(uri and sep and name)
    prefix, sep, name = seg.partition(":")
    if sep and prefix.isdigit():
        return bool(name)
    return bool(seg)


TOPIC_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _check_mqtt(i: int, a: MqttAsset) -> Iterator[str]:
    who = f"asset {a.twin_id!r} (assets[{i}])"
    names_in_twin = set(TOPIC_PLACEHOLDER.findall(a.twin_id))
    if a.sparkplug is not None:
        yield from _check_sparkplug(who, a, names_in_twin)
        return
    topics = {p.topic or a.topic for p in a.params.values()}
    for name, p in a.params.items():
        topic = p.topic or a.topic
        if p.metric is not None:
            yield f"{who}, field params.{name}.metric: only for Sparkplug assets (set `sparkplug`), else use `path`"
        if topic is None:
            yield f"{who}, field params.{name}.topic: no topic (set it, or the asset's `topic`)"
        elif any(c in topic for c in "+#"):
            yield (
                f"{who}, field params.{name}.topic: wildcards (+, #) are not allowed in a parameter topic; "
                "write a {name} placeholder for a varying topic level"
            )
        elif any(not _placeholder_level_ok(level) for level in topic.split("/")):
            yield f"{who}, field params.{name}.topic: a {{placeholder}} must fill a whole topic level"
    if names_in_twin:
        for topic in topics:
            missing = names_in_twin - set(TOPIC_PLACEHOLDER.findall(topic or ""))
            if topic and missing:
                yield (
                    f"{who}, field twin_id: uses {{{sorted(missing)[0]}}} but topic {topic!r} has no such placeholder"
                )
    elif any(TOPIC_PLACEHOLDER.search(t or "") for t in topics):
        yield f'{who}, field twin_id: the topic has {{placeholders}}: build the twin_id from them (e.g. "{{machine}}")'
    if not names_in_twin and not re.match(TWIN_ID_PATTERN, a.twin_id):
        yield f"{who}, field twin_id: must match {TWIN_ID_PATTERN}"
    if any(p.writable for p in a.params.values()) and not a.command_topic:
        yield f"{who}, field command_topic: required because a parameter is writable (commands go there)"
    for name in ("command_topic", "ack_topic"):
        topic = getattr(a, name)
        if topic and set(TOPIC_PLACEHOLDER.findall(topic)) - names_in_twin:
            yield f"{who}, field {name}: may only use the placeholders of twin_id"
        if topic and any(c in topic for c in "+#"):
            yield f"{who}, field {name}: no wildcards (+, #); write {{placeholders}} of twin_id"
    if a.ack_topic and not a.command_topic:
        yield f"{who}, field ack_topic: only with a command_topic (acks answer commands)"
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


def _placeholder_level_ok(level: str) -> bool:
    return TOPIC_PLACEHOLDER.search(level) is None or TOPIC_PLACEHOLDER.fullmatch(level) is not None


def _check_sparkplug(who: str, a: MqttAsset, names_in_twin: set[str]) -> Iterator[str]:
    sp = a.sparkplug
    assert sp is not None
    wild = {k for k, v in (("group", sp.group), ("node", sp.node), ("device", sp.device)) if v == "+"}
    if names_in_twin - {"group", "node", "device"}:
        yield f"{who}, field twin_id: a Sparkplug twin_id may use {{group}}, {{node}} and {{device}} only"
    if wild - names_in_twin:
        yield f'{who}, field twin_id: sparkplug.{sorted(wild)[0]} is "+", so twin_id must contain {{{sorted(wild)[0]}}}'
    if not names_in_twin and not re.match(TWIN_ID_PATTERN, a.twin_id):
        yield f"{who}, field twin_id: must match {TWIN_ID_PATTERN}"
    if a.topic or a.command_topic or a.ack_topic:
        yield f"{who}, field topic: a Sparkplug asset's topics follow from `sparkplug` (remove topic/command_topic)"
    for name, p in a.params.items():
        if p.metric is None:
            yield f"{who}, field params.{name}.metric: required for a Sparkplug asset (the metric's name)"
        if p.topic or p.path:
            yield f"{who}, field params.{name}: a Sparkplug parameter takes `metric`, not topic/path"


_INT_TYPES = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}


def _check_modbus(i: int, a: ModbusAsset, seen: dict[tuple[str, int, str, int], str], device: str) -> Iterator[str]:
    who = f"asset {a.twin_id!r} (assets[{i}])"
    for name, p in a.params.items():
        field = f"{who}, field params.{name}"
        t = p.data_type
        bitwise = p.kind in ("coil", "discrete")
        if p.writable and p.kind in ("input", "discrete"):
            yield (
                f"{field}.writable: {'input registers' if p.kind == 'input' else 'discrete inputs'} are read-only; "
                'use register = "holding" (or "coil") or writable = false'
            )
        if bitwise and t != "bool":
            yield f"{field}.type: a {p.kind} holds one bit: leave type out (bool)"
        if not bitwise and t == "bool":
            yield f'{field}.type: "bool" is for coils and discrete inputs; for a bit of a register set `bit`'
        if t == "string" and p.length is None:
            yield f"{field}.length: a string needs its length in registers (two characters each)"
        if p.length is not None and t != "string":
            yield f"{field}.length: only strings have a length"
        if p.bit is not None:
            width = _INT_TYPES.get(t)
            if width is None:
                yield f"{field}.bit: bit fields need an integer type (uint16, uint32, …), not {t}"
            elif p.bit + p.bits > width:
                yield f"{field}.bits: bits {p.bit}..{p.bit + p.bits - 1} do not fit a {t}"
            if p.writable:
                yield f"{field}.writable: writing a bit field would overwrite the register's other bits"
        elif p.bits != 1:
            yield f"{field}.bits: set `bit` (the lowest bit of the field) too"
        if p.write_function == 6 and p.width != 1 and p.writable:
            yield f"{field}.write_function: function 6 writes one register; {t} needs {p.width} (use 16)"
        if p.address + p.width > 65536:
            yield f"{field}.address: {t} at {p.address} runs past address 65535"
        if p.scale == 0:
            yield f"{field}.scale: must not be 0"
        if p.min is not None and p.max is not None and p.min > p.max:
            yield f"{field}.min: greater than max"
        space = "bits" if bitwise else "registers"
        for reg in range(p.address, p.address + p.width):
            key = (device, a.unit_id, p.kind, reg)
            if key in seen and p.bit is None:
                yield (
                    f"{field}.address: {p.kind} {space[:-1]} {reg} of unit {a.unit_id} is already used by {seen[key]}"
                )
                break
            if p.bit is None:
                seen[key] = f"{a.twin_id}.{name}"


def _cross_checks(m: Mapping) -> list[str]:
    problems: list[str] = []
    first: dict[str, int] = {}
    modbus_regs: dict[tuple[str, int, str, int], str] = {}
    for name in m.devices:
        if name in PROTOCOLS or not re.match(DEVICE_NAME_PATTERN, name):
            problems.append(
                f"device {name!r} ([devices.{name}]): a device name matches {DEVICE_NAME_PATTERN} and is not "
                "a protocol name (opcua, mqtt, modbus: those are the sections' own devices)"
            )
    for i, a in enumerate(m.assets):
        who = f"asset {a.twin_id!r} (assets[{i}])"
        if a.device is not None:
            dev = m.devices.get(a.device)
            if dev is None:
                known = ", ".join(sorted(m.devices)) or "none"
                problems.append(f"{who}, field device: no [devices.{a.device}] in the file (devices: {known})")
                continue
            if dev.protocol != a.protocol:
                problems.append(f"{who}, field device: {a.device!r} is a {dev.protocol} device, the asset {a.protocol}")
                continue
        if not isinstance(a, MqttAsset) and not re.match(TWIN_ID_PATTERN, a.twin_id):
            problems.append(f"{who}, field twin_id: must match {TWIN_ID_PATTERN}")
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
            problems += _check_modbus(i, a, modbus_regs, a.device or "modbus")
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


def twin_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the twin ids an asset template builds, one group per placeholder.

    >>> twin_pattern("{line}-{machine}").fullmatch("l1-press").groupdict()
    {'line': 'l1', 'machine': 'press'}
    """
    out, pos = [], 0
    for m in TOPIC_PLACEHOLDER.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>[^/+#]+?)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def require(mapping: Mapping, protocol: str) -> list[Any]:
    """The assets of ``protocol``; a clear error when the file has none."""
    assets = mapping.of(protocol)
    if not assets:
        raise MappingError(
            mapping.source or "<mapping>",
            [f"no asset with protocol = {protocol!r} (add one, or run the bridge of another protocol)"],
        )
    return assets
