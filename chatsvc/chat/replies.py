"""
Replies of the native line protocol to one connection, in either format.

Events are rendered once and shared (L{chatsvc.chat.events}); a reply is
for one connection only, so it is rendered on the spot.  In the text
format a reply is C{KIND: text}; in JSON it is an object with C{type},
C{ts} and the keys of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatsvc.chat.events import TEXT, dumps, isoTime
from chatsvc.net.text import neutralise


def reply(fmt: str, now: float, kind: str, text: str, ending: bytes = b"\n", **fields) -> bytes:
    """
    One reply line, C{ending} included (the transport's framing).

    @param kind: C{success}, C{reuse}, C{full}, C{error}, C{info}, C{who}
        or C{rooms}.  In JSON, C{reuse} and C{full} are C{error} objects
        with that C{code}.
    @param text: the words for people (the whole line in text format).
    @param fields: the JSON keys besides C{type}, C{ts} and C{text}.
    """
    # Replies may quote what the user typed (an unknown command): the chat
    # reads lines without neutralising them, so it is done here.
    text = neutralise(text)
    if fmt == TEXT:
        prefix = "info" if kind in ("who", "rooms") else kind
        return f"{prefix}: {text}".encode() + ending
    if kind in ("reuse", "full"):
        fields.setdefault("code", kind)
        kind = "error"
    obj = {"type": kind, "ts": isoTime(now)}
    obj.update(fields)
    if kind in ("error", "info", "success") or "text" not in fields:
        obj.setdefault("text", text)
    return dumps(obj).encode() + ending


def error(fmt: str, now: float, code: str, text: str) -> bytes:
    """
    An C{error:} reply with its JSON code.
    """
    return reply(fmt, now, "error", text, code=code)


def info(fmt: str, now: float, text: str) -> bytes:
    """
    An C{info:} reply.
    """
    return reply(fmt, now, "info", text)


@dataclass
class ListLine:
    """
    One kind of line that carries part of a list (L{listing}).

    @ivar kind: the reply kind (C{success}, C{info}, C{who}, C{rooms}).
    @ivar prefix: the words before the list (C{logged in as alice, in
        #lobby with}); the list follows after C{": "}, or after
        C{" (2/3): "} when it is split.
    @ivar fields: the JSON keys besides the list's own.
    """

    kind: str
    prefix: str
    fields: dict = field(default_factory=dict)


def listing(
    fmt: str,
    now: float,
    limit: int,
    first: ListLine,
    then: ListLine,
    key: str | None,
    items: list,
    shown: list[str],
    empty: str = "nobody",
    ending: bytes = b"\n",
) -> list[bytes]:
    """
    A reply holding a list (names in a room, rooms), split over as many
    lines as it takes for each to stay within C{limit} bytes (the
    server's own line limit, so a client with the same limit reads them
    all), as IRC splits C{NAMES}.

    One line when it fits: C{PREFIX: a, b, c}.  Otherwise the first line
    is C{first} and the others C{then}, each with its part of the list
    and C{(PART/PARTS)} before it; in JSON each object carries its part
    of the list under C{key} and C{"part"} and C{"parts"}.

    @param key: the JSON key of the list (L{None}: the list is in the
        text only).
    @param items: the list as JSON shows it.
    @param shown: the list as the text shows it, item by item.
    """
    whole = _listLine(fmt, now, first, key, items, shown, empty)
    if len(whole) <= limit or len(items) < 2:
        return [whole + ending]
    json = fmt != TEXT
    cost = [
        len(text.encode()) + 2 + (len(dumps(item).encode()) + 1 if json else 0)
        for text, item in zip(shown, items, strict=True)
    ]
    marker = f"{len(items)}/{len(items)}"  # wider than any real (PART/PARTS)
    overhead = max(
        len(_listLine(fmt, now, line, key, [], [], "", marker)) for line in (first, then)
    )
    budget = max(1, limit - overhead)
    chunks: list[range] = []
    start, used = 0, 0
    for i, c in enumerate(cost):
        if i > start and used + c > budget:
            chunks.append(range(start, i))
            start, used = i, 0
        used += c
    chunks.append(range(start, len(items)))
    parts = len(chunks)
    return [
        _listLine(
            fmt,
            now,
            first if number == 1 else then,
            key,
            items[chunk.start : chunk.stop],
            shown[chunk.start : chunk.stop],
            empty,
            f"{number}/{parts}",
        )
        + ending
        for number, chunk in enumerate(chunks, 1)
    ]


def _listLine(fmt, now, line: ListLine, key, items, shown, empty, part: str | None = None):
    head = f"{line.prefix} ({part})" if part else line.prefix
    fields = dict(line.fields)
    if key is not None:
        fields[key] = items
    if part:
        number, parts = part.split("/")
        fields["part"], fields["parts"] = int(number), int(parts)
    text = f"{head}: {', '.join(shown) or empty}"
    return reply(fmt, now, line.kind, text, ending=b"", **fields)
