"""The LLM engine: tool calling against any OpenAI-compatible chat endpoint (OpenAI, a local
Ollama or vLLM, ...), with the official ``openai`` client.

The model only chooses tools and words the answer; the tools run as the signed-in user through
the application layer (``assistant.tools``), so a prompt that asks for another company's data or
for more than the role allows gets the action's refusal as the tool's result, whatever the
prompt says. A timeout, an unreachable endpoint, an error status or a reply that cannot be read
ends the answer with a plain message instead of an exception. The sources of every number the
tools returned are appended to the answer, so they are named even if the model leaves them out.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import openai

from procurement.assistant import offline
from procurement.assistant.tools import Source, ToolCall, ToolContext, ToolResult, dispatch, schemas

if TYPE_CHECKING:
    from procurement.assistant import Reply

log = logging.getLogger(__name__)
MAX_HISTORY_TURNS = 20
MAX_DRAFTS = 3  # draft orders one question may create: a looping model cannot flood the Orders page


def _system_prompt(ctx: ToolContext) -> str:
    try:
        today = ctx.today().isoformat()
    except Exception:  # no access or no data: the tools will say so
        today = "unknown"
    return (
        "You are the procurement assistant of the company "
        f"'{ctx.tenant}'. You help buyers decide when to buy and how much, using only the "
        "tools: find_product, price_history, forecast, price_check, stock_status, best_buys, "
        "list_orders, draft_order. Find a product's sku with find_product before the other "
        f"tools. Today, in the company's data, is {today}; resolve relative dates such as "
        "'next week' from it and pass ISO dates. Quote numbers only from tool results and say "
        "which product, dates and model version they come from. You may draft an order with "
        "draft_order, but you never approve, send, cancel or delete anything: a buyer "
        "approves drafts on the Orders page. If a tool returns an error (for example not "
        "allowed), tell the user plainly and do not try to work around it. Answer in the "
        "user's language (Portuguese or English), briefly."
    )


def _client(ctx: ToolContext) -> openai.OpenAI:
    s = ctx.settings
    key = s.assistant_api_key.get_secret_value() if s.assistant_api_key else "not-needed"
    return openai.OpenAI(
        base_url=s.assistant_url,
        api_key=key,
        timeout=s.assistant_timeout,
        max_retries=0,
        _strict_response_validation=True,
    )


def _text(lang: str, en: str, pt: str) -> str:
    return pt if lang == "pt" else en


def answer(ctx: ToolContext, question: str, history: list[dict[str, str]]) -> Reply:
    """One question through the model, with up to ``assistant_max_rounds`` rounds of tool
    calls. Returns a ``Reply``."""
    from procurement.assistant import Reply
    from procurement.assistant.wording import sources_line

    lang = offline.language(question)
    s = ctx.settings
    messages: list[dict[str, Any]] = [{"role": "system", "content": _system_prompt(ctx)}]
    for turn in history[-MAX_HISTORY_TURNS:]:
        if turn.get("role") in ("user", "assistant") and turn.get("content"):
            messages.append({"role": turn["role"], "content": str(turn["content"])})
    messages.append({"role": "user", "content": question})
    calls: list[ToolCall] = []
    sources: list[Source] = []
    refused = False
    client = _client(ctx)

    def stop(en: str, pt: str) -> Reply:
        return Reply(_text(lang, en, pt), calls, sources, "llm", refused=True)

    for _round in range(s.assistant_max_rounds):
        try:
            resp = client.chat.completions.create(  # type: ignore[call-overload]
                model=s.assistant_model,
                messages=messages,
                tools=schemas(),
                tool_choice="auto",
            )
        except openai.APITimeoutError:
            log.warning("assistant endpoint %s timed out", s.assistant_url)
            return stop(
                f"The assistant service did not answer within {s.assistant_timeout:g} seconds. "
                "Try again, or ask your administrator to check ASSISTANT_URL.",
                f"O serviço do assistente não respondeu em {s.assistant_timeout:g} segundos. "
                "Tente de novo, ou peça ao administrador para verificar ASSISTANT_URL.",
            )
        except openai.APIConnectionError:
            log.warning("assistant endpoint %s unreachable", s.assistant_url)
            return stop(
                "The assistant service cannot be reached. Try again later, or switch to the "
                "offline assistant (ASSISTANT_ENGINE=offline).",
                "O serviço do assistente está inacessível. Tente mais tarde, ou use o "
                "assistente offline (ASSISTANT_ENGINE=offline).",
            )
        except openai.APIStatusError as exc:
            log.warning("assistant endpoint answered HTTP %s", exc.status_code)
            return stop(
                f"The assistant service answered with an error (HTTP {exc.status_code}).",
                f"O serviço do assistente respondeu com um erro (HTTP {exc.status_code}).",
            )
        except (openai.OpenAIError, ValueError, TypeError) as exc:
            log.warning("assistant endpoint sent an unreadable reply: %s", type(exc).__name__)
            return stop(_MALFORMED_EN, _MALFORMED_PT)
        try:
            msg = resp.choices[0].message
            tool_calls = list(msg.tool_calls or [])
            content = msg.content
        except (AttributeError, IndexError, TypeError):
            log.warning("assistant endpoint sent a reply without a message")
            return stop(_MALFORMED_EN, _MALFORMED_PT)
        if not tool_calls:
            if not content or not content.strip():
                return stop(_MALFORMED_EN, _MALFORMED_PT)
            text = content.strip()
            if sources:
                text += "\n\n" + sources_line(sources, lang)
            return Reply(text, calls, sources, "llm", refused=refused)
        messages.append(
            {
                "role": "assistant",
                "content": content or "",
                "tool_calls": [
                    {
                        "id": tc.id,
                        "type": "function",
                        "function": {
                            "name": getattr(tc.function, "name", ""),
                            "arguments": getattr(tc.function, "arguments", "") or "",
                        },
                    }
                    for tc in tool_calls
                ],
            }
        )
        for tc in tool_calls:
            fn = getattr(tc, "function", None)
            name = str(getattr(fn, "name", "") or "")
            raw = getattr(fn, "arguments", "") or "{}"
            drafts = sum(c.name == "draft_order" for c in calls)
            try:
                args = json.loads(raw)
            except ValueError:
                result = ToolResult(name, {}, error="the arguments are not valid JSON")
                calls.append(ToolCall(name, {"_unparsed": raw[:500]}))
            else:
                if name == "draft_order" and drafts >= MAX_DRAFTS:
                    result = ToolResult(
                        name, {}, error=f"at most {MAX_DRAFTS} draft orders per question"
                    )
                else:
                    result = dispatch(ctx, name, args)
                calls.append(ToolCall(name, args if isinstance(args, dict) else {"_value": args}))
            if result.error:
                refused = refused or result.error.startswith("not allowed")
            else:
                sources.extend(result.sources)
            messages.append({"role": "tool", "tool_call_id": tc.id, "content": result.for_model()})
    return stop(
        f"I stopped after {s.assistant_max_rounds} rounds of tool calls without an answer. "
        "Ask a narrower question.",
        f"Parei após {s.assistant_max_rounds} rodadas de ferramentas sem uma resposta. "
        "Faça uma pergunta mais específica.",
    )


_MALFORMED_EN = (
    "The assistant service sent a reply I could not read. Try again; if it keeps happening, "
    "ask your administrator to check ASSISTANT_URL and ASSISTANT_MODEL."
)
_MALFORMED_PT = (
    "O serviço do assistente enviou uma resposta ilegível. Tente de novo; se continuar, peça "
    "ao administrador para verificar ASSISTANT_URL e ASSISTANT_MODEL."
)
