"""Calibrated uncertainty from out-of-sample backtest errors.

mlforecast's conformal intervals take quantiles of each series' own few backtest errors (with 3
windows that is 3 numbers per series and horizon step), which is too few for 80% and 95% bands.
For a global model we pool instead: errors are divided by each series' scale (its mean absolute
period-to-period change), pooled across all series per horizon step, and the split-conformal
quantile of that pool is scaled back per series. The same backtest gives the distribution of the
error of the forecast *change* from the first day, which is what the buy-day confidence needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from procurement.forecast.promotions import mix

GRID = np.linspace(0.0, 1.0, 201)


def series_scale(frame: pd.DataFrame) -> pd.Series:
    """Mean absolute one-period change per series (the naive forecast's in-sample MAE)."""
    d = frame.groupby("unique_id", sort=False)["y"].diff().abs()
    scale = d.groupby(frame["unique_id"].to_numpy()).mean()
    fallback = frame["y"].abs().groupby(frame["unique_id"].to_numpy()).mean() * 0.01
    scale = scale.where(scale > 0, fallback).fillna(1.0)
    return scale.where(scale > 0, 1.0)


def recent_scale(frame: pd.DataFrame, window: int) -> pd.DataFrame:
    """Mean absolute one-period change over the last ``window`` periods, at every row
    (``unique_id, ds, scale``). Intervals scaled by it widen when a market turns volatile."""
    roll = _rolling_abs_change(frame, window)
    full = series_scale(frame)
    out = frame[["unique_id", "ds"]].copy()
    out["scale"] = roll
    fallback = out["unique_id"].map(full)
    out["scale"] = out["scale"].where(out["scale"] > 0, fallback)
    return out


def _series_starts(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of rows sorted by series: whether each is its series' first, and the index of that first."""
    n = len(ids)
    first = np.r_[True, ids[1:] != ids[:-1]] if n else np.zeros(0, bool)
    return first, np.maximum.accumulate(np.where(first, np.arange(n), 0))


def _rolling_abs_change(frame: pd.DataFrame, window: int) -> np.ndarray:
    # rolling mean within each series from cumulative sums: no per-series Python loop
    y = frame["y"].to_numpy(dtype=float)
    idx = np.arange(len(y))
    first, start = _series_starts(frame["unique_id"].to_numpy())
    d = np.abs(np.diff(y, prepend=np.nan))
    d[first] = np.nan
    valid = ~np.isnan(d)
    cs = np.cumsum(np.where(valid, d, 0.0))
    cn = np.cumsum(valid)
    lo = np.maximum(idx - window, start - 1)
    s_lo = np.where(lo >= 0, cs[np.maximum(lo, 0)], 0.0)
    n_lo = np.where(lo >= 0, cn[np.maximum(lo, 0)], 0)
    cnt = cn - n_lo
    return np.where(cnt >= 5, (cs - s_lo) / np.maximum(cnt, 1), np.nan)


def last_recent_scale(frame: pd.DataFrame, window: int) -> pd.Series:
    """``recent_scale`` at each series' last row: from the last ``window + 1`` rows of each
    series (the fallback, the whole series' scale, from all of them), without the per-row
    table (3.5 GB on 50,000 products x 730 days)."""
    from_end = frame.groupby("unique_id", sort=False).cumcount(ascending=False).to_numpy()
    tail = frame[["unique_id", "y"]].iloc[np.flatnonzero(from_end <= window)]
    roll = pd.Series(_rolling_abs_change(tail, window), index=tail["unique_id"].to_numpy())
    roll = roll.groupby(level=0, sort=False).last()
    return roll.where(roll > 0, series_scale(frame).reindex(roll.index))


TIE = 1e-6  # relative difference under which two prices are the same price


def _same_price(a: Any, b: Any) -> Any:
    """Whether prices ``a`` and ``b`` (arrays or Series) are the same price."""
    return np.abs(a - b) <= TIE * np.abs(b)


UNCHANGED_WINDOW = 90  # periods over which a product's sticky prices are counted
MIN_PAIRS = 20  # pairs of prices below which a product's stickiness is not counted


def unchanged_share(
    frame: pd.DataFrame,
    horizon: int,
    window: int = UNCHANGED_WINDOW,
    at: pd.DataFrame | None = None,
    observed: np.ndarray | None = None,
) -> pd.DataFrame:
    """How sticky each product's price is: at each point (each series' last row, or each
    ``unique_id, ds`` of ``at``), the share of the last ``window`` periods in which the price
    equalled the price k periods before, for k = 0..horizon-1 (columns; 1 at k = 0), from
    ``frame`` (unique_id, ds, y, optionally observed; regular periods, sorted by product and
    date); ``observed``: the flag of a frame that does not carry it.

    Shelf and list prices stay put for weeks: "cheaper on day k than on the first day" then
    excludes the many days on which the price simply has not moved, which a continuous error
    distribution cannot see (it stated 90% on days that were cheaper 6% of the time)."""
    ids = frame["unique_id"].to_numpy()
    y = frame["y"].to_numpy(float)
    if observed is None and "observed" in frame:
        observed = frame["observed"].to_numpy(bool)
    if observed is not None:
        # a day without a price carries the last one forward (``regularize``): not a price
        # that stayed put
        y = np.where(observed, y, np.nan)
    n = len(y)
    _, start = _series_starts(ids)
    if at is None:
        pos = np.flatnonzero(np.r_[ids[1:] != ids[:-1], True]) if n else np.zeros(0, int)
        keys = frame.iloc[pos][["unique_id", "ds"]].reset_index(drop=True)
    else:
        rows = frame[["unique_id", "ds"]].assign(_pos=np.arange(n))
        keys = at[["unique_id", "ds"]].drop_duplicates().merge(rows, on=["unique_id", "ds"])
        pos = keys.pop("_pos").to_numpy()
    a = pos[:, None] - np.arange(window)[None, :]  # (points, window)
    lo = start[pos][:, None]
    ya = np.where(a >= lo, y[np.maximum(a, 0)], np.nan)
    out = np.zeros((len(pos), horizon))
    if len(pos):
        out[:, 0] = 1.0
    for k in range(1, horizon):
        b = a - k
        yb = np.where(b >= lo, y[np.maximum(b, 0)], np.nan)
        pair = np.isfinite(ya) & np.isfinite(yb)
        same = pair & _same_price(yb, ya)
        count = pair.sum(axis=1)
        out[:, k] = np.where(count >= MIN_PAIRS, same.sum(axis=1) / np.maximum(count, 1), 0.0)
    return pd.concat([keys, pd.DataFrame(out)], axis=1)


def add_naive(cv: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    if "naive" in cv.columns:
        return cv
    last = frame[["unique_id", "ds", "y"]].rename(columns={"ds": "cutoff", "y": "naive"})
    return cv.merge(last, on=["unique_id", "cutoff"], how="left")


# Forecast = naive + w_change * (change model - naive) + w_level * (level model - naive).
BLENDS: tuple[tuple[float, float], ...] = (
    (1.0, 0.0),
    (0.0, 1.0),
    (0.5, 0.5),
    (0.5, 0.0),
    (0.0, 0.5),
    (0.25, 0.25),
)
NAIVE: tuple[float, float] = (0.0, 0.0)


def t_stat(gains: pd.Series) -> float:
    """Mean over its standard error (inf for a positive mean with no spread)."""
    if len(gains) < 2:
        return 0.0
    se = gains.std(ddof=1) / np.sqrt(len(gains))
    if not np.isfinite(se) or se == 0:
        return np.inf if gains.mean() > 0 else 0.0
    return float(gains.mean() / se)


def t_stats(x: np.ndarray, axis: int) -> np.ndarray:
    """``t_stat`` of each slice of ``x`` along ``axis``, its NaN left out: the mean over its
    standard error, inf for a positive mean with no spread (or a single value), else 0 there.
    Computed by hand: ``np.nanstd`` warns on a slice of one value, and silencing warnings is
    not thread-safe."""
    count = np.sum(np.isfinite(x), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(x, axis=axis) / count
        dev = np.nansum((x - np.expand_dims(mean, axis)) ** 2, axis=axis)
        se = np.sqrt(dev / (count - 1)) / np.sqrt(count)
        se = np.where(count > 1, se, np.nan)
        return np.where(np.isfinite(se) & (se > 0), mean / se, np.where(mean > 0, np.inf, 0.0))


def blend(cv: pd.DataFrame, w: tuple[float, float]) -> np.ndarray:
    """The blended forecast of backtest rows with columns naive, change and (optionally) level."""
    n = cv["naive"].to_numpy(float)
    out = n + w[0] * (cv["change"].to_numpy(float) - n)
    if w[1]:
        out = out + w[1] * (cv["level"].to_numpy(float) - n)
    return out


DRIFT_RATIO = 0.7  # variance ratio at and above which a price moves like a random walk
TREND_RATIO = 1.4  # ... and from which on it trends (a random walk's is 1 +- 0.15 over 730 days)
MIN_GROUP_SERIES = 5  # backtested products of a group that give it a verdict of its own


def variance_ratio(frame: pd.DataFrame, horizon: int) -> pd.Series:
    """Per product: the mean square of its (log) price changes over ``horizon`` periods over
    ``horizon`` times that of its one-period changes. About 1 for a random walk, above for a
    trend, below for prices that come back (promotions and shocks that fade: 0.2-0.6 on the
    shelves tried; trending weekly fuel about 2)."""
    # rows sorted by series and date (as ``prepare`` leaves them): one pass, no groupby
    y = frame["y"].to_numpy(float)
    y = np.log(y) if (y[np.isfinite(y)] > 0).all() else y
    ids = frame["unique_id"].to_numpy()
    first, start = _series_starts(ids)
    series = np.cumsum(first) - 1
    pos = np.arange(len(y)) - start

    def mean_square(k: int) -> np.ndarray:
        d = np.full(len(y), np.nan)
        d[k:] = y[k:] - y[: len(y) - k]
        ok = (pos >= k) & np.isfinite(d)
        n = np.bincount(series[ok], minlength=int(first.sum()))
        total = np.bincount(series[ok], weights=d[ok] ** 2, minlength=len(n))
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / n

    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = mean_square(horizon) / (horizon * mean_square(1))
    return pd.Series(ratio, index=ids[first])


def drifting(ratio: pd.Series) -> frozenset[str]:
    """The products whose price moves like a random walk or trends (``variance_ratio`` at least
    ``DRIFT_RATIO``): the ``|drifts`` of ``trust_groups``, and those without a promotion
    calendar (their falls that come back within days are noise, however regular they look)."""
    return frozenset(str(k) for k in ratio.index[ratio >= DRIFT_RATIO])


def random_walks(ratio: pd.Series) -> frozenset[str]:
    """The products whose price moves like a random walk, neither coming back nor trending
    (``variance_ratio`` from ``DRIFT_RATIO`` up to ``TREND_RATIO``)."""
    walks = ratio.index[(ratio >= DRIFT_RATIO) & (ratio < TREND_RATIO)]
    return frozenset(str(k) for k in walks)


def trust_groups(
    frame: pd.DataFrame,
    horizon: int,
    categories: pd.Series | None = None,
    ratio: pd.Series | None = None,
) -> pd.Series:
    """Per product, the group whose verdict it takes when its own backtest is inconclusive: its
    category (``""``, the company, where it has none), and apart from it, ``"<category>|drifts"``
    where the price moves like a random walk: its changes over ``horizon`` periods are as large
    as that many independent one-period changes (``variance_ratio`` at least ``DRIFT_RATIO``).
    Commodities that inherited the shelf goods' trust waited in 59 backtest windows of the
    synthetic catalog, stated 69% likely to be cheaper, and were cheaper in 37%, losing 0.45% a
    wait. ``ratio``: the ``variance_ratio`` of ``frame``, where the caller has it."""
    ratio = variance_ratio(frame, horizon) if ratio is None else ratio
    drifts = pd.Series(np.where(ratio >= DRIFT_RATIO, "|drifts", ""), index=ratio.index)
    if categories is None or not len(categories):
        return drifts
    cat = pd.Series(drifts.index.map(categories), index=drifts.index).fillna("").astype(str)
    return cat + drifts


def _series_choice(
    gains: np.ndarray, inherited: np.ndarray, bar: float, min_windows: int
) -> np.ndarray:
    """Blend index per series (-1: naive) from gains (series x windows x blends, NaN where a
    window is missing): its own best blend whose gain is consistent (t above ``bar``); else the
    inherited one (-1: naive), unless that lost to the last price on the series."""
    n = np.sum(np.isfinite(gains[:, :, 0]), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(gains, axis=1) / np.sum(np.isfinite(gains), axis=1)  # series x blends
    t = t_stats(gains, axis=1)  # a series of fewer than ``min_windows`` inherits, below
    valid = (t > bar) & (mean > 0)
    score = np.where(valid, mean, -np.inf)
    own = np.where(valid.any(axis=1), score.argmax(axis=1), -1)
    rows = np.arange(len(own))
    inh_mean = np.where(inherited >= 0, mean[rows, np.maximum(inherited, 0)], 0.0)
    fallback = np.where((inherited >= 0) & (inh_mean < 0), -1, inherited)
    chosen = np.where(own >= 0, own, fallback)
    return np.where(n < min_windows, inherited, chosen)


def choose_blend(
    cv: pd.DataFrame,
    frame: pd.DataFrame,
    groups: pd.Series | None = None,
    min_t_series: float = 2.5,
    min_t_group: float = 2.0,
    min_windows: int = 4,
) -> tuple[dict[str, tuple[float, float]], tuple[float, float], pd.DataFrame]:
    """How far to trust each model over the naive forecast, per product, judged out of sample.

    For each blend of the change model and the level model (``BLENDS``) the gain over the naive
    forecast is measured per backtest window. A product whose own gain is consistent across its
    windows (t-statistic above ``min_t_series``) gets its own best blend; a product with too few
    or inconclusive windows takes its group's (``trust_groups``: its category, the drifting
    products apart) when the group's gain is consistent; a group of at least
    ``MIN_GROUP_SERIES`` products whose gain is not, stays at the last price; a smaller one takes
    the company's. Never a blend that did worse than naive on the product itself. Where prices
    are a random walk the models' moves are noise, and a lucky window must not let them through:
    the forecast stays the last price and the advice "buy now".

    Returns (blend per product, including ``group:<name>`` entries; company default; and per
    product and window the blend chosen *without* that window, so that intervals, stated
    probabilities and the advice policy are calibrated on errors the choice did not see).
    """
    empty = pd.DataFrame(columns=["unique_id", "cutoff", "w_change", "w_level"])
    scale = cv["unique_id"].map(series_scale(frame)).to_numpy()
    y, n = cv["y"].to_numpy(float), cv["naive"].to_numpy(float)
    has_level = "level" in cv and cv["level"].notna().any()
    blends = [b for b in BLENDS if has_level or b[1] == 0]
    keep = np.isfinite(y) & np.isfinite(n) & np.isfinite(cv["change"].to_numpy(float))
    if has_level:
        keep &= np.isfinite(cv["level"].to_numpy(float))
    if "observed" in cv:
        keep &= cv["observed"].astype("boolean").fillna(True).to_numpy(bool)
    if not keep.any():
        return {}, NAIVE, empty
    uid = cv["unique_id"].to_numpy()[keep]
    cut = cv["cutoff"].to_numpy()[keep]
    grp = (
        pd.Series(uid).map(groups).fillna("").to_numpy()
        if groups is not None and len(groups)
        else np.full(len(uid), "")
    )
    base = np.abs(y - n)[keep] / scale[keep]
    # per blend: mean gain over the horizon per (series, window, group)
    per_sw = {
        b: pd.Series(base - np.abs(y - blend(cv, b))[keep] / scale[keep])
        .groupby([uid, cut, grp])
        .mean()
        for b in blends
    }

    def best_blend(select: Callable[[pd.Series], pd.Series], min_t: float) -> tuple[float, float]:
        best, best_gain = NAIVE, 0.0
        for b in blends:
            g = select(per_sw[b])
            if t_stat(g) > min_t and g.mean() > best_gain:
                best, best_gain = b, float(g.mean())
        return best

    company = best_blend(lambda g: g.groupby(level=1).mean(), min_t_group)
    out: dict[str, tuple[float, float]] = {}
    for name in {str(x) for x in grp if x}:

        def of_group(g: pd.DataFrame, n: str = name) -> pd.DataFrame:
            return g.xs(n, level=2).groupby(level=1).mean()

        b = best_blend(of_group, min_t_group)
        # a group of a few products is too small to overrule the company; a larger one whose
        # products the models do not consistently beat the last price on stays at it
        enough = len(np.unique(uid[grp == name])) >= MIN_GROUP_SERIES
        out[f"group:{name}"] = b if b != NAIVE or enough else company

    # series x windows x blends
    wide = {b: per_sw[b].droplevel(2).unstack(level=1) for b in blends}
    cube = np.stack([wide[b] for b in blends], axis=2).astype(float)
    series, windows = wide[blends[0]].index, wide[blends[0]].columns
    index_of = {b: i for i, b in enumerate(blends)}
    inherited = np.array(
        [
            index_of.get(out.get(f"group:{groups.get(sid, '')}", company), -1)
            if groups is not None
            else index_of.get(company, -1)
            for sid in series
        ]
    )
    # in a company where no model beats the last price overall, one product that seems to be
    # the exception is more likely luck: ask for stronger evidence
    bar = min_t_series if company != NAIVE else min_t_series + 1.0
    choice = _series_choice(cube, inherited, bar, min_windows)
    as_blend = [*blends, NAIVE]  # index -1 is naive
    for sid, c in zip(series, choice, strict=True):
        out[str(sid)] = as_blend[c]
    loo_rows = []
    for k, window in enumerate(windows):
        held = cube.copy()
        held[:, k, :] = np.nan
        c_k = _series_choice(held, inherited, bar, min_windows)
        w = np.array([as_blend[c] for c in c_k], dtype=float).reshape(-1, 2)
        loo_rows.append(
            pd.DataFrame(
                {"unique_id": series, "cutoff": window, "w_change": w[:, 0], "w_level": w[:, 1]}
            )
        )
    return out, company, pd.concat(loo_rows, ignore_index=True)


P_FLOOR, P_CEIL = 0.005, 0.995  # no backtest supports certainty
RECENCY_DECAY = 0.85  # weight of a backtest window relative to the next, more recent one
ISO_PRIOR = 100.0  # independent windows at which the isotonic map gets half the weight
MIN_UNCHANGED = 0.02  # share of unmoved days below which a product counts as always moving
MIN_MOVED = 50  # moved prices at one step below which all cases describe its changes
MIN_STEP_SCORES = 100  # errors at one horizon step that give it its own interval quantile
MIN_POOL_WINDOWS = 30  # backtest windows (product x cutoff) that calibrate a pool of their own
ACI_STEP = 0.2  # adaptive conformal inference learning rate (Gibbs & Candes, 2021)
# share of backtest windows at each end of the forecast's departure from the last price whose
# change errors are told apart from the rest (see ``departure_class``), and the departure, in
# recent daily moves, that an end must pass at least
DEPARTURE_TAIL = 0.1
MIN_DEPARTURE = 1.0
MIN_DEPARTURE_WINDOWS = 15  # backtest windows that give a departure class its own quantiles


def departure_class(departure: np.ndarray, edges: list[float] | None) -> np.ndarray:
    """0 where the window's mean forecast lies below the last price by more than ``edges[0]``
    (a promotion is forecast), 2 where it lies above ``edges[1]`` (one is forecast to end), 1
    otherwise (and where unknown)."""
    d = np.nan_to_num(np.asarray(departure, dtype=float), nan=0.0)
    if not edges:
        return np.ones(len(d), dtype=int)
    return np.where(d < edges[0], 0, np.where(d > edges[1], 2, 1))


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Conformal quantile of weighted scores (Barber et al., 2023: non-exchangeable conformal)."""
    if len(values) == 0:
        return float("nan")
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cw = np.cumsum(w) / (w.sum() + w.max())  # the test point's own weight, as in split conformal
    i = int(np.searchsorted(cw, q, side="left"))
    return float(v[min(i, len(v) - 1)])


def _ages(window: np.ndarray) -> np.ndarray:
    """0 for the latest window, 1 for the one before, ..."""
    uniq = np.unique(window)
    return (len(uniq) - 1 - np.searchsorted(uniq, window)).astype(float)


def _adaptive_level(z: np.ndarray, window: np.ndarray, level: float) -> float:
    """Walk the backtest windows in time order with adaptive conformal inference: after each
    window the miscoverage target moves by the gap between its misses and the nominal rate, so
    a calibration that under-covered recent windows widens. Returns the adapted coverage, never
    below ``level``. Over a fit's 8 or so windows the walk is noisy (simulated windows with
    their own volatility: an 80% band's level between 0.75 and 0.86, tenth to ninetieth
    percentile), and it landed at 0.76-0.80 on the structured shelves. Letting it narrow after
    calm windows failed where volatility comes back: daily spot prices' 80% bands held 78.0%
    (80.1% with the floor), oil and gas 76.0% (79.2%), monthly averages 74.1% (77.3%). It is
    there to widen the bands after a turn, not to narrow them."""
    alpha_star = 1 - level
    alpha = alpha_star
    for k in np.unique(window)[1:]:
        past = window < k
        q = _weighted_quantile(z[past], RECENCY_DECAY ** _ages(window[past]), 1 - alpha)
        miss = float(np.mean(z[window == k] > q))
        alpha = float(np.clip(alpha + ACI_STEP * (alpha_star - miss), 0.002, 0.5))
    return max(1 - alpha, level)


@dataclass
class PoolCalibration:
    """Calibration of one pool of products (those whose forecast follows the model, or those
    shrunk to the last price): their errors differ, so they are not mixed."""

    sigma: list[float]  # per h (index h-1): median |scaled error|
    q: dict[int, float]  # level -> quantile of |scaled error| / sigma_h, pooled over h
    diff_quantiles: list[list[float]]  # per h: quantiles on GRID of scaled change error
    change_bias: list[float]  # per h: mean scaled change error (actual minus forecast change)
    n_scores: int
    # isotonic map from the raw probability to how often it came true in the backtest, and how
    # far to move towards it (0: not at all)
    iso_x: list[float] | None = None
    iso_y: list[float] | None = None
    iso_weight: float = 0.0
    # per h (index h-1): quantile of |scaled error| / sigma_h at that step alone, where the step
    # has enough errors (None in models saved before: ``q`` for every step)
    q_h: dict[int, list[float]] | None = None
    # independent windows behind the isotonic map (``_independent_windows``; 0 in models saved
    # before it)
    evidence: float = 0.0
    # ``departure_class`` edges, and per class (below, near, above the last price), per h:
    # quantiles on GRID of the scaled change error of the windows of that class, or None where
    # it had too few (then ``diff_quantiles``); None in models saved before
    departure_edges: list[float] | None = None
    departure_quantiles: list[list[list[float]] | None] | None = None

    def change_quantiles(self, step: int, departure: int) -> np.ndarray:
        """Of the windows of a ``departure_class`` where it has its own (-1: of every window)."""
        classes = self.departure_quantiles
        by_class = classes[departure] if classes is not None and departure >= 0 else None
        return np.asarray(by_class[step] if by_class else self.diff_quantiles[step])

    def width(self, level: int, h: np.ndarray) -> np.ndarray:
        """Band half-width in units of the product's volatility scale, per 0-based step."""
        q = np.asarray(self.q_h[level]) if self.q_h else np.full(len(self.sigma), self.q[level])
        return np.asarray(self.sigma)[h] * q[h]

    def recalibrate(self, p: np.ndarray) -> np.ndarray:
        if not self.iso_x or self.iso_y is None or self.iso_weight <= 0:
            return p
        return p + self.iso_weight * (np.interp(p, self.iso_x, self.iso_y) - p)

    @classmethod
    def fit(cls, cv: pd.DataFrame, horizon: int, centered: bool = False) -> PoolCalibration:
        """``centered``: the pool of products left at their last price. Their change errors
        are the market's moves; their recent drift is no forecast (that is why the model was not
        trusted), so the distribution is centred on zero and the expected saving is zero."""
        sigma, diffs, bias = [], [], []
        # how many independent pieces of evidence the backtest holds: products that move
        # together (retail fuel prices all follow crude) count little more than one
        n_eff = _independent_windows(cv) if "change_err" in cv else 0.0
        for h in range(1, horizon + 1):
            at = cv[cv["h"] == h]
            ae = at["abs_err"].dropna().to_numpy()
            med = float(np.median(ae)) if len(ae) else 0.0
            sigma.append(med if med > 0 else 1.0)
            ce = at["change_err"].dropna().to_numpy()
            if centered and len(ce):
                ce = ce - np.median(ce)
            moves = ce
            if "moved" in at:
                # the chance of a change given that the price moves at all (``apply`` takes
                # off the product's own share of days on which it does not)
                moved = at.loc[at["change_err"].notna(), "moved"].to_numpy(bool)
                if moved.sum() >= MIN_MOVED:
                    moves = ce[moved]
            if h > 1 and len(ce):
                # trim the extreme 1% so one crash does not move every expected saving
                lo, hi = np.quantile(ce, [0.01, 0.99])
                diffs.append(np.quantile(moves, GRID).tolist())
                bias.append(0.0 if centered else _shrunk_mean(np.clip(ce, lo, hi), n_eff))
            else:
                diffs.append([0.0] * len(GRID))
                bias.append(0.0)
        edges, by_departure = (
            (None, None) if centered else _departure_quantiles(cv, horizon, diffs, n_eff)
        )
        z = cv["abs_err"].to_numpy() / np.asarray(sigma)[cv["h"].to_numpy() - 1]
        ok = np.isfinite(z)
        window = cv["cutoff"].to_numpy()[ok]
        z = z[ok]
        weights = RECENCY_DECAY ** _ages(window)
        q = {
            level: _weighted_quantile(z, weights, _adaptive_level(z, window, level / 100))
            for level in (80, 95)
        }
        # Errors further ahead have heavier tails than nearer ones (a market turn shows in
        # weeks 2 to 4, not in week 1): one quantile pooled over the steps over-covered the
        # first step and under-covered the rest, so each step with enough errors gets its own.
        steps = cv["h"].to_numpy()[ok]
        q_h: dict[int, list[float]] = {}
        for level in (80, 95):
            per = []
            for h in range(1, horizon + 1):
                at = steps == h
                if at.sum() >= MIN_STEP_SCORES:
                    za, wa = z[at], window[at]
                    lvl = _adaptive_level(za, wa, level / 100)
                    per.append(_weighted_quantile(za, RECENCY_DECAY ** _ages(wa), lvl))
                else:
                    per.append(q[level])
            q_h[level] = per
        return cls(
            sigma=sigma,
            q=q,
            diff_quantiles=diffs,
            change_bias=bias,
            n_scores=int(ok.sum()),
            q_h=q_h,
            departure_edges=edges,
            departure_quantiles=by_departure,
        )


def _departure_quantiles(
    cv: pd.DataFrame, horizon: int, pooled: list[list[float]], n_eff: float
) -> tuple[list[float] | None, list[list[list[float]] | None] | None]:
    """Change-error quantiles per ``departure_class`` of the window. A window whose forecast
    leaves the last price (a promotion running that is forecast to end, or one forecast to
    begin) has wider and skewed change errors: when the move comes on the first day rather than
    later, every later day is compared with a moved first price. Pooled with the other windows,
    those in a promotion stated a 3% chance of a cheaper day where 18% came true (seed-11 shelf
    on business days)."""
    if "departure" not in cv or horizon < 2:
        return None, None
    last = cv[cv["h"] == horizon]
    d = last["departure"].to_numpy(float)
    d = d[np.isfinite(d)]
    # a class's windows count as independent evidence as far as the backtest's do: where
    # products move together, the tenth of their windows in which the forecast fell furthest
    # are a few market moves, not a distribution
    independent = min(1.0, n_eff / len(d)) if len(d) else 0.0
    if len(d) * independent < 3 * MIN_DEPARTURE_WINDOWS:
        return None, None
    lo, hi = np.quantile(d, [DEPARTURE_TAIL, 1 - DEPARTURE_TAIL])
    edges = [float(min(lo, -MIN_DEPARTURE)), float(max(hi, MIN_DEPARTURE))]
    cls = departure_class(cv["departure"].to_numpy(), edges)
    # A class holds a tenth of the windows or less: too few for quantiles of its own at every
    # step. It gets the shape of its errors instead, pooled over the steps in units of each
    # step's median and interquartile range of all windows, and each step's own location and
    # spread.
    q = np.asarray(pooled)
    med, spread = q[:, 100], q[:, 150] - q[:, 50]  # GRID: 0.5, 0.75 and 0.25
    out: list[list[list[float]] | None] = []
    for c in (0, 1, 2):
        part = cv[(cls == c) & (cv["h"] > 1) & cv["change_err"].notna()]
        if (part["h"] == horizon).sum() * independent < MIN_DEPARTURE_WINDOWS:
            out.append(None)
            continue
        if "moved" in part and part["moved"].sum() >= MIN_MOVED:
            part = part[part["moved"].to_numpy(bool)]
        step = part["h"].to_numpy() - 1
        ok = spread[step] > 0
        u = (part["change_err"].to_numpy()[ok] - med[step][ok]) / spread[step][ok]
        if not len(u):
            out.append(None)
            continue
        shape = np.quantile(u, GRID)
        per = []
        for h in range(horizon):
            own = part["change_err"].to_numpy()[step == h]
            if h > 0 and len(own) >= MIN_STEP_SCORES:  # enough for quantiles of the step's own
                per.append(np.quantile(own, GRID).tolist())
            elif h > 0 and spread[h] > 0:
                per.append((med[h] + spread[h] * shape).tolist())
            else:
                per.append(pooled[h])
        out.append(per)
    return (edges, out) if any(o is not None for o in out) else (None, None)


@dataclass
class Calibration:
    scale: dict[str, float]  # current volatility scale per product
    pools: dict[str, PoolCalibration]  # "all", and "model" / "naive" when each has enough errors
    vol_window: int = 30
    # per sticky product: share of recent days its price had not moved from k days before
    # (``unchanged_share``; products whose price always moves are left out; None in models
    # saved before)
    unchanged: dict[str, list[float]] | None = None
    # every price the model was fitted on was above zero: no band reaches below it (False in
    # models saved before, and where prices can go negative: WTI on 2020-04-20)
    positive: bool = False

    @classmethod
    def from_backtest(
        cls,
        cv: pd.DataFrame,
        frame: pd.DataFrame,
        horizon: int,
        vol_window: int,
        all_frame: pd.DataFrame | None = None,
        all_observed: np.ndarray | None = None,
        departures: bool = True,
    ) -> Calibration:
        """``departures``: tell windows apart by their ``departure_class`` (daily prices, where
        promotions run; weekly and monthly ones have none, as they have no promotion calendar).
        ``cv``: backtest rows (with ``pool``: True where the product follows the model);
        ``frame``: history of the backtested series; ``all_frame``: of every series (their
        current volatility scales the intervals at prediction time), ``all_observed`` its flag
        of rows with a price of their own."""
        rs = recent_scale(frame, vol_window)
        cv = _with_errors(cv, rs, departures)
        pools: dict[str, PoolCalibration] = {"all": PoolCalibration.fit(cv, horizon)}
        if "pool" in cv:
            part = cv[cv["pool"]]
            if part["abs_err"].notna().sum() >= MIN_POOL_WINDOWS * horizon:
                pools["model"] = PoolCalibration.fit(part, horizon)
        if "naive" in cv:
            # products left at their last price: calibrated on the naive forecast's own errors,
            # of those products where they are enough, else of every backtested product (always
            # a large sample). Mean-reverting and promotion-driven goods (the model's) come back
            # to their level and their naive errors stay small; the random walks left at their
            # last price drift: their bands from every product's errors held 65% of their prices
            # where 80% were stated (calmer structured shelf, 938 backtest days of 9 products).
            # (their forecast is the last price: no departure)
            naive = _with_errors(cv.assign(lgbm=cv["naive"]), rs, departures=False)
            if "pool" in naive:
                own = naive[~naive["pool"].astype(bool)]
                if own["abs_err"].notna().sum() >= MIN_POOL_WINDOWS * horizon:
                    naive = own
            pools["naive"] = PoolCalibration.fit(naive, horizon, centered=True)
        if all_frame is None:
            scale = rs.groupby("unique_id", sort=False)["scale"].last()
            still = unchanged_share(frame, horizon)
        else:
            scale = last_recent_scale(all_frame, vol_window)
            still = unchanged_share(all_frame, horizon, observed=all_observed)
        shares = still.drop(columns=["unique_id", "ds"]).to_numpy()
        sticky = shares[:, 1:].max(axis=1, initial=0.0) >= MIN_UNCHANGED
        prices = (all_frame if all_frame is not None else frame)["y"]
        calib = cls(
            positive=bool(len(prices)) and bool((prices > 0).all()),
            scale={k: float(v) for k, v in scale.items()},
            pools=pools,
            vol_window=vol_window,
            unchanged={
                str(k): [round(float(v), 4) for v in row]
                for k, row in zip(still["unique_id"][sticky], shares[sticky], strict=True)
            },
        )
        if "model" in pools and "pool" in cv:
            calib._fit_isotonic(cv[cv["pool"]], frame, rs)
        return calib

    def _fit_isotonic(self, cv: pd.DataFrame, frame: pd.DataFrame, rs: pd.DataFrame) -> None:
        """Make "X% likely" mean X% on the backtest: an isotonic map from the stated probability
        to the observed frequency of a later day being cheaper than the first, for the products
        that follow a model (those at their last price stay centred on even odds)."""
        rows = self.replay(cv, frame, rs)
        g = rows.groupby("sku", sort=False)
        first_y = g["y"].transform("first")
        ok = (g.cumcount() > 0) & rows["y"].notna() & first_y.notna()

        cheaper = (rows["y"] < first_y).astype(float)
        fitted = _isotonic(rows.loc[ok, "p_cheaper"], cheaper[ok])
        if fitted is None:
            return
        pool = self.pools["model"]
        pool.iso_x, pool.iso_y = fitted
        # Trust the map as far as the backtest holds independent evidence: products that move
        # together (retail fuel prices all follow crude) add little beyond one, and a map fitted
        # on a few market moves carried its optimism into stated probabilities out of sample.
        n_eff = _independent_windows(cv)
        pool.iso_weight = n_eff / (n_eff + ISO_PRIOR)
        pool.evidence = n_eff

    def pool(self, trusted: bool) -> PoolCalibration:
        return self.pools.get("model" if trusted else "naive", self.pools["all"])

    def apply(self, fc: pd.DataFrame, pools: pd.Series | None = None) -> pd.DataFrame:
        """Add lo/hi 80/95 bands, ``p_cheaper`` (probability that the price on that date is
        below the price on the first forecast date), ``p_not_dearer`` (not above it) and
        ``expected_saving`` (per unit, against buying on the first date) to a frame with sku,
        date, y_pred (and optionally ``scale``; ``unchanged``: the chance that the price has not
        moved since the first date; ``last``: the last price before the first date, which picks
        the window's ``departure_class``). ``pools``: per row, True where the product's forecast
        follows the model."""
        fc = fc.assign(_trusted=True if pools is None else np.asarray(pools, dtype=bool))
        fc = fc.sort_values(["sku", "date"]).reset_index(drop=True)
        h = fc.groupby("sku").cumcount().to_numpy()
        h = np.minimum(h, len(self.pools["all"].sigma) - 1)
        if "scale" in fc:
            s = fc["scale"].to_numpy(float)
        else:
            med = float(np.median(list(self.scale.values()))) if self.scale else 1.0
            s = fc["sku"].map(self.scale).fillna(med).to_numpy()
        y_pred = fc["y_pred"].to_numpy(float)
        first = fc.groupby("sku")["y_pred"].transform("first").to_numpy()
        z = -(y_pred - first) / s
        p = np.zeros(len(fc))
        bias = np.zeros(len(fc))
        bands = {k: np.full(len(fc), np.nan) for k in ("lo_80", "hi_80", "lo_95", "hi_95")}
        trusted = fc["_trusted"].to_numpy(bool)
        still = self._unchanged(fc, h)
        # the calendar's own chance, over when its promotion comes (``cheaper_than_first``),
        # where the product's forecast takes its calendar
        promo = fc["p_promo"].to_numpy(float) if "p_promo" in fc else np.full(len(fc), np.nan)
        departure = None  # unknown without the last price: every window's change errors
        if "last" in fc:
            # how far the forecast leaves the last price, in the product's recent daily moves
            mean = fc.groupby("sku")["y_pred"].transform("mean").to_numpy()
            departure = (mean - fc["last"].to_numpy(float)) / s
        for flag in (True, False):
            in_pool = trusted == flag
            if not in_pool.any():
                continue
            cal = self.pool(flag)
            for level in (80, 95):
                width = cal.width(level, h[in_pool]) * s[in_pool]
                bands[f"lo_{level}"][in_pool] = y_pred[in_pool] - width
                bands[f"hi_{level}"][in_pool] = y_pred[in_pool] + width
            cls = (
                np.full(len(fc), -1)
                if departure is None
                else departure_class(departure, cal.departure_edges)
            )
            for step in np.unique(h[in_pool]):
                bias[in_pool & (h == step)] = cal.change_bias[step]
                if step == 0:
                    continue
                for c in np.unique(cls[in_pool & (h == step)]):
                    m = in_pool & (h == step) & (cls == c)
                    qs = cal.change_quantiles(step, c)
                    if np.ptp(qs) == 0:
                        continue
                    # P(y_h < y_1) = P(change_err < -(yhat_h - yhat_1)/scale), off the
                    # empirical CDF of the window's class
                    raw = np.interp(z[m], qs, GRID, left=0.0, right=1.0)
                    # mixed as the forecast mixes the calendar's prices into the model's
                    raw = mix(raw, promo[m]) * (1.0 - still[m])
                    p[m] = np.clip(cal.recalibrate(raw), P_FLOOR, P_CEIL)
        # A price that has stayed put for at least the level's share of the product's recent
        # steps this far apart keeps that chance of being the last price: the band is that price
        # (and the forecast, where it differs). Pooled over every product's errors, a price
        # unchanged for two years had 80% and 95% bands 11% and 68% of it wide.
        stay = self._unchanged(fc, h, ahead=1)
        point = fc["last"].to_numpy(float) if "last" in fc else y_pred
        point = np.where(np.isfinite(point), point, y_pred)
        for level in (80, 95):
            held = stay >= level / 100
            lo, hi = bands[f"lo_{level}"], bands[f"hi_{level}"]
            lo[held] = np.minimum(y_pred, point)[held]
            hi[held] = np.maximum(y_pred, point)[held]
            if getattr(self, "positive", False):
                np.maximum(lo, 0.0, out=lo)
        # the 95% band holds the 80% one: each level's quantile is adapted to its own recent
        # misses, and on a few errors (one product, its first backtest fold) the 95% one had
        # come out narrower
        np.minimum(bands["lo_95"], bands["lo_80"], out=bands["lo_95"])
        np.maximum(bands["hi_95"], bands["hi_80"], out=bands["hi_95"])
        for k, v in bands.items():
            fc[k] = v
        fc["p_cheaper"] = p
        # the chance of paying no more than on the first date: cheaper, or not moved at all
        fc["p_not_dearer"] = np.where(h == 0, 0.0, np.clip(p + still, P_FLOOR, P_CEIL))
        # E[y_1 - y_h] = (yhat_1 - yhat_h) - scale * E[change error]
        fc["expected_saving"] = np.where(h == 0, 0.0, first - y_pred - s * bias)
        return fc.drop(columns=[c for c in ("_trusted", "unchanged", "last", "p_promo") if c in fc])

    def _unchanged(self, fc: pd.DataFrame, h: np.ndarray, ahead: int = 0) -> np.ndarray:
        """Per row: the chance that the price has not moved from the first forecast date (the
        frame's ``unchanged`` column where it has one, else the product's own share);
        ``ahead=1``: from the last price before it, one step further back (the last step's
        chance stands for the step beyond the horizon)."""
        if "unchanged" in fc:
            col = fc["unchanged"].fillna(0.0)
            if ahead:
                col = col.groupby(fc["sku"], sort=False).shift(-ahead).fillna(col)
            return col.to_numpy(float)
        known = getattr(self, "unchanged", None)
        if not known:
            return np.zeros(len(fc))
        codes, skus = pd.factorize(fc["sku"])
        width = max(len(v) for v in known.values())
        table = np.zeros((len(skus), width))
        for i, sku in enumerate(skus):
            shares = known.get(str(sku))
            if shares:
                table[i, : len(shares)] = shares
        return table[codes, np.minimum(h + ahead, width - 1)]

    def replay(
        self, cv: pd.DataFrame, frame: pd.DataFrame, rs: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """The backtest windows as a buyer would have seen them: one pseudo-product per
        (series, cutoff), with the columns of ``apply`` and the actual price ``y``."""
        if rs is None:  # the recent volatility of ``frame``, when the caller has not got it
            rs = recent_scale(frame, self.vol_window)
        at_cut = rs.rename(columns={"ds": "cutoff"})
        rows = cv.merge(at_cut, on=["unique_id", "cutoff"], how="left")
        rows = rows.assign(
            sku=rows["unique_id"].astype(str) + "@" + rows["cutoff"].astype(str),
            date=rows["ds"],
            y_pred=rows["lgbm"],
        ).sort_values(["unique_id", "cutoff", "ds"], ignore_index=True)
        horizon = len(self.pools["all"].sigma)
        still = unchanged_share(
            frame, horizon, at=rows[["unique_id", "cutoff"]].rename(columns={"cutoff": "ds"})
        ).melt(id_vars=["unique_id", "ds"], var_name="k", value_name="unchanged")
        step = rows.groupby(["unique_id", "cutoff"], sort=False).cumcount().clip(upper=horizon - 1)
        rows = rows.assign(k=step.to_numpy()).merge(
            still.rename(columns={"ds": "cutoff"}).astype({"k": int}),
            on=["unique_id", "cutoff", "k"],
            how="left",
        )
        cols = ["sku", "date", "y_pred", "scale", "y", "unchanged"]
        if "naive" in rows:
            rows = rows.assign(last=rows["naive"])
            cols.append("last")
        if "p_promo" in rows:
            cols.append("p_promo")
        return self.apply(rows[cols], pools=rows.get("pool"))


def _shrunk_mean(x: np.ndarray, n_eff: float) -> float:
    """Mean of the backtest's change errors, shrunk towards zero as far as the independent
    evidence leaves it in doubt (positive-part James-Stein, t from ``n_eff`` independent
    cases). A year of windows in which a market rose says little about the next weeks; an
    unshrunk mean made every expected saving negative after such a year, so the advice never
    waited where the forecast path itself would have saved money."""
    if len(x) < 2 or n_eff < 2:
        return 0.0
    mean, sd = float(np.mean(x)), float(np.std(x, ddof=1))
    if sd <= 0:
        return mean
    t2 = mean**2 / (sd**2 / min(n_eff, len(x)))
    return mean * max(0.0, 1.0 - 1.0 / t2) if t2 > 0 else 0.0


def _independent_windows(cv: pd.DataFrame) -> float:
    """Backtest windows times the effective number of independent products, from the mean
    correlation of their errors at the last horizon step (design effect 1 + (n - 1) rho)."""
    last = cv[cv["h"] == cv["h"].max()]
    mat = last.pivot_table(index="cutoff", columns="unique_id", values="change_err")
    n_win, n_ser = mat.shape
    if n_win < 3 or n_ser < 1:
        return 0.0
    if n_ser == 1:
        return float(n_win)
    var = mat.var(ddof=1).mean()
    if not np.isfinite(var) or var <= 0:
        return 0.0
    rho = (mat.mean(axis=1).var(ddof=1) * n_ser / var - 1) / (n_ser - 1)
    rho = float(np.clip(rho, 0.0, 1.0))
    return float(n_win * n_ser / (1 + (n_ser - 1) * rho))


def _isotonic(p: pd.Series, outcome: pd.Series) -> tuple[list[float], list[float]] | None:
    if len(p) < 200:
        return None
    iso = IsotonicRegression(y_min=P_FLOOR, y_max=P_CEIL, out_of_bounds="clip")
    iso.fit(np.asarray(p, dtype=float), np.asarray(outcome, dtype=float))
    return [float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_]


def _with_errors(cv: pd.DataFrame, rs: pd.DataFrame, departures: bool = True) -> pd.DataFrame:
    """Scaled absolute error and scaled error of the forecast change, per backtest row, and
    (``departures``, where the rows have the last price) the window's departure from it."""
    cv = cv.sort_values(["unique_id", "cutoff", "ds"]).copy()
    cv["h"] = cv.groupby(["unique_id", "cutoff"]).cumcount() + 1
    at_cut = rs.rename(columns={"ds": "cutoff"})
    s = cv[["unique_id", "cutoff"]].merge(at_cut, on=["unique_id", "cutoff"], how="left")["scale"]
    s = s.to_numpy()
    cv["abs_err"] = np.abs(cv["y"].to_numpy() - cv["lgbm"].to_numpy()) / s
    first = cv.groupby(["unique_id", "cutoff"])[["y", "lgbm"]].transform("first")
    cv["change_err"] = ((cv["y"] - first["y"]) - (cv["lgbm"] - first["lgbm"])).to_numpy() / s
    cv["moved"] = ~_same_price(cv["y"], first["y"])
    if departures and "naive" in cv:
        mean = cv.groupby(["unique_id", "cutoff"])["lgbm"].transform("mean")
        cv["departure"] = (mean - cv["naive"]).to_numpy() / s
    return cv


def backtest_metrics(cv: pd.DataFrame, frame: pd.DataFrame, season: int) -> dict[str, Any]:
    """MASE and sMAPE of the model and of naive baselines on a mlforecast cross-validation frame."""
    cv = add_baselines(cv, frame, season)
    scale = series_scale(frame)
    obs = cv[cv["observed"].fillna(True).astype(bool)] if "observed" in cv else cv
    out: dict[str, Any] = {
        "n_forecasts": len(obs),
        "n_series": int(obs["unique_id"].nunique()),
    }
    for name, col in (("model", "lgbm"), ("naive", "naive"), ("seasonal_naive", "snaive")):
        out[name] = point_metrics(obs, col, scale)
    return out


def point_metrics(obs: pd.DataFrame, col: str, scale: pd.Series) -> dict[str, float]:
    err = (obs["y"] - obs[col]).abs()
    mae = err.groupby([obs["unique_id"], obs["cutoff"]]).mean()
    s = mae.index.get_level_values(0).map(scale)
    denom = obs["y"].abs() + obs[col].abs()
    smape = np.where(denom > 0, 2 * err / denom.where(denom > 0, 1), 0.0)
    return {
        "mase": float(np.mean(mae.to_numpy() / np.asarray(s))),
        "smape": float(100 * np.mean(smape)),
        "mae": float(err.mean()),
    }


def add_baselines(cv: pd.DataFrame, frame: pd.DataFrame, season: int) -> pd.DataFrame:
    """Naive (last value at the cutoff) and seasonal naive (same period one season earlier,
    repeated) forecasts for every row of a cross-validation frame."""
    hist = frame[["unique_id", "ds", "y"]]
    cv = add_naive(cv, frame)
    cv = cv.sort_values(["unique_id", "cutoff", "ds"]).reset_index(drop=True)
    h = cv.groupby(["unique_id", "cutoff"]).cumcount().to_numpy()  # 0-based step
    # the seasonal-naive value for step h is the observation (season - h % season) periods
    # before the cutoff... expressed as a position in each series' own calendar
    pos = hist.groupby("unique_id").cumcount()
    keyed = hist.assign(pos=pos.to_numpy())
    cut_pos = (
        cv[["unique_id", "cutoff"]]
        .merge(
            keyed.rename(columns={"ds": "cutoff"})[["unique_id", "cutoff", "pos"]],
            on=["unique_id", "cutoff"],
            how="left",
        )["pos"]
        .to_numpy()
    )
    target_pos = cut_pos - season + 1 + (h % season)
    look = keyed.set_index(["unique_id", "pos"])["y"]
    idx = pd.MultiIndex.from_arrays([cv["unique_id"].to_numpy(), target_pos])
    cv["snaive"] = look.reindex(idx).to_numpy()
    cv["snaive"] = cv["snaive"].fillna(cv["naive"])
    return cv
