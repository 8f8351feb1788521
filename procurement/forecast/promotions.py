"""Promotion calendars: when a product's next promotion is due, from its own history.

Shelf goods go on promotion on cycles that drift (a supplier's "every five weeks or so"). A
recursive forecast sees that as a blur: each step predicts a small chance of a drop, feeds it back
as if it had happened, and the dip it draws is a few percent spread over a week, when the real one
is 10-20% for a few days. A buyer who knows the pattern reasons differently: the last three
promotions came 35, 36 and 34 days apart, the last began 30 days ago, so the next is due in about
five days and lasts three. This module does that arithmetic.

A promotion is a sharp fall (several times the product's typical daily move, and at least 4%) that
comes back within ``MAX_LENGTH`` periods; an AR-style shock decays slowly and is not one. A product
has a calendar when at least ``MIN_PROMOTIONS`` were found and their gaps are regular (robust
spread under ``MAX_SPREAD`` of the median gap). Its expected price on a future day is its regular
price (recent non-promotion median, with its weekday pattern) less the promotion's usual depth
times the chance that a promotion runs that day. Nothing here looks past the date it forecasts
from: backtests compute calendars as of each cutoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtr

MIN_DROP = 0.04  # log-price fall that can start a promotion, at least
DROP_MOVES = 5.0  # ... and this many of the product's median absolute moves
MAX_LENGTH = 8  # periods a promotion may last before it counts as a new price level
MIN_PROMOTIONS = 5
MAX_SPREAD = 0.2  # robust spread of the gaps over their median
CALENDAR_MARGIN = 2.0  # standard errors by which a calendar may lose and still be taken
RECENT = 10  # gaps and promotions that describe the pattern (cycles drift)
# a product whose falls are not regular may still run regular promotions among shallower dips
# (a cheap weekday, shocks): those at least this share of its deepest usual ones (90th
# percentile of the depths) are tried alone
DEEP_SHARE = 0.5
DEEP_GAIN = 0.5  # ... and replace all falls as the calendar where their gaps' spread is this much


@dataclass(frozen=True)
class Promotions:
    """Promotions found in one series: start index, periods, log depth below the price before."""

    starts: np.ndarray
    lengths: np.ndarray
    depths: np.ndarray
    ongoing: bool  # the last one has not ended by the series' last period
    flags: np.ndarray  # per period: inside a promotion


MAX_WEEKDAY_SEASON = 7  # seasons short enough to take out of the series before looking


def without_weekdays(x: np.ndarray, season: int) -> np.ndarray:
    """Log prices less their usual move into each position of the season (the weekday). A
    product 7% cheaper every Monday moves by 7% twice a week; a 15% promotion then seldom fell
    by more than five of its usual daily moves, and most of them went unseen."""
    n = len(x)
    if not 1 < season <= MAX_WEEKDAY_SEASON or n < 4 * season:
        return x
    # the move into each position, over whole seasons from the second on
    dx = np.diff(x, prepend=x[0])[season : n // season * season]
    usual = np.median(dx.reshape(-1, season), axis=0)
    usual -= usual.mean()  # a pattern, not a trend
    return x - np.cumsum(usual)[np.arange(n) % season]


def find_promotions(log_price: np.ndarray, min_found: int = 0, season: int = 1) -> Promotions:
    """Promotions in a series of log prices (one product, regular periods, no gaps); none
    when fewer than ``min_found`` sharp falls could start one. ``season``: periods of the
    weekday pattern to see through (7 daily, 5 on business days)."""
    x = without_weekdays(np.asarray(log_price, dtype=float), season)
    n = len(x)
    flags = np.zeros(n, dtype=bool)
    if n < 3:
        return Promotions(np.zeros(0, int), np.zeros(0, int), np.zeros(0), False, flags)
    dx = np.diff(x, prepend=x[0])
    thr = max(MIN_DROP, DROP_MOVES * _median(np.abs(dx[1:])))
    candidates = np.flatnonzero(dx < -thr)
    if len(candidates) < min_found:
        return Promotions(np.zeros(0, int), np.zeros(0, int), np.zeros(0), False, flags)
    candidates = candidates[candidates > 0]
    # per candidate, the first of the next MAX_LENGTH periods that rises back by half the fall
    padded = np.r_[dx, np.zeros(MAX_LENGTH)]
    ahead = sliding_window_view(padded[1:], MAX_LENGTH)[candidates]
    falls = -dx[candidates]
    rises = ahead > 0.5 * falls[:, None]
    has_back: list[bool] = np.any(rises, axis=1).tolist()
    back = candidates + 1 + rises.argmax(axis=1)
    csum = np.r_[0.0, np.cumsum(x)]
    starts, lengths, depths = [], [], []
    ongoing = False
    busy_until = 0
    for t, fall, found, end in zip(
        candidates.tolist(), falls.tolist(), has_back, back.tolist(), strict=True
    ):
        if t < busy_until:
            continue
        if not found:
            if n - t > MAX_LENGTH:
                continue
            end = n  # still low on the last day, and not yet too long to be one
        depth = x[t - 1] - (csum[end] - csum[t]) / (end - t)
        if depth < 0.5 * fall:
            continue
        starts.append(t)
        lengths.append(end - t)
        depths.append(depth)
        flags[t:end] = True
        busy_until = end
        ongoing = end == n
    return Promotions(
        np.array(starts, dtype=int),
        np.array(lengths, dtype=int),
        np.array(depths, dtype=float),
        ongoing,
        flags,
    )


def _deep_only(promo: Promotions) -> Promotions:
    """The promotions at least ``DEEP_SHARE`` as deep as the product's deepest usual ones.
    On the synthetic demo's shelf goods a cheap weekday (4-5% off for a day) and shocks were
    found among the real promotions (16-18% off for three or four days every seven weeks); their
    gaps were irregular, so those products had no calendar and stayed at their last price."""
    if not len(promo.depths):
        return promo
    return _subset(promo, promo.depths >= DEEP_SHARE * np.quantile(promo.depths, 0.9))


def _subset(promo: Promotions, keep: np.ndarray) -> Promotions:
    flags = np.zeros(len(promo.flags), dtype=bool)
    for t, length in zip(promo.starts[keep].tolist(), promo.lengths[keep].tolist(), strict=True):
        flags[t : t + length] = True
    return Promotions(
        promo.starts[keep],
        promo.lengths[keep],
        promo.depths[keep],
        bool(promo.ongoing and keep[-1]),
        flags,
    )


MISSED_SHARE = 1 / 3  # gaps at most this often taken for two cycles (a promotion not seen)


def _cycle(gaps: np.ndarray) -> tuple[float, float]:
    """Days between promotion starts, and their robust spread. A gap of about two cycles counts
    as two: a promotion between was not seen (too shallow, or on days without prices). On an
    unseen shelf whose promotions vary in depth, products running every 17 days had gaps of 34
    and 36 among them, and had no calendar."""
    cycle = _median(gaps)
    units = gaps
    for _ in range(4):
        twice = np.round(gaps / cycle) >= 2
        if twice.sum() > MISSED_SHARE * len(gaps):  # no cycle that a few unseen ones explain
            cycle, units = _median(gaps), gaps
            break
        units = np.where(twice, gaps / 2, gaps)
        new = _median(units)
        if new == cycle:
            break
        cycle = new
    return cycle, max(1.0, 1.4826 * _median(np.abs(units - cycle)))


def _median(a: np.ndarray) -> float:
    """np.median of a small 1-d array without its overhead (a tenth of the time)."""
    s = np.sort(a)
    n = len(s)
    return float(s[(n - 1) // 2] + s[n // 2]) / 2


@dataclass(frozen=True)
class Calendar:
    """A product's promotion pattern as of its last period, and what it implies ahead."""

    cycle: float  # median days between promotion starts
    spread: float  # robust standard deviation of those gaps
    length: int  # usual days a promotion lasts
    depth: float  # usual log depth
    since: int  # days from the last start to the last period
    ongoing: bool
    regular: np.ndarray  # (season,) log regular price by position in the season, from t+1 on
    chance: np.ndarray  # (h,) probability that a promotion runs in each period t+1..t+h
    # (h,) probability that the promotion running at t still runs in each period (0: none)
    still_on: np.ndarray | None = None
    depth_sd: float = 0.0  # robust spread of the log depths
    # (h,) robust spread of the log change over 1..h periods outside promotions
    noise: np.ndarray | None = None

    def prices(self) -> np.ndarray:
        """Expected price in each period ahead (the mean of promotion and regular price)."""
        h = len(self.chance)
        reg = np.exp(np.resize(self.regular, h))
        return reg * (1 - self.chance * (1 - np.exp(-self.depth)))

    def odds(self) -> np.ndarray:
        """(h,) per period: what ``cheaper_than_first`` needs, one row each: chance, log
        regular price, noise of the change from period 1, and the pattern's length, depth,
        depth spread (repeated), and the chance that the promotion running now still runs."""
        h = len(self.chance)
        noise = self.noise if self.noise is not None else np.zeros(h)
        still_on = self.still_on if self.still_on is not None else np.zeros(h)
        return np.vstack(
            [
                self.chance,
                np.resize(self.regular, h),
                noise,
                np.full(h, float(self.length)),
                np.full(h, self.depth),
                np.full(h, self.depth_sd),
                still_on,
            ]
        )


