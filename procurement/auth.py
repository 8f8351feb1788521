"""Users, roles and what each role may do; login bookkeeping with lockout.

The app logs people in with streamlit-authenticator, fed from the ``app_user`` table; this module
is the library side: every action that changes data checks the acting principal here, so a
viewer is refused by the library even if a page forgot to hide a button.

Administrators come in two kinds. A global administrator (no company) manages companies and every
account; a company's administrator manages the accounts of that company only, never a global
administrator's. ``add_user``, ``set_password``, ``set_active``, ``set_role``, ``users_managed_by``
and ``create_company`` check this; ``create_user`` and ``list_users`` are the unchecked primitives
for seeding and tests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from sqlalchemy.orm import Session

from procurement.config import MIN_COOKIE_KEY_LENGTH, PROJECT_ROOT, Settings
from procurement.db import catalog
from procurement.db import users as user_db
from procurement.db.models import AppUser, Tenant

ROLES = ("admin", "buyer", "viewer")
PERMISSIONS = {
    "admin": {"view", "import", "retrain", "orders", "admin"},
    "buyer": {"view", "import", "retrain", "orders"},
    "viewer": {"view"},
}
log = logging.getLogger("procurement.auth")


class PermissionDenied(PermissionError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is acting: a logged-in user, or the system (CLI, scheduler)."""

    username: str
    role: str
    tenant_id: int | None  # None: all companies (administrators and the system)

    @classmethod
    def system(cls) -> Principal:
        return cls("system", "admin", None)

    def can(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, set())

    @property
    def is_global_admin(self) -> bool:
        return self.role == "admin" and self.tenant_id is None


def authorize(principal: Principal, action: str, tenant_id: int | None = None) -> None:
    """Raise ``PermissionDenied`` unless ``principal`` may do ``action`` in that company."""
    if not principal.can(action):
        raise PermissionDenied(f"{principal.username} ({principal.role}) may not {action}")
    if (
        tenant_id is not None
        and principal.tenant_id is not None
        and principal.tenant_id != tenant_id
    ):
        raise PermissionDenied(f"{principal.username} has no access to that company")


def authorized_tenant(session: Session, slug: str, principal: Principal, action: str) -> Tenant:
    """The company ``slug``, if it exists and ``principal`` may do ``action`` in it."""
    tenant = catalog.get_tenant(session, slug)
    if tenant is None:
        raise ValueError(f"unknown company {slug!r}")
    authorize(principal, action, tenant.id)
    return tenant


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


_DUMMY_HASH: list[bytes] = []


def check_no_password(password: str) -> None:
    """Spend as long as checking a real account's password, for a name without one (unknown,
    locked, inactive), so how long the login form takes does not tell who has an account."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt()))
    bcrypt.checkpw(password.encode()[:72], _DUMMY_HASH[0])


def new_password() -> str:
    return secrets.token_urlsafe(12)


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    tenant_id: int | None,
    name: str = "",
    email: str = "",
    is_demo: bool = False,
) -> AppUser:
    username = username.strip().lower()
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role != "admin" and tenant_id is None:
        raise ValueError("buyers and viewers belong to one company")
    if not username or user_db.get_user(session, username) is not None:
        raise ValueError(f"username {username!r} is empty or taken")
    user = AppUser(
        username=username,
        name=name or username,
        email=email,
        role=role,
        tenant_id=tenant_id,
        password_hash=hash_password(password),
        is_demo=is_demo,
    )
    session.add(user)
    session.flush()
    log.info("user %s created with role %s", username, role)
    return user


def authorize_account(actor: Principal, role: str, tenant_id: int | None) -> None:
    """Raise ``PermissionDenied`` unless ``actor`` may manage an account with ``role`` in company
    ``tenant_id`` (None: a global administrator): global administrators manage every account,
    a company's administrator only those of that company."""
    authorize(actor, "admin")
    if actor.tenant_id is not None and tenant_id != actor.tenant_id:
        what = "global administrators" if tenant_id is None else "users of another company"
        raise PermissionDenied(f"{actor.username} may not manage {what}")


def add_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    tenant_id: int | None,
    *,
    actor: Principal,
    name: str = "",
    email: str = "",
) -> AppUser:
    """Create an account on behalf of ``actor`` (see ``authorize_account``)."""
    authorize_account(actor, role, tenant_id)
    user = create_user(session, username, password, role, tenant_id, name=name, email=email)
    log.info("user %s created by %s", user.username, actor.username)
    return user


