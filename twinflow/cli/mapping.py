"""``twinflow mapping``: start a mapping file from an OPC-UA server (browse-opcua) or from what an MQTT
broker carries (listen-mqtt), check a mapping file.

Registered in :mod:`twinflow.cli.main`. Exit codes: 0 done, 1 a server or broker unreachable, nothing
heard, or a mapped node wrong, 2 a usage or mapping file mistake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connectors.bridges.mapping.loading import MappingError, load_mapping
from connectors.bridges.mapping.schema import PROTOCOLS, Mapping, OpcuaConnection
from twinflow.cli.support import err_console, print_config_error, setup_logging

console = Console()
mapping_app = typer.Typer(
    help="Asset mapping files: start one from an OPC-UA server or an MQTT broker, check one (docs/connectors.md).",
    no_args_is_help=True,
)


class Security(StrEnum):
    none = "None"
    sign = "Basic256Sha256_Sign"
    sign_and_encrypt = "Basic256Sha256_SignAndEncrypt"


def _write_skeleton(path: Path, text: str) -> None:
    """Write a mapping skeleton and load it as the bridges will (a skeleton that does not load is a bug)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    try:
        load_mapping(path)
    except MappingError as exc:
        print_config_error(exc)
        raise _fail(f"the skeleton in {path} does not load (a twinflow bug: please report it)", 1) from None


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[red]{escape(message)}[/red]", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def _quiet_library(verbose: bool) -> None:
    """asyncua's own log lines only with --verbose (its failures are reported here, in one line)."""
    if verbose:
        setup_logging(True)
    logging.getLogger("asyncua").setLevel(logging.INFO if verbose else logging.CRITICAL)


# ----------------------------------------------------------------------------- browse-opcua
_ENDPOINT = typer.Argument(
    None, help=escape("opc.tcp://HOST:PORT[/PATH] of the server (or --mapping)."), show_default=False
)
_MAPPING = typer.Option(
    None,
    "--mapping",
    "-m",
    help="Connect as the bridge does with this mapping file's OPC-UA device; mark what it maps.",
)
_DEVICE = typer.Option(None, help=escape("--mapping: its [devices.NAME] to browse (opcua: the [opcua] section)."))
_ROOT = typer.Option("i=85", help="NodeId to start from (default i=85, the Objects folder); nsu=URI;… allowed.")
_DEPTH = typer.Option(6, min=1, max=64, help="Levels below the root to browse.")
_MAX_NODES = typer.Option(5000, min=1, help="Stop after this many nodes (and say so).")
_JSON = typer.Option(False, "--json", help="Print the variables as JSON instead of a table.")
_OUT = typer.Option(None, "--mapping-out", help="Write a mapping skeleton (TOML) to this file.")
_FORCE = typer.Option(False, "--force", help="Overwrite an existing --mapping-out file.")
_STANDARD = typer.Option(False, "--standard", help="Also browse the standard namespace (ns=0: the Server object).")
_SECURITY = typer.Option(Security.none, help=escape("Security mode, as `security` in [opcua]."))
_CERT = typer.Option(None, help=escape("Client certificate (DER/PEM), as `certificate` in [opcua]."))
_KEY = typer.Option(None, help=escape("Client private key (PEM), as `private_key` in [opcua]."))
_SERVER_CERT = typer.Option(None, help="Server certificate (default: fetched from the endpoint).")
_APP_URI = typer.Option("urn:twinflow:bridge", help="Must equal the URI in the client certificate.")
_USER = typer.Option(None, help=escape("Login name, as `username` in [opcua]."))
_PASSWORD = typer.Option(
    None, envvar="TWINFLOW_OPCUA_PASSWORD", help="Login password (never written to a file; --mapping: if it has none)."
)
_TIMEOUT = typer.Option(5.0, min=0.1, help="Seconds to connect and for each request.")


