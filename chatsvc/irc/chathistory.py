"""
IRCv3 C{draft/chathistory}: a client asks for a room's messages before,
after, around or between two points, or the latest ones.

Answered from the Hub's recent messages of each room (the last
C{historyLimit}, 200 by default, kept in memory and restored from the
history store at start: L{chatsvc.chat.rooms.Hub.recent}).  A point is
C{msgid=ROOM-ID} (the C{msgid} tag the gateway gives room messages) or
C{timestamp=ISO8601}; C{*} means "now" for LATEST.  Private messages are
not kept, so a nick's history is an empty batch.

L{select} is the pure part (events in, events out, oldest first); the
session wraps the result in a C{chathistory} batch.
"""

from __future__ import annotations

from datetime import datetime, timezone

#: The most messages one request returns (ISUPPORT CHATHISTORY=).
MAX_LIMIT = 100

SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN")


class BadReference(ValueError):
    """
    A point that is neither C{*}, C{msgid=...} nor C{timestamp=...}.
    """


def reference(word: str, room: str):
    """
    A point in the history of room C{room} (its name as shown):
    C{("id", N)} or C{("ts", seconds)}; L{None} for C{*}.

    @raise BadReference: not a point we can read, or a msgid of another room.
    """
    if word == "*":
        return None
    kind, _, value = word.partition("=")
    if kind == "msgid":
        where, _, number = value.rpartition("-")
        if where != room.casefold() or not (number.isascii() and number.isdigit()):
            raise BadReference(word)
        return ("id", int(number))
    if kind == "timestamp":
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadReference(word) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return ("ts", stamp.timestamp())
    raise BadReference(word)


def _before(event, ref) -> bool:
    kind, value = ref
    return event.id < value if kind == "id" else event.ts < value


def _after(event, ref) -> bool:
    kind, value = ref
    return event.id > value if kind == "id" else event.ts > value


def select(recent: list, subcommand: str, refs: list, limit: int) -> list:
    """
    The messages of C{recent} (oldest first) that a request asks for,
    oldest first, at most C{limit}.

    @param refs: the request's points (L{reference}), one or two.
    """
    limit = max(0, min(limit, MAX_LIMIT))
    if not limit:
        return []
    if subcommand == "LATEST":
        ref = refs[0]
        chosen = recent if ref is None else [e for e in recent if _after(e, ref)]
        return chosen[-limit:]
    if subcommand == "BEFORE":
        return [e for e in recent if _before(e, refs[0])][-limit:]
    if subcommand == "AFTER":
        return [e for e in recent if _after(e, refs[0])][:limit]
    if subcommand == "AROUND":
        ref = refs[0]
        before = [e for e in recent if _before(e, ref)]
        rest = [e for e in recent if not _before(e, ref)]
        half = limit // 2
        earlier = before[-half:] if half else []
        return earlier + rest[: limit - len(earlier)]
    if subcommand == "BETWEEN":
        first, second = refs
        inside = [e for e in recent if _after(e, first) and _before(e, second)]
        if inside:
            return inside[:limit]
        # Asked the other way round: the latest ones before the first point.
        inside = [e for e in recent if _before(e, first) and _after(e, second)]
        return inside[-limit:]
    raise ValueError(subcommand)
