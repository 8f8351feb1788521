"""Charts used by the pages.

The charts of the Overview and the Product page are defined with Altair over named datasets and
turned into a Vega-Lite spec once per process (``_template``); a page run only puts its data into
a copy of that spec and hands it to ``st.vega_lite_chart``. Building an Altair chart and
validating it against the Vega-Lite schema took 0.3-0.7 s of CPU per chart, more than the rest of
the Product page together, and every session's run holds the app process's one GIL while it
does, so under many buyers it was paid in turn by all of them (issue 18). The Model and Health
pages' charts, seldom opened, stay Altair charts.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from typing import Any

import altair as alt
import pandas as pd

VegaLiteSpec = dict[str, Any]


def _template(chart: alt.TopLevelMixin) -> VegaLiteSpec:
    """``chart`` as a Vega-Lite spec, validated against the schema (the costly step, done once)."""
    spec = chart.to_dict()
    # Altair's default theme; Streamlit switches it off for its Altair charts and applies its own
    # (these charts configure nothing themselves)
    spec.pop("config", None)
    return spec


def _digest(df: pd.DataFrame) -> str:
    h = hashlib.sha256(",".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _with_data(template: VegaLiteSpec, **frames: pd.DataFrame) -> VegaLiteSpec:
    """A copy of ``template`` showing ``frames``, by the names its parts read. Each dataset is
    named by its content, as Altair names them, so different data make a different chart."""
    names = {key: f"{key}-{_digest(df)}" for key, df in frames.items()}
    spec = copy.deepcopy(template)
    for part in [spec, *spec.get("layer", [])]:
        if "data" in part:
            part["data"] = {"name": names[part["data"]["name"]]}
    spec["datasets"] = {names[key]: df for key, df in frames.items()}
    return spec


def price_forecast(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    buy_date: pd.Timestamp,
    target: float | None = None,
    last_date: pd.Timestamp | None = None,
) -> VegaLiteSpec:
    """Price history, the forecast with 80%/95% bands, the recommended buy day and, where the
    advice has one, its target price up to the last day to wait for it."""
    buy = forecast[forecast["date"] == buy_date]
    span = pd.DataFrame(
        {"date": pd.Series(dtype="datetime64[ns]"), "target": pd.Series(dtype=float)}
    )
    if target is not None and pd.notna(target) and last_date is not None and pd.notna(last_date):
        span = forecast.loc[forecast["date"] <= last_date, ["date"]].assign(target=float(target))
    return _with_data(_price_forecast(), history=history, forecast=forecast, buy=buy, target=span)


@functools.cache
def _price_forecast() -> VegaLiteSpec:
    zoom = alt.selection_interval(bind="scales", encodings=["x"])
    # padding: the buy marker on the first or last day is drawn whole, not cut at the edge
    x = alt.X("date:T", title=None, scale=alt.Scale(padding=14))
    forecast, buy = alt.NamedData("forecast"), alt.NamedData("buy")
    hist = (
        alt.Chart(alt.NamedData("history"))
        .mark_line(color="#334155")
        .encode(
            x=x,
            y=alt.Y("price:Q", title="Price", scale=alt.Scale(zero=False, padding=14)),
            tooltip=[
                alt.Tooltip("date:T", format="%a %d %b %Y"),
                alt.Tooltip("price:Q", format=",.2f"),
            ],
        )
        .add_params(zoom)
    )
    band95 = (
        alt.Chart(forecast)
        .mark_area(opacity=0.15, color="#1f6f5c")
        .encode(x=x, y="lo_95:Q", y2="hi_95:Q")
    )
    band80 = (
        alt.Chart(forecast)
        .mark_area(opacity=0.3, color="#1f6f5c")
        .encode(x=x, y="lo_80:Q", y2="hi_80:Q")
    )
    line = (
        alt.Chart(forecast)
        .mark_line(color="#1f6f5c", strokeDash=[5, 3], point=alt.OverlayMarkDef(color="#1f6f5c"))
        .encode(
            x=x,
            y="y_pred:Q",
            tooltip=[
                alt.Tooltip("date:T", format="%a %d %b %Y", title="Date"),
                alt.Tooltip("y_pred:Q", format=",.2f", title="Forecast"),
                alt.Tooltip("lo_80:Q", format=",.2f", title="80% low"),
                alt.Tooltip("hi_80:Q", format=",.2f", title="80% high"),
                alt.Tooltip("p_cheaper:Q", format=".0%", title="Cheaper than today"),
            ],
        )
    )
    marker = (
        alt.Chart(buy)
        .mark_point(shape="triangle-down", size=220, filled=True, color="#d97706")
        .encode(
            x=x, y="y_pred:Q", tooltip=[alt.Tooltip("date:T", format="%a %d %b", title="Buy on")]
        )
    )
    rule = alt.Chart(buy).mark_rule(color="#d97706", strokeDash=[2, 2]).encode(x=x)
    target = (
        alt.Chart(alt.NamedData("target"))
        .mark_line(color="#d97706", strokeWidth=1.5)
        .encode(
            x=x,
            y="target:Q",
            tooltip=[
                alt.Tooltip("target:Q", format=",.2f", title="Target price"),
                alt.Tooltip("date:T", format="%a %d %b", title="Until"),
            ],
        )
    )
    layers = alt.layer(band95, band80, hist, line, rule, target, marker)
    return _template(layers.properties(height=380))


def metric_bars(metrics: pd.DataFrame) -> alt.Chart:
    """MASE of the model beside the naive baselines (lower is better)."""
    return (
        alt.Chart(metrics)
        .mark_bar()
        .encode(
            x=alt.X("mase:Q", title="MASE (lower is better)"),
            y=alt.Y("forecast:N", sort="x", title=None),
            color=alt.condition(
                alt.datum.forecast == "model", alt.value("#1f6f5c"), alt.value("#94a3b8")
            ),
            tooltip=[
                "forecast",
                alt.Tooltip("mase:Q", format=".3f"),
                alt.Tooltip("smape:Q", format=".2f"),
            ],
        )
        .properties(height=140)
    )


def importance_bars(imp: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(imp)
        .mark_bar(color="#1f6f5c")
        .encode(
            x=alt.X("share:Q", title="Share of gain", axis=alt.Axis(format="%")),
            y=alt.Y("feature:N", sort="-x", title=None, axis=alt.Axis(labelLimit=220)),
            tooltip=["feature", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=alt.Step(22))
    )


def saving_by(recs: pd.DataFrame, column: str, title: str, currency: str) -> VegaLiteSpec:
    """Expected saving of following the advice, summed per ``column`` (category, supplier)."""
    wait = recs[~recs["buy_now"]]
    data = (
        wait.groupby(recs[column].fillna("-"))["saving_total"]
        .agg(["sum", "size"])
        .reset_index()
        .rename(columns={column: "group", "sum": "saving", "size": "products"})
    )
    return _with_data(_saving_by(column, title, currency), data=data)


@functools.lru_cache(maxsize=64)
def _saving_by(column: str, title: str, currency: str) -> VegaLiteSpec:
    return _template(
        alt.Chart(alt.NamedData("data"), title=title)
        .mark_bar(color="#1f6f5c")
        .encode(
            x=alt.X(
                "saving:Q", title=f"Expected saving ({currency})", axis=alt.Axis(format=",.0f")
            ),
            y=alt.Y("group:N", sort="-x", title=None, axis=alt.Axis(labelLimit=200)),
            tooltip=[
                alt.Tooltip("group:N", title=column.title()),
                alt.Tooltip("saving:Q", format=",.0f", title=f"Saving ({currency})"),
                alt.Tooltip("products:Q", title="Products to wait for"),
            ],
        )
        .properties(height=alt.Step(24))
    )


# Vega's "greens" scheme, as the calendar's colour scale had it: few products pale, many dark
GREENS = (
    "#d3eecd",
    "#c0e6ba",
    "#abdda5",
    "#94d391",
    "#7bc77d",
    "#60ba6c",
    "#46ab5e",
    "#329a51",
    "#208943",
    "#0e7735",
    "#036429",
)
INKS = ("#000000", "#ffffff")  # of the two, a day number takes the one that reads on its cell


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb``: 0 black, 1 white."""

    def linear(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _rgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two colours, 1 to 21 (4.5 is the least for normal text)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _shade(t: float) -> str:
    """The colour a share ``t`` (0-1) of the way along ``GREENS``."""
    pos = min(max(t, 0.0), 1.0) * (len(GREENS) - 1)
    i = min(int(pos), len(GREENS) - 2)
    f = pos - i
    lo, hi = _rgb(GREENS[i]), _rgb(GREENS[i + 1])
    return "#" + "".join(f"{round(a + f * (b - a)):02x}" for a, b in zip(lo, hi, strict=True))


def _ink(fill: str) -> str:
    """The one of ``INKS`` that contrasts more with ``fill``."""
    return max(INKS, key=lambda ink: contrast(ink, fill))


def buy_calendar(recs: pd.DataFrame, currency: str) -> VegaLiteSpec:
    """The buy days of the forecast horizon, week by week: how many products to buy each day and
    the saving at stake (today's column holds the products to buy now).

    Each cell's colour and its day number's colour are worked out here, not by a Vega colour
    scale: a day number was white on any cell of more than five products, which on a horizon
    where today holds most products left days of 7 to 10 white on pale green (issue: unreadable
    07, 09, 10). The day number is black or white, whichever contrasts more with its cell, so
    it reads at 4.5:1 or better on every shade."""
    days = recs.assign(day=pd.to_datetime(recs["buy_date"]).dt.normalize())
    data = (
        days.groupby("day")
        .agg(products=("sku", "size"), saving=("saving_total", "sum"))
        .reset_index()
    )
    data["weekday"] = data["day"].dt.strftime("%a")
    data["week"] = data["day"].dt.to_period("W-SUN").dt.start_time.dt.strftime("week of %d %b")
    # as Vega's scale did: the fewest products of a day the palest, the most the darkest, the
    # middle shade when every day has as many
    lo, hi = data["products"].min(), data["products"].max()
    share = (data["products"] - lo) / (hi - lo) if hi > lo else pd.Series(0.5, index=data.index)
    data["fill"] = [_shade(float(t)) for t in share]
    data["ink"] = [_ink(f) for f in data["fill"]]
    return _with_data(_buy_calendar(currency), data=data)


@functools.lru_cache(maxsize=16)
def _buy_calendar(currency: str) -> VegaLiteSpec:
    base = alt.Chart(alt.NamedData("data"), title="Buy days").encode(
        x=alt.X(
            "weekday:O",
            sort=["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            title=None,
            axis=alt.Axis(labelAngle=0),
        ),
        y=alt.Y("week:O", title=None, sort=alt.SortField("day")),
    )
    cells = base.mark_rect(cornerRadius=4).encode(
        # the colours as computed by buy_calendar (scale=None: the field's value is the colour)
        color=alt.Color("fill:N", scale=None, legend=None),
        tooltip=[
            alt.Tooltip("day:T", format="%a %d %b", title="Buy on"),
            alt.Tooltip("products:Q", title="Products"),
            alt.Tooltip("saving:Q", format=",.0f", title=f"Saving ({currency})"),
        ],
    )
    labels = base.mark_text(fontSize=12).encode(
        text=alt.Text("day:T", format="%d"),
        color=alt.Color("ink:N", scale=None, legend=None),
    )
    return _template((cells + labels).properties(height=alt.Step(40)))
