"""connectors/mqtt"""
