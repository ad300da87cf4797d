"""`twinflow demo`: the simulated plant through every layer, with a live view and a report.

Starts, as child processes: the plant simulator (OPC-UA server, Modbus TCP server, MQTT
device, per ``config/plant.toml``) with a fault schedule, the three protocol bridges, the
pipeline flow (ingest, twin and models in one: :mod:`flows.pipeline`) and the alerts flow
(recovery on). Shows per twin what lands, the
latest anomaly score and open alerts; at the end stops what it started, compares the alerts
with the injected faults (lead time, missed faults, false alarms) and writes an HTML report.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from connectors.stopping import STOP_WITHIN_S, check_stop, stop_on_signals, stop_with_parent
from twinflow.demo.fault_scoring import Evaluation
from twinflow.settings import PROJECT_ROOT, Settings, topic_fields

MAPPING = PROJECT_ROOT / "config" / "plant.toml"
# The fused flow (telemetry.raw read once) and the alerts flow; the separate flows give the same output.
FLOWS = ("pipeline", "alerts")
# A demo lasts minutes, a plant runs for months: the simulated devices sample at 4–20 Hz, so the
# models warm up and learn their healthy reference on fewer samples and adapt their baseline more
# slowly (in samples), and alerts open after 10 s instead of 60 s. Any of these can be overridden
# from the environment.
DEMO_TUNING = {
    "TWINFLOW_ML__ANOMALY__WARMUP": "150",
    "TWINFLOW_ML__ANOMALY__BASELINE_HALFLIFE": "20000",
    # the healthy reference (condition monitor, sensor health) is learned in the first 150 samples
    "TWINFLOW_ML__CONDITION__REFERENCE": "150",
    # a change of operating point (a Modbus device's registers read 0 until the simulator has written
    # them, then the setpoint) settles for 20 s instead of 3 min, or those twins never finish warming up
    "TWINFLOW_ML__OPERATING_POINT__SETTLE_S": "20",
    "TWINFLOW_ALERTS__RULES__ANOMALY__MIN_DURATION_S": "10",
    "TWINFLOW_ALERTS__RULES__ANOMALY__COOL_DOWN_S": "20",
    "TWINFLOW_ALERTS__RULES__CONDITION__MIN_DURATION_S": "10",
    "TWINFLOW_ALERTS__RULES__CONDITION__COOL_DOWN_S": "20",
    "TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S": "5",
    # Alarm limits: vibration at ISO 10816 zone C/D (7.1 mm/s), bearing/casing temperature 90 °C;
    # forecasts that cross them open `forecast_breach` alerts.
    "TWINFLOW_ML__LIMITS": '[{"sensor": "vibration_mm_s", "high": 7.1}, {"sensor": "temp_c", "high": 90}]',
}


@dataclass(frozen=True)
class Child:
    name: str
    args: list[str]


def print_evaluation(console: Console, ev: Evaluation) -> None:
    """The demo's verdict (twinflow/demo/fault_scoring.py): per fault its detection delay after the onset
    or its prediction lead before it, then every false alarm — an alert before a fault's onset that
    is not a prediction is one, never a detection."""
    summary = Table(title="alerts against the injected faults")
    for col in ("twin", "fault", "detected (delay after onset)", "predicted (lead before onset)", "alerts"):
        summary.add_column(col)
    for r in ev.results:
        detected = "[red]missed[/red]" if r.delay_s is None else f"yes, {r.delay_s:.0f} s after"
        predicted = "-" if r.lead_s is None else f"{r.lead_s:.0f} s before"
        kinds = ", ".join(a.kind for a in [*r.predictions, *r.alerts]) or "-"
        summary.add_row(r.fault.twin_id, r.fault.fault, detected, predicted, kinds)
    console.print(summary)
    if ev.false_alarms:
        table = Table(title="false alarms (no fault, or opened before a fault's onset and not a prediction)")
        for col in ("twin", "kind", "opened", "summary"):
            table.add_column(col)
        for a in ev.false_alarms:
            table.add_row(a.twin_id, a.kind, f"{a.opened_at:%H:%M:%S}", a.summary[:100])
        console.print(table)
    s = ev.summary
    console.print(
        f"{s['detected']}/{s['faults']} faults detected, {s['predicted']} predicted, {s['missed']} missed; "
        f"{s['false_alarms']} false alarms; {s['alerts']} alerts in all."
    )


def fault_schedule(duration: float) -> list[str]:
    """Faults on three twins (one per protocol) after the models' warm-up; the rest stay healthy."""
    onset, end = round(duration * 0.45), round(duration * 0.95)
    return [
        f"pump-001:bearing_wear:{onset}:{end}:3",
        f"compressor-002:overheating:{onset}:{end}:3",
        f"pump-003:valve_closure:{onset}:{end}:3",
    ]


