"""connectors/opcua"""
