"""OPC-UA → Kafka bridge (asyncua client) with setpoint writes.

Every device (an OPC-UA server: its ``[opcua]`` section or a ``[devices.NAME]`` table) gets its own
client, one subscription with the device's publishing interval and one monitored item per
parameter (:mod:`connectors.opcua.client`). Nodes are resolved on every (re)connect
(:mod:`connectors.opcua.nodes`); an item that cannot be resolved or monitored is logged with device,
twin, parameter and node, counted, and left out while the others are read (retried at the next
reconnect).

Each value keeps the server's SourceTimestamp (``ts``) and StatusCode (:mod:`connectors.opcua.values`):
a Good value is a reading; a Bad or Uncertain one is a reading of quality bad/uncertain with the
status code name (``status``), with or without a value (``BadSensorFailure`` carries none). Booleans
stay booleans, strings become text readings; other types (arrays, dates, structures) are
dead-lettered one by one with a description. Values of one twin with the same timestamp and quality,
arriving within ``bridge.batch_window_ms``, share one envelope. On connection loss the device
reconnects with exponential backoff and re-creates its subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent

from connectors.bridges.base import Bridge, Device
from connectors.bridges.mapping.schema import OpcuaAsset, OpcuaConnection, OpcuaParam
from connectors.opcua.client import make_client, monitored_items, subscription_parameters
from connectors.opcua.nodes import resolve_nodes
from connectors.opcua.values import REFUSING_WRITE, WRITE_CASTS, overflowed, quality_of, status_name, write_value
from operators.records.commands import Refused
from operators.records.envelope import Reason

log = logging.getLogger(__name__)


class _Session:
    """What one device's connection knows: resolved nodes, monitored handles, data types."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.conn: OpcuaConnection = device.conn
        self.params: dict[tuple[str, str], OpcuaParam] = {
            (a.twin_id, n): p for a in device.assets if isinstance(a, OpcuaAsset) for n, p in a.params.items()
        }
        self.client: Client | None = None
        self.nodes: dict[tuple[str, str], ua.NodeId] = {}
        self.handles: dict[int, tuple[str, str]] = {}
        self.types: dict[tuple[str, str], ua.VariantType] = {}
        self.overflow_warned: set[tuple[str, str]] = set()

    def where(self, key: tuple[str, str]) -> str:
        p = self.params[key]
        node = p.node if p.node is not None else "/".join(p.browse_path or ())
        return f"{key[0]}.{key[1]} (node {node})"


