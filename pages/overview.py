import streamlit as st

from procurement import buying
from ui.page import advice_for, page_setup

ctx = page_setup("Overview")
recs = advice_for(ctx)
s = buying.summary(recs)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Cheaper to buy later", f"{s['cheaper_later']} of {s['products']}")
c2.metric("Expected saving, following all advice", f"{s['total_saving']:,.0f}")
c3.metric("Rising: buy now", s["rising"])
last = ctx.freshness["last"]
c4.metric("Latest price", f"{last:%d %b %Y}" if last else "-")

st.subheader("Products")
table = recs.assign(
    link="/product?sku=" + recs["sku"],
    advice=recs["reason"],
)[
    [
        "link",
        "name",
        "category",
        "supplier",
        "buy_date",
        "saving_pct",
        "saving_total",
        "confidence",
        "advice",
    ]
]
table = table.sort_values("saving_total", ascending=False)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        "link": st.column_config.LinkColumn("SKU", display_text=r"sku=(.*)"),
        "name": "Product",
        "category": "Category",
        "supplier": "Supplier",
        "advice": st.column_config.TextColumn("Advice", width="large"),
        "buy_date": st.column_config.DateColumn("Buy on", format="ddd D MMM"),
        "saving_pct": st.column_config.NumberColumn("Saving %", format="%.1f%%"),
        "saving_total": st.column_config.NumberColumn("Saving (qty x price)", format="%.0f"),
        "confidence": st.column_config.ProgressColumn(
            "Confidence", min_value=0.0, max_value=1.0, format="percent"
        ),
    },
)
