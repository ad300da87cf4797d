"""The one place a flow gets the rules a reading is judged by: :class:`operators.telemetry.ingest.ReadingRules`
from the settings (message limits, dead-letter size, twin registry, duplicate guard).

Every flow that decodes ``telemetry.raw`` (telemetry, twin, models) builds its rules here, once
per decoding step, so a reading is valid or invalid by the same rules wherever it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta

from connectors.config.security_files import load_twin_registry
from flows.settings import DataflowSettings as Settings
from operators.telemetry.guard import IngestGuard
from operators.telemetry.ingest import Limits, Polled, ReadingRules


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


def own_messages(topics: Iterable[str] | None) -> Callable[[Polled], Polled]:
    """A polled batch as it is (``topics`` None: a flow polls only its own topics), or with only
    the messages of ``topics`` (:meth:`Polled.only`): the pipeline flow gives each part its topics
    inside the part's first step instead of a step of its own."""
    if topics is None:
        return lambda p: p
    wanted = frozenset(topics)
    return lambda p: p.only(wanted)
