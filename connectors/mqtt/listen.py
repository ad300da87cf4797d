"""Listen to an MQTT broker and describe what its devices publish: ``twinflow mapping listen-mqtt``.

:func:`listen` subscribes (read only, clean session, QoS 0) to topic filters for a while and hands
every message to :class:`Heard`, which keeps per topic: the message count, the payload kind (a JSON
object or array, a plain number, a boolean, text, Sparkplug B, binary), and for JSON the number and
boolean leaves with their paths in the mapping's path syntax (``$.a.b`` without the ``$.``, list
indexes as digits, ``metrics[name=temp].value`` for lists of named elements), text leaves, a
timestamp field (``ts``/``time``/``timestamp``: epoch or ISO) and a quality field. Sparkplug B
payloads are decoded with the project's codec (:mod:`connectors.sparkplug.codec`); births give the
names of the metrics that data messages send by alias.

>>> heard = Heard()
>>> heard.add("t/pump1/state", b'{"ts": 1767225600000, "motor": {"rpm": 1450}, '
...           b'"metrics": [{"name": "temp", "value": 61.5}], "mode": "AUTO"}', False, 0.0)
>>> t = heard.topics["t/pump1/state"]
>>> t.kind, sorted(t.leaves), t.ts_field.path, sorted(t.texts)
('json', ['metrics[name=temp].value', 'motor.rpm'], 'ts', ['mode'])
>>> heard.add("t/pump1/power", b"12.5", False, 0.1)
>>> heard.topics["t/pump1/power"].kind, heard.topics["t/pump1/power"].example
('number', 12.5)
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.mqtt.client import make_client
from connectors.mqtt.message_values import quality_of_field
from connectors.mqtt.payload import parse_plain, plain_text
from connectors.mqtt.routes import SPARKPLUG_NS
from operators.devices.timestamps import parse_device_ts
from operators.records.envelope import Rejected

KINDS = {
    "json": "JSON object",
    "json-array": "JSON array",
    "number": "plain number",
    "boolean": "boolean",
    "text": "text",
    "sparkplug": "Sparkplug B",
    "binary": "binary/other",
}
TS_NAMES = ("ts", "time", "timestamp")
QUALITY_NAMES = ("quality", "q")
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")  # a JSON key a mapping path can name (schema._SEGMENT)
_SELECTOR_VALUE = re.compile(r"^[^\]]+$")
_MAX_DEPTH = 8
_MAX_ITEMS = 32  # list elements looked at
_MAX_LEAVES = 200  # per topic
_MAX_TOPICS = 5000
MAX_DISTINCT = 10  # distinct texts kept per text field or plain text topic


class Unreachable(ConnectionError):
    """The broker cannot be reached, or refused the connection (one line, for the user)."""


@dataclass
class Distinct:
    """The distinct texts heard at one place: the first :data:`MAX_DISTINCT` (shortened), with counts."""

    seen: Counter = field(default_factory=Counter)
    more: bool = False  # further distinct texts were heard (not kept)

    def add(self, text: str) -> None:
        shown = _shown(text)
        if shown in self.seen or len(self.seen) < MAX_DISTINCT:
            self.seen[shown] += 1
        else:
            self.more = True

    def as_list(self) -> list[str]:
        return list(self.seen)


@dataclass
class Leaf:
    """A value at one path (a JSON leaf or a Sparkplug metric): seen how often, an example, and for a
    text its distinct values."""

    path: str
    example: Any
    count: int = 0
    datatype: int | None = None  # Sparkplug
    texts: Distinct = field(default_factory=Distinct)


@dataclass
class TsField:
    path: str
    example: Any
    usable: bool  # parse_device_ts reads it (ts_format auto)
    why: str = ""


@dataclass
class TopicSeen:
    topic: str
    count: int = 0
    retained: int = 0
    first: float = 0.0
    last: float = 0.0
    kinds: Counter = field(default_factory=Counter)
    example: Any = None  # a plain payload's value, or the text (shortened)
    plain_texts: Distinct = field(default_factory=Distinct)  # a plain text payload's distinct texts
    leaves: dict[str, Leaf] = field(default_factory=dict)  # numbers and booleans
    texts: dict[str, Leaf] = field(default_factory=dict)
    unaddressable: set[str] = field(default_factory=set)  # leaves a mapping path cannot name
    ts_field: TsField | None = None
    quality_field: Leaf | None = None
    sparkplug: tuple[str, str, str, str | None] | None = None  # (message type, group, node, device)
    aliases_unknown: set[int] = field(default_factory=set)  # Sparkplug data by alias before any birth

    @property
    def kind(self) -> str:
        return self.kinds.most_common(1)[0][0] if self.kinds else "binary"

    def as_json(self, seconds: float) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "topic": self.topic,
            "messages": self.count,
            "retained": self.retained,
            "rate_per_s": round(self.count / seconds, 3) if seconds > 0 else None,
            "payload": KINDS[self.kind],
        }
        if self.kind in ("number", "boolean", "text"):
            doc["example"] = self.example
        if self.kind == "text":
            doc["text_values"] = self.plain_texts.as_list()
            doc["more_text_values"] = self.plain_texts.more
        if self.leaves:
            doc["values"] = [{"path": v.path, "example": v.example} for v in self.leaves.values()]
        if self.texts:
            doc["texts"] = [
                {"path": v.path, "example": v.example, "values": v.texts.as_list(), "more_values": v.texts.more}
                for v in self.texts.values()
            ]
        if self.unaddressable:
            doc["unaddressable"] = sorted(self.unaddressable)
        if self.ts_field is not None:
            ts = self.ts_field
            doc["timestamp"] = {"path": ts.path, "example": ts.example, "usable": ts.usable, "why": ts.why or None}
        if self.quality_field is not None:
            doc["quality"] = {"path": self.quality_field.path, "example": self.quality_field.example}
        if self.sparkplug is not None:
            kind, group, node, device = self.sparkplug
            doc["sparkplug"] = {"message_type": kind, "group": group, "node": node, "device": device}
            if self.aliases_unknown:
                doc["sparkplug"]["unknown_aliases"] = sorted(self.aliases_unknown)
        return doc


def _shown(value: Any) -> Any:
    return value[:60] + "…" if isinstance(value, str) and len(value) > 60 else value


def _is_value(v: Any) -> bool:
    return isinstance(v, bool) or (isinstance(v, int | float) and v == v and v not in (float("inf"), float("-inf")))


def walk(doc: Any, prefix: str = "", depth: int = 0):
    """(path, value, addressable) of every scalar leaf of a JSON document, in the mapping's path syntax.

    >>> list(walk({"a": {"b": 1}, "m": [{"name": "t", "value": 2}], "x y": 3, "l": [4]}))
    [('a.b', 1, True), ('m[name=t].value', 2, True), ('x y', 3, False), ('l.0', 4, True)]
    """
    if depth > _MAX_DEPTH:
        return
    join = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    if isinstance(doc, dict):
        for k, v in doc.items():
            ok = bool(_KEY.match(k))
            if isinstance(v, dict | list):
                if ok:
                    yield from walk(v, join(k), depth + 1)
                else:
                    yield join(k), v, False
            else:
                yield join(k), v, ok
    elif isinstance(doc, list):
        names = [e.get("name") for e in doc[:_MAX_ITEMS] if isinstance(e, dict)]
        named = (
            len(names) == len(doc[:_MAX_ITEMS])
            and all(isinstance(n, str | int) and not isinstance(n, bool) for n in names)
            and len({str(n) for n in names}) == len(names)
            and all(_SELECTOR_VALUE.match(str(n)) for n in names)
        )
        head, _, key = prefix.rpartition(".")
        for i, v in enumerate(doc[:_MAX_ITEMS]):
            if named and prefix and "[" not in key:  # metrics[name=temp].value
                at = f"{head + '.' if head else ''}{key}[name={v['name']}]"
                rest = {k: x for k, x in v.items() if k != "name"}
                yield from walk(rest, at, depth + 1)
            elif isinstance(v, dict | list):
                yield from walk(v, join(str(i)), depth + 1)
            else:
                yield join(str(i)), v, True


class Heard:
    """What the listener received, per topic (thread-safe: paho's thread adds, the command reads)."""

    def __init__(self) -> None:
        self.topics: dict[str, TopicSeen] = {}
        self.messages = 0
        self.dropped_topics = 0
        self._lock = threading.Lock()
        # Sparkplug births: (group, node, device) → alias → (name, datatype)
        self.births: dict[tuple[str, str, str | None], dict[int, tuple[str, int | None]]] = {}

    def add(self, topic: str, payload: bytes, retained: bool, now: float) -> None:
        with self._lock:
            t = self.topics.get(topic)
            if t is None:
                if len(self.topics) >= _MAX_TOPICS:
                    self.dropped_topics += 1
                    return
                t = self.topics[topic] = TopicSeen(topic, first=now)
            self.messages += 1
            t.count += 1
            t.retained += retained
            t.last = now
            try:
                if topic.startswith(SPARKPLUG_NS + "/"):
                    self._sparkplug(t, payload)
                else:
                    self._payload(t, payload)
            except Exception:  # never the listener's end (the Sparkplug codec not compiled, a bug): counted
                t.kinds["binary"] += 1

    def _payload(self, t: TopicSeen, payload: bytes) -> None:
        plain = parse_plain(payload)
        if plain is not None:
            t.kinds["boolean" if isinstance(plain, bool) else "number"] += 1
            t.example = plain
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            t.kinds["binary"] += 1
            return
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict | list):
            printable = text.isprintable() or not text
            t.kinds["text" if printable else "binary"] += 1
            t.example = _shown(plain_text(payload) or "")
            if printable:
                t.plain_texts.add(t.example)
            return
        t.kinds["json" if isinstance(doc, dict) else "json-array"] += 1
        for path, value, addressable in walk(doc):
            if not addressable:
                t.unaddressable.add(path)
                continue
            last = path.rsplit(".", 1)[-1].lower()
            if last in TS_NAMES and (t.ts_field is None or t.ts_field.path == path) and "[" not in path:
                try:
                    parse_device_ts(value)
                    t.ts_field = TsField(path, value, True)
                except Rejected as exc:
                    t.ts_field = TsField(path, value, False, exc.detail)
                continue
            if last in QUALITY_NAMES and "[" not in path:
                with contextlib.suppress(Rejected):
                    quality_of_field(value)
                    t.quality_field = Leaf(path, value)
                    continue
            self._leaf(t, path, value)

    @staticmethod
    def _leaf(t: TopicSeen, path: str, value: Any, datatype: int | None = None) -> None:
        if _is_value(value):
            into = t.leaves
        elif isinstance(value, str):
            into = t.texts
        else:
            return  # null: says nothing about the type
        leaf = into.get(path)
        if leaf is None:
            if len(t.leaves) + len(t.texts) >= _MAX_LEAVES:
                return
            leaf = into[path] = Leaf(path, None, datatype=datatype)
            (t.texts if into is t.leaves else t.leaves).pop(path, None)
        leaf.count += 1
        leaf.example = _shown(value)
        if into is t.texts:
            leaf.texts.add(value)

    def _sparkplug(self, t: TopicSeen, payload: bytes) -> None:
        from connectors.sparkplug.codec import BadPayload, decode_payload
        from operators.devices.sparkplug_session import typed_value

        levels = t.topic.split("/")
        if len(levels) not in (4, 5) or levels[1] == "STATE":
            t.kinds["binary" if levels[1:2] != ["STATE"] else "text"] += 1
            return
        kind, group, node = levels[2], levels[1], levels[3]
        device = levels[4] if len(levels) == 5 else None
        try:
            _, _, metrics = decode_payload(payload)
        except BadPayload:
            t.kinds["binary"] += 1
            return
        t.kinds["sparkplug"] += 1
        t.sparkplug = (kind, group, node, device)
        born = self.births.setdefault((group, node, device), {})
        if kind in ("NBIRTH", "DBIRTH"):
            born.clear()
            for m in metrics:
                if m.alias is not None and m.name:
                    born[m.alias] = (m.name, m.datatype)
        for m in metrics:
            name, datatype = m.name, m.datatype
            if not name and m.alias is not None:
                if m.alias not in born:
                    t.aliases_unknown.add(m.alias)
                    continue
                name, known = born[m.alias]
                datatype = datatype or known
            if not name or m.is_null:
                continue
            self._leaf(t, name, typed_value(datatype, m.value), datatype)


