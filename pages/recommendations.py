import pandas as pd
import streamlit as st

from procurement.buying import ADVICE_COLUMNS
from procurement.export import to_csv_bytes
from procurement.recommend import price_text
from ui.money import (
    LATEST_HELP,
    PRICES_HELP,
    SAVING_HELP,
    TARGET_HELP,
    company_currency,
    shown_percent,
)
from ui.page import advice_for, how_sure_column, page_setup

ctx = page_setup("Recommendations")
recs = advice_for(ctx)
cur = company_currency(recs)

c1, c2, c3 = st.columns(3)
cats = c1.multiselect("Category", sorted(recs["category"].dropna().unique()))
sups = c2.multiselect("Supplier", sorted(recs["supplier"].dropna().unique()))
only_wait = c3.toggle("Only products cheaper later")
view = recs
if cats:
    view = view[view["category"].isin(cats)]
if sups:
    view = view[view["supplier"].isin(sups)]
if only_wait:
    view = view[~view["buy_now"]]

cols = ADVICE_COLUMNS
# the worklist: the most money at stake first, then the earliest buy day
view = view[cols].sort_values(["saving_total", "buy_date"], ascending=[False, True])
shown = view.assign(
    link="/product?sku=" + view["sku"],
    confidence=shown_percent(view["confidence"]),
    # a blank, not "None", where no promotion is due or the advice waits for no target price
    promotion_due=pd.to_datetime(view["promotion_due"]).dt.strftime("%a %d %b").fillna(""),
    # written as the advice's reason writes it (a part at 0.0123 is not "0.01")
    target_price=view["target_price"].map(lambda v: "" if pd.isna(v) else price_text(v)),
    last_buy_date=view["last_buy_date"].dt.strftime("%a %d %b").fillna(""),
)
st.caption(f"{len(view):,} products, most money at stake first")
st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    # what to do, how much it saves and how sure first; the prices behind it after
    column_order=[
        "link",
        "name",
        "buy_date",
        "target_price",
        "last_buy_date",
        "saving_total",
        "confidence",
        "reason",
        "promotion_due",
        "saving_pct",
        "first_price",
        "buy_price",
        "saving",
        "quantity",
        "category",
        "supplier",
    ],
    column_config={
        "link": st.column_config.LinkColumn("SKU", display_text=r"sku=(.*)"),
        "name": "Product",
        "category": "Category",
        "supplier": "Supplier",
        "buy_date": st.column_config.DateColumn("Buy on", format="ddd DD MMM"),
        "target_price": st.column_config.TextColumn(
            f"Target price ({cur})", help=TARGET_HELP, alignment="right"
        ),
        "last_buy_date": st.column_config.TextColumn("At the latest", help=LATEST_HELP),
        "first_price": st.column_config.NumberColumn(
            f"Forecast today ({cur})", format="%,.2f", help=PRICES_HELP
        ),
        "buy_price": st.column_config.NumberColumn(
            f"Forecast on buy day ({cur})", format="%,.2f", help=PRICES_HELP
        ),
        "saving": st.column_config.NumberColumn(
            f"Expected saving / unit ({cur})", format="%,.2f", help=SAVING_HELP
        ),
        "saving_pct": st.column_config.NumberColumn(
            "Expected saving %", format="%.1f%%", help=SAVING_HELP
        ),
        "quantity": st.column_config.NumberColumn("Quantity", format="%,d"),
        "saving_total": st.column_config.NumberColumn(
            f"Expected saving total ({cur})", format="%,.0f", help=SAVING_HELP
        ),
        "confidence": how_sure_column(),
        "reason": st.column_config.TextColumn("Advice", width="large"),
        "promotion_due": st.column_config.TextColumn(
            "Promotion due",
            help=(
                "When the product's next promotion is due, from the gaps between its past ones: "
                "only products whose forecast follows a promotion calendar, when it falls within "
                "the forecast's days."
            ),
        ),
    },
)
csv = view.assign(
    buy_date=view["buy_date"].dt.date,
    last_buy_date=view["last_buy_date"].dt.date,
    first_price=view["first_price"].round(2),
    buy_price=view["buy_price"].round(2),
    target_price=view["target_price"].round(2),
    saving=view["saving"].round(2),
    saving_pct=view["saving_pct"].round(1),
    quantity=view["quantity"].round(0).astype("Int64"),
    saving_total=view["saving_total"].round(0),
    confidence=view["confidence"].clip(upper=0.99).round(3),
)
st.download_button(
    "Download CSV",
    # written when clicked, not on every run (7% of the app's time under load)
    lambda: to_csv_bytes(csv),
    file_name=f"recommendations-{ctx.tenant}.csv",
    mime="text/csv",
    icon=":material/download:",
    # a rerun on the click would drop the deferred file the click asks for: no download
    on_click="ignore",
)
