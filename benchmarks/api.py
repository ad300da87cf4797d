"""HTTP API benchmark (docs/api.md): ``GET /api/v1/twins/{id}`` latency at a fixed request rate over
10,000 twins, and server-sent events fan-out: delivery time to N clients at M state changes/s.

Everything runs on this machine: a private database seeded with the twins' states, private topics,
``twinflow serve`` as its own process, and load generators written on raw asyncio sockets (HTTP/1.1
keep-alive) so the client costs little CPU next to the server. Requests are sent open-loop on a
fixed schedule; latency is counted from the scheduled time (a late send counts against the server).
SSE delivery time = receive time − the Kafka timestamp of the state record (in the event id).

    python -m benchmarks.api --twins 10000 --rate 500 --seconds 30 --clients 200 --changes 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from array import array
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.machine import append_result
from benchmarks.processes import cleaning_up, interruptible, stop, usage
from connectors.kafka.clients import delete_topics, ensure_topics, make_producer
from connectors.postgres.migrate import migrate
from flows.twin_settings import TwinSettings
from twinflow.api.tokens import TokenStore
from twinflow.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _superuser(s: Settings) -> str:
    return s.postgres.conninfo(
        user="postgres", password=s.stack.postgres_superuser_password.get_secret_value(), dbname="postgres"
    )


def state_doc(twin: str, version: int, now: datetime) -> dict:
    ts = now.isoformat()
    reported = {
        p: {"value": 1000.0 + i, "ts": ts}
        for i, p in enumerate(("speed", "temp_c", "pressure_bar", "flow_m3h", "vibration_mm_s"))
    }
    return {
        "twin_id": twin,
        "version": version,
        "event_time": ts,
        "status": "synchronized",
        "mode": "normal",
        "learn": True,
        "reported": reported,
        "desired": {"speed": {"value": 1000.0, "ts": ts, "author": "bench"}},
        "delta": {"speed": 0.0},
        "conflicts": [],
        "commands": {},
        "last_sync_time": ts,
        "sync_latency_ms": 120.0,
        "consistency_score": 1.0,
        "desync_since": None,
        "simulated": {},
    }


SEED_COPY = (
    "COPY twin_state_history (twin_id, version, event_time, status, mode, learn, reported, desired, delta,"
    " conflicts, commands, consistency_score, sync_latency_ms, last_sync_time, change) FROM STDIN"
)


def seed(conninfo: str, twins: list[str], versions: int) -> None:
    now = datetime.now(UTC)
    with (
        psycopg.connect(conninfo) as conn,
        conn.cursor() as cur,
        cur.copy(SEED_COPY) as cp,
    ):
        for t in twins:
            for v in range(1, versions + 1):
                d = state_doc(t, v, now)
                cp.write_row(
                    (
                        t,
                        v,
                        now,
                        "synchronized",
                        "normal",
                        True,
                        json.dumps(d["reported"]),
                        json.dumps(d["desired"]),
                        json.dumps(d["delta"]),
                        [],
                        "{}",
                        1.0,
                        120.0,
                        now,
                        json.dumps({"cause": "bench"}),
                    )
                )


# ------------------------------------------------------------------ raw HTTP/1.1 client
class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    async def get(self, request: bytes) -> int:
        self.w.write(request)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.r.readexactly(length)
        return status


async def latency_run(port: int, token: str, twins: list[str], rate: float, seconds: float, conns: int) -> dict:
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(Conn(*await asyncio.open_connection("127.0.0.1", port)))
    auth = f"Authorization: Bearer {token}\r\n".encode()
    lat: list[float] = []
    errors = 0
    total = int(rate * seconds)
    t0 = time.perf_counter() + 0.5

    async def one(i: int) -> None:
        nonlocal errors
        due = t0 + i / rate
        twin = random.choice(twins)
        conn = await pool.get()
        try:
            status = await conn.get(f"GET /api/v1/twins/{twin} HTTP/1.1\r\nHost: x\r\n".encode() + auth + b"\r\n")
            if status != 200:
                errors += 1
            lat.append(time.perf_counter() - due)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            pool.put_nowait(conn)

    tasks = []
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000  # noqa: E731
    return {
        "requests": total,
        "errors": errors,
        "achieved": total / wall,
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "max": lat[-1] * 1000,
    }


# ------------------------------------------------------------------ SSE fan-out
_ID = re.compile(rb"\nid: (\d+)-")


class SseCounter(asyncio.Protocol):
    """One SSE client on a raw socket: finds the ids' timestamps in the bytes as they arrive (no SSE or
    chunked-encoding parsing, no copies but the unfinished last line); delay = arrival − timestamp."""

    def __init__(self, request: bytes, delays: array, ready: asyncio.Future) -> None:
        self.request, self.delays, self.ready = request, delays, ready
        self.head = b""
        self.tail = b""
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.ready.done():
            self.head += data
            cut = self.head.find(b"\r\n\r\n")
            if cut < 0:
                return
            self.ready.set_result(int(self.head[9:12]))
            data, self.head = self.head[cut + 2 :], b""
        if self.tail:
            data = self.tail + data
        last = data.rfind(b"\n")  # an id line is complete once a later line has begun
        self.tail = data[last:]
        self.delays.extend(now - int(ts) / 1000 for ts in _ID.findall(data, 0, last))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the response"))
        self.closed.set_result(None)


async def _clients(port: int, token: str, paths: list[str], ready_q, stop) -> bytes:
    loop = asyncio.get_running_loop()
    delays = array("d")
    conns = []
    for path in paths:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        ready = loop.create_future()
        transport, proto = await loop.create_connection(
            lambda r=request, f=ready: SseCounter(r, delays, f), "127.0.0.1", port
        )
        status = await ready
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
        conns.append((transport, proto))
    ready_q.put(len(conns))
    while not stop.is_set():
        await asyncio.sleep(0.2)
    for transport, _ in conns:
        transport.close()
    return delays.tobytes()


def client_process(port: int, token: str, paths: list[str], ready_q, stop, out_q) -> None:
    """A process of SSE clients (uvloop when installed): the clients' CPU is not the server's."""
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    out_q.put(run(_clients(port, token, paths, ready_q, stop)))


def produce_changes(s: Settings, twins: list[str], rate: float, seconds: float) -> int:
    p = make_producer(s, **{"linger.ms": 5})
    n, t0 = 0, time.perf_counter()
    total = int(rate * seconds)
    now = datetime.now(UTC)
    while n < total:
        due = t0 + n / rate
        while time.perf_counter() < due:
            time.sleep(0.001)
        twin = twins[n % len(twins)]
        p.produce(s.twin.state_topic, key=twin.encode(), value=json.dumps(state_doc(twin, n, now)).encode())
        p.poll(0)
        n += 1
    p.flush(30)
    return n


def _quantiles(mode: str, sent: int, expected: int, delays: array) -> dict:
    ordered = sorted(delays)
    q = lambda p: ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")  # noqa: E731
    return {
        "mode": mode,
        "sent": sent,
        "expected": expected,
        "received": len(ordered),
        "p50": q(0.5),
        "p99": q(0.99),
        "max": q(1.0),
    }


def kafka_run(s: Settings, twins: list[str], changes: float, seconds: float) -> dict:
    """The floor under the SSE numbers: the same changes read straight from Kafka, as the server's hub
    reads them (no server, no HTTP); delay = receive time − the record's Kafka timestamp."""
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka.clients import client_config

    topic = s.twin.state_topic
    consumer = Consumer(client_config(s, **{"group.id": "bench-api-kafka", "enable.auto.commit": False}))
    parts = consumer.list_topics(topic, timeout=15).topics[topic].partitions
    consumer.assign(
        [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1])
            for p in parts
        ]
    )
    delays, stop = array("d"), threading.Event()

    def consume() -> None:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=1000, timeout=0.05):
                if not msg.error():
                    delays.append(time.time() - msg.timestamp()[1] / 1000)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    sent = produce_changes(s, twins, changes, seconds)
    time.sleep(3)
    stop.set()
    reader.join(10)
    consumer.close()
    return _quantiles("kafka", sent, sent, delays)


