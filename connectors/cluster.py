"""Which Bytewax worker this process runs, so that inputs and outputs can stay on it.

Bytewax numbers the workers of a cluster ``process id × workers per process + thread``. When a
process runs one worker (``twinflow run``, ``-p N`` or ``-i/-a``: ``-w 1``), :mod:`twinflow.runner`
records its index and the cluster's worker count here before the flow is built; with several
worker threads per process (``-w N``), or a flow run some other way (``python -m bytewax.run``,
tests), nothing is recorded and :func:`this_worker` is ``None``.

Two parts use it to keep items from crossing processes, where Bytewax pickles each item (twice:
timely sizes a message by serializing it, then serializes it again to send it):

* the Kafka source spreads each topic's partitions over the workers
  (:meth:`connectors.kafka.source.StoppableKafkaSource.list_parts`);
* the background PostgreSQL sinks write a worker's rows in a partition of that worker
  (:meth:`connectors.overlap.OverlappedSink.route`).

Neither is needed for correctness: without a recorded worker both behave as Bytewax does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Worker:
    """The worker ``index`` of a cluster of ``count`` workers (``0 <= index < count``)."""

    index: int
    count: int

    def owns(self, position: int) -> bool:
        """Whether item ``position`` of a list spread round robin over the workers is this worker's.

        >>> [Worker(1, 2).owns(i) for i in range(4)]
        [False, True, False, True]
        """
        return position % self.count == self.index


_this: Worker | None = None


def set_this_worker(worker: Worker | None) -> None:
    """Record the worker this process runs (``None``: unknown, e.g. several workers per process)."""
    global _this
    if worker is not None and not 0 <= worker.index < worker.count:
        raise ValueError(f"worker {worker.index} is outside a cluster of {worker.count} workers")
    _this = worker


def this_worker() -> Worker | None:
    """The worker this process runs, when it runs exactly one and the runner recorded it."""
    return _this
