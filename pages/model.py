import pandas as pd
import streamlit as st

from pages.charts import importance_bars, metric_bars
from pages.common import engine, page_setup
from procurement.config import get_settings
from procurement.db import session
from procurement.forecast import store
from procurement.forecast.train import train_global_lgbm_model

ctx = page_setup("Model", need_model=False)
st_settings = get_settings()


def retrain() -> None:
    with st.status("Retraining the model...", expanded=True) as status:
        bar = st.progress(0.0)

        def progress(frac: float, msg: str) -> None:
            bar.progress(min(max(frac, 0.0), 1.0), text=msg)

        try:
            with session(engine()) as s, s.begin():
                res = train_global_lgbm_model(s, ctx.tenant, progress=progress)
        except Exception as exc:  # show any failure to the buyer; the old model stays current
            status.update(label=f"Retraining failed: {exc}", state="error")
            return
        status.update(label=f"Model {res.version} is now in use", state="complete")
    st.rerun()


if st.button("Retrain", type="primary", icon=":material/refresh:", key="retrain"):
    retrain()

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
c2.metric("Trained", pd.Timestamp(meta["trained_at"]).strftime("%d %b %H:%M"))
c3.metric("Products", meta["n_products"])
c4.metric("Training time", f"{meta.get('training_seconds', 0):.0f} s")
st.caption(
    f"Version `{meta['version']}`. Data {meta['data_start']} to {meta['data_end']} ({meta['freq']}), horizon {meta['horizon']}, "
    f"LightGBM {meta['libraries']['lightgbm']}, mlforecast {meta['libraries']['mlforecast']}."
)

left, right = st.columns(2)
with left:
    st.subheader("Backtest against naive forecasts")
    rows = [{"forecast": k, **m[k]} for k in ("model", "naive", "seasonal_naive")]
    st.altair_chart(metric_bars(pd.DataFrame(rows)), width="stretch")
    st.caption(
        f"Out-of-sample over the last {st_settings.conformal_windows} x {meta['horizon']} periods, "
        f"{m['n_forecasts']:,} forecasts of {m['n_series']} products. "
        f"Trust in the model over the last price: {m.get('shrink_to_naive', 1):.0%}."
    )
with right:
    st.subheader("What the model looks at")
    imp = ctx.model.feature_importance().head(15) if ctx.model else pd.DataFrame()
    if len(imp):
        st.altair_chart(importance_bars(imp), width="stretch")

st.subheader("Versions")
versions = store.list_versions(st_settings.model_dir, ctx.tenant)
table = pd.DataFrame(
    [
        {
            "version": v["version"],
            "current": v["version"] == ctx.version,
            "trained_at": v.get("trained_at"),
            "data_end": v.get("data_end"),
            "mase": v.get("metrics", {}).get("model", {}).get("mase"),
            "naive_mase": v.get("metrics", {}).get("naive", {}).get("mase"),
        }
        for v in versions
    ]
)
st.dataframe(table, hide_index=True, width="stretch")
older = [v["version"] for v in versions if v["version"] != ctx.version]
if older:
    c1, c2 = st.columns([3, 1])
    target = c1.selectbox("Roll back to", older, key="rollback_to")
    if c2.button("Roll back", key="rollback"):
        store.set_current(st_settings.model_dir, ctx.tenant, target)
        st.rerun()
