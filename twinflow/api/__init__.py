"""`twinflow serve`: the HTTP API (FastAPI on uvicorn) and the web view (docs/api.md)."""
