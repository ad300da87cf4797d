"""The plant simulator: pure physics and fault models (I/O lives in connectors/sim)."""