@mapping_app.command("browse-opcua")
def browse_opcua(
    endpoint: str = _ENDPOINT,
    mapping: Path = _MAPPING,
    device: str = _DEVICE,
    root: str = _ROOT,
    depth: int = _DEPTH,
    max_nodes: int = _MAX_NODES,
    json_out: bool = _JSON,
    mapping_out: Path = _OUT,
    force: bool = _FORCE,
    standard: bool = _STANDARD,
    security: Security = _SECURITY,
    certificate: Path = _CERT,
    private_key: Path = _KEY,
    server_certificate: Path = _SERVER_CERT,
    application_uri: str = _APP_URI,
    username: str = _USER,
    password: str = _PASSWORD,
    timeout: float = _TIMEOUT,
    verbose: bool = False,
) -> None:
    """List the variables of an OPC-UA server (browse path, portable NodeId, data type, writable, value);
    with --mapping-out, write a mapping skeleton that `twinflow mapping check` and the bridge accept.
    With --mapping FILE instead of ENDPOINT: connect as the bridge does with that file, mark the
    variables it maps, and --mapping-out writes only those it does not map yet."""
    from asyncua import ua

    from connectors.opcua.skeleton import build

    given = {
        "--security": security != Security.none,
        "--certificate": certificate is not None,
        "--private-key": private_key is not None,
        "--server-certificate": server_certificate is not None,
        "--application-uri": application_uri != "urn:twinflow:bridge",
        "--username": bool(username),
    }
    if mapping is not None:
        if endpoint is not None:
            raise _fail(f"give the endpoint {endpoint!r} or --mapping {mapping}, not both", 2)
        if any(given.values()):
            flags = ", ".join(k for k, v in given.items() if v)
            why = f"--mapping takes the connection from {mapping}: {flags} not allowed with it (edit the file)"
            raise _fail(why, 2)
        source = _mapped_device(mapping, device, password)
        conn, section = source.conn, source.section
        endpoint = conn.endpoint
    elif device is not None:
        raise _fail("--device picks a device of a --mapping file: give --mapping FILE", 2)
    elif endpoint is None:
        raise _fail("give the server's endpoint (opc.tcp://HOST:PORT[/PATH]) or --mapping FILE", 2)
    else:
        source = None
        section, conn = _endpoint_connection(endpoint, security, certificate, private_key, server_certificate,
                                             application_uri, username, password)  # fmt: skip
    conn = conn.model_copy(update={"request_timeout_s": timeout, "watchdog_s": max(timeout, 1)})
    try:
        ua.NodeId.from_string(root)
    except Exception:
        raise _fail(f"--root {root!r} is not a NodeId (write i=85, ns=2;s=Line1 or nsu=URI;s=Line1)", 2) from None
    if mapping_out is not None and mapping_out.exists() and not force:
        raise _fail(f"--mapping-out {mapping_out} exists (pass --force to overwrite it)", 2)
    _quiet_library(verbose)
    found, unresolved = _run_browse(conn, root, depth, max_nodes, standard, source)

    if json_out:
        doc = {
            "endpoint": endpoint,
            "root": found.root,
            "namespaces": found.namespaces,
            "nodes": found.nodes,
            "stopped_early": found.stopped_early,
            "variables": [v.as_json() for v in found.variables],
        }
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    else:
        _print_table(found, mapping)
    _print_limits(found, depth, max_nodes)
    if unresolved:
        err_console.print(
            f"[yellow]{len(unresolved)} parameters of {escape(str(mapping))} are not on the server "
            f"({escape(', '.join(unresolved[:5]))}{' …' if len(unresolved) > 5 else ''}): "
            f"twinflow mapping check {escape(str(mapping))} --connect names why[/yellow]",
            highlight=False,
            soft_wrap=True,
        )
    if mapping_out is None:
        return
    if source is None:
        argv = ["twinflow", "mapping", "browse-opcua", endpoint]
    else:
        argv = ["twinflow", "mapping", "browse-opcua", "--mapping", str(mapping), "--device", source.name]
    argv += ["--root", root] if root != "i=85" else []
    sk = build(found, section, shlex.join(argv), *((str(mapping), source.twins) if source else ()))
    if not sk.assets:
        what = f"not mapped in {mapping} yet" if source is not None else "holding a reading"
        raise _fail(f"no variable {what} below {found.root}; {mapping_out} not written", 1)
    _write_skeleton(mapping_out, sk.text)
    err_console.print(
        f"wrote {mapping_out}: {sk.assets} asset(s), {sk.params} parameter(s), {sk.setpoints} writable"
        + (f"; left out {sk.mapped} variables {mapping} maps" if source is not None else "")
        + (f"; left out {len(sk.left_out)} variables that are no readings" if sk.left_out else ""),
        highlight=False,
        soft_wrap=True,
    )
    if section.get("username"):
        err_console.print(
            escape("the file has no password: add `password = …` to [opcua] (or write it at deploy time)"),
            highlight=False,
        )


