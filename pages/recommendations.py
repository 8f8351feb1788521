import streamlit as st

from procurement.export import to_csv_bytes
from ui.page import advice_for, page_setup

ctx = page_setup("Recommendations")
recs = advice_for(ctx)

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

cols = [
    "sku",
    "name",
    "category",
    "supplier",
    "buy_date",
    "first_price",
    "buy_price",
    "saving",
    "saving_pct",
    "quantity",
    "saving_total",
    "confidence",
    "reason",
]
view = view[cols].sort_values(["buy_date", "saving_total"], ascending=[True, False])
st.caption(f"{len(view)} products")
st.dataframe(
    view,
    hide_index=True,
    width="stretch",
    column_config={
        "buy_date": st.column_config.DateColumn("Buy on", format="ddd D MMM"),
        "first_price": st.column_config.NumberColumn("Price today", format="%.2f"),
        "buy_price": st.column_config.NumberColumn("Price on buy day", format="%.2f"),
        "saving": st.column_config.NumberColumn("Saving / unit", format="%.2f"),
        "saving_pct": st.column_config.NumberColumn("Saving %", format="%.1f%%"),
        "saving_total": st.column_config.NumberColumn("Saving total", format="%.0f"),
        "confidence": st.column_config.ProgressColumn(
            "Confidence", min_value=0.0, max_value=1.0, format="percent"
        ),
    },
)
st.download_button(
    "Download CSV",
    to_csv_bytes(view.assign(buy_date=view["buy_date"].dt.date)),
    file_name=f"recommendations-{ctx.tenant}.csv",
    mime="text/csv",
    icon=":material/download:",
)