def users_managed_by(session: Session, actor: Principal) -> list[AppUser]:
    """The accounts ``actor`` may manage: all for a global administrator, else their company's."""
    authorize(actor, "admin")
    if actor.tenant_id is None:
        return list_users(session)
    return list_users(session, actor.tenant_id)


def _managed_user(session: Session, username: str, actor: Principal) -> AppUser:
    user = _user(session, username)
    try:
        authorize_account(actor, user.role, user.tenant_id)
    except PermissionDenied:
        raise PermissionDenied(f"{actor.username} may not manage user {username!r}") from None
    return user


def _keep_a_global_admin(session: Session, user: AppUser) -> None:
    if user.role != "admin" or user.tenant_id is not None:
        return
    if not user_db.other_active_global_admins(session, user):
        raise ValueError("the last active global administrator cannot be removed or demoted")


def set_password(session: Session, username: str, password: str, *, actor: Principal) -> None:
    user = _managed_user(session, username, actor)
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    log.info("password of %s reset by %s", user.username, actor.username)


def set_active(session: Session, username: str, active: bool, *, actor: Principal) -> None:
    """(De)activate an account; a deactivated user is signed out on their next interaction."""
    user = _managed_user(session, username, actor)
    if not active:
        _keep_a_global_admin(session, user)
    user.active = active
    log.info(
        "user %s %s by %s", user.username, "activated" if active else "deactivated", actor.username
    )


