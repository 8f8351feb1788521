"""Login, roles and one catalog per company, against SQLite and MariaDB."""

from __future__ import annotations

import logging

import pytest

from procurement import actions, auth, demo, retrain
from procurement.db import catalog, forecasts, history, open_session, runs
from procurement.training import train_global_lgbm_model

PW = "correct horse battery"


@pytest.fixture
def two_companies(db, settings):
    """Companies A and B with the same SKUs; B's prices are 1000x A's, so any leak shows."""
    with open_session(db) as s, s.begin():
        demo.seed_synthetic(s, "a", n_products=6, n_days=150, seed=1)
        demo.seed_synthetic(s, "b", n_products=6, n_days=150, seed=2, price_factor=1000.0)
        a, b = catalog.get_tenant(s, "a"), catalog.get_tenant(s, "b")
        auth.create_user(s, "viewer-a", PW, "viewer", a.id)
        auth.create_user(s, "buyer-a", PW, "buyer", a.id)
        return a.id, b.id


def test_every_query_function_as_company_a_returns_no_row_of_b(db, settings, two_companies) -> None:
    a, b = two_companies
    with open_session(db) as s, s.begin():
        version = train_global_lgbm_model(s, "a", settings).version
    retrain.refresh_forecasts(db, settings, "a", version)
    with open_session(db) as s:
        b_max = history.load_prices(s, b)["price"].min()
        assert history.load_prices(s, a)["price"].max() < b_max
        assert history.load_sales(s, a)["sku"].nunique() == 6
        assert set(history.load_drivers(s, a)["name"]) == set(history.load_drivers(s, b)["name"])
        assert len(history.load_drivers(s, a)) == len(history.load_drivers(s, b))  # own copy each
        products = catalog.load_products(s, a)
        assert len(products) == 6 and set(products["supplier"]).isdisjoint({None})
        for sku in products["sku"]:
            assert history.product_prices(s, a, sku)["price"].max() < b_max
        assert len(history.demand_per_day(s, a)) == 6
        assert forecasts.load_forecast(s, a, version)["y_pred"].max() < b_max
        assert forecasts.load_forecast(s, b, version) is None
        assert all(r.tenant_id == a for r in runs.list_runs(s, a))
        assert history.price_range(s, a)[2] == 6 * 150


def test_viewer_cannot_retrain_or_import_through_the_library(
    db, settings, two_companies, tmp_path
) -> None:
    a, _ = two_companies
    viewer = auth.Principal("viewer-a", "viewer", a)
    with pytest.raises(auth.PermissionDenied):
        retrain.request(db, "a", viewer)
    f = tmp_path / "p.csv"
    f.write_text("sku,date,price\nX,2026-01-01,1\n")
    with pytest.raises(auth.PermissionDenied), open_session(db) as s:
        actions.import_price_file(viewer, session=s, tenant="a", path=f)


def test_buyer_cannot_touch_another_company(db, two_companies, tmp_path) -> None:
    a, _ = two_companies
    buyer = auth.Principal("buyer-a", "buyer", a)
    assert retrain.request(db, "a", buyer)[1]
    with pytest.raises(auth.PermissionDenied):
        retrain.request(db, "b", buyer)
    f = tmp_path / "p.csv"
    f.write_text("sku,date,price\nX,2026-01-01,1\n")
    with pytest.raises(auth.PermissionDenied), open_session(db) as s:
        actions.import_price_file(buyer, session=s, tenant="b", path=f)


