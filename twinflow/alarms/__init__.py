"""People's actions on alerts and alarm-system metrics, shared by the CLI and the HTTP API."""
