"""Online models flow: telemetry → per-twin anomaly scores, forecasts and failure predictions on Kafka.

Inputs: ``telemetry.raw`` (readings), ``twin.status`` (maintenance on/off: no learning),
``twin.model_control`` (``twinflow model reset TWIN``), ``twin.events`` (failure/repair).
Outputs: ``twin.anomaly_scores``, ``twin.forecasts`` and (``ml.model = "rul"``)
``twin.failure_predictions``, which the alerts flow turns into alerts and database rows. The
models live in Bytewax state, keyed by twin_id, so they survive a restart with recovery on.
Readings are judged by the telemetry flow's rules (:func:`flows.readings.reading_rules`: limits,
twin registry, duplicate guard) and dead-lettered by that flow, not here; invalid status, control
and event records go to the DLQ (:mod:`operators.ml.inputs`).

Failure prediction is a second stateful step keyed by fleet (``ml.fleets``, default one fleet):
one key runs on one worker, which is fine because it only sees labelled histories (one per
failure) and prediction requests rate-limited to one per ``ml.predict_every`` samples per twin.

Wiring only; the logic is :mod:`operators.ml.live_step`. The wiring takes its source and sink as
arguments (:func:`dataflow`); :func:`build_flow` gives it Kafka, a unit test ``TestingSource``/``TestingSink``.

    twinflow models run
    python -m bytewax.run "twinflow.dataflows:models()"
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source
from bytewax.operators import KeyedStream, StatefulLogic

from connectors.kafka.messages import STORED_HEADERS, dead_letter_message
from connectors.kafka.sink import MessageSink, OutMessage
from connectors.kafka.source import kafka_source, source_messages
from connectors.postgres.alert_sinks import ModelOutput
from flows.outputs import Sink, output, settled
from flows.readings import own_messages, reading_rules
from flows.settings import DataflowSettings as Settings
from flows.snapshots import from_snapshot, to_snapshot
from operators.ml.fleet_step import FleetItem
from operators.ml.inputs import ModelTopics, decode_batch
from operators.ml.live_state import LiveModelConfig, TwinModelState, silence_due
from operators.ml.live_step import Tick, fleet_step, step_many
from operators.ml.path_pauses import PathPauses, silence_suspended
from operators.records.alerts import AnomalyScore, FailurePrediction, encode
from operators.telemetry.ingest import Polled

log = logging.getLogger("twinflow.models")


def input_topics(settings: Settings) -> list[str]:
    """``telemetry.raw``, ``twin.status``, ``twin.model_control`` and ``twin.events``."""
    t = settings.topics
    return [t.raw, settings.alerts.status_topic, t.model_control, t.events]


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-models") -> Dataflow:
    """The models dataflow on Kafka; ``tail=False`` stops at the end of the topics (tests, backfills).
    The Kafka source tells the silence timers when its path pauses (:class:`PathPauses`)."""
    path = PathPauses(started=time.time())
    source = kafka_source(settings, input_topics(settings), tail=tail, path=path)
    sink = settled(settings, MessageSink.of(settings))
    return dataflow(settings, source, sink, flow_id=flow_id, path=path)


def dataflow(
    settings: Settings,
    source: Source[KafkaSourceMessage],
    messages: Sink,
    *,
    flow_id: str = "twinflow-models",
    path: PathPauses | None = None,
) -> Dataflow:
    """The models dataflow reading :func:`input_topics` from ``source``; its records and dead letters
    go to ``messages`` (Kafka messages, the topic in each). ``path``: the pauses of the source's path,
    which suspend the silence timers (None: it never pauses)."""
    flow = Dataflow(flow_id)
    attach(settings, source_messages(flow, source), messages, path)
    return flow


def attach(
    settings: Settings, messages: Stream[KafkaSourceMessage], sink: Sink, path: PathPauses | None = None
) -> None:
    """Add the per-twin models and their outputs after ``messages`` of :func:`input_topics`."""
    rules = reading_rules(settings)  # the telemetry flow's rules: what it rejects is not scored either
    attach_polled(settings, op.flat_map_batch("poll", messages, lambda batch: [Polled(batch, rules)]), sink, path)


def live_config(settings: Settings) -> LiveModelConfig:
    """The per-twin model step's configuration from ``[ml]`` (what a live flow runs)."""
    ml = settings.ml
    return LiveModelConfig(
        ml.model_config_for(),  # failure prediction when ml.model = "rul"
        predict_every=ml.predict_every,
        fleets=tuple(ml.fleets.items()),
        default_fleet=ml.default_fleet,
        limits=tuple(ml.limits),
        ranges=tuple(ml.ranges),
    )


