"""The Assistant: questions about prices, forecasts, stock and orders in plain words.

One interface, two engines chosen in settings (``ASSISTANT_ENGINE``):

* ``offline`` (default): intent and entity rules in Portuguese and English
  (``assistant.offline``), no network;
* ``llm``: tool calling against any OpenAI-compatible endpoint (``assistant.llm``).

Both call the same tools (``assistant.tools``), which run as the signed-in user through the
application layer, so what a question may reach is what the user's role and company allow.
Every answer that quotes a number names its sources (product, date range, model version).

``history``, ``remember`` and ``forget`` keep each user's conversation per company in the
database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from procurement.assistant.tools import Source, ToolCall, ToolContext, dispatch
from procurement.auth import PermissionDenied, Principal, authorized_tenant
from procurement.config import Settings, get_settings
from procurement.db import assistant as store

__all__ = [
    "Reply",
    "Source",
    "ToolCall",
    "answer",
    "forget",
    "history",
    "remember",
]


@dataclass
class Reply:
    """The assistant's answer, the tool calls it made (name and arguments) and the sources of
    the numbers it quotes."""

    answer: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    engine: str = "offline"
    refused: bool = False  # a tool refused (role or company) or the question was declined

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "sources": [s.to_dict() for s in self.sources],
            "engine": self.engine,
        }


def answer(
    actor: Principal,
    question: str,
    *,
    session: Session,
    tenant: str,
    history: list[dict[str, str]] | None = None,
    settings: Settings | None = None,
) -> Reply:
    """Answer ``question`` for ``actor`` in company ``tenant``. ``history``: earlier turns as
    ``{"role": "user"|"assistant", "content": ...}`` (the LLM engine reads them). Tools write
    (draft orders) in ``session``'s transaction; the caller commits."""
    settings = settings or get_settings()
    authorized_tenant(session, tenant, actor, "view")
    ctx = ToolContext(actor, session, tenant, settings)
    if settings.assistant_engine == "llm":
        from procurement.assistant import llm

        return llm.answer(ctx, question, history or [])
    return _offline(ctx, question, history or [])


# --- history ---------------------------------------------------------------------------------


def history(actor: Principal, *, session: Session, tenant: str, limit: int = 100) -> list[dict]:
    """The actor's conversation in company ``tenant``, oldest first: role, content,
    tool_calls, sources."""
    ten = authorized_tenant(session, tenant, actor, "view")
    df = store.load_messages(session, ten.id, actor.username, limit)
    return [
        {
            "role": r.role,
            "content": r.content,
            "tool_calls": r.tool_calls or [],
            "sources": r.sources or [],
        }
        for r in df.itertuples(index=False)
    ]


def remember(
    actor: Principal, *, session: Session, tenant: str, question: str, reply: Reply
) -> None:
    """Store a question and its answer in the actor's conversation."""
    ten = authorized_tenant(session, tenant, actor, "view")
    store.add_message(session, ten.id, actor.username, "user", question)
    d = reply.to_dict()
    store.add_message(
        session, ten.id, actor.username, "assistant", reply.answer, d["tool_calls"], d["sources"]
    )


def forget(actor: Principal, *, session: Session, tenant: str) -> int:
    """Clear the actor's conversation in company ``tenant``."""
    ten = authorized_tenant(session, tenant, actor, "view")
    return store.clear_messages(session, ten.id, actor.username)


# --- the offline engine ----------------------------------------------------------------------


def _offline(ctx: ToolContext, question: str, history: list[dict[str, str]]) -> Reply:
    from procurement.assistant import offline, wording

    lang = offline.language(question)
    try:
        catalog = ctx.catalog()
    except (PermissionDenied, ValueError, LookupError) as exc:  # the actor may not even view
        return Reply(wording.refusal(f"not allowed: {exc}", lang), refused=True)
    company = offline.company_named(question)
    if company:
        # products named in the question are looked up in that company's catalog, if the user
        # may see it; if not, the tool asks anyway and the action refuses
        try:
            catalog = ctx.catalog(company)
        except (PermissionDenied, ValueError, LookupError):
            company = None

    def today() -> dt.date:
        return ctx.today(company)

    earlier = [t["content"] for t in history if t.get("role") == "user" and t.get("content")]
    question = offline.follow_up(question, earlier, catalog)
    intent = offline.parse(question, catalog, today)
    if intent.tool is None:
        return Reply(wording.decline(intent), refused=intent.decline != "how_much")
    result = dispatch(ctx, intent.tool, intent.arguments)
    call = ToolCall(intent.tool, intent.arguments)
    text = wording.render(intent, result)
    sources = result.sources if result.error is None else []
    if sources:
        text += "\n\n" + wording.sources_line(sources, intent.lang)
    return Reply(text, [call], sources, "offline", refused=result.error is not None)
