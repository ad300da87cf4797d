"""The one place a flow gets the rules a reading is judged by: :class:`operators.telemetry.ingest.ReadingRules`
from the settings (message limits, dead-letter size, twin registry, duplicate guard).

Every flow that decodes ``telemetry.raw`` (telemetry, twin, models) builds its rules here, once
per decoding step, so a reading is valid or invalid by the same rules wherever it is read.
"""

from __future__ import annotations

from datetime import timedelta

from connectors.config.security_files import load_twin_registry
from flows.settings import DataflowSettings as Settings
from operators.telemetry.guard import IngestGuard
from operators.telemetry.ingest import Limits, ReadingRules


def limits(settings: Settings) -> Limits:
    """The message limits of ``[flow]`` and the dead-letter size of ``[security]``."""
    fs = settings.flow
    return Limits(
        max_bytes=fs.max_message_bytes,
        max_future_skew=timedelta(seconds=fs.max_future_skew_s),
        max_age=timedelta(days=fs.max_age_days),
        max_dead_letter_bytes=settings.security.max_dead_letter_bytes,
    )


def reading_rules(settings: Settings) -> ReadingRules:
    """Limits plus the guard: unknown twins (``security.twin_registry``) and duplicate seqs
    (``security.dedup_entries``; 0 switches the duplicate check off)."""
    sec = settings.security
    registry = load_twin_registry(sec.twin_registry) if sec.twin_registry else None
    guard = IngestGuard(registry, sec.dedup_entries) if registry or sec.dedup_entries else None
    return ReadingRules(limits(settings), guard)