def attach_polled(
    settings: Settings,
    polled: Stream[Polled],
    sink: Sink,
    path: PathPauses | None = None,
    *,
    own_topics: bool = False,
    store: Sink | None = None,
) -> None:
    """The same on polled batches of :func:`input_topics` whose telemetry may be decoded already;
    ``own_topics``: the batches hold other topics' messages too (the pipeline flow), decode only these.
    ``store``: a sink for the model outputs' database rows (the pipeline flow's): their Kafka messages
    then carry :data:`~connectors.kafka.messages.STORED`, and the alerts flow leaves their rows alone."""
    a = settings.alerts
    headers = STORED_HEADERS if store is not None else None
    cfg = live_config(settings)

    topics = ModelTopics(*input_topics(settings))
    own = own_messages(input_topics(settings) if own_topics else None)

    def decode_items(p: Polled) -> list[tuple[str, tuple[str, list]] | KafkaSinkMessage]:
        """One item per twin, keyed for the model step: (twin_id, (twin_id, [items in order])); and
        the dead letters as Kafka messages."""
        p = own(p)
        inputs = decode_batch(p.messages, topics, p.readings)
        dlq = settings.topics.dlq
        return [*((kv[0], kv) for kv in inputs.items), *(dead_letter_message(d, dlq) for d in inputs.dead)]

    items = op.flat_map("decode", polled, decode_items)
    valid = op.branch("valid", items, lambda item: type(item) is tuple)  # dead letters are messages
    keyed: KeyedStream[tuple[str, list]] = valid.trues  # type: ignore[assignment]
    scored = twin_models("models", keyed, cfg, path)

    def to_message(twin_id: str, rec: object) -> OutMessage:
        if isinstance(rec, AnomalyScore):
            topic = a.anomalies_topic
        elif isinstance(rec, FailurePrediction):
            topic = a.failures_topic
        else:
            topic = a.forecasts_topic
        return OutMessage(twin_id.encode(), encode(rec), topic, headers)

    # Scores and forecasts are encoded straight from the twin's list; fleet items go to the fleet step.
    outgoing = op.flat_map(
        "encode", scored, lambda kv: [to_message(kv[0], r) for r in kv[1] if not isinstance(r, FleetItem)]
    )
    by_fleet = op.flat_map("to_fleet", scored, lambda kv: [(r.fleet, r) for r in kv[1] if isinstance(r, FleetItem)])
    fleet_out = op.stateful_map("fleet_model", by_fleet, lambda state, item: fleet_step(state, item, cfg))
    predictions = op.flat_map("predictions", fleet_out, lambda kv: [to_message(p.twin_id, p) for p in kv[1]])
    # The dead letters go out with the records (the same sink): one output step, not two.
    output("scores_out", op.merge("model_records", outgoing, predictions, valid.falses), sink)
    if store is not None:  # the rows, after the messages (Bytewax runs sibling steps in the order added)
        output("scores_db", op.merge("model_rows", scored, fleet_out), store, each=model_outputs)


