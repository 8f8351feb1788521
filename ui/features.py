"""The model in a buyer's words: feature names ("price 4 weeks ago", not "lag28") and the
advice policy it learned."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

UNITS = {"D": "day", "B": "working day", "W": "week", "M": "month", "Q": "quarter"}
FREQ_WORDS = {
    "D": "daily",
    "B": "every working day",
    "W": "weekly",
    "M": "monthly",
    "Q": "quarterly",
}
DRIVERS = {"drv_fx": "exchange rate", "index": "commodity index", "demand": "demand"}


def _unit(freq: str) -> str:
    return UNITS.get(freq[:1].upper(), "period")


def frequency_words(freq: str) -> str:
    """``W-MON`` -> "weekly", ``D`` -> "daily"."""
    return FREQ_WORDS.get(freq[:1].upper(), freq)


def span_words(n: int, freq: str) -> str:
    """``n`` periods in words: 3 "3 days", 14 "2 weeks" for daily prices, 2 "2 weeks" for weekly."""
    unit = _unit(freq)
    if unit == "day" and n % 7 == 0 and n >= 7:
        n, unit = n // 7, "week"
    return f"{n} {unit}{'s' if n != 1 else ''}"


def feature_words(name: str, freq: str = "D") -> str:
    """A plain-language label for a model feature; the raw name when it is not recognised."""
    if m := re.fullmatch(r"lag(\d+)", name):
        n = int(m.group(1))
        return "the last price" if n == 1 else f"price {span_words(n, freq)} ago"
    if m := re.fullmatch(r"rolling_mean_lag1_window_size(\d+)", name):
        return f"average price over {span_words(int(m.group(1)), freq)}"
    if m := re.fullmatch(r"rolling_std_lag1_window_size(\d+)", name):
        return f"price swings over {span_words(int(m.group(1)), freq)}"
    if m := re.fullmatch(r"exponentially_weighted_mean_lag1_alpha([\d.]+)", name):
        span = round(1 / float(m.group(1)))
        return f"recent average price (about {span_words(span, freq)})"
    if m := re.fullmatch(r"below_high_lag1_window(\d+)", name):
        return f"price below its {span_words(int(m.group(1)), freq)} high"
    if m := re.fullmatch(r"above_low_lag1_window(\d+)", name):
        return f"price above its {span_words(int(m.group(1)), freq)} low"
    if re.fullmatch(r"since_drop_lag1_.*", name):
        return "time since the last price drop"
    if re.fullmatch(r"drop_gap_lag1_.*", name):
        return "size of the last price drop"
    if name.startswith("pass_"):
        return f"pass-through: {feature_words(name[len('pass_') :], freq)}"
    if name == "dayofweek":
        return "day of the week"
    if name in ("month", "week", "quarter"):
        return f"{name} of the year"
    for prefix, driver in DRIVERS.items():
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if m := re.search(r"_l(\d+)$", rest):
                n = int(m.group(1))
                what = "change" if "chg" in rest else "level"
                return f"{driver} {what} over {span_words(n, freq)}"
            if m := re.search(r"_w(\d+)$", rest):
                return f"{driver} change over {span_words(int(m.group(1)), freq)}"
            return driver
    return name


KIND_WORDS = {
    "drifts": "whose price drifts like a random walk (a commodity after its market)",
    "reverts": "whose price comes back after a dip (promotions, shocks that fade)",
}


def _bar_words(pol: Mapping[str, Any]) -> str:
    if pol.get("min_confidence", 0) >= 1:
        if pol.get("unproven"):
            return (
                "never wait (the thresholds that saved the most on the backtest windows they "
                "were chosen on saved "
                f"{pol.get('out_of_fold_saving_pct') or 0.0:.2f}% a window on the others)"
            )
        return "never wait (no threshold saved money)"
    by = f" by {pol['min_saving_pct']:g}% or more" if pol.get("min_saving_pct", 0) > 0 else ""
    return f"wait only when a later day is at least {pol['min_confidence']:.0%} likely to be cheaper{by}"


def _target_words(pol: Mapping[str, Any], horizon: int, freq: str) -> str:
    late = int(pol.get("grace_steps", 0))
    if late <= 0:
        when = "on an earlier day whose price is already down to it"
    elif late >= horizon - 1:
        when = (
            "on the first day whose price is down to it, before the buy day or after it up to "
            "the end of the forecast, and on that last day if it has not come"
        )
    else:
        when = (
            "on the first day whose price is down to it, before the buy day or up to "
            f"{span_words(late, freq)} after it, and on the last of those days if it has not come"
        )
    return f"each wait has a target price, the buy day's forecast: buy {when}"


def policy_words(pol: Mapping[str, Any], horizon: int, freq: str) -> str:
    """The advice policy learned from the backtest (``recommend.policy_summary``), in words."""
    kinds = pol.get("kinds") or {}
    if not kinds:
        text = f"Advice learned from the backtest: {_bar_words(pol)}."
        if pol.get("target_price") and pol.get("min_confidence", 0) < 1:
            target = _target_words(pol, horizon, freq)
            text += (
                f" {target[:1].upper()}{target[1:]}. That saved more in the backtest than waiting "
                "for the buy day alone."
            )
        return text
    parts = []
    for kind, own in kinds.items():
        n = int(own.get("products", 0))
        what = f"{n} product{'s' if n != 1 else ''} {KIND_WORDS.get(kind, kind)}"
        rule = _bar_words(own)
        if own.get("target_price") and own.get("min_confidence", 0) < 1:
            rule += f"; {_target_words(own, horizon, freq)}"
        elif own.get("min_confidence", 0) < 1:
            rule += "; no target price: buy on the advised day"
        parts.append(f"For the {what}: {rule}.")
    return (
        "Advice learned from the backtest, for each kind of product on its own windows. "
        + " ".join(parts)
    )
