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
    assert [d.label for d in at.get("download_button")] == ["Download PDF", "Download CSV"]

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
