import pandas as pd
import streamlit as st

from procurement import actions
from procurement.auth import PermissionDenied
from procurement.db import open_session
from procurement.db.runs import ACTIVE, DONE
from procurement.forecast import store
from ui.charts import importance_bars, metric_bars
from ui.features import feature_words, frequency_words, policy_words, span_words
from ui.page import engine, local_time, page_setup, plain

ctx = page_setup("Model", need_model=False)
if flash := st.session_state.pop("model_flash", None):
    st.success(flash, icon=":material/check_circle:")


def train_here() -> None:
    """No sidecar running: work the queued request in this process, with progress."""
    with st.status("Retraining the model...", expanded=True) as status:
        bar = st.progress(0.0)

        def progress(frac: float, msg: str) -> None:
            bar.progress(min(max(frac, 0.0), 1.0), text=msg)

        with open_session(engine()) as s:
            run = actions.train_queued(
                ctx.principal, session=s, tenant=ctx.tenant, progress=progress
            )
        if run is None:
            status.update(
                label="Another training is running; your request is queued.", state="running"
            )
            return
        if run.status == DONE:
            status.update(label=f"Model {run.version} is now in use", state="complete")
        else:
            status.update(label=plain(f"Retraining {run.status}: {run.message}"), state="error")
            return
    st.rerun()


if ctx.principal.can("retrain") and st.button(
    "Retrain", type="primary", icon=":material/refresh:", key="retrain"
):
    with open_session(engine()) as s:
        run_id, created = actions.request_retrain(ctx.principal, session=s, tenant=ctx.tenant)
        sidecar = actions.scheduler_running(ctx.principal, session=s)
    if sidecar:
        st.toast(
            "Retrain queued: the scheduler picks it up within seconds."
            if created
            else "A retrain is already queued."
        )
    else:
        train_here()


@st.fragment(run_every=2)
def run_status() -> None:
    with open_session(engine()) as s:
        recent = actions.training_runs(ctx.principal, session=s, tenant=ctx.tenant, limit=10)
        in_use = actions.current_version(ctx.principal, session=s, tenant=ctx.tenant)
    active = [r for r in recent if r.status in ACTIVE]
    for r in active:
        if r.status == "running":
            st.progress(
                min(max(r.progress or 0.0, 0.0), 1.0),
                text=plain(f"Training (run {r.id}): {r.message}"),
            )
        else:
            st.info(
                f"Retrain queued by {r.requested_by} at {local_time(r.requested_at, '%H:%M:%S')}",
                icon=":material/schedule:",
            )
    if in_use != ctx.version:
        # a new model went live (here, in the sidecar, or by a rollback): reload the page with it
        st.session_state["model_flash"] = f"Model {in_use} is now in use."
        st.rerun()  # a new model went live: reload the page with it
    if recent:
        with st.expander("Training runs", expanded=bool(active)):
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "run": r.id,
                            "status": r.status,
                            "requested by": r.requested_by,
                            "requested": local_time(r.requested_at),
                            "finished": local_time(r.finished_at),
                            "version": r.version,
                            "message": r.message,
                        }
                        for r in recent
                    ]
                ),
                hide_index=True,
                width="stretch",
            )


run_status()

meta = ctx.metadata
if not meta:
    st.info("No model yet: press **Retrain** to train the first one.")
    st.stop()

m = meta["metrics"]
c1, c2, c3, c4 = st.columns(4)
c1.metric(
    "Error vs naive (MASE ratio)",
    f"{m['model']['mase'] / m['naive']['mase']:.2f}",
    help="Below 1: better than repeating the last price",
)
c2.metric("Trained", local_time(meta["trained_at"], "%d %b %H:%M"))  # the year cut the value
c3.metric("Products", meta["n_products"])
c4.metric("Training time", f"{meta.get('training_seconds', 0):.0f} s")
st.caption(
    f"Version `{meta['version']}`. Data {meta['data_start']} to {meta['data_end']} ({frequency_words(meta['freq'])}), horizon {meta['horizon']}, "
    f"LightGBM {meta['libraries']['lightgbm']}, mlforecast {meta['libraries']['mlforecast']}."
)

