"""An independent 'structured shelf prices' generator: weekday pattern, regular promotions every
3-8 weeks (small jitter), AR(1) mean reversion after shocks, some random-walk series.

    python scripts/structured_prices.py out.csv [SEED] [--noise 0.004 --weekday 0.03 ...]

The defaults are the set the README's backtest table calls "structured" (seed 11); the options
make calmer or noisier shelves to check that the model keeps its lead over the plain baseline
(``scripts/plain_baseline.py``) across them."""

import argparse

import numpy as np
import pandas as pd


def gen(
    n=60,
    days=730,
    seed=11,
    rw_share=0.2,
    noise=0.008,
    weekday=0.02,
    shock_sd=0.08,
    phi=(0.85, 0.97),
):
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-07-01", periods=days, freq="D")
    rows = []
    for i in range(n):
        base = np.exp(rng.uniform(np.log(2), np.log(200)))
        if rng.random() < rw_share:
            lp = np.cumsum(rng.normal(0, 0.01, days))
            p = base * np.exp(lp)
        else:
            wk = rng.normal(0, weekday, 7)
            wk -= wk.mean()
            ar = np.zeros(days)
            phi_i = rng.uniform(*phi)
            for t in range(1, days):
                shock = rng.normal(0, noise) + (
                    rng.normal(0, shock_sd) if rng.random() < 0.01 else 0
                )
                ar[t] = phi_i * ar[t - 1] + shock
            promo = np.zeros(days)
            cyc = int(rng.integers(21, 57))
            L = int(rng.integers(2, 6))
            depth = rng.uniform(0.08, 0.25)
            d = int(rng.integers(0, cyc))
            while d < days:
                promo[d : d + L] = depth
                d += cyc + int(rng.integers(-2, 3))
            p = base * np.exp(ar + wk[dates.dayofweek] - promo)
        rows.append(pd.DataFrame({"sku": f"S{i:03d}", "date": dates.date, "price": np.round(p, 2)}))
    return pd.concat(rows)


def gen_rises(n=80, days=800, seed=23):
    """A second shelf, for checks on structure the model was not tuned on: list prices that rise
    by 2-8% every two to seven months, a market factor shared by all products, promotions of
    varying depth every 2-7 weeks give or take four days, 15% random walks, 2% missing days."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-09-01", periods=days, freq="D")
    market = np.cumsum(rng.normal(0, 0.004, days))
    rows = []
    for i in range(n):
        base = np.exp(rng.uniform(np.log(1), np.log(500)))
        kind = rng.random()
        lp = np.zeros(days)
        t = int(rng.integers(30, 200))
        while t < days:
            lp[t:] += rng.uniform(0.02, 0.08)
            t += int(rng.integers(60, 200))
        lp += rng.uniform(0, 1.5) * market
        if kind < 0.15:
            lp = np.cumsum(rng.normal(0, 0.012, days))
        elif kind < 0.75:
            cyc = int(rng.integers(14, 50))
            L = int(rng.integers(3, 8))
            d = int(rng.integers(0, cyc))
            while d < days:
                lp[d : d + L] -= rng.uniform(0.05, 0.3)
                d += cyc + int(rng.integers(-4, 5))
            wk = rng.normal(0, 0.015, 7)
            wk -= wk.mean()
            lp += wk[dates.dayofweek]
        ar = np.zeros(days)
        phi = rng.uniform(0.7, 0.95)
        for k in range(1, days):
            ar[k] = phi * ar[k - 1] + rng.normal(0, 0.006)
        lp += ar
        df = pd.DataFrame(
            {"sku": f"U{i:03d}", "date": dates.date, "price": np.round(base * np.exp(lp), 2)}
        )
        rows.append(df[rng.random(days) > 0.02])
    return pd.concat(rows)


if __name__ == "__main__":
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("out")
    a.add_argument("seed", type=int, nargs="?", default=11)
    a.add_argument("--rw-share", type=float, default=0.2, help="share of random-walk series")
    a.add_argument("--noise", type=float, default=0.008, help="daily AR(1) shock sd (log)")
    a.add_argument("--weekday", type=float, default=0.02, help="weekday pattern sd (log)")
    a.add_argument("--shock-sd", type=float, default=0.08, help="sd of the rare large shocks")
    a.add_argument("--phi", type=float, nargs=2, default=(0.85, 0.97), help="AR(1) range")
    a.add_argument(
        "--list-rises",
        action="store_true",
        help="the second shelf instead (gen_rises: list-price rises, a market factor)",
    )
    o = a.parse_args()
    if o.list_rises:
        gen_rises(seed=o.seed).to_csv(o.out, index=False)
        raise SystemExit
    gen(
        seed=o.seed,
        rw_share=o.rw_share,
        noise=o.noise,
        weekday=o.weekday,
        shock_sd=o.shock_sd,
        phi=tuple(o.phi),
    ).to_csv(o.out, index=False)