def _endpoint_connection(endpoint: str, security: Security, certificate: Path | None, private_key: Path | None,
                         server_certificate: Path | None, application_uri: str, username: str | None,
                         password: str | None) -> tuple[dict[str, Any], OpcuaConnection]:  # fmt: skip
    """The ``[opcua]`` fields of the command line options and the connection they make."""
    section: dict[str, Any] = {"endpoint": endpoint}
    if security != Security.none:
        if certificate is None or private_key is None:
            raise _fail(f"--security {security.value} needs --certificate and --private-key (twinflow certs opcua)", 2)
        section |= {"security": security.value, "certificate": certificate, "private_key": private_key}
        if server_certificate is not None:
            section["server_certificate"] = server_certificate
    if application_uri != "urn:twinflow:bridge":
        section["application_uri"] = application_uri
    if username:
        section["username"] = username
    section = {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in section.items()}
    try:
        return section, OpcuaConnection(**section, password=password)
    except ValidationError:
        raise _fail(f"{endpoint!r} is not an OPC-UA endpoint: write opc.tcp://HOST:PORT[/PATH]", 2) from None


@dataclass
class _Source:
    """The mapping file's OPC-UA device a browse connects as."""

    name: str
    conn: OpcuaConnection
    section: dict[str, Any]  # its [opcua] fields for a skeleton: no password, no server-side files
    params: dict[tuple[str, str], Any]  # (twin id, parameter) → its OpcuaParam
    twins: set[str]  # every twin id of the file
    resolve: Callable[[Path | None], Path | None]


_SERVER_SIDE = {"protocol", "password", "server_private_key", "trusted_certificates"}


def _mapped_device(path: Path, device: str | None, password: str | None) -> _Source:
    """The device of a mapping file, loaded by the bridges' loader (exit 2 naming the mistake)."""
    try:
        m = load_mapping(path)
        name, conn, assets = m.pick_device("opcua", device)
    except MappingError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    except ValueError as exc:
        raise _fail(f"{path}: {exc}", 2) from None
    if conn.username and conn.password is None and password:
        conn = conn.model_copy(update={"password": SecretStr(password)})
    fields = conn.model_dump(exclude_defaults=True, exclude=_SERVER_SIDE)
    fields = {k: str(m.path(v).resolve()) if isinstance(v, Path) else v for k, v in fields.items()}  # type: ignore[union-attr]
    params = {(a.twin_id, p): spec for a in assets for p, spec in a.params.items()}
    twins = {a.twin_id for a in m.assets}
    return _Source(name, conn, {"endpoint": conn.endpoint, **fields}, params, twins, m.path)


