"""twinflow: digital twins in step with their machines."""

__version__ = "0.1.0"
