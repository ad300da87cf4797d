"""MQTT → Kafka bridge driven by the mapping file: JSON and plain payloads, Sparkplug B, commands.

Every MQTT device of the mapping (a broker: the ``[mqtt]`` section or a ``[devices.NAME]`` table)
gets its own paho client. A parameter has a topic and either a JSON path (``motor.rpm``,
``metrics[name=temp].value``) or none (the payload is a plain number or ``true``/``false``). A
topic may hold ``{name}`` placeholders (one level each): one asset then serves every device
publishing there, its twin_id built from them. The asset's ``ts_path``/``quality_path`` give the
source timestamp (read with the MQTT timestamp policy, :mod:`operators.devices.timestamps`; none = receive
time) and quality (good/uncertain/bad, a status name like ``BadSensorFailure``, or an OPC-style
number: ≥ 192 good, ≥ 64 uncertain).

Values are checked here, where the device's bytes are at hand: a value of the wrong type, an
unreadable timestamp, a payload that is not JSON or carries none of the mapped paths is
dead-lettered with the **original bytes**, the ``mqtt.topic`` header, the reason and the field
(``readings.running``); the other values of the message go on.

Sparkplug B assets (``sparkplug = {group, node, device}``) are read from ``spBv1.0/…`` topics:
births define names, datatypes and aliases, data may use aliases, a sequence gap or an unknown
alias triggers a rebirth request, and births/deaths set the twin's ``online`` reading
(:mod:`operators.devices.sparkplug_session`).

Commands go to the asset's ``command_topic`` as ``{"command_id", "parameter", "value", "ts"}``
(Sparkplug: DCMD/NCMD). Without ``ack_topic`` a command is ``applied`` once the broker took it;
with ``ack_topic`` the device's answer ``{"command_id", "status", "error"}`` decides.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import paho.mqtt.client as mqtt

from connectors.bridges.base import Bridge, Device
from connectors.bridges.mapping.schema import MqttAsset, MqttConnection
from connectors.bridges.mapping.templates import TOPIC_PLACEHOLDER, twin_pattern
from connectors.extras import require
from connectors.mqtt.client import make_client
from connectors.mqtt.payload import MISSING, Part, extract, parse_plain, split_path
from operators.devices.sparkplug_session import EdgeSessions, Online, Rebirth, Unreadable, Values
from operators.devices.timestamps import parse_device_ts
from operators.records.commands import Refused
from operators.records.envelope import STATUS_PATTERN, TWIN_ID_PATTERN, Reason, Rejected, quality_of_status

log = logging.getLogger(__name__)

QUALITIES = ("good", "uncertain", "bad")
SPARKPLUG_NS = "spBv1.0"
_STATUS = re.compile(STATUS_PATTERN)
_TWIN = re.compile(TWIN_ID_PATTERN)
_MAX_CACHED_TOPICS = 100_000


class _Param(NamedTuple):
    name: str
    parts: tuple[Part, ...] | None  # None: plain payload
    text: bool


class _Group(NamedTuple):
    """The parameters of one twin on one concrete topic."""

    twin_id: str
    asset: MqttAsset
    params: tuple[_Param, ...]
    ts_parts: tuple[Part, ...] | None
    q_parts: tuple[Part, ...] | None
    ts_format: str


class _Template(NamedTuple):
    regex: re.Pattern[str]
    asset: MqttAsset
    params: tuple[_Param, ...]


def topic_regex(template: str) -> re.Pattern[str]:
    """``plant/{line}/{machine}`` → a regex with one group per placeholder (one topic level each)."""
    out, pos = [], 0
    for m in TOPIC_PLACEHOLDER.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$")


def subscription_of(template: str) -> str:
    return TOPIC_PLACEHOLDER.sub("+", template)


@dataclass
class _Broker:
    device: Device
    conn: MqttConnection
    client: Any = None
    subscriptions: list[str] = field(default_factory=list)
    exact: dict[str, list[_Group]] = field(default_factory=dict)
    templates: list[_Template] = field(default_factory=list)
    sparkplug: list[MqttAsset] = field(default_factory=list)
    ack_topics: list[re.Pattern[str]] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)


class MappedMqttBridge(Bridge):
    protocol = "mqtt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = 0
        self.unmapped = 0
        self.sessions = EdgeSessions()
        self._rebirth_sent: dict[tuple[str, str], float] = {}
        self._acks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._ts_cache: tuple[object, str, datetime | None] = (None, "", None)  # one-entry timestamp cache
        self.brokers: dict[str, _Broker] = {}
        self._asset_of_broker: dict[int, _Broker] = {}
        for name, dev in self.devices.items():
            b = self.brokers[name] = _Broker(dev, dev.conn)
            self._plan(b)
            b.client = self._client(b)
            for a in dev.assets:
                self._asset_of_broker[id(a)] = b
        if any(b.sparkplug for b in self.brokers.values()):
            require("sparkplug")  # the codec's protobuf is an extra: fail at start, naming the install command
        self._templates_by_twin = [(twin_pattern(a.twin_id), a) for a in self.assets if a.is_template]
        self._exact_assets = {a.twin_id: a for a in self.assets if not a.is_template}

    @staticmethod
    def address_of(conn: Any) -> str:
        return f"{conn.host}:{conn.port}"

    # ------------------------------------------------------------------ routes
    def _plan(self, b: _Broker) -> None:
        subs: list[str] = []
        for a in b.device.assets:
            assert isinstance(a, MqttAsset)
            if a.sparkplug is not None:
                b.sparkplug.append(a)
                sp = a.sparkplug
                subs.append(f"{SPARKPLUG_NS}/{sp.group}/+/{sp.node}/#")
                continue
            by_topic: dict[str, list[_Param]] = {}
            for name, p in a.params.items():
                parts = split_path(p.path) if p.path else None
                by_topic.setdefault(a.topic_of(name), []).append(_Param(name, parts, p.type == "text"))
            for topic, params in by_topic.items():
                subs.append(subscription_of(topic))
                if a.is_template:
                    b.templates.append(_Template(topic_regex(topic), a, tuple(params)))
                else:
                    b.exact.setdefault(topic, []).append(self._group(b, a.twin_id, a, params))
            if a.ack_topic:
                subs.append(subscription_of(a.ack_topic))
                b.ack_topics.append(topic_regex(a.ack_topic))
        b.subscriptions = list(dict.fromkeys(subs))

    def _group(self, b: _Broker, twin_id: str, a: MqttAsset, params: list[_Param] | tuple[_Param, ...]) -> _Group:
        return _Group(
            twin_id,
            a,
            tuple(params),
            split_path(a.ts_path) if a.ts_path else None,
            split_path(a.quality_path) if a.quality_path else None,
            a.ts_format or b.conn.ts_format,
        )

    def _groups_of(self, b: _Broker, topic: str, payload: bytes) -> list[_Group] | None:
        groups = b.exact.get(topic)
        if groups is not None or not b.templates:
            return groups
        found: list[_Group] = []
        for t in b.templates:
            m = t.regex.match(topic)
            if m is None:
                continue
            twin = t.asset.twin_id.format(**m.groupdict())
            if not _TWIN.match(twin):
                self.reject(None, payload, Reason.SCHEMA.value, f"topic {topic!r} gives twin_id {twin!r}, not a "
                            f"valid twin id ({TWIN_ID_PATTERN})", headers=[("mqtt.topic", topic.encode())])  # fmt: skip
                return []  # not cached: each such message is dead-lettered
            found.append(self._group(b, twin, t.asset, t.params))
        if len(b.exact) < _MAX_CACHED_TOPICS:
            b.exact[topic] = found
        return found

    # ------------------------------------------------------------------ MQTT client
    def _client(self, b: _Broker):
        c = b.conn
        client = make_client(
            c.client_id,
            clean_session=c.clean_session,
            username=c.username,
            password=c.password.get_secret_value() if c.password else None,
            tls=c.tls,
            ca_file=self.mapping.path(c.ca_file),
            certfile=self.mapping.path(c.certfile),
            keyfile=self.mapping.path(c.keyfile),
            tls_insecure=c.tls_insecure,
        )

        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            if reason_code.is_failure:
                b.device.health.error(f"connection refused: {reason_code}")
                log.error("MQTT %s (%s:%d) refused the connection: %s", b.device.name, c.host, c.port, reason_code)
                return
            client.subscribe([(t, c.qos) for t in b.subscriptions])  # up on the SUBACK
            log.info("MQTT %s: subscribing to %d topics (qos %d)", b.device.name, len(b.subscriptions), c.qos)

        def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
            refused = [t for t, rc in zip(b.subscriptions, reason_codes, strict=False) if rc.is_failure]
            if refused:
                b.device.health.error(f"subscription refused: {', '.join(refused[:3])}")
                log.error("MQTT %s refused the subscription to %s: check the broker's ACL", b.device.name, refused[:3])
            b.subscribed.set()
            self.device_up(b.device)

        def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
            b.subscribed.clear()
            b.device.health.down(f"disconnected: {reason_code}" if reason_code.is_failure else None)
            self._set_connected()
            if reason_code.is_failure:
                b.device.health.reconnects += 1
                log.warning("MQTT %s disconnected (%s); paho reconnects with backoff", b.device.name, reason_code)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_disconnect = on_disconnect
        client.on_message = lambda client, userdata, msg: self._on_message(b, msg)
        return client

    async def serve(self, device: Device, stop: asyncio.Event) -> None:
        b = self.brokers[device.name]
        b.client.connect_async(b.conn.host, b.conn.port, keepalive=b.conn.keepalive_s)
        b.client.loop_start()  # paho reconnects by itself
        try:
            await stop.wait()
        finally:
            b.client.disconnect()
            b.client.loop_stop()

    # ------------------------------------------------------------------ messages
    def _on_message(self, b: _Broker, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        topic = msg.topic
        try:
            if topic.startswith(SPARKPLUG_NS + "/") and b.sparkplug:
                self._on_sparkplug(b, topic, msg.payload)
                return
            if b.ack_topics and any(r.match(topic) for r in b.ack_topics):
                self._on_ack(topic, msg.payload)
                return
            groups = self._groups_of(b, topic, msg.payload)
            if groups:
                self._on_payload(b, topic, msg.payload, groups)
        except Exception as exc:  # a bug must not cost the broker connection: dead-letter, count, go on
            log.exception("MQTT %s: message on %s failed", b.device.name, topic)
            self.reject(None, msg.payload, Reason.SCHEMA.value, f"bridge error: {type(exc).__name__}: {exc}",
                        headers=[("mqtt.topic", topic.encode())])  # fmt: skip

    def _on_payload(self, b: _Broker, topic: str, payload: bytes, groups: list[_Group]) -> None:
        headers = [("mqtt.topic", topic.encode())]
        doc: Any = MISSING
        emitted = False
        for g in groups:
            readings: dict[str, Any] = {}
            text: dict[str, str] = {}
            if doc is MISSING and any(p.parts is not None for p in g.params):
                try:
                    doc = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    doc = None
            try:
                ts, quality, status = self._meta(g, doc)
            except Rejected as exc:
                self.reject(g.twin_id, payload, exc.reason.value, exc.detail, field=exc.field, headers=headers)
                emitted = True
                continue
            for p in g.params:
                value = parse_plain(payload) if p.parts is None else extract(doc, p.parts)
                if value is MISSING:
                    continue
                cls = value.__class__
                if cls is float or cls is int or cls is bool:
                    readings[p.name] = value
                elif cls is str and p.text:
                    text[p.name] = value  # type: ignore[assignment]
                elif value is None and quality != "good":
                    readings[p.name] = None
                elif value is None and p.parts is None:
                    continue  # not a plain value: nothing of this parameter here
                else:
                    hint = ' (set type = "text" for a text value)' if cls is str else ""
                    why = (
                        f"{_show(value)} is not a number or a boolean{hint}"
                        if value is not None
                        else ("null with quality good (give quality bad, or leave the value out)")
                    )
                    self.reject(g.twin_id, payload, Reason.SCHEMA.value, f"readings.{p.name}: {why}",
                                field=f"readings.{p.name}", headers=headers)  # fmt: skip
                    emitted = True
            if readings or text:
                st = {n: status for n in (*readings, *text)} if status else None
                self.emit(g.twin_id, ts, readings, quality, st, text or None)
                b.device.health.got(len(readings) + len(text))
                emitted = True
        if not emitted:
            self.unmapped += 1
            paths = ", ".join(
                f"{p.name}={'<plain>' if p.parts is None else _path_text(p.parts)}" for g in groups for p in g.params
            )
            why = "not JSON" if doc is None else f"none of the mapped values ({paths}) is in it"
            self.reject(groups[0].twin_id, payload, Reason.BAD_JSON.value if doc is None else Reason.SCHEMA.value,
                        f"payload on {topic!r}: {why}", headers=headers)  # fmt: skip

    def _meta(self, g: _Group, doc: Any) -> tuple[datetime, str, str | None]:
        """(ts, quality, status name) of a message for one twin; Rejected for an unreadable ts."""
        ts: datetime | None = None
        quality, status = "good", None
        if isinstance(doc, dict):
            if g.ts_parts is not None:
                raw = extract(doc, g.ts_parts)
                if raw is not MISSING and raw is not None:
                    ts = self._parse_ts(raw, g.ts_format)
            if g.q_parts is not None:
                q = extract(doc, g.q_parts)
                if q is not MISSING and q is not None:
                    quality, status = _quality(q)
        return ts or datetime.now(UTC), quality, status

    def _parse_ts(self, raw: object, fmt: str) -> datetime:
        """``parse_device_ts`` with a one-entry cache: the assets of one publisher share their timestamps."""
        last_raw, last_fmt, last = self._ts_cache
        if raw == last_raw and fmt == last_fmt and type(raw) is type(last_raw) and last is not None:
            return last
        ts = parse_device_ts(raw, fmt)  # type: ignore[arg-type]
        self._ts_cache = (raw, fmt, ts)
        return ts

    # ------------------------------------------------------------------ Sparkplug B
    def _on_sparkplug(self, b: _Broker, topic: str, payload: bytes) -> None:
        from connectors.sparkplug.codec import BadPayload, decode_payload

        levels = topic.split("/")
        if len(levels) not in (4, 5) or levels[2] in ("STATE", "NCMD", "DCMD"):
            return
        group, kind, node = levels[1], levels[2], levels[3]
        device = levels[4] if len(levels) == 5 else None
        try:
            ts_ms, seq, metrics = decode_payload(payload)
        except BadPayload as exc:
            self.reject(None, payload, Reason.SCHEMA.value, f"{topic}: {exc}", headers=[("mqtt.topic", topic.encode())])
            return
        for action in self.sessions.handle(group, kind, node, device, seq, metrics, ts_ms):
            if isinstance(action, Values):
                self._sparkplug_values(b, action, topic, payload)
            elif isinstance(action, Online):
                for twin, _ in self._sparkplug_twins(b, action.group, action.node, action.device):
                    ts = datetime.fromtimestamp(action.ts_ms / 1000, UTC) if action.ts_ms else datetime.now(UTC)
                    self.emit(twin, ts, {"online": action.online})
                    log.info("Sparkplug %s/%s/%s: twin %s %s", group, node, action.device or "-", twin,
                             "online" if action.online else "OFFLINE")  # fmt: skip
            elif isinstance(action, Rebirth):
                self._request_rebirth(b, action)
            elif isinstance(action, Unreadable):
                field_ = f"metrics.{action.metric}"
                self.reject(None, payload, Reason.SCHEMA.value, f"{field_}: {action.reason}", field=field_,
                            headers=[("mqtt.topic", topic.encode())])  # fmt: skip

    def _sparkplug_twins(self, b: _Broker, group: str, node: str, device: str | None):
        for a in b.sparkplug:
            sp = a.sparkplug
            assert sp is not None
            if sp.group not in ("+", group) or sp.node not in ("+", node) or (sp.device or None) not in ("+", device):
                continue
            if sp.device is None and device is not None:
                continue
            twin = a.twin_id.format(group=group, node=node, device=device or "")
            if _TWIN.match(twin):
                yield twin, a

    def _sparkplug_values(self, b: _Broker, v: Values, topic: str, payload: bytes) -> None:
        for twin, a in self._sparkplug_twins(b, v.group, v.node, v.device):
            by_ts: dict[int | None, dict[str, Any]] = {}
            text_by_ts: dict[int | None, dict[str, str]] = {}
            status: dict[str, str] = {}
            for name, p in a.params.items():
                if p.metric not in v.values:
                    continue
                value = v.values[p.metric]
                ts_ms = v.metric_ts.get(p.metric, v.ts_ms)
                if isinstance(value, str):
                    if p.type != "text":
                        self.reject(twin, payload, Reason.SCHEMA.value,
                                    f"readings.{name}: metric {p.metric!r} is text (set type = \"text\")",
                                    field=f"readings.{name}", headers=[("mqtt.topic", topic.encode())])  # fmt: skip
                        continue
                    text_by_ts.setdefault(ts_ms, {})[name] = value
                else:
                    by_ts.setdefault(ts_ms, {})[name] = value
                if p.metric in v.bad:
                    status[name] = v.bad[p.metric]
            for ts_ms in by_ts.keys() | text_by_ts.keys():
                readings, text = by_ts.get(ts_ms, {}), text_by_ts.get(ts_ms, {})
                ts = datetime.fromtimestamp(ts_ms / 1000, UTC) if ts_ms else datetime.now(UTC)
                st = {n: status[n] for n in (*readings, *text) if n in status} or None
                quality = "bad" if st and any(quality_of_status(s) == "bad" for s in st.values()) else "good"
                self.emit(twin, ts, readings, quality if st else "good", st, text or None)
                b.device.health.got(len(readings) + len(text))

    def _request_rebirth(self, b: _Broker, r: Rebirth) -> None:
        from connectors.sparkplug.codec import encode_payload
        from operators.devices.sparkplug_session import BOOLEAN, REBIRTH_METRIC

        now = time.monotonic()
        if now - self._rebirth_sent.get((r.group, r.node), -1e9) < 5.0:
            return
        self._rebirth_sent[(r.group, r.node)] = now
        log.warning("Sparkplug %s/%s: %s; requesting a rebirth", r.group, r.node, r.reason)
        b.device.health.error(f"{r.group}/{r.node}: {r.reason}")
        body = encode_payload([(REBIRTH_METRIC, BOOLEAN, True)], seq=None, ts_ms=int(time.time() * 1000))
        b.client.publish(f"{SPARKPLUG_NS}/{r.group}/NCMD/{r.node}", body, qos=0)

    # ------------------------------------------------------------------ commands
    def writable(self) -> Any:
        """Commands for the mapping's twins, template twins (by their id pattern) included."""
        fixed = {a.twin_id: {n: p.writable for n, p in a.params.items()} for a in self.assets if not a.is_template}

        def of(twin_id: str) -> dict[str, bool] | None:
            if twin_id in fixed:
                return fixed[twin_id]
            found = self._template_asset(twin_id)
            return None if found is None else {n: p.writable for n, p in found[0].params.items()}

        return of

    def _template_asset(self, twin_id: str) -> tuple[MqttAsset, dict[str, str]] | None:
        for pattern, a in self._templates_by_twin:
            m = pattern.fullmatch(twin_id)
            if m is not None:
                return a, m.groupdict()
        return None

    def _asset_vars(self, twin_id: str) -> tuple[MqttAsset, dict[str, str]]:
        a = self._exact_assets.get(twin_id)
        if a is not None:
            return a, {}
        found = self._template_asset(twin_id)
        if found is None:
            raise Refused(f"twin {twin_id!r} is not in the mapping")
        return found

    async def write(self, twin_id: str, parameter: str, value: float | bool, command_id: str = "") -> None:
        a, vars_ = self._asset_vars(twin_id)
        b = self._asset_of_broker[id(a)]
        if not b.subscribed.is_set():
            raise ConnectionError(f"not connected to MQTT {b.conn.host}:{b.conn.port} ({b.device.name})")
        if a.sparkplug is not None:
            topic, body = self._sparkplug_command(a, vars_, parameter, value)
        else:
            assert a.command_topic
            topic = a.command_topic.format(**vars_)
            body = orjson.dumps(
                {"command_id": command_id, "parameter": parameter, "value": value, "ts": datetime.now(UTC).isoformat()}
            )
        loop = asyncio.get_running_loop()
        waiting = bool(a.ack_topic and command_id)
        if waiting:
            fut = loop.create_future()
            self._acks[command_id] = (loop, fut)
        try:
            info = b.client.publish(topic, body, qos=max(b.conn.qos, 1))
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")
            # Wait for the broker's acknowledgement (PUBACK/PUBCOMP) without blocking the loop.
            await loop.run_in_executor(None, info.wait_for_publish, 10.0)
            if not info.is_published():
                raise TimeoutError(f"broker did not acknowledge the command on {topic}")
            if waiting:
                await self._device_ack(fut, a, vars_, command_id)
        finally:
            self._acks.pop(command_id, None)

    async def _device_ack(self, fut: asyncio.Future, a: MqttAsset, vars_: dict[str, str], command_id: str) -> None:
        b = self._asset_of_broker[id(a)]
        try:
            ack = await asyncio.wait_for(fut, b.conn.ack_timeout_s)
        except TimeoutError:
            raise ConnectionError(
                f"no device ack for command {command_id} on {a.ack_topic.format(**vars_)} "  # type: ignore[union-attr]
                f"within {b.conn.ack_timeout_s:g} s"
            ) from None
        status = ack.get("status")
        if status == "applied":
            return
        error = str(ack.get("error") or "")
        if status == "rejected":
            raise Refused(f"device rejected it: {error}")
        raise RuntimeError(f"device reported {status!r}: {error}")

    def _on_ack(self, topic: str, payload: bytes) -> None:
        try:
            ack = orjson.loads(payload)
        except orjson.JSONDecodeError:
            ack = None
        if not isinstance(ack, dict) or not isinstance(ack.get("command_id"), str):
            self.reject(None, payload, Reason.SCHEMA.value, f"device ack on {topic!r} without a command_id",
                        headers=[("mqtt.topic", topic.encode())])  # fmt: skip
            return
        waiting = self._acks.get(ack["command_id"])
        if waiting is None:
            log.info(
                "MQTT ack on %s for command %s that no write waits for (late or repeated)", topic, ack["command_id"]
            )
            return
        loop, fut = waiting
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(ack))

    def _sparkplug_command(self, a: MqttAsset, vars_: dict[str, str], parameter: str, value: Any) -> tuple[str, bytes]:
        from connectors.sparkplug.codec import encode_payload

        sp = a.sparkplug
        assert sp is not None
        group = vars_.get("group", sp.group)
        node = vars_.get("node", sp.node)
        device = vars_.get("device", sp.device) or None
        metric = a.params[parameter].metric
        assert metric is not None
        datatypes = self.sessions.device_metrics(group, node, device)
        if metric not in datatypes:
            raise Refused(
                f"metric {metric!r} is not in the current birth certificate of {group}/{node}/{device or '-'}"
            )
        kind = "DCMD" if device else "NCMD"
        topic = f"{SPARKPLUG_NS}/{group}/{kind}/{node}" + (f"/{device}" if device else "")
        return topic, encode_payload([(metric, datatypes[metric], value)], seq=None, ts_ms=int(time.time() * 1000))


def _quality(q: object) -> tuple[str, str | None]:
    """A payload's quality field → (quality, status name)."""
    if q in QUALITIES:
        return q, None  # type: ignore[return-value]
    if isinstance(q, str) and _STATUS.match(q):
        return quality_of_status(q), q
    if isinstance(q, int | float) and not isinstance(q, bool):
        return ("good" if q >= 192 else "uncertain" if q >= 64 else "bad"), None
    raise Rejected(Reason.SCHEMA, f"quality {_show(q)} is not good/uncertain/bad, a status name or a number", "quality")


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '…' if len(text) > 60 else text}"


def _path_text(parts: tuple[Part, ...]) -> str:
    return ".".join(p if isinstance(p, str) else f"{p[0]}[{p[1]}={p[2]}]" for p in parts)