def _run_browse(conn: OpcuaConnection, root: str, depth: int, max_nodes: int, standard: bool,
                source: _Source | None) -> tuple[Any, list[str]]:  # fmt: skip
    """What the browse found, and the mapping's parameters not on the server ("twin.param")."""
    from connectors.opcua.browse import browse, mark_mapped
    from connectors.opcua.client import Unreachable, connected
    from connectors.opcua.nodes import UnresolvedNode, resolve_node_id, resolve_nodes

    async def run():
        async with connected(conn, source.resolve if source else lambda p: p, conn.request_timeout_s) as client:
            start = resolve_node_id(root, await client.get_namespace_array())
            found = await browse(client, start, depth, max_nodes, standard, conn.endpoint)
            if source is None:
                return found, []
            nodes, failed = await resolve_nodes(client, source.params, conn.namespace)
            mark_mapped(found, nodes)
            return found, [".".join(key) for key, _ in failed]

    try:
        return asyncio.run(run())
    except Unreachable as exc:
        raise _fail(str(exc), 1) from None
    except UnresolvedNode as exc:
        raise _fail(f"--root {root}: {exc}", 1) from None
    except TimeoutError:
        timeout = conn.request_timeout_s
        raise _fail(f"{conn.endpoint} stopped answering while browsing (--timeout {timeout:g} s)", 1) from None
    except Exception as exc:  # a server that answers a request with an error
        raise _fail(f"browsing {conn.endpoint} failed: {type(exc).__name__}: {exc}", 1) from None


def _print_table(found, mapping: Path | None) -> None:
    table = Table("browse path", "node", "data type", "access", "value", "")
    for column in table.columns[:2]:
        column.overflow = "fold"  # a path and a NodeId are copied from here: wrapped, never cut short
    for v in sorted(found.variables, key=lambda v: v.path):
        shown = f"{v.value:.6g}" if isinstance(v.value, float) else str(v.value)
        value = shown if v.status == "Good" else v.status if v.value is None else f"{shown} ({v.status})"
        note = "setpoint" if v.setpoint else "" if v.reading else "not a reading"
        if v.mapped is not None:
            note = ", ".join(x for x in (f"mapped: {'.'.join(v.mapped)}", note) if x)
        access = ("r" if v.readable else "-") + ("w" if v.writable else "-")
        table.add_row(escape("/".join(v.path)), escape(v.node), v.data_type, access, escape(value[:40]), note)
    console.print(table)
    owners = len({v.owner for v in found.variables})
    mapped = f"; {sum(v.mapped is not None for v in found.variables)} mapped in {mapping}" if mapping else ""
    console.print(
        f"{len(found.variables)} variables in {owners} objects ({found.nodes} nodes) on {found.endpoint}{mapped}",
        highlight=False,
        soft_wrap=True,
    )


def _print_limits(found, depth: int, max_nodes: int) -> None:
    if found.stopped_early:
        err_console.print(
            f"[yellow]stopped early: --max-nodes {max_nodes} reached, the listing is incomplete "
            "(start deeper with --root, or raise --max-nodes)[/yellow]"
        )
    if found.not_descended:
        err_console.print(
            f"[yellow]{found.not_descended} objects at --depth {depth} were not opened (raise --depth to see "
            "what they hold)[/yellow]"
        )


# ----------------------------------------------------------------------------- listen-mqtt
_TOPICS = typer.Option(["#"], "--topic", "-t", help="Topic filter to subscribe to (repeatable; default #, never $SYS).")
_SECONDS = typer.Option(10.0, min=0.1, help="Seconds to listen.")
_MAX_MESSAGES = typer.Option(None, min=1, help="Stop after this many messages (before --seconds).")
_HOST = typer.Option(None, help="Broker host (default: mqtt.host of the settings).")
_PORT = typer.Option(None, min=1, max=65535, help="Broker port (default: mqtt.port of the settings).")
_MQTT_TIMEOUT = typer.Option(5.0, min=0.1, help="Seconds to connect and for the broker's answers.")


