"""procurement: entry point. Login, then navigation over the pages the user's role may see.

Shared page setup lives in ui/page.py; pages call the library, never SQL or LightGBM.
"""

import datetime as dt
import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace

import streamlit as st
import streamlit_authenticator as stauth
import streamlit_authenticator.models.cookie_model as authenticator_cookies
from extra_streamlit_components.CookieManager import _component_func as cookie_component
from sqlalchemy.exc import SQLAlchemyError

from procurement import auth, monitoring
from procurement.config import get_settings
from procurement.db import open_session
from ui.page import db_down, db_error, engine, local_time, plain

st.set_page_config(
    page_title="procurement",
    page_icon=str(Path(__file__).parent / "ui" / "icon.png"),
    layout="wide",
)
settings = get_settings()
log = logging.getLogger("procurement.app")

signed_in = (
    st.session_state.get("username") if st.session_state.get("authentication_status") else None
)
try:
    with open_session(engine()) as s:
        # Who is signed in is read again on every run (one look-up by the unique username), so a
        # user deactivated, locked or demoted since logging in loses that access at the next click.
        # Signed out: everyone who may log in, for the login form.
        creds, current = (
            auth.for_signed_in(s, signed_in, settings)
            if signed_in
            else (auth.credentials(s, settings), None)
        )
except SQLAlchemyError as exc:
    db_down(exc)
COOKIE_NAME = "procurement_auth"


class _CookieWriter:
    """The authenticator's CookieManager without its read: the authenticator reads the login
    cookie from the request (st.context.cookies), yet its CookieManager also rendered a component
    on every run that reported the browser's cookies once per new session. That report reruns
    the script, and when it arrived while the login was being handled (late, under load) the
    rerun dropped the submitted form: the user stayed on a filled-in login form."""

    def __init__(self, key: str = "init") -> None:
        self.cookie_manager = cookie_component
        self.cookies: dict = {}


# the authenticator's only use of extra_streamlit_components is stx.CookieManager()
authenticator_cookies.stx = SimpleNamespace(CookieManager=_CookieWriter)
authenticator = stauth.Authenticate(
    creds,
    COOKIE_NAME,
    auth.cookie_key(settings),
    settings.cookie_expiry_days,
    auto_hash=False,
    # its 0.7 s pause on every signed-out run waits for the browser-side cookie read, which
    # this app replaced by reading the request's cookie (below)
    login_sleep_time=0,
)

# The login cookie is written in the browser by the CookieManager component (an iframe). The
# authenticator renders that component once, in the run that handled the login (or the logout),
# and the browser writes the cookie only once the iframe has loaded. The next run (the page
# after login, the component's own report of the cookies, any click) no longer renders it, so
# the iframe is removed; under load it takes longer to load than that, and the cookie was never
# written (a reload then asked to log in again). So a cookie write waits in the session and is
# rendered on every run, at the same place, until the component answers that the browser did it.
_cookie = authenticator.cookie_controller.cookie_model
_COOKIE_WRITE = "_auth_cookie_write"


def _queue_cookie_write(method: str) -> None:
    if method == "set":
        if _cookie.cookie_expiry_days == 0:
            return
        _cookie.exp_date = _cookie._set_exp_date()
        expires = dt.datetime.fromtimestamp(_cookie.exp_date).isoformat()
        st.session_state[_COOKIE_WRITE] = ("set", _cookie._token_encode(), expires)
    else:
        st.session_state[_COOKIE_WRITE] = ("delete", None, None)


_cookie.set_cookie = lambda: _queue_cookie_write("set")
_cookie.delete_cookie = lambda: _queue_cookie_write("delete")


def _write_cookie() -> None:
    """Render the waiting cookie write, if any; it is done when the browser reports it done."""
    pending = st.session_state.get(_COOKIE_WRITE)
    if pending is None:
        return
    method, token, expires = pending
    args: dict = {"cookie": COOKIE_NAME}
    if method == "set":
        args |= {"value": token, "options": {"path": "/", "expires": expires, "sameSite": "strict"}}
    # one key per write, so an earlier write's answer is not taken for this one
    key = "auth_cookie_" + hashlib.sha256(repr(pending).encode()).hexdigest()[:16]
    if _cookie.cookie_manager.cookie_manager(method=method, key=key, default=False, **args):
        st.session_state.pop(_COOKIE_WRITE, None)


