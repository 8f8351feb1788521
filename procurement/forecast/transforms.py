"""Target transform: divide each series' (differenced) values by their standard deviation
without removing their mean. ``LocalStandardScaler`` would also subtract the mean daily change,
which extrapolates the last two years' drift into every forecast; for prices that are close to a
random walk that drift is noise, and it made the model lose to the naive forecast on real data."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import coreforecast.lag_transforms as core_tfms
import numpy as np
from coreforecast import scalers as core_scalers
from mlforecast.lag_transforms import Lag, _BaseLagTransform
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


def _tails(data: np.ndarray, indptr: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``n`` values of each series, as (data, indptr)."""
    sizes = np.diff(indptr)
    if len(sizes) == 0 or sizes.max() <= n:
        return data, indptr
    take = np.minimum(sizes, n)
    out_ptr = np.r_[0, np.cumsum(take)]
    within = np.arange(out_ptr[-1]) - np.repeat(out_ptr[:-1], take)
    return data[np.repeat(indptr[1:] - take, take) + within], out_ptr


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

    _has_rows = False

    def _stat_rows(self, rows: np.ndarray) -> np.ndarray:
        """``_stat`` of series of equal length, one per row."""
        raise NotImplementedError

    def _stat_at(self, rows: np.ndarray, col: int) -> np.ndarray:
        """``_stat_rows(rows)[:, col]``: a prediction step needs one column of the statistic,
        and most need far less work for it than for the whole matrix."""
        return self._stat_rows(rows)[:, col]

    def transform(self, ga) -> np.ndarray:
        data, indptr = np.asarray(ga.data), np.asarray(ga.indptr)
        return _shift(self._stat(data, indptr), indptr, self._lag_periods)

    def update(self, ga) -> np.ndarray:
        # only the tail the statistic looks back on: a prediction step over the whole kept
        # history cost 10 ms per step and transform at 500 series (the backtest's 10 s)
        data, indptr = np.asarray(ga.data), np.asarray(ga.indptr)
        sizes = np.diff(indptr)
        lag = self._lag_periods
        if self._has_rows and len(sizes) and (sizes == sizes[0]).all():
            # every series as long (as in a recursive forecast): one row each, the tail a view,
            # and the statistic along the rows (3x faster than over the flat array; the test
            # of updates checks both agree)
            width = min(int(sizes[0]), self.update_samples)
            if width >= lag:
                rows = data.reshape(len(sizes), int(sizes[0]))[:, int(sizes[0]) - width :]
                return self._stat_at(rows, width - lag)
        data, indptr = _tails(data, indptr, self.update_samples)
        stat = self._stat(data, indptr)
        pos = indptr[1:] - lag
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

    _has_rows = True

    def _stat_rows(self, rows: np.ndarray) -> np.ndarray:
        return _level_vs_window_rows(rows, self.window, np.fmax)

    def _stat_at(self, rows: np.ndarray, col: int) -> np.ndarray:
        return _level_vs_window_at(rows, self.window, np.fmax, col)


class AboveLow(_LevelTransform):
    """Level minus its minimum over the last ``window`` periods (0 at a low, positive above)."""

    def __init__(self, window: int) -> None:
        self.window = window

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        return _level_vs_window(data, indptr, self.window, np.fmin)

    _has_rows = True

    def _stat_rows(self, rows: np.ndarray) -> np.ndarray:
        return _level_vs_window_rows(rows, self.window, np.fmin)

    def _stat_at(self, rows: np.ndarray, col: int) -> np.ndarray:
        return _level_vs_window_at(rows, self.window, np.fmin, col)


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


def _drop_flags_rows(rows: np.ndarray, threshold: float, on_level: bool) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    if on_level:
        x = np.nan_to_num(np.diff(x, axis=1, prepend=np.nan), nan=0.0)
    return np.nan_to_num(x, nan=0.0) < -threshold


