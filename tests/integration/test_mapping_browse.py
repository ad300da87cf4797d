"""`twinflow mapping browse-opcua` and `twinflow mapping check` as a user runs them, against the
project's simulator and a third-party server (node-opcua, its own Node.js process): browse → mapping
skeleton → `check --connect` → a bridge on the written file puts the values on Kafka; an
unreachable or silent endpoint and a mapping with nodes that do not exist fail with exit 1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.bridges.mapping.loading import load_mapping
from operators.records.envelope import decode
from tests.interop_nodes import NodeProcess
from tests.process_helpers import start_twinflow, stop

from .plant_helpers import consume, free_port, private_settings, write_mapping

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def twinflow(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it (wide terminal: messages on one line)."""
    return subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "300", "PYTHONPATH": str(ROOT), **env},
    )


# ----------------------------------------------------------------------------- the simulator
SIM_TOML = """
[opcua]
endpoint = "opc.tcp://127.0.0.1:{port}/twinflow/"
namespace = "urn:twinflow:browse:{uid}"

[[assets]]
twin_id = "pump-br-{uid}"
type = "pump"
protocol = "opcua"
[assets.params]
speed_sp_rpm = {{ node = "ns=2;s=br-{uid}.speed_sp_rpm", writable = true }}
speed_rpm = {{ node = "ns=2;s=br-{uid}.speed_rpm" }}
flow_m3h = {{ node = "ns=2;s=br-{uid}.flow_m3h" }}

[[assets]]
twin_id = "compressor-br-{uid}"
type = "compressor"
protocol = "opcua"
[assets.params]
speed_rpm = {{ browse_path = ["Hall {uid}", "Line A", "Speed (rpm)"] }}
temp_c = {{ browse_path = ["Hall {uid}", "Line A", "1st stage temp °C"] }}
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from connectors.sim.runner import Simulator

    tmp = tmp_path_factory.mktemp("browse-sim")
    uid = uuid.uuid4().hex[:8]
    port = free_port()
    settings = private_settings(tmp, uid)
    simulator = Simulator(settings, write_mapping(tmp, SIM_TOML.format(port=port, uid=uid)), protocols=("opcua",))
    simulator.start()
    try:
        yield {"uid": uid, "tmp": tmp, "settings": settings, "endpoint": f"opc.tcp://127.0.0.1:{port}/twinflow/"}
    finally:
        simulator.stop()


def test_simulator_browse_write_check_and_bridge_round_trip(sim) -> None:
    uid, tmp, settings = sim["uid"], sim["tmp"], sim["settings"]
    out = tmp / "from-server.toml"
    run = twinflow("mapping", "browse-opcua", sim["endpoint"], "--json", "--mapping-out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    found = {tuple(v["browse_path"]): v for v in json.loads(run.stdout)["variables"]}
    sp = found[(f"pump-br-{uid}", "speed_sp_rpm")]
    assert sp["node"] == f"nsu=urn:twinflow:browse:{uid};s=br-{uid}.speed_sp_rpm"
    assert sp["data_type"] == "Double" and sp["writable"] and isinstance(sp["value"], float)
    assert not found[(f"pump-br-{uid}", "speed_rpm")]["writable"]
    assert (f"Hall {uid}", "Line A", "Speed (rpm)") in found

    # The skeleton loads with the bridges' own loader: names fitted to the twin and sensor patterns.
    mapping = load_mapping(out)
    assets = {a.twin_id: a for a in mapping.assets}
    assert set(assets) == {f"pump-br-{uid}", "Line-A"}
    pump = assets[f"pump-br-{uid}"].params
    assert set(pump) == {"speed_sp_rpm", "speed_rpm", "flow_m3h"}
    assert pump["speed_sp_rpm"].writable and not pump["speed_rpm"].writable
    assert set(assets["Line-A"].params) == {"Speed_rpm", "_1st_stage_temp_C"}
    assert mapping.opcua.endpoint == sim["endpoint"]

    check = twinflow("mapping", "check", str(out), "--connect")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "5 of 5 nodes found and readable, 1 setpoints" in check.stdout

    # A bridge on the written file: values of both derived twins reach Kafka.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TWINFLOW_TOPICS__RAW": settings.topics.raw,
        "TWINFLOW_TOPICS__DLQ": settings.topics.dlq,
        "TWINFLOW_TWIN__COMMANDS_TOPIC": settings.twin.commands_topic,
        "TWINFLOW_TWIN__ACKS_TOPIC": settings.twin.acks_topic,
        "TWINFLOW_BRIDGE__COMMAND_GROUP": settings.bridge.command_group,
        "TWINFLOW_BRIDGE__BUFFER__SPILL_DIR": str(tmp / "bridge-buffer"),
    }
    twins = {f"pump-br-{uid}".encode(), b"Line-A"}
    with open(tmp / "bridge.log", "wb") as log:
        bridge = start_twinflow(["bridge", "opcua", "--mapping", str(out)], env, log)
        try:
            msgs = consume(settings, settings.topics.raw, lambda ms: twins <= {m.key() for m in ms}, 30)
        finally:
            code = stop(bridge)
    assert twins <= {m.key() for m in msgs}, (tmp / "bridge.log").read_text()
    assert code == 0, (tmp / "bridge.log").read_text()
    readings = {k for m in msgs for k in decode(m.value(), key=m.key()).readings}
    assert {"speed_rpm", "flow_m3h", "Speed_rpm"} <= readings


PARTIAL_TOML = """
[opcua]
endpoint = "opc.tcp://127.0.0.1:{closed}/elsewhere/"

