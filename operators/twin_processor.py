"""Everything the flow keeps per twin: reconciliation state and event-time windows.

The flow runs one :class:`TwinRuntime` per twin_id inside a keyed stateful step and hands
each event to :meth:`TwinProcessor.process`; outputs are routed by type
(:class:`~operators.twin_state.StateChange`, :class:`~operators.twin_records.Command`,
:class:`~operators.twin_records.Alert`, :class:`~operators.event_windows.WindowRow`,
:class:`~operators.twin_records.LateReading`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from operators.event_windows import TwinWindows, WindowRow, WindowSpec
from operators.reconcile import BAD_QUALITY, Output, Reconciler
from operators.twin_policy import TwinPolicy
from operators.twin_records import AckEvent, DesiredEvent, LateReading, Reported
from operators.twin_state import TwinState

Event = Reported | DesiredEvent | AckEvent | datetime
Produced = Output | WindowRow | LateReading


@dataclass(slots=True)
class TwinRuntime:
    state: TwinState
    windows: TwinWindows


class TwinProcessor:
    """Stateless logic over :class:`TwinRuntime` values (the state lives with the caller)."""

    def __init__(self, policy: TwinPolicy, windows: WindowSpec) -> None:
        self.reconciler = Reconciler(policy)
        self.windows = windows

    def new(self, twin_id: str) -> TwinRuntime:
        return TwinRuntime(TwinState(twin_id), TwinWindows(twin_id, self.windows))

    def process(self, rt: TwinRuntime, event: Event) -> list[Produced]:
        """Apply one event; returns its outputs in order."""
        out: list[Produced] = []
        self._process_into(out, rt, event)
        return out

    def process_many(self, rt: TwinRuntime, events: Iterable[Event]) -> list[Produced]:
        """Apply one twin's events in order (the same as ``process`` on each, outputs concatenated)."""
        out: list[Produced] = []
        for event in events:
            self._process_into(out, rt, event)
        return out

    def _process_into(self, out: list[Produced], rt: TwinRuntime, event: Event) -> None:
        if isinstance(event, Reported):
            rules = self.reconciler.rules(rt.state.twin_id)
            # What-if and bad-quality values never enter aggregates (nor reported state).
            if event.source not in rules.simulation_sources and event.quality < BAD_QUALITY:
                rows, late = rt.windows.add(event.ts, event.seq, event.values, event.source)
                if rows:
                    out.extend(rows)
                if late:
                    out.extend(late)
        out.extend(self.reconciler.apply(rt.state, event))

    def flush(self, rt: TwinRuntime) -> list[Produced]:
        """End of input: publish windows with unpublished changes."""
        return list(rt.windows.flush())
