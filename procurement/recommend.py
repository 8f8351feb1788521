"""Turn a price forecast into advice: the day to buy, the saving to expect and how sure it is.

The buy day is the one with the largest expected saving under the calibrated forecast
distribution, among the days that clear the policy's bar (how likely a saving is, how large).
The bar is not a guess: ``choose_policy`` replays the model's own backtest windows and keeps the
thresholds that would have saved the most without losing money on average. On prices that
behave like a random walk that means "buy now" almost always, which is the honest answer.

Where the backtest found it saves more, the advice to wait carries a target price, the buy
day's forecast, and a last day: the buyer buys on the first day whose price is down to the
target (a promotion that comes a few days early or late is not let go), else on the last day.
The backtest, the thresholds, the stated confidence and each product's record all follow the
advice that way, each day's choice using no later price.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression

from procurement.forecast.calibration import ISO_PRIOR, P_CEIL, P_FLOOR, t_stats

NEVER_WAIT = 1.0  # a min_confidence no stated probability reaches (they stop at 99.5%)
CONFIDENCE_GRID = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))
SAVING_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# how long past the advised day a buyer may wait for the target price, in shares of the horizon
GRACE_GRID = (0.0, 0.25, 0.5, 1.0)
MIN_POLICY_T = 1.0  # the saving per backtest window must be positive with some consistency


BUYERS_BAR = (0.5, 0.99)  # the confidence a buyer may ask of the advice (the Product page's 50-99%)


def buyers_bar(value: float) -> float:
    """``value`` as a buyer's bar of confidence, or a ValueError saying what it must be: 70 meant
    as 70% had been a bar no advice reaches, "buy now" on everything."""
    lo, hi = BUYERS_BAR
    if not lo <= value <= hi:
        raise ValueError(f"{value:g} is not a probability between {lo} and {hi} (0.7 for 70%)")
    return value


@dataclass(frozen=True)
class Policy:
    min_confidence: float = 0.7  # chance that the chosen day is no dearer than the first day
    min_saving_pct: float = 0.5  # smaller expected savings are not worth waiting for
    # Whether the advice carries a target price (buy on any earlier day whose price is down to
    # the buy day's forecast), and how many steps after the buy day the buyer still waits for
    # it (a promotion that comes a few days late), buying on the last of them if it has not
    # come. Chosen on the backtest like the thresholds: on prices that come back after a dip
    # the target catches the dip, on trending ones (weekly fuel) it buys too soon. Off in
    # models whose policy was learned without it.
    target_price: bool = False
    grace_steps: int = 0
    # How sure the advice is once a day has been chosen: an isotonic map from the forecast's
    # probability on the chosen day to how often that day really was cheaper in the backtest
    # (``confidence_map``), moved towards by ``conf_weight``. The chosen day is the deepest
    # predicted dip; the pooled error distribution that states every day's probability
    # understated those (stated 75%, came true 87% on shelf goods), so the advice's own "X%
    # likely" is calibrated on the advice. Empty: the forecast's probability as it is.
    conf_x: tuple[float, ...] = ()
    conf_y: tuple[float, ...] = ()
    conf_weight: float = 0.0
    # Advice of its own per kind of product (``KINDS``: prices that drift like a random walk,
    # prices that come back), where the backtest had enough windows of each (``choose_policies``):
    # kind -> policy, and sku -> kind. A product of no kind takes the fields above. None in
    # models saved before, and in the policies of ``kinds`` themselves.
    kinds: Mapping[str, Policy] | None = None
    kind_of: Mapping[str, str] | None = None
    # What choosing thresholds this way saved on backtest cutoffs it had not seen
    # (``out_of_fold_record``): the mean saving per window in percent of the first price, and
    # its t-statistic over the cutoffs. None where not measured (older models, fewer cutoffs).
    out_of_fold_pct: float | None = None
    out_of_fold_t: float | None = None
    # the thresholds saved money on the windows they were chosen on but not out of fold, so the
    # advice never waits (``min_confidence`` is ``NEVER_WAIT``)
    unproven: bool = False

    def of(self, sku: str) -> Policy:
        """The policy that advises on ``sku``."""
        if not self.kinds:
            return self
        return self.kinds.get((self.kind_of or {}).get(sku, ""), self.alone())

    def alone(self) -> Policy:
        """This policy without its kinds: what a product of no kind gets."""
        return dataclasses.replace(self, kinds=None, kind_of=None) if self.kinds else self

    def with_min_confidence(self, value: float) -> Policy:
        """The policy with every kind's bar of confidence set to ``value`` (a buyer's own)."""
        value = buyers_bar(value)
        kinds = self.kinds and {k: p.with_min_confidence(value) for k, p in self.kinds.items()}
        return dataclasses.replace(self, min_confidence=value, kinds=kinds or None)

    def confidence(self, p: np.ndarray) -> np.ndarray:
        """The stated probability of a chosen buy day."""
        p = np.asarray(p, dtype=float)
        if not self.conf_x or self.conf_weight <= 0:
            return p
        mapped = np.interp(p, self.conf_x, self.conf_y)
        return np.clip(p + self.conf_weight * (mapped - p), P_FLOOR, P_CEIL)


def _p_cheaper_from_intervals(fc: pd.DataFrame) -> np.ndarray:
    """Fallback when the forecast has no calibrated ``p_cheaper``: a normal approximation with
    random-walk errors, so Var(e_h - e_1) = Var(e_h) - Var(e_1)."""
    z80 = norm.ppf(0.9)
    sd = (fc["hi_80"] - fc["lo_80"]).to_numpy() / (2 * z80)
    sd1 = fc.groupby("sku")["hi_80"].transform("first") - fc.groupby("sku")["lo_80"].transform(
        "first"
    )
    sd1 = sd1.to_numpy() / (2 * z80)
    sd_change = np.sqrt(np.maximum(sd**2 - sd1**2, (0.25 * sd) ** 2))
    first = fc.groupby("sku")["y_pred"].transform("first").to_numpy()
    gain = first - fc["y_pred"].to_numpy()
    return norm.cdf(gain / np.where(sd_change > 0, sd_change, np.inf))


@dataclass
class _Grid:
    """A forecast frame as (products x steps) arrays."""

    skus: pd.Index
    rows: np.ndarray  # (n, H) row index into the sorted frame, -1 where missing
    y_pred: np.ndarray
    p: np.ndarray
    saving: np.ndarray  # expected saving per unit against the first date
    wait_days: np.ndarray
    first_price: np.ndarray
    # chance of paying no more than on the first day (``p`` where the forecast has no
    # ``p_not_dearer``): the gate of waiting, which on sticky prices is far above ``p``
    p_ok: np.ndarray
    last_step: np.ndarray  # per product, its last step with a forecast

    @classmethod
    def of(cls, fc: pd.DataFrame) -> _Grid:
        step = fc.groupby("sku", sort=False).cumcount().to_numpy()
        codes, skus = pd.factorize(fc["sku"])
        n, h = len(skus), int(step.max()) + 1 if len(step) else 0
        rows = np.full((n, h), -1)
        rows[codes, step] = np.arange(len(fc))

        def arr(col: str | np.ndarray) -> np.ndarray:
            v = fc[col].to_numpy(float) if isinstance(col, str) else col
            out = np.full((n, h), np.nan)
            out[codes, step] = v
            return out

        first = fc.groupby("sku", sort=False)["date"].transform("first")
        wait = (pd.to_datetime(fc["date"]) - pd.to_datetime(first)).dt.days.to_numpy(float)
        y = arr("y_pred")
        p = arr("p_cheaper")
        p_ok = arr("p_not_dearer") if "p_not_dearer" in fc else p
        p_ok = np.where(np.isnan(p_ok), p, np.maximum(p_ok, p))
        last = np.where(~np.isnan(y), np.arange(h)[None, :], -1).max(axis=1, initial=-1)
        return cls(
            pd.Index(skus), rows, y, p, arr("expected_saving"), arr(wait), y[:, 0], p_ok, last
        )

    def choose(self, policy: Policy, max_wait: np.ndarray | None = None) -> np.ndarray:
        """Step of the buy day per product (0: buy now)."""
        pct = (
            100
            * self.saving
            / np.where(np.abs(self.first_price) > 0, np.abs(self.first_price), np.nan)[:, None]
        )
        ok = (
            (self.p_ok >= policy.min_confidence)
            & (pct >= policy.min_saving_pct)
            & (self.saving > 0)
        )
        ok[:, 0] = False
        if max_wait is not None:
            ok &= self.wait_days <= max_wait[:, None]
        score = np.where(ok, self.saving, -np.inf)
        best = score.argmax(axis=1)
        return np.where(np.isfinite(score.max(axis=1)), best, 0)

    def deadline(
        self, day: np.ndarray, grace: int, max_wait: np.ndarray | None = None
    ) -> np.ndarray:
        """The last step a buyer waits for the target price: ``grace`` steps after the advised
        day, within the forecast and the stock's ``max_wait`` (0 where buying now)."""
        last = self.last_step
        if max_wait is not None:
            steps = np.arange(self.y_pred.shape[1])[None, :]
            ok = ~np.isnan(self.y_pred) & (self.wait_days <= max_wait[:, None])
            last = np.where(ok, steps, -1).max(axis=1)
        return np.where(day > 0, np.maximum(np.minimum(day + grace, last), day), 0)

    def first_at_target(self, y: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Per window, the first step whose actual price ``y`` is at or below the advised day's
        forecast (the target price); the number of steps where none is, or where buying now."""
        target = self.y_pred[np.arange(len(day)), day]
        with np.errstate(invalid="ignore"):
            hit = (y <= target[:, None]) & (day > 0)[:, None]
        return np.where(hit.any(axis=1), hit.argmax(axis=1), y.shape[1])

    def follow(
        self, y: np.ndarray, day: np.ndarray, policy: Policy, first: np.ndarray | None = None
    ) -> np.ndarray:
        """The step a buyer following the advice buys on, given the actual prices ``y``: the
        first day up to the deadline (``deadline``) whose price is at or below the advised
        day's forecast (the advice's target price), else the deadline. Each day's choice uses
        only the prices up to that day. The first day counts too: a price already down to the
        target (a promotion that began on it) is bought at once, as the morning's fresh
        forecast would advise, not a day later at what may be a dearer price. ``first``:
        ``first_at_target`` where the caller has it."""
        if not policy.target_price:
            return day
        hit = self.first_at_target(y, day) if first is None else first
        end = self.deadline(day, policy.grace_steps)
        return np.where(hit <= end, hit, end)


def recommend(
    forecast: pd.DataFrame,
    policy: Policy | None = None,
    max_wait: pd.Series | None = None,
    quantity: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per sku: ``buy_date``, ``buy_now``, ``first_price``, ``buy_price``,
    ``saving`` (per unit), ``saving_pct``, ``saving_total`` (x quantity), ``confidence``,
    ``not_dearer`` (chance the buy day is no dearer than the first, where waiting),
    ``stockout`` (waiting would pay but stock runs out first), ``target_price`` and
    ``last_buy_date`` (where waiting: buy on the first day up to ``last_buy_date`` whose price is
    down to ``target_price``, the buy day's forecast; on ``last_buy_date`` if none), ``reason``.

    ``forecast`` has sku, date, y_pred and, from the model's calibration, p_cheaper and
    expected_saving (without them: a normal approximation from lo_80/hi_80 and the forecast path).
    ``max_wait`` (days, per sku) caps how long the buyer can wait, e.g. until stock runs out.
    A policy with ``kinds`` advises each product with its kind's policy.
    """
    policy = policy or Policy()
    if policy.kinds:
        kind = forecast["sku"].map(policy.kind_of or {}).fillna("")
        parts = [
            recommend(part, policy.kinds.get(str(k), policy.alone()), max_wait, quantity)
            for k, part in forecast.groupby(kind, sort=False)
        ]
        if not parts:
            return recommend(forecast, policy.alone(), max_wait, quantity)
        return pd.concat(parts).sort_values("sku", ignore_index=True)
    fc = forecast.sort_values(["sku", "date"]).reset_index(drop=True)
    if "p_cheaper" not in fc.columns:
        fc["p_cheaper"] = _p_cheaper_from_intervals(fc)
    if "expected_saving" not in fc.columns:
        fc["expected_saving"] = fc.groupby("sku")["y_pred"].transform("first") - fc["y_pred"]
    grid = _Grid.of(fc)
    limit = None
    if max_wait is not None:
        limit = max_wait.reindex(grid.skus).fillna(np.inf).to_numpy(float)
    best = grid.choose(policy, limit)
    free = grid.choose(policy) if limit is not None else best
    idx = np.arange(len(grid.skus))
    pick = grid.rows[idx, best]
    first_rows = grid.rows[:, 0]
    wait = best > 0
    first_price = grid.first_price
    saving = np.where(wait, grid.saving[idx, best], 0.0)
    denom = np.where(np.abs(first_price) > 0, np.abs(first_price), np.nan)
    later = grid.p[:, 1:]
    max_p = (
        np.nan_to_num(np.nanmax(later, axis=1), nan=0.0) if later.shape[1] else np.zeros(len(idx))
    )
    last_pred = grid.y_pred[idx, (~np.isnan(grid.y_pred)).sum(axis=1) - 1]

    out = pd.DataFrame(index=grid.skus.rename("sku"))
    out["buy_now"] = ~wait
    out["buy_date"] = pd.to_datetime(fc["date"].to_numpy()[pick])
    out["first_date"] = pd.to_datetime(fc["date"].to_numpy()[first_rows])
    out["first_price"] = first_price
    out["buy_price"] = fc["y_pred"].to_numpy()[pick]
    # buy on any day up to the deadline once the price is down to the buy day's forecast
    targeted = wait & policy.target_price
    out["target_price"] = np.where(targeted, out["buy_price"], np.nan)
    end = grid.deadline(np.where(targeted, best, 0), policy.grace_steps, limit)
    out["last_buy_date"] = pd.to_datetime(
        np.where(targeted, fc["date"].to_numpy()[grid.rows[idx, end]], np.datetime64("NaT"))
    )
    out["saving"] = saving
    out["saving_pct"] = 100 * saving / denom
    out["confidence"] = np.where(
        wait, policy.confidence(grid.p[idx, best]), np.clip(1.0 - max_p, 0.0, 0.99)
    )
    out["not_dearer"] = np.where(wait, grid.p_ok[idx, best], np.nan)
    out["trend_pct"] = 100 * (last_pred - first_price) / denom
    out["last_day"] = wait & (best == (~np.isnan(grid.y_pred)).sum(axis=1) - 1)
    # waiting would pay, but the stock runs out first
    out["stockout"] = (~wait) & (free > 0)
    missed = np.where(free > 0, 100 * grid.saving[idx, free] / denom, 0.0)
    stock_end = np.where(free > 0, pd.to_datetime(fc["date"].to_numpy()[first_rows]), pd.NaT)
    qty = quantity.reindex(out.index).fillna(1.0).to_numpy() if quantity is not None else 1.0
    out["saving_total"] = out["saving"] * qty
    reasons = []
    for i in range(len(out)):
        if out["stockout"].iloc[i]:
            # ``max_wait`` is the stock's cover less the lead time: the last day an order still
            # arrives in time, not the day the stock runs out (the sentence had said "runs out
            # before" today while the stock lasted days more)
            cover = limit[i] if limit is not None else 0.0
            end = pd.Timestamp(stock_end[i]) + pd.Timedelta(days=float(cover))
            when = "today" if cover < 1 else f"by {end:%a %d %b}"
            reasons.append(
                f"Buy now: order {when} to have it before the stock runs out; waiting would "
                f"save {missed[i]:.1f}%"
            )
        else:
            reasons.append(
                _reason(
                    bool(wait[i]),
                    out["buy_date"].iloc[i],
                    float(out["saving_pct"].iloc[i]),
                    float(out["confidence"].iloc[i]),
                    float(out["trend_pct"].iloc[i]),
                    float(out["not_dearer"].iloc[i]),
                    float(out["target_price"].iloc[i]),
                    out["last_buy_date"].iloc[i],
                )
            )
    out["reason"] = reasons
    return out.reset_index()


