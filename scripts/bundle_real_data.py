"""Convert the real EIA price datasets in ../shared/data/real/ into the import format
(sku,date,price) under data/real/. Values are copied unchanged; see data/real/PROVENANCE.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "data" / "real"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for folder, name in (
        ("eia-fred-energy-spot-daily", "energy_spot_daily.csv"),
        ("eia-fred-retail-fuel-weekly", "retail_fuel_weekly.csv"),
    ):
        df = pd.read_csv(SRC / folder / "prices_long.csv", dtype={"price": str})
        df = df.rename(columns={"series_id": "sku"})[["sku", "date", "price"]]
        df.to_csv(OUT / name, index=False)
        series = pd.read_csv(SRC / folder / "series.csv")
        series.to_csv(OUT / name.replace(".csv", "_series.csv"), index=False)
    parts = []
    for sku, file in (
        ("BRENT", "brent-daily.csv"),
        ("WTI", "wti-daily.csv"),
        ("HENRY_HUB", "henry-hub-daily.csv"),
    ):
        df = pd.read_csv(
            SRC / "datahub-eia-oil-gas-daily" / file, dtype={"Price": str}, keep_default_na=False
        )
        parts.append(pd.DataFrame({"sku": sku, "date": df["Date"], "price": df["Price"]}))
    pd.concat(parts).to_csv(OUT / "oil_gas_daily.csv", index=False)


if __name__ == "__main__":
    main()