# the rows of ``Calendar.odds``, as ``calendar_paths`` names its columns
ODDS = ("chance", "regular", "noise", "length", "log_depth", "depth_sd", "still_on")


def cheaper_than_first(odds: np.ndarray, first: int = 0) -> np.ndarray:
    """P(price in period k < price in period ``first``), k = ``first``..h-1, from a calendar's
    ``odds`` (or a stack of them), over when the promotion comes: a promotion that runs on the
    first day and still on day k leaves k no cheaper, one that begins after the first day makes
    it cheaper by its depth, one that ends before k dearer; the regular price's weekday pattern
    and the product's own noise between. The expected price path alone blurs this: when a promotion is due within
    days, every later day looks cheaper than the first, and the day it begins on the first day
    (a chance of one in several) none is: days stated 84% came true 68% of the time on a shelf
    whose promotions come every 2 to 7 weeks, give or take four days."""
    # rows of one calendar (7, h), or of many (n, 7, h): each row (n, h) or (h,)
    chance, regular, noise, length, depth, depth_sd, still_on = np.moveaxis(odds, -2, 0)
    h = chance.shape[-1]
    c_f = chance[..., first : first + 1]
    ahead = np.arange(h) - first
    # a promotion on the first day and on day k: the one running now, still on at k, or one
    # that begins on the first day and lasts its usual length
    begins_first = np.maximum(c_f - still_on[..., first : first + 1], 0.0)
    joint = np.where(ahead >= 0, still_on, 0.0) + np.where(
        (ahead >= 0) & (ahead < length[..., first : first + 1]), begins_first, 0.0
    )
    joint = np.minimum(joint, np.minimum(chance, c_f))
    begins = np.clip(chance - joint, 0.0, 1.0)  # on promotion on day k, not on the first day
    ends = np.clip(c_f - joint, 0.0, 1.0)  # on promotion on the first day, not on day k
    same = np.clip(1.0 - begins - ends, 0.0, 1.0)
    step = np.maximum(ahead, 1)
    sd = np.maximum(noise[..., np.minimum(step, h) - 1], 1e-6)
    sd_promo = np.sqrt(sd**2 + depth_sd**2)
    rise = regular - regular[..., first : first + 1]  # the regular price's own move, log
    p = (
        begins * ndtr((depth - rise) / sd_promo)
        + same * ndtr(-rise / sd)
        + ends * ndtr((-depth - rise) / sd_promo)
    )
    p[..., : first + 1] = 0.0
    return np.clip(p, 0.0, 1.0)


