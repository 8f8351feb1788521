import streamlit as st

from procurement import buying
from ui.charts import buy_calendar, saving_by
from ui.features import span_words
from ui.money import company_currency, money, shown_percent
from ui.page import advice_for, catalog_for, how_sure_column, page_setup, plain

ctx = page_setup("Overview")
recs = advice_for(ctx)
products = catalog_for(ctx)
cur = company_currency(products)
s = buying.summary(recs)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Cheaper to buy later", f"{s['cheaper_later']:,} of {s['products']:,}")
c2.metric(
    "Expected saving",
    money(s["total_saving"], cur),
    help="Following all advice, for the quantity each product needs over the forecast horizon.",
)
c3.metric(
    "Rising: buy now",
    f"{s['rising']:,}",
    help="Products to buy now because their price is forecast to rise over the horizon.",
)
last = ctx.freshness["last"]
# a date, not a price: the day of the newest price the advice is based on
c4.metric(
    "Prices up to",
    f"{last:%d %b %Y}" if last else "-",
    help="The day of the newest price in the data; the forecasts and advice start from it.",
)

short, new = buying.unforecast(products, recs, ctx.model)


def _listed(skus: list[str]) -> str:
    return ", ".join(skus[:8]) + (f" and {len(skus) - 8:,} more" if len(skus) > 8 else "")


def _products_have(n: int) -> str:
    return "1 product has" if n == 1 else f"{n:,} products have"


if short and ctx.model is not None:
    needs = span_words(int(ctx.model.min_periods), ctx.model.spec.freq)
    st.info(
        plain(
            f"{_products_have(len(short))} too little price history to forecast "
            f"({_listed(short)}): a forecast needs {needs} of prices. They get one at the first "
            "retrain after that."
        ),
        icon=":material/hourglass_empty:",
    )
if new:
    st.info(
        plain(
            f"{_products_have(len(new))} no forecast yet ({_listed(new)}): they arrived after "
            f"model {ctx.version} was trained. Retrain to include them."
        ),
        icon=":material/new_releases:",
    )
    st.page_link("pages/model.py", label="Retrain on the Model page", icon=":material/refresh:")

left, middle, right = st.columns([2, 2, 3])
with left:
    st.vega_lite_chart(spec=saving_by(recs, "category", "Saving by category", cur), width="stretch")
with middle:
    st.vega_lite_chart(spec=saving_by(recs, "supplier", "Saving by supplier", cur), width="stretch")
with right:
    st.vega_lite_chart(spec=buy_calendar(recs, cur), width="stretch")

st.subheader("Every product, most money at stake first")
table = recs.assign(
    link="/product?sku=" + recs["sku"],
    confidence_pct=shown_percent(recs["confidence"]),
    saving_total=recs["saving_total"].round(0),
)[
    [
        "link",
        "buy_date",
        "saving_total",
        "confidence_pct",
        "reason",
        "name",
        "saving_pct",
        "category",
        "supplier",
    ]
].sort_values("saving_total", ascending=False)
# What to do, how much it saves and how sure, in the width of the page beside the sidebar at
# 1280 px (about 818 px): the product's name, category, supplier and saving in percent (also in
# the advice) follow, a scroll away. The columns had run off the right edge with the advice.
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_order=list(table.columns),
    column_config={
        "link": st.column_config.LinkColumn("SKU", display_text=r"sku=(.*)", width=90),
        "buy_date": st.column_config.DateColumn("Buy on", format="ddd DD MMM", width=95),
        "saving_total": st.column_config.NumberColumn(
            f"Saving ({cur})", format="localized", width=100
        ),
        "confidence_pct": how_sure_column(width=110),
        "reason": st.column_config.TextColumn("Advice", width=420),
        "name": "Product",
        "saving_pct": st.column_config.NumberColumn("Saving %", format="%.1f%%"),
        "category": "Category",
        "supplier": "Supplier",
    },
)
