"""Assistant: ask about prices, forecasts, stock and orders in plain words (Portuguese or English).

The page shows and asks; ``procurement.assistant`` answers as the signed-in user and keeps the
conversation per user and company in the database.
"""

import streamlit as st

from procurement import assistant
from procurement.config import get_settings
from procurement.db import get_engine, open_session
from ui.page import page_setup, plain

ctx = page_setup("Assistant", need_model=False)
settings = get_settings()
engine = get_engine(settings.database_url)
if settings.assistant_engine == "llm":
    st.caption(
        plain(
            f"Answers by {settings.assistant_model} at {settings.assistant_url}, with tools that "
            "read this company's data as you. Drafts only: orders wait for approval."
        )
    )
else:
    st.caption(
        "Answers from this company's data as you may see it, in Portuguese or English, without "
        "any network. It can draft an order; it never approves or sends one."
    )


def show(message: dict) -> None:
    with st.chat_message(message["role"]):
        st.markdown(plain(message["content"]))
        if message["role"] != "assistant":
            return
        skus = list(dict.fromkeys(s["sku"] for s in message.get("sources") or [] if s.get("sku")))
        drafted = any(c.get("name") == "draft_order" for c in message.get("tool_calls") or [])
        links = skus[:5]
        if not links and not drafted:
            return
        cols = st.columns(len(links) + drafted)
        for col, sku in zip(cols, links, strict=False):
            col.page_link(
                "pages/product.py",
                label=f"{sku} on the Product page" if len(links) < 3 else sku,
                icon=":material/show_chart:",
                query_params={"sku": sku},
                help=f"Open {sku} on the Product page",
            )
        if drafted:
            cols[-1].page_link(
                "pages/orders.py", label="Orders page", icon=":material/receipt_long:"
            )


with open_session(engine) as s:
    past = assistant.history(ctx.principal, session=s, tenant=ctx.tenant)
for message in past:
    show(message)
if not past:
    st.info(
        "Try: *when should I buy SKU-00003?* · *qual o melhor dia para comprar café?* · "
        "*is 12,50 a good price for SKU-00003?* · *how much stock of SKU-00003 is left?* · "
        "*crie um pedido de 200 unidades do SKU-00003* · *show my draft orders*",
        icon=":material/chat:",
    )

question = st.chat_input("Ask about prices, forecasts, stock or orders", key="question")
if question:
    show({"role": "user", "content": question})
    with st.spinner("Looking it up..."), open_session(engine) as s, s.begin():
        turns = [{"role": m["role"], "content": m["content"]} for m in past]
        reply = assistant.answer(
            ctx.principal, question, session=s, tenant=ctx.tenant, history=turns
        )
        assistant.remember(
            ctx.principal, session=s, tenant=ctx.tenant, question=question, reply=reply
        )
    show({"role": "assistant", **reply.to_dict(), "content": reply.answer})
    past.append({"role": "user", "content": question})

if past and st.button("Clear conversation", icon=":material/delete_sweep:", key="clear"):
    with open_session(engine) as s, s.begin():
        assistant.forget(ctx.principal, session=s, tenant=ctx.tenant)
    st.rerun()
