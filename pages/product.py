import pandas as pd
import streamlit as st

from pages.charts import price_forecast
from pages.common import advice_for, catalog_and_demand, engine, page_setup, plain
from procurement import buying
from procurement.config import get_settings
from procurement.db import session

ctx = page_setup("Product")
assert ctx.model is not None
products, demand = catalog_and_demand(ctx.tenant_id, ctx.version)
products = products[products["sku"].isin(ctx.model.products)]
skus = products["sku"].tolist()
wanted = st.query_params.get("sku")
index = skus.index(wanted) if wanted in skus else 0
names = dict(zip(products["sku"], products["name"], strict=True))
sku = st.selectbox(
    "Product", skus, index=index, format_func=lambda s: f"{s} - {names.get(s, '')}", key="product"
)
if st.query_params.get("sku") != sku:
    st.query_params["sku"] = sku
row = products.set_index("sku").loc[sku]
with session(engine()) as s:
    hist = buying.price_history(s, ctx.tenant_id, sku, days=90)
default_rec = advice_for(ctx).set_index("sku").loc[sku]


@st.cache_data(show_spinner=False, max_entries=256)
def driver_effects(_model, version: str | None, sku: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return buying.driver_effects(_model, sku)


@st.fragment
def what_if() -> None:
    st_settings = get_settings()
    policy = buying.advice_policy(ctx.model, st_settings.min_confidence, st_settings.min_saving_pct)
    left, right = st.columns([1, 3])
    with left:
        st.markdown("**What if the drivers move?**")
        overrides = {}
        drivers = buying.what_if_drivers(ctx.model, sku)
        if not drivers:
            st.caption(
                "This company's model uses no external drivers: prices follow their own history."
            )
        effects = driver_effects(ctx.model, ctx.version, sku)
        for key, label in drivers:
            pct = st.slider(
                f"{label}, % change over the horizon",
                -30,
                30,
                0,
                1,
                key=f"whatif_{key}",
                help=f"Measured: +20% moves this product's last forecast by {effects[key]:+.1f}%.",
            )
            overrides[key] = 1 + pct / 100
            if abs(effects[key]) < 0.5:
                st.caption(
                    f"This product's price does not follow the {label.lower()}: "
                    f"+20% moves its forecast by {effects[key]:+.1f}%."
                )
        st.markdown("**Your situation**")
        dd = float(demand.get(sku, 0.0))
        qty = st.number_input(
            "Quantity needed", 0.0, value=float(round(dd * ctx.model.horizon)), step=1.0, key="qty"
        )
        on_hand = st.number_input(
            "Stock on hand",
            0.0,
            value=float(row["on_hand"] if pd.notna(row["on_hand"]) else 0.0),
            step=1.0,
            key="on_hand",
        )
        lead = st.number_input(
            "Lead time (days)",
            0,
            90,
            int(row["lead_time_days"]) if pd.notna(row["lead_time_days"]) else 0,
            key="lead",
        )
        conf = st.slider(
            "How sure must a saving be?",
            50,
            99,
            min(99, round(policy.min_confidence * 100)),
            1,
            format="%d%%",
            key="conf",
        )
    decision = buying.Decision(qty, on_hand, dd, lead, conf / 100)
    fc, rec = buying.product_advice(ctx.model, sku, decision, overrides, policy.min_saving_pct)
    with right:
        if rec["buy_now"]:
            st.warning(f"**{rec['reason']}**", icon=":material/shopping_cart:")
        else:
            st.success(f"**{rec['reason']}**", icon=":material/event:")
        c1, c2, c3 = st.columns(3)
        c1.metric("Forecast today", f"{rec['first_price']:,.2f}")
        c2.metric(
            "Forecast on buy day",
            f"{rec['buy_price']:,.2f}",
            f"{-rec['saving_pct']:.1f}%",
            delta_color="inverse",
        )
        c3.metric("Saving for the quantity", f"{rec['saving_total']:,.0f}")
        st.altair_chart(price_forecast(hist, fc, rec["buy_date"]), width="stretch")
        st.caption(
            plain(
                "Shaded: 80% and 95% intervals. Drag to pan, scroll to zoom. "
                f"Unit: {row['unit']}, supplier: {row['supplier'] or '-'}, "
                f"category: {row['category']}."
            )
        )


what_if()
if default_rec["buy_now"] is not None:
    st.caption(f"Without what-if changes: {default_rec['reason']}.")
record = buying.backtest_record(ctx.model, sku)
if record:
    st.caption(record)