class OpcuaBridge(Bridge):
    protocol = "opcua"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions = {name: _Session(d) for name, d in self.devices.items()}
        self.reconnects = 0
        # Values the server reported as discarded (queue overflow).
        self.overflows = 0

    @staticmethod
    def address_of(conn: Any) -> str:
        return conn.endpoint

    # ------------------------------------------------------------------ nodes and subscription
    async def _resolve(self, s: _Session, client: Client) -> None:
        """NodeIds of every parameter as this server numbers them; failures are logged per item."""
        s.nodes.clear()
        nodes, failed = await resolve_nodes(client, s.params, s.conn.namespace)
        s.nodes.update(nodes)
        for key, reason in failed:
            self._item_failed(s, key, reason)

    def _item_failed(self, s: _Session, key: tuple[str, str], reason: str) -> None:
        if s.device.health.item_error(f"{key[0]}.{key[1]}", reason):
            log.error("OPC-UA %s (%s): %s: %s", s.device.name, s.conn.endpoint, s.where(key), reason)

    async def _subscribe(self, s: _Session, client: Client):
        # Iterator mode; a consumer too slow for the queue forces a reconnect, never a silent drop.
        sub = await client.create_subscription(
            subscription_parameters(s.conn, client), queue_maxsize=500_000, overflow=OverflowPolicy.DISCONNECT
        )
        handles, requests = monitored_items(s.conn, s.nodes, s.params)
        s.handles.clear()
        s.handles.update(handles)
        results = await sub.create_monitored_items(requests) if requests else []
        for (handle, key), res in zip(list(s.handles.items()), results, strict=True):
            if isinstance(res, ua.StatusCode):
                self._item_failed(s, key, f"cannot monitor: {res.name}")
                s.handles.pop(handle)
            elif s.device.health.item_ok(f"{key[0]}.{key[1]}"):
                log.info("OPC-UA %s: %s is monitored again", s.device.name, s.where(key))
        return sub

    # ------------------------------------------------------------------ reading
    async def serve(self, device: Device, stop: asyncio.Event) -> None:
        s = self.sessions[device.name]
        lost = asyncio.Event()
        client = await make_client(s.conn, self.mapping.path)

        async def on_lost(exc: Exception) -> None:
            log.warning("OPC-UA %s: connection to %s lost: %r", device.name, s.conn.endpoint, exc)
            lost.set()

        client.connection_lost_callback = on_lost
        try:
            await client.connect()
            s.client = client
            await self._resolve(s, client)
            sub = await self._subscribe(s, client)
            log.info(
                "OPC-UA %s: subscribed %d of %d items on %s",
                device.name, len(s.handles), len(s.params), s.conn.endpoint,
            )  # fmt: skip
            self.device_up(device)
            await self._consume(s, sub, stop, lost)
        finally:
            s.client = None
            s.types.clear()
            self.reconnects += 1
            with contextlib.suppress(Exception):  # best effort: the link may be gone
                await asyncio.wait_for(client.disconnect(), 3)

    async def _consume(self, s: _Session, sub, stop: asyncio.Event, lost: asyncio.Event) -> None:
        """Group notifications into envelopes until ``stop`` or ``lost``; a bad subscription status ends it.

        Notifications are taken from the subscription without a per-item timeout (each
        ``wait_for`` would cost a task and a timer per value); a timer flushes the readings
        collected in the batch window instead.
        """
        window = self.settings.bridge.batch_window_ms / 1000
        loop = asyncio.get_running_loop()
        # (twin, ts, quality) → (readings, status names, texts)
        pending: dict[tuple[str, datetime, str], tuple[dict[str, Any], dict[str, str], dict[str, str]]] = {}
        timer: asyncio.TimerHandle | None = None
        health = s.device.health

        def flush() -> None:
            nonlocal timer, pending
            timer = None
            batch, pending = pending, {}  # taken first: an error while emitting never re-sends a batch
            n = 0
            for (twin, ts, quality), (readings, status, text) in batch.items():
                if not readings and not text:  # its values were dead-lettered
                    continue
                self.emit(twin, ts, readings, quality, status or None, text or None)
                n += len(readings) + len(text)
            if n:
                health.got(n)

        async def receive() -> None:
            nonlocal timer
            handles = s.handles
            async for ev in sub:
                if isinstance(ev, StatusChangeEvent):
                    if not ev.notification.Status.is_good():
                        log.warning(
                            "OPC-UA %s: subscription status %s; reconnecting", s.device.name, ev.notification.Status
                        )
                        return
                    continue
                if not isinstance(ev, DataChangeEvent):
                    continue
                item = ev.data.monitored_item
                key = handles.get(item.ClientHandle)
                if key is None:
                    continue
                dv = item.Value
                st = dv.StatusCode
                if st is not None and st.value and overflowed(st):
                    self._overflow(s, key)
                ts = dv.SourceTimestamp or dv.ServerTimestamp or datetime.now(UTC)
                if ts.tzinfo is None:
                    ts = ts.replace(tzinfo=UTC)
                quality = "good" if st is None or (st.value & 0xC0000000) == 0 else quality_of(st)
                value = ev.value
                cls = value.__class__
                entry = pending.get((key[0], ts, quality))
                if entry is None:
                    entry = pending[(key[0], ts, quality)] = ({}, {}, {})
                if quality != "good":
                    entry[1][key[1]] = status_name(st)
                if cls is float or cls is bool:
                    if cls is float and not math.isfinite(value):
                        self._reject(s, key, dv, f"{value} is not a finite number")
                        continue
                    entry[0][key[1]] = value
                elif cls is int:
                    entry[0][key[1]] = float(value)
                elif value is None:
                    if quality == "good":  # no value and no bad status: nothing to store
                        self._reject(s, key, dv, "no value although the status is Good")
                        continue
                    entry[0][key[1]] = None
                elif cls is str:
                    entry[2][key[1]] = value
                elif isinstance(value, ua.LocalizedText):
                    entry[2][key[1]] = value.Text or ""
                else:
                    self._reject(s, key, dv, f"{dv.Value.VariantType.name} values are not readings")
                    if quality != "good":  # the status still tells something: keep it without the value
                        entry[0][key[1]] = None
                    continue
                if timer is None:
                    timer = loop.call_later(window, flush)

        receiver = asyncio.create_task(receive())
        watchers = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
        try:
            await asyncio.wait([receiver, *watchers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receiver, *watchers):
                task.cancel()
            ended = await asyncio.gather(receiver, *watchers, return_exceptions=True)
            if timer is not None:
                timer.cancel()
            flush()
        if isinstance(ended[0], Exception):
            raise ended[0]  # what broke the receiver; the device loop reconnects

    def _reject(self, s: _Session, key: tuple[str, str], dv: ua.DataValue, why: str) -> None:
        """A value that is no reading: dead-lettered with a description of the DataValue."""
        p = s.params[key]
        variant = dv.Value
        body = {
            "endpoint": s.conn.endpoint,
            "node": p.node or p.browse_path,
            "variant_type": variant.VariantType.name if variant is not None else None,
            "value": repr(variant.Value if variant is not None else None)[:2000],
            "status": status_name(dv.StatusCode) if dv.StatusCode is not None else "Good",
            "source_timestamp": dv.SourceTimestamp.isoformat() if dv.SourceTimestamp else None,
        }
        field = f"readings.{key[1]}"
        self.reject(
            key[0], orjson.dumps(body), Reason.SCHEMA.value, f"{field}: {why} ({s.where(key)})", field=field,
            headers=[("opcua.endpoint", s.conn.endpoint.encode())],
        )  # fmt: skip
        s.device.health.item_error(f"{key[0]}.{key[1]}", why)

    def _overflow(self, s: _Session, key: tuple[str, str]) -> None:
        """The server lost values of ``key`` before they reached us: count it, and say so once per item."""
        self.overflows += 1
        if key not in s.overflow_warned:
            s.overflow_warned.add(key)
            log.warning(
                "OPC-UA server %s discarded values of %s.%s: its queue of %d values per item overflowed between "
                "two publish responses. Raise queue_size in the device's section (or slow the sampling); "
                "the bridge counts these in `overflows`",
                s.conn.endpoint,
                key[0],
                key[1],
                s.conn.queue_size,
            )

    # ------------------------------------------------------------------ writing
    async def write(self, twin_id: str, parameter: str, value: float | bool, command_id: str = "") -> None:
        s = self.sessions[self.device_of_twin[twin_id].name]
        client = s.client
        if client is None:
            raise ConnectionError(f"not connected to {s.conn.endpoint} ({s.device.name})")
        key = (twin_id, parameter)
        nodeid = s.nodes.get(key)
        if nodeid is None:
            raise Refused(
                f"node of {s.where(key)} is not on the server: {s.device.health.failing.get(f'{twin_id}.{parameter}')}"
            )
        node: Node = client.get_node(nodeid)
        vtype = s.types.get(key)
        if vtype is None:
            vtype = s.types[key] = await node.read_data_type_as_variant_type()
        if vtype not in WRITE_CASTS:
            raise Refused(f"node {s.where(key)} has data type {vtype.name}, not a number or boolean")
        try:
            typed = write_value(vtype, value)
        except ValueError as exc:
            raise Refused(f"{s.where(key)} is {vtype.name}: cannot take {value}: {exc}") from None
        try:
            await node.write_value(ua.DataValue(ua.Variant(typed, vtype)))
        except ua.UaStatusCodeError as exc:
            name = status_name(ua.StatusCode(exc.code))
            if name in REFUSING_WRITE:
                raise Refused(f"{s.where(key)} ({vtype.name}): the server refuses {value}: {name}") from None
            raise
