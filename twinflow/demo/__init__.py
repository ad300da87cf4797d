"""``twinflow demo``: the simulated plant, the publisher run, the report and fault scoring."""
