"""How closely a twin matches its machine: the consistency score of its state under its rules."""

from __future__ import annotations

from operators.twin.state import CommandStatus, TwinState
from operators.twin.sync_strategy import Strategy, TwinRules


def consistency_score(st: TwinState, rules: TwinRules) -> float:
    """How closely the twin matches its machine, in [0, 1] (1 = fully consistent).

    Over the parameters that have a desired value, a weighted mean (critical weight 2, others 1)
    of ``closeness × acknowledged``: closeness is 1 within tolerance, else tolerance / |delta|
    (0 when there is no reported value, or tolerance is 0 and the values differ); acknowledged
    is 0.5 for a critical parameter whose current command is not yet acknowledged, else 1.
    physical_wins parameters count as 1. No such parameter: 1.
    """
    num = den = 0.0
    for name, ps in st.params.items():
        pr = rules.param(name)
        weight = 2.0 if pr.critical else 1.0
        den += weight
        if pr.strategy is Strategy.PHYSICAL_WINS:
            num += weight
            continue
        rep = st.reported.get(name)
        if rep is None:
            continue
        dev = abs(rep[0] - st.desired[name][0])
        closeness = 1.0 if dev <= pr.tolerance else (pr.tolerance / dev if pr.tolerance > 0 else 0.0)
        cmd = ps.command
        acked = 0.5 if pr.critical and cmd is not None and cmd.status is not CommandStatus.APPLIED else 1.0
        num += weight * closeness * acked
    return round(num / den, 6) if den else 1.0
