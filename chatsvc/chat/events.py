"""
What happens in a room, and how each happening looks on the wire.

An L{Event} carries everything any rendering needs (room, sender, text,
id, time), so rendering is a pure function of the event and the format.
L{Event.encoded} renders once per format and keeps the bytes: the fan-out
writes the very same bytes object to every member that reads that format.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)
#: The text rendering of a private message for its sender: C{-> bob: text}.
SENT = "sent"

MESSAGE = "message"
ACTION = "action"
PRIVATE = "private"
JOIN = "join"
LEAVE = "leave"
RENAME = "rename"

#: Kinds that are room traffic, kept in the history.
HISTORIC = (MESSAGE, ACTION)


_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def isoTime(ts: float) -> str:
    """
    ISO 8601 in UTC with microseconds, as the JSON rendering wants.
    """
    stamp = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")


def dumps(obj: dict) -> str:
    """
    One compact JSON object on one line.  C{json} escapes the controls,
    LF among them, but not U+0085, U+2028 and U+2029, which Python's
    C{str.splitlines} (and U+2028/9 older JavaScript) take for line ends:
    those are escaped here, so that one object is one line for every
    reader.
    """
    line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if _LINE_BREAKS.search(line) is not None:
        line = _LINE_BREAKS.sub(lambda m: "\\u%04x" % ord(m.group()), line)
    return line


class Event:
    """
    One thing that happened.

    @ivar kind: L{MESSAGE}, L{ACTION}, L{PRIVATE}, L{JOIN}, L{LEAVE} or
        L{RENAME}.
    @ivar room: the room's display name (without C{#}); L{None} for
        private messages.
    @ivar name: who did it (the sender; the old name for a rename).
    @ivar text: the message, the action, or the leave reason.
    @ivar target: the recipient of a private message, or the new name for
        a rename.
    @ivar id: the room's message id (messages and actions), else L{None}.
    @ivar ts: seconds since the epoch.
    @ivar origin: the core's member object that caused it, so that an
        adapter can tell its own member's events (not rendered).
    @ivar rendered: the renderings made so far, by format (see L{encoded};
        the fan-out reads it directly, it runs once per recipient).
    """

    __slots__ = ("kind", "room", "name", "text", "target", "id", "ts", "origin", "rendered")

    def __init__(
        self,
        kind: str,
        room: str | None,
        name: str,
        text: str = "",
        target: str | None = None,
        id: int | None = None,
        ts: float = 0.0,
        origin=None,
    ) -> None:
        self.kind = kind
        self.room = room
        self.name = name
        self.text = text
        self.target = target
        self.id = id
        self.ts = ts
        self.origin = origin
        self.rendered: dict = {}

    def __repr__(self) -> str:
        return (
            f"<Event {self.kind} room={self.room!r} name={self.name!r} "
            f"text={self.text!r} target={self.target!r} id={self.id}>"
        )

    def encoded(self, fmt: str, history: bool = False) -> bytes:
        """
        The event as one line of bytes in format C{fmt}, newline included;
        computed once per format and kept.
        """
        key = (fmt, history) if history else fmt
        data = self.rendered.get(key)
        if data is None:
            if fmt == TEXT:
                line = renderText(self)
            elif fmt == SENT:
                line = f"[{time.ctime(self.ts)}] (private) -> {self.target}: {self.text}"
            else:
                line = dumps(toJSON(self, history))
            data = self.rendered[key] = line.encode("utf-8") + b"\n"
        return data


def renderText(event: Event) -> str:
    """
    The text rendering: C{[ctime] #room ...}, as in the classic examples.
    """
    stamp = time.ctime(event.ts)
    kind = event.kind
    if kind == PRIVATE:
        return f"[{stamp}] (private) {event.name}: {event.text}"
    prefix = f"[{stamp}] #{event.room} "
    if kind == MESSAGE:
        return f"{prefix}{event.name}: {event.text}"
    if kind == ACTION:
        return f"{prefix}* {event.name} {event.text}"
    if kind == JOIN:
        return f"{prefix}{event.name} joined"
    if kind == LEAVE:
        return f"{prefix}{event.name} left ({event.text})"
    if kind == RENAME:
        return f"{prefix}{event.name} is now {event.target}"
    raise ValueError(f"unknown event kind {kind!r}")


def toJSON(event: Event, history: bool = False) -> dict:
    """
    The JSON rendering's object for an event.
    """
    kind = event.kind
    obj: dict = {"type": kind, "ts": isoTime(event.ts)}
    if kind == PRIVATE:
        obj.update({"from": event.name, "to": event.target, "text": event.text})
        return obj
    obj["room"] = event.room
    if kind in HISTORIC:
        obj.update({"from": event.name, "text": event.text, "id": event.id})
        if history:
            obj["history"] = True
    elif kind == JOIN:
        obj["name"] = event.name
    elif kind == LEAVE:
        obj.update({"name": event.name, "reason": event.text})
    elif kind == RENAME:
        obj.update({"from": event.name, "to": event.target})
    return obj
