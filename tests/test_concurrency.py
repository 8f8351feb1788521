"""Many buyers share one loaded model: concurrent predictions must equal sequential ones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd


def _answers(model, calls):
    return [model.predict(ids=[sku], overrides=ov) for sku, ov in calls]


def test_predict_from_many_threads_gives_the_sequential_answers_with_drivers(fitted_model) -> None:
    """Single-product forecasts (the Product page) and what-ifs from 8 threads at once: no
    error and no number differs from the same call made alone."""
    model = fitted_model
    assert model.exog, "the fixture company has drivers"
    skus = model.products
    rng = np.random.default_rng(0)
    calls = [
        (skus[int(rng.integers(len(skus)))], {"fx": float(rng.choice([0.9, 1.0, 1.1]))})
        for _ in range(40)  # the race hit 464 of 480 calls before the fix: 40 are plenty
    ]
    expected = _answers(model, calls)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda c: model.predict(ids=[c[0]], overrides=c[1]), calls))
    assert len(got) == len(expected)
    for e, g in zip(expected, got, strict=True):
        pd.testing.assert_frame_equal(e.reset_index(drop=True), g.reset_index(drop=True))
    # and the shared model still answers for every product afterwards
    full = model.predict()
    assert set(full["sku"]) == set(skus) and np.isfinite(full["y_pred"]).all()
