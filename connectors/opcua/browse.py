"""Browse an OPC-UA server's address space: its variables with portable NodeIds, types, access and values.

From a root node (the Objects folder) down to ``depth`` levels along hierarchical references
(Organizes, HasComponent, …; properties only for a variable's ``EngineeringUnits``), at most
``max_nodes`` nodes, each once. Browse and read requests go in batches; the standard namespace
(index 0: the Server object) is left out unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asyncua import Client, ua

from connectors.opcua.nodes import UnresolvedNode, resolve_node_id
from connectors.opcua.values import WRITE_CASTS, status_name

# Values the bridge forwards as readings (numbers, booleans, texts); setpoints are the WRITE_CASTS types.
READING_TYPES = frozenset({*WRITE_CASTS, ua.VariantType.String, ua.VariantType.LocalizedText})
_BROWSE_BATCH = 50  # nodes per Browse request
_READ_BATCH = 50  # variables per Read request (five attributes each)
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
_ATTRIBUTES = (
    ua.AttributeIds.DataType,
    ua.AttributeIds.ValueRank,
    ua.AttributeIds.AccessLevel,
    ua.AttributeIds.UserAccessLevel,
    ua.AttributeIds.Value,
)


@dataclass
class Variable:
    """One variable: where it is, its portable NodeId, type, access and current value."""

    path: tuple[str, ...]  # browse names from the root (the root itself left out)
    owner: tuple[str, ...]  # path of the nearest object above it
    nodeid: ua.NodeId
    node: str  # portable text: nsu=URI;s=… (ns=N;… when the URI cannot be written)
    data_type: str = "?"
    value: Any = None
    status: str = "Good"
    readable: bool = True
    writable: bool = False
    reading: bool = False  # a scalar number, boolean or text: the bridge forwards it
    setpoint: bool = False  # writable and a number or boolean: the bridge can write it
    unit: str = ""
    units_node: ua.NodeId | None = None
    mapped: tuple[str, str] | None = None  # (twin id, parameter) of the mapping file that maps it

    def as_json(self) -> dict[str, Any]:
        return {
            "browse_path": list(self.path),
            "node": self.node,
            "data_type": self.data_type,
            "writable": self.writable,
            "value": self.value,
            "status": self.status,
            "reading": self.reading,
            "unit": self.unit,
            "mapped": ".".join(self.mapped) if self.mapped else None,
        }


@dataclass
class ObjectNode:
    """An object (or folder) met on the way, with the browse name of its type."""

    path: tuple[str, ...]
    nodeid: ua.NodeId
    type_id: ua.NodeId | None
    type_name: str = ""


@dataclass
class Browse:
    """What one browse found."""

    endpoint: str
    root: str
    namespaces: list[str]
    root_name: str = "Objects"
    variables: list[Variable] = field(default_factory=list)
    objects: dict[tuple[str, ...], ObjectNode] = field(default_factory=dict)
    nodes: int = 0  # nodes found (objects and variables)
    stopped_early: bool = False  # max_nodes reached: the listing is incomplete
    not_descended: int = 0  # objects at the depth limit whose children were not browsed


def mark_mapped(found: Browse, nodes: dict[tuple[str, str], ua.NodeId]) -> int:
    """Mark the variables a mapping maps (``nodes``: (twin id, parameter) → its resolved NodeId);
    the number marked."""
    by_node = {(n.Identifier, n.NamespaceIndex): key for key, n in nodes.items()}
    marked = 0
    for v in found.variables:
        v.mapped = by_node.get((v.nodeid.Identifier, v.nodeid.NamespaceIndex))
        marked += v.mapped is not None
    return marked


def portable(nodeid: ua.NodeId, namespaces: list[str]) -> str:
    """``nsu=URI;…`` text of a NodeId (the server's ``ns=N;…`` when the URI form does not read back).

    >>> portable(ua.NodeId("Pump1.Flow", 2), ["http://opcfoundation.org/UA/", "urn:x", "urn:acme"])
    'nsu=urn:acme;s=Pump1.Flow'
    """
    text = nodeid.to_string()
    if nodeid.NamespaceIndex >= len(namespaces):
        return text
    body = text.split(";", 1)[1] if text.startswith("ns=") else text
    candidate = f"nsu={namespaces[nodeid.NamespaceIndex]};{body}"
    try:
        back = resolve_node_id(candidate, namespaces)
    except (UnresolvedNode, ValueError):
        return text
    same = (back.Identifier, back.NamespaceIndex) == (nodeid.Identifier, nodeid.NamespaceIndex)
    return candidate if same else text


def _plain(value: Any) -> Any:
    """A value as JSON can hold it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)[:80]


