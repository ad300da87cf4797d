"""A pump whose flow follows a status sent as a number: a 0/1 running flag or a mode 0..3 that
switches every 8-20 minutes (1 Hz, 6,000 rows), with an optional 8σ pressure fault between two
switches (docs/ml.md, "States: statuses sent as numbers"). Used by the replay and pipeline tests."""

from __future__ import annotations

import numpy as np

N = 6000
SWITCHES = (300, 900, 1500, 2300, 2900, 3500, 4000, 5200, 5700)
MODES = (1, 2, 3, 0, 2, 1, 3, 0, 1)
FAULT = (4400, 4800)  # an 8σ shift of the pressure, between two switches


def plant_with_status(status: str, fault: bool) -> dict[str, np.ndarray]:
    """Columns ``temp_c``, ``pressure_bar``, ``flow_m3h`` and ``status`` (``running``: 0/1; else 0..3, whole)."""
    rng = np.random.default_rng(5)
    load = np.cumsum(rng.normal(0, 0.01, N))
    state = np.zeros(N, dtype=np.int64)
    for i, s in enumerate(SWITCHES):
        state[s:] = (i + 1) % 2 if status == "running" else MODES[i]
    flow = (100.0 * state if status == "running" else 40.0 + 20.0 * state) + rng.normal(0, 1.0, N)
    pressure = 5 + 0.05 * load + rng.normal(0, 0.02, N)
    if fault:
        pressure[FAULT[0] : FAULT[1]] += 8 * 0.02
    temp = 60 + 0.5 * load + rng.normal(0, 0.2, N)
    return {"temp_c": temp, "pressure_bar": pressure, "flow_m3h": flow, status: state}
