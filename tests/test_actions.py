"""The application layer is the one door: every action refuses a user of another company and a
role that may not do it, before it reads or writes anything; the CLI and the pages give the same
advice because both go through it."""

from __future__ import annotations

import datetime as dt
import inspect
import io
from contextlib import redirect_stdout

import pandas as pd
import pytest
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest
from test_app import ROOT, _app

from procurement import actions, cli
from procurement.auth import ROLES, PermissionDenied, Principal
from procurement.config import get_settings
from procurement.db import catalog, make_engine, open_session

# What each action needs: every public function of the layer must be listed here, so a new one
# cannot be added without being walked by the refusal tests below.
PERMISSION = {
    "view": [
        "companies",
        "data_status",
        "import_log",
        "data_sources",
        "current_model",
        "current_version",
        "scheduler_running",
        "model_versions",
        "training_runs",
        "drift_history",
        "forecast",
        "catalog",
        "price_history",
        "advice",
        "product_advice",
        "driver_effects",
        "list_orders",
        "get_order",
        "export_csv",
        "export_pdf",
        "terms_table",
        "suppliers",
    ],
    "import": [
        "import_prices",
        "import_price_file",
        "import_stock_file",
        "import_catalog_file",
        "undo_import",
        "add_source",
        "fetch_source",
        "import_terms",
        "set_working_days",
    ],
    "retrain": ["request_retrain", "train_queued", "train_now", "rollback", "check_drift"],
    "orders": [
        "propose_orders",
        "edit_line",
        "set_order_date",
        "approve",
        "reject",
        "mark_sent",
        "receive",
    ],
    "admin": ["users", "add_user", "set_password", "set_active", "set_role", "create_company"],
}
# reads that hold no company's data: any signed-in role may call them
NO_COMPANY = {"companies", "scheduler_running"}

PRICES = pd.DataFrame(
    {"sku": ["SKU-00001"], "date": [dt.date(2026, 1, 5)], "price": [1.0], "name": ["x"]}
)
ARGS: dict[str, dict[str, object]] = {
    "import_prices": {"prices": PRICES, "source": "test"},
    "import_price_file": {"path": "missing.csv"},
    "import_stock_file": {"path": "missing.csv"},
    "import_catalog_file": {"path": "missing.csv"},
    "undo_import": {"run_id": 1},
    "add_source": {"name": "s", "kind": "api", "config": {}},
    "fetch_source": {"name": "s"},
    "import_terms": {"src": b"sku,supplier\n"},
    "set_working_days": {"supplier": "Supplier 1", "working_days": "Mon-Sat"},
    "rollback": {"version": "v"},
    "price_history": {"sku": "SKU-00001"},
    "product_advice": {"sku": "SKU-00001"},
    "driver_effects": {"sku": "SKU-00001"},
    "get_order": {"order_id": 1},
    "export_csv": {"order_id": 1},
    "export_pdf": {"order_id": 1},
    "edit_line": {"order_id": 1, "line_id": 1, "quantity": 1.0},
    "set_order_date": {"order_id": 1, "order_date": dt.date(2026, 7, 1)},
    "approve": {"order_id": 1},
    "reject": {"order_id": 1},
    "mark_sent": {"order_id": 1},
    "receive": {"order_id": 1},
    "add_user": {"username": "new-user", "password": "x" * 12, "role": "buyer", "tenant": "demo"},
    "set_password": {"username": "buyer", "password": "y" * 12},
    "set_active": {"username": "buyer", "active": False},
    "set_role": {"username": "buyer", "role": "viewer"},
    "create_company": {"slug": "new-co"},
}


def _needed() -> dict[str, str]:
    return {name: perm for perm, names in PERMISSION.items() for name in names}


def _call(name: str, actor: Principal, s: Session) -> object:
    fn = getattr(actions, name)
    kw = dict(ARGS.get(name, {}))
    if "tenant" in inspect.signature(fn).parameters and "tenant" not in kw:
        kw["tenant"] = "demo"
    return fn(actor, session=s, **kw)


@pytest.fixture
def people(app_env):  # type: ignore[no-untyped-def]
    eng = make_engine(get_settings().database_url)
    with open_session(eng) as s:
        demo, other = catalog.get_tenant(s, "demo").id, catalog.get_tenant(s, "other").id
    yield (
        eng,
        {
            "viewer": Principal("viewer", "viewer", demo),
            "buyer": Principal("buyer", "buyer", demo),
            "other": Principal("other-buyer", "buyer", other),
            "other-admin": Principal("other-admin", "admin", other),
        },
    )
    eng.dispose()


