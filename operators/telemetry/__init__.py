"""Judging a reading: decode, validate, admit (schema, limits, registry, duplicates)."""
