"""OPC-UA → Kafka bridge (asyncua client) with setpoint writes.

One subscription with the mapping's publishing interval; one monitored item per parameter with
its sampling interval and absolute deadband. Each value keeps the server's SourceTimestamp
(``ts``) and StatusCode (``quality``: good / uncertain / bad). Values of one twin with the same
timestamp and quality, arriving within ``bridge.batch_window_ms``, share one envelope.
On connection loss the bridge reconnects with exponential backoff and re-creates its
subscription and monitored items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from connectors.bridge import Bridge
from operators.commands import Refused
from twinflow.mapping import OpcuaAsset, OpcuaConnection

log = logging.getLogger(__name__)

_NUMERIC = {
    ua.VariantType.Double: float,
    ua.VariantType.Float: float,
    ua.VariantType.Int16: round,
    ua.VariantType.UInt16: round,
    ua.VariantType.Int32: round,
    ua.VariantType.UInt32: round,
    ua.VariantType.Int64: round,
    ua.VariantType.UInt64: round,
    ua.VariantType.Byte: round,
    ua.VariantType.SByte: round,
    ua.VariantType.Boolean: bool,
}


# StatusCode info bits (OPC-UA Part 4, 7.39): InfoType = DataValue (bit 10) with the Overflow bit (7): the
# server's queue for this monitored item was full and it discarded values before this one.
_OVERFLOW = 0x0400 | 0x0080


def overflowed(status: ua.StatusCode | None) -> bool:
    """True when the server says it discarded values of this item before this one (queue overflow).

    >>> overflowed(ua.StatusCode(0x0480)), overflowed(ua.StatusCode(0))
    (True, False)
    """
    return status is not None and status.value & _OVERFLOW == _OVERFLOW


def quality_of(status: ua.StatusCode | None) -> str:
    if status is None or status.is_good():
        return "good"
    return "uncertain" if status.is_uncertain() else "bad"


async def make_client(conn: OpcuaConnection, resolve) -> Client:
    """An asyncua client configured for the mapping's security mode and credentials."""
    client = Client(conn.endpoint, timeout=conn.request_timeout_s, watchdog_intervall=conn.watchdog_s)
    client.application_uri = conn.application_uri
    client.name = client.description = "twinflow bridge"
    if conn.security != "None":
        mode = ua.MessageSecurityMode.Sign if conn.security.endswith("_Sign") else ua.MessageSecurityMode.SignAndEncrypt
        server_cert = resolve(conn.server_certificate)
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(resolve(conn.certificate)),
            private_key=str(resolve(conn.private_key)),
            server_certificate=str(server_cert) if server_cert else None,
            mode=mode,
        )
    if conn.username:
        client.set_user(conn.username)
        client.set_password(conn.password.get_secret_value() if conn.password else "")
    return client


