"""Bytewax sink that writes telemetry rows with :class:`TelemetryWriter`."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.postgres.telemetry_sink import TelemetryWriter
from operators.telemetry.ingest import TelemetryRow

log = logging.getLogger(__name__)


class _TelemetryPartition(StatelessSinkPartition[list[TelemetryRow]]):
    def __init__(self, conninfo: str, batch_size: int, worker: int) -> None:
        self._writer = TelemetryWriter(conninfo)
        self._batch_size = batch_size
        self._worker = worker

    def write_batch(self, items: list[list[TelemetryRow]]) -> None:
        rows: list[TelemetryRow] = []
        for chunk in items:
            rows.extend(chunk)
            if len(rows) >= self._batch_size:
                self._writer.write(rows)
                rows = []
        self._writer.write(rows)

    def close(self) -> None:
        log.info(
            "worker %d telemetry sink: %d rows inserted, %d duplicates skipped",
            self._worker,
            self._writer.rows_inserted,
            self._writer.rows_duplicate,
        )
        self._writer.close()


class TelemetrySink(DynamicSink[list[TelemetryRow]]):
    """Each item is a list of rows (one Kafka poll's worth); each worker has its own connection."""

    def __init__(self, conninfo: str, batch_size: int = 5000) -> None:
        self._conninfo = conninfo
        self._batch_size = batch_size

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TelemetryPartition:
        return _TelemetryPartition(self._conninfo, self._batch_size, worker_index)


def flatten(batches: Iterable[list[TelemetryRow]]) -> list[TelemetryRow]:
    return [row for batch in batches for row in batch]