def test_wrong_passwords_lock_the_account_until_the_lockout_ends(
    db, settings, two_companies
) -> None:
    import datetime as dt

    for _ in range(settings.max_failed_logins):
        with open_session(db) as s, s.begin():
            auth.record_login(s, "buyer-a", False, settings)
    with open_session(db) as s:
        user = next(u for u in auth.list_users(s) if u.username == "buyer-a")
        assert user.locked_until is not None
        # locked: the login form is not given the account, and an open tab is signed out
        assert "buyer-a" not in auth.credentials(s, settings)["usernames"]
        assert auth.principal_for(s, "buyer-a", settings) is None
        assert "viewer-a" in auth.credentials(s, settings)["usernames"]
        # a signed-in run reads only its own user's entry, and none for a locked one
        creds, who = auth.for_signed_in(s, "Viewer-A ", settings)
        assert list(creds["usernames"]) == ["viewer-a"]
        assert (
            creds["usernames"]["viewer-a"] == auth.credentials(s, settings)["usernames"]["viewer-a"]
        )
        assert who == auth.principal_for(s, "viewer-a", settings)
        assert auth.for_signed_in(s, "buyer-a", settings) == ({"usernames": {}}, None)
        assert auth.for_signed_in(s, "nobody", settings) == ({"usernames": {}}, None)
        # it stays locked for the whole lockout, and only then may log in again
        assert not auth.may_log_in(user, settings, now=user.locked_until - dt.timedelta(minutes=1))
        assert auth.may_log_in(user, settings, now=user.locked_until + dt.timedelta(seconds=1))
        minutes = (user.locked_until - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds()
        assert settings.lockout_minutes * 60 - 60 < minutes <= settings.lockout_minutes * 60


def test_every_attempt_is_logged_and_unknown_names_lock_like_accounts(
    db, settings, two_companies
) -> None:
    """Seven wrong passwords leave seven login events (the two after the lockout refused
    without counting); a name no account has is logged as typed and locks after as many
    failures, so the lockout tells nobody which accounts exist."""
    import datetime as dt

    from procurement.db import users as user_db

    now = dt.datetime(2026, 7, 1, 9, 0)
    lock = dt.timedelta(minutes=settings.lockout_minutes)
    for name in ("buyer-a", " Nobody"):
        outcomes = []
        for i in range(7):
            with open_session(db) as s, s.begin():
                at = now + dt.timedelta(seconds=i)
                outcomes.append(auth.record_login(s, name, False, settings, now=at))
        locks_at = now + dt.timedelta(seconds=settings.max_failed_logins - 1)
        assert [o.locked_until for o in outcomes] == [None] * (settings.max_failed_logins - 1) + [
            locks_at + lock
        ] * (7 - settings.max_failed_logins + 1), name
        with open_session(db) as s:
            assert auth.locked_until(s, name, settings, now=locks_at + lock) is None
            assert auth.locked_until(s, name, settings, now=locks_at) == locks_at + lock
            events = user_db.login_events(s, name)
        assert len(events) == 7 and not any(e.success for e in events)
        assert {e.username for e in events} == {name.strip().lower()}
        assert [e.reason for e in events[:2]] == [auth.LOCKED] * 2  # newest first
    with open_session(db) as s:
        assert auth.locked_until(s, "viewer-a", settings, now=now) is None


def test_passwords_are_hashed_and_never_logged(db, settings, two_companies, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with open_session(db) as s, s.begin():
        auth.set_password(s, "viewer-a", "another secret pw", actor=auth.Principal.system())
        auth.record_login(s, "viewer-a", False, settings)
        creds = auth.credentials(s, settings)["usernames"]["viewer-a"]
    assert creds["password"].startswith("$2") and "another secret pw" not in creds["password"]
    assert "another secret pw" not in caplog.text and PW not in caplog.text
    assert "login failed for viewer-a" in caplog.text


def test_demo_users_cannot_log_in_in_production(db, settings, two_companies) -> None:
    with open_session(db) as s, s.begin():
        catalog.get_or_create_tenant(s, "demo")
        created = demo.seed_users(s, settings)
    assert set(created) == {"admin", "buyer", "viewer"}  # no 'energy' company here
    prod = settings.model_copy(update={"environment": "production"})
    with open_session(db) as s:
        names = auth.credentials(s, prod)["usernames"]
    assert "buyer" not in names and "admin" in names


def test_first_admin_password_is_required_in_production(db, settings) -> None:
    prod = settings.model_copy(update={"environment": "production", "admin_password": None})
    with pytest.raises(RuntimeError, match="ADMIN_PASSWORD"), open_session(db) as s, s.begin():
        auth.ensure_admin(s, prod)


def test_short_passwords_are_refused(db, two_companies) -> None:
    with pytest.raises(ValueError, match="10 characters"), open_session(db) as s, s.begin():
        auth.create_user(s, "x", "short", "viewer", two_companies[0])


def test_no_password_or_key_in_the_repository() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    tracked = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and ".venv" not in p.parts
        and ".git" not in p.parts
        and "data" not in p.parts
        and p.suffix in {".py", ".md", ".toml", ".yml", ".ini", ".txt", ""}
    ]
    pattern = ("ADMIN_PASSWORD=", "COOKIE_KEY=", "MYSQL_PASSWORD: ")
    for p in tracked:
        text = p.read_text(errors="ignore")
        for pat in pattern:
            for line in text.splitlines():
                if pat in line and "${" not in line and "..." not in line and "pattern" not in line:
                    pytest.fail(f"{p}: {line.strip()}")
    ignored = (root / ".gitignore").read_text()
    assert "data/.cookie_key" in ignored and "data/demo-logins.txt" in ignored


def test_an_empty_cookie_key_file_is_replaced_and_logins_keep_working(tmp_path) -> None:
    """A first start cut short left an empty data/.cookie_key; that must not stop all logins."""
    from procurement.config import Settings

    dev = Settings(environment="development", cookie_key=None)
    path = tmp_path / ".cookie_key"
    path.write_text("")
    key = auth.cookie_key(dev, path)
    assert len(key) >= 32 and path.read_text().strip() == key
    assert auth.cookie_key(dev, path) == key  # stable from then on
    assert (path.stat().st_mode & 0o777) == 0o600
    fresh = tmp_path / "new" / ".cookie_key"
    assert auth.cookie_key(dev, fresh) == fresh.read_text() and len(fresh.read_text()) >= 32
    assert not [p for p in tmp_path.rglob(".cookie_key.*")]  # no temporary file left


def test_a_short_cookie_key_or_unknown_environment_is_refused() -> None:
    from pydantic import ValidationError

    from procurement.config import Settings

    with pytest.raises(ValidationError, match="COOKIE_KEY needs at least 32"):
        Settings(environment="production", cookie_key="x")
    with pytest.raises(ValidationError, match="development or production"):
        Settings(environment="prod")
    ok = Settings(environment="production", cookie_key="k" * 32)
    assert auth.cookie_key(ok) == "k" * 32
