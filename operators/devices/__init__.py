"""Device-side logic the protocol bridges share: envelopes, Modbus registers, Sparkplug B sessions, timestamps."""
