"""The alert lifecycle (ISA-18.2 states): model outputs and desync events in, alerts out."""
