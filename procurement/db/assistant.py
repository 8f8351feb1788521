"""The assistant's conversations: every query scoped to one company and one user."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from procurement.db.models import AssistantMessage

COLUMNS = ["id", "role", "content", "tool_calls", "sources", "created_at"]


def add_message(
    session: Session,
    tenant_id: int,
    username: str,
    role: str,
    content: str,
    tool_calls: list[Any] | None = None,
    sources: list[Any] | None = None,
) -> AssistantMessage:
    if role not in ("user", "assistant"):
        raise ValueError("role must be user or assistant")
    msg = AssistantMessage(
        tenant_id=tenant_id,
        username=username[:100],
        role=role,
        content=content,
        tool_calls=tool_calls,
        sources=sources,
    )
    session.add(msg)
    session.flush()
    return msg


def load_messages(
    session: Session, tenant_id: int, username: str, limit: int = 100
) -> pd.DataFrame:
    """The user's latest ``limit`` messages in that company, oldest first."""
    rows = session.execute(
        select(
            AssistantMessage.id,
            AssistantMessage.role,
            AssistantMessage.content,
            AssistantMessage.tool_calls,
            AssistantMessage.sources,
            AssistantMessage.created_at,
        )
        .where(AssistantMessage.tenant_id == tenant_id, AssistantMessage.username == username)
        .order_by(AssistantMessage.id.desc())
        .limit(limit)
    ).all()
    return pd.DataFrame(rows[::-1], columns=COLUMNS)


def clear_messages(session: Session, tenant_id: int, username: str) -> int:
    """Forget the user's conversation in that company; returns how many messages went."""
    result = session.execute(
        delete(AssistantMessage).where(
            AssistantMessage.tenant_id == tenant_id, AssistantMessage.username == username
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
