"""Target transform: divide each series' (differenced) values by their standard deviation
without removing their mean. ``LocalStandardScaler`` would also subtract the mean daily change,
which extrapolates the last two years' drift into every forecast; for prices that are close to a
random walk that drift is noise, and it made the model lose to the naive forecast on real data."""

from __future__ import annotations

import numpy as np
from coreforecast import scalers as core_scalers
from mlforecast.lag_transforms import _BaseLagTransform
from mlforecast.target_transforms import _BaseLocalScaler


class _CoreScaleOnly(core_scalers.LocalStandardScaler):
    def fit(self, ga):
        super().fit(ga)
        stats = np.array(self.stats_, copy=True)  # type: ignore[has-type]  # set by coreforecast's untyped fit
        stats[:, 0] = 0.0
        stats[:, 1] = np.where(np.isfinite(stats[:, 1]) & (stats[:, 1] > 0), stats[:, 1], 1.0)
        self.stats_ = stats
        return self


class LocalScale(_BaseLocalScaler):
    """Per-series scaling by the standard deviation, no centering."""

    scaler_factory = _CoreScaleOnly


# --- Lag transforms of the price level ---------------------------------------------------------
# The target is the scaled period-to-period change, so mlforecast's lag transforms see changes.
# Promotions and mean reversion are about the *level*: how far the price sits below its recent
# high, how long since it last dropped. These transforms rebuild the level (in units of the
# series' typical move) from the changes, vectorized over all series at once.


def _group_starts(indptr: np.ndarray, n: int) -> np.ndarray:
    """Index of the first element of each element's group."""
    sizes = np.diff(indptr)
    return np.repeat(indptr[:-1], sizes)[:n]


def _level(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Cumulative sum of the changes within each series (the level up to a constant)."""
    x = np.nan_to_num(np.asarray(data, dtype=np.float64))
    cs = np.cumsum(x)
    before = np.r_[0.0, cs][indptr[:-1]]
    return cs - np.repeat(before, np.diff(indptr))


def _shift(values: np.ndarray, indptr: np.ndarray, lag: int) -> np.ndarray:
    """Shift within each series by ``lag`` positions (NaN where it would cross a series start)."""
    n = len(values)
    out = np.full(n, np.nan)
    if lag <= 0:
        return values.astype(np.float64, copy=True)
    idx = np.arange(n)
    src = idx - lag
    ok = src >= _group_starts(indptr, n)
    out[ok] = values[src[ok]]
    return out


class _LevelTransform(_BaseLagTransform):
    """Base: compute a per-row statistic from the changes, then lag it like mlforecast does."""

    window: int
    on_level = False  # models saved before the option read as changes

    def _set_core_tfm(self, lag: int) -> _LevelTransform:
        self._lag_periods = lag
        return self

    def _get_configured_lag(self) -> int:
        return self._lag_periods

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform(self, ga) -> np.ndarray:
        data, indptr = np.asarray(ga.data), np.asarray(ga.indptr)
        return _shift(self._stat(data, indptr), indptr, self._lag_periods)

    def update(self, ga) -> np.ndarray:
        data, indptr = np.asarray(ga.data), np.asarray(ga.indptr)
        stat = self._stat(data, indptr)
        pos = indptr[1:] - self._lag_periods
        ok = pos >= indptr[:-1]
        out = np.full(len(pos), np.nan)
        out[ok] = stat[pos[ok]]
        return out

    def take(self, idxs: np.ndarray) -> _LevelTransform:
        return self  # stateless

    @staticmethod
    def stack(transforms):
        return transforms[0]

    @property
    def update_samples(self) -> int:
        return self.window + self._lag_periods + 1  # one more for a change of levels

    @property
    def _is_finite_window(self) -> bool:
        return True


class BelowHigh(_LevelTransform):
    """Level minus its maximum over the last ``window`` periods (0 at a high, negative below)."""

    def __init__(self, window: int) -> None:
        self.window = window

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        return _level_vs_window(data, indptr, self.window, np.fmax)


class AboveLow(_LevelTransform):
    """Level minus its minimum over the last ``window`` periods (0 at a low, positive above)."""

    def __init__(self, window: int) -> None:
        self.window = window

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        return _level_vs_window(data, indptr, self.window, np.fmin)


def _changes(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Period-to-period change within each series (0 at each series' first position)."""
    x = np.asarray(data, dtype=np.float64)
    d = np.diff(x, prepend=np.nan)
    d[indptr[:-1][indptr[:-1] < len(x)]] = np.nan
    return np.nan_to_num(d, nan=0.0)


def _drops(
    data: np.ndarray, indptr: np.ndarray, threshold: float, on_level: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Positions, their series' starts, where the change falls below ``-threshold`` and the
    position of the last such drop up to each position (-1 before any). ``on_level``: the
    data are levels (the level model's standardized log price), not changes."""
    idx = np.arange(len(data))
    x = _changes(data, indptr) if on_level else np.asarray(data, dtype=np.float64)
    drop = np.nan_to_num(x, nan=0.0) < -threshold
    last = np.maximum.accumulate(np.where(drop, idx, -1))
    return idx, _group_starts(indptr, len(data)), drop, last


class SinceDrop(_LevelTransform):
    """Periods since the last change below ``-threshold`` typical moves (capped at ``window``):
    promotions come back on cycles that drift, so the time since the last one is what counts."""

    def __init__(self, threshold: float, window: int, on_level: bool = False) -> None:
        self.threshold = threshold
        self.window = window
        self.on_level = on_level

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        idx, starts, _, last = _drops(data, indptr, self.threshold, self.on_level)
        since = np.where(last >= starts, idx - last, self.window)
        return np.minimum(since, self.window).astype(np.float64)


class DropGap(_LevelTransform):
    """Periods between the last two drops below ``-threshold`` typical moves (capped at
    ``window``): with ``SinceDrop`` it tells the model when this product's next promotion is
    due, whatever its own cycle."""

    def __init__(self, threshold: float, window: int, on_level: bool = False) -> None:
        self.threshold = threshold
        self.window = window
        self.on_level = on_level

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        idx, starts, drop, last = _drops(data, indptr, self.threshold, self.on_level)
        before = np.r_[-1, last[:-1]]  # last drop strictly before each position
        gap_at = np.where(drop & (before >= starts), idx - before, self.window)
        has = last >= starts
        gap = np.where(has, gap_at[np.maximum(last, 0)], self.window)
        return np.minimum(gap, self.window).astype(np.float64)


def _level_vs_window(data: np.ndarray, indptr: np.ndarray, window: int, op) -> np.ndarray:
    """Level minus op(level over the trailing window), within each series."""
    level = _level(data, indptr)
    n = len(level)
    starts = _group_starts(indptr, n)
    idx = np.arange(n)
    best = level.copy()
    # doubling: after k rounds ``best`` covers 2**k positions; windows here are < 128
    span = 1
    while span < window:
        step = min(span, window - span)
        src = idx - step
        ok = src >= starts
        shifted = np.where(ok, best[np.maximum(src, 0)], np.nan)
        best = op(best, shifted)
        span += step
    return level - best