def set_role(session: Session, username: str, role: str, *, actor: Principal) -> None:
    """Change an account's role within its company; takes effect on the user's next interaction."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    user = _managed_user(session, username, actor)
    authorize_account(actor, role, user.tenant_id)
    if user.tenant_id is None and role != "admin":
        raise ValueError("buyers and viewers belong to one company")
    if role != "admin":
        _keep_a_global_admin(session, user)
    user.role = role
    log.info("user %s is now %s (by %s)", user.username, role, actor.username)


def create_company(session: Session, slug: str, name: str = "", *, actor: Principal) -> Tenant:
    """A new company; only a global administrator creates companies."""
    if not actor.is_global_admin:
        raise PermissionDenied(f"{actor.username} may not create companies")
    slug = slug.strip().lower()
    if catalog.get_tenant(session, slug) is not None:
        raise ValueError(f"company {slug!r} exists already")
    tenant = catalog.get_or_create_tenant(session, slug, name or None)
    log.info("company %s created by %s", slug, actor.username)
    return tenant


def _user(session: Session, username: str) -> AppUser:
    user = user_db.get_user(session, username)
    if user is None:
        raise ValueError(f"no user {username!r}")
    return user


def list_users(session: Session, tenant_id: int | None = None) -> list[AppUser]:
    return user_db.list_users(session, tenant_id)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def may_log_in(user: AppUser, settings: Settings, now: dt.datetime | None = None) -> bool:
    now = now or _utcnow()
    if not user.active or (user.locked_until is not None and user.locked_until > now):
        return False
    # demo users exist for a developer's machine; their passwords were printed to a terminal
    return not (user.is_demo and settings.environment == "production")


def _credential(u: AppUser) -> dict:
    return {
        "name": u.name,
        "email": u.email or f"{u.username}@localhost",
        "password": u.password_hash,
        "roles": [u.role],
        "failed_login_attempts": 0,
        "logged_in": False,
    }


def credentials(session: Session, settings: Settings) -> dict:
    """The credentials dict streamlit-authenticator wants, holding only users who may log in."""
    return {
        "usernames": {
            u.username: _credential(u)
            for u in user_db.list_users(session)
            if may_log_in(u, settings)
        }
    }


def for_signed_in(
    session: Session, username: str, settings: Settings
) -> tuple[dict, Principal | None]:
    """The credentials and the principal of a signed-in run, from one look-up of ``username``:
    its own entry only (reading every account on every click was 6% of the app's work with ten
    buyers busy), and neither when it may no longer be signed in (see ``principal_for``)."""
    user = _signable(session, username, settings)
    if user is None:
        return {"usernames": {}}, None
    return {"usernames": {user.username: _credential(user)}}, _principal(user)


UNKNOWN_USER = "unknown user"
LOCKED = "refused: locked"


@dataclass(frozen=True)
class LoginOutcome:
    """What a login attempt came to: signed in or not, and until when the name is locked (set
    from the failure that locks it on, and for attempts refused during the lockout)."""

    ok: bool
    locked_until: dt.datetime | None = None


def locked_until(
    session: Session, username: str, settings: Settings, now: dt.datetime | None = None
) -> dt.datetime | None:
    """Until when ``username`` is locked, or None. A name that belongs to no account locks the
    same way, after ``max_failed_logins`` attempts counted from the login events, so the login
    form answers alike for names that exist and names that do not."""
    now = now or _utcnow()
    user = user_db.get_user(session, username)
    if user is not None:
        until = user.locked_until
    else:
        count, latest = user_db.failures_as(session, username, UNKNOWN_USER)
        lock = dt.timedelta(minutes=settings.lockout_minutes)
        until = latest + lock if count >= settings.max_failed_logins and latest else None
    return until if until is not None and until > now else None


def record_login(
    session: Session,
    username: str,
    success: bool,
    settings: Settings,
    now: dt.datetime | None = None,
) -> LoginOutcome:
    """Log the attempt under the name as typed (never the password), whether or not an account
    has that name, and lock the name after ``max_failed_logins`` failures in a row. An attempt
    while the name is locked is logged and refused without counting, so the lockout does not
    grow with every try."""
    now = now or _utcnow()
    user = user_db.get_user(session, username)
    locked = locked_until(session, username, settings, now)
    until = None
    if locked is not None:
        success, reason, until = False, LOCKED, locked
    elif user is None:
        count, _ = user_db.failures_as(session, username, UNKNOWN_USER)
        reason = UNKNOWN_USER
        if count + 1 >= settings.max_failed_logins:
            until = now + dt.timedelta(minutes=settings.lockout_minutes)
    elif success:
        reason = "ok"
        user.failed_logins, user.locked_until = 0, None
    else:
        reason = "wrong password" if user.active else "wrong password or inactive account"
        user.failed_logins += 1
        if user.failed_logins >= settings.max_failed_logins:
            until = user.locked_until = now + dt.timedelta(minutes=settings.lockout_minutes)
            reason = "locked after repeated failures"
    user_db.add_login_event(session, username, success, reason, at=now)
    (log.info if success else log.warning)(
        "login %s for %s: %s", "ok" if success else "failed", username.strip().lower(), reason
    )
    return LoginOutcome(success, until)


def principal_for(session: Session, username: str, settings: Settings) -> Principal | None:
    """Who ``username`` is now, or None if they may not be signed in (unknown, deactivated,
    locked, a demo user in production). One look-up by the unique username: cheap enough for
    every interaction, so a change by an administrator applies to open tabs at once."""
    user = _signable(session, username, settings)
    return None if user is None else _principal(user)


def _signable(session: Session, username: str, settings: Settings) -> AppUser | None:
    user = user_db.get_user(session, username)
    return user if user is not None and may_log_in(user, settings) else None


def _principal(user: AppUser) -> Principal:
    return Principal(user.username, user.role, user.tenant_id)


def visible_tenants(session: Session, principal: Principal) -> list[Tenant]:
    tenants = catalog.list_tenants(session)
    if principal.tenant_id is None:
        return tenants
    return [t for t in tenants if t.id == principal.tenant_id]


def cookie_key(settings: Settings, path: Path | None = None) -> str:
    """The cookie signing key: from COOKIE_KEY; in development generated once into data/.

    The file is written whole under a temporary name and then linked into place, so a first
    start cut short leaves no empty key behind; an empty or short file (from an older version)
    is replaced.
    """
    if settings.cookie_key:
        return settings.cookie_key.get_secret_value()
    if settings.environment == "production":
        raise RuntimeError("COOKIE_KEY must be set in production")
    path = path or PROJECT_ROOT / "data" / ".cookie_key"
    key = path.read_text().strip() if path.exists() else ""
    if len(key) >= MIN_COOKIE_KEY_LENGTH:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cookie_key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
            f.flush()
            os.fsync(f.fileno())
        if key or path.exists():
            os.replace(tmp, path)  # empty or short: replace it
        else:
            with contextlib.suppress(FileExistsError):  # the first of concurrent starts wins
                os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path.read_text().strip()


def ensure_admin(session: Session, settings: Settings) -> str | None:
    """Create the first administrator if there is none. Returns a generated password to print
    once, or None when ADMIN_PASSWORD was given or an administrator exists."""
    if user_db.has_admin(session):
        return None
    given = settings.admin_password.get_secret_value() if settings.admin_password else None
    if given is None and settings.environment == "production":
        raise RuntimeError("set ADMIN_PASSWORD for the first administrator in production")
    password = given or new_password()
    create_user(session, "admin", password, "admin", None, name="Administrator")
    return None if given else password
