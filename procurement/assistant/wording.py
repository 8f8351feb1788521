"""How the offline engine words its answers, in English and Portuguese.

Numbers are written as the reader writes them (12.50 / 12,50); every answer with numbers ends
with a line naming where they came from (``sources_line``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from procurement.assistant.offline import Intent
from procurement.assistant.tools import Source, ToolResult
from procurement.recommend import shown_percent


def num(x: Any, lang: str, nd: int = 2) -> str:
    if x is None:
        return "-"
    s = f"{float(x):,.{nd}f}"
    if lang == "pt":
        s = s.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return s


def qty(x: Any, lang: str) -> str:
    v = float(x)
    return num(v, lang, 0) if v.is_integer() else num(v, lang, 2)


def pct(x: Any, lang: str, nd: int = 1) -> str:
    return f"{num(x, lang, nd)}%"


def likely(p: float, lang: str) -> str:
    """A stated probability as every page shows it (``shown_percent``), in ``lang``."""
    return pct(int(shown_percent(p)), lang, 0)


def day(d: Any, lang: str) -> str:
    if d is None:
        return "-"
    d = d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)[:10])
    if lang == "pt":
        wd = ["seg", "ter", "qua", "qui", "sex", "sáb", "dom"][d.weekday()]
        return f"{wd} {d:%d/%m/%Y}"
    return f"{d:%a} {d:%Y-%m-%d}"


def _t(lang: str, en: str, pt: str) -> str:
    return pt if lang == "pt" else en


HELP = {
    "en": "I can answer about your company's products: price history, forecast and best day "
    "to buy, whether a price is good, stock and reorder status, your orders, and draft an "
    'order (for example: "when should I buy SKU-00042?", "draft an order for 200 units of '
    'SKU-00042").',
    "pt": "Posso responder sobre os produtos da sua empresa: histórico de preços, previsão e "
    "melhor dia de compra, se um preço é bom, estoque e reposição, seus pedidos, e criar um "
    'rascunho de pedido (por exemplo: "qual o melhor dia para comprar café?", "crie um pedido '
    'de 200 unidades do SKU-00042").',
}


# the demo's categories as a Portuguese reader names them
CATEGORY_PT = {
    "steel": "aço",
    "copper": "cobre",
    "plastics": "plásticos",
    "paper": "papel",
    "grain": "grãos",
    "coffee": "café",
    "packaging": "embalagens",
    "chemicals": "químicos",
}


def decline(intent: Intent) -> str:
    lang, key = intent.lang, intent.decline
    if key == "never_approves":
        return _t(
            lang,
            "I can't do that: the assistant never approves, sends, cancels, receives or "
            "deletes orders or data. It can draft an order; a buyer approves it on the "
            "Orders page.",
            "Não posso fazer isso: o assistente nunca aprova, envia, cancela, recebe nem apaga "
            "pedidos ou dados. Ele pode criar um rascunho de pedido; um comprador o aprova na "
            "página Orders.",
        )
    if key == "no_changes":
        return _t(
            lang,
            "I can't change data, import files or retrain models: use the Data and Model "
            "pages. I only read, and draft orders.",
            "Não posso alterar dados, importar arquivos nem retreinar modelos: use as páginas "
            "Data e Model. Eu só leio dados e crio rascunhos de pedido.",
        )
    if key == "secrets":
        return _t(
            lang,
            "I can't help with passwords, keys or user accounts: ask your administrator.",
            "Não posso ajudar com senhas, chaves ou contas de usuário: fale com o administrador.",
        )
    if key == "how_much":
        return _t(
            lang,
            'How much should the order be for? For example: "draft an order for 200 units of '
            'SKU-00042".',
            'Qual a quantidade do pedido? Por exemplo: "crie um pedido de 200 unidades do '
            'SKU-00042".',
        )
    if key == "bad_quantity":
        return _t(
            lang,
            "The quantity must be more than zero.",
            "A quantidade deve ser maior que zero.",
        )
    if key == "which_product":
        return _t(
            lang,
            "Which product? Give its name or sku, e.g. SKU-00042.",
            "Qual produto? Diga o nome ou o sku, por exemplo SKU-00042.",
        )
    if key == "empty":
        return HELP[lang]
    return _t(lang, "I can't answer that. ", "Não sei responder isso. ") + HELP[lang]


def refusal(error: str, lang: str) -> str:
    if error.startswith("not allowed"):
        why = error.removeprefix("not allowed: ")
        why = why.replace(" may not orders", " may not place orders").replace(
            " may not view", " may not see this data"
        )
        return _t(lang, "Refused: ", "Recusado: ") + why + "."
    return _t(lang, "I could not answer: ", "Não consegui responder: ") + error + "."


def sources_line(sources: list[Source], lang: str) -> str:
    """ "Source: SKU-1 Name, SKU-2 Name, forecast 2026-07-01 to 2026-07-14, model V; ..." with the
    products that share what, dates and model version named together."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for s in sources:
        label = f"{s.sku} {s.name}" if s.sku and s.name and s.name != s.sku else str(s.sku or "")
        labels = groups.setdefault((s.what, s.start, s.end, s.model_version), [])
        if label and label not in labels:
            labels.append(label)
    parts = []
    for (what, start, end, version), labels in groups.items():
        if what == "catalog":
            parts.append(_t(lang, "the company's catalog", "catálogo da empresa"))
            continue
        if what == "orders":
            parts.append(_t(lang, "the company's purchase orders", "pedidos de compra da empresa"))
            continue
        name = {
            "prices": _t(lang, "prices", "preços"),
            "forecast": _t(lang, "forecast", "previsão"),
            "stock": _t(lang, "stock and sales", "estoque e vendas"),
        }.get(what, what)
        shown = labels[:5]
        if len(labels) > 5:
            shown.append(_t(lang, f"{len(labels) - 5} more", f"mais {len(labels) - 5}"))
        text = ", ".join([*shown, name]) if shown else name
        if start and end:
            text += (
                f" {start:%Y-%m-%d}"
                if start == end
                else _t(
                    lang,
                    f" {start:%Y-%m-%d} to {end:%Y-%m-%d}",
                    f" de {start:%Y-%m-%d} a {end:%Y-%m-%d}",
                )
            )
        if version:
            text += _t(lang, f", model {version}", f", modelo {version}")
        parts.append(text)
    return _t(lang, "Source: ", "Fonte: ") + "; ".join(parts) + "."


