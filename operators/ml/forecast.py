"""Per-sensor forecasts with prediction intervals (Holt linear smoothing + conformal band).

For each sensor a :class:`~operators.ml.holt.Holt` model (level and trend, no season) forecasts
``horizon`` samples ahead. The interval is split-conformal: the ``coverage`` quantile of the
absolute errors of the last ``window`` forecasts made for exactly that horizon, so it is as
wide as the model has recently been wrong. The errors are kept in float32 (half the bytes): the
interval's half-width differs from the float64 errors' by at most 2⁻²⁴ of itself.

>>> f = SensorForecasts(ForecastConfig(horizon=3, window=20))
>>> for t in range(60):
...     f.update({"temp": 20.0 + 0.5 * t})
>>> fc = f.forecast()["temp"]
>>> round(fc.value, 1), fc.low <= fc.value <= fc.high
(51.0, True)
"""

from __future__ import annotations

import math
import struct
from array import array
from collections import deque
from collections.abc import Collection
from typing import Any

import msgspec
import numpy as np

from operators.ml.config import ForecastConfig
from operators.ml.holt import Holt
from operators.ml.quantiles import WindowQuantile, quantile_of, quantiles_of
from operators.versioned_state import canonical, doubles, restore_slots, slot_state


class SensorForecast(msgspec.Struct, frozen=True):
    """One sensor's forecast (a msgspec struct: several per published sample, built cheaply)."""

    horizon: int  # samples ahead
    value: float
    low: float
    high: float


class _SensorModel:
    """One sensor's forecaster as snapshots written before :class:`SensorForecasts` packed its
    sensors into arrays hold it (read when such a snapshot resumes, see
    :meth:`SensorForecasts.__setstate__`). ``pending`` held the last ``horizon`` forecasts in a list
    ring (the one made at learned sample ``k`` at index ``(k - 1) % horizon``) or, earlier, a
    ``deque``; ``model`` a :class:`Holt` or River's HoltWinters; ``errors`` a
    :class:`WindowQuantile` or River's ``RollingQuantile``."""

    __slots__ = ("errors", "model", "n", "pending")

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state.get("model"), Holt):
            state["model"] = Holt.of_river(state["model"])
        pending = state.get("pending")
        if isinstance(pending, deque):  # the k-th latest forecast goes to (n - 1 - k) % horizon
            ring: list[Any] = [None] * len(pending)
            for k, value in enumerate(reversed(pending)):
                ring[(state["n"] - 1 - k) % (pending.maxlen or len(pending))] = value
            state["pending"] = ring
        restore_slots(self, state)

    def __getstate__(self) -> dict[str, Any]:
        return slot_state(self)


def _errors_in_order(errors: Any) -> tuple[list[float], int]:
    """The values of an earlier layout's error window as a ring (values, count seen): a
    :class:`WindowQuantile` as it is; River's ``RollingQuantile`` from the state of its Rust part
    (length-prefixed doubles: the sorted window, then the window in arrival order). Should that
    state not read as expected, the sorted window is used: the same interval now, another eviction
    order until the window has turned over."""
    if isinstance(errors, WindowQuantile):
        return list(errors.values), errors.n
    raw = errors._rolling_quantile.__getstate__() if getattr(errors, "_is_updated", False) else b""
    if len(raw) < 16:
        return [], 0
    k = int.from_bytes(raw[:8], "little")
    off = 8 + 8 * k
    by_size = np.frombuffer(raw, "<f8", k, 8)
    m = int.from_bytes(raw[off : off + 8], "little") if len(raw) >= off + 8 else -1
    window = np.frombuffer(raw, "<f8", m, off + 8) if m == k and len(raw) >= off + 8 + 8 * m else by_size
    if not np.array_equal(np.sort(window), by_size):
        window = by_size
    return window.tolist(), len(window)


