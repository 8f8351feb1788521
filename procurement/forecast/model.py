"""The global LightGBM price model: one mlforecast ``MLForecast`` over every product of a company,
plus what it needs to build future driver features (tails of drivers and sales)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlforecast import MLForecast
from mlforecast.lag_transforms import ExponentiallyWeightedMean, RollingMean, RollingStd
from mlforecast.target_transforms import (
    Differences,
    GlobalSklearnTransformer,
    LocalStandardScaler,
)
from sklearn.preprocessing import FunctionTransformer

from procurement.forecast.calibration import (
    NAIVE,
    Calibration,
    add_naive,
    backtest_metrics,
    choose_blend,
    drifting,
    random_walks,
    trust_groups,
    variance_ratio,
)
from procurement.forecast.features import (
    MONTHLY,
    SPARSE_STEP,
    FreqSpec,
    driver_features,
    is_coarse,
    month_dates,
    pass_through,
    period_dates,
    period_days,
    periods_between,
    regularize,
    sparse_series,
    spec_for,
)
from procurement.forecast.promotions import (
    ODDS,
    calendar_paths,
    cheaper_than_first,
    choose_calendars,
    mix,
)
from procurement.forecast.transforms import (
    AboveLow,
    BelowHigh,
    DropGap,
    LocalScale,
    PromoDue,
    PromoSince,
    SinceDrop,
    history_kept,
    keeps_no_state,
)
from procurement.recommend import (
    Policy,
    advice_record,
    choose_policies,
    kinds_of,
    policy_summary,
)

LEVELS = (80, 95)
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ModelParams:
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    conformal_windows: int = 8  # backtest windows that calibrate intervals, trust and policy
    max_history: int | None = 730  # periods per daily series used for training (weekly: all)
    max_train_rows: int = 800_000  # LightGBM sees a random sample of at most this many rows
    backtest_series: int = 500  # the calibration backtest runs on a sample of this many series
    seed: int = 42

    def samples(self, n_rows: int) -> bool:
        """Whether a training table of ``n_rows`` is fitted on a sample (``_fit_sampled``)."""
        return n_rows > self.max_train_rows

    def for_rows(self, n_rows: int) -> ModelParams:
        """The settings for a training table of ``n_rows``: above ``max_train_rows`` (a sampled
        fit) half the trees at twice the rate. On 4,000 products x 730 days the holdout
        MASE/naive was 0.864 against 0.871 with 200 trees at 0.05 (backtest 1.3% worse), in 38 s
        instead of 65 s; small catalogs keep the slower schedule, which found 3-4 points more
        of the oracle saving on 60-product backtests. The backtest uses the same settings as
        the final fit, so it judges the model the buyer gets."""
        if not self.samples(n_rows):
            return self
        return dataclasses.replace(
            self, n_estimators=max(1, self.n_estimators // 2), learning_rate=2 * self.learning_rate
        )

    def lgbm(self) -> lgb.LGBMRegressor:
        return lgb.LGBMRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=100,
            subsample=0.7,
            subsample_freq=1,
            colsample_bytree=0.8,
            reg_lambda=1.0,
            max_bin=127,
            random_state=self.seed,
            # the same data gives the same model, whatever the threads did: a retrain of
            # unchanged data must not flip a product's trust or a promotion decision
            deterministic=True,
            force_row_wise=True,
            n_jobs=2,
            verbose=-1,
        )


def change_of_log(spec: FreqSpec, prices: pd.Series) -> bool:
    """Whether the change model works on log prices: weekly series where every price is
    positive. Weekly histories span decades in which the level moves several-fold (retail
    fuel: 1 to 4 USD a gallon), so a move in money is not the same move at every level; a log
    change is. On two years of daily prices it made no difference to the backtest."""
    return is_coarse(spec.freq) and bool((prices > 0).all())


def make_forecaster(spec: FreqSpec, params: ModelParams, log: bool = False) -> MLForecast:
    short, long_ = spec.windows
    level: list[Any] = [RollingMean(short), RollingMean(long_), RollingStd(long_)]
    # The target is the scaled change, so an exponential average of changes is (up to a factor)
    # the price's distance from its own exponential average: the mean-reversion signal.
    level += [ExponentiallyWeightedMean(alpha=a) for a in spec.ewm_alphas]
    level += [BelowHigh(w) for w in spec.level_windows]
    level += [AboveLow(w) for w in spec.level_windows]
    if spec.since_cap:
        level.append(SinceDrop(threshold=1.5, window=spec.since_cap))
        level.append(DropGap(threshold=1.5, window=spec.since_cap))
    return MLForecast(
        models={"lgbm": params.lgbm()},
        freq=spec.freq,
        lags=list(spec.lags),
        lag_transforms={1: level},
        date_features=list(spec.date_features),
        # Model the change, scaled per product, so random walks stay random walks; the level
        # features above give it what promotions and mean reversion need.
        target_transforms=[
            *([GlobalSklearnTransformer(FunctionTransformer(np.log, np.exp))] if log else []),
            Differences([1]),
            LocalScale(),
        ],
        num_threads=1,
    )


def make_level_forecaster(spec: FreqSpec, params: ModelParams) -> MLForecast:
    """The level model: log price standardized per product. It learns where a price returns to
    after a promotion or a shock, which the change model sees only through its features; on
    random walks it is worse, and the per-product blend leaves it out there."""
    short, long_ = spec.windows
    # every lag up to the longest promotion cycle: a price that was on promotion exactly one
    # cycle ago is the strongest sign of the next promotion, whatever the product's own cycle
    lags = sorted({*range(1, max(spec.season, spec.since_cap) + 1), *spec.lags})
    level: list[Any] = [RollingMean(short), RollingMean(long_), RollingMean(2 * long_)]
    if spec.since_cap:
        # when the last promotion started and when the next one is due, promotions told from
        # weekday moves by the price's own typical daily move
        weekday = 1 if is_coarse(spec.freq) else spec.season  # days in a week
        level.append(PromoSince(window=spec.since_cap, season=weekday))
        level.append(PromoDue(window=spec.since_cap, season=weekday))
    return MLForecast(
        models={"lgbm": params.lgbm()},
        freq=spec.freq,
        lags=lags,
        lag_transforms={1: level},
        date_features=list(spec.date_features),
        target_transforms=[
            GlobalSklearnTransformer(FunctionTransformer(np.log, np.exp)),
            LocalStandardScaler(),
        ],
        num_threads=1,
    )


@dataclass
class TrainingData:
    """Everything a model is fitted on; ``prices`` has unique_id, ds, y (any regular frequency)."""

    prices: pd.DataFrame
    drivers: pd.DataFrame | None = None  # name, ds, value
    sales: pd.DataFrame | None = None  # unique_id, ds, quantity
    categories: Mapping[str, str] | None = None  # unique_id -> category
    # the date the data runs to: every series is carried forward to it and forecast from it
    # (the backtest's cutoff, where a product had no price that day); None: each from its own
    # last price
    until: pd.Timestamp | None = None
    # per product, how its price follows its category index's changes
    # (``features.pass_through``), as measured on the prices it is fitted on (``prepare``)
    pass_rates: pd.DataFrame | None = None


@dataclass
class PriceModel:
    fcst: MLForecast
    spec: FreqSpec
    horizon: int
    last_date: pd.Timestamp
    features: list[str]
    exog: list[str]
    drivers_tail: pd.DataFrame | None
    sales_tail: pd.DataFrame | None
    categories: dict[str, str]
    last_price: dict[str, float]
    calibration: Calibration | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    # forecast = last + w_change * (change model - last) + w_level * (level model - last),
    # per product, chosen on the backtest
    trust: dict[str, tuple[float, float]] = field(default_factory=dict)
    trust_default: tuple[float, float] = NAIVE  # for products the backtest did not see
    policy: Policy | None = None  # advice thresholds that saved the most in the backtest
    level_fcst: MLForecast | None = None  # None where prices are not all positive
    level_exog: bool = False  # the level model sees the drivers too (models saved before: no)
    # per product, from the backtest under ``policy``: windows, waits, paid_off, median_saving_pct
    record: pd.DataFrame | None = None
    # expected prices from each product's promotion calendar, for the periods after
    # ``promotions_from``, where the backtest chose to mix it into the forecast
    promotions: dict[str, np.ndarray] | None = None
    promotions_from: pd.Timestamp | None = None
    # per product with a calendar: cycle, length (days), depth (share off), the period after
    # ``promotions_from`` the next promotion is most likely to run, with that chance, and
    # whether one is running then
    promotion_info: dict[str, dict[str, float]] | None = None
    # per product in ``promotions``: its calendar's ``odds`` for the same periods, from which
    # the chance of a price below the first forecast day's is computed over when the promotion
    # comes (None in models saved before: the chance from the change errors alone)
    promotion_odds: dict[str, np.ndarray] | None = None
    # per product: the date of its newest price of its own; one without a price on
    # ``last_date`` is forecast from it at that price (``TrainingData.until``). None in models
    # saved before
    last_seen: dict[str, pd.Timestamp] | None = None
    # random walks (``random_walks``) whose models' forecasts are held after ``held_after``
    # periods, as far as the drivers reach (none in models saved before)
    held: frozenset[str] = frozenset()
    held_after: int = 0
    # products of the training data left out for too short a history, and how many periods of
    # prices a product needs (``min_history``): the app says why they have no forecast
    too_short: frozenset[str] = frozenset()
    min_periods: int = 0
    # per product, how its price follows its category index's changes (none in models saved
    # before)
    pass_rates: pd.DataFrame | None = None

    def stale_prices(
        self, newer: pd.DataFrame | None = None, newest: Any = None
    ) -> dict[str, pd.Timestamp]:
        """The products whose newest price is older than the newest day, with its date (on the
        data's calendar: a weekly price is dated on its week's day). ``newer``: prices that came
        in after the model's data (``sku, date, price``), as its forecasts start from them;
        ``newest``: the company's newest price date, where ``newer`` holds only some products."""
        seen = dict(self.last_seen or {})
        newest_day = self.last_date
        if newer is not None and len(newer):
            new = newer.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
            new = regularize(new[["unique_id", "ds", "y"]], self.spec.freq)
            dates = newest_prices(new, new["observed"])
            if dates:
                seen.update({k: max(v, seen.get(k, v)) for k, v in dates.items()})
                newest_day = max(newest_day, *dates.values())
        if newest is not None:  # dated on the calendar as a price of that day would be
            day = period_dates(pd.Series([pd.Timestamp(newest)]), self.spec.freq).iloc[0]
            if pd.notna(day):
                newest_day = max(newest_day, day)
        return {k: v for k, v in seen.items() if v < newest_day}

    def __post_init__(self) -> None:
        # mlforecast swaps internal state while it predicts a subset of products, so one loaded
        # model object must never run two predictions at once (many buyers share it).
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def shrink(self) -> float:
        """Share of products whose forecast follows a model rather than the last price."""
        if not self.trust:
            return float(sum(self.trust_default) > 0 or bool(self.promotions))
        return float(np.mean([self.follows_model(k) for k in self.trust]))

    def trust_of(self, sku: str) -> tuple[float, float]:
        return self.trust.get(sku, self.trust_default)

    def follows_model(self, sku: str) -> bool:
        """False where the forecast is the last price (no model beat it on this product)."""
        return sum(self.trust_of(sku)) > 0 or sku in (self.promotions or {})

    @property
    def products(self) -> list[str]:
        return list(self.last_price)

    def future_exog(
        self, h: int, overrides: Mapping[str, float] | None = None, ids: list[str] | None = None
    ) -> pd.DataFrame | None:
        if not self.exog:
            return None
        products = self.products if ids is None else [p for p in ids if p in self.last_price]
        dates = pd.date_range(self.last_date, periods=h + 1, freq=self.spec.freq)[1:]
        keys = pd.DataFrame(
            {
                "unique_id": np.repeat(np.array(products, dtype=object), h),
                "ds": np.tile(dates, len(products)),
            }
        )
        sales = self.sales_tail
        if ids is not None and sales is not None:
            sales = sales[sales["unique_id"].isin(products)]
        x = driver_features(
            keys,
            self.spec,
            self.drivers_tail,
            self.categories,
            sales,
            self.last_date,
            overrides,
            self.pass_rates,
        )
        for col in self.exog:
            if col not in x.columns:
                x[col] = np.nan
        return x[["unique_id", "ds", *self.exog]]

    def with_prices(
        self,
        prices: pd.DataFrame,
        drivers: pd.DataFrame | None = None,
        sales: pd.DataFrame | None = None,
    ) -> PriceModel:
        """This model, its forecasts starting from the newest prices: no refit.

        ``prices`` (``sku, date, price`` or ``unique_id, ds, y``) may hold any stretch of recent
        history; rows after the model's last date are appended to every product's series with
        mlforecast's ``update`` (the fitted target transforms and trees are kept, only the lags
        and level features see the new prices). Days without a new price carry the product's
        last price forward, so all products end on the newest date. ``drivers`` (``name, ds,
        value``) and ``sales`` (``unique_id, ds, quantity``): newer values for the driver
        features (without them the drivers stay at their last known value). Returns ``self`` when nothing is
        newer than the model's data; the model itself is never changed (it may be shared).
        """
        new = prices.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
        new = new[["unique_id", "ds", "y"]].assign(ds=lambda d: pd.to_datetime(d["ds"]))
        new = new[new["unique_id"].isin(self.last_price) & (new["ds"] > self.last_date)]
        new = new[np.isfinite(pd.to_numeric(new["y"], errors="coerce"))]
        if new.empty:
            return self
        reg = regularize(new, self.spec.freq)
        reg = reg[reg["observed"] & (reg["ds"] > self.last_date)]
        if reg.empty:
            return self
        dates = pd.date_range(self.last_date, reg["ds"].max(), freq=self.spec.freq)[1:]
        products = self.products
        grid = reg.pivot_table(index="ds", columns="unique_id", values="y", aggfunc="last")
        grid = grid.reindex(index=dates, columns=products)
        start = pd.DataFrame([self.last_price], columns=products, index=[self.last_date])
        grid = pd.concat([start, grid]).ffill().iloc[1:]
        upd = pd.DataFrame(
            {
                "unique_id": np.tile(np.array(products, dtype=object), len(dates)),
                "ds": np.repeat(dates, len(products)),
                "y": grid.to_numpy(float).ravel(),
            }
        ).sort_values(["unique_id", "ds"], ignore_index=True)
        if self.on_logs and not (upd["y"] > 0).all():
            raise ValueError("this model forecasts log prices: new prices must be positive")

        def updated(fcst: MLForecast | None) -> MLForecast | None:
            if fcst is None:
                return None
            out = copy.copy(fcst)  # the trees are shared; the series state is copied
            with self._lock:
                out.ts = copy.deepcopy(fcst.ts)
            out.update(upd)
            return out

        tail = self.drivers_tail
        if drivers is not None and len(drivers):
            d = drivers.rename(columns={"date": "ds"})[["name", "ds", "value"]]
            d = d.assign(ds=pd.to_datetime(d["ds"]))
            tail = d if tail is None else pd.concat([tail, d], ignore_index=True)
            tail = tail.drop_duplicates(["name", "ds"], keep="last")
        sales_tail = self.sales_tail
        if sales is not None and len(sales):
            q = sales[["unique_id", "ds", "quantity"]].assign(ds=lambda d: pd.to_datetime(d["ds"]))
            sales_tail = q if sales_tail is None else pd.concat([sales_tail, q], ignore_index=True)
            sales_tail = sales_tail.drop_duplicates(["unique_id", "ds"], keep="last")
        return dataclasses.replace(
            self,
            fcst=cast(MLForecast, updated(self.fcst)),
            level_fcst=updated(self.level_fcst),
            last_date=dates[-1],
            last_price={p: float(v) for p, v in grid.iloc[-1].items()},
            last_seen=None
            if self.last_seen is None
            else {**self.last_seen, **newest_prices(reg, reg["observed"])},
            drivers_tail=tail,
            sales_tail=sales_tail,
            **self._calendars_after(grid),
        )

    @property
    def on_logs(self) -> bool:
        """Whether a model forecasts log prices (every price it sees is above zero)."""
        return self.level_fcst is not None or any(
            isinstance(t, GlobalSklearnTransformer) for t in self.fcst.ts.target_transforms or []
        )

    def promotion_now(self, sku: str, prices: pd.DataFrame) -> dict[str, float] | None:
        """The product's promotion pattern given its prices (``date, price``) after the model's
        last date, as ``with_prices`` would see it, without copying the model."""
        pattern = (self.promotion_info or {}).get(sku)
        if pattern is None:
            return None
        new = prices.assign(date=pd.to_datetime(prices["date"]))
        new = new[new["date"] > self.last_date].sort_values("date")
        series = pd.Series(new["price"].to_numpy(float), index=pd.DatetimeIndex(new["date"]))
        return self._after_fall(sku, series) or pattern

    def _calendars_after(self, grid: pd.DataFrame) -> dict[str, Any]:
        """The calendars given newer prices (``grid``: dates x products): a product that fell
        (``_after_fall``) leaves its calendar until the next retrain."""
        if not self.promotions or not self.promotion_info:
            return {}
        promotions, info = dict(self.promotions), dict(self.promotion_info)
        odds = dict(self.promotion_odds or {})
        for sku in self.promotions:
            if sku in grid.columns and (fallen := self._after_fall(sku, grid[sku])) is not None:
                del promotions[sku]
                odds.pop(sku, None)
                info[sku] = fallen
        return {
            "promotions": promotions or None,
            "promotion_info": info,
            "promotion_odds": odds or None,
        }

    def _after_fall(self, sku: str, prices: pd.Series) -> dict[str, float] | None:
        """The pattern of a product with a calendar, given its prices after the model's data (by
        date), when they fell by half its usual promotion's depth or more (None when not): it
        has started one (or had a shock) that its calendar, made at the retrain, did not
        expect; its forecast follows the model, which sees the fall, and its pattern says a
        promotion began that day, until the next retrain."""
        pattern = (self.promotion_info or {}).get(sku)
        before = self.last_price.get(sku)
        if pattern is None or not before or prices.empty:
            return None
        low = prices.to_numpy(float) / before < np.sqrt(1 - pattern["depth"])
        fell = np.flatnonzero(low)
        if not len(fell):
            return None
        since = (prices.index[-1] - prices.index[fell[0]]).days
        return {**pattern, "running": bool(low[-1]), "since": since, "seen_after_fit": True}

    def predict(
        self,
        h: int | None = None,
        overrides: Mapping[str, float] | None = None,
        ids: list[str] | None = None,
        prices: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """``h`` forecasts per product with 80% and 95% conformal intervals.

        ``overrides`` are what-if factors on the drivers' future values, e.g. ``{"fx": 1.05}``.
        ``prices``: the newest stored prices (``sku, date, price``); forecasts then start from
        them without a retrain (see ``with_prices``).
        """
        if prices is not None:
            return self.with_prices(prices).predict(h, overrides, ids)
        h = h or self.horizon
        x = self.future_exog(h, overrides, ids)
        skus = self.products if ids is None else [p for p in ids if p in self.last_price]
        w = np.array([self.trust_of(s) for s in skus]).reshape(-1, 2)
        # a what-if moves the drivers beyond their last value: a held random walk keeps its
        # path without it and takes the move the what-if adds
        what_if = bool(self.held and x is not None and overrides and set(overrides.values()) - {1})
        x0 = self.future_exog(h, None, ids) if what_if else None
        with self._lock:
            fc = self.fcst.predict(h, X_df=x, ids=ids)
            fc0 = self.fcst.predict(h, X_df=x0, ids=ids) if what_if else None
            level, level0 = None, None
            if self.level_fcst is not None and (w[:, 1] > 0).any():
                level = self.level_fcst.predict(h, X_df=x if self.level_exog else None, ids=ids)
                level0 = level
                if what_if and self.level_exog:
                    level0 = self.level_fcst.predict(h, X_df=x0, ids=ids)
        fc = fc.rename(columns={"lgbm": "change", "unique_id": "sku", "ds": "date"})
        if level is not None:
            fc["level"] = level["lgbm"].to_numpy()  # both ordered by id, then date
        without = None
        if fc0 is not None:
            without = fc[["sku"]].assign(change=fc0["lgbm"].to_numpy())
            if level0 is not None:
                without["level"] = level0["lgbm"].to_numpy()
        fc = hold_beyond(
            fc, ["sku"], ["change", "level"], self.held, self.held_after, without=without
        )
        fc["naive"] = fc["sku"].map(self.last_price).to_numpy()
        weights = np.array([self.trust_of(s) for s in fc["sku"]]).reshape(-1, 2)
        fc["y_pred"] = fc["naive"] + weights[:, 0] * (fc["change"] - fc["naive"])
        if level is not None:
            fc["y_pred"] += weights[:, 1] * (fc["level"] - fc["naive"])
        if self.calibration is None:
            raise RuntimeError("model has no calibration; retrain it")
        trusted = pd.Series(weights.sum(axis=1) > 0, index=fc.index)
        if self.promotions:
            step = self._calendar_steps(fc)
            promo = self._calendar_prices(fc, step)
            fc["y_pred"] = mix(fc["y_pred"].to_numpy(float), promo)
            trusted |= np.isfinite(promo)
            if self.promotion_odds:
                fc["p_promo"] = self._calendar_odds(fc, step)
        out = fc.drop(columns=[c for c in ("change", "level") if c in fc])
        out = self.calibration.apply(out.rename(columns={"naive": "last"}), pools=trusted)
        if self.on_logs:
            # the bands are additive; a price this model forecasts is above zero, and a band
            # below it (a monthly oil price's 95% band a year ahead reached -30 USD) says nothing
            for col in ("lo_80", "lo_95"):
                out[col] = out[col].clip(lower=0.0)
        return out

    def _calendar_steps(self, fc: pd.DataFrame) -> np.ndarray:
        """Per forecast row, its period after ``promotions_from`` (1: the first)."""
        assert self.promotions_from is not None
        dates = pd.DatetimeIndex(fc["date"])
        days = pd.date_range(self.promotions_from, dates.max(), freq=self.spec.freq)
        return days.get_indexer(dates)

    def _calendar_prices(self, fc: pd.DataFrame, step: np.ndarray) -> np.ndarray:
        """Per forecast row, the product's calendar price for its date (NaN: none)."""
        out = np.full(len(fc), np.nan)
        assert self.promotions is not None
        names = list(self.promotions)
        paths = np.vstack([self.promotions[n] for n in names])  # every path 2 x horizon long
        which = pd.Index(names).get_indexer(fc["sku"])
        ok = (which >= 0) & (step >= 1) & (step <= paths.shape[1])
        out[ok] = paths[which[ok], step[ok] - 1]
        return out

    def _calendar_odds(self, fc: pd.DataFrame, step: np.ndarray) -> np.ndarray:
        """Per forecast row (sorted by product, then date), the chance from the product's
        calendar that its price is below that of the product's first forecast date (NaN:
        none)."""
        out = np.full(len(fc), np.nan)
        assert self.promotion_odds is not None
        skus = fc["sku"].to_numpy()
        bounds = np.flatnonzero(np.r_[True, skus[1:] != skus[:-1], True])
        # products by their first forecast step (one group, unless fresh prices came for some)
        groups: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        for a, b in pairwise(bounds):
            odds = self.promotion_odds.get(str(skus[a]))
            if odds is None or step[a] < 1 or step[b - 1] > odds.shape[1]:
                continue
            groups.setdefault(int(step[a]) - 1, []).append((int(a), int(b), odds))
        for first, members in groups.items():
            chances = cheaper_than_first(np.stack([m[2] for m in members]), first=first)
            for (lo, hi, _), row in zip(members, chances, strict=True):
                out[lo:hi] = row[step[lo:hi] - 1]
        return out

    def feature_importance(self) -> pd.DataFrame:
        model: Any = self.fcst.models_["lgbm"]
        imp = model.booster_.feature_importance(importance_type="gain")
        names = model.booster_.feature_name()
        if len(names) == len(self.features):  # fitted on a numpy matrix: Column_0, ...
            names = list(self.features)
        df = pd.DataFrame({"feature": names, "gain": imp})
        df["share"] = df["gain"] / max(df["gain"].sum(), 1e-12)
        return df.sort_values("gain", ascending=False, ignore_index=True)


PREPARE_CHUNK_ROWS = 3_000_000  # rows of history put on the calendar and given drivers at a time


def newest_prices(frame: pd.DataFrame, observed: pd.Series | np.ndarray) -> dict[str, pd.Timestamp]:
    """Per series of a regularized ``frame``: the date of its newest price of its own."""
    seen = np.asarray(observed, dtype=bool)
    dates = frame["ds"][seen].groupby(frame["unique_id"][seen].to_numpy()).max()
    return {str(k): pd.Timestamp(v) for k, v in dates.items()}


def prepare(
    data: TrainingData, freq: str, max_history: int | None, with_exog: bool = True
) -> tuple[pd.DataFrame, FreqSpec, list[str], TrainingData]:
    """Regular calendar, history cap and exogenous columns; returns (frame, spec, exog names,
    ``data`` with each product's rates of following its category index (``pass_rates``),
    measured on the frame, that its driver columns and the forecasts' ones are computed with).

    Done for groups of series at a time (every step is per series, with the company's last
    date for the drivers), the exogenous columns written into one preallocated matrix: on
    50,000 products x 730 days the whole-table version needed 16 GB on top of its input."""
    spec = spec_for(freq)
    if is_coarse(spec.freq):
        # weekly series are kept whole: 30 years are 1,560 rows, the cost of two years of daily
        # prices, and their decades of market turns are what a weekly model learns from
        # (retail fuel backtest, log changes: MASE/naive 0.940 capped at 730 weeks, 0.900 whole)
        max_history = None
    prices = data.prices
    groups = _series_groups(prices["unique_id"], PREPARE_CHUNK_ROWS)
    sales_groups = (
        _series_groups(data.sales["unique_id"], 0, like=groups)
        if data.sales is not None and len(data.sales) and len(groups.rows) > 1
        else None
    )
    panels = []
    for rows in groups.rows:
        panel = regularize(
            prices.iloc[rows] if len(groups.rows) > 1 else prices, freq, end=data.until
        )
        if max_history:
            panel = panel.groupby("unique_id", sort=False).tail(max_history)
        panels.append(panel.reset_index(drop=True))
    last = max(p["ds"].max() for p in panels)
    if data.drivers is not None and len(data.drivers):
        # whole series in each group: one product's rate needs its rows only
        log = change_of_log(spec, prices["y"])
        rates = [pass_through(p, spec, data.drivers, data.categories, last, log) for p in panels]
        found = [r for r in rates if r is not None]
        data = dataclasses.replace(data, pass_rates=pd.concat(found) if found else None)
    frame = panels[0] if len(panels) == 1 else pd.concat(panels, ignore_index=True)
    exog: list[str] = []
    if not with_exog:  # the caller computes them for runs of series (``SeriesExog``)
        return frame, spec, exog, data
    matrix: np.ndarray | None = None
    at = 0
    for i, panel in enumerate(panels):
        sales = data.sales
        if sales_groups is not None and sales is not None:
            sales = sales.iloc[sales_groups.rows[i]]
        feats = driver_features(
            panel, spec, data.drivers, data.categories, sales, last, pass_rates=data.pass_rates
        )
        if matrix is None:
            exog = [c for c in feats.columns if c not in ("unique_id", "ds")]
            if not exog:
                break
            matrix = np.empty((len(exog), len(frame)))
        # driver_features keeps the row order of its keys: no join needed
        for j, col in enumerate(exog):
            matrix[j, at : at + len(panel)] = (
                feats[col].to_numpy(dtype=float) if col in feats else np.nan
            )
        at += len(panel)
        panels[i] = None  # each group's panel freed once used
    for j, col in enumerate(exog):
        frame[col] = matrix[j]  # type: ignore[index]
    return frame, spec, exog, data


@dataclass(frozen=True)
class _Groups:
    """Row positions of groups of whole series, in the order of their sorted ids."""

    rows: list[np.ndarray | slice]
    group_of: dict[Any, int]


def _series_groups(ids: pd.Series, max_rows: int, like: _Groups | None = None) -> _Groups:
    """Groups of series of about ``max_rows`` rows (or the groups of ``like`` by id)."""
    codes, uniques = pd.factorize(ids, sort=True)
    if like is None:
        sizes = np.bincount(codes, minlength=len(uniques))
        per = np.cumsum(sizes) // max(max_rows, 1)  # group of each series, by position
        group_of_code = np.unique(per, return_inverse=True)[1].astype(np.int64)
        group_of = dict(zip(uniques, group_of_code.tolist(), strict=True))
    else:
        group_of = like.group_of
        group_of_code = np.array([group_of.get(u, -1) for u in uniques], dtype=np.int64)
    n_groups = (max(group_of.values()) + 1) if group_of else 1
    if n_groups <= 1:
        return _Groups([slice(None)], group_of)
    order, bounds = _rows_by_key(group_of_code[codes], n_groups)
    return _Groups([order[a:b] for a, b in itertools.pairwise(bounds)], group_of)


def _rows_by_key(key: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ordered by ``key`` (0..n_keys-1; -1: none) and where each key's rows
    start in that order: the rows of keys ``a`` to ``b`` are ``order[bounds[a]:bounds[b]]``."""
    known = np.flatnonzero(key >= 0)
    order = known[np.argsort(key[known], kind="stable")]
    return order, np.searchsorted(key[order], np.arange(n_keys + 1))


def min_history(spec: FreqSpec, horizon: int) -> int:
    """Periods a product needs to be trained on: the features' look-back and three horizons."""
    return spec.history_needed + 3 * horizon + 10


WEEKLY_BACKTEST_WEEKS = 208  # weekly prices are judged on at least four years of windows
COARSE_BACKTEST_PERIODS = 96  # ... and coarse ones on at least this many periods (monthly: 8 years)


def _backtest_windows(lengths: pd.Series, spec: FreqSpec, horizon: int, wanted: int) -> int:
    """As many backtest windows as the typical series allows (at least 2, at most ``wanted``,
    and for weekly prices at least four years of them: few periods, cheap, and a year or two
    of weekly windows of correlated series is too few market turns to judge a model on; the
    backtest refits every ``STALE_WEEKS``), keeping the features' look-back plus a season of
    training rows before them. Retail fuel with spot drivers, 4 x 24: with two years of windows
    the trust gate turned the model off in the 2017-2018 folds (MASE/naive 0.900, advice
    -0.01%); with four, 0.849 and +0.40% (31% of the oracle), the backtest 6 -> 11 minutes.
    Four years of months are 48 periods: monthly retail fuel (the weekly file's monthly means,
    3 x 12) trusted the model in the five folds after the 2014-2015 fall and lost 0.55% waiting
    for prices that rose (MASE/naive 1.067); judged on eight years, it stays at the last price
    (1.000, advice 0), the monthly spot and oil files unchanged, the backtest 67 -> 175 s."""
    usable = int(lengths.median()) - spec.history_needed - max(spec.season, 2 * horizon)
    if is_coarse(spec.freq):
        periods = max(WEEKLY_BACKTEST_WEEKS * 7 / period_days(spec.freq), COARSE_BACKTEST_PERIODS)
        wanted = max(wanted, -(-int(periods) // horizon))
    return int(np.clip(usable // horizon, 2, wanted))


def fit_price_model(
    data: TrainingData,
    freq: str,
    horizon: int,
    params: ModelParams | None = None,
    progress: Progress | None = None,
) -> PriceModel:
    """Fit one global LightGBM model over all series in ``data`` and calibrate it.

    A rolling-origin backtest over the last windows of ``horizon`` periods (mlforecast
    ``cross_validation``) gives out-of-sample errors. From them, per product: how far to trust the
    model over the last price; per pool of products: the interval widths and the distribution of
    the forecast change's error (the buy-day probability); for the company: the advice
    thresholds that would have saved the most. They are stored with the model, with the metrics.
    """
    params = params or ModelParams()
    say = progress or (lambda f, m: None)
    say(0.05, "building features")
    lazy = len(data.prices) > LAZY_EXOG_ROWS
    frame, spec, exog, data = prepare(data, freq, params.max_history, with_exog=not lazy)
    last_known = frame["ds"].max()
    lengths = frame.groupby("unique_id").size()
    min_len = min_history(spec, horizon)
    short = lengths[lengths < min_len]
    if len(short) == len(lengths):
        raise ValueError(f"every series is shorter than {min_len} periods; need more history")
    if len(short):
        frame = frame[~frame["unique_id"].isin(short.index)].reset_index(drop=True)
        lengths = lengths.drop(short.index)
    n_windows = _backtest_windows(lengths, spec, horizon, params.conformal_windows)
    # the flag of filled rows leaves the table in place (a copy without it was the size of the
    # whole table); from here ``frame`` is what the models see: prices and drivers
    observed = frame.pop("observed")
    last_seen = newest_prices(frame, observed)
    train = frame
    source = SeriesExog(train, spec, data, last_known) if lazy else None
    if source is not None:
        exog = source.exog
    params = params.for_rows(len(train))
    say(0.15, f"backtesting on the last {n_windows} x {horizon} periods")
    ids = frame["unique_id"].unique()
    if len(ids) > params.backtest_series:
        # pooled calibration needs many errors, not every product: a random sample is enough
        rng = np.random.default_rng(params.seed)
        ids = rng.choice(ids, params.backtest_series, replace=False)
        mask = train["unique_id"].isin(ids).to_numpy()
        cv_train = train[mask]
    else:
        mask = np.ones(len(train), dtype=bool)
        cv_train = train
    if source is not None:
        cv_train = source.attach(cv_train)
    cv_frame = train.loc[mask, ["unique_id", "ds", "y"]].assign(observed=observed.to_numpy()[mask])
    # the level model works on log prices: only where every price is positive
    positive = bool((train["y"] > 0).all())
    log = change_of_log(spec, train["y"])
    backtests: dict[str, Callable[[], pd.DataFrame]] = {
        "change": lambda: _cross_validation(
            lambda: make_forecaster(spec, params, log),
            cv_train,
            spec,
            data,
            exog,
            n_windows,
            horizon,
        )
    }
    if positive:
        # on the price alone: with the drivers as well it cost +77% CPU time to fit at 10,000
        # products (the drivers reach the forecast through the change model)
        backtests["level"] = lambda: _cross_validation(
            lambda: make_level_forecaster(spec, params),
            price_only(cv_train),
            spec,
            data,
            [],
            n_windows,
            horizon,
        )
    done = side_by_side(backtests)
    cv = done["change"].rename(columns={"lgbm": "change"})
    if positive:
        level_cv = done["level"]
        cv = cv.merge(
            level_cv[["unique_id", "ds", "cutoff", "lgbm"]].rename(columns={"lgbm": "level"}),
            on=["unique_id", "ds", "cutoff"],
            how="left",
        )
    ratio = variance_ratio(frame, horizon)  # the trust groups', the hold's and the calendars'
    moving = drifting(ratio)  # no promotion calendar
    held, hold_after = frozenset[str](), 0
    if data.drivers is not None and len(data.drivers) and max(spec.driver_lags) < horizon:
        hold_after = max(spec.driver_lags)
        held = random_walks(ratio)
        cv = hold_beyond(cv, ["unique_id", "cutoff"], ["change", "level"], held, hold_after)
    cv = cv.merge(cv_frame[["unique_id", "ds", "observed"]], on=["unique_id", "ds"], how="left")
    cv = add_naive(cv, cv_frame)
    categories = pd.Series(data.categories or {}, dtype=object)
    groups = trust_groups(frame, horizon, categories, ratio=ratio)
    trust, trust_default, held_out = choose_blend(cv, cv_frame, groups)
    # each backtest window is forecast with the blend chosen without it: what calibrates the
    # intervals, the stated probabilities and the policy must not have picked the blend
    cv = cv.merge(held_out, on=["unique_id", "cutoff"], how="left")
    w = cv[["w_change", "w_level"]].to_numpy(float)
    default = np.array(trust_default, dtype=float)
    w = np.where(np.isnan(w), default, w)
    cv["lgbm"] = cv["naive"] + w[:, 0] * (cv["change"] - cv["naive"])
    if positive:
        cv["lgbm"] += w[:, 1] * (cv["level"].fillna(cv["naive"]) - cv["naive"])
    cv["pool"] = w.sum(axis=1) > 0
    calendars: dict[str, bool] = {}
    calendar_default = False
    backtested_calendars = 0  # products with a calendar in some backtest window
    if spec.freq in ("D", "B"):  # series with a price at or below zero have no calendar
        say(0.4, "promotion calendars")
        cuts = sorted(cv["cutoff"].unique())
        promo_cv = calendar_paths(cv_frame, horizon, spec.season, cuts, spec.freq)
        promo_cv = promo_cv[~promo_cv["unique_id"].isin(list(moving))]
        backtested_calendars = int(promo_cv["unique_id"].nunique())
        if len(promo_cv):
            step = (
                cv.sort_values(["unique_id", "cutoff", "ds"])
                .groupby(["unique_id", "cutoff"], sort=False)["ds"]
                .cumcount()
                + 1
            )
            cv = cv.assign(step=step).merge(
                promo_cv[["unique_id", "cutoff", "step", "promo", "p_promo"]],
                on=["unique_id", "cutoff", "step"],
                how="left",
            )
            calendars, calendar_default, held_cal = choose_calendars(cv)
            cv = cv.merge(held_cal, on=["unique_id", "cutoff"], how="left")
            use = cv["use"].astype("boolean").fillna(calendar_default).to_numpy(bool)
            promo = np.where(use, cv["promo"].to_numpy(float), np.nan)
            cv["lgbm"] = mix(cv["lgbm"].to_numpy(float), promo)
            cv["pool"] = cv["pool"] | np.isfinite(promo)
            cv["p_promo"] = np.where(use, cv["p_promo"].to_numpy(float), np.nan)
            cv = cv.drop(columns=["step", "promo", "use"])
    say(0.45, "calibrating intervals and advice")
    calib = Calibration.from_backtest(
        cv,
        cv_frame,
        horizon,
        spec.vol_window,
        all_frame=frame,
        all_observed=observed.to_numpy(bool),
        departures=spec.freq in ("D", "B"),
    )
    replayed = calib.replay(cv, cv_frame)
    seen = replayed["y"].notna()
    inside = replayed["y"].between(replayed["lo_80"], replayed["hi_80"])
    coverage_80 = float(inside[seen].mean()) if seen.any() else None
    model_pool = calib.pools.get("model")
    policy, policy_table = choose_policies(
        replayed, kinds_of(groups), model_pool.evidence if model_pool else 0.0
    )
    record = advice_record(replayed, policy).set_index("sku")
    metrics = backtest_metrics(cv, cv_frame, spec.season)
    metrics["backtest_windows"] = n_windows
    # weekly quotes in a daily catalog: forecast and advised as daily prices, which the buyer
    # must be told (the Model page, ``procurement train``)
    sparse = sparse_series(frame["unique_id"], observed.to_numpy(), spec.freq)
    metrics["sparse_series"] = {"products": len(sparse), "skus": sparse[:20], "days": SPARSE_STEP}
    metrics["calendars_backtested"] = backtested_calendars
    metrics["coverage_80"] = coverage_80  # in-sample for the interval calibration
    metrics["shrink_to_naive"] = float(np.mean(cv["pool"])) if len(cv) else 0.0
    metrics["trusted_products"] = int(
        sum(sum(v) > 0 for k, v in trust.items() if not k.startswith("group:"))
    )
    # the products whose price moves like a random walk (``trust_groups``), and how many of them
    # follow a model, on their own windows or their group's (the rest stay at the last price)
    backtested_drifting = [
        k
        for k in trust
        if not k.startswith("group:") and str(groups.get(k, "")).endswith("|drifts")
    ]
    metrics["drifting_products"] = len(backtested_drifting)
    metrics["held_after_drivers"] = {"products": len(held), "after": hold_after}
    metrics["drifting_trusted"] = int(sum(sum(trust[k]) > 0 for k in backtested_drifting))
    metrics["blends"] = {
        f"change {b[0]:g} + level {b[1]:g}": int(
            sum(v == b for k, v in trust.items() if not k.startswith("group:"))
        )
        for b in {*trust.values(), NAIVE}
    }
    metrics["policy"] = policy_summary(policy)
    metrics["policy_backtest"] = policy_table
    needs_level = any(v[1] > 0 for v in trust.values()) or trust_default[1] > 0
    checked = params.samples(len(train))
    if checked:
        # both sampled fits see the same series and dates: check them for gaps and duplicates
        # once, not once per model (2 s of CPU each at 10,000 products x 730 days)
        make_forecaster(spec, params, log)._validate_data(train, "unique_id", "ds")
    fits: dict[str, Callable[[], MLForecast]] = {
        "change": lambda: _fit_sampled(
            make_forecaster(spec, params, log), train, spec, params, exog=source, checked=checked
        )
    }
    if positive and needs_level:
        fits["level"] = lambda: _fit_sampled(
            make_level_forecaster(spec, params), price_only(train), spec, params, checked=checked
        )
    say(0.5, f"training LightGBM: {' and '.join(fits)} models on {len(train):,} rows")
    # side by side up to a catalog of some 25,000 products x 730 days; above it one after the
    # other, since the two fits' passes over every row would then add up to more memory than
    # the table itself (50,000 products: 8.7 GB side by side)
    fitted = side_by_side(fits) if len(train) <= SIDE_BY_SIDE_ROWS else in_turn(fits)
    fcst, level_fcst = fitted["change"], fitted.get("level")
    say(0.9, "model trained")
    last_date = frame["ds"].max()
    tail_start = last_date - pd.tseries.frequencies.to_offset(spec.freq) * (
        max(spec.windows) + max(spec.driver_lags) + 5
    )
    drivers_tail = None
    if data.drivers is not None and len(data.drivers):
        drivers_tail = data.drivers[data.drivers["ds"] >= tail_start - pd.Timedelta(days=31)].copy()
    sales_tail = None
    if data.sales is not None and len(data.sales):
        sales_tail = data.sales[data.sales["ds"] >= tail_start].copy()
    last_price = frame.groupby("unique_id", sort=True)["y"].last()
    promotions, promotion_info, promotion_odds = None, None, None
    if any(calendars.values()) or calendar_default:
        say(0.91, "promotion calendars of every product")
        # the products the backtest did not judge take the default, except those drifting
        choice = {**dict.fromkeys(moving, False), **calendars}
        promotions, promotion_info, promotion_odds = calendars_ahead(
            frame, spec, horizon, choice, calendar_default
        )
        metrics["promotion_calendars"] = len(promotions)
    # which products take their calendar, as judged on the backtest (the Dask path reads it to
    # give every product of the catalog its own, beyond the backtest's sample)
    metrics["promotion_choice"] = {
        "default": calendar_default,
        "declined": sorted(k for k, v in calendars.items() if not v),
    }
    # products outside the backtest sample take their group's trust, else the company's
    full_trust = {
        uid: tuple(trust.get(uid, trust.get(f"group:{groups.get(uid, '')}", trust_default)))
        for uid in last_price.index
    }
    return PriceModel(
        fcst=fcst,
        spec=spec,
        horizon=horizon,
        last_date=last_date,
        features=list(fcst.ts.features_order_),
        exog=exog,
        drivers_tail=drivers_tail,
        sales_tail=sales_tail,
        categories=dict(data.categories or {}),
        last_price={k: float(v) for k, v in last_price.items()},
        last_seen=last_seen,
        calibration=calib,
        metrics=metrics,
        trust=cast(dict[str, tuple[float, float]], full_trust),
        trust_default=trust_default,
        policy=policy,
        level_fcst=level_fcst,
        record=record,
        promotions=promotions,
        promotions_from=last_date,
        promotion_info=promotion_info,
        promotion_odds=promotion_odds,
        held=held,
        pass_rates=data.pass_rates,
        held_after=hold_after,
        too_short=frozenset(str(k) for k in short.index),
        min_periods=min_len,
    )


def hold_beyond(
    fc: pd.DataFrame,
    keys: list[str],
    cols: list[str],
    held: frozenset[str],
    after: int,
    without: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The forecasts ``cols`` of the ``held`` products, rows sorted by date within ``keys``
    (product first), held from period ``after`` on at their value there. ``without``: the same
    forecasts without a what-if on the drivers (same rows); then the held path is theirs, plus
    what the what-if changes.

    A random walk's next moves are unknown except where its drivers already moved: a supplier's
    price list follows the market index with a delay, so the index's last days tell its next
    ones. Beyond the longest driver lag the model knows nothing more, and the moves it
    forecasts there came from other products' patterns. On the synthetic catalog the
    commodities' mean absolute error (relative to the last price) went from 0.733 to 0.722
    when held after the week their index passes through in."""
    if not held or after < 1 or not len(fc):
        return fc
    step = fc.groupby(keys, sort=False).cumcount().to_numpy() + 1
    mask = fc[keys[0]].isin(held).to_numpy() & (step > after)
    if not mask.any():
        return fc
    groups = [fc[k] for k in keys]
    base = fc if without is None else without
    out = fc.copy()
    for col in cols:
        if col not in fc:
            continue
        anchor = base[col].where(step == after).groupby(groups, sort=False).transform("first")
        held_path = anchor.to_numpy() + (fc[col].to_numpy() - base[col].to_numpy())
        out[col] = np.where(mask & anchor.notna().to_numpy(), held_path, fc[col])
    return out


def calendars_ahead(
    frame: pd.DataFrame,
    spec: FreqSpec,
    horizon: int,
    choice: Mapping[str, bool],
    default: bool,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Each product's calendar prices for twice the horizon after its last date, and what the
    pages say about it, where the product takes its calendar (``choice``, else ``default``).
    Only products whose history reaches the last date of ``frame`` (sorted by product, date)."""
    ahead = calendar_paths(frame, 2 * horizon, spec.season, freq=spec.freq)
    ahead = ahead[ahead["cutoff"] == frame["ds"].max()]
    takes = ahead["unique_id"].map(choice).astype("boolean").fillna(default)
    ahead = ahead[takes.to_numpy(bool)]
    # whole products of 2 x horizon rows each, in step order: arrays of products x steps
    steps = 2 * horizon
    uid = ahead["unique_id"].to_numpy()[::steps]

    def grid(col: str) -> np.ndarray:
        return ahead[col].to_numpy().reshape(len(uid), steps)

    promo, chance = grid("promo").astype(float), grid("chance").astype(float)
    first = {c: grid(c)[:, 0] for c in ("cycle", "length", "depth", "running", "since")}
    # the first day a promotion is about as likely as it gets: a four-day promotion's chance
    # plateaus, and its peak may sit on the third day, after the advised buy day
    due = (chance >= 0.9 * chance.max(axis=1, keepdims=True)).argmax(axis=1)
    promotions = {str(u): promo[i] for i, u in enumerate(uid)}
    odds_grid = np.stack([grid(c).astype(float) for c in ODDS], axis=1)  # products x rows x steps
    odds = {str(u): odds_grid[i] for i, u in enumerate(uid)}
    info: dict[str, dict[str, float]] = {
        str(u): {
            "cycle": float(first["cycle"][i]),
            "length": int(first["length"][i]),
            "depth": float(first["depth"][i]),
            "due_step": int(due[i]) + 1,
            "due_chance": float(chance[i, due[i]]),
            "running": bool(first["running"][i]),
            "since": int(first["since"][i]),
        }
        for i, u in enumerate(uid)
    }
    return promotions, info, odds


def price_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The id, date and price columns of ``frame`` as a view (``frame[[...]]`` copies them:
    0.9 GB on 50,000 products x 730 days)."""
    return pd.DataFrame({c: frame[c] for c in ("unique_id", "ds", "y")}, copy=False)


SIDE_BY_SIDE_ROWS = 20_000_000


def in_turn(jobs: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    return {k: job() for k, job in jobs.items()}


def side_by_side(jobs: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run independent fits at the same time. Each alternates Python (features, pandas) with
    LightGBM, which releases the GIL: one fit's trees grow while the other builds its features
    (10,000 products: both final fits 66 -> 46 s, +1.1 GB). The models do not share state and
    LightGBM is deterministic, so the results are those of running them one after the other."""
    if len(jobs) < 2:
        return in_turn(jobs)
    with ThreadPoolExecutor(len(jobs), thread_name_prefix="fit") as pool:
        futures = {k: pool.submit(job) for k, job in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


STALE_WEEKS = 16  # a backtest model forecasts at most this far past the data it was fitted on


def _cross_validation(
    make: Callable[[], MLForecast],
    train: pd.DataFrame,
    spec: FreqSpec,
    data: TrainingData,
    exog: list[str],
    n_windows: int,
    horizon: int,
) -> pd.DataFrame:
    """mlforecast ``cross_validation`` over the last ``n_windows`` windows, refitted every
    ``STALE_WEEKS`` (a year of weekly windows forecast by a model fitted before the first one
    judged a model a year out of date, not the one the buyer gets), with the drivers of each
    window as known at its cutoff. Each block of windows is its own ``cross_validation``, so
    the rows a block is fitted on keep their drivers' actual values."""
    days = period_days(spec.freq)
    per_fit = int(np.clip(STALE_WEEKS * 7 / days // horizon, 1, n_windows))
    back = _periods_before_end(train, spec)
    parts = []
    for end in range(0, n_windows, per_fit):  # windows counted back from the last one
        k = min(per_fit, n_windows - end)
        part = train[back >= end * horizon]
        if exog:
            part = _drivers_as_of_cutoffs(part, spec, data, exog, k, horizon)
        cv = make().cross_validation(part, n_windows=k, h=horizon, refit=False, static_features=[])
        parts.append(cv)
    out = pd.concat(parts[::-1], ignore_index=True)
    return out.sort_values(["unique_id", "cutoff", "ds"], ignore_index=True)


def _periods_before_end(train: pd.DataFrame, spec: FreqSpec) -> pd.Series:
    """Periods between each row and its series' last row."""
    last = train.groupby("unique_id", sort=False)["ds"].transform("max")
    return pd.Series(periods_between(train["ds"], last, spec.freq), index=train.index)


def _drivers_as_of_cutoffs(
    train: pd.DataFrame,
    spec: FreqSpec,
    data: TrainingData,
    exog: list[str],
    n_windows: int,
    horizon: int,
) -> pd.DataFrame:
    """The backtest's driver features as they were known at each window's cutoff.

    mlforecast's ``cross_validation`` takes the exogenous columns of a window's rows from the
    data, i.e. the drivers' actual moves during the window; at prediction time those moves are
    unknown (the drivers stay at their last value, ``PriceModel.future_exog``). Scoring the
    backtest with the actual moves flattered every model that follows its drivers beyond the
    first step: trust, interval widths and advice thresholds were learned on forecasts no
    buyer could have had. Each window's rows get the features computed with the cutoff as the
    last known day, exactly as a forecast made on that day sees them."""
    # periods before each series' last date: windows are the last n_windows x horizon
    back = _periods_before_end(train, spec)
    window = (back // horizon).astype(int)
    inside = window < n_windows
    if not inside.any():
        return train
    out = train.copy()
    rows = out[inside]
    # the cutoff is this many periods before the row
    k = ((window[inside] + 1) * horizon - back[inside]).to_numpy().astype(int)
    ds = rows["ds"].to_numpy().astype("datetime64[D]")
    if spec.freq == "B":
        cutoff = np.busday_offset(ds, -k, roll="backward")
    elif spec.freq in MONTHLY:
        months = pd.PeriodIndex(pd.DatetimeIndex(ds), freq="M") - k
        cutoff = month_dates(months, spec.freq).to_numpy().astype("datetime64[D]")
    else:
        cutoff = ds - k * (7 if spec.freq.startswith("W") else 1)
    # one driver_features call per cutoff, then one assignment per column by position
    where = np.flatnonzero(inside.to_numpy())
    cuts = pd.DatetimeIndex(cutoff)
    values = {col: out[col].to_numpy(dtype=float, copy=True) for col in exog}
    sales = data.sales
    if sales is not None:
        # the backtest's sample of series only: each cutoff's demand matrix was built over
        # every product's sales (10,000 products: 8 x 7.3M rows, 22 s of the retrain)
        sales = sales[sales["unique_id"].isin(rows["unique_id"].unique())]
    for c in cuts.unique():
        pos = where[cuts == c]
        keys = out.iloc[pos][["unique_id", "ds"]]
        x = driver_features(
            keys, spec, data.drivers, data.categories, sales, c, pass_rates=data.pass_rates
        )
        for col in exog:
            values[col][pos] = x[col].to_numpy() if col in x else np.nan
    for col in exog:
        out[col] = values[col]
    return out


def history_to_keep(fcst: MLForecast, spec: FreqSpec) -> int:
    """Periods of each series a fitted forecaster keeps: every feature's look-back."""
    return history_kept(fcst.ts.transforms, spec.history_needed + 1)


LAZY_EXOG_ROWS = 1_200_000  # above this many price rows, drivers are computed per run of series


class SeriesExog:
    """The exogenous columns (drivers, demand) of runs of whole series of ``panel``, computed
    when a run is turned into features: a large catalog's table is never held whole with them
    (50,000 products x 730 days: 36.5M rows x 10 columns, 2.9 GB). Each run's columns are those
    of the whole table: the drivers are per date, the demand per product, both up to ``last``."""

    def __init__(self, panel: pd.DataFrame, spec: FreqSpec, data: TrainingData, last: Any):
        self.panel, self.spec, self.data, self.last = panel, spec, data, last
        ids = panel["unique_id"].to_numpy()
        self.starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else ids[:0]
        self.sales_order: np.ndarray | None = None
        self.sales_bounds: np.ndarray | None = None
        if data.sales is not None:
            # the sales rows of each series, by position: a run's are one slice of this order
            pos = pd.Index(ids[self.starts]).get_indexer(data.sales["unique_id"])
            self.sales_order, self.sales_bounds = _rows_by_key(pos, len(self.starts))
        first = self._columns(panel.iloc[:1], self._sales_of(0, min(1, len(self.starts))))
        self.exog = [c for c in first.columns if c not in ("unique_id", "ds")]

    def _sales_of(self, s0: int, s1: int) -> pd.DataFrame | None:
        if self.data.sales is None or self.sales_order is None or self.sales_bounds is None:
            return None
        rows = self.sales_order[self.sales_bounds[s0] : self.sales_bounds[s1]]
        return self.data.sales.iloc[rows]

    def _columns(self, keys: pd.DataFrame, sales: pd.DataFrame | None) -> pd.DataFrame:
        d = self.data
        return driver_features(
            keys, self.spec, d.drivers, d.categories, sales, self.last, pass_rates=d.pass_rates
        )

    def _with(self, keys: pd.DataFrame, sales: pd.DataFrame | None) -> pd.DataFrame:
        feats = self._columns(keys, sales)
        out = keys[["unique_id", "ds", "y"]].copy()
        for col in self.exog:  # driver_features keeps the row order of its keys
            out[col] = feats[col].to_numpy() if col in feats else np.nan
        return out

    def rows(self, a: int, b: int) -> pd.DataFrame:
        """Rows ``a:b`` of the panel (on series boundaries) with their exogenous columns."""
        s0, s1 = (int(x) for x in np.searchsorted(self.starts, [a, b]))
        return self._with(self.panel.iloc[a:b], self._sales_of(s0, s1))

    def attach(self, keys: pd.DataFrame) -> pd.DataFrame:
        """Any rows of the panel (whole series, as a backtest sample) with their columns."""
        sales = self.data.sales
        if sales is not None:
            sales = sales[sales["unique_id"].isin(keys["unique_id"].unique())]
        return self._with(keys, sales)


class _SampleRows:
    """Makes ``fcst.preprocess`` return only a random share ``frac`` of its feature rows (the
    same rows, drawn the same way, as sampling its whole output), so the other rows are never
    copied into the table: mlforecast drops rows with a missing feature before it assembles
    the table, and this marks the rows left out as missing in one extra feature. Each series'
    last row is kept too (mlforecast warns of series it drops whole); ``sampled`` tells the
    returned rows that are in the sample. The lag transforms still run over every row, as they
    must. Level model at 10,000 products: the table's assembly was 3.6 s of its 7.8 s."""

    def __init__(self, fcst: MLForecast, frac: float, rng: np.random.Generator) -> None:
        self.ts, self.frac, self.rng = fcst.ts, frac, rng
        self.compute = self.ts._compute_transforms
        self.sampled = np.zeros(0, dtype=bool)
        self.ts._compute_transforms = self  # type: ignore[method-assign]  # this copy only

    def __call__(self, transforms: Any, updates_only: bool) -> dict[str, np.ndarray]:
        feats = self.compute(transforms=transforms, updates_only=updates_only)
        if getattr(self.ts, "_restore_idxs", None) is not None:
            raise ValueError("rows to sample must be sorted by series and date")
        # the rows ``preprocess`` keeps: a known target (after its transforms) and every feature
        missing = np.isnan(self.ts.ga.data)
        for v in feats.values():
            missing |= np.isnan(v)
        valid = np.flatnonzero(~missing)
        take = valid[np.sort(self.rng.choice(len(valid), round(self.frac * len(valid)), False))]
        last = self.ts.ga.indptr[1:] - 1
        rows = np.union1d(take, last[~missing[last]])
        mark = np.full(len(missing), np.nan)
        mark[rows] = 0.0
        feats["_sampled"] = mark  # not a transform: no column is made of it
        self.sampled = np.isin(rows, take, assume_unique=True)
        return feats


SAMPLE_CHUNK_ROWS = 1_000_000  # rows of history turned into features at a time when sampling


def _fit_sampled(
    fcst: MLForecast,
    train: pd.DataFrame,
    spec: FreqSpec,
    params: ModelParams,
    exog: SeriesExog | None = None,
    checked: bool = False,
) -> MLForecast:
    """Fit on a random sample of at most ``max_train_rows`` feature rows: rows of a global
    model are highly redundant, and a sample trains as well, faster. ``checked``: the caller
    has checked ``train``'s series for gaps and duplicates (mlforecast's ``validate_df``).

    Above that size the feature table is never built whole: groups of series are turned into
    features one at a time (every transform is per series, so a group's features are those
    of the whole table) and sampled, and the forecaster's prediction state (each series' tail,
    its target scaling, the running statistics of its lag transforms) comes from one pass over
    the history without the feature columns. 10,000 products x 730 days built a 7.3M-row table
    of 70 columns for the level model (10.1 GB peak) to keep 1.2M rows of it (800k now)."""
    keep = history_to_keep(fcst, spec)
    if not params.samples(len(train)):
        whole = exog.attach(train) if exog is not None else train
        feats = cast(pd.DataFrame, fcst.preprocess(whole, static_features=[], keep_last_n=keep))
        fcst.fit_models(feats[fcst.ts.features_order_], feats["y"].to_numpy())
        return fcst
    if not train["unique_id"].is_monotonic_increasing:
        if exog is not None:
            raise ValueError("series with exogenous columns computed per run must be sorted")
        train = train.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    frac = params.max_train_rows / len(train)
    starts = np.flatnonzero(train["unique_id"].ne(train["unique_id"].shift()).to_numpy())
    per_chunk = max(1, SAMPLE_CHUNK_ROWS * len(starts) // len(train))  # series per group
    bounds = [*starts[::per_chunk], len(train)]
    parts = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        local = copy.deepcopy(fcst)
        chunk = exog.rows(a, b) if exog is not None else train.iloc[a:b]
        sample = _SampleRows(local, frac, np.random.default_rng(params.seed + i))
        part = local.preprocess(chunk, static_features=[], keep_last_n=keep, validate_data=False)
        del chunk
        parts.append(
            pd.DataFrame(
                {c: np.asarray(part[c])[sample.sampled] for c in [*local.ts.features_order_, "y"]},
                copy=False,
            )
        )
        del part
    feats = pd.concat(parts, ignore_index=True)
    del parts
    _fit_state(fcst, train, keep, validate=not checked)
    # the state came from the prices alone; the features are the groups' (drivers first)
    fcst.ts.features_order_ = list(local.ts.features_order_)
    y = feats.pop("y").to_numpy()  # the rest is the feature matrix itself, not another copy
    fcst.fit_models(feats, y)
    return fcst


def _fit_state(fcst: MLForecast, train: pd.DataFrame, keep: int, validate: bool = True) -> None:
    """What ``preprocess`` leaves for prediction, without its feature table: mlforecast's
    ``TimeSeries._fit`` (series, target transforms), the stateful lag transforms run over the
    whole history (an exponential mean carries its last value; a lag is read from the tail),
    then the tail kept. Mirrors ``TimeSeries._transform`` of mlforecast 1.1; the test
    ``test_sampled_fit_predicts_as_a_full_preprocess_would`` pins it."""
    ts = fcst.ts
    if validate:
        fcst._validate_data(train, "unique_id", "ds")
    ts.horizon_features_ = {}
    ts.dropna, ts.as_numpy = True, False
    ts._fit(train, "unique_id", "ds", "y", static_features=[], keep_last_n=keep)
    ts._horizons, ts.max_horizon = None, None
    stateful = {k: v for k, v in ts.transforms.items() if not keeps_no_state(v)}
    if stateful:
        ts._compute_transforms(transforms=stateful, updates_only=False)
    ts._dropped_series = None
    ts.ga = ts.ga.take_from_groups(slice(-keep, None))
    ts._trim_pooled_states()
    del ts._restore_idxs, ts._sort_idxs


def describe_params(params: ModelParams, fcst: MLForecast | None = None) -> dict[str, Any]:
    """The parameters, with the LightGBM settings the fitted change model really used (a
    sampled fit trains fewer trees at a higher rate than ``params`` says)."""
    fitted = getattr(fcst, "models_", {}).get("lgbm") if fcst is not None else None
    return {**params.__dict__, "lgbm": (fitted or params.lgbm()).get_params()}
