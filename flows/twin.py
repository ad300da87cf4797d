"""Twin reconciliation flow: telemetry.raw + twin.desired + twin.acks → per-twin state and windows.

Outputs: ``twin.state`` (compacted, key twin_id), ``twin.commands``, ``twin.desync``,
``telemetry.late``, ``twin.desired.outcomes`` (+ ``twin.desired.rejected``), ``twin.status``
(the twin's mode), bad desired/ack records → ``telemetry.dlq``; state history, sync quality and
window aggregates → PostgreSQL. Wiring only; the logic is in :mod:`operators.twin.processor`.

Every desired request passes the gate (:mod:`operators.twin.desired_gate`) inside the per-twin step;
the step after it (``twin_gate_commit``) commits a polled batch's verdicts to the audit trail
(:mod:`connectors.desired_gate`) in one transaction before it passes that batch's outputs on, so no
command leaves without its audit row. A twin without a Bytewax snapshot
resumes from its newest stored version (:mod:`operators.twin.resume`): versions never restart.

Run it::

    twinflow twin run                                   # recovery on, 1 worker
    python -m bytewax.run "twinflow.dataflows:twin()" -w 1

With ``twin.ingest = true`` it also writes telemetry rows and telemetry dead letters, so it can
replace the telemetry flow; :func:`attach` adds the twin steps to a flow that already polls these
topics. The wiring takes its source and sinks as arguments (:func:`dataflow`, :class:`TwinSinks`);
:func:`build_flow` gives it Kafka and PostgreSQL, a unit test ``TestingSource``/``TestingSink``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic

from connectors.config.errors import ConfigError
from connectors.config.security_files import load_policy, load_subjects, load_twin_registry
from connectors.desired_gate import PostgresDecisionStore
from connectors.kafka.messages import dead_letter_message
from connectors.kafka.sink import MessageSink
from connectors.kafka.source import kafka_source, source_messages
from connectors.kafka.twin_messages import TwinTopics, to_messages
from connectors.postgres.telemetry_sink import TelemetrySink
from connectors.postgres.twin_resume import StoredTwins
from connectors.postgres.twin_sink import TwinSink
from connectors.stopping import STOP
from flows.outputs import Sink, output, output_in_order, overlapped, settled
from flows.readings import own_messages, reading_rules
from flows.settings import DataflowSettings as Settings
from flows.snapshots import from_snapshot, to_snapshot
from operators.keyed_batches import group_by_key
from operators.security.request_auth import Freshness
from operators.telemetry.ingest import Polled
from operators.twin.desired_gate import DecisionStore, DesiredGate, GateConfig
from operators.twin.event_windows import WindowRow
from operators.twin.inputs import InputTopics, TwinInputs, decode_batch
from operators.twin.processor import Event, Produced, TwinProcessor, TwinRuntime
from operators.twin.resume import state_or_fresh
from operators.twin.state import StateChange, TwinState

log = logging.getLogger("twinflow.twin")
T = TypeVar("T")


class TwinLogic(StatefulLogic[tuple[str, list[Event]], list[Produced], bytes]):
    """One twin's runtime inside Bytewax; snapshots are pickled bytes (immutable).

    Items are one twin's events of a polled batch, in order (``(twin_id, [event, ...])``, see
    :func:`operators.keyed_batches.group_by_key`); each call emits one list of everything they
    produced, so Bytewax handles one item per twin and batch instead of one per reading.

    Time is event time. A twin that goes silent (a dead device sends neither readings nor acks)
    still needs its ack deadlines, retries and escalation: ``notify_at`` asks Bytewax to call back
    when the next deadline is due, measured as wall time elapsed since the twin's last event, and
    ``on_notify`` advances the twin's clock by that elapsed time (a clock tick). Only when tailing
    (live): replays and backfills (``tail=False``) stay purely event-time and deterministic.
    """

    def __init__(
        self,
        proc: TwinProcessor,
        resume: bytes | None,
        idle_ticks: bool = True,
        stored: Callable[[str], TwinState | None] | None = None,
    ) -> None:
        self._proc = proc
        self._idle_ticks = idle_ticks
        self._stored = stored
        self._rt: TwinRuntime | None = from_snapshot(resume)
        self._wall = datetime.now(UTC)  # wall time of the last event, paired with the twin clock

    def on_item(self, value: tuple[str, list[Event]]) -> tuple[Iterable[list[Produced]], bool]:
        twin_id, events = value
        if self._rt is None:  # no snapshot: resume from the database (or start the twin)
            self._rt = self._proc.new(twin_id, self._stored(twin_id) if self._stored else None)
        self._wall = datetime.now(UTC)
        return _one(self._proc.process_many(self._rt, events)), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if not self._idle_ticks or self._rt is None or self._rt.state.clock is None:
            return None
        due = self._proc.reconciler.next_due(self._rt.state)
        return None if due is None else self._wall + (due - self._rt.state.clock)

    def on_notify(self) -> tuple[Iterable[list[Produced]], bool]:
        if self._rt is None or self._rt.state.clock is None:
            return [], StatefulLogic.RETAIN
        now = datetime.now(UTC)
        tick = self._rt.state.clock + (now - self._wall)
        self._wall = now
        return _one(self._proc.process(self._rt, tick)), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[list[Produced]], bool]:
        if STOP.requested.is_set() or self._rt is None:  # a stop, not the end of the data: a restart goes on
            return [], StatefulLogic.RETAIN
        return _one(self._proc.flush(self._rt)), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return to_snapshot(self._rt)


def _one(produced: list[Produced]) -> list[list[Produced]]:
    """One downstream item holding all outputs (none when there are none)."""
    return [produced] if produced else []


def audited(gate: DesiredGate | None, items: list[T]) -> list[T]:
    """``items``, once the gate's pending verdicts are committed."""
    if gate is not None:
        gate.commit()
    return items