def calendar_of(
    log_price: np.ndarray,
    horizon: int,
    season: int,
    days: np.ndarray | None = None,
    ahead: np.ndarray | None = None,
) -> Calendar | None:
    """The calendar of a series of log prices as of its last period, or None when it has no
    regular promotions.

    ``days``: the day number of each period, and ``ahead``: the days from the last period to
    each of the ``horizon`` periods ahead (default: one period a day). Cycles are counted in
    days: a supplier's promotion every 30 days is 20 to 22 business days apart, depending on
    the weekends it spans."""
    x = np.asarray(log_price, dtype=float)
    if len(x) < 4 * season + 2 or not np.isfinite(x).all():
        return None
    found = find_promotions(x, MIN_PROMOTIONS, season)
    if len(found.starts) < MIN_PROMOTIONS:
        return None
    n = len(x)
    days = np.arange(n) if days is None else np.asarray(days, dtype=np.int64)
    ahead = np.arange(1, horizon + 1) if ahead is None else np.asarray(ahead, dtype=np.int64)
    # every fall found, or the deep ones alone (shocks among promotions) where they are
    # regular and all falls are not, or far less so: promotions of varying depth are all real
    # (on an unseen shelf, the deep ones alone skipped every other promotion of some products)
    best: tuple[float, Promotions, np.ndarray, float, float] | None = None
    for promo in (found, _deep_only(found)):
        if len(promo.starts) < MIN_PROMOTIONS:
            break
        first_seen = days[promo.starts]
        # a promotion first seen after a gap (Monday, after a weekend without prices) began on
        # one of the days since the last price: the middle of them
        before = days[np.maximum(promo.starts - 1, 0)]
        start_days = first_seen - np.maximum(first_seen - before - 1, 0) / 2
        cycle, spread = _cycle(np.diff(start_days)[-RECENT:])
        if spread <= MAX_SPREAD * cycle and (best is None or spread / cycle < DEEP_GAIN * best[0]):
            best = (spread / cycle, promo, start_days, cycle, spread)
    if best is None:
        return None
    _, promo, start_days, cycle, spread = best
    # a shallow fall well before the next promotion is due is no promotion: counted from it, the
    # calendar put the next a cycle later (a 7% dip five days before a cutoff, 39 days into a
    # 53-day cycle of 19% promotions, hid the one that came nine days on)
    early = np.r_[False, np.diff(start_days) < cycle - 2 * spread]
    stray = early & (promo.depths < DEEP_SHARE * _median(promo.depths))
    if stray.any():
        promo, start_days = _subset(promo, ~stray), start_days[~stray]
        if len(promo.starts) < MIN_PROMOTIONS:
            return None
        cycle, spread = _cycle(np.diff(start_days)[-RECENT:])
    ends = promo.starts + promo.lengths
    end_days = np.where(ends < n, days[np.minimum(ends, n - 1)], days[-1] + 1)
    length = max(1, round(_median((end_days - start_days)[-RECENT:])))
    depth = _median(promo.depths[-RECENT:])
    since = round(days[-1] - start_days[-1])
    still_on = np.zeros(int(ahead[-1]))
    if promo.ongoing:
        # the running one ends after as many days as the earlier ones lasted; the next starts a
        # cycle after it began
        done = (end_days - start_days)[:-1][-RECENT:]
        still_on = _still_on(done, since, length, int(ahead[-1]))
    else:
        # a promotion long overdue was probably missed (too shallow to see): count on from it
        while since > cycle + 3 * spread:
            since -= round(cycle)
    by_day = _chance(cycle, spread, length, since, int(ahead[-1]), after_ongoing=promo.ongoing)
    by_day = 1.0 - (1.0 - by_day) * (1.0 - still_on)
    chance = by_day[ahead - 1]
    regular = _regular_price(x, promo.flags, season)
    depths = promo.depths[-RECENT:]
    depth_sd = 1.4826 * _median(np.abs(depths - depth))
    return Calendar(
        cycle,
        spread,
        length,
        depth,
        since,
        promo.ongoing,
        regular,
        chance,
        still_on=still_on[ahead - 1],
        depth_sd=float(depth_sd),
        noise=_noise(x, promo.flags, len(chance), season),
    )


