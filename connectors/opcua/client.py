"""An asyncua client for one OPC-UA device: security, credentials, its subscription and monitored items.

One subscription per device with the device's publishing interval; one monitored item per parameter
with the parameter's (or the device's) sampling interval and absolute deadband, and a server-side
queue of ``queue_size`` values that discards the oldest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable
from pathlib import Path
from typing import TypeVar

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from connectors.bridges.mapping.schema import OpcuaConnection, OpcuaParam

Key = TypeVar("Key", bound=Hashable)
FIRST_HANDLE = 1001


async def make_client(conn: OpcuaConnection, resolve: Callable[[Path | None], Path | None]) -> Client:
    """An asyncua client configured for the mapping's security mode and credentials (``resolve``: a
    path of the mapping file → the file)."""
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


class Unreachable(ConnectionError):
    """The server could not be reached, refused the session or did not answer in time."""


@contextlib.asynccontextmanager
async def connected(
    conn: OpcuaConnection, resolve: Callable[[Path | None], Path | None], timeout: float
) -> AsyncIterator[Client]:
    """A client (:func:`make_client`) connected within ``timeout`` seconds, disconnected at the end;
    :class:`Unreachable` names the endpoint and the reason when the connection fails."""
    client = None
    try:
        client = await make_client(conn, resolve)
        await asyncio.wait_for(client.connect(), timeout)
    except Exception as exc:
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect_socket()
        raise Unreachable(f"cannot connect to {conn.endpoint}: {_reason(exc, timeout)}") from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):  # best effort: the link may be gone
            await asyncio.wait_for(client.disconnect(), 3)


def _reason(exc: BaseException, timeout: float) -> str:
    """Why a connection failed, in one line."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s (not an OPC-UA server, a wrong host or port, or a firewall?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, on that host and port?)"
    if isinstance(exc, ua.UaStatusCodeError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc) or type(exc).__name__
    if "No matching endpoints" in text:  # the server offers no endpoint with this security mode
        return f"{text} (the server wants another security mode: set `security` and the certificates)"
    return text


def subscription_parameters(conn: OpcuaConnection, client: Client) -> ua.CreateSubscriptionParameters:
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = conn.publishing_interval_ms
    params.RequestedLifetimeCount = 10000
    params.RequestedMaxKeepAliveCount = client.get_keepalive_count(conn.publishing_interval_ms)
    params.MaxNotificationsPerPublish = 0  # no limit
    params.PublishingEnabled = True
    params.Priority = 0
    return params


def monitored_items(
    conn: OpcuaConnection, nodes: dict[Key, ua.NodeId], params: dict[Key, OpcuaParam]
) -> tuple[dict[int, Key], list[ua.MonitoredItemCreateRequest]]:
    """(client handle → parameter, the create requests in the same order) of the resolved nodes."""
    handles: dict[int, Key] = {}
    reqs = []
    for handle, (key, nodeid) in enumerate(nodes.items(), FIRST_HANDLE):
        p = params[key]
        handles[handle] = key
        deadband = conn.deadband if p.deadband is None else p.deadband
        mparams = ua.MonitoringParameters()
        mparams.ClientHandle = handle
        mparams.SamplingInterval = (
            conn.sampling_interval_ms if p.sampling_interval_ms is None else p.sampling_interval_ms
        )
        mparams.QueueSize = conn.queue_size
        mparams.DiscardOldest = True
        if deadband > 0:
            f = ua.DataChangeFilter()
            f.Trigger = ua.DataChangeTrigger.StatusValue
            f.DeadbandType = 1  # absolute
            f.DeadbandValue = deadband
            mparams.Filter = f
        rv = ua.ReadValueId()
        rv.NodeId = nodeid
        rv.AttributeId = ua.AttributeIds.Value
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = rv
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = mparams
        reqs.append(req)
    return handles, reqs
