"""Wiring a sink into a flow: a plain Bytewax sink, or one whose partitions Bytewax calls at each epoch's end.

:class:`~connectors.overlap.OverlappedSink` takes its items keyed by partition: the flows' PostgreSQL
sinks write in the background (:func:`overlapped`), their Kafka sinks produce in the flow's thread
and are flushed at each epoch's end, before Bytewax can commit it (:func:`settled`). :func:`output`
adds the keying step (``<step_id>_route``, once per batch of items) in front of such a sink, and
wires any other sink (the webhook, Bytewax's ``TestingSink``) as it is. :func:`output_in_order` writes
two sinks as one step, the second only after the first acknowledged (:class:`~connectors.overlap.FencedSink`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import DynamicSink

from connectors.batch_sink import BatchSink, flatten
from connectors.overlap import FencedSink, OverlappedSink
from flows.settings import DataflowSettings as Settings

Sink = DynamicSink[Any] | OverlappedSink[Any, Any]


def overlapped(settings: Settings, sink: BatchSink[Any, Any]) -> OverlappedSink[Any, Any]:
    """``sink`` writing in the background, over ``flow.sink_partitions`` partitions (default 1)."""
    return OverlappedSink(sink, settings.flow.sink_partitions or 1)


def settled(settings: Settings, sink: BatchSink[Any, Any]) -> OverlappedSink[Any, Any]:
    """``sink`` writing in the flow's thread, settled (Kafka: flushed) at each epoch's end, over
    ``flow.sink_partitions`` partitions (default 1)."""
    return OverlappedSink(sink, settings.flow.sink_partitions or 1, background=False)


def output(step_id: str, up: Stream[Any], sink: Sink, each: Callable[[Any], Any] | None = None) -> None:
    """``op.output(step_id, up, sink)``, keyed first when ``sink`` is an :class:`OverlappedSink`.

    ``each``: what to write of each item (a record, a list of records, or None: nothing), as
    ``op.filter_map`` would; in the keying step itself when there is one (a step less per batch),
    else in a step ``<step_id>_items``."""
    if not isinstance(sink, OverlappedSink):
        op.output(step_id, up if each is None else op.filter_map(f"{step_id}_items", up, each), sink)
        return

    def route(items: list[Any]) -> list[tuple[str, list[Any]]]:
        kept = items if each is None else [y for x in items if (y := each(x)) is not None]
        return sink.route(flatten(kept)) if kept else []

    op.output(step_id, op.flat_map_batch(f"{step_id}_route", up, route), sink)


def output_in_order(step_id: str, up: Stream[tuple[bytes, list[Any], list[Any]]], first: Sink, then: Sink) -> None:
    """Items ``(key, firsts, thens)``: ``firsts`` to ``first`` (Kafka), ``thens`` to ``then`` (PostgreSQL),
    each batch of ``thens`` written only once ``first`` acknowledged every record of ``firsts`` before it
    (outputs before state: :class:`~connectors.overlap.FencedSink`), when ``first`` is :func:`settled` and
    ``then`` :func:`overlapped`; other sinks (Bytewax's ``TestingSink``) are wired as two outputs,
    ``<step_id>_first`` and ``<step_id>_then``."""
    if (
        isinstance(first, OverlappedSink)
        and isinstance(then, OverlappedSink)
        and then.background
        and not first.background
    ):
        fenced = FencedSink(first.sink, then.sink, then.partitions)
        op.output(step_id, op.flat_map_batch(f"{step_id}_route", up, fenced.route_items), fenced)
        return
    output(f"{step_id}_first", up, first, lambda item: item[1] or None)
    output(f"{step_id}_then", up, then, lambda item: item[2] or None)