def _still_on(done: np.ndarray, since: int, length: int, horizon: int) -> np.ndarray:
    """P(the promotion that began ``since`` days before t still runs on day t+d), d = 1..
    ``horizon``, from how long the earlier ones lasted (``done``, days), given that it has lasted
    this long. A promotion whose length varies (four calendar days are two to four business
    days) was taken to end on its usual day for certain: when it ended a day early, the days
    after were stated 5% likely to be cheaper than the first and 52% were."""
    d = np.arange(1, horizon + 1)
    if len(done) < MIN_PROMOTIONS - 1:
        return (length > since + d).astype(float)
    lasted = (done[None, :] > since + d[:, None]).sum(axis=1)
    so_far = float((done > since).sum())
    if so_far == 0:  # longer than any before: it ends today
        return np.zeros(horizon)
    return lasted / so_far


def _noise(x: np.ndarray, flags: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Robust spread of the log change over 1..``horizon`` periods between periods outside
    promotions, in the last eight seasons."""
    span = min(len(x), 8 * season + horizon)
    xs = np.where(flags[-span:], np.nan, x[-span:])
    k = np.arange(1, horizon + 1)[:, None]
    t = np.arange(span)[None, :]
    later = xs[np.minimum(t + k, span - 1)]
    d = np.where(t + k < span, later - xs[None, :], np.nan)  # horizon x span, NaN: no pair
    mad = 1.4826 * _row_median(np.abs(d - _row_median(d)[:, None]))
    enough = np.isfinite(d).sum(axis=1) >= 5
    return np.maximum.accumulate(np.where(enough, np.nan_to_num(mad), 0.0))


def _row_median(a: np.ndarray) -> np.ndarray:
    """Median of each row's finite values (NaN where none), by one sort (NaN sorts last):
    np.nanmedian is ten times slower."""
    n = np.isfinite(a).sum(axis=1)
    s = np.sort(a, axis=1)
    rows = np.arange(len(a))
    lo = s[rows, np.maximum(n - 1, 0) // 2]
    hi = s[rows, np.maximum(n, 1) // 2]
    return np.where(n > 0, (lo + hi) / 2, np.nan)


def _chance(
    cycle: float, spread: float, length: int, since: int, horizon: int, after_ongoing: bool
) -> np.ndarray:
    """P(a promotion runs in period t+k), k = 1..horizon, when the last began ``since`` periods
    before t: the next start's gap is normal around ``cycle``, given that it has not come yet
    (unless the last is the one running now), and one more cycle after it."""
    k = np.arange(0, horizon + 1)
    # gap of the next start, measured from the last start
    gap = since + k
    p1 = ndtr((gap + 0.5 - cycle) / spread) - ndtr((gap - 0.5 - cycle) / spread)
    p1[0] = 0.0
    if not after_ongoing:
        not_yet = 1.0 - ndtr((since + 0.5 - cycle) / spread)
        p1 = p1 / max(not_yet, 1e-9)
    p1 = np.minimum(p1, 1.0)
    # a second start one cycle after the first, for short cycles
    lags = np.arange(0, horizon + 1)
    p_gap = ndtr((lags + 0.5 - cycle) / spread) - ndtr((lags - 0.5 - cycle) / spread)
    p2 = np.convolve(p1, p_gap)[: horizon + 1]
    starts = np.minimum(p1 + p2, 1.0)
    running = np.convolve(starts, np.ones(length))[: horizon + 1]
    return np.minimum(running, 1.0)[1:]


def _regular_price(x: np.ndarray, flags: np.ndarray, season: int) -> np.ndarray:
    """Log regular price for the next ``season`` periods (t+1, t+2, ...): the median of recent
    periods outside promotions, with the median weekday offset of the last eight seasons."""
    recent = x[-4 * season :][~flags[-4 * season :]]
    level = _median(recent if len(recent) >= season else x[-4 * season :])
    span = min(len(x), 8 * season)
    xs, fs = x[-span:], flags[-span:]
    # offset from the season's centred median, where neither is in a promotion
    pad = season // 2
    windows = sliding_window_view(np.where(fs, np.nan, xs), 2 * pad + 1)
    counts = np.isfinite(windows).sum(axis=1)
    centre = _row_median(windows)
    inner = slice(pad, span - pad)
    offsets = np.full(span, np.nan)
    offsets[inner] = np.where((counts > pad) & ~fs[inner], xs[inner] - centre, np.nan)
    n = len(x)
    pos = (np.arange(n - span, n)) % season
    by_pos = np.zeros(season)
    for p in range(season):
        vals = offsets[(pos == p) & np.isfinite(offsets)]
        if len(vals) >= 3:
            by_pos[p] = _median(vals)
    ahead = (np.arange(n, n + season)) % season
    return level + by_pos[ahead]


def calendar_paths(
    frame: pd.DataFrame,
    horizon: int,
    season: int,
    cutoffs: Sequence[pd.Timestamp] | None = None,
    freq: str = "D",
) -> pd.DataFrame:
    """Expected prices from the calendars of the series in ``frame`` (unique_id, ds, y; regular
    periods; sorted by product and date, else sorted here) as of each cutoff (default: each
    series' last date), for the ``horizon`` periods after it: unique_id, cutoff, step
    (1..horizon), promo (expected price), chance (of a promotion that period), and the pattern:
    cycle and length (days), depth (share off), running (one is on at the cutoff), since (days
    from the last start to the cutoff); p_promo: the chance that the price is below the first
    period's (``cheaper_than_first``), and the other rows of its ``ODDS``. Series without a
    regular calendar at a cutoff have no rows for it."""
    shown = ("promo", "chance", "cycle", "length", "depth", "running", "since", "p_promo")
    cols = (*shown, *(c for c in ODDS if c not in shown))
    parts: dict[str, list[np.ndarray]] = {c: [] for c in ("unique_id", "cutoff", "step", *cols)}
    ids = frame["unique_id"].to_numpy()
    ds = frame["ds"].to_numpy("datetime64[ns]")
    same = ids[1:] == ids[:-1]
    if (ds[1:][same] <= ds[:-1][same]).any() or (~same).sum() + 1 != len(pd.unique(ids)):
        frame = frame.sort_values(["unique_id", "ds"])
        ids = frame["unique_id"].to_numpy()
        ds = frame["ds"].to_numpy("datetime64[ns]")
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    cuts = None if cutoffs is None else pd.DatetimeIndex(cutoffs).to_numpy("datetime64[ns]")
    y = frame["y"].to_numpy(float)
    day = ds.astype("datetime64[D]")
    day_no = day.astype(np.int64)
    steps = np.arange(1, horizon + 1)

    def ahead_of(last: np.datetime64) -> np.ndarray:
        if freq == "B":
            return (np.busday_offset(last, steps, roll="forward") - last).astype(np.int64)
        return steps

    for a, b in pairwise(bounds):
        if not (y[a:b] > 0).all():
            continue
        x = np.log(y[a:b])
        ends = [b - a] if cuts is None else list(np.searchsorted(ds[a:b], cuts, side="right"))
        for j, end in enumerate(ends):
            if end < 1 or (cuts is not None and ds[a + end - 1] != cuts[j]):
                continue
            last = day[a + end - 1]
            cal = calendar_of(x[:end], horizon, season, day_no[a : a + end], ahead_of(last))
            if cal is None:
                continue
            parts["unique_id"].append(np.full(horizon, ids[a], dtype=object))
            parts["cutoff"].append(np.full(horizon, ds[a + end - 1]))
            parts["step"].append(steps)
            parts["promo"].append(cal.prices())
            parts["chance"].append(cal.chance)
            parts["cycle"].append(np.full(horizon, cal.cycle))
            parts["length"].append(np.full(horizon, cal.length))
            parts["depth"].append(np.full(horizon, 1 - np.exp(-cal.depth)))
            parts["running"].append(np.full(horizon, cal.ongoing))
            parts["since"].append(np.full(horizon, cal.since))
            odds = cal.odds()
            parts["p_promo"].append(cheaper_than_first(odds))
            for name, row in zip(ODDS, odds, strict=True):
                if name not in shown:
                    parts[name].append(row)
    if not parts["step"]:
        return pd.DataFrame(
            {"unique_id": [], "cutoff": pd.to_datetime([]), **{c: [] for c in ("step", *cols)}}
        )
    return pd.DataFrame({c: np.concatenate(v) for c, v in parts.items()})


def choose_calendars(cv: pd.DataFrame) -> tuple[dict[str, bool], bool, pd.DataFrame]:
    """Which products' forecasts take their calendar (``WEIGHT`` of it), judged on backtest rows
    (unique_id, cutoff, y, lgbm, promo; promo NaN without a calendar): a product with at least
    two windows with a calendar takes it unless the mixed forecast's mean absolute error over
    them was larger by more than ``CALENDAR_MARGIN`` standard errors of the windows' gains
    (a calendar exists only where promotions came at regular gaps, and one every eight weeks
    falls in few windows: on the shelves tried, taking those that lost within chance found more
    of the saving); others follow the company (whether the mix won over all windows).

    Returns the decision per judged product, the company's, and per product and window the
    decision made without that window (unique_id, cutoff, use), for calibration."""
    rows = cv[cv["promo"].notna() & cv["y"].notna()]
    empty = pd.DataFrame({"unique_id": [], "cutoff": [], "use": []})
    if rows.empty:
        return {}, False, empty
    y = rows["y"].to_numpy(float)
    base = rows["lgbm"].to_numpy(float)
    mixed = mix(base, rows["promo"].to_numpy(float))
    gain = pd.Series(np.abs(y - base) - np.abs(y - mixed))
    per = gain.groupby([rows["unique_id"].to_numpy(), rows["cutoff"].to_numpy()]).mean()
    wide = per.unstack(level=1)  # series x windows
    company = bool(per.mean() > 0)

    def takes(gains: pd.DataFrame) -> pd.Series:
        """Per series: its windows' gains were not below zero by more than ``CALENDAR_MARGIN``
        standard errors (read only where it has two windows or more)."""
        se = gains.std(axis=1, ddof=1) / np.sqrt(gains.count(axis=1))
        return gains.mean(axis=1) > -CALENDAR_MARGIN * se

    count = wide.count(axis=1)
    decisions = {
        str(u): bool(ok) for u, ok, c in zip(wide.index, takes(wide), count, strict=True) if c >= 2
    }
    held = []
    for window in wide.columns:
        rest = wide.drop(columns=window)
        use = np.where(rest.count(axis=1) >= 2, takes(rest), company)
        held.append(pd.DataFrame({"unique_id": wide.index, "cutoff": window, "use": use}))
    return decisions, company, pd.concat(held, ignore_index=True)


# of the calendar in a product's forecast: 0.3 or 0.7 found at most half a point more of the
# oracle saving on three shelves, and up to 2.2 points less (README, "Promotion calendars")
WEIGHT = 0.5


def mix(forecast: np.ndarray, calendar: np.ndarray) -> np.ndarray:
    """The forecast with its calendar (NaN: none) mixed in."""
    return np.where(np.isfinite(calendar), (1 - WEIGHT) * forecast + WEIGHT * calendar, forecast)
