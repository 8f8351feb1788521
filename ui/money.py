"""How numbers look to a buyer: the company's currency, thousands separators, whole units."""

from __future__ import annotations

import pandas as pd


def company_currency(products: pd.DataFrame) -> str:
    """The currency most of the company's products are priced in (USD when none is stored)."""
    if "currency" not in products or products["currency"].dropna().empty:
        return "USD"
    return str(products["currency"].dropna().mode().iloc[0])


def money(value: float, currency: str, decimals: int = 0) -> str:
    return f"{currency} {value:,.{decimals}f}"


def percent(share: float) -> str:
    """A probability for a buyer: one decimal at most, and never 100% (no backtest supports it)."""
    return f"{min(share, 0.99) * 100:.0f}%" if share >= 0.1 else f"{share * 100:.1f}%"