[devices.line1]
protocol = "opcua"
endpoint = "{endpoint}"
namespace = "urn:twinflow:browse:{uid}"

[[assets]]
twin_id = "my-pump-{uid}"
type = "pump"
protocol = "opcua"
device = "line1"
[assets.params]
speed = {{ node = "nsu=urn:twinflow:browse:{uid};s=br-{uid}.speed_rpm" }}
sp = {{ node = "ns=2;s=br-{uid}.speed_sp_rpm", writable = true }}

[[assets]]
twin_id = "line-a-{uid}"
type = "compressor"
protocol = "opcua"
device = "line1"
[assets.params]
temp = {{ browse_path = ["Hall {uid}", "Line A", "1st stage temp °C"] }}
ghost = {{ browse_path = ["Hall {uid}", "Line A", "Ghost"] }}
"""


def test_browse_with_a_mapping_marks_what_it_maps_and_writes_the_rest(sim) -> None:
    """`--mapping FILE`: the connection of the file's device (loaded by the bridges' loader), the variables
    it maps marked, `--mapping-out` only the others (an object's new parameters under its asset's twin id)."""
    uid, tmp = sim["uid"], sim["tmp"]
    partial = tmp / "partial.toml"
    partial.write_text(PARTIAL_TOML.format(endpoint=sim["endpoint"], uid=uid, closed=free_port()))
    out = tmp / "rest.toml"
    run = twinflow("mapping", "browse-opcua", "--mapping", str(partial), "--json", "--mapping-out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    mapped = {tuple(v["browse_path"]): v["mapped"] for v in json.loads(run.stdout)["variables"]}
    assert mapped[(f"pump-br-{uid}", "speed_rpm")] == f"my-pump-{uid}.speed"
    assert mapped[(f"pump-br-{uid}", "speed_sp_rpm")] == f"my-pump-{uid}.sp"
    assert mapped[(f"Hall {uid}", "Line A", "1st stage temp °C")] == f"line-a-{uid}.temp", run.stderr
    assert mapped[(f"pump-br-{uid}", "flow_m3h")] is None and mapped[(f"Hall {uid}", "Line A", "Speed (rpm)")] is None
    assert f"1 parameters of {partial} are not on the server (line-a-{uid}.ghost)" in run.stderr
    assert "left out 3 variables" in run.stderr

    rest = load_mapping(out)
    assert {a.twin_id: set(a.params) for a in rest.assets} == {
        f"my-pump-{uid}": {"flow_m3h"},
        f"line-a-{uid}": {"Speed_rpm"},
    }
    assert rest.opcua.endpoint == sim["endpoint"]
    assert f"Only what {partial} does not map yet (3 variables it maps are left out)" in out.read_text()
    check = twinflow("mapping", "check", str(out), "--connect")
    assert check.returncode == 0 and "2 of 2 nodes found and readable" in check.stdout, check.stdout + check.stderr

    table = twinflow("mapping", "browse-opcua", "-m", str(partial), "--device", "line1")
    assert table.returncode == 0, table.stderr
    assert f"mapped: my-pump-{uid}.sp, setpoint" in table.stdout
    assert f"3 mapped in {partial}" in table.stdout


def test_browse_with_a_mapping_usage_mistakes(sim) -> None:
    tmp, uid = sim["tmp"], sim["uid"]
    two = tmp / "two-devices.toml"
    two.write_text(
        PARTIAL_TOML.format(endpoint=sim["endpoint"], uid=uid, closed=free_port())
        + f'\n[devices.line2]\nprotocol = "opcua"\nendpoint = "{sim["endpoint"]}"\n'
    )
    cases = {
        ("--mapping", str(two)): "2 opcua devices (line1, line2): pick one with --device",
        ("--mapping", str(two), "--device", "line9"): "no opcua device 'line9' (--device line1, line2, opcua;",
        (sim["endpoint"], "--mapping", str(two)): "not both",
        ("--mapping", str(two), "--device", "line1", "--username", "x"): "--username not allowed with it",
        ("--device", "line1"): "--device picks a device of a --mapping file",
        (): "give the server's endpoint",
        ("--mapping", str(tmp / "missing.toml")): "cannot read the file",
    }
    for args, expected in cases.items():
        run = twinflow("mapping", "browse-opcua", *args)
        assert run.returncode == 2 and expected in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr


# ----------------------------------------------------------------------------- node-opcua
@pytest.fixture(scope="module")
def node_server() -> Iterator[dict]:
    port = free_port()
    uri = f"urn:twinflow:interop:browse:{uuid.uuid4().hex[:6]}"
    server = NodeProcess("opcua_server.js", port, uri, "Pump1")
    try:
        server.wait_for("READY", 60)
        yield {"endpoint": f"opc.tcp://127.0.0.1:{port}/UA/interop", "uri": uri, "server": server}
    finally:
        server.stop()


def test_node_opcua_browse_to_a_mapping_that_checks(node_server, tmp_path: Path) -> None:
    uri, out = node_server["uri"], tmp_path / "pump1.toml"
    run = twinflow("mapping", "browse-opcua", node_server["endpoint"], "--json", "--mapping-out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(run.stdout)
    assert doc["namespaces"].index(uri) == 3  # behind node-opcua's decoy: only nsu= ids are portable
    found = {v["browse_path"][-1]: v for v in doc["variables"]}
    assert {k: found[k]["data_type"] for k in ("Flow", "Running", "Speed", "Mode", "Setpoint")} == {
        "Flow": "Double",
        "Running": "Boolean",
        "Speed": "Int32",
        "Mode": "String",
        "Setpoint": "Double",
    }
    assert found["Flow"]["browse_path"] == ["Line1", "Pump1", "Flow"]
    assert found["Flow"]["node"] == f"nsu={uri};s=Pump1.Flow"
    assert found["Temperature"]["status"] == "BadSensorFailure" and found["Temperature"]["value"] is None
    assert found["Setpoint"]["writable"] and found["Mode"]["value"] == "AUTO"

    mapping = load_mapping(out)
    (asset,) = mapping.assets  # Line1 holds no variable of its own: no asset
    assert asset.twin_id == "Pump1"
    assert set(asset.params) == {"Flow", "Running", "Speed", "Mode", "Temperature", "Setpoint", "Enable", "Stage"}
    assert asset.params["Setpoint"].writable and asset.params["Enable"].writable and asset.params["Stage"].writable
    assert not asset.params["Mode"].writable  # a writable text is no setpoint

    check = twinflow("mapping", "check", str(out), "--connect")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "8 of 8 nodes found and readable" in check.stdout
    assert "BadSensorFailure" in check.stdout  # a note, not a failure


def test_check_connect_names_each_node_that_is_not_there(node_server, tmp_path: Path) -> None:
    uri, path = node_server["uri"], tmp_path / "ghosts.toml"
    path.write_text(f"""
