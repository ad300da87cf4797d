"""Per-device health of a bridge: counters the device loops keep, a log summary, and an HTTP endpoint
with Prometheus metrics (``/metrics``) and a JSON health report (``/health``: 200 when at least one
device is connected, 503 otherwise), e.g. ``twinflow bridge modbus --mapping line.toml --metrics-port 9464``.

Nothing is computed per value: the device loops bump plain integers; the metrics are read from them
when scraped.

>>> h = DeviceHealth("plc-1", "modbus", "10.0.0.5:502")
>>> h.up(); h.got(3, 1000.0); h.item_error("pump.temp", "short response"); h.item_error("pump.temp", "short response")
True
False
>>> h.snapshot(now=1010.0)["errors"], h.snapshot(now=1010.0)["last_value_age_s"]
(2, 10.0)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)


@dataclass
class DeviceHealth:
    """One device (an OPC-UA server, a Modbus host, an MQTT broker) of a bridge."""

    name: str
    protocol: str
    address: str
    connected: bool = False
    connected_since: float | None = None
    last_value_at: float | None = None
    values: int = 0
    errors: int = 0
    reconnects: int = 0
    last_error: str = ""
    # item (twin.parameter) → the error last logged for it, so a failing item is logged once, not per poll.
    failing: dict[str, str] = field(default_factory=dict)

    def up(self) -> None:
        self.connected, self.connected_since = True, time.time()

    def down(self, reason: str | None = None) -> None:
        if reason is not None:
            self.error(reason)
        self.connected, self.connected_since = False, None

    def got(self, n: int, now: float | None = None) -> None:
        self.values += n
        self.last_value_at = now or time.time()

    def error(self, reason: str) -> None:
        self.errors += 1
        self.last_error = reason[:500]

    def item_error(self, item: str, reason: str) -> bool:
        """Count an error of one item; True when it is new for that item (log it then)."""
        self.error(f"{item}: {reason}")
        if self.failing.get(item) == reason:
            return False
        self.failing[item] = reason
        return True

    def item_ok(self, item: str) -> bool:
        """The item reads again; True when it had been failing (log the recovery then)."""
        return self.failing.pop(item, None) is not None

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = now or time.time()
        return {
            "device": self.name,
            "protocol": self.protocol,
            "address": self.address,
            "connected": self.connected,
            "values": self.values,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "last_value_age_s": None if self.last_value_at is None else round(now - self.last_value_at, 3),
            "last_error": self.last_error,
            "failing_items": sorted(self.failing),
        }

    def summary(self) -> str:
        s = self.snapshot()
        age = "never" if s["last_value_age_s"] is None else f"{s['last_value_age_s']:.1f} s ago"
        state = "connected" if self.connected else "DOWN"
        text = f"{self.name} ({self.address}) {state}, {self.values} values, last {age}, {self.errors} errors"
        if not self.connected and self.last_error:
            text += f", last error: {self.last_error}"
        if self.failing:
            text += f", failing items: {', '.join(sorted(self.failing)[:5])}"
        return text


class _Collector:
    def __init__(self, bridge: str, devices: Callable[[], Iterable[DeviceHealth]]) -> None:
        self.bridge = bridge
        self.devices = devices

    def collect(self):
        labels = ["bridge", "device", "protocol", "address"]
        up = GaugeMetricFamily("twinflow_bridge_device_connected", "1 when the device is connected", labels=labels)
        values = CounterMetricFamily("twinflow_bridge_device_values", "values read from the device", labels=labels)
        errors = CounterMetricFamily(
            "twinflow_bridge_device_errors", "errors of the device and its items", labels=labels
        )
        recon = CounterMetricFamily(
            "twinflow_bridge_device_reconnects", "connection attempts after a loss", labels=labels
        )
        last = GaugeMetricFamily(
            "twinflow_bridge_device_last_value_timestamp_seconds", "unix time of the last value", labels=labels
        )
        failing = GaugeMetricFamily("twinflow_bridge_device_failing_items", "items failing now", labels=labels)
        devices = list(self.devices())
        for d in devices:
            lv = [self.bridge, d.name, d.protocol, d.address]
            up.add_metric(lv, 1.0 if d.connected else 0.0)
            values.add_metric(lv, d.values)
            errors.add_metric(lv, d.errors)
            recon.add_metric(lv, d.reconnects)
            failing.add_metric(lv, len(d.failing))
            if d.last_value_at is not None:
                last.add_metric(lv, d.last_value_at)
        healthy = GaugeMetricFamily("twinflow_bridge_up", "1 when at least one device is connected", labels=["bridge"])
        healthy.add_metric([self.bridge], 1.0 if any(d.connected for d in devices) else 0.0)
        yield from (up, values, errors, recon, last, failing, healthy)


class HealthServer:
    """``/metrics`` (Prometheus text format) and ``/health`` (JSON) on 127.0.0.1 or ``host``."""

    def __init__(self, bridge: str, devices: Callable[[], Iterable[DeviceHealth]], port: int, host: str = "127.0.0.1"):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(bridge, devices))  # type: ignore[arg-type]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, status, ctype = generate_latest(registry), 200, "text/plain; version=0.0.4"
                elif self.path.startswith("/health"):
                    devs = [d.snapshot() for d in devices()]
                    ok = any(d["connected"] for d in devs)
                    body = orjson.dumps({"bridge": bridge, "healthy": ok, "devices": devs})
                    status, ctype = (200 if ok else 503), "application/json"
                else:
                    body, status, ctype = b"not found: try /metrics or /health\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # scrapes are not news
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="bridge-health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("bridge health on http://%s:%d/health and /metrics", *self.server.server_address[:2])
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
