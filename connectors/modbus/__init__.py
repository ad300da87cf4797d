"""connectors/modbus"""
