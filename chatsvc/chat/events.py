"""
What happens in a room, and how each happening looks on the wire.

An L{Event} carries everything any rendering needs (room, sender, text,
id, time), so rendering is a pure function of the event and the format.
L{Event.encoded} renders once per format and keeps the bytes: the fan-out
writes the very same bytes object to every member that reads that format.

Formats are open: an adapter registers its own with L{register} (a
rendering function and the ending its transport wants: C{b"\n"} for
lines, C{b"\r\n"} for IRC, C{b""} for a WebSocket frame, which is
framed already).  This module registers L{TEXT}, L{JSON} and L{SENT}.

An event is plain data (L{Event.toDict}, L{Event.fromDict}): its origin
is a member's id, not an object, so that it can cross a process
boundary (a cluster bus) and still be recognised as its sender's own.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from operator import methodcaller
from typing import NamedTuple

TEXT = "text"
JSON = "json"
#: The formats a line client may choose (C{/format}).
FORMATS = (TEXT, JSON)
#: The text rendering of a private message for its sender: C{-> bob: text}.
SENT = "sent"

MESSAGE = "message"
ACTION = "action"
PRIVATE = "private"
JOIN = "join"
LEAVE = "leave"
RENAME = "rename"
TOPIC = "topic"

#: Every kind of event.
KINDS = (MESSAGE, ACTION, PRIVATE, JOIN, LEAVE, RENAME, TOPIC)

#: Kinds that are room traffic, kept in the history.
HISTORIC = (MESSAGE, ACTION)

#: The attributes that make an event (L{Event.toDict}); C{rendered} is a
#: cache, never part of it.
FIELDS = ("kind", "room", "name", "text", "target", "id", "ts", "origin")


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

    @ivar kind: L{MESSAGE}, L{ACTION}, L{PRIVATE}, L{JOIN}, L{LEAVE},
        L{RENAME} or L{TOPIC}.
    @ivar room: the room's display name (without C{#}); L{None} for
        private messages.
    @ivar name: who did it (the sender; the old name for a rename; who
        set the topic).
    @ivar text: the message, the action, the leave reason or the topic
        (empty: the topic was cleared).
    @ivar target: the recipient of a private message, or the new name for
        a rename.
    @ivar id: the room's message id (messages and actions), else L{None}.
    @ivar ts: seconds since the epoch.
    @ivar origin: the id of the member that caused it (C{Member.id}, a
        string), so that an adapter can tell its own member's events,
        also when the event comes back from another node; L{None} for
        events no member caused (history).  Not rendered.
    @ivar rendered: the renderings made so far: by format name for live
        events, by C{(name, True)} for history replays (see L{encoded};
        the fan-out reads C{rendered.get(name)} directly, it runs once
        per recipient).
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
        origin: str | None = None,
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
        The event in format C{fmt} with the format's ending; rendered once
        per format (and replay flag) and kept, so every recipient gets the
        very same bytes object.

        @param history: a replay from the history (the JSON rendering
            marks it).
        @raise KeyError: no format called C{fmt} is registered.
        """
        key = (fmt, True) if history else fmt
        data = self.rendered.get(key)
        if data is None:
            render, ending = RENDERINGS[fmt]
            data = self.rendered[key] = render(self, history).encode("utf-8") + ending
        return data

    def toDict(self) -> dict:
        """
        The event as plain data that C{json.dumps} takes (a cluster bus
        sends it so); never its renderings.
        """
        return {
            "kind": self.kind,
            "room": self.room,
            "name": self.name,
            "text": self.text,
            "target": self.target,
            "id": self.id,
            "ts": self.ts,
            "origin": self.origin,
        }

    @classmethod
    def fromDict(cls, data: dict) -> Event:
        """
        The event that L{toDict} gave C{data}; keys it does not know are
        ignored (a newer node may send more).
        """
        return cls(**{key: data[key] for key in FIELDS if key in data})


class Rendering(NamedTuple):
    """
    A registered format: how an event is rendered, and what follows.
    """

    #: C{render(event, history) -> str}: the rendering without its ending.
    render: Callable[[Event, bool], str]
    #: Appended to every rendering (the transport's framing).
    ending: bytes


#: The registered formats by name (read it; change it with L{register}):
#: an adapter may register a format of its own on another one's
#: rendering, e.g. C{register("json-frame", RENDERINGS["json"].render,
#: b"")}.
RENDERINGS: dict[str, Rendering] = {}


def encoder(fmt: str):
    """
    A callable that gives an event's bytes in format C{fmt}
    (L{Event.encoded}), as the room fan-out asks once per group.
    """
    return methodcaller("encoded", fmt)


def register(name: str, render, ending: bytes = b"\n") -> None:
    """
    Make format C{name} known to L{Event.encoded}.

    @param render: C{render(event, history) -> str}, the rendering without
        its ending (a pure function of the event).
    @param ending: appended to every rendering: what the transport's
        framing wants (C{b""} when the transport frames by itself).
    @raise ValueError: another rendering is registered under that name
        (registering the same one again is harmless).
    """
    rendering = Rendering(render, ending)
    known = RENDERINGS.get(name)
    if known is not None and known != rendering:
        raise ValueError(f"format {name!r} is registered already")
    RENDERINGS[name] = rendering


def unregister(name: str) -> None:
    """
    Forget format C{name} (events rendered already keep their bytes).
    """
    RENDERINGS.pop(name, None)


def formats() -> list[str]:
    """
    The names of the registered formats.
    """
    return list(RENDERINGS)


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
    if kind == TOPIC:
        if not event.text:
            return f"{prefix}{event.name} cleared the topic"
        return f"{prefix}{event.name} set the topic: {event.text}"
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
    elif kind == TOPIC:
        obj.update({"from": event.name, "text": event.text})
    return obj


def _text(event: Event, history: bool) -> str:
    # Through the module's name, so that a test may patch renderText.
    return renderText(event)


def _json(event: Event, history: bool) -> str:
    return dumps(toJSON(event, history))


def _sent(event: Event, history: bool) -> str:
    """
    A private message as its sender sees it: C{-> bob: text}.
    """
    return f"[{time.ctime(event.ts)}] (private) -> {event.target}: {event.text}"


register(TEXT, _text)
register(JSON, _json)
register(SENT, _sent)
