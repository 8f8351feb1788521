"""Fixtures: real databases (SQLite file and the machine's MariaDB), small synthetic data, a
trained model. Data -> database -> fitted model -> predictions, each building on the last."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from procurement import auth, demo
from procurement.config import Settings, get_settings
from procurement.data.synthetic import SyntheticData, generate
from procurement.db import make_engine, migrate, open_session
from procurement.db.models import Base
from procurement.training import train_global_lgbm_model

# Every synthetic series in the tests ends on this day, whatever day the tests run on.
# TEST_END_DATE moves it, to show that no test depends on one particular day.
END = dt.date.fromisoformat(os.environ.get("TEST_END_DATE", "2026-06-30"))
os.environ["DEMO_END_DATE"] = END.isoformat()
get_settings.cache_clear()

PASSWORD = "correct horse battery"  # test-only user password
USERS = (
    ("admin", "admin", None),
    ("buyer", "buyer", "demo"),
    ("viewer", "viewer", "demo"),
    ("other-buyer", "buyer", "other"),
)
MARIADB_ROOT = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")


def tools_required() -> bool:
    """In CI (.ci/run installs chromium, docker-compose and promtool and sets
    PROCUREMENT_REQUIRE_TOOLS=1) a missing tool fails its tests instead of skipping them."""
    return bool(os.environ.get("PROCUREMENT_REQUIRE_TOOLS") or os.environ.get("CI"))


def require_tool(name: str, package: str) -> str:
    """The path of command ``name``; skipped where it is not installed, failed in CI."""
    import shutil

    path = shutil.which(name)
    if path is None:
        why = f"{name} is not installed (apt-get install {package})"
        if tools_required():
            pytest.fail(why + " and the tests require it here")
        pytest.skip(why)
    return path


def _mariadb_available() -> bool:
    try:
        eng = create_engine(f"{MARIADB_ROOT}/test", pool_pre_ping=True)
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated database per backend for the whole test session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        eng = make_engine(url)
        migrate(eng)
        yield eng
        eng.dispose()
        return
    if not _mariadb_available():
        if os.environ.get("CI"):
            pytest.fail("MariaDB on 127.0.0.1:3306 is not reachable in CI")
        pytest.skip("MariaDB on 127.0.0.1:3306 is not reachable")
    name = f"proc_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{MARIADB_ROOT}/test")
    with admin.begin() as c:
        c.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    eng = make_engine(f"{MARIADB_ROOT}/{name}")
    migrate(eng)
    yield eng
    eng.dispose()
    with admin.begin() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """The session's database, emptied after each test."""
    yield engine
    with engine.begin() as c:
        for table in reversed(Base.metadata.sorted_tables):
            c.execute(table.delete())


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with Session(db, expire_on_commit=False) as s:
        yield s


@pytest.fixture(scope="session")
def small_data() -> SyntheticData:
    return generate(n_products=12, n_days=240, seed=3, end=END)


@pytest.fixture
def settings(tmp_path: Path, db: Engine) -> Settings:
    return Settings(
        database_url=db.url.render_as_string(hide_password=False),
        model_dir=tmp_path / "models",
        lgbm_n_estimators=60,
        train_max_days=240,
    )


def training_data(data: SyntheticData):
    from procurement.forecast.model import TrainingData

    p = data.prices.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
    p["ds"] = pd.to_datetime(p["ds"])
    dr = data.drivers.rename(columns={"date": "ds"})
    dr["ds"] = pd.to_datetime(dr["ds"])
    return TrainingData(
        prices=p[["unique_id", "ds", "y"]],
        drivers=dr,
        sales=p[["unique_id", "ds", "quantity"]],
        categories=dict(zip(p["unique_id"], p["category"], strict=False)),
    )


@pytest.fixture(scope="session")
def fitted_model(small_data: SyntheticData):
    from procurement.forecast.model import ModelParams, fit_price_model

    return fit_price_model(
        training_data(small_data), "D", 14, ModelParams(n_estimators=60, max_history=240)
    )


@pytest.fixture(scope="session")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of a seeded SQLite database with a trained model, for app tests."""
    tmp = tmp_path_factory.mktemp("app")
    env = {
        "DATABASE_URL": f"sqlite:///{tmp / 'app.db'}",
        "MODEL_DIR": str(tmp / "models"),
        "LGBM_N_ESTIMATORS": "40",
        "TRAIN_MAX_DAYS": "200",
    }
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    get_settings.cache_clear()
    engine = make_engine(env["DATABASE_URL"])
    migrate(engine)
    with open_session(engine) as s, s.begin():
        demo.seed_synthetic(s, "demo", n_products=15, n_days=200)
    with open_session(engine) as s, s.begin():
        train_global_lgbm_model(s, "demo", get_settings())
    # a second company with the same SKUs, prices ten times higher, for isolation tests
    with open_session(engine) as s, s.begin():
        demo.seed_synthetic(s, "other", n_products=15, n_days=200, seed=99, price_factor=10.0)
    with open_session(engine) as s, s.begin():
        train_global_lgbm_model(s, "other", get_settings())
    with open_session(engine) as s, s.begin():
        for username, role, tenant in USERS:
            tid = None if tenant is None else demo.catalog.get_tenant(s, tenant).id
            auth.create_user(s, username, PASSWORD, role, tid)
    yield env
    mp.undo()
    get_settings.cache_clear()
