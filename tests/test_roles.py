"""Who manages which accounts and companies, checked by the library (SQLite and MariaDB), and the
Admin page as a company's administrator sees it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from procurement import auth
from procurement.auth import PermissionDenied, Principal
from procurement.config import get_settings
from procurement.db import catalog, make_engine, open_session
from procurement.db.models import AppUser

PW = "correct horse battery"
ROOT = Path(__file__).resolve().parent.parent
INJECTED = "![x](https://evil.example/a.png)"


@pytest.fixture
def accounts(db) -> dict[str, Principal]:
    """Companies a and b; a global admin, an admin and a buyer in each company."""
    out = {}
    with open_session(db) as s, s.begin():
        a = catalog.get_or_create_tenant(s, "a")
        b = catalog.get_or_create_tenant(s, "b")
        for username, role, tid in (
            ("root", "admin", None),
            ("admin-a", "admin", a.id),
            ("buyer-a", "buyer", a.id),
            ("admin-b", "admin", b.id),
            ("buyer-b", "buyer", b.id),
        ):
            auth.create_user(s, username, PW, role, tid)
            out[username] = Principal(username, role, tid)
    return out


def _user(db, username: str) -> AppUser:
    with open_session(db) as s:
        return s.query(AppUser).filter_by(username=username).one()


def test_company_admin_lists_only_the_users_of_their_company(db, accounts) -> None:
    with open_session(db) as s:
        assert [u.username for u in auth.users_managed_by(s, accounts["admin-a"])] == [
            "admin-a",
            "buyer-a",
        ]
        assert len(auth.users_managed_by(s, accounts["root"])) == 5
        with pytest.raises(PermissionDenied):
            auth.users_managed_by(s, accounts["buyer-a"])


@pytest.mark.parametrize("target", ["root", "buyer-b", "admin-b"])
def test_company_admin_cannot_reset_deactivate_or_demote_outside_their_company(
    db, accounts, target: str
) -> None:
    actor = accounts["admin-a"]
    before = _user(db, target)
    for change in (
        lambda s: auth.set_password(s, target, "taken over by a", actor=actor),
        lambda s: auth.set_active(s, target, False, actor=actor),
        lambda s: auth.set_role(s, target, "viewer", actor=actor),
    ):
        with pytest.raises(PermissionDenied), open_session(db) as s, s.begin():
            change(s)
    after = _user(db, target)
    assert (after.password_hash, after.active, after.role) == (
        before.password_hash,
        before.active,
        before.role,
    )


def test_company_admin_creates_users_in_their_company_only(db, accounts) -> None:
    actor = accounts["admin-a"]
    a, b = accounts["buyer-a"].tenant_id, accounts["buyer-b"].tenant_id
    with open_session(db) as s, s.begin():
        auth.add_user(s, "new-a", PW, "viewer", a, actor=actor)
        auth.add_user(s, "second-admin-a", PW, "admin", a, actor=actor)  # a company admin
    for role, tid in (("buyer", b), ("admin", None)):  # another company; a global admin
        with pytest.raises(PermissionDenied), open_session(db) as s, s.begin():
            auth.add_user(s, "intruder", PW, role, tid, actor=actor)
    with open_session(db) as s:
        assert s.query(AppUser).filter_by(username="intruder").count() == 0
        assert _user(db, "new-a").tenant_id == a


def test_company_admin_manages_their_own_users(db, accounts) -> None:
    actor = accounts["admin-a"]
    with open_session(db) as s, s.begin():
        auth.set_password(s, "buyer-a", "a new password", actor=actor)
        auth.set_role(s, "buyer-a", "viewer", actor=actor)
        auth.set_active(s, "buyer-a", False, actor=actor)
    user = _user(db, "buyer-a")
    assert (user.role, user.active) == ("viewer", False)


def test_only_a_global_admin_creates_companies_and_global_admins(db, accounts) -> None:
    for who in ("admin-a", "buyer-a"):
        with pytest.raises(PermissionDenied), open_session(db) as s, s.begin():
            auth.create_company(s, "c", "C", actor=accounts[who])
    with open_session(db) as s, s.begin():
        auth.create_company(s, "c", "C", actor=accounts["root"])
        auth.add_user(s, "root2", PW, "admin", None, actor=accounts["root"])
        auth.set_password(s, "buyer-b", "reset by root", actor=accounts["root"])
    with pytest.raises(ValueError, match="exists"), open_session(db) as s, s.begin():
        auth.create_company(s, "c", "C again", actor=accounts["root"])


def test_the_last_global_admin_cannot_be_deactivated_or_demoted(db, accounts) -> None:
    root = accounts["root"]
    with pytest.raises(ValueError, match="last active global"), open_session(db) as s, s.begin():
        auth.set_active(s, "root", False, actor=root)
    with pytest.raises(ValueError), open_session(db) as s, s.begin():
        auth.set_role(s, "root", "buyer", actor=root)
    assert _user(db, "root").active


def test_system_principal_is_a_global_admin() -> None:
    assert Principal.system().is_global_admin
    assert not Principal("x", "admin", 1).is_global_admin


@pytest.mark.parametrize("slug", ["../x", "a/b", ".hidden", "UPPER", "-dash", "", "a" * 65])
def test_a_company_short_name_that_is_not_a_plain_name_is_refused(session: Session, slug) -> None:
    with pytest.raises(ValueError, match="invalid company short name"), session.begin():
        catalog.get_or_create_tenant(session, slug)
    assert catalog.list_tenants(session) == []


# The Admin page, as a company's administrator, on the app's seeded database ----------------


@pytest.fixture
def company_admin(app_env):
    """An administrator of 'demo' only, removed again afterwards (the database is shared)."""
    eng = make_engine(get_settings().database_url)
    with open_session(eng) as s, s.begin():
        demo = catalog.get_tenant(s, "demo")
        auth.create_user(s, "demo-admin", PW, "admin", demo.id)
        tid = demo.id
    yield Principal("demo-admin", "admin", tid)
    with open_session(eng) as s, s.begin():
        for name in ("demo-admin", INJECTED):
            s.query(AppUser).filter_by(username=name).delete()
    eng.dispose()


def _admin_page(principal: Principal) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = principal.username
    at.session_state["name"] = principal.username
    at.session_state["principal"] = principal
    at.run()
    at.switch_page("pages/admin.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_admin_page_of_a_company_admin_shows_and_offers_their_company_only(
    app_env, company_admin
) -> None:
    at = _admin_page(company_admin)
    listed = set(at.dataframe[0].value["username"])
    assert listed == {"demo-admin", "buyer", "viewer"}  # not the global admin, not other-buyer
    assert set(at.selectbox(key="admin_user").options) == listed
    company = next(sb for sb in at.selectbox if sb.label == "Company")
    assert company.options == ["demo"]  # no "all", no other company
    assert "Create company" not in [b.label for b in at.button]
    assert not [t for t in at.text_input if t.label.startswith("Short name")]


def test_admin_page_shows_names_and_refusals_as_plain_text(app_env, company_admin) -> None:
    """A name like ![x](https://...) is shown as typed, not as an image or a link."""
    at = _admin_page(company_admin)
    at.text_input[0].input(INJECTED)
    at.text_input[2].input(PW)
    at.button[0].click().run()
    assert not at.exception and not at.error
    shown = at.success[0].value
    assert "](" not in shown and "\\]\\(" in shown
    assert shown.replace("\\", "") == f"User {INJECTED} created"
    at.text_input[0].input(INJECTED)  # again: taken, refused with the name in the message
    at.text_input[2].input(PW)
    at.button[0].click().run()
    assert "](" not in at.error[0].value and "is empty or taken" in at.error[0].value


def test_cli_ensure_admin_creates_the_administrator_from_admin_password_and_prints_no_secret(
    tmp_path, monkeypatch, capsys
) -> None:
    """What compose's setup step runs in production."""
    from procurement import cli
    from procurement.db import get_engine

    url = f"sqlite:///{tmp_path / 'p.db'}"
    for k, v in {
        "DATABASE_URL": url,
        "ENVIRONMENT": "production",
        "ADMIN_PASSWORD": "chosen by the operator",
        "COOKIE_KEY": "k" * 32,
    }.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        assert cli.main(["user", "ensure-admin"]) == 0
        assert cli.main(["user", "ensure-admin"]) == 0  # again: nothing to do
    finally:
        get_settings.cache_clear()
        get_engine.cache_clear()
    out = capsys.readouterr().out
    assert "shown once" not in out and "chosen by the operator" not in out
    eng = make_engine(url)
    with open_session(eng) as s:
        admins = [u for u in auth.list_users(s) if u.role == "admin"]
        assert [(u.username, u.tenant_id) for u in admins] == [("admin", None)]
        assert auth.bcrypt.checkpw(b"chosen by the operator", admins[0].password_hash.encode())
    eng.dispose()