def render(intent: Intent, result: ToolResult) -> str:
    lang = intent.lang
    if result.error:
        return refusal(result.error, lang)
    d = result.data
    fn = _RENDER.get(result.name)
    return fn(d, lang, intent) if fn else str(d)


def _find(d: dict[str, Any], lang: str, intent: Intent) -> str:
    m = d["matches"]
    if not m:
        return _t(
            lang,
            f'I found no product matching "{d["query"]}".',
            f'Não encontrei nenhum produto para "{d["query"]}".',
        )
    items = "\n".join(
        f"- {r['sku']}: {r['name']} ({r['category']}, {r['supplier'] or '-'})" for r in m
    )
    wanted = intent.detail.get("wanted") if intent.detail else None
    head = _t(lang, "Which product do you mean?", "Qual destes produtos?") if wanted else ""
    if len(m) == 1:
        return _t(lang, "I found one product:", "Encontrei um produto:") + "\n" + items
    if d.get("category"):
        head = head or _t(
            lang,
            f"{len(m)} products of category {d['category']}:",
            f"{len(m)} produtos da categoria {CATEGORY_PT.get(d['category'], d['category'])}:",
        )
    head = head or _t(lang, f"I found {len(m)} products:", f"Encontrei {len(m)} produtos:")
    return head + "\n" + items


def _history(d: dict[str, Any], lang: str, _: Intent) -> str:
    ch = d.get("change_pct")
    change = ""
    if ch is not None:
        change = _t(
            lang,
            f", {'up' if ch >= 0 else 'down'} {pct(abs(ch), lang)} from {num(d['first_price'], lang)}",
            f", {'alta' if ch >= 0 else 'queda'} de {pct(abs(ch), lang)} desde {num(d['first_price'], lang)}",
        )
    return _t(
        lang,
        f"{d['sku']} {d['name']}: latest price {num(d['latest_price'], lang)} per {d['unit']} on "
        f"{day(d['latest_date'], lang)}{change}. From {d['from']} to {d['to']} "
        f"({d['observations']} prices): lowest {num(d['min'], lang)} on {d['min_date']}, "
        f"highest {num(d['max'], lang)} on {d['max_date']}, mean {num(d['mean'], lang)}.",
        f"{d['sku']} {d['name']}: último preço {num(d['latest_price'], lang)} por {d['unit']} em "
        f"{day(d['latest_date'], lang)}{change}. De {d['from']} a {d['to']} "
        f"({d['observations']} preços): mínimo {num(d['min'], lang)} em {d['min_date']}, "
        f"máximo {num(d['max'], lang)} em {d['max_date']}, média {num(d['mean'], lang)}.",
    )