def topic_env(settings: Settings, prefix: str) -> dict[str, str]:
    """TWINFLOW_* variables that rename every Kafka topic of the settings with ``prefix``."""
    return {
        f"TWINFLOW_{section.upper()}__{name.upper()}": prefix + topic for section, name, topic in topic_fields(settings)
    }


def _spawn(child: Child, env: dict[str, str], logs: Path) -> subprocess.Popen:
    log = open(logs / f"{child.name}.log", "wb")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        [sys.executable, "-m", "twinflow.cli.main", *child.args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=stop_with_parent,
    )


def _stop_all(procs: list[subprocess.Popen], timeout: float = STOP_WITHIN_S + 1) -> None:
    """SIGTERM the bridges, then the others (the bridges hand what they read to Kafka while their
    devices are still there); what still runs after ``timeout`` is killed."""
    deadline = time.monotonic() + timeout
    bridges = [p for p in procs if "bridge" in p.args]
    for group in (bridges, [p for p in procs if p not in bridges]):
        for p in group:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in group:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _web_view(settings: Settings, logs: Path) -> tuple[Child, dict[str, str], str]:
    """`twinflow serve` for the demo: a token for the local user and a free port; returns the child,
    its environment and the URL to open (the token travels in the URL's fragment, never to the server)."""
    import getpass
    import socket

    from twinflow.api.tokens import TokenStore

    port = settings.api.port
    with socket.socket() as sock:
        if sock.connect_ex((settings.api.host, port)) == 0:  # taken: any free port
            with socket.socket() as free:
                free.bind((settings.api.host, 0))
                port = free.getsockname()[1]
    path = logs / "api-tokens.toml"
    store = TokenStore([])
    token, _ = store.issue(os.environ.get("USER") or getpass.getuser())  # the dev identity's subject
    store.save(path)
    env = {"TWINFLOW_API__TOKENS_FILE": str(path), "TWINFLOW_API__PORT": str(port)}
    return Child("serve", ["serve"]), env, f"http://{settings.api.host}:{port}/#token={token}"


