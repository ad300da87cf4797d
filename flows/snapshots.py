r"""Bytewax state snapshots as pickled bytes, shared by the flows' stateful steps.

Bytes are immutable, so Bytewax stores them as they are; an object snapshot would be deep-copied
at every epoch (a pickle round trip of the whole state). A snapshot written as an object by an
older version still resumes, and so does one written before the operators were grouped into
subpackages or a module was split (its classes are found at their new place, :data:`MOVED_MODULES`,
:data:`MOVED_CLASSES`).

>>> from_snapshot(to_snapshot({"speed": 1.0})), from_snapshot({"old": "object"}), from_snapshot(None)
({'speed': 1.0}, {'old': 'object'}, None)
>>> from_snapshot(b"coperators.hysteresis\nHysteresis\n.").__module__  # a class at its old place
'operators.twin.hysteresis'
>>> from_snapshot(b"coperators.alerts\nOrderedTwinAlerts\n.").__module__  # moved twice
'operators.alerts.ordering'
>>> from_snapshot(b"coperators.live_models\nTwinModelState\n.").__module__  # the live step's state
'operators.ml.live_state'
>>> from_snapshot(b"coperators.records.alerts\nDesyncEscalation\n(Vp1\nNI01\nN(dtR.")  # its older fields
DesyncEscalation(twin_id='p1', ts=None, detail={}, in_sync=False, alert='desync')
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any, ClassVar

import numpy as np

from operators.records.alerts import DesyncEscalation

MOVED_MODULES = {
    "operators.envelope": "operators.records.envelope",
    "operators.commands": "operators.records.commands",
    "operators.model_control": "operators.records.model_control",
    "operators.twin_events": "operators.records.twin_events",
    "operators.twin_records": "operators.records.twin",
    "operators.alert_records": "operators.records.alerts",
    "operators.readings": "operators.devices.readings",
    "operators.registers": "operators.devices.modbus_registers",
    "operators.sparkplug": "operators.devices.sparkplug_session",
    "operators.timestamps": "operators.devices.timestamps",
    "operators.ingest": "operators.telemetry.ingest",
    "operators.guard": "operators.telemetry.guard",
    "operators.twins": "operators.telemetry.registry",
    "operators.reconcile": "operators.twin.reconcile",
    "operators.twin_policy": "operators.twin.sync_strategy",
    "operators.hysteresis": "operators.twin.hysteresis",
    "operators.event_windows": "operators.twin.event_windows",
    "operators.twin_processor": "operators.twin.processor",
    "operators.twin_state": "operators.twin.state",
    "operators.twin_resume": "operators.twin.resume",
    "operators.twin_inputs": "operators.twin.inputs",
    "operators.desired_gate": "operators.twin.desired_gate",
    "operators.anomaly": "operators.ml.novelty",
    "operators.condition": "operators.ml.condition",
    "operators.failure": "operators.ml.failure",
    "operators.forecast": "operators.ml.forecast",
    "operators.live_models": "operators.ml.live_step",
    "operators.ml_config": "operators.ml.config",
    "operators.model_inputs": "operators.ml.inputs",
    "operators.model_steps": "operators.ml.fleet_step",
    "operators.operating_point": "operators.ml.operating_point",
    "operators.scoring": "operators.ml.scoring",
    "operators.seasonality": "operators.ml.seasonality",
    "operators.sensor_health": "operators.ml.sensor_health",
    "operators.sensor_limits": "operators.ml.sensor_limits",
    "operators.twin_model": "operators.ml.twin_model",
    "operators.replay": "operators.ml.replay",
    "operators.alerts": "operators.alerts.lifecycle",
    "operators.policy": "operators.security.authorization",
    "operators.request_auth": "operators.security.request_auth",
}
"""Where the operators' modules lived before they were grouped by concern (old → new)."""

MOVED_CLASSES = {
    ("operators.alerts.lifecycle", "AlertRules"): ("operators.alerts.rules", "AlertRules"),
    ("operators.alerts.lifecycle", "KindRule"): ("operators.alerts.rules", "KindRule"),
    ("operators.alerts.lifecycle", "_KindState"): ("operators.alerts.episode", "KindState"),
    ("operators.alerts.lifecycle", "_Open"): ("operators.alerts.episode", "LiveAlert"),
    ("operators.alerts.lifecycle", "OrderedTwinAlerts"): ("operators.alerts.ordering", "OrderedTwinAlerts"),
    ("operators.records.alerts", "DesyncEscalation"): ("flows.snapshots", "_desync_escalation"),
    ("operators.ml.forecast", "Holt"): ("operators.ml.holt", "Holt"),
    ("operators.ml.forecast", "WindowQuantile"): ("operators.ml.quantiles", "WindowQuantile"),
    ("operators.ml.live_step", "TwinModelState"): ("operators.ml.live_state", "TwinModelState"),
}
"""Classes that left their module when it was split, or changed their fields (old → new place)."""


def _desync_escalation(twin_id: str, ts: Any, *fields: Any) -> DesyncEscalation:
    """A pickled :class:`DesyncEscalation` of any layout: ``(twin_id, ts, detail, in_sync)``,
    ``(twin_id, ts, detail)``, or the oldest ``(twin_id, ts, active, severity, detail)`` (always
    active, no severity)."""
    if len(fields) == 3:
        return DesyncEscalation(twin_id, ts, fields[-1])
    return DesyncEscalation(twin_id, ts, *fields)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = MOVED_MODULES.get(module, module)
        return super().find_class(*MOVED_CLASSES.get((module, name), (module, name)))


def _array(a: np.ndarray) -> tuple[Any, ...]:
    """A plain numeric array as numpy's own constructor over a copy of its bytes, a third cheaper
    to pickle than numpy's reduce (no dtype object), and loaded, writable, by any numpy."""
    if a.dtype.hasobject or a.dtype.names is not None:
        return a.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return np.ndarray, (a.shape, a.dtype.str, bytearray(a.tobytes()))


class _Pickler(pickle.Pickler):
    dispatch_table: ClassVar[dict] = {**copyreg.dispatch_table, np.ndarray: _array}


def to_snapshot(state: Any) -> bytes:
    """``pickle.dumps(state)``, the model states' arrays reduced cheaply (a snapshot
    is taken of every twin a flow touched in an epoch: its cost is paid per twin, every epoch).

    >>> import numpy as np
    >>> back = from_snapshot(to_snapshot({"x": np.arange(3.0), "m": np.eye(2, dtype=np.float32)[:, :1]}))
    >>> back["x"].tolist(), back["m"].tolist(), back["m"].dtype.str, back["x"].flags.writeable
    ([0.0, 1.0, 2.0], [[1.0], [0.0]], '<f4', True)
    """
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    return out.getvalue()


def from_snapshot(resume: bytes | Any | None) -> Any:
    """The state from a snapshot: bytes are unpickled, an old object snapshot is used as it is."""
    return _Unpickler(io.BytesIO(resume)).load() if isinstance(resume, bytes) else resume
