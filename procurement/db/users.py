"""Accounts and login events."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from procurement.db.models import AppUser, LoginEvent


def get_user(session: Session, username: str) -> AppUser | None:
    """The account of ``username`` (case and surrounding blanks ignored), or None."""
    return session.scalar(select(AppUser).where(AppUser.username == username.strip().lower()))


def list_users(session: Session, tenant_id: int | None = None) -> list[AppUser]:
    """Every account, or those of one company, by username."""
    stmt = select(AppUser).order_by(AppUser.username)
    if tenant_id is not None:
        stmt = stmt.where(AppUser.tenant_id == tenant_id)
    return list(session.scalars(stmt))


def other_active_global_admins(session: Session, user: AppUser) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AppUser)
            .where(
                AppUser.role == "admin",
                AppUser.tenant_id.is_(None),
                AppUser.active.is_(True),
                AppUser.id != user.id,
            )
        )
        or 0
    )


def has_admin(session: Session) -> bool:
    return session.scalar(select(AppUser.id).where(AppUser.role == "admin").limit(1)) is not None


def add_login_event(
    session: Session, username: str, success: bool, reason: str, at: dt.datetime | None = None
) -> None:
    """One login attempt, under the name as typed (lower case, blanks stripped), never the
    password."""
    event = LoginEvent(username=username.strip().lower()[:100], success=success, reason=reason)
    if at is not None:
        event.at = at
    session.add(event)


def failures_as(session: Session, username: str, reason: str) -> tuple[int, dt.datetime | None]:
    """How many failed attempts under ``username`` were recorded with ``reason``, and when the
    latest was."""
    count, latest = session.execute(
        select(func.count(), func.max(LoginEvent.at)).where(
            LoginEvent.username == username.strip().lower()[:100],
            LoginEvent.success.is_(False),
            LoginEvent.reason == reason,
        )
    ).one()
    return int(count or 0), latest


def login_events(
    session: Session, username: str | None = None, limit: int = 100
) -> list[LoginEvent]:
    """The latest login attempts, newest first (of one typed name, or all)."""
    stmt = select(LoginEvent).order_by(LoginEvent.id.desc()).limit(limit)
    if username is not None:
        stmt = stmt.where(LoginEvent.username == username.strip().lower()[:100])
    return list(session.scalars(stmt))
