"""Configuration files and their errors: what connectors read, TOML loading, security files, secrets."""