def test_every_action_is_listed_with_its_permission() -> None:
    public = {
        n
        for n, f in vars(actions).items()
        if inspect.isfunction(f) and not n.startswith("_") and n in actions.__all__
    }
    assert public == set(actions.__all__), "every name in __all__ is a function"
    assert set(_needed()) == public, "list each new action in PERMISSION"
    for name in public:
        params = list(inspect.signature(getattr(actions, name)).parameters.values())
        assert params[0].name == "actor", name
        assert params[1].name == "session" and params[1].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("name", sorted(_needed()))
def test_a_user_of_another_company_is_refused(people, name: str) -> None:  # type: ignore[no-untyped-def]
    eng, who = people
    for actor in (who["other"], who["other-admin"]):
        with open_session(eng) as s:
            if name == "companies":
                assert [t.slug for t in actions.companies(actor, session=s)] == ["other"]
            elif name in NO_COMPANY:
                _call(name, actor, s)  # allowed, and holds no company's data
            elif name == "users":
                if actor.role == "admin":
                    assert {u.tenant_id for u in actions.users(actor, session=s)} <= {
                        actor.tenant_id
                    }
                else:
                    with pytest.raises(PermissionDenied):
                        _call(name, actor, s)
            else:
                with pytest.raises(PermissionDenied):
                    _call(name, actor, s)
            s.rollback()


@pytest.mark.parametrize("name", sorted(_needed()))
def test_a_viewer_is_refused_everything_but_reading(people, name: str) -> None:  # type: ignore[no-untyped-def]
    eng, who = people
    with open_session(eng) as s:
        if _needed()[name] == "view":
            try:
                _call(name, who["viewer"], s)
            except LookupError:
                # allowed to read orders; order 1 may not exist in this database
                assert name in ("get_order", "export_csv", "export_pdf")
        else:
            with pytest.raises(PermissionDenied):
                _call(name, who["viewer"], s)
        s.rollback()


def test_roles_grant_what_the_table_says() -> None:
    """The table above and procurement.auth agree: a role may do what it lists, nothing else."""
    from procurement.auth import PERMISSIONS

    assert set(ROLES) == set(PERMISSIONS)
    assert set(PERMISSION) == set().union(*PERMISSIONS.values())


