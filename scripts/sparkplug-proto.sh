#!/usr/bin/env bash
# Compile connectors/sparkplug/sparkplug_b.proto with protoc from grpcio-tools (the `build` extra) into
# connectors/sparkplug/sparkplug_b_pb2.py. Run by `make setup` and the Dockerfile; the output is not committed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
"$PY" -m grpc_tools.protoc -I connectors/sparkplug --python_out=connectors/sparkplug connectors/sparkplug/sparkplug_b.proto
