"""Modbus TCP: the bridge (pymodbus client); needs the ``modbus`` extra."""

from connectors.extras import require

require("modbus")