def test_cli_recommend_and_the_recommendations_page_give_the_same_rows(people, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "recs.csv"
    with redirect_stdout(io.StringIO()):
        assert cli.main(["recommend", "--tenant", "demo", "--out", str(out)]) == 0
    from_cli = pd.read_csv(out).set_index("sku").sort_index()

    at = _app("pages/recommendations.py", "buyer")
    page = at.dataframe[0].value.set_index("sku").sort_index()
    assert list(page.index) == list(from_cli.index)
    assert len(page) > 0
    for col in ("quantity", "reason"):
        assert page[col].tolist() == from_cli[col].tolist(), col
    for col in ("first_price", "buy_price", "saving_pct"):
        assert page[col].to_numpy() == pytest.approx(from_cli[col].to_numpy(), abs=1e-9), col
    # the page shows how sure in percent, one decimal, never 100
    from procurement.recommend import shown_percent

    stated = shown_percent(from_cli["confidence"])  # the whole percent every page shows
    assert page["confidence"].to_numpy().tolist() == stated.tolist()
    assert page["confidence"].max() <= 99
    assert (pd.to_datetime(page["buy_date"]) == pd.to_datetime(from_cli["buy_date"])).all()


def test_the_default_advice_reads_the_stored_forecasts(people) -> None:  # type: ignore[no-untyped-def]
    """After a refresh, the pages' default view comes from the stored forecasts, and it is the
    same advice the model gives; a what-if still asks the model."""
    from procurement import buying, retrain
    from procurement.db import forecasts, history

    eng, who = people
    settings = get_settings()
    retrain.refresh_forecasts(eng, settings, "demo")
    with open_session(eng) as s:
        stored = actions.current_model(who["buyer"], session=s, tenant="demo")
        assert stored is not None
        tid = catalog.get_tenant(s, "demo").id
        assert forecasts.load_forecast(s, tid, stored.version) is not None
        from_store = actions.advice(who["buyer"], session=s, tenant="demo")
        # the same advice from the model itself, predicting now
        live = buying.advice_table(
            stored.model,
            catalog.load_products(s, tid),
            history.demand_per_day(s, tid),
            buying.advice_policy(stored.model, settings.min_confidence, settings.min_saving_pct),
            forecast=stored.model.predict(),
        )
    cols = ["sku", "buy_date", "buy_now", "reason"]
    assert from_store[cols].equals(live[cols])
    assert from_store["confidence"].to_numpy() == pytest.approx(
        live["confidence"].to_numpy(), abs=1e-6
    )


def test_a_products_default_situation_is_its_row_of_the_whole_catalog(people) -> None:  # type: ignore[no-untyped-def]
    """The Product page reads one product's stock, lead time and demand, not the catalog's:
    the same numbers as the whole catalog's tables give for it."""
    from procurement import buying
    from procurement.db import history

    eng, who = people
    with open_session(eng) as s:
        stored = actions.current_model(who["buyer"], session=s, tenant="demo")
        assert stored is not None
        tid = catalog.get_tenant(s, "demo").id
        products = catalog.load_products(s, tid)
        demand = history.demand_per_day(s, tid)
        conf = buying.advice_policy(
            stored.model, get_settings().min_confidence, get_settings().min_saving_pct
        ).min_confidence
        seen = 0
        for sku in products["sku"]:
            if sku not in stored.model.last_price:
                continue
            got = actions.product_advice(who["buyer"], session=s, tenant="demo", sku=sku)
            want = actions._decision(products, demand, sku, stored.model.horizon, conf)
            assert got.decision == want, sku
            seen += 1
        assert seen >= 10 and demand.gt(0).sum() >= 10  # products with stock and sales


def test_a_product_without_a_forecast_is_named(people) -> None:  # type: ignore[no-untyped-def]
    eng, who = people
    with open_session(eng) as s, pytest.raises(LookupError, match="NEW-1 has no forecast"):
        actions.product_advice(who["buyer"], session=s, tenant="demo", sku="NEW-1")


def test_the_admin_page_lists_users_and_refuses_a_direct_load_by_a_buyer(people) -> None:  # type: ignore[no-untyped-def]
    at = _app("pages/admin.py", "admin")
    users = at.dataframe[0].value
    assert {"buyer", "viewer", "other-buyer"} <= set(users["username"])

    direct = AppTest.from_file(str(ROOT / "pages" / "admin.py"), default_timeout=60)
    direct.session_state["principal"] = people[1]["buyer"]
    direct.run()
    assert any("may not admin" in e.value for e in direct.error)
    assert not direct.dataframe


def test_a_price_that_arrives_moves_the_forecast_at_once(
    db, settings, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """An import after the model's last day: the stored forecasts and the default advice start
    from the new price at once, without a retrain; undoing the import moves them back."""
    from procurement import demo
    from procurement.db import forecasts
    from procurement.training import train_global_lgbm_model

    monkeypatch.setenv("MODEL_DIR", str(settings.model_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        with open_session(db) as s, s.begin():
            demo.seed_synthetic(s, "demo", n_products=6, n_days=200)
        with open_session(db) as s, s.begin():
            trained = train_global_lgbm_model(s, "demo", settings)
        system = Principal.system()
        with open_session(db) as s:
            before = actions.product_advice(system, session=s, tenant="demo", sku="SKU-00001")
        last = pd.Timestamp(trained.model.last_date)
        day = (last + pd.Timedelta(days=1)).date()
        jump = round(float(trained.model.last_price["SKU-00001"]) * 1.3, 2)
        f = tmp_path / "today.csv"
        f.write_text(f"sku,date,price\nSKU-00001,{day},{jump}\n")
        with open_session(db) as s:
            run = actions.import_price_file(system, session=s, tenant="demo", path=f)
        with open_session(db) as s:
            tid = catalog.get_tenant(s, "demo").id
            fc = forecasts.load_forecast(s, tid, trained.version)
            after = actions.product_advice(system, session=s, tenant="demo", sku="SKU-00001")
        assert fc is not None
        assert fc["date"].min() == last + pd.Timedelta(days=2)  # starts after the new price
        assert after.forecast["date"].min() == last + pd.Timedelta(days=2)
        assert after.forecast["y_pred"].iloc[0] > 1.1 * before.forecast["y_pred"].iloc[0]
        with open_session(db) as s:
            actions.undo_import(system, session=s, tenant="demo", run_id=run.run_id)
        with open_session(db) as s:
            back = actions.product_advice(system, session=s, tenant="demo", sku="SKU-00001")
        assert back.forecast["date"].min() == before.forecast["date"].min()
    finally:
        get_settings.cache_clear()