def _db_items(produced: list[Produced]) -> list[StateChange | WindowRow]:
    return [i for i in produced if isinstance(i, StateChange | WindowRow)]


def reloading(path: Path | None, load: Callable[[Path], T]) -> Callable[[], T | None]:
    """The file's content, loaded at once (mistakes stop the flow) and again whenever the file changes;
    a later edit with a mistake is logged and the last good version stays in force."""
    if path is None:
        return lambda: None
    current = [path.stat().st_mtime_ns, load(path)]

    def get() -> T | None:
        try:
            mtime = path.stat().st_mtime_ns
            if mtime != current[0]:
                current[:] = [mtime, load(path)]
                log.info("reloaded %s", path)
        except (OSError, ConfigError) as exc:
            log.error("keeping the previous %s: %s", path, exc)
        return current[1]

    return get


def desired_gate(settings: Settings, store: DecisionStore) -> DesiredGate:
    """The gate of the live flow: subjects, policy and registry from the settings' files."""
    sec = settings.security
    subjects = reloading(sec.subjects_file, load_subjects)
    policy = reloading(sec.policy_file, load_policy)
    registry = load_twin_registry(sec.twin_registry) if sec.twin_registry else None
    files = (("security.subjects_file", sec.subjects_file), ("security.policy_file", sec.policy_file))
    missing = [name for name, path in files if path is None]
    if missing:
        log.warning("desired-state gate: %s not set: every desired request is denied", " and ".join(missing))
    freshness = Freshness(timedelta(seconds=sec.max_request_age_s), timedelta(seconds=sec.max_clock_skew_s))
    return DesiredGate(GateConfig(subjects, policy, registry, settings.twin.policy.type_of, freshness), store)


def stored_state(
    settings: Settings, proc: TwinProcessor, store: DecisionStore, stored: StoredTwins
) -> Callable[[str], TwinState | None]:
    """``twin_id`` → its state at the newest stored version, with the last ``twin.desired`` record that
    state includes (the records after it are decided again: their verdicts are recalled, not made anew,
    and their changes applied; one whose audit row was committed but whose outputs never left, a kill
    between the two, is not lost)."""
    desired_topic = settings.twin.desired_topic

    def load(twin_id: str) -> TwinState | None:
        doc = stored.latest(twin_id)
        if doc is None:
            return None
        st, unreadable = state_or_fresh(doc, proc.reconciler.rules(twin_id))
        st.desired_pos = store.resume_position(twin_id, desired_topic, st.desired_version)
        if unreadable is not None:
            log.warning(
                "twin %s: its newest stored version %d cannot be read (%s); it resumes from that version with "
                "its reported, desired and command state afresh",
                twin_id, st.version, unreadable,
            )  # fmt: skip
        else:
            log.info("twin %s resumed from the database at version %d", twin_id, st.version)
        return st

    return load


@dataclass(frozen=True)
class TwinSinks:
    """Where the twin flow writes, and the two stores its per-twin step consults.

    ``messages``: Kafka (states, commands, desync events, late readings, the gate's outcomes, twin
    status, dead letters); ``history``: twin versions, sync quality and windows; ``rows``: telemetry
    rows (only with ``twin.ingest = true``); ``decisions``: the gate's verdicts, committed a polled
    batch at a time before its outputs go on; ``stored``: a twin's newest stored version, for a twin without a snapshot
    (None: such a twin starts new)."""

    messages: Sink
    history: Sink
    rows: Sink
    decisions: DecisionStore
    stored: StoredTwins | None = None

    @classmethod
    def of(cls, settings: Settings) -> TwinSinks:
        """Kafka and PostgreSQL (written in the background)."""
        conninfo = settings.postgres.conninfo()
        return cls(
            settled(settings, MessageSink.of(settings)),
            overlapped(settings, TwinSink(conninfo)),
            overlapped(settings, TelemetrySink(conninfo, batch_size=settings.flow.batch_size)),
            PostgresDecisionStore(conninfo),
            StoredTwins(conninfo),
        )