async def browse(
    client: Client, root: ua.NodeId, depth: int, max_nodes: int, standard: bool = False, endpoint: str = ""
) -> Browse:
    """Variables and objects below ``root`` (``depth`` levels, at most ``max_nodes`` nodes)."""
    namespaces = await client.get_namespace_array()
    out = Browse(endpoint, portable(root, namespaces), namespaces)
    seen = {(root.Identifier, root.NamespaceIndex)}
    out.objects[()] = ObjectNode((), root, None)
    (root_name,) = await _read(client, [(root, ua.AttributeIds.BrowseName)])
    if root_name.StatusCode is not None and not root_name.StatusCode.is_good():
        raise UnresolvedNode(f"root node {out.root} is not on the server ({status_name(root_name.StatusCode)})")
    out.root_name = _name(root_name) or out.root_name
    # (node, its path, the path of the object holding it (its own for an object), the variable or None)
    level: list[tuple[ua.NodeId, tuple[str, ...], tuple[str, ...], Variable | None]] = [(root, (), (), None)]
    for _ in range(depth):
        children: list[tuple[ua.NodeId, tuple[str, ...], tuple[str, ...], Variable | None]] = []
        for (_, path, owner, var), refs in zip(level, await _browse_all(client, [n for n, *_ in level]), strict=True):
            for ref in refs:
                target = ref.NodeId
                name = ref.BrowseName.Name or ""
                if ref.ReferenceTypeId == _HAS_PROPERTY:
                    if var is not None and name == "EngineeringUnits":
                        var.units_node = target
                    continue
                key = (target.Identifier, target.NamespaceIndex)
                if key in seen or (target.NamespaceIndex == 0 and not standard):
                    continue
                if out.nodes >= max_nodes:
                    out.stopped_early = True
                    break
                seen.add(key)
                out.nodes += 1
                child_path = (*path, name)
                if ref.NodeClass == ua.NodeClass.Variable:
                    child = Variable(child_path, owner, target, portable(target, namespaces))
                    out.variables.append(child)
                    children.append((target, child_path, owner, child))
                else:
                    typedef = ref.TypeDefinition if ref.TypeDefinition and not ref.TypeDefinition.is_null() else None
                    out.objects[child_path] = ObjectNode(child_path, target, typedef)
                    children.append((target, child_path, child_path, None))
            if out.stopped_early:
                break
        level = children
        if out.stopped_early or not level:
            break
    else:
        out.not_descended = sum(1 for *_, var in level if var is None)
    await _read_variables(client, out.variables)
    await _name_types(client, out)
    return out