def _with_actuals(replayed: pd.DataFrame) -> tuple[_Grid, np.ndarray]:
    """The replayed backtest windows as a grid, and their actual prices on the same grid."""
    grid = _Grid.of(replayed)
    y = np.full(grid.rows.shape, np.nan)
    valid = grid.rows >= 0
    y[valid] = replayed["y"].to_numpy(float)[grid.rows[valid]]
    return grid, y


@dataclass
class _Outcomes:
    """Every candidate policy's record on replayed backtest windows, summed per backtest cutoff
    (products that move together are one piece of evidence, not many), so that the best of
    them can be chosen on any set of cutoffs without replaying the windows again."""

    policies: list[Policy]
    saved: np.ndarray  # (policies, cutoffs): summed realized saving, a fraction of the first price
    waits: np.ndarray  # (policies, cutoffs): windows where waiting was advised
    windows: np.ndarray  # (cutoffs,): windows with a first price
    cutoffs: np.ndarray  # (cutoffs,): their names
    row_cutoff: np.ndarray  # per window (row of the grid), its cutoff's name
    kept: np.ndarray  # per window, whether it has a first price to save against
    codes: np.ndarray  # per kept window, the index of its cutoff in ``cutoffs``


def _realized(y: np.ndarray, day: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Per kept window, the saving of buying on step ``day`` (0: at once) against the first
    price, a fraction of it (0 where that day has no price)."""
    first = y[kept, 0]  # a zero first price (electricity) has no saving in percent
    paid = np.where(day > 0, y[np.arange(len(y)), day], y[:, 0])[kept]
    return np.where(np.isfinite(paid), (first - paid) / np.abs(first), 0.0)


def _outcomes(grid: _Grid, y: np.ndarray) -> _Outcomes:
    y_first = y[:, 0]
    keep = np.isfinite(y_first) & (np.abs(y_first) > 0)
    row_cutoff = np.array([str(k).rsplit("@", 1)[-1] for k in grid.skus])
    codes, names = pd.factorize(row_cutoff[keep])
    n = len(names)
    horizon = grid.y_pred.shape[1]
    graces = sorted({round(f * (horizon - 1)) for f in GRACE_GRID})
    ways = [(False, 0)] + [(True, g) for g in graces]  # the buy day alone, or with a target
    policies, saved, waits = [], [], []
    for conf, pct in itertools.product(CONFIDENCE_GRID, SAVING_GRID):
        planned = grid.choose(Policy(float(conf), float(pct)))
        at_target = grid.first_at_target(y, planned)
        for target, grace in ways:
            pol = Policy(float(conf), float(pct), target, grace)
            day = grid.follow(y, planned, pol, at_target)
            policies.append(pol)
            saved.append(np.bincount(codes, _realized(y, day, keep), n))
            waits.append(np.bincount(codes, (day[keep] > 0).astype(float), n))
    return _Outcomes(
        policies,
        np.array(saved).reshape(len(policies), n),
        np.array(waits).reshape(len(policies), n),
        np.bincount(codes, minlength=n).astype(float),
        np.asarray(names),
        row_cutoff,
        keep,
        codes,
    )


def _best(out: _Outcomes, cols: np.ndarray) -> tuple[Policy, list[dict[str, Any]]]:
    """The best policy of ``out`` on the cutoffs ``cols`` (a mask), and every one's record."""
    count = out.windows[cols].sum()
    if count == 0:
        return Policy(NEVER_WAIT, 0.0), []
    gain = 100 * out.saved[:, cols].sum(axis=1) / count
    waits = out.waits[:, cols].sum(axis=1)
    # the mean saving per cutoff must be positive with some consistency
    per_window = out.saved[:, cols] / out.windows[cols]
    consistent = (per_window.shape[1] >= 3) & (t_stats(per_window, axis=1) > MIN_POLICY_T)
    ok = (gain > 0) & (waits >= 5) & consistent
    table = [
        {
            "min_confidence": pol.min_confidence,
            "min_saving_pct": pol.min_saving_pct,
            "target_price": pol.target_price,
            "grace_steps": pol.grace_steps,
            "waits": int(w),
            "saving_pct": float(g),
        }
        for pol, w, g in zip(out.policies, waits, gain, strict=True)
    ]
    if not ok.any():
        return Policy(NEVER_WAIT, 0.0), table
    return out.policies[int(np.argmax(np.where(ok, _smoothed(gain), -np.inf)))], table


def _smoothed(gain: np.ndarray) -> np.ndarray:
    """Each candidate's saving averaged with its neighbours' on the grid of thresholds (weights
    1-2-1 along the confidence and along the saving bar, the edges repeated), in the order
    ``_outcomes`` lists them. The best of some 350 records on a few backtest windows is partly
    luck; a threshold whose neighbours paid as well is the one that pays again. Chosen on the
    smoothed records, the advice found 0.3-1.1 points more of the oracle saving out of sample on
    four of five shelves (the fifth unchanged)."""
    g = gain.reshape(len(CONFIDENCE_GRID), len(SAVING_GRID), -1)
    for axis in (0, 1):
        n = g.shape[axis]
        pad = [(0, 0)] * g.ndim
        pad[axis] = (1, 1)
        e = np.pad(g, pad, mode="edge")
        g = (
            np.take(e, range(n), axis)
            + 2 * np.take(e, range(1, n + 1), axis)
            + np.take(e, range(2, n + 2), axis)
        ) / 4
    return g.ravel()


def choose_policy(replayed: pd.DataFrame) -> tuple[Policy, list[dict[str, Any]]]:
    """Advice thresholds that would have saved the most on backtest windows, never losing
    money on average (the mean saving per window must be positive with a t-statistic above
    ``MIN_POLICY_T``); ``NEVER_WAIT`` when no threshold pays.

    ``replayed``: one pseudo-product per backtest window with y_pred, p_cheaper,
    expected_saving and the actual price ``y`` (``Calibration.replay``). Returns the policy and,
    per threshold pair, the windows where waiting was advised and the mean saving in percent.
    """
    out = _outcomes(*_with_actuals(replayed))
    return _best(out, np.ones(len(out.cutoffs), dtype=bool))


def _chosen_and_mapped(
    replayed: pd.DataFrame, evidence: float
) -> tuple[Policy, list[dict[str, Any]]]:
    """``choose_policy`` then ``confidence_map``, replaying every candidate on the windows once
    for both; never waiting (``Policy.unproven``) where the thresholds chosen on the other
    cutoffs saved nothing on each held-out one (``out_of_fold_record``, ``MIN_OUT_OF_FOLD_T``)."""
    grid, y = _with_actuals(replayed)
    out = _outcomes(grid, y)
    policy, table = _best(out, np.ones(len(out.cutoffs), dtype=bool))
    day, bought = _advised_out_of_fold(grid, y, out)
    pct, t = out_of_fold_record(y, bought, out)
    policy = dataclasses.replace(policy, out_of_fold_pct=pct, out_of_fold_t=t)
    if policy.min_confidence < NEVER_WAIT and t is not None and not t > MIN_OUT_OF_FOLD_T:
        # thresholds chosen this way lost money, or saved nothing consistent, on the cutoffs
        # they were not chosen on: what they saved on their own is luck of the search
        return dataclasses.replace(policy, min_confidence=NEVER_WAIT, unproven=True), table
    return _mapped(grid, y, out, policy, evidence, (day, bought)), table


# the t-statistic over backtest cutoffs that the out-of-fold saving of the threshold search must
# exceed for the advice to wait at all
MIN_OUT_OF_FOLD_T = 0.0


def out_of_fold_record(
    y: np.ndarray, bought: np.ndarray, out: _Outcomes
) -> tuple[float | None, float | None]:
    """The mean saving per window (percent of the first price) of the advice given out of fold
    (``_advised_out_of_fold``: ``bought``, the step bought on per window, 0 for buying at once),
    and its t-statistic over the backtest cutoffs; None where there are fewer than three."""
    if len(out.cutoffs) < 3:
        return None, None
    realized = _realized(y, bought, out.kept)
    # every cutoff listed has kept windows (``_outcomes``)
    per_cutoff = np.bincount(out.codes, realized, len(out.cutoffs)) / out.windows
    mean = 100 * float(realized.mean())
    return mean, float(t_stats(per_cutoff[None, :], axis=1)[0])


MIN_MAP_CASES = 60  # advised backtest windows below which the confidence is not remapped
MAP_GRID = np.r_[P_FLOOR, np.linspace(0.01, 0.99, 99), P_CEIL]
SHIFT_PRIOR = 20.0  # independent windows at which the advice's logistic map gets half the weight
# How far the mapped confidence of a wait may stand from its mean over the backtest's waits (1:
# as mapped). The map is fitted on the windows that also calibrated every probability (and, when
# this was measured, chose the thresholds: see ``_advised_out_of_fold``); out of sample (12-fold
# backtests of eight shelves, synthetic and structured, 4,665 advised windows) the mapped
# confidences were right on average but too spread: what came true rose by 0.56-1.06 (median
# 0.75) per point stated, and pooled, waits stated 76% came true 82% of the time and those
# stated 94% came true 92%.
ADVICE_SPREAD = 0.75


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), P_FLOOR, P_CEIL)
    return np.log(q / (1 - q))