def _forecast(d: dict[str, Any], lang: str, _: Intent) -> str:
    conf = likely(d["confidence"], lang) if d.get("confidence") is not None else "-"
    if d["buy_now"]:
        if d.get("stock_runs_out_first"):
            why_pt = "o estoque acaba antes que esperar compense"
        elif (d.get("trend_pct") or 0) > 0.5:
            why_pt = f"a previsão é de alta de {pct(d['trend_pct'], lang)} até {d['forecast_to']}"
        else:
            why_pt = f"nenhuma economia confiável em esperar até {d['forecast_to']}"
        main = _t(
            lang,
            f"{d['sku']} {d['name']}: buy now, at about {num(d['price_today'], lang)}: "
            f"{_why(d['reason'])}.",
            f"{d['sku']} {d['name']}: compre agora, por cerca de {num(d['price_today'], lang)}: "
            f"{why_pt}.",
        )
    else:
        main = _t(
            lang,
            f"{d['sku']} {d['name']}: the best day to buy is {day(d['buy_date'], lang)}, at about "
            f"{num(d['price_on_buy_date'], lang)} against {num(d['price_today'], lang)} today "
            f"({pct(d['saving_pct'], lang)} less), {conf} likely.",
            f"{d['sku']} {d['name']}: o melhor dia para comprar é {day(d['buy_date'], lang)}, por "
            f"cerca de {num(d['price_on_buy_date'], lang)} contra {num(d['price_today'], lang)} "
            f"hoje ({pct(d['saving_pct'], lang)} a menos), com {conf} de probabilidade.",
        )
    parts = [main]
    w = d.get("window")
    if w:
        ch = w.get("change_vs_today_pct")
        parts.append(
            _t(
                lang,
                f"From {w['from']} to {w['to']} the lowest forecast is {num(w['lowest'], lang)} "
                f"on {day(w['lowest_date'], lang)} (80% range {num(w['lo_80'], lang)}–"
                f"{num(w['hi_80'], lang)}), {pct(ch, lang)} against today.",
                f"De {w['from']} a {w['to']} a menor previsão é {num(w['lowest'], lang)} em "
                f"{day(w['lowest_date'], lang)} (faixa de 80% {num(w['lo_80'], lang)}–"
                f"{num(w['hi_80'], lang)}), {pct(ch, lang)} em relação a hoje.",
            )
        )
    elif d.get("window_note"):
        parts.append(
            _t(
                lang,
                f"The forecast covers {d['forecast_from']} to {d['forecast_to']} only; the day "
                "you asked about is outside it.",
                f"A previsão cobre apenas de {d['forecast_from']} a {d['forecast_to']}; o dia "
                "pedido está fora dela.",
            )
        )
    if d.get("promotions"):
        parts.append(d["promotions"])
    if d.get("backtest_record"):
        parts.append(d["backtest_record"])
    return " ".join(parts)


def _why(reason: str) -> str:
    """The advice's reason without its "Buy now:" head, lower-cased: "price forecast to rise"."""
    r = reason.split(": ", 1)[1] if reason.startswith("Buy") and ": " in reason else reason
    return r[:1].lower() + r[1:]


