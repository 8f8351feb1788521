"""The offline engine's understanding of a question: intent and entities, in Portuguese and English.

``parse`` is a pure function of the question, the company's catalog and a way to know "today"
(asked only when the question holds a date): it returns the tool to call with its arguments, or
a reason to decline. No network, no model: keyword rules over an accent-free, lower-case copy of
the question, products found by sku or by fuzzy name (``difflib``, so "cofee", "cafe" and
"café" all find coffee), numbers read with a decimal comma or point, and relative dates ("next
week", "semana que vem", "amanhã", "in 3 days", "segunda que vem") turned into days.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

Lang = str  # "en" | "pt"

# --- text --------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Lower case without accents: "Preço amanhã" -> "preco amanha"."""
    nfkd = unicodedata.normalize("NFKD", text)
    return "".join(c for c in nfkd if not unicodedata.combining(c)).lower()


def _words(text: str) -> set[str]:
    return set(text.split())


_PT_WORDS = _words(
    """qual quais quando preco precos comprar compre pedido pedidos estoque semana melhor dia
    para do da dos das no na um uma hoje amanha proxima proximo unidades faca crie mostre
    historico vale pena quanto meus minhas esta e o os as de que vem ultimos ultimas dias meses
    caro barato bom boa rascunho encomenda empresa previsao devo agora esperar sao tem temos
    procure busque aprove envie cancele apague produto produtos"""
)
_EN_WORDS = _words(
    """what when which price prices buy order orders stock week best day the is how show my
    today tomorrow next draft units of for should will good history last days months find
    search much many company forecast cheaper wait now are do we have approve send cancel
    delete product products an it"""
)


def language(question: str) -> Lang:
    """ "pt" or "en", by the words used (accents count for Portuguese)."""
    words = re.findall(r"[a-z]+", fold(question))
    pt = sum(w in _PT_WORDS for w in words) + 2 * len(
        re.findall(r"[ãõçâêôáéíóú]", question.lower())
    )
    en = sum(w in _EN_WORDS for w in words)
    return "pt" if pt > en else "en"


# --- numbers -----------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"(?<![\w.,])\d{1,3}(?:[.,]\d{3})+(?:[.,]\d+)?(?![\w])|(?<![\w.,])\d+(?:[.,]\d+)?(?![\w])"
)


def parse_number(text: str, lang: Lang = "en") -> float:
    """A number as people type it: "12,50" and "12.50" are 12.5; "1.500" is 1500 in Portuguese
    and 1.5 in English, "1,500" the other way round; with both marks the last one is the
    decimal mark ("1.234,50", "1,234.50")."""
    s = text.strip().replace(" ", "").replace("\u00a0", "")
    if "," in s and "." in s:
        dec = "," if s.rfind(",") > s.rfind(".") else "."
        thou = "." if dec == "," else ","
        return float(s.replace(thou, "").replace(dec, "."))
    for mark, thousands_in in ((",", "en"), (".", "pt")):
        if mark in s:
            groups = s.split(mark)
            if lang == thousands_in and all(len(g) == 3 for g in groups[1:]) and len(groups) > 1:
                return float("".join(groups))
            if len(groups) > 2:  # "1.234.567": only thousands make sense
                return float("".join(groups))
            return float(s.replace(mark, "."))
    return float(s)


# --- dates -------------------------------------------------------------------------------------

_WEEKDAYS = {
    "monday": 0, "segunda": 0, "segunda-feira": 0,
    "tuesday": 1, "terca": 1, "terca-feira": 1,
    "wednesday": 2, "quarta": 2, "quarta-feira": 2,
    "thursday": 3, "quinta": 3, "quinta-feira": 3,
    "friday": 4, "sexta": 4, "sexta-feira": 4,
    "saturday": 5, "sabado": 5,
    "sunday": 6, "domingo": 6,
}  # fmt: skip
_WD = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))


@dataclass(frozen=True)
class DateRange:
    start: dt.date
    end: dt.date
    text: str  # the words it was read from


