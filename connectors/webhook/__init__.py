"""connectors/webhook: signed HTTP POST delivery of alerts."""
