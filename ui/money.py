"""How numbers look to a buyer: the company's currency, thousands separators, whole units."""

from __future__ import annotations

import pandas as pd

from procurement.recommend import shown_percent

HOW_SURE_HELP = (
    "Waiting advice: how likely the buy day's price is below today's, from the model's backtest. "
    "Buy now: how likely it is that no later day in the forecast is cheaper."
)
PRICES_HELP = (
    "The model's forecast for the day (today's too: the newest stored price is from an "
    "earlier day)."
)
TARGET_HELP = (
    "Buy on the first day the price is at or below this, the model's forecast for the buy day, "
    "and on the last day (At the latest) if it has not come down by then. Blank where the "
    "backtest found a plain buy day saved more (prices that trend rather than dip)."
)
LATEST_HELP = (
    "How long to wait for the target price: the buy day, or a few days after it where "
    "promotions that came late were worth waiting for in the backtest. Buy on this day if the "
    "price has not come down."
)
SAVING_HELP = (
    "The saving to expect from waiting, per unit, averaged over how the price may really turn "
    "out, from the model's backtest. It can differ from the gap between the two forecast "
    "prices: a dip may come a day early or late, or not as deep."
)


def company_currency(products: pd.DataFrame) -> str:
    """The currency most of the company's products are priced in (USD when none is stored)."""
    if "currency" not in products or products["currency"].dropna().empty:
        return "USD"
    return str(products["currency"].dropna().mode().iloc[0])


def money(value: float, currency: str, decimals: int = 0) -> str:
    return f"{currency} {value:,.{decimals}f}"


def percent(share: float) -> str:
    """A probability for a buyer: one decimal at most, and never 100% (no backtest supports it)."""
    return f"{int(shown_percent(share))}%" if share >= 0.1 else f"{share * 100:.1f}%"
