"""Settings of the plant simulator (`twinflow simulate`): the ``[sim]`` section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from operators.strict import StrictModel


class SimSettings(StrictModel):
    """The plant simulator (`twinflow simulate`)."""

    tick_s: float = Field(0.1, gt=0)  # the plant model's time step (seconds)
    seed: int = 7  # noise and faults repeat for a seed
    # Fault schedule ground truth, one JSON object per line (also sent to topics.ground_truth).
    ground_truth_file: Path = Path("sim-ground-truth.jsonl")