@mapping_app.command("listen-mqtt")
def listen_mqtt(
    topic: list[str] = _TOPICS,
    seconds: float = _SECONDS,
    max_messages: int = _MAX_MESSAGES,
    json_out: bool = _JSON,
    mapping_out: Path = _OUT,
    force: bool = _FORCE,
    host: str = _HOST,
    port: int = _PORT,
    timeout: float = _MQTT_TIMEOUT,
    verbose: bool = False,
) -> None:
    """Listen to an MQTT broker (read only) and list per topic: messages, rate, payload kind, the JSON
    paths of numbers and booleans with examples, texts with their distinct values, timestamp and
    quality fields, Sparkplug B metrics;
    with --mapping-out, write a mapping skeleton that `twinflow mapping check` and the bridge accept.
    Ctrl-C or SIGTERM ends the listening early (exit 0). Exit 1: broker unreachable, nothing heard."""
    from connectors.stopping import stop_on_signals

    stop = stop_on_signals()  # SIGTERM/Ctrl-C: the listening ends, what was heard is listed (exit 0)
    for f in topic:
        if f.startswith("$") or not _filter_ok(f):
            why = "broker topics ($SYS …) are no devices" if f.startswith("$") else "write a/b/#, a/+/c or #"
            raise _fail(f"--topic {f!r} is not a topic filter to listen to: {why}", 2)
    if mapping_out is not None and mapping_out.exists() and not force:
        raise _fail(f"--mapping-out {mapping_out} exists (pass --force to overwrite it)", 2)
    from twinflow.cli.support import settings_or_exit

    ms = settings_or_exit().mqtt
    host, port = host or ms.host, port or ms.port
    if verbose:
        setup_logging(True)
    heard, listened, refused = _run_listen(ms, host, port, list(dict.fromkeys(topic)), seconds, max_messages, stop,
                                           timeout)  # fmt: skip
    for f in refused:
        err_console.print(f"[yellow]the broker refused the subscription to {escape(f)} (its ACL)[/yellow]")
    where = f"{host}:{port}"
    if not heard.messages and stop.is_set():
        err_console.print(f"stopped after {listened:.1f} s, before any message on {', '.join(topic)}", highlight=False)
        return
    if not heard.messages:
        raise _fail(f"no message on {', '.join(topic)} at {where} within {listened:.0f} s (nothing written)", 1)
    topics = sorted(heard.topics.values(), key=lambda t: t.topic)
    if json_out:
        doc = {
            "broker": where,
            "filters": topic,
            "seconds": round(listened, 3),
            "messages": heard.messages,
            "topics": [t.as_json(listened) for t in topics],
        }
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        _print_heard(topics, heard.messages, listened, where)
    if heard.dropped_topics:
        err_console.print(f"[yellow]{heard.dropped_topics} messages on further topics not listed (too many topics: "
                          "narrow --topic)[/yellow]")  # fmt: skip
    if stop.is_set():
        err_console.print(f"stopped early: listened {listened:.1f} s", highlight=False)
    if mapping_out is not None:
        _write_mqtt_skeleton(heard, listened, mapping_out, ms, host, port, topic)


def _filter_ok(f: str) -> bool:
    """An MQTT topic filter: ``#`` only as the last level, ``+`` a whole level, not empty."""
    levels = f.split("/")
    if not f or "\0" in f:
        return False
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _run_listen(ms: Any, host: str, port: int, filters: list[str], seconds: float, max_messages: Any, stop: Any,
                timeout: float):  # fmt: skip
    from connectors.mqtt.client import login_of
    from connectors.mqtt.listen import Unreachable, listen

    try:
        return listen(
            host,
            port,
            filters,
            seconds,
            max_messages,
            stop,
            timeout=timeout,
            **login_of(ms),
        )
    except Unreachable as exc:
        raise _fail(str(exc), 1) from None
    except (ValueError, OSError) as exc:  # a certificate file that is not there, a filter paho refuses
        raise _fail(f"listening on {host}:{port} failed: {exc}", 1) from None