def _attempt_login(username: str, password: str) -> bool:
    """Check one submitted login and record it, whether or not the name is an account's (see
    ``auth.record_login``): a locked name is refused before its password is checked, and told
    until when; any other failure gets the same words, whether the name exists or not. True
    when the user is signed in."""
    name = username.strip().lower()
    if not name:
        st.error("Enter your username and password.")
        return False
    with open_session(engine()) as s, s.begin():
        locked = auth.locked_until(s, name, settings)
        if locked is not None or name not in creds["usernames"]:
            auth.check_no_password(password)  # as slow as a real check: no timing tells
        # the authenticator checks the password against the accounts that may log in
        ok = locked is None and bool(authenticator.authentication_controller.login(name, password))
        outcome = auth.record_login(s, name, ok, settings)
    if outcome.ok:
        authenticator.cookie_controller.set_cookie()  # queued: see _write_cookie
        return True
    st.session_state["authentication_status"] = False
    if outcome.locked_until is not None:
        st.error(
            f"This account is locked until {local_time(outcome.locked_until)} after "
            f"{settings.max_failed_logins} failed logins. Try again then, or ask your "
            "administrator to reset the password."
        )
    else:
        st.error("Wrong username or password.")
    return False


def login_page() -> None:
    try:
        # a valid login cookie signs the user in here; otherwise the form below
        authenticator.login(location="unrendered")
    except stauth.utilities.exceptions.LoginError as exc:
        st.error(plain(exc))
    by_form = False
    if st.session_state.get("authentication_status") is not True:
        with st.form("login"):
            st.subheader("Log in to procurement")
            username = st.text_input("Username", autocomplete="off")
            password = st.text_input("Password", type="password", autocomplete="off")
            submitted = st.form_submit_button("Login")
        by_form = submitted and _attempt_login(username, password)
    if st.session_state.get("authentication_status") is True:
        with open_session(engine()) as s, s.begin():
            principal = auth.principal_for(s, st.session_state["username"], settings)
            if principal is not None and not by_form:
                auth.record_login(s, principal.username, True, settings)  # by the login cookie
        st.session_state["principal"] = principal
        st.session_state.pop("_signed_out_changed", None)
        st.rerun()  # the login cookie is written from the next runs on (_write_cookie)
    if st.session_state.get("_signed_out_changed"):
        st.warning(
            "You have been signed out: your account was changed. Log in again, or ask your "
            "administrator."
        )
    st.caption(
        "No account? Ask your administrator. Demo logins are printed by the first `make run`."
    )


if signed_in and current is None:
    log.warning("signed out %s: the account was deactivated, locked or removed", signed_in)
    authenticator.logout(location="unrendered")  # also deletes the login cookie
    st.session_state.pop("principal", None)
    st.session_state["_signed_out_changed"] = True  # said on the login page until the next login
_write_cookie()
principal: auth.Principal | None = current
if principal is not None:
    st.session_state["principal"] = principal  # the pages read the fresh role and company here
pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/product.py", title="Product", icon=":material/show_chart:", url_path="product"),
    st.Page("pages/recommendations.py", title="Recommendations", icon=":material/list_alt:"),
    st.Page("pages/orders.py", title="Orders", icon=":material/receipt_long:"),
    st.Page("pages/assistant.py", title="Assistant", icon=":material/chat:"),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
    st.Page("pages/health.py", title="Model health", icon=":material/monitor_heart:"),
    st.Page("pages/data.py", title="Data", icon=":material/upload_file:"),
]
if principal is None or principal.can("admin"):
    pages.append(st.Page("pages/admin.py", title="Admin", icon=":material/admin_panel_settings:"))
# The same pages exist before login, so a link to /product?sku=... survives the login, and so
# does /admin (a reload of the Admin page starts signed out until the cookie is read; without
# the page then, Streamlit said "Page not found" and moved the administrator to the Overview).
# Before login no page runs (login_page stops), and the Admin page checks the role itself.
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
if not st.session_state.get("authentication_status"):
    st.rerun()  # logged out: the login page, and the cookie's deletion (_write_cookie)
try:
    with monitoring.timed("page_render", page.title, engine()):  # exported by the sidecar
        page.run()
except SQLAlchemyError as exc:  # a plain message for the user, the detail in the log
    db_error(exc)
