"""Twin reconciliation: desired vs reported state, sync strategies, the desired-state gate, windows."""
