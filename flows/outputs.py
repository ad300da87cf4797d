"""Wiring a sink into a flow: a plain Bytewax sink, or one whose writes overlap the compute.

:class:`~connectors.overlap.OverlappedSink` (the flows' PostgreSQL sinks) takes its items keyed by
partition; :func:`output` adds that keying step (``<step_id>_route``) in front of it, and wires any
other sink (Kafka, the webhook, Bytewax's ``TestingSink``) as it is.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import DynamicSink

from connectors.batch_sink import BatchSink
from connectors.overlap import OverlappedSink
from flows.settings import DataflowSettings as Settings

Sink = DynamicSink[Any] | OverlappedSink[Any, Any]


def overlapped(settings: Settings, sink: BatchSink[Any, Any]) -> OverlappedSink[Any, Any]:
    """``sink`` writing in the background, over ``flow.sink_partitions`` partitions (default 1)."""
    return OverlappedSink(sink, settings.flow.sink_partitions or 1)


def output(step_id: str, up: Stream[Any], sink: Sink) -> None:
    """``op.output(step_id, up, sink)``, keyed first when ``sink`` is an :class:`OverlappedSink`."""
    if isinstance(sink, OverlappedSink):
        op.output(step_id, op.flat_map(f"{step_id}_route", up, sink.route), sink)
    else:
        op.output(step_id, up, sink)
