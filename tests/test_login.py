"""The login form, run with AppTest on the app's database: every attempt is recorded, whatever
name was typed; a locked account is told that it is locked and until when; and the form answers
names that exist and names that do not alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from procurement import auth
from procurement.config import get_settings
from procurement.db import catalog, make_engine, open_session
from procurement.db import users as user_db
from procurement.db.models import AppUser, LoginEvent

ROOT = Path(__file__).resolve().parent.parent
PW = "correct horse battery"
TRIES = 3  # MAX_FAILED_LOGINS for these tests: fewer runs of the form


@pytest.fixture
def login_env(app_env, monkeypatch) -> Iterator[None]:
    """A fresh buyer 'form-user' of demo, and a lockout after ``TRIES`` failures; the user and
    the login events of the names used here are removed afterwards."""
    monkeypatch.setenv("MAX_FAILED_LOGINS", str(TRIES))
    get_settings.cache_clear()
    eng = make_engine(get_settings().database_url)
    with open_session(eng) as s, s.begin():
        auth.create_user(s, "form-user", PW, "buyer", catalog.get_tenant(s, "demo").id)
    yield
    with open_session(eng) as s, s.begin():
        s.query(AppUser).filter_by(username="form-user").delete()
        s.query(LoginEvent).filter(LoginEvent.username.in_(["form-user", "no-such-user"])).delete()
    eng.dispose()
    monkeypatch.delenv("MAX_FAILED_LOGINS")
    get_settings.cache_clear()


def _submit(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    # AppTest runs the page a run finished on by itself (the pages/ folder makes the app an
    # old-style multipage app to it); a browser's rerun starts at the entry script, as here
    at._finished_page_script_hash = ""
    at.button[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _form() -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.run()
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    return at


def _events(name: str) -> list[tuple[bool, str]]:
    with open_session(make_engine(get_settings().database_url)) as s:
        rows = s.query(LoginEvent).filter_by(username=name).order_by(LoginEvent.id)
        return [(e.success, e.reason) for e in rows]


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_every_attempt_is_recorded_and_a_locked_account_is_told_until_when(login_env) -> None:
    at = _form()
    for _ in range(TRIES - 1):
        (msg,) = _errors(_submit(at, "form-user", "not the password"))
        assert msg.startswith("Wrong username or password")
    # the failure that locks the account says so at once, and so does every try after it,
    # the right password included
    for password in ("not the password", "still wrong", PW):
        (msg,) = _errors(_submit(at, "Form-User ", password))
        assert msg.startswith("This account is locked until ") and "administrator" in msg
    assert not at.session_state["authentication_status"] and "principal" not in at.session_state
    with open_session(make_engine(get_settings().database_url)) as s:
        until = user_db.get_user(s, "form-user").locked_until
    assert until is not None and f"{until:%H:%M}" in msg  # the test's browser zone is UTC
    events = _events("form-user")
    assert len(events) == TRIES + 2  # every attempt, the ones refused during the lockout too
    assert events[TRIES - 1] == (False, "locked after repeated failures")
    assert events[-2:] == [(False, "refused: locked")] * 2


def test_an_unknown_name_is_recorded_and_answered_like_an_account(login_env) -> None:
    at = _form()
    (msg,) = _errors(_submit(at, "no-such-user", "whatever it is"))
    assert _events("no-such-user") == [(False, "unknown user")]
    assert msg == "Wrong username or password."  # the words a wrong password gets
    for _ in range(TRIES - 1):
        _submit(at, "no-such-user", "whatever it is")
    (msg,) = _errors(at)
    assert msg.startswith("This account is locked until ")  # as an account would be
    assert len(_events("no-such-user")) == TRIES


def test_a_right_password_signs_in_and_is_recorded(login_env) -> None:
    at = _submit(_form(), "form-user", PW)
    assert at.session_state["authentication_status"] is True
    assert at.session_state["principal"].username == "form-user"
    assert _events("form-user") == [(True, "ok")]
