"""procurement: entry point. Login, then navigation over the pages the user's role may see.

Shared page setup lives in pages/common.py; pages call the library, never SQL or LightGBM.
"""

import logging

import streamlit as st
import streamlit_authenticator as stauth
from sqlalchemy.exc import SQLAlchemyError

from pages.common import db_down, db_error, engine, plain
from procurement import auth, monitoring
from procurement.config import get_settings
from procurement.db import session

st.set_page_config(page_title="procurement", page_icon=":material/shopping_cart:", layout="wide")
settings = get_settings()
log = logging.getLogger("procurement.app")

signed_in = (
    st.session_state.get("username") if st.session_state.get("authentication_status") else None
)
try:
    with session(engine()) as s:
        creds = auth.credentials(s, settings)
        # Who is signed in is read again on every run (one look-up by the unique username), so a
        # user deactivated, locked or demoted since logging in loses that access at the next click.
        current = auth.principal_for(s, signed_in, settings) if signed_in else None
except SQLAlchemyError as exc:
    db_down(exc)
failed_before = {u: c["failed_login_attempts"] for u, c in creds["usernames"].items()}
authenticator = stauth.Authenticate(
    creds,
    "procurement_auth",
    auth.cookie_key(settings),
    settings.cookie_expiry_days,
    auto_hash=False,
)


@st.fragment(run_every=1)
def _continue_shortly() -> None:
    if st.session_state.pop("_signed_in_shown", False):
        st.rerun(scope="app")
    st.session_state["_signed_in_shown"] = True


def login_page() -> None:
    try:
        authenticator.login(location="main", fields={"Form name": "Log in to procurement"})
    except stauth.utilities.exceptions.LoginError as exc:
        st.error(plain(exc))
    status = st.session_state.get("authentication_status")
    # streamlit-authenticator counts failures in the dict it was given; persist them with a lockout
    for user, c in creds["usernames"].items():
        if c.get("failed_login_attempts", 0) > failed_before.get(user, 0):
            with session(engine()) as s, s.begin():
                auth.record_login(s, user, False, settings)
    if status is True:
        with session(engine()) as s, s.begin():
            principal = auth.principal_for(s, st.session_state["username"], settings)
            if principal is not None:
                auth.record_login(s, principal.username, True, settings)
        st.session_state["principal"] = principal
        # Not st.rerun() at once: the authenticator writes the login cookie through a component
        # that must reach the browser first, or a reload or deep link asks to log in again.
        st.success("Signed in.")
        _continue_shortly()
        return
    if status is False:
        st.error("Wrong username or password, or the account is locked.")
    st.caption(
        "No account? Ask your administrator. Demo logins are printed by the first `make run`."
    )


if signed_in and current is None:
    log.warning("signed out %s: the account was deactivated, locked or removed", signed_in)
    authenticator.logout(location="unrendered")  # also deletes the login cookie
    st.session_state.pop("principal", None)
    st.warning(
        "You have been signed out: your account was changed. Log in again, or ask your "
        "administrator."
    )
principal: auth.Principal | None = current
if principal is not None:
    st.session_state["principal"] = principal  # the pages read the fresh role and company here
pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/product.py", title="Product", icon=":material/show_chart:", url_path="product"),
    st.Page("pages/recommendations.py", title="Recommendations", icon=":material/list_alt:"),
    st.Page("pages/orders.py", title="Orders", icon=":material/receipt_long:"),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
    st.Page("pages/health.py", title="Model health", icon=":material/monitor_heart:"),
    st.Page("pages/data.py", title="Data", icon=":material/upload_file:"),
]
if principal is not None and principal.can("admin"):
    pages.append(st.Page("pages/admin.py", title="Admin", icon=":material/admin_panel_settings:"))
# The same pages exist before login, so a link to /product?sku=... survives the login
page = st.navigation(pages, position="sidebar" if principal else "hidden")
if principal is None:
    st.session_state.pop("principal", None)
    login_page()
    st.stop()

with st.sidebar:
    st.caption(f"Signed in as **{principal.username}** ({principal.role})")
    authenticator.logout(
        "Log out",
        "sidebar",
        key="logout_button",
        callback=lambda _: st.session_state.pop("principal", None),
    )
try:
    with monitoring.timed("page_render", page.title, engine()):  # exported by the sidecar
        page.run()
except SQLAlchemyError as exc:  # a plain message for the user, the detail in the log
    db_error(exc)
