"""
Replies of the native line protocol to one connection, in either format.

Events are rendered once and shared (L{chatsvc.chat.events}); a reply is
for one connection only, so it is rendered on the spot.  In the text
format a reply is C{KIND: text}; in JSON it is an object with C{type},
C{ts} and the keys of the contract.
"""

from __future__ import annotations

from chatsvc.chat.events import TEXT, dumps, isoTime
from chatsvc.text import neutralise


def reply(fmt: str, now: float, kind: str, text: str, **fields) -> bytes:
    """
    One reply line, newline included.

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
        return f"{prefix}: {text}\n".encode()
    if kind in ("reuse", "full"):
        fields.setdefault("code", kind)
        kind = "error"
    obj = {"type": kind, "ts": isoTime(now)}
    obj.update(fields)
    if kind in ("error", "info", "success") or "text" not in fields:
        obj.setdefault("text", text)
    return (dumps(obj) + "\n").encode()


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


def listNames(names: list[str]) -> str:
    """
    Names for people: C{alice, bob} or C{nobody}.
    """
    return ", ".join(names) if names else "nobody"
