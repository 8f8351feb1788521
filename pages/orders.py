"""Orders page: draft purchase orders per supplier and day, their lines and reasons; buyers and
administrators edit, approve, reject, send and receive them; everyone exports one as PDF or CSV."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from procurement import actions
from procurement.auth import PermissionDenied, Principal
from procurement.db import open_session
from procurement.orders import STATUSES, approval_limit
from ui.money import company_currency, money
from ui.page import engine, page_setup, plain

ctx = page_setup("Orders", need_model=False)
can_act = ctx.principal.can("orders")
# the rule procurement.orders.approve applies: a buyer sees which drafts they can approve
my_limit = approval_limit(ctx.principal.role) if can_act else None
buyer_limit = approval_limit("buyer")


def act(fn: Callable[..., Any], done: str, **kw: Any) -> None:
    """Run one library action in its own transaction; show its error, or rerun with ``done``."""
    try:
        with open_session(engine()) as s, s.begin():
            fn(ctx.principal, session=s, tenant=ctx.tenant, **kw)
    except (PermissionDenied, ValueError, LookupError) as exc:
        st.error(plain(exc))
        return
    st.session_state["orders_flash"] = done
    st.rerun()


if msg := st.session_state.pop("orders_flash", None):
    st.success(msg)

if can_act:
    if st.button(
        "Propose orders now",
        icon=":material/refresh:",
        disabled=ctx.model is None,
        help="Replaces the drafts nobody edited; approved and edited orders stay as they are.",
    ):
        act(
            actions.propose_orders,
            "Draft orders refreshed.",
        )
else:
    st.caption("You can read orders; buyers and administrators act on them.")

c1, c2 = st.columns(2)
statuses = c1.multiselect(
    "Status", list(STATUSES), default=["draft", "approved", "sent"], key="order_status"
)
with open_session(engine()) as s:
    table = actions.list_orders(ctx.principal, session=s, tenant=ctx.tenant, statuses=statuses)
suppliers = sorted(x for x in table["supplier"].dropna().unique())
chosen = c2.multiselect("Supplier", suppliers, key="order_supplier")
if chosen:
    table = table[table["supplier"].isin(chosen)]
cur = company_currency(table)
one_currency = table["currency"].nunique() <= 1


def limit_text(limit: float) -> str:
    return money(limit, cur) if one_currency else f"{limit:,.0f} (in each order's currency)"


# the drafts this user can approve are easy to find: counted, and listed first
drafts = table[table["status"] == "draft"]
if my_limit is not None and len(drafts):
    n_above = int((drafts["total"] > my_limit).sum())
    n_mine = len(drafts) - n_above
    st.caption(
        f"Drafts: {n_mine} within your approval limit of {limit_text(my_limit)}"
        f"{' (listed first)' if n_mine and n_above else ''}, {n_above} need an administrator."
    )
    mine_first = ~((table["status"] == "draft") & (table["total"] <= my_limit))
    table = table.iloc[mine_first.to_numpy().argsort(kind="stable")]
elif buyer_limit is not None and len(drafts):
    above = int((drafts["total"] > buyer_limit).sum())
    if above:
        st.caption(
            f"Drafts: {above} of {len(drafts)} above the buyers' approval limit of "
            f"{limit_text(buyer_limit)}: an administrator approves them."
        )

if table.empty:
    st.info(
        "No orders with these filters. Buyers press **Propose orders now**, or wait for the "
        "daily refresh."
    )
    st.stop()

sums = table.groupby("currency")["total"].sum()
st.caption(
    f"{len(table)} orders, total " + " + ".join(money(v, str(c), 2) for c, v in sums.items())
)
shown = table.drop(columns=["edited_by"] + (["currency"] if one_currency else []))
order_columns: dict[str, Any] = {}
if my_limit is not None:
    shown.insert(
        int(shown.columns.get_loc("total")) + 1,
        "approver",
        [
            ("you" if total <= my_limit else "an administrator") if status == "draft" else ""
            for status, total in zip(table["status"], table["total"], strict=True)
        ],
    )
    order_columns["approver"] = st.column_config.TextColumn(
        "Who approves", help=f"Your approval limit is {limit_text(my_limit)}."
    )
st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    column_config=order_columns
    | {
        "id": st.column_config.NumberColumn("Order", format="%d"),
        "supplier": st.column_config.TextColumn("Supplier"),
        "order_date": st.column_config.DateColumn("Order on", format="ddd D MMM YYYY"),
        "status": st.column_config.TextColumn("Status"),
        "lines": st.column_config.NumberColumn("Lines", format="%d"),
        "total": st.column_config.NumberColumn(
            f"Total ({cur})" if one_currency else "Total", format="%,.2f"
        ),
        "currency": st.column_config.TextColumn("Currency"),
        "created_by": st.column_config.TextColumn("Created by"),
    },
)


def order_label(i: int) -> str:
    row = table.loc[table["id"] == i].iloc[0]
    return (
        f"#{i} {row['supplier'] or '(no supplier)'} {row['order_date']:%d %b} "
        f"({row['status']}, {money(row['total'], str(row['currency']))})"
    )


order_id = st.selectbox("Order", table["id"].tolist(), format_func=order_label, key="order_id")
with open_session(engine()) as s:
    view = actions.get_order(ctx.principal, session=s, tenant=ctx.tenant, order_id=int(order_id))

m1, m2, m3, m4 = st.columns(4)
m1.metric("Supplier", view.supplier)
m2.metric("Status", view.status)
m3.metric("Lines", len(view.lines))
m4.metric("Total", money(view.total, view.currency, 2))
# a buyer gets no Approve button bound to fail, and is told why
over_my_limit = (
    view.status == "draft" and can_act and my_limit is not None and view.total > my_limit
)
if over_my_limit:
    st.info(
        f"Above your approval limit of {money(my_limit, view.currency)}: an administrator "
        "approves it. You can lower quantities and save, or reject it.",
        icon=":material/admin_panel_settings:",
    )
elif view.needs_admin and view.status == "draft":
    st.warning("This order is above the buyers' approval limit: an administrator must approve it.")

draft = view.status == "draft" and can_act
lines = view.lines.drop(columns=["line_id"])
column_config = {
    "sku": st.column_config.TextColumn("SKU"),
    "name": st.column_config.TextColumn("Product"),
    "unit": st.column_config.TextColumn("Unit"),
    "quantity": st.column_config.NumberColumn("Quantity", min_value=0.0, format="%,.0f"),
    "unit_price": st.column_config.NumberColumn(f"Unit price ({view.currency})", format="%,.2f"),
    "amount": st.column_config.NumberColumn(f"Amount ({view.currency})", format="%,.2f"),
    "delivery_date": st.column_config.DateColumn("Delivery", format="ddd DD MMM"),
    "reason": st.column_config.TextColumn("Why", width="large"),
}
if draft:
    edited = st.data_editor(
        lines,
        hide_index=True,
        width="stretch",
        disabled=[c for c in lines.columns if c != "quantity"],
        column_config=column_config,
        key=f"lines_{view.id}",
    )
    new_date = st.date_input("Order date", value=view.order_date, key=f"date_{view.id}")
    if st.button("Save changes", icon=":material/save:"):

        def save(p: Principal, **kw: Any) -> None:
            for line_id, old, new in zip(
                view.lines["line_id"], view.lines["quantity"], edited["quantity"], strict=True
            ):
                if float(new) != float(old):
                    actions.edit_line(p, **kw, line_id=int(line_id), quantity=float(new))
            if new_date != view.order_date:
                actions.set_order_date(p, **kw, order_date=new_date)

        act(save, f"Order {view.id} saved.", order_id=view.id)
else:
    st.dataframe(lines, hide_index=True, width="stretch", column_config=column_config)

if can_act:
    buttons = {
        "draft": [
            *([] if over_my_limit else [("Approve", actions.approve, "approved")]),
            ("Reject", actions.reject, "rejected"),
        ],
        "approved": [
            ("Mark sent", actions.mark_sent, "marked sent"),
            ("Received", actions.receive, "received; stock updated"),
            ("Cancel", actions.reject, "cancelled"),
        ],
        "sent": [
            ("Received", actions.receive, "received; stock updated"),
            ("Cancel", actions.reject, "cancelled"),
        ],
    }.get(view.status, [])
    cols = st.columns(max(len(buttons), 1) + 2)
    for col, (label, fn, what) in zip(cols, buttons, strict=False):
        if col.button(label, key=f"{label}_{view.id}"):
            act(fn, f"Order {view.id} {what}.", order_id=view.id)

d1, d2 = st.columns(2)
with open_session(engine()) as s:
    pdf = actions.export_pdf(ctx.principal, session=s, tenant=ctx.tenant, order_id=view.id)
    csv = actions.export_csv(ctx.principal, session=s, tenant=ctx.tenant, order_id=view.id)
d1.download_button(
    "Download PDF",
    pdf,
    file_name=f"order-{view.id}.pdf",
    mime="application/pdf",
    icon=":material/picture_as_pdf:",
    on_click="ignore",
)
d2.download_button(
    "Download CSV",
    csv,
    file_name=f"order-{view.id}.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click="ignore",
)
st.subheader("History")
st.dataframe(
    view.history,
    hide_index=True,
    width="stretch",
    column_config={
        "status": st.column_config.TextColumn("Status"),
        "by": st.column_config.TextColumn("By"),
        "at": st.column_config.DatetimeColumn("When (UTC)", format="D MMM YYYY, HH:mm"),
        "note": st.column_config.TextColumn("Note", width="large"),
    },
)