def model_outputs(keyed: tuple[str, list]) -> list[ModelOutput] | None:
    """The database rows' records among a step's ``(key, records)`` (not its fleet items); None: none."""
    rows = [r for r in keyed[1] if isinstance(r, ModelOutput)]
    return rows or None


class TwinModelsLogic(StatefulLogic[tuple[str, list], list, bytes]):
    """One twin's models inside Bytewax; snapshots are pickled bytes.

    Bytewax's ``stateful_map`` snapshots by ``copy.deepcopy`` at every epoch (also with recovery
    off), i.e. a pickle round trip of the River models (54 ms CPU per epoch for 200 twins); bytes
    cost one ``pickle.dumps`` (27 ms), and with recovery on Bytewax stores them as they are.
    Emits one list of records per item, like the ``stateful_map`` it replaces (empty lists are
    not emitted: nothing downstream would be made of them). Resumes from bytes, or from a
    ``TwinModelState`` object written by the ``stateful_map`` of older versions.

    A twin is silent when it has not reported for its silence time while its path worked (docs/ml.md,
    "Sensor faults"): a pause of the process's input ``path`` (the broker unreachable, the flow held up
    or restarted) within that time suspends the timer (:func:`silence_suspended`); after it the
    backlog arrives, so the twin is judged again one silence time later.
    """

    def __init__(
        self, resume: bytes | TwinModelState | None, cfg: LiveModelConfig, path: PathPauses | None = None
    ) -> None:
        self.state: TwinModelState | None = from_snapshot(resume)
        self.cfg = cfg
        self.path = path
        if self.state is not None and self.state.wall_at_last is not None:
            # Resumed after a restart: the time the flow was down is not the twin's silence (every
            # twin would read as silent after a restart longer than the silence timer); its silence
            # timer starts again now, as the twin and alerts flows restart their wall clocks.
            self.state.wall_at_last = time.time()

    def on_item(self, value: tuple[str, list]) -> tuple[Iterable[list], bool]:
        twin_id, items = value  # the items carry the key: (twin_id, [items in order])
        self.state, records = step_many(self.state, items, self.cfg, twin_id)
        return ([records] if records else []), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """Silent sensors are a sensor fault: a timer fires when the twin should have reported."""
        return silence_due(self.state, self.cfg)

    def on_notify(self) -> tuple[Iterable[list], bool]:
        twin_id = getattr(self.state, "twin_id", "")
        if not twin_id:  # a state from before twin ids were kept: its next reading names it
            return [], StatefulLogic.RETAIN
        st, due, now = self.state, silence_due(self.state, self.cfg), time.time()
        if due is not None and st.wall_at_last is not None and st.period_s is not None:
            silent_for = due.timestamp() - max(st.wall_at_last, st.ticked_at)  # this twin's silence time
            if silence_suspended(self.path, silent_for, st.period_s, now):
                # The path paused (Kafka unreachable, the flow held up) within this twin's silence time,
                # or its backlog is still coming: not the twin's sensors. Look again one silence later.
                st.ticked_at = now
                return [], StatefulLogic.RETAIN
        self.state, records = step_many(self.state, [Tick(datetime.now(UTC))], self.cfg, twin_id)
        return ([records] if records else []), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return to_snapshot(self.state)


@operator
def twin_models(
    step_id: str, up: KeyedStream[tuple[str, list]], cfg: LiveModelConfig, path: PathPauses | None = None
) -> KeyedStream[list]:
    """The per-twin model step. Its inner step ids are those of ``op.stateful_map`` (``<step_id>.
    stateful_flat_map.stateful``), so recovery snapshots of older versions are found and resumed."""
    return _stateful_flat_map("stateful_flat_map", up, cfg, path)


@operator
def _stateful_flat_map(
    step_id: str, up: KeyedStream[tuple[str, list]], cfg: LiveModelConfig, path: PathPauses | None
) -> KeyedStream[list]:
    return op.stateful("stateful", up, lambda resume: TwinModelsLogic(resume, cfg, path))
