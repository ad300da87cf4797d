"""The mapped MQTT bridge's Sparkplug B side: births, data and deaths into envelopes; rebirths; commands.

Sparkplug B assets (``sparkplug = {group, node, device}``) are read from ``spBv1.0/…`` topics:
births define names, datatypes and aliases, data may use aliases, a sequence gap or an unknown
alias triggers a rebirth request (at most one per edge node in 5 s), and births/deaths set the
twin's ``online`` reading (:mod:`operators.devices.sparkplug_session`). Commands are DCMD/NCMD
messages with the metric's datatype from the current birth certificate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from connectors.bridges.base import Device
from connectors.bridges.mapping.schema import MqttAsset
from connectors.mqtt.routes import SPARKPLUG_NS, sparkplug_twins
from operators.devices.sparkplug_session import EdgeSessions, Online, Rebirth, Unreadable, Values
from operators.records.commands import Refused
from operators.records.envelope import Reason, quality_of_status

log = logging.getLogger(__name__)

_REBIRTH_EVERY_S = 5.0


class SparkplugEdges:
    """The edge nodes' sessions behind one bridge; values go out through ``emit``, what cannot be read
    through ``reject`` (the bridge's :meth:`~connectors.bridges.base.Bridge.emit` and ``reject``)."""

    def __init__(self, emit: Callable[..., Any], reject: Callable[..., Any]) -> None:
        self.sessions = EdgeSessions()
        self._emit = emit
        self._reject = reject
        self._rebirth_sent: dict[tuple[str, str], float] = {}

    def on_message(self, assets: list[MqttAsset], device: Device, client: Any, topic: str, payload: bytes) -> None:
        """One ``spBv1.0/…`` message received from the broker ``client`` serving ``device``."""
        from connectors.sparkplug.codec import BadPayload, decode_payload

        levels = topic.split("/")
        if len(levels) not in (4, 5) or levels[2] in ("STATE", "NCMD", "DCMD"):
            return
        group, kind, node = levels[1], levels[2], levels[3]
        edge_device = levels[4] if len(levels) == 5 else None
        try:
            ts_ms, seq, metrics = decode_payload(payload)
        except BadPayload as exc:
            self._reject(
                None, payload, Reason.SCHEMA.value, f"{topic}: {exc}", headers=[("mqtt.topic", topic.encode())]
            )
            return
        for action in self.sessions.handle(group, kind, node, edge_device, seq, metrics, ts_ms):
            if isinstance(action, Values):
                self._values(assets, device, action, topic, payload)
            elif isinstance(action, Online):
                for twin, _ in sparkplug_twins(assets, action.group, action.node, action.device):
                    ts = datetime.fromtimestamp(action.ts_ms / 1000, UTC) if action.ts_ms else datetime.now(UTC)
                    self._emit(twin, ts, {"online": action.online})
                    log.info("Sparkplug %s/%s/%s: twin %s %s", group, node, action.device or "-", twin,
                             "online" if action.online else "OFFLINE")  # fmt: skip
            elif isinstance(action, Rebirth):
                self._request_rebirth(device, client, action)
            elif isinstance(action, Unreadable):
                field_ = f"metrics.{action.metric}"
                self._reject(None, payload, Reason.SCHEMA.value, f"{field_}: {action.reason}", field=field_,
                             headers=[("mqtt.topic", topic.encode())])  # fmt: skip

    def _values(self, assets: list[MqttAsset], device: Device, v: Values, topic: str, payload: bytes) -> None:
        for twin, a in sparkplug_twins(assets, v.group, v.node, v.device):
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
                        self._reject(twin, payload, Reason.SCHEMA.value,
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
                self._emit(twin, ts, readings, quality if st else "good", st, text or None)
                device.health.got(len(readings) + len(text))

    def _request_rebirth(self, device: Device, client: Any, r: Rebirth) -> None:
        from connectors.sparkplug.codec import encode_payload
        from operators.devices.sparkplug_session import BOOLEAN, REBIRTH_METRIC

        now = time.monotonic()
        if now - self._rebirth_sent.get((r.group, r.node), -1e9) < _REBIRTH_EVERY_S:
            return
        self._rebirth_sent[(r.group, r.node)] = now
        log.warning("Sparkplug %s/%s: %s; requesting a rebirth", r.group, r.node, r.reason)
        device.health.error(f"{r.group}/{r.node}: {r.reason}")
        body = encode_payload([(REBIRTH_METRIC, BOOLEAN, True)], seq=None, ts_ms=int(time.time() * 1000))
        client.publish(f"{SPARKPLUG_NS}/{r.group}/NCMD/{r.node}", body, qos=0)

    def command(self, a: MqttAsset, vars_: dict[str, str], parameter: str, value: Any) -> tuple[str, bytes]:
        """(topic, payload) of a DCMD/NCMD setting ``parameter`` of a Sparkplug asset."""
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
