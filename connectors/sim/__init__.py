"""connectors/sim: the plant simulator's servers (OPC-UA, Modbus TCP, MQTT)."""
