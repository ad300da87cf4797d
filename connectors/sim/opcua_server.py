"""The simulator's OPC-UA server (asyncua): one variable per mapped parameter, setpoints writable.

Values carry the simulation tick as SourceTimestamp and a StatusCode (Bad_SensorFailure for a
failed sensor). Security follows the mapping: None, or Basic256Sha256 Sign / SignAndEncrypt with
the server certificate/key and, when ``trusted_certificates`` is set, only client certificates
found in that folder (others are refused). ``username``/``password`` require that login.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from connectors.bridges.mapping.schema import Mapping, OpcuaAsset, OpcuaConnection
from connectors.sim.plant import Plant, Sample

log = logging.getLogger(__name__)

_POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
_BAD = ua.StatusCode(ua.StatusCodes.BadSensorFailure)
_UNCERTAIN = ua.StatusCode(ua.StatusCodes.UncertainSensorNotAccurate)
_GOOD = ua.StatusCode(ua.StatusCodes.Good)
_NO_COMMUNICATION = ua.StatusCode(ua.StatusCodes.BadNoCommunication)  # a gateway whose device is gone
# Writes between two returns to the event loop (≈ 10 ms of server work), so Publish requests are
# answered during a long tick.
_WRITES_PER_YIELD = 400


def _share_datavalues() -> None:
    """Skip asyncua's per-monitored-item deep copy of every written DataValue.

    The copy guards against callers mutating a DataValue after writing it; it costs about 70 % of
    the simulator's CPU. The simulator writes a fresh DataValue each time and never mutates it
    (nor do decoded client writes get mutated), so keeping the reference is safe here.
    """
    from asyncua.server.monitored_item_service import MonitoredItemValues

    def set_current_datavalue(self: MonitoredItemValues, cur_val: ua.DataValue) -> None:
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = cur_val

    MonitoredItemValues.set_current_datavalue = set_current_datavalue  # type: ignore[method-assign]


def _quick_variant_types() -> None:
    """Answer asyncua's Variant type guess for ``None`` and ``float`` without a failing Enum lookup.

    The server builds a default ``MonitoredItemNotification`` (holding ``Variant(None)``) for every
    change it reports; guessing that Variant's type first asks ``hasattr(VariantType, "NoneType")``,
    an Enum lookup that raises and costs about 3 µs per change. The answers are the ones asyncua's
    own guess gives (Null, Double); every other value goes to the original method.
    """
    guess = ua.Variant._guess_type
    if getattr(guess, "twinflow_quick", False):
        return

    def quick_guess(self: ua.Variant, val: object) -> ua.VariantType:
        if val is None:
            return ua.VariantType.Null
        if type(val) is float:
            return ua.VariantType.Double
        return guess(self, val)

    quick_guess.twinflow_quick = True  # type: ignore[attr-defined]
    quick_guess.original = guess  # type: ignore[attr-defined]
    ua.Variant._guess_type = quick_guess  # type: ignore[method-assign]


class _PasswordUsers:
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.username and password == self.password:
            return User(role=UserRole.User)
        return None


class SimOpcuaServer:
    """One OPC-UA server of the mapping (its section or a ``[devices.NAME]``) serving its assets.

    Parameters given by ``node`` are served under that NodeId (``nsu=`` ids in the device's
    ``namespace``); parameters given by ``browse_path`` as folders and a variable along that path."""

    def __init__(self, mapping: Mapping, conn: OpcuaConnection, assets: list[OpcuaAsset], plant: Plant) -> None:
        self.mapping = mapping
        self.conn = conn
        self.plant = plant
        self.assets = assets
        users = None
        if self.conn.username:
            pw = self.conn.password.get_secret_value() if self.conn.password else ""
            users = _PasswordUsers(self.conn.username, pw)
        self.server = Server(user_manager=users)
        # (twin, param) → NodeId
        self.nodes: dict[tuple[str, str], ua.NodeId] = {}
        self.setpoints: dict[tuple[str, str], float] = {}
        self.offline: dict[tuple[str, str], bool] = {}  # nodes reading BadNoCommunication (device_offline)
        self.writes = 0

    def _path(self, p: Path | None, what: str) -> str:
        resolved = self.mapping.path(p)
        if resolved is None or not resolved.exists():
            raise FileNotFoundError(
                f"{self.mapping.source}: [opcua] {what} = {p!s} not found; security "
                f"{self.conn.security!r} needs it (generate with `twinflow certs opcua`)"
            )
        return str(resolved)

    async def start(self, at: datetime | None = None) -> None:
        """Serve the assets' variables, holding the plant's values at start stamped ``at`` (the
        simulator's last tick before it: a client's first notification carries a tick, as every later
        one does; None: the server's clock)."""
        _share_datavalues()
        _quick_variant_types()
        s = self.server
        await s.init()
        s.set_endpoint(self.conn.endpoint)
        s.set_server_name("twinflow plant simulator")
        await s.set_application_uri("urn:twinflow:simulator")
        s.set_security_policy([_POLICIES[self.conn.security]])
        if self.conn.security != "None":
            await s.load_certificate(self._path(self.conn.server_certificate, "server_certificate"))
            await s.load_private_key(self._path(self.conn.server_private_key, "server_private_key"))
            if self.conn.trusted_certificates is not None:
                store = TrustStore([Path(self._path(self.conn.trusted_certificates, "trusted_certificates"))], [])
                await store.load()
                validator = CertificateValidator(
                    CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT,
                    store,
                )
                s.set_certificate_validator(validator.validate)
        if self.conn.username:
            s.set_identity_tokens([ua.UserNameIdentityToken])
        idx = await s.register_namespace(self.conn.namespace)
        objects = s.nodes.objects
        initial = self.plant.step(0.0)  # a sample of the plant as it starts (no time passes)
        now = datetime.now(UTC)
        stamp = at or now
        folders: dict[tuple[str, ...], object] = {}
        for a in self.assets:
            folder = await objects.add_object(ua.NodeId(f"{a.twin_id}", idx), a.twin_id)
            for name, p in a.params.items():
                parent, browse_name = folder, name
                if p.browse_path is not None:
                    parent = objects
                    for depth, seg in enumerate(p.browse_path[:-1]):
                        key = tuple(p.browse_path[: depth + 1])
                        if key not in folders:
                            folders[key] = await parent.add_folder(idx, seg.rpartition(";")[2].rpartition(":")[2])
                        parent = folders[key]
                    # in the namespace, as the bridge resolves the path (a plain str would be ns 0)
                    browse_name = ua.QualifiedName(p.browse_path[-1].rpartition(";")[2].rpartition(":")[2], idx)
                    nodeid = ua.NodeId(f"{a.twin_id}.{name}", idx)
                else:
                    nodeid = ua.NodeId.from_string(p.node)
                    if isinstance(nodeid, ua.ExpandedNodeId) and nodeid.NamespaceUri:
                        nodeid = ua.NodeId(nodeid.Identifier, idx, nodeid.NodeIdType)
                var = await parent.add_variable(nodeid, browse_name, ua.Variant(0.0, ua.VariantType.Double))
                if p.writable:
                    await var.set_writable()
                self.nodes[(a.twin_id, name)] = nodeid
                value = self.plant.setpoint(a.twin_id, name)
                if value is not None:
                    self.setpoints[(a.twin_id, name)] = value
                else:  # the plant's state at start, not 0.0 (a client's first notification is real)
                    value = initial[a.twin_id].values[name]
                dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=stamp, ServerTimestamp=now)
                await s.write_attribute_value(nodeid, dv)
        await s.start()
        log.info("OPC-UA server on %s (%s), %d variables", self.conn.endpoint, self.conn.security, len(self.nodes))

    def poll_writes(self) -> None:
        """Apply setpoints written by clients since the last tick."""
        for key, last in self.setpoints.items():
            dv = self.server.read_attribute_value(self.nodes[key])
            value = dv.Value.Value if dv.Value is not None else None
            if isinstance(value, int | float) and value != last:
                self.plant.set(key[0], key[1], float(value))
                # The written value, not the one the plant took: when the plant clamped it, the
                # next publish writes the clamped value back to the node, as a real device reports
                # the setpoint it runs at (a read-back never shows a value the machine refused).
                self.setpoints[key] = float(value)
                self.writes += 1
                log.info("OPC-UA write %s.%s = %s", key[0], key[1], value)

    async def publish(self, samples: dict[str, Sample], ts: datetime, now: datetime) -> int:
        n = 0
        write = self.server.write_attribute_value
        for a in self.assets:
            sample = samples[a.twin_id]
            if sample.offline or self.offline:
                n += await self._offline(a, sample.offline, ts)
                if sample.offline:
                    continue
            for name in a.params:
                key = (a.twin_id, name)
                if key in self.setpoints:
                    continue  # setpoints change only by writes
                q = sample.quality.get(name)
                status = _GOOD if q is None else _BAD if q == "bad" else _UNCERTAIN
                dv = ua.DataValue(
                    ua.Variant(float(sample.values[name]), ua.VariantType.Double),
                    StatusCode=status,
                    SourceTimestamp=ts,
                    ServerTimestamp=now,
                )
                await write(self.nodes[key], dv)
                n += 1
                if n % _WRITES_PER_YIELD == 0:
                    await asyncio.sleep(0)  # a tick of thousands of writes must not hold off the clients
        for key in self.setpoints:
            if key in self.offline:
                continue  # reads BadNoCommunication until the device is back
            sp = self.plant.setpoint(*key)
            if sp is not None and sp != self.setpoints[key]:
                self.setpoints[key] = sp
                await write(self.nodes[key], ua.DataValue(ua.Variant(sp, ua.VariantType.Double)))
        return n

    async def _offline(self, asset: OpcuaAsset, offline: bool, ts: datetime) -> int:
        """A device_offline fault: the asset's nodes read BadNoCommunication once (as a gateway reports
        it); after it, its setpoints read their value again (the other nodes get theirs by ``publish``)."""
        write, n = self.server.write_attribute_value, 0
        for name in asset.params:
            key = (asset.twin_id, name)
            if offline and key not in self.offline:
                self.offline[key] = True
                await write(self.nodes[key], ua.DataValue(StatusCode=_NO_COMMUNICATION, SourceTimestamp=ts))
                n += 1
            elif not offline and self.offline.pop(key, False) and key in self.setpoints:
                await write(self.nodes[key], ua.DataValue(ua.Variant(self.setpoints[key], ua.VariantType.Double)))
                n += 1
        return n

    async def stop(self) -> None:
        await self.server.stop()
