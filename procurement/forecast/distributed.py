"""The price model past one machine: the same features and LightGBM, trained on a Dask cluster.

``fit_distributed`` splits the training frame by product into partitions (in memory, or as one
Parquet file per partition that the workers read themselves), computes the features on the
workers (mlforecast's ``DistributedMLForecast``) and trains LightGBM across them
(``lightgbm.dask`` through ``DaskLGBMForecast``), for the change model and the level model.

The calibration backtest is not distributed: it already runs on a sample of products
(``ModelParams.backtest_series``), so it is fitted on one machine with ``fit_price_model`` on that
sample; trust per product, intervals, stated probabilities and the advice policy come from it,
exactly as on one machine. Products outside the sample take their category's most frequent
blend among the sampled products, else the company's (on one machine they take their category's
pooled blend, which ``PriceModel`` does not keep).

``DistributedPriceModel.predict`` forecasts on the cluster and returns what
``PriceModel.predict`` returns (sku, date, y_pred, lo/hi 80 and 95, p_cheaper...), through the
same blending and calibration code; ``to_local`` gives a ``PriceModel`` (the series' state is
pulled to this machine) that the model store saves like any other.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlforecast import MLForecast

from procurement.forecast.calibration import (
    drifting,
    random_walks,
    trust_groups,
    variance_ratio,
)
from procurement.forecast.model import (
    ModelParams,
    PriceModel,
    TrainingData,
    calendars_ahead,
    change_of_log,
    fit_price_model,
    history_to_keep,
    make_forecaster,
    make_level_forecaster,
    min_history,
    newest_prices,
    prepare,
)
from procurement.recommend import kinds_of

if TYPE_CHECKING:
    from dask.distributed import Client
    from mlforecast.distributed import DistributedMLForecast

Progress = Callable[[float, str], None]


def split_by_series(frame: pd.DataFrame, n_partitions: int) -> list[pd.DataFrame]:
    """``frame`` cut into at most ``n_partitions`` frames, each holding whole series (sorted)."""
    ids = np.sort(frame["unique_id"].unique())
    groups = [g for g in np.array_split(ids, max(1, min(n_partitions, len(ids)))) if len(g)]
    frame = frame.sort_values(["unique_id", "ds"], ignore_index=True)
    # ids are sorted, so each group is one contiguous block of rows
    bounds = np.searchsorted(frame["unique_id"].to_numpy(), [g[0] for g in groups])
    ends = [*bounds[1:], len(frame)]
    return [frame.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds, ends, strict=True)]


def export_parquet(frame: pd.DataFrame, folder: Path, n_partitions: int) -> list[Path]:
    """Write ``frame`` as one Parquet file per partition of whole series; returns the files.

    Workers read the files themselves (``read_partitions``): ``folder`` must be a path they see
    (a shared volume, or an fsspec URL such as ``s3://``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, part in enumerate(split_by_series(frame, n_partitions)):
        path = folder / f"part-{i:05d}.parquet"
        part.to_parquet(path, index=False)
        files.append(path)
    return files


def read_partitions(files: list[Path] | list[str]) -> Any:
    """A Dask data frame with one partition per file (never one series over two partitions)."""
    import dask.dataframe as dd

    return dd.from_map(pd.read_parquet, [str(f) for f in files])


def _in_memory(parts: list[pd.DataFrame]) -> Any:
    import dask.dataframe as dd

    return dd.from_map(_identity, parts)


def _identity(part: pd.DataFrame) -> pd.DataFrame:
    return part


def _distributed(local: MLForecast, params: ModelParams, client: Client, n_jobs: int) -> Any:
    """A ``DistributedMLForecast`` with exactly the local forecaster's features (same time series
    configuration, same feature names) and the same LightGBM settings, trained with
    ``lightgbm.dask`` on ``client``."""
    from mlforecast.distributed import DistributedMLForecast
    from mlforecast.distributed.models.dask.lgb import DaskLGBMForecast

    lgbm = params.lgbm().get_params()
    lgbm["n_jobs"] = n_jobs
    model = DaskLGBMForecast(client=client, **lgbm)
    dist = DistributedMLForecast(models={"lgbm": model}, freq=local.ts.freq, engine=client)
    # the local forecaster's TimeSeries carries lags, lag transforms (ours included), date
    # features and target transforms; copying it keeps the feature names of the local model
    dist._base_ts = copy.deepcopy(local.ts)
    return dist


class _OnCluster:
    """Looks like an ``MLForecast`` to ``PriceModel.predict``: forecasts on the cluster."""

    def __init__(self, dist: DistributedMLForecast) -> None:
        self.dist = dist

    def predict(
        self, h: int, X_df: pd.DataFrame | None = None, ids: list[str] | None = None
    ) -> pd.DataFrame:
        out = self.dist.predict(h, X_df=X_df, ids=ids)
        out = out.compute() if hasattr(out, "compute") else out
        out = out.astype({"unique_id": object})
        out["ds"] = pd.to_datetime(out["ds"]).astype("datetime64[ns]")
        return out.sort_values(["unique_id", "ds"], ignore_index=True)


@dataclasses.dataclass
class DistributedPriceModel:
    """A price model whose trees and series state live on a Dask cluster."""

    base: PriceModel  # calibration, trust, policy, drivers and last prices of every product
    fcst: DistributedMLForecast
    level_fcst: DistributedMLForecast | None
    n_rows: int  # feature rows LightGBM was trained on (all of them: no sampling)

    @property
    def products(self) -> list[str]:
        return self.base.products

    def _on_cluster(self) -> PriceModel:
        level = _OnCluster(self.level_fcst) if self.level_fcst is not None else None
        return dataclasses.replace(self.base, fcst=_OnCluster(self.fcst), level_fcst=level)  # type: ignore[arg-type]

    def predict(
        self,
        h: int | None = None,
        overrides: Mapping[str, float] | None = None,
        ids: list[str] | None = None,
    ) -> pd.DataFrame:
        """What ``PriceModel.predict`` returns, forecast on the cluster."""
        return self._on_cluster().predict(h, overrides, ids)

    def to_local(self) -> PriceModel:
        """A ``PriceModel`` for the model store: the series' state is pulled to this machine."""
        fcst = self.fcst.to_local()
        level = self.level_fcst.to_local() if self.level_fcst is not None else None
        return dataclasses.replace(
            self.base, fcst=fcst, level_fcst=level, features=list(fcst.ts.features_order_)
        )


def _sample_ids(frame: pd.DataFrame, params: ModelParams) -> np.ndarray:
    """The products ``fit_price_model`` would backtest on this frame (same draw)."""
    ids = frame["unique_id"].unique()
    if len(ids) > params.backtest_series:
        rng = np.random.default_rng(params.seed)
        ids = rng.choice(ids, params.backtest_series, replace=False)
    return np.asarray(ids)


def _subset(data: TrainingData, ids: np.ndarray) -> TrainingData:
    keep = set(ids.tolist())
    sales = data.sales
    if sales is not None:
        sales = sales[sales["unique_id"].isin(keep)]
    return dataclasses.replace(
        data, prices=data.prices[data.prices["unique_id"].isin(keep)], sales=sales
    )


def _trust_everywhere(
    sample_trust: Mapping[str, tuple[float, float]],
    default: tuple[float, float],
    products: list[str],
    groups: Mapping[str, str],
) -> dict[str, tuple[float, float]]:
    """Every product's trust: its own where the sample backtested it, else the most common
    among the sample's products of its group (``trust_groups``), else the company's."""
    by_group: dict[str, Counter[tuple[float, float]]] = {}
    for sku, w in sample_trust.items():
        by_group.setdefault(groups.get(sku, ""), Counter())[tuple(w)] += 1  # type: ignore[index]
    group_blend = {c: cnt.most_common(1)[0][0] for c, cnt in by_group.items()}
    return {
        p: tuple(sample_trust.get(p, group_blend.get(groups.get(p, ""), default)))  # type: ignore[misc]
        for p in products
    }


def fit_distributed(
    data: TrainingData,
    freq: str,
    horizon: int,
    params: ModelParams | None = None,
    client: Client | None = None,
    progress: Progress | None = None,
    n_partitions: int | None = None,
    parquet_dir: Path | None = None,
) -> DistributedPriceModel:
    """Fit the price model on the Dask cluster of ``client`` (see the module's docstring).

    ``n_partitions``: partitions of whole series (default: two per worker). ``parquet_dir``:
    export the training frame there as Parquet and let the workers read it, instead of sending
    the in-memory partitions through the scheduler."""
    if client is None:
        from dask.distributed import default_client

        client = default_client()
    params = params or ModelParams()
    say = progress or (lambda f, m: None)
    say(0.05, "building features")
    frame, spec, exog, data = prepare(data, freq, params.max_history)
    # the same short-series rule and backtest sample as fit_price_model
    lengths = frame.groupby("unique_id").size()
    min_len = min_history(spec, horizon)
    long_ids = lengths[lengths >= min_len].index
    if len(long_ids) == 0:
        raise ValueError(f"every series is shorter than {min_len} periods; need more history")
    frame = frame[frame["unique_id"].isin(long_ids)].reset_index(drop=True)
    sample = _sample_ids(frame, params)
    say(0.1, f"calibration backtest on {len(sample):,} products (one machine)")
    base = fit_price_model(_subset(data, sample), freq, horizon, params)

    last_seen = newest_prices(frame, frame["observed"])
    train = frame.drop(columns=["observed"])
    workers = client.scheduler_info().get("workers", {})
    n_workers = max(1, len(workers))
    threads = min((w.get("nthreads", 1) for w in workers.values()), default=1)
    parts_n = n_partitions or 2 * n_workers
    if parquet_dir is not None:
        ddf = read_partitions(export_parquet(train, parquet_dir, parts_n))
    else:
        ddf = _in_memory(split_by_series(train, parts_n))
    say(0.5, f"training LightGBM on {n_workers} Dask workers, {len(train):,} rows")
    change = make_forecaster(spec, params, change_of_log(spec, train["y"]))
    fcst = _distributed(change, params, client, threads)
    fcst.fit(ddf, static_features=[], keep_last_n=history_to_keep(change, spec))
    level = None
    if base.level_fcst is not None:
        say(0.75, "training the level model on the cluster")
        local_level = make_level_forecaster(spec, params)
        level = _distributed(local_level, params, client, threads)
        # as on one machine: the level model sees the drivers only where the model says so
        level_cols = list(train.columns) if base.level_exog else ["unique_id", "ds", "y"]
        level.fit(
            ddf[level_cols], static_features=[], keep_last_n=history_to_keep(local_level, spec)
        )

    say(0.9, "model trained")
    categories = dict(data.categories or {})
    last_price = frame.groupby("unique_id", sort=True)["y"].last()
    products = [str(p) for p in last_price.index]
    sales_tail = base.sales_tail
    if data.sales is not None and len(data.sales) and sales_tail is not None:
        sales_tail = data.sales[data.sales["ds"] >= sales_tail["ds"].min()].copy()
    ratio = variance_ratio(frame, horizon)  # the calendars', the trust groups' and the hold's
    # every product its own calendar, where the sample's backtest says calendars pay (none for
    # a price that moves like a random walk, as on one machine)
    promotions, promotion_info, odds = base.promotions, base.promotion_info, base.promotion_odds
    choice = base.metrics.get("promotion_choice")
    if choice is not None and (base.promotions or choice["default"]):
        decided = {
            **dict.fromkeys(choice["declined"], False),
            **dict.fromkeys(drifting(ratio), False),
            **dict.fromkeys(base.promotions or {}, True),
        }
        promotions, promotion_info, odds = calendars_ahead(
            frame, spec, horizon, decided, bool(choice["default"])
        )
    groups = trust_groups(frame, horizon, pd.Series(categories, dtype=object), ratio).to_dict()
    policy = base.policy
    if policy is not None and policy.kinds:
        # the kinds' policies came from the sample; every product of the catalog has a kind
        policy = dataclasses.replace(policy, kind_of=kinds_of(groups))
    full = dataclasses.replace(
        base,
        policy=policy,
        promotions=promotions or None,
        promotion_info=promotion_info or None,
        promotion_odds=odds or None,
        last_price={str(k): float(v) for k, v in last_price.items()},
        last_seen=last_seen,
        categories=categories,
        sales_tail=sales_tail,
        trust=_trust_everywhere(base.trust, base.trust_default, products, groups),
        exog=exog,
        pass_rates=data.pass_rates,
        # every random walk of the catalog, where the sample's drivers reach short of the horizon
        held=random_walks(ratio) if base.held_after else frozenset(),
    )
    return DistributedPriceModel(base=full, fcst=fcst, level_fcst=level, n_rows=len(train))


def fit_on_cluster(
    data: TrainingData,
    freq: str,
    horizon: int,
    params: ModelParams,
    address: str,
    progress: Progress | None = None,
) -> PriceModel:
    """Connect to the Dask scheduler at ``address``, fit there, and return a ``PriceModel``."""
    from dask.distributed import Client

    with Client(address) as client:
        return fit_distributed(data, freq, horizon, params, client, progress).to_local()
