"""Forecasts and advice from the current model of a company."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from procurement.forecast import store
from procurement.forecast.model import PriceModel
from procurement.recommend import Policy, recommend


def predict_prices(
    model: PriceModel,
    overrides: Mapping[str, float] | None = None,
    skus: list[str] | None = None,
    horizon: int | None = None,
) -> pd.DataFrame:
    """For each product, ``horizon`` daily forecasts with 80% and 95% intervals and the
    probability of being cheaper than the first day. ``overrides``: what-if factors on the
    drivers' future values, e.g. ``{"fx": 1.05, "index:steel": 0.9, "demand": 1.2}``."""
    return model.predict(horizon, overrides=overrides, ids=skus)


def load_current(model_dir: Path, tenant: str) -> store.StoredModel:
    return store.load_version(model_dir, tenant)


def recommendations(
    model: PriceModel,
    products: pd.DataFrame | None = None,
    policy: Policy | None = None,
    overrides: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Advice for every product, joined with its catalog row when ``products`` is given."""
    recs = recommend(predict_prices(model, overrides), policy)
    if products is not None and len(products):
        recs = recs.merge(products, on="sku", how="left")
    return recs