def _logistic_fit(p: np.ndarray, came_true: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of P(came true) = expit(a + b logit(p)) by maximum likelihood
    (Platt scaling on the stated probability), the slope kept at or above zero; a faint pull
    of the slope towards 1 settles it where the stated values barely differ."""
    x = _logit(p)

    def loss(theta: np.ndarray) -> float:
        z = theta[0] + theta[1] * x
        return float(np.sum(np.logaddexp(0.0, z) - came_true * z) + 1e-3 * (theta[1] - 1) ** 2)

    res = minimize(loss, np.array([0.0, 1.0]), method="L-BFGS-B", bounds=[(None, None), (0, None)])
    return float(res.x[0]), float(res.x[1])


MAP_FOLDS = 8  # groups of backtest cutoffs whose advice is stated with thresholds of the others


def _advised_out_of_fold(
    grid: _Grid, y: np.ndarray, out: _Outcomes
) -> tuple[np.ndarray, np.ndarray]:
    """Per replayed window (rows of ``grid``, actual prices ``y``, candidates' records ``out``),
    the advised step and the
    step a buyer following the advice bought on, under the thresholds that would have been
    chosen (``choose_policy``) on the windows of the other backtest cutoffs: the cutoffs in up
    to ``MAP_FOLDS`` consecutive groups, each advised with the policy of the rest. All zero (no
    advice) where there is one cutoff.

    The thresholds are chosen on the same windows as the map was fitted on: what happened to pay
    there. Mapped on the waits they advised in sample, the advice stated 70-90% for waits that
    came true 5-8 points less often out of sample on four shelves of 12-fold backtests (as the
    trust blend and the calendars are chosen without each window, for the same reason)."""
    day = np.zeros(len(out.row_cutoff), dtype=int)
    bought = np.zeros(len(out.row_cutoff), dtype=int)
    if len(out.cutoffs) < 2:
        return day, bought
    order = np.sort(out.cutoffs)
    for group in np.array_split(order, min(len(order), MAP_FOLDS)):
        own, _ = _best(out, ~np.isin(out.cutoffs, group))
        here = np.isin(out.row_cutoff, group)
        d = grid.choose(own)
        day[here] = d[here]
        bought[here] = grid.follow(y, d, own)[here]
    return day, bought


def confidence_map(replayed: pd.DataFrame, policy: Policy, evidence: float) -> Policy:
    """``policy`` with the map from the probability stated on each advised day of the replayed
    backtest windows to how often that day was really cheaper than the first. The days are
    those advised out of fold (``_advised_out_of_fold``), or ``policy``'s own where too few are.

    The map moves the stated probability by a logistic fit of what came true on it (Platt
    scaling: a shift and a slope in log-odds), then towards an isotonic fit of what came true.
    ``evidence``: the backtest's independent windows (``PoolCalibration.evidence``; products
    that move together count little more than one), which decide how far each part is trusted:
    the logistic fit is two numbers, half-trusted at ``SHIFT_PRIOR`` windows. Its slope matters
    where the advice waits for a target price: the stated chance of the buy day alone had
    understated the waits stated 70-80% (pooled over four shelves, 76% came true 86-88%) and
    overstated those above 90%. The isotonic fit of a few
    hundred advised days has steps of 20-40 points in the middle of the range (0.65 -> 0.50 in
    one fold, 0.92 in the next) and is half-trusted at ``ISO_PRIOR``. Moving only part of the
    way towards the isotonic fit from the stated value had left the advice stating 74-86% for
    days that came true 80-91% of the time on every shelf tried. Last, the map is drawn towards
    its mean over these windows by ``ADVICE_SPREAD``, as far as the logistic fit is trusted:
    fitted in sample, it stays too spread out of sample."""
    grid, y = _with_actuals(replayed)
    return _mapped(grid, y, _outcomes(grid, y), policy, evidence)


def _mapped(
    grid: _Grid,
    y: np.ndarray,
    out: _Outcomes,
    policy: Policy,
    evidence: float,
    out_of_fold: tuple[np.ndarray, np.ndarray] | None = None,
) -> Policy:
    """``confidence_map`` on the replayed windows as a grid, their actual prices and every
    candidate's record on them (and ``_advised_out_of_fold`` where the caller has it)."""
    idx = np.arange(len(grid.skus))

    def advised(bought: np.ndarray) -> np.ndarray:
        return (bought > 0) & np.isfinite(y[idx, bought]) & np.isfinite(y[:, 0])

    day, bought = out_of_fold or _advised_out_of_fold(grid, y, out)
    seen = advised(bought)
    if seen.sum() < MIN_MAP_CASES:
        # too few waits advised out of sample (thresholds chosen on the other windows rarely
        # wait): the record of ``policy`` on these windows is what there is
        day = grid.choose(policy)
        bought = grid.follow(y, day, policy)
        seen = advised(bought)
    if seen.sum() < MIN_MAP_CASES or evidence <= 0:
        return policy
    # stated on the advised day's forecast; came true where following the advice (the first
    # day at the target price up to the last day, else the last day) paid less than the first
    # day. Windows whose first price was already at the target are bought at once: no wait,
    # nothing stated
    p = grid.p[idx, day][seen]
    came_true = (y[idx, bought] < y[:, 0])[seen].astype(float)
    iso = IsotonicRegression(y_min=P_FLOOR, y_max=P_CEIL, out_of_bounds="clip")
    iso.fit(p, came_true)
    a, b = _logistic_fit(p, came_true)
    w = evidence / (evidence + SHIFT_PRIOR)
    shifted = expit(w * a + (1 + w * (b - 1)) * _logit(MAP_GRID))
    mapped = shifted + evidence / (evidence + ISO_PRIOR) * (iso.predict(MAP_GRID) - shifted)
    # closer to the mean of what it states for these windows (which stays as it is), as far
    # as the evidence goes, as the shift does
    mean = float(np.mean(np.interp(p, MAP_GRID, mapped)))
    mapped = mean + (1.0 - w * (1.0 - ADVICE_SPREAD)) * (mapped - mean)
    return dataclasses.replace(
        policy,
        conf_x=tuple(float(v) for v in MAP_GRID),
        conf_y=tuple(float(v) for v in np.clip(mapped, P_FLOOR, P_CEIL)),
        conf_weight=1.0,
    )


KINDS = ("drifts", "reverts")
# replayed backtest windows of each kind below which one policy serves the whole company
MIN_KIND_WINDOWS = 100


def kinds_of(groups: Mapping[str, str]) -> dict[str, str]:
    """Each product's kind from its ``trust_groups`` group (``"<category>|drifts"``: drifts)."""
    return {u: "drifts" if str(g).endswith("|drifts") else "reverts" for u, g in groups.items()}


def _window_skus(names: pd.Series | pd.Index) -> pd.Series:
    """The product of each pseudo-product name ``<sku>@<cutoff>`` of the replayed windows."""
    return pd.Series(names).astype(str).str.rsplit("@", n=1).str[0]


def choose_policies(
    replayed: pd.DataFrame, kind_of: Mapping[str, str], evidence: float
) -> tuple[Policy, list[dict[str, Any]]]:
    """The company's policy (``choose_policy``, checked out of fold, then ``confidence_map``:
    ``_chosen_and_mapped``) and, where the backtest windows hold at least ``MIN_KIND_WINDOWS`` of each kind of product (``kind_of``:
    sku -> one of ``KINDS``), each kind's own, chosen and mapped on its own windows.

    One bar for a catalog of both kinds was a compromise that served neither: on the synthetic
    catalog with its index drivers, commodities that follow their index a week late are worth
    waiting for on the buy day itself, while a target price, which catches a promotion that
    comes early or late, bought them too soon on a falling index (24% of their oracle saving
    with the company's policy, 46% with their own; the shelf goods 59% -> 60%)."""
    policy, table = _chosen_and_mapped(replayed, evidence)
    kind = _window_skus(replayed["sku"]).map(kind_of).fillna("")
    windows = replayed.groupby(kind.to_numpy())["sku"].nunique()
    if any(windows.get(k, 0) < MIN_KIND_WINDOWS for k in KINDS):
        return policy, table
    kinds = {}
    for k in KINDS:
        part = replayed[(kind == k).to_numpy()]
        kinds[k], _ = _chosen_and_mapped(part, evidence * windows[k] / windows.sum())
    return dataclasses.replace(policy, kinds=kinds, kind_of=dict(kind_of)), table


def policy_summary(policy: Policy) -> dict[str, Any]:
    """The thresholds as plain data (``metrics.json``, the Model page): the company's and, where
    it has them, each kind's with how many products it advises."""
    out: dict[str, Any] = {
        "min_confidence": policy.min_confidence,
        "min_saving_pct": policy.min_saving_pct,
        "target_price": policy.target_price,
        "grace_steps": policy.grace_steps,
        "out_of_fold_saving_pct": policy.out_of_fold_pct,
        "out_of_fold_t": policy.out_of_fold_t,
        "unproven": policy.unproven,
    }
    if policy.kinds:
        counts = pd.Series(list((policy.kind_of or {}).values()), dtype=object).value_counts()
        out["kinds"] = {
            k: {**policy_summary(p), "products": int(counts.get(k, 0))}
            for k, p in policy.kinds.items()
        }
    return out


def advice_record(replayed: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """Each product's own record under ``policy`` on its backtest windows: ``windows``,
    ``waits`` (advised to wait), ``paid_off`` (the buy day really was cheaper than the first
    day) and ``median_saving_pct`` of those that paid off. Pseudo-products of ``replayed`` are
    named ``<sku>@<cutoff>``."""
    if policy.kinds:
        kind = _window_skus(replayed["sku"]).map(policy.kind_of or {}).fillna("").to_numpy()
        return pd.concat(
            [
                advice_record(part, policy.kinds.get(str(k), policy.alone()))
                for k, part in replayed.groupby(kind, sort=False)
            ],
            ignore_index=True,
        )
    grid, y = _with_actuals(replayed)
    day = grid.follow(y, grid.choose(policy), policy)
    idx = np.arange(len(day))
    paid = y[idx, day]
    saving = 100 * (y[:, 0] - paid) / np.where(np.abs(y[:, 0]) > 0, np.abs(y[:, 0]), np.nan)
    rows = pd.DataFrame(
        {
            "sku": _window_skus(grid.skus).to_numpy(),
            "wait": day > 0,
            "paid_off": (day > 0) & (saving > 0),
            "saving": np.where((day > 0) & (saving > 0), saving, np.nan),
        }
    )
    g = rows.groupby("sku")
    return pd.DataFrame(
        {
            "windows": g.size(),
            "waits": g["wait"].sum(),
            "paid_off": g["paid_off"].sum(),
            "median_saving_pct": g["saving"].median(),
        }
    ).reset_index()


RISING_PCT = 0.5  # a forecast rise over the horizon above this is called rising


def says_rising(recs: pd.DataFrame) -> pd.Series:
    """The products whose advice says their price is rising: buy now because of the forecast
    (not because the stock runs out), the forecast rising more than ``RISING_PCT``."""
    return recs["buy_now"] & ~recs["stockout"].astype(bool) & (recs["trend_pct"] > RISING_PCT)


def shown_percent(p: float | np.ndarray | pd.Series) -> np.ndarray:
    """The whole percent a probability is shown as wherever a buyer reads it (the advice's
    sentence, the tables' "How sure", the assistant): rounded once, half up, and never above
    99 (a backtest can't justify certainty). The tables had rounded to a tenth and then to a
    whole percent in the browser, so "80% likely" sat beside "81%" in the same row."""
    return np.minimum(np.floor(np.asarray(p, dtype=float) * 100 + 0.5), 99).astype(int)


STICKY_GAP = 0.1  # "no dearer" said beside "cheaper" when it is this much more likely


def price_text(price: float) -> str:
    """A unit price as the advice says it: cents from 1 up, three significant digits below
    (a part at 0.0123 is not "0.01")."""
    return f"{price:,.2f}" if price >= 1 else f"{price:.3g}"


def _reason(
    wait: bool,
    date: pd.Timestamp,
    saving_pct: float,
    conf: float,
    trend: float,
    not_dearer: float = np.nan,
    target: float = np.nan,
    last: pd.Timestamp | None = None,
) -> str:
    if wait:
        likely = f"{int(shown_percent(conf))}%"
        when = f"Buy on {date:%a %d %b}"
        if np.isfinite(target) and target > 0:
            price = price_text(target)
            if last is not None and pd.notna(last) and last > date:
                # a limit order: the day the price is expected down to the target, and how
                # long to wait for it
                when = (
                    f"Buy once it costs {price} or less, expected {date:%a %d %b}, by "
                    f"{last:%a %d %b}"
                )
            else:
                when += f" (sooner at {price} or less)"
        # a saving under 0.05% read "0.0% cheaper", which a buyer takes for no saving at all
        pct = f"{saving_pct:.1f}" if abs(saving_pct) >= 0.05 else f"{saving_pct:.2g}"
        text = f"{when}: expected {pct}% cheaper than today, {likely} likely"
        if not_dearer - conf >= STICKY_GAP:
            # a price that mostly stays put: waiting rarely costs more even when it saves nothing
            text += f" ({int(shown_percent(not_dearer))}% likely no dearer)"
        return text
    if trend > RISING_PCT:
        return f"Buy now: price forecast to rise {trend:.1f}% over the horizon"
    return "Buy now: no reliable saving from waiting"