[opcua]
endpoint = "{node_server["endpoint"]}"
namespace = "{uri}"

[[assets]]
twin_id = "pump-1"
type = "pump"
protocol = "opcua"
[assets.params]
flow = {{ node = "nsu={uri};s=Pump1.Flow" }}
ghost = {{ node = "nsu={uri};s=Pump1.Ghost" }}
elsewhere = {{ node = "nsu=urn:twinflow:nowhere;s=Pump1.Flow" }}
lost = {{ browse_path = ["Line1", "Pump1", "Nope"] }}
""")
    run = twinflow("mapping", "check", str(path), "--connect")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "1 of 4 nodes found and readable" in out
    assert f"pump-1.ghost (node nsu={uri};s=Pump1.Ghost): not on the server (BadNodeIdUnknown)" in out
    assert "pump-1.elsewhere" in out and "urn:twinflow:nowhere" in out
    assert "pump-1.lost (node Line1/Pump1/Nope): not on the server: browse path not found" in out
    assert "Traceback" not in out


def test_max_nodes_stops_the_browse_and_says_so(node_server) -> None:
    run = twinflow("mapping", "browse-opcua", node_server["endpoint"], "--max-nodes", "3", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["stopped_early"] and doc["nodes"] == 3
    assert "stopped early: --max-nodes 3 reached" in run.stderr


# ----------------------------------------------------------------------------- security
def test_browse_with_certificates_and_login_writes_a_secure_mapping(tmp_path: Path) -> None:
    from connectors.opcua.certs import generate_pair
    from connectors.sim.runner import Simulator

    uid = uuid.uuid4().hex[:8]
    port, certs = free_port(), generate_pair(tmp_path / "certs")
    server = "\n".join(
        f'{k} = "{certs[k]}"' for k in ("server_certificate", "server_private_key", "trusted_certificates")
    )
    mapping = write_mapping(
        tmp_path,
        f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{port}/twinflow/"\nsecurity = "Basic256Sha256_SignAndEncrypt"\n'
        f'{server}\nusername = "operator"\npassword = "pw-{uid}"\n\n[[assets]]\ntwin_id = "pump-sec-{uid}"\n'
        f'type = "pump"\nprotocol = "opcua"\n[assets.params]\nspeed_rpm = {{ node = "ns=2;s=sec-{uid}.speed_rpm" }}\n',
    )
    sim = Simulator(private_settings(tmp_path, uid), mapping, protocols=("opcua",)).start()
    try:
        endpoint, out = f"opc.tcp://127.0.0.1:{port}/twinflow/", tmp_path / "secure-out.toml"
        plain = twinflow("mapping", "browse-opcua", endpoint)
        assert plain.returncode == 1 and "another security mode" in plain.stderr, plain.stderr
        secure = [
            *("mapping", "browse-opcua", endpoint, "--security", "Basic256Sha256_SignAndEncrypt"),
            *("--certificate", str(certs["certificate"]), "--private-key", str(certs["private_key"])),
            *("--username", "operator", "--mapping-out", str(out)),
        ]
        refused = twinflow(*secure, TWINFLOW_OPCUA_PASSWORD="wrong")
        run = twinflow(*secure, TWINFLOW_OPCUA_PASSWORD=f"pw-{uid}")
        assert refused.returncode == 1 and "BadUserAccessDenied" in refused.stderr, refused.stderr
        assert run.returncode == 0 and f"sec-{uid}.speed_rpm" in run.stdout, run.stdout + run.stderr
        text = out.read_text()
        assert f"pw-{uid}" not in text and "add `password = …` to [opcua]" in run.stderr
        conn = load_mapping(out).opcua
        assert (conn.security, conn.certificate, conn.username) == (
            "Basic256Sha256_SignAndEncrypt",
            certs["certificate"].resolve(),
            "operator",
        )
        out.write_text(text.replace('username = "operator"', f'username = "operator"\npassword = "pw-{uid}"'))
        check = twinflow("mapping", "check", str(out), "--connect")
        assert check.returncode == 0 and "1 of 1 nodes found and readable" in check.stdout, check.stdout + check.stderr
    finally:
        sim.stop()


def test_browse_with_a_secure_mapping_connects_as_its_bridge(tmp_path: Path) -> None:
    """The bridge's own secured mapping (SignAndEncrypt, certificates relative to the file, a login)
    is all `browse-opcua --mapping` needs; the skeleton of the rest keeps the security, not the password."""
    from connectors.opcua.certs import generate_pair
    from connectors.sim.runner import Simulator

    from .test_opcua_security import secure_toml

    uid, port = uuid.uuid4().hex[:8], free_port()
    certs = generate_pair(tmp_path / "certs")
    sim = Simulator(
        private_settings(tmp_path, uid),
        write_mapping(tmp_path, secure_toml(uid, port, certs, "Basic256Sha256_SignAndEncrypt"), "server.toml"),
        protocols=("opcua",),
    ).start()
    try:
        bridge_file = tmp_path / "bridge.toml"
        bridge_file.write_text(
            f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{port}/twinflow/"\nsecurity = "Basic256Sha256_SignAndEncrypt"\n'
            'certificate = "certs/client-cert.der"\nprivate_key = "certs/client-key.pem"\n'
            f'username = "operator"\npassword = "s3cret-{uid}"\n\n[[assets]]\ntwin_id = "pump-sec-{uid}"\n'
            f'type = "pump"\nprotocol = "opcua"\n[assets.params]\n'
            f'speed_rpm = {{ node = "ns=2;s=sec-{uid}.speed_rpm" }}\n'
        )
        out = tmp_path / "rest.toml"
        run = twinflow("mapping", "browse-opcua", "--mapping", str(bridge_file), "--json", "--mapping-out", str(out))
        assert run.returncode == 0, run.stdout + run.stderr
        mapped = {v["browse_path"][-1]: v["mapped"] for v in json.loads(run.stdout)["variables"]}
        assert mapped == {"speed_rpm": f"pump-sec-{uid}.speed_rpm", "flow_m3h": None}
        text = out.read_text()
        assert f"s3cret-{uid}" not in text and "add `password = …` to [opcua]" in run.stderr
        rest = load_mapping(out)
        assert [set(a.params) for a in rest.assets] == [{"flow_m3h"}]
        assert (rest.opcua.security, rest.opcua.certificate, rest.opcua.username) == (
            "Basic256Sha256_SignAndEncrypt",
            certs["certificate"].resolve(),
            "operator",
        )
        # A file without the password (written at deploy time): TWINFLOW_OPCUA_PASSWORD gives it.
        bridge_file.write_text(bridge_file.read_text().replace(f'password = "s3cret-{uid}"\n', ""))
        refused = twinflow("mapping", "browse-opcua", "--mapping", str(bridge_file))
        assert refused.returncode == 1 and "BadUserAccessDenied" in refused.stderr, refused.stderr
        given = twinflow("mapping", "browse-opcua", "-m", str(bridge_file), TWINFLOW_OPCUA_PASSWORD=f"s3cret-{uid}")
        assert given.returncode == 0 and f"mapped: pump-sec-{uid}.speed_rpm" in given.stdout, given.stderr
    finally:
        sim.stop()


# ----------------------------------------------------------------------------- failures
def test_unreachable_and_silent_endpoints_fail_fast_without_traceback(tmp_path: Path) -> None:
    """Each run ends on its own (the helper's 60 s timeout fails a hang): a closed port at once with
    "connection refused", a silent peer after its `--timeout` (the message names it)."""
    closed = free_port()
    run = twinflow("mapping", "browse-opcua", f"opc.tcp://127.0.0.1:{closed}/x")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"cannot connect to opc.tcp://127.0.0.1:{closed}/x: connection refused" in run.stderr
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        run = twinflow("mapping", "browse-opcua", f"opc.tcp://127.0.0.1:{port}/x", "--timeout", "1")
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert "no answer within 1 s" in run.stderr
        mapping = tmp_path / "silent.toml"
        mapping.write_text(
            f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{port}/x"\n\n[[assets]]\ntwin_id = "p-1"\ntype = "pump"\n'
            'protocol = "opcua"\n[assets.params]\nflow = { node = "ns=2;s=Flow" }\n'
        )
        run = twinflow("mapping", "check", str(mapping), "--connect", "--timeout", "1")
        assert run.returncode == 1 and "no answer within 1 s" in run.stderr, run.stdout + run.stderr
    usage = twinflow("mapping", "browse-opcua", "http://plc:4840")
    assert usage.returncode == 2 and "is not an OPC-UA endpoint" in usage.stderr


# ----------------------------------------------------------------------------- Modbus (jsmodbus)
MB_CHECK_TOML = """
[modbus]
host = "127.0.0.1"
port = {port}

[[assets]]
twin_id = "pump-mb"
type = "pump"
protocol = "modbus"
[assets.params]
level = {{ register = "holding", address = 0, type = "float32", min = 0, max = 100 }}
setpoint = {{ register = "holding", address = 19, writable = true }}
pressure = {{ register = "input", address = 2, type = "float32", word_order = "little", min = 0, max = 1000 }}
count = {{ register = "input", address = 0 }}
beyond = {{ register = "holding", address = 30 }}
"""


def test_check_connect_reads_each_modbus_register_and_names_what_is_wrong(tmp_path: Path) -> None:
    """A third-party Modbus device (jsmodbus): a value outside min/max names the word order to try, a
    register past the device's map is named, values nothing judges are shown, nothing is written."""
    port = free_port()
    device = NodeProcess("modbus_server.js", port)
    try:
        device.wait_for("READY", 30)
        mapping = tmp_path / "mb.toml"
        mapping.write_text(MB_CHECK_TOML.format(port=port))
        run = twinflow("mapping", "check", str(mapping), "--connect", "--timeout", "2")
        out = run.stdout + run.stderr
        assert run.returncode == 1 and "Traceback" not in out, out
        assert f"modbus device 'modbus' (127.0.0.1:{port}): 3 of 5 parameters read and decoded, 1 setpoints" in out
        assert "pump-mb.pressure (at unit 1 input 2..3): reads -1.88337e+25, outside min 0 / max 1000: try" in out
        assert "pump-mb.beyond (at unit 1 holding 30):" in out
        assert "pump-mb reads setpoint=100 count=1234 (no min/max: judge them)" in out
        assert "1 setpoints read, not written" in out
        assert not [line for line in device.lines if line.startswith("WRITE")]
        device.stop()
        down = twinflow("mapping", "check", str(mapping), "--connect", "--timeout", "1")
        assert down.returncode == 1 and f"cannot connect to 127.0.0.1:{port}" in down.stderr, down.stderr
    finally:
        device.stop()