def _next_weekday(today: dt.date, wd: int) -> dt.date:
    return today + dt.timedelta(days=(wd - today.weekday() - 1) % 7 + 1)


def parse_dates(q: str, today: Callable[[], dt.date], lang: Lang = "en") -> DateRange | None:
    """The day or days a question is about, relative to ``today`` (called only when the
    question names a date). ``q`` is folded (see ``fold``)."""
    rules: list[tuple[str, Callable[[re.Match[str], dt.date], tuple[dt.date, dt.date]]]] = [
        (r"\b(\d{4})-(\d{2})-(\d{2})\b", lambda m, t: (_iso(m),) * 2),
        (r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", lambda m, t: (_dm(m, t, lang),) * 2),
        (r"\b(depois de amanha|day after tomorrow)\b", lambda m, t: (t + _d(2),) * 2),
        (r"\b(amanha|tomorrow)\b", lambda m, t: (t + _d(1),) * 2),
        (r"\b(hoje|today)\b", lambda m, t: (t, t)),
        (
            r"\b(next|nos|nas|within the next|in the next|within|proximos|proximas)\s+(\d+)\s+"
            r"(days?|dias|weeks?|semanas)\b",
            lambda m, t: (t, t + _d(_n_days(m.group(2), m.group(3)))),
        ),
        (
            r"\b(in|daqui a|em|dentro de)\s+(\d+)\s+(days?|dias|weeks?|semanas)\b",
            lambda m, t: (t + _d(_n_days(m.group(2), m.group(3))),) * 2,
        ),
        (
            r"\b(next week|semana que vem|proxima semana|semana seguinte)\b",
            lambda m, t: (_next_weekday(t, 0), _next_weekday(t, 0) + _d(6)),
        ),
        (
            r"\b(this week|esta semana|essa semana|nesta semana|nessa semana)\b",
            lambda m, t: (t, t + _d(6 - t.weekday())),
        ),
        (
            rf"\b(?:next|on|this|coming|proxima|proximo|na|no|nesta|neste)?\s*({_WD})"
            r"(?:\s+que vem)?\b",
            lambda m, t: (_next_weekday(t, _WEEKDAYS[m.group(1)]),) * 2,
        ),
        (
            r"\b(end of (the )?month|fim do mes|final do mes)\b",
            lambda m, t: (_month_end(t),) * 2,
        ),
        (
            r"\b(next month|mes que vem|proximo mes)\b",
            lambda m, t: (_month_end(t) + _d(1), _month_end(_month_end(t) + _d(1))),
        ),
    ]
    for pattern, make in rules:
        m = re.search(pattern, q)
        if m:
            t = today()
            try:
                start, end = make(m, t)
            except ValueError:
                continue
            return DateRange(start, end, m.group(0).strip())
    return None


def _d(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)


def _n_days(n: str, unit: str) -> int:
    return int(n) * (7 if unit.startswith(("week", "semana")) else 1)


def _iso(m: re.Match[str]) -> dt.date:
    return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def _dm(m: re.Match[str], today: dt.date, lang: Lang) -> dt.date:
    a, b = int(m.group(1)), int(m.group(2))
    day, month = (b, a) if lang == "en" and a <= 12 and b > 12 else (a, b)
    if lang == "en" and a <= 12 and b <= 12:
        day, month = b, a  # 07/15 and 07/08 read month first in English
    year = int(m.group(3)) if m.group(3) else today.year
    if year < 100:
        year += 2000
    d = dt.date(year, month, day)
    if not m.group(3) and d < today - dt.timedelta(days=180):
        d = d.replace(year=year + 1)  # "15/01" said in December is next January
    return d


def _month_end(t: dt.date) -> dt.date:
    nxt = (t.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return nxt - dt.timedelta(days=1)


_PERIOD = re.compile(
    r"\b(?:last|past|over the last|ultim[oa]s?|nos ultimos|nas ultimas|dos ultimos|"
    r"das ultimas)\s+(\d+)\s+(days?|dias|weeks?|semanas|months?|mes|meses|years?|anos?)\b"
)
_PERIOD_WORDS = [
    (r"\b(last|past) week\b|\bsemana passada\b|\bultima semana\b", 7),
    (r"\b(last|past) month\b|\bmes passado\b|\bultimo mes\b", 30),
    (r"\b(last|past) (quarter|3 months)\b|\bultimo trimestre\b", 91),
    (r"\b(last|past) year\b|\bano passado\b|\bultimo ano\b|\b12 months\b|\b12 meses\b", 365),
]


def parse_period(q: str) -> tuple[int, str] | None:
    """How many days back a question looks ("last 90 days", "últimos 3 meses", "ano passado")."""
    m = _PERIOD.search(q)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        per = (
            7
            if unit.startswith(("week", "semana"))
            else 30
            if unit.startswith(("month", "mes"))
            else 365
            if unit.startswith(("year", "ano"))
            else 1
        )
        return max(1, n * per), m.group(0)
    for pattern, days in _PERIOD_WORDS:
        m = re.search(pattern, q)
        if m:
            return days, m.group(0)
    return None


# --- products ----------------------------------------------------------------------------------

# Portuguese (and a few loose English) words for the demo's categories and energy products
SYNONYMS = {
    "cafe": "coffee", "aco": "steel", "cobre": "copper", "plastico": "plastics",
    "plasticos": "plastics", "plastic": "plastics", "papel": "paper", "grao": "grain",
    "graos": "grain", "cereal": "grain", "cereais": "grain", "trigo": "grain", "milho": "grain",
    "embalagem": "packaging", "embalagens": "packaging", "quimico": "chemicals",
    "quimicos": "chemicals", "chemical": "chemicals", "petroleo": "crude", "oleo": "oil",
    "gasolina": "gasoline", "querosene": "kerosene", "propano": "propane", "gas": "gas",
    "natural": "natural", "diesel": "diesel", "combustivel": "fuel", "aluminio": "aluminium",
}  # fmt: skip
STOPWORDS = {
    # English
    "a", "an", "the", "of", "for", "to", "is", "are", "be", "it", "its", "me", "my", "our",
    "we", "i", "you", "what", "when", "which", "who", "how", "much", "many", "should", "will",
    "would", "can", "could", "do", "does", "did", "please", "in", "on", "at", "by", "and", "or",
    "with", "from", "this", "that", "these", "those", "there", "any", "some", "now", "today",
    "tomorrow", "next", "week", "weeks", "day", "days", "month", "months", "year", "years",
    "last", "past", "price", "prices", "priced", "buy", "buying", "purchase", "order", "orders",
    "draft", "create", "make", "place", "units", "unit", "best", "good", "time", "forecast",
    "cheaper", "cheap", "expensive", "history", "stock", "show", "tell", "give", "find",
    "search", "look", "up", "product", "products", "item", "items", "sku", "get", "need",
    "want", "have", "has", "about", "than", "then", "wait", "going", "go", "drop", "rise",
    "down", "deal", "worth", "fair", "current", "currently", "trend", "level",
    "reorder", "run", "out", "inventory", "hand", "status", "company", "list", "all", "new",
    "lowest", "highest", "average", "mean", "low", "high", "right", "again", "more", "less",
    "kg", "t", "box", "boxes", "bag", "bags", "ream", "reams", "tons", "tonnes", "pieces",
    # Portuguese (folded)
    "o", "os", "as", "um", "uma", "uns", "umas", "de", "da", "dos", "das", "no", "na",
    "nos", "nas", "em", "para", "pra", "por", "com", "e", "ou", "que", "qual", "quais",
    "quando", "quanto", "quantos", "quantas", "como", "onde", "meu", "meus", "minha",
    "minhas", "nosso", "nossa", "nossos", "se", "ao", "aos", "esta", "este", "isso", "isto",
    "essa", "esse", "hoje", "amanha", "proxima", "proximo", "proximos", "semana", "semanas",
    "dia", "dias", "mes", "meses", "ano", "anos", "ultimo", "ultimos", "ultima", "ultimas",
    "preco", "precos", "comprar", "compre", "compra", "pedido", "pedidos", "rascunho", "crie",
    "criar", "faca", "fazer", "unidades", "unidade", "melhor", "bom", "boa", "momento",
    "previsao", "mais", "menos", "barato", "barata", "caro", "cara", "historico", "estoque",
    "mostre", "mostrar", "diga", "procure", "busque", "encontre", "produto", "produtos",
    "itens", "vale", "pena", "agora", "esperar", "devo", "vai", "cair", "subir",
    "baixar", "tem", "temos", "ha", "sao", "eh", "empresa", "quero", "preciso", "sacos",
    "caixas", "resmas", "toneladas", "quilos", "vem", "atual", "custa", "custo", "situacao",
    "repor", "acabar", "falta", "lista", "liste", "listar", "todos", "todas", "favor",
    "encomenda", "encomendar", "novo", "nova", "valor", "medio", "media", "minimo", "maximo",
}  # fmt: skip
GENERIC = {"item", "prices", "price", "spot", "sku"}  # in product names, but say nothing


@dataclass
class ProductMatch:
    """What a question names: one product, a category (several products), or nothing."""

    skus: list[str] = field(default_factory=list)
    category: str | None = None
    words: list[str] = field(default_factory=list)  # the question's words that matched
    by_sku: bool = False

    @property
    def sku(self) -> str | None:
        return self.skus[0] if len(self.skus) == 1 else None


_SKU = re.compile(r"\b([a-z]{2,}[a-z0-9]*)[-_ ]?(\d{1,})\b")


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*", fold(text))


def _index(catalog: pd.DataFrame) -> tuple[dict[str, set[str]], dict[str, float]]:
    """sku -> its name, category and sku words; word -> inverse document frequency."""
    words: dict[str, set[str]] = {}
    for r in catalog.itertuples(index=False):
        toks = set(_tokens(f"{r.name} {r.category}")) | {str(r.sku).lower()}
        toks |= {t for part in _tokens(str(r.category)) for t in (part, part.rstrip("s"))}
        words[str(r.sku)] = {t for t in toks if t not in GENERIC and len(t) > 1}
    n = max(len(words), 1)
    df: dict[str, int] = {}
    for toks in words.values():
        for t in toks:
            df[t] = df.get(t, 0) + 1
    return words, {t: math.log(1 + n / c) for t, c in df.items()}


def find_sku(q: str, catalog: pd.DataFrame) -> tuple[str | None, str]:
    """The catalog sku a folded question names ("SKU-00042", "sku 42", "sku42", "dcoilbrenteu",
    "sku-0042" misspelled), and the text that named it."""
    skus = [str(s) for s in catalog["sku"]]
    lower = {s.lower(): s for s in skus}
    for m in _SKU.finditer(q):
        prefix, digits = m.group(1), m.group(2)
        exact = lower.get(f"{prefix}-{digits}") or lower.get(f"{prefix}{digits}")
        if exact:
            return exact, m.group(0)
        same = [
            s
            for s in skus
            if re.search(r"(\d+)$", s)
            and int(re.search(r"(\d+)$", s).group(1)) == int(digits)  # type: ignore[union-attr]
            and difflib.SequenceMatcher(None, re.sub(r"[-_\d]", "", s.lower()), prefix).ratio()
            >= 0.6
        ]
        if len(same) == 1:
            return same[0], m.group(0)
    for tok in re.findall(r"[a-z0-9][a-z0-9_-]{3,}", q):
        if tok in lower:
            return lower[tok], tok
    alpha = [s for s in lower if not re.search(r"\d", s) and len(s) >= 6]
    for tok in re.findall(r"[a-z]{6,}", q):
        close = difflib.get_close_matches(tok, alpha, n=1, cutoff=0.85)
        if close:
            return lower[close[0]], tok
    return None, ""


def match_products(q: str, catalog: pd.DataFrame, limit: int = 5) -> ProductMatch:
    """Products a folded question names by sku, or by (fuzzy) name or category words, in
    Portuguese or English. The best-scoring products win; several products of one category
    that only the category word names make a category match."""
    if catalog.empty:
        return ProductMatch()
    sku, _ = find_sku(q, catalog)
    if sku:
        return ProductMatch([sku], None, [sku], by_sku=True)
    index, idf = _index(catalog)
    vocab = sorted(idf)
    asked: list[str] = []
    for tok in _tokens(q):
        if tok in STOPWORDS or len(tok) < 3:
            continue
        if tok not in idf and tok not in SYNONYMS:
            tok = re.sub(r"(zinh|inh)([oa]s?)$", "", tok) or tok  # "cafezinho" -> "cafe"
        words = [tok]
        if tok not in idf:
            near = difflib.get_close_matches(tok, [*vocab, *SYNONYMS], n=1, cutoff=0.8)
            words = near or []
        for w in words:
            asked += SYNONYMS.get(w, w).split()
    asked = [w for w in dict.fromkeys(asked) if w in idf]
    if not asked:
        return ProductMatch()
    scores = {sku: sum(idf[w] for w in asked if w in toks) for sku, toks in index.items()}
    best = max(scores.values())
    if best <= 0:
        return ProductMatch()
    top = [s for s, v in scores.items() if v >= best - 1e-9]
    cats = catalog.set_index(catalog["sku"].astype(str))["category"]
    matched = [w for w in asked if any(w in index[s] for s in top)]
    if len(top) > 1 and len({cats[s] for s in top}) == 1:
        return ProductMatch(top[:limit], str(cats[top[0]]), matched)
    return ProductMatch(top[:limit], None, matched)


_FOLLOW_UP = re.compile(
    r"^(and|e|what about|how about|then|entao|e quanto a|e quanto ao|e sobre|and for|e para)\b"
)


def follow_up(question: str, earlier: list[str], catalog: pd.DataFrame) -> str:
    """A follow-up that names no product ("and next week?", "e o estoque?") is about the
    product of the latest earlier question that named exactly one: that sku is added to it."""
    q = fold(question).strip()
    if not _FOLLOW_UP.match(q) or catalog.empty or match_products(q, catalog).skus:
        return question
    for before in reversed(earlier):
        sku = match_products(fold(before), catalog).sku
        if sku:
            return f"{question} ({sku})"
    return question


def content_words(q: str) -> str:
    """The words of a folded question that are not instructions or filler: what to search for."""
    return " ".join(t for t in _tokens(q) if t not in STOPWORDS and len(t) > 2)


# --- intents -----------------------------------------------------------------------------------


@dataclass
class Intent:
    """What to do with a question: call ``tool`` with ``arguments``, or answer ``decline``
    (a key of the answer templates) without a tool."""

    tool: str | None
    arguments: dict[str, Any]
    lang: Lang
    decline: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # for the answer's wording


def _any(q: str, *patterns: str) -> bool:
    return any(re.search(p, q) for p in patterns)


# acts the assistant never does (approving, sending, deleting...), in both languages
_FORBIDDEN_ACT = (
    r"\b(approve|aprov(e|ar|a|em)|send|envi(e|ar|em)|mand(e|ar)|cancel|cancel(e|ar)|reject|"
    r"rejeit(e|ar)|recus(e|ar)|delete|apag(ue|ar)|exclu(a|ir)|remov(a|e|er)|erase|wipe|"
    r"pay|pag(ue|ar)|confirm(e|ar)? (o |the )?(pedido|order))\b",
    r"\b(receive|receb(a|er)|mark)\b(\s+\w+){0,3}\s+(orders?|pedidos?|received|recebido)\b",
)
_CHANGE_DATA = (
    r"\b(change|set|update|edit|modify|alter(e|ar)|mud(e|ar)|atualiz(e|ar)|edit(e|ar)|"
    r"modifi(que|car)|defin(a|ir)|reduz(a|ir)|aument(e|ar)|lower|raise|increase|decrease)\b"
    r"(\s+\w+){0,3}\s+(price|prices|preco|precos|stock|estoque|quantity|quantidade|data|dados|"
    r"catalog|catalogo|lead time|prazo|limit|limite)\b",
    r"\b(retrain|retreine|treine|train the model|import|importe|importar|upload|drop table)\b",
)
_SECRETS = (
    r"\b(password|passwords|senha|senhas|api key|chave|token|credential|credenciais|login|"
    r"logins|users|usuarios|user accounts|contas de usuario|admin)\b"
)
_DRAFT_EXPLICIT = (
    r"\b(draft|rascunho|crie|criar|create|make|place|faca|fazer|gere|gerar|abra|abrir|"
    r"encomend\w*|requisi\w*|pedir|peca|order|pedido)\b"
)
_DRAFT_BUY = r"\b(buy|comprar|compre|quero|preciso|need|get me|reserve)\b"
_ASKING = (
    r"\b(when|quando|best (day|time|moment)|melhor (dia|momento|data|hora)|should (i|we)|devo|"
    r"devemos|now or|agora ou|vale a pena|worth|good price|bom preco|cheaper|mais barat\w*|"
    r"wait|esperar|forecast|previsao)\b"
)
_ORDER_NOUN = r"\b(orders?|pedidos?|encomendas?|drafts?|rascunhos?|purchase orders?)\b"
_STOCK = (
    r"\b(stock|estoque|inventory|inventario|on hand|em maos|reorder|repor|reposicao|"
    r"reabastec\w*|run out|running out|acab\w*|falta\w*|cobertura|cover|ponto de pedido|"
    r"safety stock|lead time|prazo de entrega)\b"
)
_CHECK = (
    r"\b(good price|bom preco|preco bom|good deal|bom negocio|boa compra|fair price|"
    r"preco justo|justo|expensive|caro|cara|worth|vale a pena|overpriced|too high|alto demais|"
    r"reasonable|razoavel|a good buy|fair)\b"
)
_HISTORY = (
    r"\b(histor\w*|past prices|precos passados|trend|tendencia|evolu\w*|variou|variacao|"
    r"average|media|medio|lowest|highest|minimo|maximo|how has|went (up|down)|subiu|caiu|"
    r"last \d+|past \d+|ultim[oa]s? \d+|last (week|month|year|quarter)|semana passada|"
    r"mes passado|ano passado)\b"
)
_FORECAST = (
    r"\b(when|quando|best (day|time|moment)|melhor (dia|momento|hora|data)|forecast\w*|"
    r"previs\w*|prever|will|vai (cair|subir|baixar|aumentar|ficar)|cair|baixar|subir|"
    r"cheaper|mais barat\w*|wait|esperar|espero|now or|agora ou|buy now|comprar agora|"
    r"next week|semana que vem|proxima semana|amanha|tomorrow|futur\w*|expected|advice|"
    r"recomend\w*|recommend\w*|should i|devo|aconselh\w*|go (up|down)|drop|rise|fall)\b"
)
_BEST_BUYS = (
    r"\b(what should (i|we) buy|o que (devo |devemos )?comprar|best buys|melhores compras|"
    r"top savings|maiores economias|biggest savings?|most savings?|cheaper later|"
    r"oportunidades|opportunit\w*|which products|quais produtos|what to buy|"
    r"what is cheaper|o que (vai )?ficar mais barato|economiz\w*|saving|savings)\b"
)
_FIND = (
    r"\b(find|search|look up|lookup|procur\w*|busc\w*|busqu\w*|encontr\w*|pesquis\w*|which sku|"
    r"what is the sku|qual (e )?o sku|do we (have|sell|buy)|temos|list (the )?products|"
    r"listar produtos|liste os produtos|catalog|catalogo|what products)\b"
)
_CURRENT = (
    r"\b(quanto custa|how much (is|does|do|are)|price of|prices of|preco d[aoe]s?|"
    r"precos d[aoe]s?|current price|preco atual|latest price|ultimo preco|cotacao|"
    r"what does .* cost|what is the price)\b"
)
_OFF_TOPIC = (
    r"\b(weather|tempo|clima|chuva|rain|joke|piada|poem|poema|song|musica|football|futebol|"
    r"news|noticias|recipe|receita|horoscope|horoscopo|translate|traduza|write code|"
    r"codigo|every company|all companies|todas as empresas|outras empresas|other companies)\b"
)
_COMPANY = re.compile(
    r"\b(?:company|empresa|companhia|tenant|cliente|client)\s+[\"']?([a-z0-9][a-z0-9-]*)"
)
_UNITS = (
    r"units?|unidades?|un|pcs|pieces|pecas|kg|kgs|quilos?|t|tons?|tonnes?|toneladas?|bags?|"
    r"sacos?|boxes?|caixas?|reams?|resmas?|litros?|liters?|l|barrels?|barris?|gallons?|galoes?"
)
_STATUS = {
    "draft": r"\b(drafts?|rascunhos?|pending|pendentes?)\b",
    "approved": r"\b(approved|aprovad[oa]s?)\b",
    "sent": r"\b(sent|enviad[oa]s?)\b",
    "received": r"\b(received|recebid[oa]s?)\b",
    "cancelled": r"\b(cancell?ed|cancelad[oa]s?|rejected|rejeitad[oa]s?)\b",
}


def company_named(question: str) -> str | None:
    """The company a question names ("company other", "da empresa energy"), if any."""
    m = _COMPANY.search(re.sub(r"\s+", " ", fold(question)))
    return m.group(1) if m else None


def _numbers(q: str, lang: Lang, skip: list[str]) -> list[tuple[float, str, int]]:
    """(value, text, position) of the numbers in a folded question, outside ``skip`` texts
    (the sku, the dates, the period)."""
    for s in skip:
        if s:
            q = q.replace(s, " " * len(s))
    out = []
    for m in _NUMBER.finditer(q):
        try:
            out.append((parse_number(m.group(0), lang), m.group(0), m.start()))
        except ValueError:
            continue
    return out


def _quantity(q: str, numbers: list[tuple[float, str, int]]) -> float | None:
    """The quantity ordered: a number followed by a unit word, else the first number not
    written as money."""
    for value, text, pos in numbers:
        after = q[pos + len(text) : pos + len(text) + 14]
        if re.match(rf"\s*({_UNITS})\b", after):
            return value
    for value, _text, pos in numbers:
        before = q[max(0, pos - 5) : pos]
        if not re.search(r"(r\$|us\$|\$|€|usd|brl)\s*$", before):
            return value
    return None


def _price(q: str, numbers: list[tuple[float, str, int]]) -> float | None:
    return numbers[0][0] if numbers else None


def parse(
    question: str,
    catalog: pd.DataFrame,
    today: Callable[[], dt.date],
) -> Intent:
    """What a question asks, as a tool call (or a reason to decline). ``catalog``: the
    company's products (sku, name, category, ...); ``today``: the day the company's data is at
    (the first forecast day), called only when the question names a date."""
    lang = language(question)
    q = fold(question).strip()
    q = re.sub(r"\s+", " ", q)
    company = company_named(question)
    base: dict[str, Any] = {"company": company} if company else {}

    if not q or not re.search(r"[a-z0-9]", q):
        return Intent(None, {}, lang, decline="empty")
    if _any(q, _SECRETS):
        return Intent(None, {}, lang, decline="secrets")
    if _any(q, *_FORBIDDEN_ACT) and not re.search(
        r"\b(send|envie|mande) me\b|\bme (envie|mande)\b", q
    ):
        return Intent(None, {}, lang, decline="never_approves")
    if _any(q, *_CHANGE_DATA):
        return Intent(None, {}, lang, decline="no_changes")

    sku_text = find_sku(q, catalog)[1] if not catalog.empty else ""
    match = match_products(q, catalog)
    if _any(q, _OFF_TOPIC) and not match.skus:
        return Intent(None, {}, lang, decline="off_topic")
    period = parse_period(q)
    dates = parse_dates(q, today, lang) if not period else None
    skip = [sku_text, period[1] if period else "", dates.text if dates else ""]
    numbers = _numbers(q, lang, skip)
    quantity = _quantity(q, numbers)
    product_args = dict(base)
    if match.sku:
        product_args["sku"] = match.sku
    detail: dict[str, Any] = {"match": match}

    def product_tool(tool: str, **extra: Any) -> Intent:
        if match.sku:
            return Intent(tool, {**product_args, **extra}, lang, detail=detail)
        if match.skus:  # a category or a tie: say which ones
            return Intent(
                "find_product", {**base, "query": " ".join(match.words)}, lang, detail=detail
            )
        words = content_words(q)
        if words:
            return Intent("find_product", {**base, "query": words}, lang, detail=detail)
        return Intent(None, {}, lang, decline="which_product", detail=detail)

    # a purchase with a quantity: draft an order
    explicit = _any(q, r"\b(draft|rascunho|crie|create|place an order|faca um pedido)\b")
    wants = _any(q, _DRAFT_EXPLICIT, _DRAFT_BUY) and not _any(q, _ASKING)
    if quantity is not None and (explicit or wants):
        if quantity <= 0:
            return Intent(None, {}, lang, decline="bad_quantity", detail=detail)
        extra: dict[str, Any] = {"quantity": quantity}
        if dates:
            extra["order_date"] = max(dates.start, today()).isoformat()
        return product_tool("draft_order", **extra)
    if explicit and match.sku:
        return Intent(None, {}, lang, decline="how_much", detail=detail)
    # the company's orders
    if _any(q, _ORDER_NOUN) and not match.skus and not _any(q, _FORECAST + r"|\bcheap"):
        args = dict(base)
        for status, pattern in _STATUS.items():
            if re.search(pattern, q):
                args["status"] = status
                break
        return Intent("list_orders", args, lang, detail=detail)
    if _any(q, _STOCK):
        return product_tool("stock_status")
    if _any(q, _CHECK):
        extra = {}
        price = _price(q, numbers)
        if price is not None:
            extra["price"] = price
        return product_tool("price_check", **extra)
    if _any(q, _HISTORY):
        return product_tool("price_history", days=period[0] if period else 90)
    if _any(q, _BEST_BUYS) and not match.sku:
        args = dict(base)
        if match.category:
            args["category"] = match.category
        return Intent("best_buys", args, lang, detail=detail)
    if _any(q, _FORECAST) or (match.skus and not _any(q, _FIND, _CURRENT)):
        if match.category and not match.sku:
            return Intent("best_buys", {**base, "category": match.category}, lang, detail=detail)
        extra = {}
        if dates:
            extra = {"start": dates.start.isoformat(), "end": dates.end.isoformat()}
        if match.sku or match.skus or content_words(q):
            return product_tool("forecast", **extra)
        return Intent("best_buys", dict(base), lang, detail=detail)
    if _any(q, _CURRENT) and (match.sku or content_words(q)):
        return product_tool("price_history", days=period[0] if period else 30)
    if _any(q, _FIND):
        words = " ".join(match.words) if match.skus else content_words(q)
        if words:
            return Intent("find_product", {**base, "query": words}, lang, detail=detail)
        return Intent(None, {}, lang, decline="which_product", detail=detail)
    return Intent(None, {}, lang, decline="off_topic", detail=detail)