def listen(
    host: str,
    port: int,
    filters: list[str],
    seconds: float,
    max_messages: int | None,
    stop: threading.Event,
    *,
    timeout: float = 5.0,
    **login: Any,
) -> tuple[Heard, float, list[str]]:
    """Subscribe to ``filters`` for ``seconds`` (or until ``max_messages``, or ``stop``): (what was
    heard, seconds listened, filters the broker refused). Read only: nothing is published; a clean
    session, so the broker keeps nothing for this client. :class:`Unreachable` when the broker
    cannot be reached within ``timeout`` or refuses the connection. ``login``: :func:`make_client`'s
    login and TLS arguments (:func:`connectors.mqtt.client.login_of` of the ``[mqtt]`` settings)."""
    client = make_client(f"twinflow-listen-{os.getpid()}-{uuid.uuid4().hex[:6]}", clean_session=True, **login)
    client.connect_timeout = timeout
    client.reconnect_delay_set(1, 2)
    heard = Heard()
    connected, subscribed, enough = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        outcome["connack"] = reason_code
        connected.set()
        if not reason_code.is_failure:
            client.subscribe([(f, 0) for f in filters])

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        outcome["refused"] = [f for f, rc in zip(filters, reason_codes, strict=False) if rc.is_failure]
        outcome["since"] = time.monotonic()
        subscribed.set()

    def on_message(client, userdata, msg) -> None:
        if msg.topic.startswith("$") or not subscribed.is_set():
            return  # $SYS and other broker topics are no devices
        heard.add(msg.topic, msg.payload, bool(msg.retain), time.monotonic())
        if max_messages is not None and heard.messages >= max_messages:
            enough.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    where = f"mqtt{'s' if login.get('tls') else ''}://{host}:{port}"
    try:
        client.connect(host, port, keepalive=30)
    except (TimeoutError, OSError) as exc:
        raise Unreachable(f"cannot connect to {where}: {_why(exc, timeout)}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise Unreachable(f"{where} accepted the connection but sent no CONNACK within {timeout:g} s")
        rc = outcome["connack"]
        if rc.is_failure:
            raise Unreachable(f"{where} refused the connection: {rc} (check mqtt.username/password)")
        if not subscribed.wait(timeout):
            raise Unreachable(f"{where} did not acknowledge the subscription within {timeout:g} s")
        deadline = outcome["since"] + seconds
        while not stop.is_set() and not enough.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            stop.wait(min(left, 0.2))
        listened = time.monotonic() - outcome["since"]
    finally:
        client.disconnect()
        client.loop_stop()
    return heard, listened, outcome.get("refused", [])


def _why(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, on that host and port?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    import socket
    import ssl

    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
