"""Everything the flow keeps per twin: reconciliation state and event-time windows.

The flow runs one :class:`TwinRuntime` per twin_id inside a keyed stateful step and hands
each event to :meth:`TwinProcessor.process`; outputs are routed by type
(:class:`~operators.twin.state.StateChange`, :class:`~operators.records.twin.Command`,
:class:`~operators.records.twin.DesyncEvent`, :class:`~operators.twin.event_windows.WindowRow`,
:class:`~operators.records.twin.LateReading`, :class:`~operators.records.twin.DesiredOutcome`,
:class:`~operators.records.alerts.TwinStatus`).

Desired requests pass the gate (:class:`~operators.twin.desired_gate.DesiredGate`) first: only an
allowed request reaches the reconciler. The gate keeps the verdicts until its ``commit``: the caller
commits them before it forwards any output (the twin flow once per polled batch). Without a gate
(offline reconciliation: benchmarks, backtests) desired events are applied as they are; the
live flow always has one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from operators.records.alerts import TwinStatus
from operators.records.twin import AckEvent, Command, DesiredEvent, DesiredOutcome, LateReading, Reported
from operators.twin.connectivity import OFFLINE, held_detail
from operators.twin.desired_gate import DesiredGate
from operators.twin.event_windows import TwinWindows, WindowRow, WindowSpec
from operators.twin.reconcile import BAD_QUALITY, Reconciler
from operators.twin.state import TwinState
from operators.twin.sync_strategy import CONNECTIVITY_DEFAULTS, TwinPolicy
from operators.twin.transaction import Output

Event = Reported | DesiredEvent | AckEvent | datetime
MAX_RUN = 1000  # readings offered to the windows at once (a run rarely spans more than one window)
Produced = Output | WindowRow | LateReading | DesiredOutcome | TwinStatus


@dataclass(slots=True)
class TwinRuntime:
    state: TwinState
    windows: TwinWindows


class TwinProcessor:
    """Stateless logic over :class:`TwinRuntime` values (the state lives with the caller)."""

    def __init__(
        self,
        policy: TwinPolicy,
        windows: WindowSpec,
        gate: DesiredGate | None = None,
        *,
        offline_after_s: float = CONNECTIVITY_DEFAULTS["offline_after_s"],
        offline_alert_after_s: float = CONNECTIVITY_DEFAULTS["offline_alert_after_s"],
    ) -> None:
        self.reconciler = Reconciler(policy, offline_after_s, offline_alert_after_s)
        self.windows = windows
        self.gate = gate

    def new(self, twin_id: str, state: TwinState | None = None) -> TwinRuntime:
        """A runtime for ``twin_id``, fresh or resumed from ``state`` (e.g. its stored newest version)."""
        return TwinRuntime(state or TwinState(twin_id), TwinWindows(twin_id, self.windows))

    def process(self, rt: TwinRuntime, event: Event) -> list[Produced]:
        """Apply one event; returns its outputs in order."""
        out: list[Produced] = []
        self._process_into(out, rt, event)
        return out

    def process_many(self, rt: TwinRuntime, events: Iterable[Event]) -> list[Produced]:
        """Apply one twin's events in order (the same as ``process`` on each, outputs concatenated).

        Consecutive readings go to the windows together (:meth:`TwinWindows.add_run`: column-wise
        where that changes nothing); the outputs and their order are those of ``process``."""
        events = events if isinstance(events, list) else list(events)
        sim = self.reconciler.rules(rt.state.twin_id).simulation_sources
        # What-if and bad-quality values never enter aggregates (nor reported state).
        windowed = [isinstance(e, Reported) and e.source not in sim and e.quality < BAD_QUALITY for e in events]
        out: list[Produced] = []
        done = 0  # the windows have taken events[:done]
        n = len(events)
        apply, state, gated = self.reconciler.apply, rt.state, self.gate is not None
        if gated:  # what the decision store knows of these records: one look-up for the batch
            self.gate.recall([e for e in events if isinstance(e, DesiredEvent)])  # type: ignore[union-attr]
        for k, event in enumerate(events):
            if gated and isinstance(event, DesiredEvent):
                self._desired(out, rt, event)
                continue
            if k >= done and windowed[k]:
                stop = k + 1
                while stop < n and windowed[stop] and stop - k < MAX_RUN:
                    stop += 1
                rows, late, done = rt.windows.add_run(events, k, stop)  # type: ignore[arg-type]
                if rows:
                    out.extend(rows)
                if late:
                    out.extend(late)
            out.extend(apply(state, event))
        return out

    def _process_into(self, out: list[Produced], rt: TwinRuntime, event: Event) -> None:
        if isinstance(event, DesiredEvent) and self.gate is not None:
            self._desired(out, rt, event)
            return
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

    def _desired(self, out: list[Produced], rt: TwinRuntime, ev: DesiredEvent) -> None:
        """Gate a desired request, then (allowed) reconcile it; the verdict is always published."""
        assert self.gate is not None
        st, pos = rt.state, ev.position
        done = st.desired_pos
        if pos is not None and done is not None and pos[:2] == done[:2] and pos[2] <= done[2]:
            return  # this state already includes that record (read again after a restart)
        verdict = self.gate.judge(st, ev, self.reconciler.rules(st.twin_id))
        if pos is not None:
            st.desired_pos = pos
        upd = ev.update
        commands: list[str] = []
        detail = verdict.detail
        if verdict.allowed:
            mode = st.mode
            authored = msgspec.structs.replace(upd, author=verdict.actor)
            produced = self.reconciler.apply(st, DesiredEvent(authored, ev.at))
            out.extend(produced)
            commands = [c.command_id for c in produced if isinstance(c, Command)]
            if st.mode != mode:
                out.append(TwinStatus(st.twin_id, ev.at, st.mode == "maintenance", verdict.actor, st.mode))  # type: ignore[arg-type]
            if upd.values and st.connectivity.state == OFFLINE:
                detail = held_detail(st.connectivity, detail)
        out.append(
            DesiredOutcome(
                verdict.request_id,
                st.twin_id,
                verdict.actor,
                "applied" if verdict.allowed else "denied",
                verdict.reason,
                detail,
                datetime.now(UTC),
                st.version,
                st.desired_version,
                verdict.via,
                dict(upd.values),
                upd.mode,
                upd.expected_version,
                commands,
            )
        )

    def flush(self, rt: TwinRuntime) -> list[Produced]:
        """End of input: publish windows with unpublished changes."""
        return list(rt.windows.flush())
