"""OPC-UA: the bridge (asyncua client) and certificates; needs the ``opcua`` extra."""

from connectors.extras import require

require("opcua")
