"""Shared page setup: company choice, database and model status in the sidebar, cached loads."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from procurement import auth, buying
from procurement.config import get_settings
from procurement.db import catalog, get_engine, migrate, session
from procurement.forecast import store
from procurement.forecast.model import PriceModel
from procurement.recommend import Policy

log = logging.getLogger("procurement.app")


@dataclass
class Context:
    tenant: str
    tenant_id: int
    principal: auth.Principal
    version: str | None
    model: PriceModel | None
    metadata: dict[str, Any] | None
    freshness: dict[str, Any]


@st.cache_resource(show_spinner=False)
def _migrated_engine(url: str):  # type: ignore[no-untyped-def]
    engine = get_engine(url)
    migrate(engine)
    return engine


def engine():  # type: ignore[no-untyped-def]
    return _migrated_engine(get_settings().database_url)


@st.cache_resource(show_spinner="Loading model...", max_entries=4)
def load_model(model_dir: str, tenant: str, version: str) -> store.StoredModel:
    # keyed on the version: a newly published model is loaded once, the old one stays cached
    # for page views already using it
    return store.load_version(model_dir, tenant, version)  # type: ignore[arg-type]


@st.cache_data(show_spinner="Forecasting every product...", max_entries=8)
def advice(
    tenant: str,
    version: str,
    _model: PriceModel,
    _products: pd.DataFrame,
    _demand: pd.Series,
    min_conf: float,
    min_saving: float,
) -> pd.DataFrame:
    return buying.advice_table(_model, _products, _demand, Policy(min_conf, min_saving))


@st.cache_data(ttl=60, show_spinner=False)
def catalog_and_demand(tenant_id: int, _version: str | None) -> tuple[pd.DataFrame, pd.Series]:
    with session(engine()) as s:
        return catalog.load_products(s, tenant_id), buying.demand_per_day(s, tenant_id)


@st.cache_data(ttl=60, show_spinner=False)
def freshness(tenant_id: int) -> dict[str, Any]:
    # counting millions of rows on every page view is wasteful; a minute old is fresh enough
    with session(engine()) as s:
        return buying.data_freshness(s, tenant_id)


def _age(ts: str | None) -> str:
    if not ts:
        return "unknown"
    t = dt.datetime.fromisoformat(ts)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    mins = (dt.datetime.now(dt.UTC) - t).total_seconds() / 60
    if mins < 90:
        return f"{mins:.0f} min ago"
    if mins < 48 * 60:
        return f"{mins / 60:.0f} h ago"
    return f"{mins / 1440:.0f} days ago"


def page_setup(title: str, need_model: bool = True) -> Context:
    """Sidebar (company, model, data freshness) and the empty/error states every page shares."""
    st.title(title)
    st_settings = get_settings()
    principal: auth.Principal = st.session_state.get("principal") or auth.Principal(
        "anonymous", "none", -1
    )
    try:
        with session(engine()) as s:
            # the one place where a page's company is chosen: only those the user may see
            tenants = auth.visible_tenants(s, principal)
            if not tenants:
                st.info(
                    "No data yet. Seed the demo with `python -m procurement seed` or import your "
                    "prices with `python -m procurement import prices FILE.csv`."
                )
                st.stop()
            slugs = [t.slug for t in tenants]
            default = (
                slugs.index(st_settings.default_tenant)
                if st_settings.default_tenant in slugs
                else 0
            )
            slug = st.sidebar.selectbox(
                "Company",
                slugs,
                index=default,
                key="tenant",
                format_func=lambda x: next(t.name for t in tenants if t.slug == x),
            )
            tenant = next(t for t in tenants if t.slug == slug)
        fresh = freshness(tenant.id)
    except SQLAlchemyError as exc:
        db_down(exc)

    version = store.current_version(st_settings.model_dir, slug)
    stored = None
    if version:
        try:
            stored = load_model(str(st_settings.model_dir), slug, version)
        except store.ModelStoreError as exc:
            st.sidebar.error(plain(f"Model {version} cannot be used: {exc}"))
    meta = stored.metadata if stored else None
    with st.sidebar:
        st.caption("Model")
        if meta:
            st.markdown(f"`{meta['version']}`  \ntrained {_age(meta.get('trained_at'))}")
        else:
            st.markdown("no model yet")
        st.caption("Prices")
        if fresh["last"]:
            st.markdown(f"{fresh['products']:,} products  \nlatest {fresh['last']:%a %d %b %Y}")
        else:
            st.markdown("none yet")
    if fresh["last"] is None:
        st.info(
            f"**{plain(tenant.name)}** has no prices yet. Import a CSV (`sku,date,price`) with "
            f"`python -m procurement import prices FILE.csv --tenant {slug}`."
        )
        st.stop()
    if need_model and stored is None:
        st.info(
            "No trained model yet for this company. Open the **Model** page and press **Retrain**, "
            f"or run `python -m procurement train --tenant {slug}`."
        )
        st.page_link("pages/model.py", label="Go to Model", icon=":material/model_training:")
        st.stop()
    return Context(
        slug, tenant.id, principal, version, stored.model if stored else None, meta, fresh
    )


def db_down(exc: Exception) -> None:
    """A plain message, no driver text (it names hosts, users and SQL); the detail goes to the log."""
    log.error("database unreachable", exc_info=exc)
    st.error(
        "The database is unreachable right now. The page will work again as soon as it is back; "
        "press **Retry** or reload."
    )
    st.button("Retry", icon=":material/refresh:")
    st.stop()


def db_error(exc: Exception) -> None:
    """Any other database error while a page runs: a plain message instead of a traceback."""
    if isinstance(exc, OperationalError):
        db_down(exc)
    log.error("database error", exc_info=exc)
    st.error(
        "Something went wrong reading or writing the database. Try again; if it keeps "
        "happening, tell your administrator (the details are in the app's log)."
    )
    st.stop()


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&=])")


def plain(text: object) -> str:
    """``text`` escaped for st.markdown, st.error and the like: shown as typed, never as a link,
    an image, an icon, formatting or a formula. For names and messages that come from users,
    files or suppliers."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", "  \n")


def advice_for(ctx: Context) -> pd.DataFrame:
    st_settings = get_settings()
    products, demand = catalog_and_demand(ctx.tenant_id, ctx.version)
    assert ctx.model is not None and ctx.version is not None
    policy = buying.advice_policy(ctx.model, st_settings.min_confidence, st_settings.min_saving_pct)
    return advice(
        ctx.tenant,
        ctx.version,
        ctx.model,
        products,
        demand,
        policy.min_confidence,
        policy.min_saving_pct,
    )
