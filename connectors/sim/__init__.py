"""connectors/sim: the plant simulator — pure physics, faults and plant (``physics``, ``faults``, ``plant``)
and the servers that expose it (OPC-UA, Modbus TCP, MQTT; ``runner`` drives them for `twinflow simulate`)."""