def _check(d: dict[str, Any], lang: str, _: Intent) -> str:
    if d["verdict"] == "implausible":
        return _t(
            lang,
            f"{num(d['price'], lang)} for {d['sku']} {d['name']} is far below anything paid from "
            f"{d['history_from']} to {d['history_to']} (lowest {num(d['min_180d'], lang)}, median "
            f"{num(d['median_180d'], lang)}): check the product, the unit and the number before "
            "buying; a quote that low is more likely a mistake than a bargain.",
            f"{num(d['price'], lang)} para {d['sku']} {d['name']} está muito abaixo de tudo o que "
            f"se pagou de {d['history_from']} a {d['history_to']} (mínimo "
            f"{num(d['min_180d'], lang)}, mediana {num(d['median_180d'], lang)}): confira o "
            "produto, a unidade e o número antes de comprar; um preço tão baixo é mais "
            "provavelmente um erro do que uma pechincha.",
        )
    share = pct(100 * d["share_of_days_cheaper"], lang, 0)
    verdict = {
        "good": _t(lang, "a good price", "um bom preço"),
        "fair": _t(lang, "a fair price", "um preço razoável"),
        "high": _t(lang, "a high price", "um preço alto"),
        "wait": _t(
            lang, "more than it is forecast to cost soon", "mais do que a previsão indica em breve"
        ),
    }[d["verdict"]]
    text = _t(
        lang,
        f"{num(d['price'], lang)} for {d['sku']} {d['name']} is {verdict}: it was cheaper on "
        f"{share} of the days from {d['history_from']} to {d['history_to']} (median "
        f"{num(d['median_180d'], lang)}, range {num(d['min_180d'], lang)}–{num(d['max_180d'], lang)}); "
        f"the lowest forecast is {num(d['forecast_lowest'], lang)} on "
        f"{day(d['forecast_lowest_date'], lang)}.",
        f"{num(d['price'], lang)} para {d['sku']} {d['name']} é {verdict}: esteve mais barato em "
        f"{share} dos dias de {d['history_from']} a {d['history_to']} (mediana "
        f"{num(d['median_180d'], lang)}, faixa {num(d['min_180d'], lang)}–{num(d['max_180d'], lang)}); "
        f"a menor previsão é {num(d['forecast_lowest'], lang)} em "
        f"{day(d['forecast_lowest_date'], lang)}.",
    )
    if not d["buy_now"]:
        conf = likely(d["confidence"], lang)
        text += _t(
            lang,
            f" Waiting until {day(d['buy_date'], lang)} should save {pct(d['saving_pct'], lang)} ({conf} likely).",
            f" Esperar até {day(d['buy_date'], lang)} deve economizar {pct(d['saving_pct'], lang)} ({conf} de probabilidade).",
        )
    return text


def _stock(d: dict[str, Any], lang: str, _: Intent) -> str:
    status = {
        "reorder_now": _t(
            lang,
            "reorder now: stock is below the lead-time demand",
            "reponha já: o estoque está abaixo da demanda no prazo de entrega",
        ),
        "reorder_soon": _t(
            lang,
            "reorder soon: less than a week of cover beyond the lead time",
            "reponha em breve: menos de uma semana de cobertura além do prazo de entrega",
        ),
        "ok": _t(lang, "no reorder needed yet", "ainda não precisa repor"),
        "unknown": _t(lang, "no stock recorded", "sem estoque registrado"),
    }[d["status"]]
    if d["on_hand"] is None:
        return f"{d['sku']} {d['name']}: {status}."
    cover = (
        _t(
            lang,
            f", {num(d['days_of_cover'], lang, 1)} days of cover (until about {d['runs_out_on']})",
            f", {num(d['days_of_cover'], lang, 1)} dias de cobertura (até cerca de {d['runs_out_on']})",
        )
        if d["days_of_cover"] is not None
        else _t(lang, ", no recent sales", ", sem vendas recentes")
    )
    lead = d["lead_time_days"] if d["lead_time_days"] is not None else "-"
    return _t(
        lang,
        f"{d['sku']} {d['name']}: {qty(d['on_hand'], lang)} {d['unit']} on hand, selling "
        f"{num(d['daily_demand'], lang)} per day{cover}; lead time {lead} days. Status: {status}.",
        f"{d['sku']} {d['name']}: {qty(d['on_hand'], lang)} {d['unit']} em estoque, vendendo "
        f"{num(d['daily_demand'], lang)} por dia{cover}; prazo de entrega {lead} dias. "
        f"Situação: {status}.",
    )


