"""The alert lifecycle's thresholds and timings (``[alerts.rules]`` in the settings, docs/alerts.md)."""

from __future__ import annotations

from dataclasses import dataclass

from operators.records.alerts import Kind
from operators.strict import STRICT


@dataclass(frozen=True, slots=True)
class KindRule:
    """Timing of one kind: seconds above to open, below to resolve."""

    __pydantic_config__ = STRICT  # typos in [alerts.rules.*] are errors, not ignored

    min_duration_s: float = 60.0  # seconds (event time) the condition must last before the alert opens
    cool_down_s: float = 300.0  # seconds it must stay clear before the alert resolves (the off-delay)


@dataclass(frozen=True, slots=True)
class AlertRules:
    """Thresholds and timings of the lifecycle (from ``[alerts]`` in the settings)."""

    __pydantic_config__ = STRICT  # typos in [alerts.rules] are errors, not ignored

    anomaly: KindRule = KindRule(60.0, 300.0)
    condition: KindRule = KindRule(60.0, 300.0)  # health below health_open (docs/ml.md)
    sensor_fault: KindRule = KindRule(0.0, 120.0)  # the detector already waits (e.g. a frozen run)
    failure: KindRule = KindRule(0.0, 600.0)
    forecast_breach: KindRule = KindRule(0.0, 600.0)
    desync: KindRule = KindRule(0.0, 0.0)  # reconciliation already debounces desync
    device_offline: KindRule = KindRule(0.0, 0.0)  # the twin flow waits twin.offline_alert_after_s
    # Anomaly: clear when score < threshold × clear_ratio; severity from score / threshold (scores are
    # bounded in [0, 1): at the default threshold 0.5, major from 0.7 (p = 1e-23), critical from 0.9).
    anomaly_clear_ratio: float = 0.8
    anomaly_major_ratio: float = 1.4  # severity major from score ≥ threshold × this
    anomaly_critical_ratio: float = 1.8  # severity critical from score ≥ threshold × this
    # Condition: open when the health index drops below health_open, clear above health_clear;
    # severity major below health_major, critical below health_critical.
    health_open: float = 0.5
    health_clear: float = 0.7  # a condition alert clears when the health index is back above this
    health_major: float = 0.25  # severity major below this health index
    health_critical: float = 0.05  # severity critical below this health index
    # Failure: open when RUL ≤ rul_open_s or probability ≥ probability_open.
    rul_open_s: float = 72 * 3600.0
    probability_open: float = 0.5  # a failure alert opens when the failure probability reaches this
    failure_clear_factor: float = 1.25  # clear when RUL > rul_open_s × f and p < probability_open / f
    # Forecast: open when a limit breach is predicted within breach_horizon_s.
    breach_horizon_s: float = 24 * 3600.0
    breach_clear_factor: float = 1.25  # clear when no breach is predicted within breach_horizon_s × this
    # Severity from lead time (time to failure / to breach): major within this.
    lead_major_s: float = 24 * 3600.0
    lead_critical_s: float = 4 * 3600.0  # severity critical when the lead time is within this
    # Flapping (chattering): the flap_count-th opening within flap_window_s marks the alert `flapping`.
    flap_count: int = 3
    flap_window_s: float = 3600.0  # the window flap_count openings are counted in
    flap_cool_down_factor: float = 4.0  # a flapping alert's cool-down is multiplied by this
    # An alert not acknowledged after this is escalated (level + 1, severity one step up), again after each period.
    escalate_after_s: float = 1800.0
    top_sensors: int = 3  # sensors named in an alert's summary (by contribution)
    # Cross-topic order: records are applied in event-time order once the twin's newest data ts is this
    # far past them (the added alert latency, in event time); at most reorder_max_held wait.
    reorder_window_s: float = 30.0
    reorder_max_held: int = 100_000  # records held for reordering at most; beyond, the oldest are applied
    # An action for an alert id not opened yet waits this long (event time), at most 64 of them.
    pending_action_ttl_s: float = 3600.0
    # ISA-18.2: latch unacknowledged cleared alarms (RTNUN) until acknowledged.
    latch_unacknowledged: bool = False
    standing_after_s: float = 24 * 3600.0  # an alarm active longer than this is a standing alarm
    max_shelve_s: float = 24 * 3600.0  # the longest shelving a person may ask for

    def timing(self, kind: Kind) -> KindRule:
        return getattr(self, kind)
