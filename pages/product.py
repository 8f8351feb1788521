import math

import pandas as pd
import streamlit as st

from procurement import actions, buying
from procurement.db import open_session
from ui.charts import price_forecast
from ui.money import money, percent
from ui.page import catalog_for, engine, page_setup, plain

ctx = page_setup("Product")
assert ctx.model is not None
products = catalog_for(ctx)
forecastable = products[products["sku"].isin(ctx.model.last_price)]
skus = forecastable["sku"].tolist()
wanted = st.query_params.get("sku")
if wanted and wanted not in skus:
    if wanted in set(products["sku"]):
        st.warning(
            plain(
                f"{wanted} has no forecast yet: it arrived after model {ctx.version} was "
                "trained. Retrain on the Model page to include it."
            )
        )
    else:
        st.warning(plain(f"There is no product {wanted} in this company's catalog."))
index = skus.index(wanted) if wanted in skus else 0
names = dict(zip(products["sku"], products["name"], strict=True))
sku = st.selectbox(
    "Product", skus, index=index, format_func=lambda s: f"{s} - {names.get(s, '')}", key="product"
)
if st.query_params.get("sku") != sku:
    st.query_params["sku"] = sku
row = products.set_index("sku").loc[sku]
with open_session(engine()) as s:
    default = actions.product_advice(ctx.principal, session=s, tenant=ctx.tenant, sku=sku)
    # three months of history, or three times the forecast's span for weekly and monthly prices
    dates = pd.to_datetime(default.forecast["date"])
    span = (dates.max() - dates.min()).days if len(dates) else 0
    hist = actions.price_history(
        ctx.principal, session=s, tenant=ctx.tenant, sku=sku, days=max(90, 3 * span)
    )
    # measured once per model version for the whole catalog and shared by every buyer
    drivers = actions.driver_effects(ctx.principal, session=s, tenant=ctx.tenant, sku=sku)


@st.fragment
def what_if() -> None:
    left, right = st.columns([1, 3])
    base = default.decision
    with left:
        st.markdown("**What if the drivers move?**")
        overrides = {}
        if not drivers:
            st.caption(
                "This company's model uses no external drivers: prices follow their own history."
            )
        for key, label, effect in drivers:
            pct = st.slider(
                f"{label}, % change over the horizon",
                -30,
                30,
                0,
                1,
                key=f"whatif_{key}",
                help=f"Measured: +20% moves this product's last forecast by {effect:+.1f}%.",
            )
            overrides[key] = 1 + pct / 100
            if abs(effect) < 0.5:
                st.caption(
                    f"This product's price does not follow the {label.lower()}: "
                    f"+20% moves its forecast by {effect:+.1f}%."
                )
        st.markdown("**Your situation**")
        qty = float(
            st.number_input("Quantity needed", 0, value=int(base.quantity), step=1, key="qty")
        )
        on_hand = st.number_input(
            "Stock on hand",
            0,
            value=int(base.on_hand) if math.isfinite(base.on_hand) else 0,
            step=1,
            key="on_hand",
            help="Left at 0 when the catalog has no stock figure: then waiting is not capped.",
        )
        lead = st.number_input("Lead time (days)", 0, 90, base.lead_time_days, key="lead")
        conf = st.slider(
            "How sure must a saving be?",
            50,
            99,
            min(99, round(base.min_confidence * 100)),
            1,
            format="%d%%",
            key="conf",
        )
    unknown_stock = not math.isfinite(base.on_hand) and on_hand == 0
    decision = buying.Decision(
        qty, float("inf") if unknown_stock else float(on_hand), base.daily_demand, lead, conf / 100
    )
    if decision == base and not any(v != 1 for v in overrides.values()):
        advice = default
    else:
        with open_session(engine()) as s:
            advice = actions.product_advice(
                ctx.principal,
                session=s,
                tenant=ctx.tenant,
                sku=sku,
                decision=decision,
                overrides=overrides,
            )
    rec = advice.rec
    targeted = pd.notna(rec.get("target_price"))  # the advice waits for a target price
    with right:
        if rec["buy_now"]:
            st.warning(f"**{rec['reason']}**", icon=":material/shopping_cart:")
        else:
            st.success(f"**{rec['reason']}**", icon=":material/event:")
        c1, c2, c3 = st.columns(3)
        cur = row["currency"] or "USD"
        newest = (
            f"the newest stored price is {money(hist['price'].iloc[-1], cur, 2)} on "
            f"{pd.Timestamp(hist['date'].iloc[-1]):%a %d %b}"
            if len(hist)
            else "no price is stored yet"
        )
        c1.metric(
            "Forecast today",
            money(rec["first_price"], cur, 2),
            help=f"The model's price for today, where waiting is measured from; {newest}.",
        )
        c2.metric(
            f"Forecast on {rec['buy_date']:%a %d %b}" if not rec["buy_now"] else "Buy today",
            money(rec["buy_price"], cur, 2),
            f"{(rec['buy_price'] / rec['first_price'] - 1) * 100:+.1f}% vs today"
            if not rec["buy_now"] and rec["first_price"]
            else None,
            delta_color="inverse",
            help=(
                "The forecast price on the buy day, and how far it is from today's. The saving "
                "beside it is what to expect: the forecast's gap weighed by how often such "
                "forecasts came true in the backtest."
                + (
                    " It is also the target price: buy on the first day the price is at or "
                    f"below it, by {rec['last_buy_date']:%a %d %b} at the latest."
                    if targeted
                    else ""
                )
            ),
        )
        c3.metric(
            "Expected saving",
            money(rec["saving_total"], cur),
            help=(
                f"For {qty:,.0f} {row['unit'] or 'units'} (the quantity on the left). How sure: "
                f"{percent(rec['confidence'])} that following the advice pays less than "
                "today."
            ),
        )
        st.vega_lite_chart(
            spec=price_forecast(
                hist,
                advice.forecast,
                rec["buy_date"],
                rec.get("target_price"),
                rec.get("last_buy_date"),
            ),
            width="stretch",
        )
        st.caption(
            plain(
                "Shaded: 80% and 95% intervals. "
                + (
                    "Orange line: the target price, until the last day to wait for it. "
                    if targeted
                    else ""
                )
                + "Drag to pan, scroll to zoom. "
                f"Unit: {row['unit']}, supplier: {row['supplier'] or '-'}, "
                f"category: {row['category']}. Model {advice.version}, data to "
                f"{advice.data_end:%d %b %Y}."
            )
        )
        if default.promotions:  # what the forecast's dip is made of, beside the chart
            st.caption(default.promotions)


what_if()
if default.rec["buy_now"] is not None:
    st.caption(f"Without what-if changes: {default.rec['reason']}.")
if default.record:
    st.caption(default.record)