def _print_heard(topics: list, messages: int, listened: float, where: str) -> None:
    from connectors.mqtt.listen import KINDS

    table = Table("topic", "msgs", "rate /s", "payload", "values (JSON path = example)", "timestamp, quality")
    for column in (table.columns[0], table.columns[4]):
        column.overflow = "fold"  # topics and paths are copied from here: wrapped, never cut short
    for t in topics:
        kind = KINDS[t.kind]
        if t.sparkplug is not None:
            kind = f"{kind} {t.sparkplug[0]}"
        values = [f"{leaf.path} = {_shown(leaf.example)}" for leaf in t.leaves.values()]
        values += [f"{leaf.path} = text: {_texts(leaf.texts)}" for leaf in t.texts.values()]
        if t.kind in ("number", "boolean"):
            values.append(_shown(t.example))
        elif t.kind == "text":
            values.append(f"text: {_texts(t.plain_texts)}")
        if t.aliases_unknown:
            values.append(f"aliases {sorted(t.aliases_unknown)[:5]}: no birth heard")
        if t.unaddressable:
            values.append(f"not addressable by a path: {', '.join(sorted(t.unaddressable)[:3])}")
        meta = []
        if t.ts_field is not None:
            ts = t.ts_field
            meta.append(f"ts {ts.path} = {ts.example}" + ("" if ts.usable else f" (unreadable: {ts.why})"))
        if t.quality_field is not None:
            meta.append(f"quality {t.quality_field.path} = {t.quality_field.example}")
        retained = f" ({t.retained} retained)" if t.retained else ""
        table.add_row(
            escape(t.topic),
            f"{t.count}{retained}",
            f"{t.count / listened:.2f}" if listened > 0 else "-",
            kind,
            escape("\n".join(values)),
            escape("\n".join(meta)),
        )
    console.print(table)
    console.print(f"{messages} messages on {len(topics)} topics in {listened:.1f} s at {where}", highlight=False)


def _shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _texts(texts: Any) -> str:
    """The distinct texts heard (:class:`connectors.mqtt.listen.Distinct`): ``'ON', 'OFF'``."""
    return ", ".join(repr(v) for v in texts.seen) + (", …" if texts.more else "")


def _write_mqtt_skeleton(heard: Any, listened: float, out: Path, ms: Any, host: str, port: int,
                         filters: list[str]) -> None:  # fmt: skip
    import uuid

    from connectors.mqtt.skeleton import build

    section: dict[str, Any] = {"host": host, "port": port, "client_id": f"twinflow-mapped-{uuid.uuid4().hex[:8]}"}
    if ms.username:
        section["username"] = ms.username
    if ms.tls or ms.ca_file is not None:
        section["tls"] = True
        for key, value in (("ca_file", ms.ca_file), ("certfile", ms.cert_file), ("keyfile", ms.key_file)):
            if value is not None:
                section[key] = str(Path(value).resolve())
    argv = ["twinflow", "mapping", "listen-mqtt", *(a for f in filters if f != "#" for a in ("--topic", f))]
    sk = build(heard, section, shlex.join(argv), listened)
    if not sk.assets:
        raise _fail(f"no topic carried a number, boolean or text to map; {out} not written", 1)
    _write_skeleton(out, sk.text)
    err_console.print(
        f"wrote {out}: {sk.assets} asset(s) ({sk.templates} topic template(s)), {sk.params} parameter(s), none "
        "writable (add `writable = true` and a command_topic for setpoints)"
        + (f"; left out {len(sk.left_out)} topics without a value to map" if sk.left_out else ""),
        highlight=False,
        soft_wrap=True,
    )
    for note in sk.notes:
        err_console.print(f"[yellow]note: {escape(note)}[/yellow]", highlight=False, soft_wrap=True)
    if ms.username:
        err_console.print(
            escape("the file has no password: add `password = …` to [mqtt] (or write it at deploy time)"),
            highlight=False,
        )


# ----------------------------------------------------------------------------- check
_FILE = typer.Argument(..., help="Asset mapping file (TOML).")
_CONNECT = typer.Option(
    False, "--connect", help="Also check every OPC-UA node and Modbus register on its server or device (read only)."
)
_CHECK_TIMEOUT = typer.Option(5.0, min=0.1, help="--connect: seconds to connect and for each request.")


