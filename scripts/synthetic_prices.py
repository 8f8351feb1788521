"""The synthetic catalog (``procurement.data.synthetic``) as files for ``procurement backtest``.

    python scripts/synthetic_prices.py prices.csv drivers.csv [--products 60] [--days 730]
        [--seed 3] [--end 2026-12-03]

``prices.csv`` has sku, date, price and category; ``drivers.csv`` has the exchange rate and
each category's commodity index (``index:<category>``) as sku, date, price. The README's
synthetic rows are ``--products 60 --seed 3 --end 2026-12-03``, backtested with
``--csv prices.csv --drivers drivers.csv`` (or without the drivers)."""

import argparse
import datetime as dt

from procurement.data.synthetic import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prices")
    ap.add_argument("drivers")
    ap.add_argument("--products", type=int, default=60)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 12, 3))
    args = ap.parse_args()
    data = generate(args.products, args.days, seed=args.seed, end=args.end)
    data.prices[["sku", "date", "price", "category"]].to_csv(args.prices, index=False)
    drivers = data.drivers.rename(columns={"name": "sku", "value": "price"})
    drivers[["sku", "date", "price"]].to_csv(args.drivers, index=False)
    print(
        f"{args.prices}: {len(data.prices):,} prices of {args.products} products "
        f"({int((data.effects['kind'] == 'commodity').sum())} commodities); "
        f"{args.drivers}: {drivers['sku'].nunique()} drivers"
    )


if __name__ == "__main__":
    main()
