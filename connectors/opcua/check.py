"""Check a mapping's OPC-UA nodes on the live server: each exists, is readable, and is writable where the
mapping says ``writable = true`` (with a data type the bridge can write).

Nodes are resolved the way the bridge resolves them (:func:`connectors.opcua.nodes.resolve_nodes`).
"""

from __future__ import annotations

from asyncua import Client, ua

from connectors.bridges.check import DeviceCheck
from connectors.bridges.mapping.schema import OpcuaAsset, OpcuaParam
from connectors.opcua.nodes import resolve_nodes
from connectors.opcua.values import WRITE_CASTS, status_name

_BATCH = 100  # nodes per Read request (three attributes each)
_MISSING = ("BadNodeIdUnknown", "BadNodeIdInvalid", "BadAttributeIdInvalid")
_CURRENT_READ = ua.AccessLevel.CurrentRead.mask
_CURRENT_WRITE = ua.AccessLevel.CurrentWrite.mask


def _node_text(p: OpcuaParam) -> str:
    return p.node if p.node is not None else "/".join(p.browse_path or ())


def _int(dv: ua.DataValue) -> int | None:
    good = dv.StatusCode is None or dv.StatusCode.is_good()
    value = dv.Value.Value if dv.Value is not None else None
    return value if good and isinstance(value, int) else None


async def check_nodes(client: Client, assets: list[OpcuaAsset], namespace: str) -> DeviceCheck:
    """Resolve, read and (for setpoints) check the access and data type of every parameter's node."""
    params = {(a.twin_id, name): p for a in assets for name, p in a.params.items()}
    out = DeviceCheck(checked=len(params))
    nodes, failed = await resolve_nodes(client, params, namespace)
    for (twin, name), why in failed:
        out.problems.append((twin, name, _node_text(params[(twin, name)]), f"not on the server: {why}"))
    keys = list(nodes)
    attrs = (ua.AttributeIds.AccessLevel, ua.AttributeIds.UserAccessLevel, ua.AttributeIds.Value)
    dvs: list[ua.DataValue] = []
    for start in range(0, len(keys), _BATCH):
        read = ua.ReadParameters()
        for key in keys[start : start + _BATCH]:
            for attr in attrs:
                rv = ua.ReadValueId()
                rv.NodeId = nodes[key]
                rv.AttributeId = attr
                read.NodesToRead.append(rv)
        dvs += await client.uaclient.read(read)
    for i, key in enumerate(keys):
        p = params[key]
        access_dv, user_dv, value_dv = dvs[i * 3 : i * 3 + 3]
        where = (key[0], key[1], _node_text(p))
        if access_dv.StatusCode is not None and status_name(access_dv.StatusCode) in _MISSING:
            out.problems.append((*where, f"not on the server ({status_name(access_dv.StatusCode)})"))
            continue
        access = _int(access_dv)
        if access is None:
            out.problems.append((*where, "not a variable (it has no value to read)"))
            continue
        user = _int(user_dv)
        allowed = access & (access if user is None else user)
        value_status = status_name(value_dv.StatusCode) if value_dv.StatusCode is not None else "Good"
        if not allowed & _CURRENT_READ or value_status in ("BadNotReadable", "BadUserAccessDenied"):
            out.problems.append((*where, f"not readable for this session ({value_status})"))
            continue
        if value_status != "Good":
            out.notes.append((*where, f"its value has status {value_status} now"))
        if p.writable:
            out.setpoints += 1
            if not allowed & _CURRENT_WRITE:
                out.problems.append((*where, "mapped writable, but the server does not let this session write it"))
                continue
            try:
                vtype = await client.get_node(nodes[key]).read_data_type_as_variant_type()
            except Exception as exc:  # a data type the library cannot map to a variant type
                out.problems.append((*where, f"mapped writable, but its data type is unknown ({exc})"))
                continue
            if vtype not in WRITE_CASTS:
                out.problems.append(
                    (*where, f"mapped writable, but its data type {vtype.name} is no number or boolean")
                )
    order = {key: i for i, key in enumerate(params)}
    out.problems.sort(key=lambda p: order[(p[0], p[1])])  # in the file's order
    return out