def _draft(d: dict[str, Any], lang: str, _: Intent) -> str:
    changed = d["quantity"] != d["quantity_asked"]
    note = (
        _t(
            lang,
            f" ({qty(d['quantity_asked'], lang)} asked, raised to the supplier's pack size or minimum)",
            f" ({qty(d['quantity_asked'], lang)} pedidos, arredondado para a embalagem ou o mínimo do fornecedor)",
        )
        if changed
        else ""
    )
    return _t(
        lang,
        f"Draft order {d['order_id']} created: {qty(d['quantity'], lang)} {d['unit']} of "
        f"{d['sku']} {d['name']}{note} from {d['supplier'] or '(no supplier)'}, dated "
        f"{day(d['order_date'], lang)}, at {num(d['unit_price'], lang)} (the latest price) = "
        f"{num(d['total'], lang)} {d['currency']}. It is a draft: a buyer approves it on the "
        "Orders page; I never approve or send orders.",
        f"Rascunho de pedido {d['order_id']} criado: {qty(d['quantity'], lang)} {d['unit']} de "
        f"{d['sku']} {d['name']}{note} do fornecedor {d['supplier'] or '(sem fornecedor)'}, "
        f"data {day(d['order_date'], lang)}, a {num(d['unit_price'], lang)} (último preço) = "
        f"{num(d['total'], lang)} {d['currency']}. É um rascunho: um comprador o aprova na "
        "página Orders; eu nunca aprovo nem envio pedidos.",
    )


def _orders(d: dict[str, Any], lang: str, _: Intent) -> str:
    pt_status = {
        "draft": "em rascunho",
        "approved": "aprovados",
        "sent": "enviados",
        "received": "recebidos",
        "cancelled": "cancelados",
    }
    status = (
        f" {_t(lang, d['status'], pt_status.get(d['status'], d['status']))}" if d["status"] else ""
    )
    if not d["count"]:
        return _t(lang, f"There are no{status} orders.", f"Não há pedidos{status}.")
    lines = "\n".join(
        f"- #{o['id']} {o['supplier'] or '-'}, {o['order_date']}, {o['status']}, "
        f"{o['lines']} {_t(lang, 'lines', 'linhas')}, {num(o['total'], lang)} {o['currency']}"
        for o in d["orders"]
    )
    more = (
        _t(
            lang,
            f"\n(first {d['shown']} of {d['count']})",
            f"\n(primeiros {d['shown']} de {d['count']})",
        )
        if d["count"] > d["shown"]
        else ""
    )
    one = d["count"] == 1
    noun = _t(lang, "order" if one else "orders", "pedido" if one else "pedidos")
    head = _t(lang, f"{d['count']}{status} {noun}:", f"{d['count']} {noun}{status}:")
    return head + "\n" + lines + more


def _best(d: dict[str, Any], lang: str, _: Intent) -> str:
    items = d["items"]
    if not items:
        return _t(
            lang,
            f"No product is reliably cheaper later: buy as needed (forecast {d['forecast_from']} to {d['forecast_to']}).",
            f"Nenhum produto fica confiavelmente mais barato depois: compre quando precisar (previsão de {d['forecast_from']} a {d['forecast_to']}).",
        )

    def line(r: dict[str, Any]) -> str:
        conf = likely(r["confidence"], lang)
        if r["buy_now"]:
            return _t(
                lang,
                f"- {r['sku']} {r['name']}: buy now at about {num(r['price_today'], lang)}",
                f"- {r['sku']} {r['name']}: compre agora por cerca de {num(r['price_today'], lang)}",
            )
        return _t(
            lang,
            f"- {r['sku']} {r['name']}: buy on {day(r['buy_date'], lang)} at about "
            f"{num(r['price_on_buy_date'], lang)} ({pct(r['saving_pct'], lang)} less, {conf} likely)",
            f"- {r['sku']} {r['name']}: compre em {day(r['buy_date'], lang)} por cerca de "
            f"{num(r['price_on_buy_date'], lang)} ({pct(r['saving_pct'], lang)} a menos, {conf})",
        )

    if d.get("category"):
        cat = d["category"]
        head = _t(
            lang,
            f"Best day to buy each {cat} product:",
            f"Melhor dia para comprar cada produto de {CATEGORY_PT.get(cat, cat)}:",
        )
    else:
        head = _t(
            lang,
            f"{d['products_cheaper_later']} of {d['products']} products are forecast cheaper "
            "later; the largest savings:",
            f"{d['products_cheaper_later']} de {d['products']} produtos devem ficar mais "
            "baratos; as maiores economias:",
        )
    return head + "\n" + "\n".join(line(r) for r in items)


_RENDER = {
    "find_product": _find,
    "price_history": _history,
    "forecast": _forecast,
    "price_check": _check,
    "stock_status": _stock,
    "draft_order": _draft,
    "list_orders": _orders,
    "best_buys": _best,
}
