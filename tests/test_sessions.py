"""An open tab follows the account: who is signed in and with which role is read again on every
run. Database errors show a plain message, never driver text or a traceback. Names and messages
from users are shown as text, not Markdown."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy.exc import ProgrammingError
from streamlit.testing.v1 import AppTest

from procurement import auth
from procurement.config import get_settings
from procurement.db import catalog, make_engine, open_session
from procurement.db.models import AppUser
from ui.page import plain

ROOT = Path(__file__).resolve().parent.parent
PW = "correct horse battery"


@pytest.fixture
def account(app_env):
    """A fresh administrator of 'demo' in the app's database; yields a function changing it."""
    eng = make_engine(get_settings().database_url)
    with open_session(eng) as s, s.begin():
        auth.create_user(s, "tab-user", PW, "admin", catalog.get_tenant(s, "demo").id)

    def change(**values) -> None:  # type: ignore[no-untyped-def]
        with open_session(eng) as s, s.begin():
            s.query(AppUser).filter_by(username="tab-user").update(values)

    yield change
    with open_session(eng) as s, s.begin():
        s.query(AppUser).filter_by(username="tab-user").delete()
    eng.dispose()


def _signed_in(page: str | None = None) -> AppTest:
    """A tab signed in as tab-user, with the principal the login stored."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = "tab-user"
    at.session_state["name"] = "tab-user"
    with open_session(make_engine(get_settings().database_url)) as s:
        tid = catalog.get_tenant(s, "demo").id
    at.session_state["principal"] = auth.Principal("tab-user", "admin", tid)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _next_click(at: AppTest) -> AppTest:
    """The same browser session's next run of the entry script.

    AppTest's own rerun of a page from the pages/ folder runs that file alone, without the
    entry script; a real rerun always starts at streamlit_app.py, so start a new run there with
    this session's state.
    """
    nxt = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    for key in ("authentication_status", "username", "name", "principal"):
        nxt.session_state[key] = at.session_state[key]
    nxt.run()
    return nxt


def _shows_login(at: AppTest) -> bool:
    return "Username" in [t.label for t in at.text_input] and not at.title


@pytest.mark.parametrize(
    "change",
    [
        {"active": False},
        {"locked_until": dt.datetime(2999, 1, 1)},
    ],
    ids=["deactivated", "locked"],
)
def test_deactivated_or_locked_user_is_signed_out_at_the_next_click(
    app_env, account, change
) -> None:
    at = _signed_in()
    assert at.title[0].value == "Overview"
    account(**change)
    at = _next_click(at)
    assert not at.exception
    assert _shows_login(at)
    assert "principal" not in at.session_state and not at.session_state["authentication_status"]
    assert any("signed out" in w.value for w in at.warning)


def test_demoted_admin_loses_the_admin_page_in_an_open_tab(app_env, account) -> None:
    at = _signed_in("pages/admin.py")
    assert at.title[0].value == "Admin"
    account(role="viewer")
    at = _next_click(at)
    assert not at.exception
    assert at.title[0].value != "Admin"
    assert at.session_state["principal"].role == "viewer"


def test_unreachable_database_shows_no_driver_text_and_logs_it(app_env, monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="procurement.app")
    get_settings.cache_clear()
    monkeypatch.setenv(
        "DATABASE_URL", "mysql+pymysql://spy:hunter2@127.0.0.1:1/secretdb?connect_timeout=1"
    )
    try:
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
        at.run()
    finally:
        monkeypatch.setenv("DATABASE_URL", app_env["DATABASE_URL"])
        get_settings.cache_clear()
    assert any("database is unreachable" in e.value for e in at.error)
    shown = " ".join(str(getattr(el, "value", "")) for el in at.main) + " ".join(
        str(getattr(el, "value", "")) for el in at.sidebar
    )
    for secret in ("127.0.0.1", "OperationalError", "Can't connect", "spy"):
        assert secret not in shown
    assert not at.caption and not at.exception
    assert "Can't connect" in caplog.text  # the detail is in the log


def test_database_error_in_a_page_is_a_plain_message_not_a_traceback(
    app_env, account, monkeypatch, caplog
) -> None:
    from procurement import buying

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ProgrammingError("SELECT secret FROM salaries", {}, Exception("no such table"))

    caplog.set_level(logging.ERROR, logger="procurement.app")
    monkeypatch.setattr(buying, "summary", broken)
    at = _signed_in()
    assert not at.exception  # no traceback
    assert [e.value for e in at.error] == [
        "Something went wrong reading or writing the database. Try again; if it keeps "
        "happening, tell your administrator (the details are in the app's log)."
    ]
    assert "salaries" in caplog.text


@pytest.mark.parametrize(
    "text",
    [
        "[click](https://evil.example)",
        "![img](https://evil.example/x.png)",
        "**bold** _it_ `code` # heading",
        ":material/warning: $x^2$ <b>html</b>",
        "back\\slash",
    ],
)
def test_plain_escapes_every_markdown_character(text: str) -> None:
    out = plain(text)
    specials = set("\\`*_{}[]()<>#+-.!|~:$&=")
    for i, ch in enumerate(out):
        if ch in specials and ch != "\\":
            assert out[i - 1] == "\\", (out, i)
    assert out.replace("\\\\", "\0").replace("\\", "").replace("\0", "\\") == text