def _view(
    db: psycopg.Connection,
    twins: list[str],
    since: datetime,
    elapsed: float,
    duration: float,
    faults: list[str],
    url: str = "",
) -> Table:
    rows = db.execute(
        "SELECT t.twin_id, t.n, t.sensors, s.score, s.is_anomaly, coalesce(a.open, 0) "
        "FROM (SELECT twin_id, count(*) AS n, count(DISTINCT sensor) AS sensors FROM telemetry "
        "      WHERE ts >= %(since)s AND twin_id = ANY(%(twins)s) GROUP BY twin_id) t "
        "LEFT JOIN LATERAL (SELECT score, is_anomaly FROM anomaly_scores s WHERE s.twin_id = t.twin_id "
        "      AND twinflow_model_source(s.model) = 'twinflow' AND s.ts >= %(since)s"
        "      ORDER BY ts DESC LIMIT 1) s ON true "
        "LEFT JOIN (SELECT twin_id, count(*) AS open FROM alerts WHERE opened_at >= %(since)s "
        "      AND state <> 'resolved' GROUP BY twin_id) a ON a.twin_id = t.twin_id "
        "ORDER BY t.twin_id",
        {"since": since, "twins": twins},
    ).fetchall()
    faulty = {f.split(":")[0]: f.split(":")[1] for f in faults}
    onset = float(faults[0].split(":")[2]) if faults else duration
    table = Table(
        title=f"twinflow plant demo — {elapsed:4.0f}/{duration:.0f} s (faults from {onset:.0f} s)",
        caption=(f"web view: {url.split('#')[0]} (its link with your token is above the table); " if url else "")
        + "anomaly: the latest score, ⚠ while an anomaly episode is open",
    )
    table.add_column("twin", min_width=14, no_wrap=True)
    for col in ("values", "sensors", "anomaly", "alerts"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("injected fault", no_wrap=True)
    for twin, n, sensors, score, is_anom, open_alerts in rows:
        shown = "warm-up" if score is None else f"{min(score, 999.0):.2f}" + (" ⚠" if is_anom else "")
        fault = faulty.get(twin, "") if elapsed >= onset else ""
        table.add_row(twin, str(n), str(sensors), shown, str(open_alerts), fault)
    return table


def _cleanup(console: Console, what: str, fn, *args) -> None:
    """Run a clean-up step of the demo's end; a failure is reported in a line (the demo's outcome stands)."""
    try:
        fn(*args)
    except Exception as exc:  # e.g. Kafka gone: say what is left, no traceback
        console.print(f"[yellow]could not remove {what}: {exc}[/yellow]")


def _last_lines(path: Path, n: int = 3) -> str:
    """The last ``n`` lines of a child's log (why it stopped), or a note that it wrote none."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:]) if lines else "(an empty log)"


def _with_mqtt_port(text: str, port: int) -> str:
    r"""The mapping ``text`` with the ``port`` of its ``[mqtt]`` section set to ``port``.

    >>> _with_mqtt_port('[mqtt]\nhost = "h"\nport = 1883\n\n[modbus]\nport = 502\n', 11883)
    '[mqtt]\nhost = "h"\nport = 11883\n\n[modbus]\nport = 502\n'
    """
    section = re.compile(r"(?m)^\[mqtt\]\n(?:[^\[].*\n|\n)*")
    return section.sub(lambda m: re.sub(r"(?m)^port = \d+", f"port = {port}", m.group(0), count=1), text, count=1)


def run_plant_demo(
    settings: Settings, *, duration: float, console: Console, out_dir: Path, mapping: Path = MAPPING
) -> int:
    import shutil
    import uuid

    from connectors.bridges.mapping.loading import load_mapping
    from connectors.kafka.clients import delete_topics, ensure_topics, topic_specs
    from twinflow.demo.isolation import DemoDatabaseError, drivable_policy, fresh_demo_database, with_run_topics
    from twinflow.demo.report import write_report
    from twinflow.settings import load_settings

    stop = stop_on_signals()
    check_stop("starting the demo")
    twins = [a.twin_id for a in load_mapping(mapping).assets]
    run = uuid.uuid4().hex[:6]
    logs = settings.stack.dir / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    ground_truth = logs / "ground-truth.jsonl"
    ground_truth.unlink(missing_ok=True)
    recovery = logs / f"recovery-{run}"
    faults = [f for f in fault_schedule(duration) if f.split(":")[0] in twins]
    # A run of its own on MQTT too: the bridge's persistent session would otherwise hand this run the
    # readings queued for it since an earlier run (stale minutes that the models would learn from),
    # and a deployment's bridge on the plant's topics would collect this run's.
    run_mapping = logs / f"plant-{run}.toml"
    text = mapping.read_text()
    if mapping == MAPPING:  # the bundled plant talks to the local stack's broker, on whatever port it has
        text = with_run_topics(_with_mqtt_port(text, settings.mqtt.port), run)
    if "client_id" not in text:
        text = text.replace("[mqtt]\n", f'[mqtt]\nclient_id = "twinflow-demo-{run}"\n', 1)
    run_mapping.write_text(text)
    mapping = run_mapping
    try:  # its own database, emptied: twin versions, alerts and desired values of no other run
        dbname = fresh_demo_database(settings)
    except DemoDatabaseError as exc:
        mapping.unlink(missing_ok=True)
        console.print(f"[red]{exc}[/red]")
        return 1
    # A run of its own: fresh topics and model state, so earlier runs do not leak into this one.
    env = {
        **os.environ,
        **topic_env(settings, f"demo.{run}."),
        "TWINFLOW_POSTGRES__DBNAME": dbname,
        "TWINFLOW_SIM__GROUND_TRUTH_FILE": str(ground_truth),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(recovery),
    }
    for var, value in DEMO_TUNING.items():
        env.setdefault(var, value)
    if "policy" not in settings.twin.model_fields_set:  # none configured (file or variable)
        env["TWINFLOW_TWIN__POLICY"] = drivable_policy(mapping)  # the web view's setpoint form drives the plant
    web, web_env, url = _web_view(settings, logs)
    env.update(web_env)
    children = [
        *(Child(f"flow-{f}", ["run", f]) for f in FLOWS),
        Child(
            "simulator",
            [
                "simulate",
                "--mapping",
                str(mapping),
                "--duration",
                str(duration + 5),
                *[a for f in faults for a in ("--fault", f)],
            ],
        ),
        *(Child(f"bridge-{p}", ["bridge", p, "--mapping", str(mapping)]) for p in ("opcua", "mqtt", "modbus")),
        web,
    ]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        demo_settings = load_settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    demo_topics = [t.name for t in topic_specs(demo_settings)]
    since = datetime.now(UTC)
    procs: list[subprocess.Popen] = []
    with ExitStack() as stack:  # its callbacks run last first, also when the demo ends early
        stack.callback(mapping.unlink, missing_ok=True)
        stack.callback(shutil.rmtree, recovery, ignore_errors=True)
        stack.callback(_cleanup, console, "its Kafka topics", delete_topics, demo_settings, demo_topics)
        ensure_topics(demo_settings)
        db = stack.enter_context(psycopg.connect(demo_settings.postgres.conninfo(), autocommit=True))
        stack.callback(_stop_all, procs)
        check_stop("preparing the demo")  # its topics and database are cleaned up
        for child in children:
            procs.append(_spawn(child, env, logs))
        t0 = time.monotonic()
        console.print(f"[bold]web view (live while the demo runs):[/bold] {url}", soft_wrap=True)
        with Live(console=console, refresh_per_second=1) as live:
            while (elapsed := time.monotonic() - t0) < duration and not stop.is_set():
                dead = [c.name for c, p in zip(children, procs, strict=True) if p.poll() not in (None, 0)]
                if dead:
                    console.print(f"[red]{', '.join(dead)} stopped early (logs in {logs}):[/red]")
                    for name in dead:
                        console.print(f"{name}: {_last_lines(logs / f'{name}.log')}", markup=False)
                    return 1
                live.update(_view(db, twins, since, elapsed, duration, faults, url))
                stop.wait(1.0)
            stop.wait(5)  # let the last readings and alerts land
            live.update(_view(db, twins, since, time.monotonic() - t0, duration, faults, url))
        if not console.is_terminal:  # a log file: the last frame ends without a line break
            console.print()
    until = datetime.now(UTC)
    if stop.is_set():
        console.print(f"demo stopped by signal: its {len(procs)} processes were stopped (logs in {logs}); no report")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.html"
    ev = write_report(demo_settings.postgres.conninfo(), ground_truth, since, until, report, twins)
    print_evaluation(console, ev)
    console.print(f"Report: {report.resolve()}  (logs in {logs})")
    console.print(
        f"The run's rows stay in the database {dbname} until the next demo "
        f"(e.g. `TWINFLOW_POSTGRES__DBNAME={dbname} twinflow alerts list --state all`). "
        "The stack keeps running: `twinflow stack down` stops it."
    )
    return 0
