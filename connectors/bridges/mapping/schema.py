"""The asset mapping file's schema: connections, devices, parameters and assets per protocol.

One file drives the bridges, the simulator and the docs (see docs/connectors.md); it is read and
checked by :mod:`connectors.bridges.mapping.loading`. Many devices in one file: ``[devices.NAME]``
tables (``protocol`` plus that protocol's connection fields, whose defaults come from the
``[opcua]``/``[modbus]``/``[mqtt]`` section), and ``device = "NAME"`` on each asset; assets without
``device`` use the section itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from connectors.bridges.mapping.templates import twin_pattern
from operators.strict import StrictModel

Protocol = Literal["opcua", "mqtt", "modbus"]
PROTOCOLS: tuple[str, ...] = ("opcua", "mqtt", "modbus")
# Dotted path into a JSON document; a segment may select a list element by a field: metrics[name=temp].
_SEGMENT = r"[A-Za-z0-9_-]+(\[[A-Za-z0-9_-]+=[^\]]+\])?"
JSON_PATH_PATTERN = rf"^(\$\.)?{_SEGMENT}(\.{_SEGMENT})*$"
# Device timestamps (MQTT, Sparkplug): how a payload's ts is read (docs/connectors.md, "Timestamps").
TsFormat = Literal["auto", "iso", "epoch_s", "epoch_ms", "epoch_us"]


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

    def pick_device(self, protocol: str, name: str | None) -> tuple[str, Any, list[Any]]:
        """(name, connection, its assets) of one device of ``protocol``: ``name`` (a ``[devices.NAME]``
        of that protocol, or the protocol itself for its section), else the only one the file has;
        ValueError naming the choices."""
        used = self.devices_of(protocol)
        named = [n for n, d in self.devices.items() if d.protocol == protocol]
        names = list(dict.fromkeys([*used, *named]))
        if name is None:
            if len(names) == 1:
                name = names[0]
            elif names:
                raise ValueError(f"{len(names)} {protocol} devices ({', '.join(names)}): pick one with --device")
            elif protocol in self.model_fields_set:
                name = protocol
            else:
                raise ValueError(f"no [{protocol}] section and no [devices.NAME] with protocol = {protocol!r}")
        if name == protocol:
            conn = getattr(self, protocol)
        elif name in named:
            conn = self.devices[name]
        else:
            choices = ", ".join(dict.fromkeys([*names, protocol]))
            raise ValueError(
                f"no {protocol} device {name!r} (--device {choices}; {protocol} is the [{protocol}] section)"
            )
        return name, conn, used.get(name, (conn, []))[1]

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
