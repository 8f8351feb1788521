"""Accounts and login events."""

from __future__ import annotations

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


def add_login_event(session: Session, username: str, success: bool, reason: str) -> None:
    session.add(LoginEvent(username=username[:100], success=success, reason=reason))