async def _browse_all(client: Client, nodes: list[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    """Hierarchical references (forward) to objects and variables of each node (in order), continuation
    points followed; none for a node the server would not browse."""
    out: list[list[ua.ReferenceDescription]] = []
    for start in range(0, len(nodes), _BROWSE_BATCH):
        batch = nodes[start : start + _BROWSE_BATCH]
        params = ua.BrowseParameters()
        params.View = ua.ViewDescription()
        params.RequestedMaxReferencesPerNode = 0
        for node in batch:
            desc = ua.BrowseDescription()
            desc.NodeId = node
            desc.BrowseDirection = ua.BrowseDirection.Forward
            desc.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
            desc.IncludeSubtypes = True
            desc.NodeClassMask = ua.NodeClass.Object | ua.NodeClass.Variable
            desc.ResultMask = ua.BrowseResultMask.All
            params.NodesToBrowse.append(desc)
        for result in await client.uaclient.browse(params):
            if not result.StatusCode.is_good():
                out.append([])  # a node this session may not browse: its children stay unknown
                continue
            refs = list(result.References)
            point = result.ContinuationPoint
            while point:
                more = ua.BrowseNextParameters()
                more.ContinuationPoints = [point]
                (res,) = await client.uaclient.browse_next(more)
                refs += res.References
                point = res.ContinuationPoint if res.StatusCode.is_good() else None
            out.append(refs)
    return out


async def _read(client: Client, items: list[tuple[ua.NodeId, ua.AttributeIds]]) -> list[ua.DataValue]:
    """One Read per batch of (node, attribute) pairs."""
    out: list[ua.DataValue] = []
    step = _READ_BATCH * len(_ATTRIBUTES)
    for start in range(0, len(items), step):
        params = ua.ReadParameters()
        for nodeid, attr in items[start : start + step]:
            rv = ua.ReadValueId()
            rv.NodeId = nodeid
            rv.AttributeId = attr
            params.NodesToRead.append(rv)
        out += await client.uaclient.read(params)
    return out


def _int(dv: ua.DataValue) -> int | None:
    ok = dv.StatusCode is None or dv.StatusCode.is_good()
    return dv.Value.Value if ok and dv.Value is not None and isinstance(dv.Value.Value, int) else None


async def _read_variables(client: Client, variables: list[Variable]) -> None:
    """Data type, value rank, access levels, value and unit of every variable."""
    dvs = await _read(client, [(v.nodeid, a) for v in variables for a in _ATTRIBUTES])
    pending: list[tuple[Variable, ua.NodeId]] = []
    for i, v in enumerate(variables):
        dtype_dv, rank_dv, access_dv, user_dv, value_dv = dvs[i * 5 : i * 5 + 5]
        dtype = dtype_dv.Value.Value if dtype_dv.Value is not None else None
        rank = _int(rank_dv)
        access = _int(access_dv) or 0
        user = _int(user_dv)
        user = access if user is None else user
        variant = value_dv.Value
        st = value_dv.StatusCode
        v.status = "Good" if st is None or st.is_good() else status_name(st)
        v.value = _plain(variant.Value) if variant is not None else None
        v.readable = bool(access & user & ua.AccessLevel.CurrentRead.mask) and v.status not in (
            "BadNotReadable",
            "BadUserAccessDenied",
        )
        v.writable = bool(access & user & ua.AccessLevel.CurrentWrite.mask)
        vtype = None
        if _builtin(dtype):
            vtype = ua.VariantType(dtype.Identifier)
            v.data_type = vtype.name
        if vtype in (None, ua.VariantType.Variant) and variant is not None and variant.Value is not None:
            vtype = variant.VariantType  # a subtype (an enumeration, Duration …): the type its values have
        if v.data_type == "?" and isinstance(dtype, ua.NodeId):
            pending.append((v, dtype))
        scalar = rank in (None, -1, -2, -3) and not isinstance(variant.Value if variant else None, list)
        v.reading = scalar and vtype in READING_TYPES
        v.setpoint = v.reading and v.writable and vtype in WRITE_CASTS
    unknown = {(d.Identifier, d.NamespaceIndex): d for _, d in pending}
    names = await _read(client, [(d, ua.AttributeIds.BrowseName) for d in unknown.values()])
    type_names = {key: _name(dv) for key, dv in zip(unknown, names, strict=True)}
    for v, dtype in pending:
        v.data_type = type_names[(dtype.Identifier, dtype.NamespaceIndex)] or "?"
    with_units = [(v, v.units_node) for v in variables if v.units_node is not None]
    units = await _read(client, [(node, ua.AttributeIds.Value) for _, node in with_units])
    for (v, _), dv in zip(with_units, units, strict=True):
        eu = dv.Value.Value if dv.Value is not None else None
        text = getattr(getattr(eu, "DisplayName", None), "Text", None)
        if text:
            v.unit = text


async def _name_types(client: Client, out: Browse) -> None:
    """The browse name of each object's type definition."""
    types = {(t.Identifier, t.NamespaceIndex): t for o in out.objects.values() if (t := o.type_id) is not None}
    names = await _read(client, [(t, ua.AttributeIds.BrowseName) for t in types.values()])
    found = {key: _name(dv) for key, dv in zip(types, names, strict=True)}
    for o in out.objects.values():
        if o.type_id is not None:
            o.type_name = found[(o.type_id.Identifier, o.type_id.NamespaceIndex)]


def _builtin(dtype: Any) -> bool:
    """True for the NodeId of a built-in data type (Boolean … DiagnosticInfo: ns=0;i=1…25)."""
    ok = isinstance(dtype, ua.NodeId) and dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int)
    return ok and 1 <= dtype.Identifier <= 25


def _name(dv: ua.DataValue) -> str:
    """The name of a BrowseName read ("" when the read failed)."""
    value = dv.Value.Value if dv.Value is not None else None
    return value.Name or "" if isinstance(value, ua.QualifiedName) else ""
