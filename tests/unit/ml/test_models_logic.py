"""The models flow's per-twin Bytewax logic: byte snapshots resume to the same records, old object snapshots too."""

import pickle

from bytewax.operators import StatefulLogic

from flows.models import TwinModelsLogic, build_flow
from operators.ml.live_step import step_many
from tests.unit.ml.test_step_many import CFG, items
from twinflow.settings import Settings


def _run(logic: TwinModelsLogic, batches: list[list]) -> list:
    out = []
    for batch in batches:
        emitted, keep = logic.on_item(("t1", batch))
        assert keep is StatefulLogic.RETAIN
        out.extend(emitted)
    return out


def _batches(seed: int) -> list[list]:
    evs = items(seed, 240)
    return [evs[i : i + 7] for i in range(0, len(evs), 7)]


def test_emits_what_step_many_returns() -> None:
    batches = _batches(3)
    state, expected = None, []
    for batch in batches:
        state, records = step_many(state, batch, CFG, "t1")
        if records:
            expected.append(records)
    assert _run(TwinModelsLogic(None, CFG), batches) == expected
    assert expected  # the sequence scores: the comparison is not between empty lists


def test_resume_from_byte_snapshot_continues_identically() -> None:
    batches = _batches(5)
    whole = _run(TwinModelsLogic(None, CFG), batches)
    first = TwinModelsLogic(None, CFG)
    head = _run(first, batches[:20])
    snap = first.snapshot()
    assert isinstance(snap, bytes)
    tail = _run(TwinModelsLogic(snap, CFG), batches[20:])
    assert head + tail == whole


def test_resume_from_object_snapshot_of_older_versions() -> None:
    batches = _batches(7)
    whole = _run(TwinModelsLogic(None, CFG), batches)
    first = TwinModelsLogic(None, CFG)
    head = _run(first, batches[:20])
    old_snapshot = pickle.loads(pickle.dumps(first.state))  # the object stateful_map's deepcopy stored
    tail = _run(TwinModelsLogic(old_snapshot, CFG), batches[20:])
    assert tail
    assert head + tail == whole


def _step_ids(step, out: list[str]) -> list[str]:
    for sub in getattr(step, "substeps", []):
        out.append(sub.step_id)
        _step_ids(sub, out)
    return out


def test_model_step_keeps_the_recovery_step_id_of_stateful_map() -> None:
    ids = _step_ids(build_flow(Settings(), tail=False), [])
    assert "twinflow-models.models.stateful_flat_map.stateful.stateful_batch" in ids
