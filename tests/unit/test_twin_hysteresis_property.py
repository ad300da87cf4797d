"""Property: a noisy signal around the tolerance switches status at most once per hold time."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.twin.hysteresis import Hysteresis
from operators.twin.state import Status
from tests.twin_helpers import Run, at, desired, reading, reconciler

HOLD_S = 2.0
TOLERANCE = 1.0

noisy_samples = st.lists(
    st.tuples(
        st.floats(min_value=0.01, max_value=0.7),  # seconds since the previous sample
        st.floats(min_value=-0.8, max_value=0.8),  # noise around the tolerance
        st.booleans(),  # above or below the desired value
    ),
    min_size=20,
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(noisy_samples)
def test_no_more_than_one_status_transition_per_hold_time(samples: list[tuple[float, float, bool]]) -> None:
    run = Run(
        reconciler(
            strategy="digital_wins",
            tolerance=TOLERANCE,
            clear_tolerance=0.6,
            hold_time_s=HOLD_S,
            ack_timeout_s=10_000,
        )
    )
    run(reading(0, 100.0), desired(0, 100.0))
    t = 0.0
    transitions = []
    for dt, noise, above in samples:
        t += dt
        deviation = TOLERANCE + noise
        before = run.state.status
        run(reading(t, 100.0 + (deviation if above else -deviation)))
        if run.state.status != before:
            transitions.append(t)
        assert run.state.status in (Status.SYNCHRONIZED, Status.DESYNCED)
    gaps = [b - a for a, b in itertools.pairwise(transitions)]
    assert all(g >= HOLD_S - 1e-9 for g in gaps), (transitions, gaps)


@settings(max_examples=200, deadline=None)
@given(noisy_samples)
def test_hysteresis_switches_are_at_least_the_hold_time_apart(
    samples: list[tuple[float, float, bool]],
) -> None:
    h = Hysteresis()
    t = 0.0
    switches = []
    for dt, noise, _above in samples:
        t += dt
        if h.update(TOLERANCE + noise, at(t), TOLERANCE, 0.6, HOLD_S):
            switches.append(t)
    assert all(b - a >= HOLD_S - 1e-9 for a, b in itertools.pairwise(switches))


def test_a_steady_excursion_does_switch() -> None:
    """Guard against a detector that never switches (the properties above would pass)."""
    h = Hysteresis()
    flips = [
        h.update(dev, at(s), TOLERANCE, 0.6, HOLD_S)
        for s, dev in [(0, 1.5), (1, 1.5), (2, 1.5), (3, 0.1), (4, 0.1), (5, 0.1)]
    ]
    assert flips == [False, False, True, False, False, True]
