"""A supplier's working days: the weekdays it takes orders and delivers on (default Monday to
Friday), written the way a buyer types them: ``Mon-Fri``, ``Mon,Tue,Sat``, ``Tue/Thu``,
``Monday-Saturday``, ``Fri-Mon`` (a range may run over the weekend).

Days are numbered as ``datetime.weekday()``: Monday 0 to Sunday 6. ``text`` writes a calendar in
one canonical form (ranges of three days or more joined with a dash), the form the database
keeps and the catalog file reads back.
"""

from __future__ import annotations

import re

NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MON_FRI: tuple[int, ...] = (0, 1, 2, 3, 4)
DEFAULT_TEXT = "Mon-Fri"
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPLIT = re.compile(r"[,;/ ]+")


def _day(word: str) -> int:
    w = word.strip().lower().rstrip(".")
    for i, full in enumerate(_FULL):
        if len(w) >= 2 and full.startswith(w):
            return i
    raise ValueError(word)


def parse(spec: str) -> tuple[int, ...]:
    """The weekdays of ``spec`` (sorted, without repeats); ``ValueError`` naming the value and
    the forms it may take when it is empty or holds something that is not a day."""
    value = str(spec).strip()
    days: set[int] = set()
    try:
        ranges = re.sub(r"\s*[-\u2013\u2014]\s*", "-", value)  # "Mon - Fri", en and em dashes
        for part in _SPLIT.split(ranges):
            if not part:
                continue
            if "-" in part:
                a, b = (_day(x) for x in part.split("-", 1))
                span = (b - a) % 7
                days.update((a + k) % 7 for k in range(span + 1))
            else:
                days.add(_day(part))
    except ValueError:
        days.clear()
    if not days:
        raise ValueError(
            f"{value!r} is not a list of working days (like Mon-Fri, Mon-Sat or Tue,Thu)"
        )
    return tuple(sorted(days))


def text(days: tuple[int, ...] | list[int]) -> str:
    """The canonical text of a calendar: ``(0, 1, 2, 3, 4)`` -> ``Mon-Fri``, ``(1, 3)`` ->
    ``Tue,Thu``, ``(0, 1, 2, 4)`` -> ``Mon-Wed,Fri``."""
    ordered = sorted(set(days))
    if not ordered:
        raise ValueError("a supplier works on at least one day")
    runs: list[list[int]] = []
    for d in ordered:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{NAMES[run[0]]}-{NAMES[run[-1]]}")
        else:
            parts.extend(NAMES[d] for d in run)
    return ",".join(parts)


def normalized(value: str) -> str:
    """``value`` in canonical form (``mon - fri`` -> ``Mon-Fri``); ``ValueError`` if it is not
    a calendar."""
    return text(parse(value))