def fanout_run(
    s: Settings,
    port: int,
    token: str,
    twins: list[str],
    clients: int,
    changes: float,
    seconds: float,
    mode: str,
    processes: int,
) -> dict:
    """``clients`` SSE clients in ``processes`` processes; this process produces the changes."""
    if mode == "fleet":
        paths = ["/api/v1/events?types=state"] * clients
    else:  # each client watches its own twin; the changes go round these twins
        twins = twins[:clients]
        paths = [f"/api/v1/twins/{t}/events?types=state" for t in twins]
    ctx = mp.get_context("spawn")
    ready_q, out_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=client_process, args=(port, token, paths[i::processes], ready_q, stop, out_q), daemon=True)
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    connected = sum(ready_q.get(timeout=120) for _ in procs)
    assert connected == clients, (connected, clients)
    sent = produce_changes(s, twins, changes, seconds)
    time.sleep(3)
    stop.set()
    delays = array("d")
    for _ in procs:
        delays.frombytes(out_q.get(timeout=60))
    for p in procs:
        p.join(10)
    return _quantiles(mode, sent, sent * (clients if mode == "fleet" else 1), delays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--twins", type=int, default=10_000)
    ap.add_argument("--versions", type=int, default=3, help="history rows per twin")
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--changes", type=float, default=1000.0)
    ap.add_argument("--fanout-seconds", type=float, default=15.0)
    ap.add_argument("--workers", type=int, default=1, help="twinflow serve --workers")
    ap.add_argument("--client-processes", type=int, default=2, help="processes the SSE clients run in")
    ap.add_argument(
        "--modes", default="twin,fleet,kafka", help="fan-out runs: twin, fleet, kafka (no server: the floor)"
    )
    ap.add_argument("--no-latency", action="store_true", help="skip the GET latency run")
    ap.add_argument("--no-fanout", action="store_true", help="only the GET latency run")
    ap.add_argument(
        "--no-record", "--no-results", dest="no_results", action="store_true", help="do not append to RESULTS.md"
    )
    a = ap.parse_args(argv)
    base = load_settings()
    load0 = os.getloadavg()
    db = f"twinflow_bench_api_{uuid.uuid4().hex[:8]}"
    sfx = uuid.uuid4().hex[:8]
    tw = TwinSettings(state_topic=f"bench.state.{sfx}", desync_topic=f"bench.desync.{sfx}", partitions=4)
    s = base.model_copy(update={"postgres": base.postgres.model_copy(update={"dbname": db}), "twin": tw})
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-api-{sfx}"
    proc = None
    try:  # the database, topics, server and folder go again in the finally, also after Ctrl-C or SIGTERM
        with psycopg.connect(_superuser(base), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(base.postgres.user))
            )
        work.mkdir()
        migrate(s.postgres.conninfo(), "off")
        twins = [f"bench-{i:05d}" for i in range(a.twins)]
        t = time.perf_counter()
        seed(s.postgres.conninfo(), twins, a.versions)
        print(f"seeded {a.twins:,} twins × {a.versions} versions in {time.perf_counter() - t:.1f} s", flush=True)
        from connectors.kafka.clients import TopicSpec

        ensure_topics(s, [TopicSpec(tw.state_topic, 4, {}), TopicSpec(tw.desync_topic, 1, {})])
        store = TokenStore([])
        token, _ = store.issue("bench")
        store.save(work / "tokens.toml")
        port = _free_port()
        env = {
            **os.environ,
            "TWINFLOW_POSTGRES__DBNAME": db,
            "TWINFLOW_TWIN": tw.model_dump_json(),
            "TWINFLOW_API__PORT": str(port),
            "TWINFLOW_API__TOKENS_FILE": str(work / "tokens.toml"),
            "TWINFLOW_API__RATE_PER_S": "0",
        }
        log = open(work / "serve.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "twinflow.cli.main", "serve", "--workers", str(a.workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (work / "serve.log").read_text()
            time.sleep(0.5)
        lat = None
        if not a.no_latency:
            asyncio.run(latency_run(port, token, twins, 100, 3, a.connections))  # warm-up
            cpu0, _ = usage(proc.pid)
            lat = asyncio.run(latency_run(port, token, twins, a.rate, a.seconds, a.connections))
            cpu1, _ = usage(proc.pid)
            lat["server_cpu"] = (cpu1 - cpu0) / a.seconds
            print(f"GET /twins/{{id}}: {lat}", flush=True)
        fan = {}
        modes = () if a.no_fanout else tuple(m for m in a.modes.split(",") if m)
        for mode in modes:
            cpu0, _ = usage(proc.pid)
            if mode == "kafka":
                fan[mode] = kafka_run(s, twins, a.changes, a.fanout_seconds)
            else:
                fan[mode] = fanout_run(
                    s, port, token, twins, a.clients, a.changes, a.fanout_seconds, mode, a.client_processes
                )
            fan[mode]["server_cpu"] = (usage(proc.pid)[0] - cpu0) / a.fanout_seconds
            print(f"SSE fan-out ({mode}): {fan[mode]}", flush=True)
        load = os.getloadavg()
    finally:
        with cleaning_up():
            if proc is not None:
                stop(proc, within_s=20)
            with psycopg.connect(_superuser(base), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            delete_topics(s, [tw.state_topic, tw.desync_topic])
            shutil.rmtree(work, ignore_errors=True)  # its token file and the server's log
    lines = []
    if lat is not None:
        lines += [
            f"`GET /api/v1/twins/{{id}}` open-loop at {a.rate:g} requests/s for {a.seconds:g} s over {a.twins:,} twins"
            f" ({a.versions} history rows each, a private PostgreSQL database), `twinflow serve --workers {a.workers}`,"
            f" {a.connections} keep-alive connections; latency from the scheduled send time:",
            "",
            "| requests | errors | achieved /s | p50 ms | p90 ms | p99 ms | max ms | server CPU (cores) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {lat['requests']:,} | {lat['errors']} | {lat['achieved']:.0f} | {lat['p50']:.1f} | {lat['p90']:.1f}"
            f" | {lat['p99']:.1f} | {lat['max']:.1f} | {lat['server_cpu']:.2f} |",
            "",
        ]
    if fan:
        lines += [
            f"Server-sent events: {a.changes:g} state changes/s for {a.fanout_seconds:g} s produced to Kafka,"
            f" {a.clients} clients in {a.client_processes} processes, `twinflow serve --workers {a.workers}`;"
            " delivery = receive time − the record's Kafka timestamp. `twin`: each client follows one twin's stream"
            " (`/twins/{id}/events`), the changes go round those twins; `fleet`: every client follows every change"
            " (`/events`); `kafka`: the same changes read straight from Kafka, no SSE client (the floor; server CPU"
            " = the server only reading them).",
            "",
            "| mode | changes sent | events expected | received | p50 ms | p99 ms | max ms | server CPU (cores) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {f['mode']} | {f['sent']:,} | {f['expected']:,} | {f['received']:,} | {f['p50']:.0f}"
                f" | {f['p99']:.0f} | {f['max']:.0f} | {f['server_cpu']:.2f} |"
                for f in fan.values()
            ),
            "",
        ]
    lines.append(
        "The load generators ran on the same 2 cores as the server. Load average before the run:"
        f" {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}."
    )
    body = "\n".join(lines)
    print(body)
    if not a.no_results:
        command = "python -m benchmarks.api " + " ".join(sys.argv[1:] if argv is None else argv)
        append_result("HTTP API: twin reads and event fan-out", command, body)
    return 0


if __name__ == "__main__":
    with interruptible("the run's database, topics, server and folder are removed"):
        raise SystemExit(main())
