"""The Orders page with AppTest on the seeded app database: buyers propose and act, viewers read."""

from __future__ import annotations

from pathlib import Path

from conftest import USERS
from streamlit.testing.v1 import AppTest

from procurement import auth
from procurement.config import get_settings
from procurement.db import catalog, make_engine, open_session

ROOT = Path(__file__).resolve().parent.parent


def _page(user: str) -> AppTest:
    role, tenant = next((r, t) for u, r, t in USERS if u == user)
    with open_session(make_engine(get_settings().database_url)) as s:
        tid = None if tenant is None else catalog.get_tenant(s, tenant).id
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = user
    at.session_state["name"] = user
    at.session_state["principal"] = auth.Principal(user, role, tid)
    at.run()
    at.switch_page("pages/orders.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _button(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    return next(b for b in at.button if b.label == label)


def test_orders_page_buyer_proposes_and_approves_and_viewer_only_reads(app_env) -> None:
    at = _page("buyer")
    assert at.title[0].value == "Orders"
    _button(at, "Propose orders now").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert [s.value for s in at.success] == ["Draft orders refreshed."]
    table = at.dataframe[0].value
    assert len(table) >= 1 and set(table["status"]) == {"draft"}
    assert at.selectbox(key="order_id").value == table["id"].iloc[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "draft" and int(metrics["Lines"]) >= 1
    downloads = at.get("download_button")
    assert [d.label for d in downloads] == ["Download PDF", "Download CSV"]
    assert all(d.proto.ignore_rerun for d in downloads)  # a download does not rerun the page

    _button(at, "Approve").click().run()
    needs_admin = any("approval limit" in e.value for e in at.error)
    if not needs_admin:
        assert "approved" in at.success[0].value

    viewer = _page("viewer")
    assert not [b for b in viewer.button if b.label in ("Propose orders now", "Approve")]
    assert "You can read orders" in viewer.caption[0].value or any(
        "You can read orders" in c.value for c in viewer.caption
    )
    assert len(viewer.dataframe[0].value) >= 1


def _labels(at: AppTest) -> dict[str, str]:
    """Every table's column headers on the page: column name -> header shown."""
    import json

    out: dict[str, str] = {}
    for df in at.dataframe:
        for name, config in json.loads(df.proto.columns or "{}").items():
            out.setdefault(name, config.get("label", name))
    return out


def _proposed(user: str) -> AppTest:
    at = _page(user)
    _button(at, "Propose orders now").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_orders_page_buyer_gets_no_approve_button_above_the_limit_but_a_note(app_env) -> None:
    from procurement.orders import draft_order

    limit = get_settings().approval_limits["buyer"]
    at = _proposed("buyer")
    table = at.dataframe[0].value
    above = table[(table["status"] == "draft") & (table["total"] > limit)]
    assert len(above) >= 1
    at.selectbox(key="order_id").set_value(int(above["id"].iloc[0])).run()
    labels = [b.label for b in at.button]
    assert "Approve" not in labels and "Reject" in labels
    assert any(
        "Above your approval limit of USD 10,000: an administrator approves it" in i.value
        for i in at.info
    ), [i.value for i in at.info]
    assert not at.error

    # a small draft of one unit, within the limit: counted, listed first, and approvable
    sku = at.dataframe[1].value["sku"].iloc[0]
    with open_session(make_engine(get_settings().database_url)) as s, s.begin():
        buyer = at.session_state["principal"]
        small = draft_order(buyer, session=s, tenant="demo", sku=sku, quantity=1).id
    at.run()
    table = at.dataframe[0].value
    drafts = table[table["status"] == "draft"]
    within = drafts[drafts["total"] <= limit]
    assert small in set(within["id"]) and len(above) <= len(drafts) - len(within)
    assert (
        f"Drafts: {len(within)} within your approval limit of USD 10,000 (listed first), "
        f"{len(drafts) - len(within)} need an administrator." in [c.value for c in at.caption]
    )
    assert list(table["id"][: len(within)]) == list(within["id"])
    assert list(drafts["approver"]) == ["you"] * len(within) + ["an administrator"] * (
        len(drafts) - len(within)
    )
    at.selectbox(key="order_id").set_value(small).run()
    assert not [i for i in at.info if "Above your approval limit" in i.value]
    _button(at, "Approve").click().run()
    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value == f"Order {small} approved."


def test_orders_page_admin_can_approve_an_order_above_the_buyers_limit(app_env) -> None:
    limit = get_settings().approval_limits["buyer"]
    at = _proposed("admin")
    table = at.dataframe[0].value
    drafts = table[table["status"] == "draft"]
    above = drafts[drafts["total"] > limit]
    assert len(above) >= 1 and "approver" not in table.columns
    assert (
        f"Drafts: {len(above)} of {len(drafts)} above the buyers' approval limit of USD 10,000: "
        "an administrator approves them." in [c.value for c in at.caption]
    )
    order = int(above["id"].iloc[0])
    at.selectbox(key="order_id").set_value(order).run()
    assert any("approval limit" in w.value for w in at.warning)
    assert not [i for i in at.info if "Above your approval limit" in i.value]
    _button(at, "Approve").click().run()
    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value == f"Order {order} approved."


def test_orders_page_headers_in_words_and_money_in_the_company_currency(app_env) -> None:
    import re

    at = _proposed("buyer")
    labels = _labels(at)
    for name, header in {
        "supplier": "Supplier",
        "status": "Status",
        "created_by": "Created by",
        "total": "Total (USD)",
        "sku": "SKU",
        "name": "Product",
        "unit_price": "Unit price (USD)",
        "amount": "Amount (USD)",
    }.items():
        assert labels.get(name) == header, (name, labels)
    formats = [
        json_format
        for df in at.dataframe
        for json_format in [df.proto.columns]
        if '"total"' in json_format
    ]
    assert '"format": "%,.2f"' in formats[0]
    total = next(c.value for c in at.caption if " orders, total " in c.value)
    assert re.fullmatch(r"\d+ orders, total USD \d{1,3}(,\d{3})+\.\d\d", total), total
    assert re.fullmatch(
        r"USD \d{1,3}(,\d{3})*\.\d\d", {m.label: m.value for m in at.metric}["Total"]
    )
    viewer = _page("viewer")  # the read-only lines table and the history say it in words too
    assert {"sku", "status", "by", "at"} <= {
        k for k, v in _labels(viewer).items() if v != k and v[0].isupper()
    }