def input_topics(settings: Settings) -> list[str]:
    """``telemetry.raw``, ``twin.desired`` and ``twin.acks``."""
    return [settings.topics.raw, settings.twin.desired_topic, settings.twin.acks_topic]


def attach(
    settings: Settings, messages: Stream[KafkaSourceMessage], sinks: TwinSinks, *, idle_ticks: bool = True
) -> Stream[TwinInputs]:
    """Add decoding, the per-twin step and all twin outputs after ``messages``; returns the decoded inputs."""
    rules = reading_rules(settings)  # the telemetry flow's rules, also when it writes the rows
    polled = op.flat_map_batch("twin_poll", messages, lambda batch: [Polled(batch, rules)])
    return attach_polled(settings, polled, sinks, idle_ticks=idle_ticks)


def attach_polled(
    settings: Settings,
    polled: Stream[Polled],
    sinks: TwinSinks,
    *,
    idle_ticks: bool = True,
    own_topics: bool = False,
) -> Stream[TwinInputs]:
    """The same on polled batches whose telemetry may be decoded already (the pipeline flow);
    ``own_topics``: the batches hold other topics' messages too, decode only :func:`input_topics`'."""
    tw = settings.twin
    topics = InputTopics(*input_topics(settings))
    proc = TwinProcessor(
        tw.policy, tw.window_spec(), desired_gate(settings, sinks.decisions),
        offline_after_s=tw.offline_after_s,
        offline_alert_after_s=tw.offline_alert_after_s,
    )
    resume = stored_state(settings, proc, sinks.decisions, sinks.stored) if sinks.stored is not None else None
    own = own_messages(input_topics(settings) if own_topics else None)

    def decode(p: Polled) -> TwinInputs:
        p = own(p)
        return decode_batch(p.messages, topics, p.readings, rows=tw.ingest)

    inputs = op.map("twin_decode", polled, decode)
    # One item per twin and batch: (twin_id, (twin_id, [events in order])).
    events = op.flat_map(
        "twin_events", inputs, lambda ti: [(twin, (twin, evs)) for twin, evs in group_by_key(ti.events)]
    )
    decided = op.stateful("twin_state", events, lambda snap: TwinLogic(proc, snap, idle_ticks, resume))
    # The batch's verdicts, audited together before any of its outputs goes on (one transaction).
    produced = op.flat_map_batch("twin_gate_commit", decided, lambda items: audited(proc.gate, items))
    # (key, [messages], [rows]) per twin and batch: its Kafka outputs, then its state history, versions
    # stored only once the messages made with them are acknowledged (a safe point to resume from).
    out_topics = TwinTopics.of(settings)
    outputs = op.map(
        "twin_outputs", produced, lambda kv: (kv[0].encode(), to_messages(kv[1], out_topics), _db_items(kv[1]))
    )
    dead = op.flat_map(
        "twin_dead_letters",
        inputs,
        lambda ti: [
            (m.key or b"", [m], [])
            for m in (
                [dead_letter_message(d, settings.topics.dlq) for d in ti.dead_control]
                + ([dead_letter_message(d, settings.topics.dlq) for d in ti.dead_telemetry] if tw.ingest else [])
            )
        ],
    )
    output_in_order("twin_out", op.merge("twin_all_outputs", outputs, dead), sinks.messages, sinks.history)
    if tw.ingest:
        rows = op.filter("twin_rows", op.map("twin_row_lists", inputs, lambda ti: ti.rows), bool)
        output("twin_telemetry_postgres", rows, sinks.rows)
    return inputs


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-twin") -> Dataflow:
    """The reconciliation dataflow on Kafka and PostgreSQL; ``tail=False`` stops at the end of the
    topics (tests, backfills) and keeps to event time (no idle ticks)."""
    source = kafka_source(settings, input_topics(settings), tail=tail)
    return dataflow(settings, source, TwinSinks.of(settings), idle_ticks=tail, flow_id=flow_id)


def dataflow(
    settings: Settings,
    source: Source[KafkaSourceMessage],
    sinks: TwinSinks,
    *,
    idle_ticks: bool = True,
    flow_id: str = "twinflow-twin",
) -> Dataflow:
    """The reconciliation dataflow reading messages of :func:`input_topics` from ``source``."""
    flow = Dataflow(flow_id)
    attach(settings, source_messages(flow, source, step_id="twin_kafka_in"), sinks, idle_ticks=idle_ticks)
    return flow
