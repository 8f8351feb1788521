"""Page setup every page shares: company choice, model and data status in the sidebar, the empty
and error states, and the few loads cached per company. Everything goes through
procurement.actions."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from procurement import actions, auth, buying
from procurement.config import get_settings
from procurement.db import get_engine, migrate, open_session
from procurement.forecast import store
from procurement.forecast.model import PriceModel
from ui.money import HOW_SURE_HELP

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
def _migrated_engine(url: str):
    engine = get_engine(url)
    migrate(engine)
    return engine


def engine():
    return _migrated_engine(get_settings().database_url)


# The advice and the catalog are the company's, the same for every user who may open it: one
# copy per company (and model version) for a minute, shared by all of them, so ten buyers
# signing in at once compute them once, not ten times in turn (issue 18). The user who misses
# the cache is checked by the action; the others were checked in the same run by page_setup
# (actions.current_model), the only way to a Context. Stock or demand imported since shows
# within a minute.
@st.cache_data(ttl=60, show_spinner="Reading every product's advice...", max_entries=32)
def _advice(_actor: auth.Principal, tenant: str, version: str) -> pd.DataFrame:
    with open_session(engine()) as s:
        return actions.advice(_actor, session=s, tenant=tenant)


@st.cache_data(ttl=60, show_spinner=False, max_entries=32)
def _catalog(_actor: auth.Principal, tenant: str) -> pd.DataFrame:
    with open_session(engine()) as s:
        return actions.catalog(_actor, session=s, tenant=tenant)


@st.cache_data(ttl=60, show_spinner=False, max_entries=32)
def _data_status(principal: auth.Principal, tenant: str) -> dict[str, Any]:
    # counting millions of rows on every page view is wasteful; a minute old is fresh enough
    with open_session(engine()) as s:
        return actions.data_status(principal, session=s, tenant=tenant)


def local_time(ts: object, fmt: str = "%d %b %Y %H:%M") -> str:
    """A stored time (UTC, naive or aware, or ISO text) in the browser's time zone, to the
    minute: no microseconds, no offsets."""
    if ts is None or ts == "":
        return ""
    t = pd.Timestamp(str(ts)) if not isinstance(ts, dt.datetime) else pd.Timestamp(ts)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    tz = st.context.timezone or "UTC"
    try:
        return t.tz_convert(tz).strftime(fmt)
    except Exception:  # an unknown zone name from the browser: keep UTC, and say so
        return t.strftime(fmt) + " UTC"


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
        with open_session(engine()) as s:
            # the one place where a page's company is chosen: only those the user may see
            tenants = actions.companies(principal, session=s)
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
        fresh = _data_status(principal, slug)
        stored = None
        try:
            with open_session(engine()) as s:
                stored = actions.current_model(principal, session=s, tenant=slug)
        except store.ModelStoreError as exc:
            st.sidebar.error(plain(f"The model in use cannot be loaded: {exc}"))
    except SQLAlchemyError as exc:
        db_down(exc)
    version = stored.version if stored else None
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
    if meta and fresh["last"]:
        stale = buying.stale_data(fresh["last"], meta.get("freq", "D"), dt.date.today())
        if stale:
            st.warning(stale, icon=":material/history:")
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
    """The company's advice for the model in use (``actions.advice``), shared by its users for
    a minute."""
    assert ctx.version is not None
    return _advice(ctx.principal, ctx.tenant, ctx.version)


def forget_advice() -> None:
    """Drop the cached advice of every company, after a change that moves buy days (a supplier's
    working days), so no page shows the old advice for up to a minute."""
    _advice.clear()


def catalog_for(ctx: Context) -> pd.DataFrame:
    """The catalog with stock, lead time and daily demand (``actions.catalog``), shared by the
    company's users for a minute."""
    return _catalog(ctx.principal, ctx.tenant)


def how_sure_column(width: int | None = None) -> Any:
    """The "How sure" column of the advice tables: whole percents (``shown_percent``), with
    what the number means."""
    return st.column_config.ProgressColumn(
        "How sure", min_value=0, max_value=100, format="%d%%", help=HOW_SURE_HELP, width=width
    )