def _drops_rows(rows: np.ndarray, threshold: float, on_level: bool) -> tuple[np.ndarray, ...]:
    """``_drops`` for series of equal length, one per row: (columns, drop flags, last drop)."""
    drop = _drop_flags_rows(rows, threshold, on_level)
    return np.arange(drop.shape[1]), drop, _last_true_rows(drop)


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

    _has_rows = True

    def _stat_rows(self, rows: np.ndarray) -> np.ndarray:
        cols, _, last = _drops_rows(rows, self.threshold, self.on_level)
        since = np.where(last >= 0, cols - last, self.window)
        return np.minimum(since, self.window).astype(np.float64)

    def _stat_at(self, rows: np.ndarray, col: int) -> np.ndarray:
        last, _ = _last_two_true(
            _drop_flags_rows(rows[:, : col + 1], self.threshold, self.on_level), col
        )
        return _since_at(last, col, self.window)


class DropGap(_LevelTransform):
    """Periods between the last two drops below ``-threshold`` typical moves (capped at
    ``window``; ``window`` when the last is longer ago than that): with ``SinceDrop`` it tells
    the model when this product's next promotion is due, whatever its own cycle."""

    def __init__(self, threshold: float, window: int, on_level: bool = False) -> None:
        self.threshold = threshold
        self.window = window
        self.on_level = on_level

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        idx, starts, drop, last = _drops(data, indptr, self.threshold, self.on_level)
        before = np.r_[-1, last[:-1]]  # last drop strictly before each position
        gap_at = np.where(drop & (before >= starts), idx - before, self.window)
        # only a drop within the window counts: a statistic of a bounded look-back, so the
        # prediction steps (which see the kept tail) compute what the training rows saw
        has = (last >= starts) & (idx - last <= self.window)
        gap = np.where(has, gap_at[np.maximum(last, 0)], self.window)
        return np.minimum(gap, self.window).astype(np.float64)

    _has_rows = True

    def _stat_rows(self, rows: np.ndarray) -> np.ndarray:
        _, drop, last = _drops_rows(rows, self.threshold, self.on_level)
        gap, _ = _last_gap_rows(drop, last, self.window, missing=self.window)
        return np.minimum(gap, self.window).astype(np.float64)

    def _stat_at(self, rows: np.ndarray, col: int) -> np.ndarray:
        drop = _drop_flags_rows(rows[:, : col + 1], self.threshold, self.on_level)
        last, prev = _last_two_true(drop, col)
        gap = _gap_at(last, prev, col, self.window, missing=self.window)
        return np.minimum(gap, self.window).astype(np.float64)

    @property
    def update_samples(self) -> int:
        return 2 * self.window + self._lag_periods + 2  # the last two drops


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


def _level_vs_window_rows(rows: np.ndarray, window: int, op) -> np.ndarray:
    """``_level_vs_window`` along each row."""
    level = np.cumsum(np.nan_to_num(np.asarray(rows, dtype=np.float64)), axis=1)
    best = level.copy()
    span = 1
    while span < window:
        step = min(span, window - span)
        best = op(best, _shift_rows(best, step))
        span += step
    return level - best


def _level_vs_window_at(rows: np.ndarray, window: int, op, col: int) -> np.ndarray:
    """``_level_vs_window_rows(...)[:, col]``: one reduction over the window."""
    level = np.cumsum(np.nan_to_num(np.asarray(rows[:, : col + 1], dtype=np.float64)), axis=1)
    return level[:, col] - op.reduce(level[:, max(0, col - window + 1) :], axis=1)


