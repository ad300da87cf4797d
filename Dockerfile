# twinflow services image: simulator, bridges and flow workers share it.
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install "uv>=0.5"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project --no-dev --extra opcua --extra modbus --extra sparkplug
COPY twinflow ./twinflow
COPY flows ./flows
COPY operators ./operators
COPY connectors ./connectors
COPY sql ./sql
COPY scripts ./scripts
RUN uv sync --frozen --no-dev --extra build --extra opcua --extra modbus --extra sparkplug && bash scripts/sparkplug-proto.sh /opt/venv/bin/python
ENV PATH=/opt/venv/bin:$PATH
RUN useradd --system --home /app twinflow && mkdir -p /var/lib/twinflow && chown twinflow /var/lib/twinflow
USER twinflow
ENTRYPOINT ["twinflow"]
CMD ["--help"]
