"""An independent 'structured shelf prices' generator: weekday pattern, regular promotions every
3-8 weeks (small jitter), AR(1) mean reversion after shocks, some random-walk series."""

import sys

import numpy as np
import pandas as pd


def gen(n=60, days=730, seed=11, rw_share=0.2):
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-07-01", periods=days, freq="D")
    rows = []
    for i in range(n):
        base = np.exp(rng.uniform(np.log(2), np.log(200)))
        if rng.random() < rw_share:
            lp = np.cumsum(rng.normal(0, 0.01, days))
            p = base * np.exp(lp)
        else:
            wk = rng.normal(0, 0.02, 7)
            wk -= wk.mean()
            ar = np.zeros(days)
            phi = rng.uniform(0.85, 0.97)
            for t in range(1, days):
                shock = rng.normal(0, 0.008) + (rng.normal(0, 0.08) if rng.random() < 0.01 else 0)
                ar[t] = phi * ar[t - 1] + shock
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


if __name__ == "__main__":
    gen(seed=int(sys.argv[2]) if len(sys.argv) > 2 else 11).to_csv(sys.argv[1], index=False)