def _last_two_true(flags: np.ndarray, col: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the column of the last True at or before ``col`` and of the one before it
    (-1 where there is none)."""
    back = flags[:, col::-1]  # column col first
    rows = np.arange(len(flags))
    first = np.argmax(back, axis=1)
    has = back[rows, first]
    last = np.where(has, col - first, -1)
    rest = back.copy()
    rest[rows, first] = False
    second = np.argmax(rest, axis=1)
    prev = np.where(has & rest[rows, second], col - second, -1)
    return last, prev


def _since_at(last: np.ndarray, col: int, window: int) -> np.ndarray:
    since = np.where(last >= 0, col - last, window)
    return np.minimum(since, window).astype(np.float64)


def _gap_at(last: np.ndarray, prev: np.ndarray, col: int, window: int, missing: int) -> np.ndarray:
    """``_last_gap_rows``' gap at ``col``: between the last two flags, ``missing`` when there is
    no flag before the last one or the last lies more than ``window`` columns back."""
    has = (last >= 0) & (col - last <= window)
    return np.where(has & (prev >= 0), last - prev, missing)


def _rolling_mean(x: np.ndarray, indptr: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` positions within each series (shorter at series starts)."""
    n = len(x)
    starts = _group_starts(indptr, n)
    idx = np.arange(n)
    cs = np.cumsum(x)
    lo = np.maximum(idx - window, starts - 1)
    before = np.where(lo >= 0, cs[np.maximum(lo, 0)], 0.0)
    return (cs - before) / np.maximum(idx - lo, 1)


def _promo_starts(
    data: np.ndarray, indptr: np.ndarray, k: float, on_level: bool, season: int = 7
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Like ``_drops``, for the first day of each promotion: the level falls by more than ``k``
    typical moves both from the day before and from the same day a ``season`` earlier (each
    measured against its own mean size over the last 8 weeks). A weekday pattern moves a price
    every day but not from one week to the next; only a promotion (or a shock) does both."""
    level = np.asarray(data, dtype=np.float64) if on_level else _level(data, indptr)
    level = np.nan_to_num(level)
    n = len(level)
    idx = np.arange(n)
    starts = _group_starts(indptr, n)
    promo = np.ones(n, dtype=bool)
    for lag in {1, max(season, 1)}:
        change = level - _shift(level, indptr, lag)
        known = np.isfinite(change)
        change = np.where(known, change, 0.0)
        typical = _rolling_mean(np.abs(change), indptr, 56)
        promo &= known & (change < -k * np.maximum(typical, 1e-9))
    # a start needs a promotion-free stretch before it (a week for daily prices): a blip in
    # the middle of a promotion does not start another one
    quiet = max(season - 1, 1)
    recent = _shift(_rolling_mean(promo.astype(np.float64), indptr, quiet), indptr, 1)
    start = promo & ~(np.nan_to_num(recent) > 0)
    last = np.maximum.accumulate(np.where(start, idx, -1))
    return idx, starts, start, last


def _rolling_mean_rows(x: np.ndarray, window: int) -> np.ndarray:
    """``_rolling_mean`` along each row."""
    cs = np.cumsum(x, axis=1)
    out = np.empty_like(cs)
    w = min(window, x.shape[1])
    out[:, :w] = cs[:, :w] / np.arange(1, w + 1)
    out[:, w:] = (cs[:, w:] - cs[:, :-w]) / w
    return out


def _shift_rows(x: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    if lag < x.shape[1]:
        out[:, lag:] = x[:, : x.shape[1] - lag]
    return out


def _promo_flag_rows(
    rows: np.ndarray, k: float, on_level: bool, season: int
) -> tuple[np.ndarray, np.ndarray]:
    """``_promo_starts``' promotion and start flags for series of equal length, one per row."""
    level = np.asarray(rows, dtype=np.float64) if on_level else np.cumsum(np.nan_to_num(rows), 1)
    level = np.nan_to_num(level)
    promo = np.ones(level.shape, dtype=bool)
    for lag in {1, max(season, 1)}:
        change = level - _shift_rows(level, lag)
        known = np.isfinite(change)
        change = np.where(known, change, 0.0)
        typical = _rolling_mean_rows(np.abs(change), 56)
        promo &= known & (change < -k * np.maximum(typical, 1e-9))
    quiet = max(season - 1, 1)
    recent = _shift_rows(_rolling_mean_rows(promo.astype(np.float64), quiet), 1)
    return promo, promo & ~(np.nan_to_num(recent) > 0)


def _promo_start_rows(rows: np.ndarray, k: float, on_level: bool, season: int) -> np.ndarray:
    """``_promo_starts``' start flags for series of equal length, one per row."""
    return _promo_flag_rows(rows, k, on_level, season)[1]


def _next_promo_flags(
    rows: np.ndarray, promo: np.ndarray, start: np.ndarray, k: float, on_level: bool, season: int
) -> tuple[np.ndarray, np.ndarray]:
    """The flags of ``rows`` from ``promo`` and ``start`` of the previous prediction step, whose
    rows were these one column back: only the new last column is computed (a recursive
    forecast's steps each recomputed the whole tail: 2 s of predicting 10,000 products). The
    first columns' flags then differ from a recomputation, which sees less history there, but
    no statistic reads them: each transform's look-back (``update_samples``) leaves them out."""
    # the last column's promotion flag from the columns its changes and typical move span
    # (its start flag needs the previous step's flags, which this slice cannot see)
    last = _promo_flag_rows(rows[:, -(56 + max(season, 1) + 1) :], k, on_level, season)[0][:, -1]
    quiet = max(season - 1, 1)
    first = last & ~promo[:, -quiet:].any(axis=1)
    return np.c_[promo[:, 1:], last], np.c_[start[:, 1:], first]


_SHARED = threading.local()


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    ai, bi = a.__array_interface__, b.__array_interface__
    return bool(ai["data"] == bi["data"] and ai["strides"] == bi["strides"] and a.dtype == b.dtype)


def _shared_start_rows(rows: np.ndarray, k: float, on_level: bool, season: int) -> np.ndarray:
    """``_promo_start_rows``, computed once per prediction step for PromoSince and PromoDue
    (both read the same tails; per thread, since many buyers predict at once), and from the
    previous step's flags when these rows are its rows moved on by one column."""
    key = (k, on_level, season)
    hit = getattr(_SHARED, "promo", None)
    if hit is not None and hit[0] == key and hit[1].shape == rows.shape:
        # the same view of the same buffer (the cache holds it, so its memory is not reused)
        # or equal values
        if _same_view(hit[1], rows) or np.array_equal(hit[1], rows, equal_nan=True):
            return hit[2]
        if rows.shape[1] >= 56 + 2 * max(season, 1) + 2 and np.array_equal(
            hit[1][:, 1:], rows[:, :-1], equal_nan=True
        ):
            promo, starts = _next_promo_flags(rows, hit[3], hit[2], k, on_level, season)
            _SHARED.promo = (key, rows, starts, promo)
            return starts
    promo, starts = _promo_flag_rows(rows, k, on_level, season)
    _SHARED.promo = (key, rows, starts, promo)
    return starts


def _shared_starts(
    data: np.ndarray, indptr: np.ndarray, k: float, on_level: bool, season: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``_promo_starts``, computed once per transform pass for PromoSince and PromoDue (both
    read the same series: 7 of the level model's 70 features took a third of its feature time)."""
    key = (k, on_level, season)
    hit = getattr(_SHARED, "flat", None)
    if (
        hit is not None
        and hit[0] == key
        and hit[1].shape == data.shape
        and hit[2].shape == indptr.shape
        and _same_view(hit[1], data)
        and _same_view(hit[2], indptr)
    ):
        return hit[3]
    out = _promo_starts(data, indptr, k, on_level, season)
    _SHARED.flat = (key, data, indptr, out)
    return out


def _last_true_rows(flags: np.ndarray) -> np.ndarray:
    """Column of the last True up to each column of each row (-1 before any)."""
    cols = np.arange(flags.shape[1])
    return np.maximum.accumulate(np.where(flags, cols, -1), axis=1)


def _last_gap_rows(
    flags: np.ndarray, last: np.ndarray, window: int, missing: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the gap between the last flag and the one before it (``missing`` when there
    is none before it), and whether the last flag lies within ``window`` columns; where it does
    not, the gap is ``missing`` too."""
    cols = np.arange(flags.shape[1])
    before = np.full(last.shape, -1)
    before[:, 1:] = last[:, :-1]
    gap_at = np.where(flags & (before >= 0), cols - before, missing)
    has = (last >= 0) & (cols - last <= window)
    gap = np.where(has, np.take_along_axis(gap_at, np.maximum(last, 0), axis=1), missing)
    return gap, has


class PromoSince(_LevelTransform):
    """Periods since the last promotion started (capped at ``window``)."""

    def __init__(self, window: int, season: int = 7, k: float = 2.0, on_level: bool = True) -> None:
        self.window, self.season, self.k, self.on_level = window, season, k, on_level

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        idx, starts, _, last = _shared_starts(data, indptr, self.k, self.on_level, self.season)
        since = np.where(last >= starts, idx - last, self.window)
        return np.minimum(since, self.window).astype(np.float64)

    _has_rows = True

    def _stat_rows(self, rows: np.ndarray) -> np.ndarray:
        last = _last_true_rows(_shared_start_rows(rows, self.k, self.on_level, self.season))
        since = np.where(last >= 0, np.arange(rows.shape[1]) - last, self.window)
        return np.minimum(since, self.window).astype(np.float64)

    def _stat_at(self, rows: np.ndarray, col: int) -> np.ndarray:
        start = _shared_start_rows(rows, self.k, self.on_level, self.season)
        last, _ = _last_two_true(start, col)
        return _since_at(last, col, self.window)

    @property
    def update_samples(self) -> int:
        # PromoDue's look-back (this one needs window + 56 + season + lag + 2): both then read
        # the same tails and share their promotion starts
        return 2 * self.window + 56 + self.season + self._lag_periods + 2


class PromoDue(_LevelTransform):
    """Periods until the next promotion is due: the gap between the last two starts minus the
    time since the last one (negative when overdue; ``window`` when fewer than two, or the
    last started longer than ``window`` ago)."""

    def __init__(self, window: int, season: int = 7, k: float = 2.0, on_level: bool = True) -> None:
        self.window, self.season, self.k, self.on_level = window, season, k, on_level

    def _stat(self, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        idx, starts, start, last = _shared_starts(data, indptr, self.k, self.on_level, self.season)
        before = np.r_[-1, last[:-1]]
        gap_at = np.where(start & (before >= starts), idx - before, -1)
        has = (last >= starts) & (idx - last <= self.window)  # bounded look-back, as DropGap
        gap = np.where(has, gap_at[np.maximum(last, 0)], -1)
        since = idx - last
        due = np.where(has & (gap > 0) & (gap <= self.window), gap - since, self.window)
        return np.clip(due, -self.window, self.window).astype(np.float64)

    _has_rows = True

    def _stat_rows(self, rows: np.ndarray) -> np.ndarray:
        start = _shared_start_rows(rows, self.k, self.on_level, self.season)
        last = _last_true_rows(start)
        gap, has = _last_gap_rows(start, last, self.window, missing=-1)
        since = np.arange(rows.shape[1]) - last
        due = np.where(has & (gap > 0) & (gap <= self.window), gap - since, self.window)
        return np.clip(due, -self.window, self.window).astype(np.float64)

    def _stat_at(self, rows: np.ndarray, col: int) -> np.ndarray:
        start = _shared_start_rows(rows, self.k, self.on_level, self.season)
        last, prev = _last_two_true(start, col)
        has = (last >= 0) & (col - last <= self.window)
        gap = _gap_at(last, prev, col, self.window, missing=-1)
        due = np.where(has & (gap > 0) & (gap <= self.window), gap - (col - last), self.window)
        return np.clip(due, -self.window, self.window).astype(np.float64)

    @property
    def update_samples(self) -> int:
        return 2 * self.window + 56 + self.season + self._lag_periods + 2


def history_kept(transforms: Mapping[str, object], at_least: int) -> int:
    """Periods of each series a fitted forecaster keeps for prediction: every transform's
    look-back, so a prediction step sees the history its training rows were computed from."""
    looks = [getattr(t, "update_samples", 0) for t in transforms.values()]
    return max(at_least, *(x for x in looks if isinstance(x, int)))


def keeps_no_state(tfm: object) -> bool:
    """Whether a lag transform's update reads only the kept tail of its series (lags, rolling
    windows and the transforms above), unlike an exponential or expanding mean, which carries
    a statistic of the whole history from ``transform`` to ``update``."""
    core = getattr(tfm, "_core_tfm", None)
    return isinstance(tfm, Lag | _LevelTransform) or isinstance(
        core, core_tfms.Lag | core_tfms._RollingBase
    )