sparse = m.get("sparse_series") or {}
if sparse.get("products"):
    names = ", ".join(sparse["skus"][:8]) + (" ..." if sparse["products"] > 8 else "")
    st.warning(
        plain(
            f"{sparse['products']} product{' is' if sparse['products'] == 1 else 's are'} "
            f"priced {sparse['days']} or more days apart "
            f"({names}) in a catalog of daily prices: they are forecast and advised as daily "
            "prices held between their quotes, with bands sized on the daily products. A "
            "company of their own, weekly, would forecast them in weeks."
        ),
        icon=":material/event_busy:",
    )

left, right = st.columns(2)
with left:
    st.subheader("Backtest against simple forecasts")
    season = "a year ago" if str(meta["freq"]).startswith("W") else "a week ago"
    if str(meta["freq"])[:1] in ("M", "Q"):
        season = "a season ago"
    names = {"model": "model", "naive": "last price", "seasonal_naive": f"price {season}"}
    rows = [{**m[k], "forecast": names[k]} for k in names]
    st.altair_chart(metric_bars(pd.DataFrame(rows)), width="stretch")
    windows = m.get("backtest_windows", "the")
    trusted = m.get("trusted_products")
    pol = m.get("policy") or {}
    followed = (
        f"{trusted} of {m['n_series']} backtested products follow the model; the others stay at "
        "their last price, because the model did not beat it consistently on them. "
        if trusted is not None
        else ""
    )
    drifting = m.get("drifting_products")
    if drifting:
        trusted_drifting = int(m.get("drifting_trusted", 0))
        follow = (
            "all of those follow the model"
            if trusted_drifting == drifting
            else f"{trusted_drifting} of those follow the model, the others stay at their last price"
        )
        followed += (
            f"{drifting} of them move like a random walk (a commodity after its market) and are "
            f"judged apart from the rest: {follow}. "
        )
    held = m.get("held_after_drivers") or {}
    if held.get("products"):
        followed += (
            f"The forecasts of {held['products']} random walks stay where their drivers take "
            f"them: flat after {span_words(int(held['after']), str(meta['freq']))}, as far as "
            "the drivers reach. "
        )
    calendars = m.get("promotion_calendars")
    if calendars:
        followed += (
            f"{calendars} products also follow their promotion calendar (when the next "
            "promotion is due, from the gaps between their past ones), where it forecast "
            "better in the backtest. "
        )
    advice = policy_words(pol, int(meta["horizon"]), str(meta["freq"])) if pol else ""
    st.caption(
        f"Out-of-sample over the last {windows} x {meta['horizon']} periods, "
        f"{m['n_forecasts']:,} forecasts of {m['n_series']} products. {followed}{advice}"
    )
with right:
    st.subheader("What the model looks at")
    if ctx.model is not None and ctx.model.shrink == 0:
        st.info(
            "Nothing, for now: on this company's prices the model did not beat repeating the last "
            "price in the backtest, so every forecast is the last price and the advice is to buy "
            "when needed. That is the honest answer for prices that move like a random walk."
        )
    elif ctx.model is not None:
        imp = ctx.model.feature_importance().head(15)
        imp["feature"] = [feature_words(f, meta["freq"]) for f in imp["feature"]]
        st.altair_chart(importance_bars(imp), width="stretch")

st.subheader("Versions")
with open_session(engine()) as s:
    versions = actions.model_versions(ctx.principal, session=s, tenant=ctx.tenant)
table = pd.DataFrame(
    [
        {
            "version": v["version"],
            "current": v["version"] == ctx.version,
            "trained": local_time(v.get("trained_at")),
            "data_end": v.get("data_end"),
            "mase": v.get("metrics", {}).get("model", {}).get("mase"),
            "naive_mase": v.get("metrics", {}).get("naive", {}).get("mase"),
        }
        for v in versions
    ]
)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        "version": "Version",
        "current": "In use",
        "trained": "Trained",
        "data_end": "Data to",
        "mase": st.column_config.NumberColumn("Error (MASE)", format="%.2f"),
        "naive_mase": st.column_config.NumberColumn("Last price's error (MASE)", format="%.2f"),
    },
)
older = [v["version"] for v in versions if v["version"] != ctx.version]
if older and ctx.principal.can("retrain"):
    c1, c2 = st.columns([3, 1])
    target = c1.selectbox("Roll back to", older, key="rollback_to")
    if c2.button("Roll back", key="rollback"):
        try:
            with open_session(engine()) as s:
                actions.rollback(ctx.principal, session=s, tenant=ctx.tenant, version=target)
        except (store.ModelStoreError, PermissionDenied) as exc:
            st.error(plain(f"Cannot roll back: {exc}"))
        else:
            st.rerun()