# Per sensor, one array of doubles: Holt's level, trend (0 without one) and first value, the samples
# learned, the errors seen, then the pending forecasts (``horizon``) and the error ring (``window``
# float32 values, two to a double).
LEVEL, TREND, FIRST, SEEN, ERRORS_SEEN, PENDING = range(6)
ROW_BY_ROW = 2  # SensorForecasts.update_many: batches up to this size run sample by sample (quicker)
HOLD_AT_MOST = 32  # samples SensorForecasts holds before it learns them (forecasts never published: replay)
_ERROR = struct.Struct("=f")  # one error of the ring, as numpy's float32 rounds it
_ERROR_MAX = float(np.finfo(np.float32).max)  # a larger error is stored as this (float32 overflows)
_FLOAT = {float}  # the values a held sample may have (SensorForecasts._hold)


def error_ring(m: array[float], horizon: int, size: int) -> np.ndarray:
    """The first ``size`` errors of a sensor's array (float32, a view)."""
    return np.frombuffer(m, dtype=np.float32, count=size, offset=8 * (PENDING + horizon))


def sensor_array(horizon: int, window: int) -> array[float]:
    """A new sensor's array: the head, ``horizon`` pending forecasts, ``window`` float32 errors."""
    return doubles(PENDING + horizon + (window + 1) // 2)


class SensorForecasts:
    """Forecasts of one twin's sensors; picklable. (Its own contract, not River's ``Forecaster``:
    :meth:`update` takes all sensors of a sample, :meth:`forecast` gives each one's ``horizon``-step value.)

    Nothing is learned with ``learn=False`` (twin in maintenance or simulating). Anomalous
    samples (``calibrate=False``) still move level and trend — a forecast must track an anomaly
    as it grows, that is when a limit breach is predicted — but never widen the interval.

    Each sensor's state is one flat array of doubles (``models``, in the order the sensors first
    came) instead of objects (≈ 0.7 KiB less per sensor): the :class:`Holt` state, the samples
    learned and the errors seen, the pending forecasts (a ring: the one made at learned sample ``k``
    at ``PENDING + (k - 1) % horizon``), then the last ``window`` absolute errors (a ring, as
    :class:`WindowQuantile`, in float32). The float operations are :class:`Holt`'s and
    :func:`quantile_of`'s on the errors rounded to float32: the same numbers bit for bit
    (tests/unit/ml/test_step_many.py).
    """

    __slots__ = ("_held", "config", "models")

    def __init__(self, config: ForecastConfig | None = None) -> None:
        self.config = config or ForecastConfig()
        self.models: dict[str, array[float]] = {}
        self._held: _Held | None = None  # samples of update_many waiting for the next forecast

    def reset(self) -> None:
        self.models.clear()
        self._held = None

    def forget(self, sensors: Collection[str]) -> None:
        """Drop these sensors' forecasters (samples held are learned first): nothing of theirs is
        forecast until they are learned again, afresh."""
        self._learn_held()
        for name in sensors:
            self.models.pop(name, None)

    def seen(self, sensor: str) -> int:
        """Samples the sensor's forecaster has learned (0: unknown sensor)."""
        self._learn_held()
        m = self.models.get(sensor)
        return 0 if m is None else int(m[SEEN])

    def update(self, readings: dict[str, float], learn: bool = True, calibrate: bool = True) -> None:
        if not learn:
            return
        self._learn_held()
        cfg = self.config
        h, window, alpha = cfg.horizon, cfg.window, cfg.alpha
        beta = cfg.beta or None
        errors_at = 8 * (PENDING + h)  # the error ring's byte offset
        models = self.models
        pack = _ERROR.pack_into
        for name, y in readings.items():
            if y is None or y.__class__ is bool or not math.isfinite(y):  # booleans are not forecast
                continue
            m = models.get(name)
            if m is None:
                m = models[name] = sensor_array(h, window)
            n = int(m[SEEN])
            slot = PENDING + n % h  # the ring's oldest forecast, then the new one's
            if calibrate and n >= h:  # the forecast made h samples ago is for now
                k = int(m[ERRORS_SEEN])
                e = abs(y - m[slot])
                pack(m, errors_at + 4 * (k % window), _ERROR_MAX if e > _ERROR_MAX else e)
                m[ERRORS_SEEN] = k + 1
            if n >= 2:  # Holt.learn_one and forecast_at
                level, trend = m[LEVEL], m[TREND]
                m[LEVEL] = new = alpha * y + (1 - alpha) * (level + trend)
                if beta is not None:
                    m[TREND] = trend = beta * (new - level) + (1 - beta) * trend
                    m[slot] = new + h * trend
                else:
                    m[slot] = new
            else:
                m[slot] = self._start(m, y, n)
            m[SEEN] = n + 1

    def update_many(
        self, rows: list[dict[str, float] | None], calibrate: list[bool], publish: list[bool]
    ) -> list[tuple[dict[str, SensorForecast], dict[str, int]] | None]:
        """A twin's batch column-wise: ``rows[i]`` is what :meth:`update` would learn at sample ``i``
        (None: nothing, ``learn=False``), ``calibrate[i]`` its flag; where ``publish[i]``, the
        :meth:`forecast` after sample ``i`` and each sensor's :meth:`seen` then. The same float
        operations in the same order as :meth:`update` per sample, sensor by sensor (a sensor's
        recursion never reads another's): the same numbers bit for bit (tests/unit/ml/test_step_many.py).
        A batch without a published sample is held (compactly, :class:`_Held`; at most
        ``HOLD_AT_MOST`` samples) and learned with the next one that has one, or when anything reads
        the forecasters (every other method folds it in first, pickling too): a tailing flow offers
        about one sample per twin and call, and a run of ``forecast_every`` samples is learned
        column-wise instead of sample by sample. A batch of at most ``ROW_BY_ROW`` samples with
        nothing held runs sample by sample (:meth:`update`, :meth:`forecast`): the column-wise set-up
        per sensor would cost more."""
        if not any(publish):
            self._hold(rows, calibrate)
            return [None] * len(rows)
        held, self._held = self._held, None
        if held is None and len(rows) <= ROW_BY_ROW:
            return [self._update_row(rows[i], calibrate[i], publish[i]) for i in range(len(rows))]
        if held is not None:  # (its sensors first: its samples came first)
            self._add_held_sensors(held)
        self._add_sensors(rows)
        columns = {name: [r.get(name) if r else None for r in rows] for name in self.models}
        if held is None:
            return self._learn(len(rows), columns, calibrate, publish)
        before = len(held.calibrate)
        earlier = held.columns()
        for name, column in columns.items():
            columns[name] = earlier.get(name, [None] * before) + column
        return self._learn(
            before + len(rows), columns, [*held.calibrate, *calibrate], [False] * before + list(publish)
        )[before:]

    def _hold(self, rows: list[dict[str, float] | None], calibrate: list[bool]) -> None:
        """Keep samples to learn later; a sample of other sensors than those held, or of values that
        are not floats, makes the held samples learned first and itself at once."""
        for r, c in zip(rows, calibrate, strict=True):
            if not r:  # nothing to learn (learn=False)
                continue
            held = self._held
            keys = tuple(r)
            values = r.values()
            floats = set(map(type, values)) <= _FLOAT
            if floats and held is not None and held.keys == keys and len(held.calibrate) < HOLD_AT_MOST:
                held.values.extend(values)  # (the array takes the values as they come: no tuple of them)
                held.calibrate.append(c)
                continue
            self._learn_held()
            if floats:
                self._held = _Held(keys, tuple(values), c)
            else:  # (booleans and missing values are not learned; ints are: as update() does)
                self.update(r, True, c)

    def _learn_held(self) -> None:
        """Learn the samples held (:meth:`_hold`), in order."""
        held = self._held
        if held is None:
            return
        self._held = None
        self._add_held_sensors(held)
        n = len(held.calibrate)
        self._learn(n, held.columns(), held.calibrate, [False] * n)

    def _add_held_sensors(self, held: _Held) -> None:
        """The held samples' new sensors, in the order update() adds them (first finite value)."""
        if all(name in self.models for name in held.keys):
            return
        d = len(held.keys)
        self._add_sensors([dict(zip(held.keys, held.values[i : i + d], strict=True))
                           for i in range(0, len(held.values), d)])  # fmt: skip

    def _add_sensors(self, rows: list[dict[str, float] | None]) -> None:
        """Add the rows' new sensors, in the order update() adds them."""
        cfg = self.config
        models = self.models
        known = models.keys()
        isfinite = math.isfinite
        for r in rows:
            if r and not r.keys() <= known:
                for name, y in r.items():
                    if name not in models and y is not None and y.__class__ is not bool and isfinite(y):
                        models[name] = sensor_array(cfg.horizon, cfg.window)

    def _learn(
        self, samples: int, columns: dict[str, Any], calibrate: Any, publish: list[bool]
    ) -> list[tuple[dict[str, SensorForecast], dict[str, int]] | None]:
        """:meth:`update_many`'s column-wise pass: ``columns[name]`` holds the sensor's value at each
        of the ``samples`` (None: none); the sensors are in ``models`` already."""
        cfg = self.config
        h, window, alpha, coverage = cfg.horizon, cfg.window, cfg.alpha, cfg.coverage
        beta = cfg.beta or None
        errors_at = 8 * (PENDING + h)
        models = self.models
        isfinite = math.isfinite
        absent = [None] * samples
        out: list[tuple[dict[str, SensorForecast], dict[str, int]] | None] = [({}, {}) if p else None for p in publish]
        nan = math.nan
        # Full rings of every sensor (copies), their quantiles in one sort at the end (row by row: the same numbers).
        full: list[tuple[dict[str, SensorForecast], str, float]] = []
        rings: list[bytes] = []
        keep, keep_trend = 1 - alpha, 1 - beta if beta is not None else 0.0  # (the same floats as inline)
        for name, m in models.items():
            n, k = int(m[SEEN]), int(m[ERRORS_SEEN])
            level, trend = m[LEVEL], m[TREND]
            pending = m[PENDING : PENDING + h].tolist()  # the ring of forecasts, as floats while the batch runs
            errors = memoryview(m).cast("B")[errors_at:].cast("f")  # the error ring (stores round as struct's "f")
            for i, y in enumerate(columns.get(name, absent)):
                if y is not None and y.__class__ is not bool and isfinite(y):
                    slot = n % h
                    if n >= h and calibrate[i]:
                        e = abs(y - pending[slot])
                        errors[k % window] = _ERROR_MAX if e > _ERROR_MAX else e
                        k += 1
                    if n >= 2:
                        new = alpha * y + keep * (level + trend)
                        if beta is not None:
                            trend = beta * (new - level) + keep_trend * trend
                            pending[slot] = new + h * trend
                        else:
                            pending[slot] = new
                        level = new
                    else:
                        pending[slot] = self._start(m, y, n)
                        level, trend = m[LEVEL], m[TREND]
                    n += 1
                published = out[i]
                if published is not None and n:
                    value = pending[(n - 1) % h]
                    forecasts = published[0]
                    if n > h and k >= window:  # a full ring: its quantile with the others' below
                        rings.append(errors[:window].tobytes())
                        full.append((forecasts, name, value))
                        forecasts[name] = None  # type: ignore[assignment]  # (its place in the order of sensors)
                    else:
                        size = min(k, window)
                        w = quantile_of(error_ring(m, h, size), coverage) if n > h and size else nan
                        forecasts[name] = SensorForecast(h, value, value - w, value + w)
                    published[1][name] = n
            m[LEVEL], m[TREND], m[SEEN], m[ERRORS_SEEN] = level, trend, n, k
            errors.release()
            m[PENDING : PENDING + h] = array("d", pending)
        _fill_full(full, rings, h, window, coverage)
        return out

    def _update_row(
        self, readings: dict[str, float] | None, calibrate: bool, publish: bool
    ) -> tuple[dict[str, SensorForecast], dict[str, int]] | None:
        """One sample of :meth:`update_many`, as :meth:`update` and, where ``publish``, :meth:`forecast`."""
        if readings:
            self.update(readings, True, calibrate)
        if not publish:
            return None
        return self.forecast(), {name: int(m[SEEN]) for name, m in self.models.items() if m[SEEN]}

    def _start(self, m: array[float], y: float, n: int) -> float:
        """A sensor's first two values start its :class:`Holt` model; the forecast after ``y``."""
        cfg = self.config
        if n == 0:
            m[FIRST] = y
            return y
        model = Holt(cfg.alpha, cfg.beta)
        model.first = m[FIRST]
        model.learn_one(y)
        m[LEVEL] = model.level
        m[TREND] = model.trend or 0.0
        return model.forecast_at(cfg.horizon)

    def forecast(self) -> dict[str, SensorForecast]:
        """The latest ``horizon``-step forecast per sensor, with its interval (NaN until calibrated)."""
        self._learn_held()
        cfg = self.config
        h, window, coverage = cfg.horizon, cfg.window, cfg.coverage
        errors_at = 8 * (PENDING + h)
        out: dict[str, SensorForecast] = {}
        full: list[tuple[dict[str, SensorForecast], str, float]] = []
        rings: list[bytes] = []
        for name, m in self.models.items():
            n = int(m[SEEN])
            if not n:
                continue
            value = m[PENDING + (n - 1) % h]
            size = min(int(m[ERRORS_SEEN]), window)
            if n > h and size == window:  # a full ring: its quantile with the others' below
                rings.append(m.tobytes()[errors_at : errors_at + 4 * window])
                full.append((out, name, value))
                out[name] = None  # type: ignore[assignment]  # (its place in the order of sensors)
                continue
            w = quantile_of(error_ring(m, h, size), coverage) if n > h and size else math.nan
            out[name] = SensorForecast(h, value, value - w, value + w)
        _fill_full(full, rings, h, window, coverage)
        return out

    def __getstate__(self) -> dict[str, Any]:
        """What learning sample by sample would hold (the held samples learned first: snapshots of
        earlier versions have the same form)."""
        self._learn_held()
        state = slot_state(self)
        del state["_held"]
        return {**state, "errors32": True}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Snapshots of this layout, and of the earlier ones (float64 errors; a :class:`_SensorModel`
        per sensor), resume on the same numbers (the errors rounded to float32)."""
        errors32 = state.pop("errors32", False)
        restore_slots(self, state)
        self._held = None
        cfg = self.config = canonical(self.config)
        h, window = cfg.horizon, cfg.window
        for name, old in self.models.items():
            if isinstance(old, array):
                m = self.models[name] = sensor_array(h, window)  # exactly sized (unpickled arrays keep spare room)
                if errors32:
                    m[:] = old
                    continue
                m[: PENDING + h] = old[: PENDING + h]
                self._set_errors(m, old[PENDING + h :])
                continue
            holt = old.model
            m = self.models[name] = sensor_array(h, window)
            m[FIRST] = holt.first if holt.first is not None else 0.0
            m[LEVEL] = holt.level if holt.level is not None else 0.0
            m[TREND] = holt.trend or 0.0
            m[SEEN] = old.n
            for k, value in enumerate(old.pending):
                m[PENDING + k] = value
            values, seen = _errors_in_order(old.errors)
            self._set_errors(m, values)
            m[ERRORS_SEEN] = seen

    def _set_errors(self, m: array[float], values: Any) -> None:
        """Put an earlier layout's float64 error ring into ``m``'s float32 one."""
        cfg = self.config
        ring = np.minimum(np.asarray(values[: cfg.window], dtype=np.float64), _ERROR_MAX).astype(np.float32)
        memoryview(m).cast("B")[8 * (PENDING + cfg.horizon) :][: 4 * len(ring)] = ring.tobytes()


def _fill_full(
    full: list[tuple[dict[str, SensorForecast], str, float]], rings: list[bytes], h: int, window: int, coverage: float
) -> None:
    """The forecasts of sensors with a full error ring (``rings[i]``: ``window`` float32 errors; the
    i-th forecast goes to ``full[i]``'s dict, sensor, value), their quantiles in one sort."""
    if not full:
        return
    widths = quantiles_of(np.frombuffer(b"".join(rings), dtype=np.float32).reshape(len(full), window), coverage)
    for (forecasts, name, value), w in zip(full, widths, strict=True):
        forecasts[name] = SensorForecast(h, value, value - w, value + w)


class _Held:
    """Samples of one set of sensors (``keys``, in that order) held for learning: their float values
    one sample after another in ``values``, a calibrate flag (1/0) per sample in ``calibrate``
    (≈ 8 bytes per value: dicts of the samples would hold ≈ 10 times that per twin)."""

    __slots__ = ("calibrate", "keys", "values")

    def __init__(self, keys: tuple[str, ...], values: tuple[float, ...], calibrate: bool) -> None:
        self.keys = keys
        self.values = array("d", values)
        self.calibrate = bytearray((calibrate,))

    def columns(self) -> dict[str, list[float]]:
        """Each sensor's held values, in order."""
        d = len(self.keys)
        return {name: self.values[j::d].tolist() for j, name in enumerate(self.keys)}


class ForecastBatch:
    """Samples of one twin's batch whose forecaster update waits for the batch's end (column-wise,
    :meth:`SensorForecasts.update_many`); the i-th :meth:`add` is the i-th result of :meth:`run`."""

    __slots__ = ("calibrate", "forget", "publish", "rows")

    def __init__(self) -> None:
        self.rows: list[dict[str, float] | None] = []
        self.calibrate: list[bool] = []
        self.publish: list[bool] = []
        self.forget: list[tuple[int, frozenset[str]]] = []  # (sample, sensors dropped before it is learned)

    def __len__(self) -> int:
        return len(self.rows)

    def add(
        self, readings: dict[str, float] | None, calibrate: bool, publish: bool, forget: Collection[str] = ()
    ) -> None:
        """One sample: what the forecasters learn (None: nothing), whether it widens the interval,
        whether its forecasts are wanted; ``forget``: sensors whose forecasters are dropped before
        it (:meth:`SensorForecasts.forget`)."""
        if forget:
            self.forget.append((len(self.rows), frozenset(forget)))
        self.rows.append(readings)
        self.calibrate.append(calibrate)
        self.publish.append(publish)

    def run(self, forecaster: SensorForecasts) -> list[tuple[dict[str, SensorForecast], dict[str, int]] | None]:
        """Learn the samples added so far (then forget them); per sample its forecasts and each
        sensor's samples seen, where asked for. Sensors to drop cut the batch there."""
        rows, calibrate, publish, forget = self.rows, self.calibrate, self.publish, self.forget
        self.rows, self.calibrate, self.publish, self.forget = [], [], [], []
        if not forget:
            return forecaster.update_many(rows, calibrate, publish)
        out: list[tuple[dict[str, SensorForecast], dict[str, int]] | None] = []
        start = 0
        for i, sensors in forget:
            if i > start:
                out += forecaster.update_many(rows[start:i], calibrate[start:i], publish[start:i])
                start = i
            forecaster.forget(sensors)
        return out + forecaster.update_many(rows[start:], calibrate[start:], publish[start:])


# The class name in snapshots pickled before it was renamed (River's Forecaster is another contract).
Forecaster = SensorForecasts
