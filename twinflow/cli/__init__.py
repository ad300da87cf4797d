"""The ``twinflow`` command line, one module per command group."""
