"""connectors/kafka"""
