"""Model health: backtest against live error, data and concept drift over time, drift retrains."""

import math

import altair as alt
import pandas as pd
import streamlit as st

from procurement import actions
from procurement.config import get_settings
from procurement.db import open_session
from ui.page import engine, page_setup

ctx = page_setup("Model health")
st_settings = get_settings()


def _num(value: object, fmt: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return fmt.format(value)


if ctx.principal.can("retrain") and st.button(
    "Check drift now", icon=":material/monitor_heart:", key="check_drift"
):
    with (
        st.spinner("Comparing the latest weeks with the training window..."),
        open_session(engine()) as s,
    ):
        result = actions.check_drift(ctx.principal, session=s, tenant=ctx.tenant)
    if result is not None and result.retrain_run is not None:
        st.toast(f"Drift is above the threshold: retrain {result.retrain_run} queued.")

with open_session(engine()) as s:
    hist, retrains = actions.drift_history(ctx.principal, session=s, tenant=ctx.tenant)

meta = ctx.metadata or {}
m = meta.get("metrics") or {}
latest = hist.iloc[-1] if len(hist) else None
mine = latest is not None and latest["version"] == ctx.version

st.subheader("Current model")
cols = st.columns(6)
cols[0].metric("Backtest MASE", _num((m.get("model") or {}).get("mase")))
cols[1].metric("Naive MASE", _num((m.get("naive") or {}).get("mase")))
cols[2].metric("Backtest 80% coverage", _num(m.get("coverage_80"), "{:.0%}"))
cols[3].metric(
    "Live MASE",
    _num(latest["live_mase"] if mine else None),
    help="Stored forecasts against the prices that came in since, "
    f"over the last {st_settings.drift_recent_days} days.",
)
cols[4].metric("Live 80% coverage", _num(latest["live_coverage_80"] if mine else None, "{:.0%}"))
cols[5].metric("Actual prices compared", _num(int(latest["n_actuals"]) if mine else None, "{:,}"))

if latest is None:
    st.info(
        "No drift check yet. The scheduler checks every company hourly and after each training"
        + ("; or press **Check drift now**." if ctx.principal.can("retrain") else ".")
    )
    st.stop()

c1, c2 = st.columns(2)
c1.metric(
    "Data drift (largest PSI)",
    _num(latest["data_drift"]),
    help=f"Retrain queued above {st_settings.drift_psi_threshold}; under 0.1 is no shift.",
)
c2.metric(
    "Concept drift (live / backtest error)",
    _num(latest["concept_drift"]),
    help=f"Retrain queued above {st_settings.concept_drift_threshold} once "
    f"{st_settings.concept_drift_min_actuals} actual prices are in.",
)
st.caption(
    f"Last checked {latest['computed_at']:%Y-%m-%d %H:%M} UTC, model `{latest['version']}`"
    + ("" if mine else " (not the current model yet)")
)


# the checks' times as stored and as the caption above says them (UTC): Streamlit hands a chart
# naive times as wall-clock times, so a time scale shows them unchanged in any browser
WHEN = "%d %b %H:%M"


def _when(t: pd.Timestamp) -> alt.DateTime:
    return alt.DateTime(
        year=t.year,
        month=t.month,
        date=t.day,
        hours=t.hour,
        minutes=t.minute,
        seconds=t.second,
        milliseconds=t.microsecond // 1000,
    )


def _time_axis(times: pd.Series) -> alt.X:
    """A date axis for the checks' times. With one check (a fresh install), or all within a few
    hours, Vega-Lite spread the axis over the milliseconds around them and labelled it ".226":
    the domain is then hours wide around them and each check has its own tick."""
    times = pd.to_datetime(times)
    first, last = times.min(), times.max()
    axis = alt.Axis(format=WHEN, labelOverlap=True, tickCount=6)
    scale = alt.Scale(padding=14)  # the first and last points drawn whole
    if last - first < pd.Timedelta(hours=6):
        mid, half = first + (last - first) / 2, pd.Timedelta(hours=6)
        axis = alt.Axis(
            format=WHEN, labelOverlap=True, values=[_when(t) for t in sorted(set(times))]
        )
        scale = alt.Scale(domain=[_when(mid - half), _when(mid + half)])
    return alt.X("computed_at:T", title="Checked (UTC)", axis=axis, scale=scale)


def _over_time(col: str, title: str, threshold: float) -> alt.LayerChart:
    data = hist[["computed_at", "version", col]].dropna()
    line = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=_time_axis(data["computed_at"]),
            y=alt.Y(f"{col}:Q", title=title),
            color=alt.Color("version:N", legend=None),
            tooltip=[
                alt.Tooltip("computed_at:T", title="Checked (UTC)", format=WHEN),
                "version:N",
                alt.Tooltip(f"{col}:Q", format=".3f"),
            ],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(strokeDash=[4, 4], color="firebrick")
        .encode(y="threshold:Q")
    )
    return (line + rule).properties(height=240)


left, right = st.columns(2)
with left:
    st.markdown("**Data drift over time**")
    st.altair_chart(
        _over_time("data_drift", "largest PSI", st_settings.drift_psi_threshold),
        width="stretch",
    )
with right:
    st.markdown("**Concept drift over time**")
    if hist["concept_drift"].notna().any():
        st.altair_chart(
            _over_time(
                "concept_drift", "live / backtest MASE", st_settings.concept_drift_threshold
            ),
            width="stretch",
        )
    else:
        st.caption("No actual prices have arrived for the stored forecasts yet.")

psi_cols = [c for c in hist.columns if c.startswith("psi:")]
if psi_cols:
    st.markdown("**Population stability index per feature, latest check**")
    psi = (
        latest[psi_cols]
        .dropna()
        .rename(lambda c: c.removeprefix("psi:"))
        .rename_axis("feature")
        .reset_index(name="psi")
    )
    bars = (
        alt.Chart(psi)
        .mark_bar()
        .encode(
            x=alt.X("psi:Q", title="PSI"),
            y=alt.Y("feature:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
            color=alt.condition(
                alt.datum.psi > st_settings.drift_psi_threshold,
                alt.value("firebrick"),
                alt.value("steelblue"),
            ),
            tooltip=["feature:N", alt.Tooltip("psi:Q", format=".3f")],
        )
        .properties(height=34 * len(psi) + 30)
    )
    st.altair_chart(bars, width="stretch")
    st.caption(
        "Training window against the latest weeks. `price_vs_90d`: price level against its "
        "trailing 90 days; `price_change`: day-to-day change; `volatility_14d`: size of recent "
        "moves; `driver_change`: moves of exchange rate and commodity indices; `sales_vs_90d`: "
        "demand level."
    )

st.markdown("**Retrains queued because of drift**")
if retrains:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "requested": r.requested_at,
                    "model": r.version,
                    "run": r.run_id,
                    "reason": r.reason,
                }
                for r in retrains
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("None: at most one per model version, when drift passes a threshold.")