class OpcuaBridge(Bridge):
    protocol = "opcua"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = self.mapping.opcua
        self.client: Client | None = None
        # client handle → (twin_id, parameter)
        self.handles: dict[int, tuple[str, str]] = {}
        self.nodes: dict[tuple[str, str], str] = {
            (a.twin_id, n): p.node for a in self.assets for n, p in a.params.items()
        }
        self._types: dict[tuple[str, str], ua.VariantType] = {}
        self.reconnects = 0
        # Values the server reported as discarded (queue overflow), and the items already warned about.
        self.overflows = 0
        self._overflow_warned: set[tuple[str, str]] = set()

    def _requests(self, sub) -> list[ua.MonitoredItemCreateRequest]:
        reqs = []
        handle = 1000
        self.handles.clear()
        for a in self.assets:
            assert isinstance(a, OpcuaAsset)
            for name, p in a.params.items():
                handle += 1
                self.handles[handle] = (a.twin_id, name)
                deadband = self.conn.deadband if p.deadband is None else p.deadband
                mparams = ua.MonitoringParameters()
                mparams.ClientHandle = handle
                mparams.SamplingInterval = (
                    self.conn.sampling_interval_ms if p.sampling_interval_ms is None else p.sampling_interval_ms
                )
                mparams.QueueSize = self.conn.queue_size
                mparams.DiscardOldest = True
                if deadband > 0:
                    f = ua.DataChangeFilter()
                    f.Trigger = ua.DataChangeTrigger.StatusValue
                    f.DeadbandType = 1  # absolute
                    f.DeadbandValue = deadband
                    mparams.Filter = f
                rv = ua.ReadValueId()
                rv.NodeId = ua.NodeId.from_string(p.node)
                rv.AttributeId = ua.AttributeIds.Value
                req = ua.MonitoredItemCreateRequest()
                req.ItemToMonitor = rv
                req.MonitoringMode = ua.MonitoringMode.Reporting
                req.RequestedParameters = mparams
                reqs.append(req)
        return reqs

    async def _subscribe(self, client: Client):
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = self.conn.publishing_interval_ms
        params.RequestedLifetimeCount = 10000
        params.RequestedMaxKeepAliveCount = client.get_keepalive_count(self.conn.publishing_interval_ms)
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        # Iterator mode; a consumer too slow for the queue forces a reconnect, never a silent drop.
        sub = await client.create_subscription(params, queue_maxsize=500_000, overflow=OverflowPolicy.DISCONNECT)
        results = await sub.create_monitored_items(self._requests(sub))
        for (handle, key), res in zip(list(self.handles.items()), results, strict=True):
            if isinstance(res, ua.StatusCode):
                log.error(
                    "OPC-UA: cannot monitor %s (asset %r, field params.%s.node = %s): %s",
                    self.conn.endpoint,
                    key[0],
                    key[1],
                    self.nodes[key],
                    res.name,
                )
                self.handles.pop(handle)
        return sub

    async def run(self, stop: asyncio.Event) -> None:
        delays = self.delays()
        while not stop.is_set():
            lost = asyncio.Event()
            client = None
            try:
                client = await make_client(self.conn, self.mapping.path)

                async def on_lost(exc: Exception, lost: asyncio.Event = lost) -> None:
                    log.warning("OPC-UA connection to %s lost: %r", self.conn.endpoint, exc)
                    lost.set()

                client.connection_lost_callback = on_lost
                await client.connect()
                self.client = client
                sub = await self._subscribe(client)
                log.info("OPC-UA: subscribed %d items on %s", len(self.handles), self.conn.endpoint)
                self.connected.set()
                delays = self.delays()
                await self._consume(sub, stop, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("OPC-UA %s: %s: %s", self.conn.endpoint, type(exc).__name__, exc)
            finally:
                self.connected.clear()
                self.client = None
                self._types.clear()
                if client is not None:
                    with contextlib.suppress(Exception):  # best effort: the link may be gone
                        await asyncio.wait_for(client.disconnect(), 3)
            if not stop.is_set():
                self.reconnects += 1
                await self.sleep_or_stop(stop, next(delays))

    async def _consume(self, sub, stop: asyncio.Event, lost: asyncio.Event) -> None:
        """Group notifications into envelopes until ``stop`` or ``lost``; a bad subscription status ends it.

        Notifications are taken from the subscription without a per-item timeout (each
        ``wait_for`` would cost a task and a timer per value); a timer flushes the readings
        collected in the batch window instead.
        """
        window = self.settings.bridge.batch_window_ms / 1000
        loop = asyncio.get_running_loop()
        pending: dict[tuple[str, datetime, str], dict[str, Any]] = {}
        timer: asyncio.TimerHandle | None = None

        def flush() -> None:
            nonlocal timer, pending
            timer = None
            batch, pending = pending, {}  # taken first: an error while emitting never re-sends a batch
            for (twin, ts, quality), readings in batch.items():
                self.emit(twin, ts, readings, quality)

        async def receive() -> None:
            nonlocal timer
            handles = self.handles
            async for ev in sub:
                if isinstance(ev, StatusChangeEvent):
                    if not ev.notification.Status.is_good():
                        log.warning("OPC-UA subscription status %s; reconnecting", ev.notification.Status)
                        return
                    continue
                if not isinstance(ev, DataChangeEvent):
                    continue
                item = ev.data.monitored_item
                key = handles.get(item.ClientHandle)
                if key is None:
                    continue
                dv = item.Value
                if overflowed(dv.StatusCode):
                    self._overflow(key)
                ts = dv.SourceTimestamp or dv.ServerTimestamp or datetime.now(UTC)
                if ts.tzinfo is None:
                    ts = ts.replace(tzinfo=UTC)
                pending.setdefault((key[0], ts, quality_of(dv.StatusCode)), {})[key[1]] = ev.value
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
            raise ended[0]  # what broke the receiver; the caller reconnects

    def _overflow(self, key: tuple[str, str]) -> None:
        """The server lost values of ``key`` before they reached us: count it, and say so once per item."""
        self.overflows += 1
        if key not in self._overflow_warned:
            self._overflow_warned.add(key)
            log.warning(
                "OPC-UA server %s discarded values of %s.%s: its queue of %d values per item overflowed between "
                "two publish responses. Raise queue_size in the mapping's [opcua] section (or slow the sampling); "
                "the bridge counts these in `overflows`",
                self.conn.endpoint,
                key[0],
                key[1],
                self.conn.queue_size,
            )

    async def write(self, twin_id: str, parameter: str, value: float) -> None:
        client = self.client
        if client is None:
            raise ConnectionError(f"not connected to {self.conn.endpoint}")
        key = (twin_id, parameter)
        node: Node = client.get_node(self.nodes[key])
        vtype = self._types.get(key)
        if vtype is None:
            vtype = self._types[key] = await node.read_data_type_as_variant_type()
        cast = _NUMERIC.get(vtype)
        if cast is None:
            raise Refused(f"node {self.nodes[key]} has data type {vtype.name}, not a number")
        await node.write_value(ua.DataValue(ua.Variant(cast(value), vtype)))
