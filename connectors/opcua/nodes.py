"""A mapping's OPC-UA nodes as one server numbers them: portable NodeIds and browse paths.

A ``nsu=URI;…`` NodeId is resolved through the server's namespace array, a ``browse_path`` with
TranslateBrowsePathsToNodeIds; a node the server does not know is a failure of its parameter alone.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

from asyncua import Client, ua

from connectors.bridges.mapping.schema import OpcuaParam
from connectors.opcua.values import status_name

Key = TypeVar("Key", bound=Hashable)


class UnresolvedNode(ValueError):
    """A parameter's node that the server does not know (namespace URI, browse path)."""


def resolve_node_id(text: str, namespaces: list[str]) -> ua.NodeId:
    """A mapping's NodeId text as this server numbers it (``nsu=URI`` → the URI's index).

    >>> resolve_node_id("nsu=urn:acme;s=Pump.Flow", ["http://opcfoundation.org/UA/", "urn:x", "urn:acme"])
    NodeId(Identifier='Pump.Flow', NamespaceIndex=2, NodeIdType=<NodeIdType.String: 3>)
    """
    node = ua.NodeId.from_string(text)
    uri = getattr(node, "NamespaceUri", None)
    if not uri:
        return ua.NodeId(node.Identifier, node.NamespaceIndex, node.NodeIdType)
    if uri not in namespaces:
        raise UnresolvedNode(f"namespace {uri!r} is not on this server (it has: {', '.join(namespaces)})")
    return ua.NodeId(node.Identifier, namespaces.index(uri), node.NodeIdType)


def browse_element(seg: str, default_uri: str, namespaces: list[str]) -> ua.QualifiedName:
    """One browse path segment → a qualified name (``Name``: the device namespace; ``0:Name``; ``nsu=URI;Name``)."""
    if seg.startswith("nsu="):
        uri, _, name = seg[4:].partition(";")
    else:
        prefix, sep, rest = seg.partition(":")
        if sep and prefix.isdigit():
            return ua.QualifiedName(rest, int(prefix))
        uri, name = default_uri, seg
    if uri not in namespaces:
        raise UnresolvedNode(f"namespace {uri!r} is not on this server (it has: {', '.join(namespaces)})")
    return ua.QualifiedName(name, namespaces.index(uri))


def browse_path(segments: list[str], default_uri: str, namespaces: list[str]) -> ua.BrowsePath:
    """A browse path from the Objects folder along hierarchical references."""
    bp = ua.BrowsePath()
    bp.StartingNode = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    rel = ua.RelativePath()
    for seg in segments:
        el = ua.RelativePathElement()
        el.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
        el.IncludeSubtypes = True
        el.IsInverse = False
        el.TargetName = browse_element(seg, default_uri, namespaces)
        rel.Elements.append(el)
    bp.RelativePath = rel
    return bp


async def resolve_nodes(
    client: Client, params: dict[Key, OpcuaParam], default_uri: str
) -> tuple[dict[Key, ua.NodeId], list[tuple[Key, str]]]:
    """(NodeId of every parameter the server knows, [(parameter, why not)] for the others)."""
    namespaces = await client.get_namespace_array()
    nodes: dict[Key, ua.NodeId] = {}
    failed: list[tuple[Key, str]] = []
    paths: list[tuple[Key, ua.BrowsePath]] = []
    for key, p in params.items():
        try:
            if p.node is not None:
                nodes[key] = resolve_node_id(p.node, namespaces)
            else:
                paths.append((key, browse_path(p.browse_path or [], default_uri, namespaces)))
        except UnresolvedNode as exc:
            failed.append((key, str(exc)))
    if paths:
        results = await client.uaclient.translate_browsepaths_to_nodeids([bp for _, bp in paths])
        for (key, _), res in zip(paths, results, strict=True):
            if not res.StatusCode.is_good() or not res.Targets:
                failed.append((key, f"browse path not found: {status_name(res.StatusCode)}"))
                continue
            target = res.Targets[0].TargetId
            nodes[key] = ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
    return nodes, failed