@mapping_app.command("check")
def check(
    file: Path = _FILE,
    connect: bool = _CONNECT,
    timeout: float = _CHECK_TIMEOUT,
    verbose: bool = False,
) -> None:
    """Load and check a mapping file as the bridges do and summarise it; with --connect, check that each
    OPC-UA node exists, is readable and (setpoints) writable, and that each Modbus parameter's registers
    read and decode within its min/max (nothing is written). Exit 0 fine, 1 a node, register or device
    wrong, 2 the file wrong."""
    try:
        mapping = load_mapping(file)
    except MappingError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    _print_summary(file, mapping)
    if not connect:
        return
    _quiet_library(verbose)
    others = [p for p in PROTOCOLS if p not in CHECKED and mapping.of(p)]
    if others:
        console.print(f"{', '.join(others)}: not checked against the devices (--connect checks OPC-UA and Modbus)")
    failed = False
    for protocol, name, where, outcome in asyncio.run(_check_devices(mapping, timeout)):
        where = f"{protocol} device {name!r} ({where})"
        if isinstance(outcome, BaseException):
            known = isinstance(outcome, ConnectionError) or type(outcome).__name__ == "Unreachable"
            line = f"{where}: {outcome}" if known else f"{where}: {type(outcome).__name__}: {outcome}"
            err_console.print(f"[red]{escape(line)}[/red]", highlight=False, soft_wrap=True)
            failed = True
            continue
        failed |= bool(outcome.problems)
        what = "nodes found and readable" if protocol == "opcua" else "parameters read and decoded"
        colour = "red" if outcome.problems else "green"
        console.print(
            f"[{colour}]{escape(where)}: {outcome.ok} of {outcome.checked} {what}, "
            f"{outcome.setpoints} setpoints[/{colour}]",
            highlight=False,
            soft_wrap=True,
        )
        item = "node" if protocol == "opcua" else "at"
        for twin, param, at, why in outcome.problems:
            line = f"  {twin}.{param} ({item} {at}): {why}"
            console.print(f"[red]{escape(line)}[/red]", highlight=False, soft_wrap=True)
        for twin, param, at, why in outcome.notes:
            console.print(escape(f"  note: {twin}.{param} ({item} {at}): {why}"), highlight=False, soft_wrap=True)
        for twin, values in outcome.unjudged.items():
            shown = " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            console.print(escape(f"  {twin} reads {shown} (no min/max: judge them)"), highlight=False, soft_wrap=True)
        for remark in outcome.remarks:
            console.print(escape(f"  note: {remark}"), highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


CHECKED = ("opcua", "modbus")  # the protocols --connect checks on their devices


async def _check_devices(mapping: Mapping, timeout: float) -> list[tuple[str, str, str, Any]]:
    """Every OPC-UA server and Modbus device of the file checked at once: (protocol, device, address,
    DeviceCheck or the error)."""

    async def opcua(conn: OpcuaConnection, assets: list) -> Any:
        from connectors.opcua.check import check_nodes
        from connectors.opcua.client import connected

        conn = conn.model_copy(update={"request_timeout_s": timeout})
        async with connected(conn, mapping.path, timeout) as client:
            return await check_nodes(client, assets, conn.namespace)

    async def modbus(conn: Any, assets: list) -> Any:
        from connectors.modbus.check import check_registers

        return await check_registers(conn, assets, timeout)

    jobs: list[tuple[str, str, str, Any]] = []
    for name, (conn, assets) in mapping.devices_of("opcua").items():
        jobs.append(("opcua", name, conn.endpoint, opcua(conn, assets)))
    for name, (conn, assets) in mapping.devices_of("modbus").items():
        jobs.append(("modbus", name, f"{conn.host}:{conn.port}", modbus(conn, assets)))
    results = await asyncio.gather(*(job for *_, job in jobs), return_exceptions=True)
    return [(protocol, name, where, r) for (protocol, name, where, _), r in zip(jobs, results, strict=True)]


def _print_summary(file: Path, mapping: Mapping) -> None:
    table = Table("protocol", "devices", "assets", "parameters", "writable setpoints")
    for protocol in PROTOCOLS:
        assets = mapping.of(protocol)
        if assets:
            params = [p for a in assets for p in a.params.values()]
            table.add_row(
                protocol,
                str(len(mapping.devices_of(protocol))),
                str(len(assets)),
                str(len(params)),
                str(sum(p.writable for p in params)),
            )
    n = sum(len(a.params) for a in mapping.assets)
    console.print(f"{escape(str(file))}: valid, {len(mapping.assets)} assets, {n} parameters", highlight=False)
    console.print(table)
