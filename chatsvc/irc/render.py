"""
Chat events as IRC lines, rendered once per set of capabilities.

An event looks the same to every IRC client that negotiated the same
tags, so each combination is a registered rendering
(L{chatsvc.chat.events.register}, ending CRLF) and the fan-out writes one
shared C{bytes} object to all of them, as it does for the line protocol:
C{irc} (no tags), C{irc+t} (C{server-time}), C{irc+m} (C{message-tags}:
C{msgid}) and C{irc+tm} (both).

A message longer than an IRC line (text from the line protocol or the
web may be) is rendered as several lines, cut at character boundaries,
never truncated (L{chatsvc.irc.wire.fitText}).  Text is the core's
harmless text (CR, LF and NUL shown as pictures), so it can never end a
line early or add a command.
"""

from __future__ import annotations

from datetime import datetime, timezone

from chatsvc.chat import events
from chatsvc.irc.wire import LINE_MAX, escapeTag, fitText, formatLine

#: The user and host part every member shows: one name space for every
#: side, and no client's address is shown to others.
HOST = "chatsvc"

#: The registered renderings, by (server-time, message-tags).
RENDERINGS = {
    (False, False): "irc",
    (True, False): "irc+t",
    (False, True): "irc+m",
    (True, True): "irc+tm",
}

#: Leave reasons that are a PART of one room; any other leave is the
#: member leaving the chat (a QUIT, shown once per recipient).
PART = "part"


def mask(name: str) -> str:
    """
    A member's full IRC source, C{nick!user@host}.
    """
    return f"{name}!{name}@{HOST}"


def serverTime(ts: float) -> str:
    """
    IRCv3 C{server-time}: ISO 8601 UTC with milliseconds.
    """
    stamp = datetime.fromtimestamp(ts, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def msgid(event: events.Event) -> str | None:
    """
    The C{msgid} tag of a message: for a room message its room and its
    id, which the core never gives out twice (and CHATHISTORY reads); for
    a private message its sender's member id and time.
    """
    if event.id is not None and event.room is not None:
        return f"{event.room.casefold()}-{event.id}"
    if event.kind == events.PRIVATE and event.origin is not None:
        return f"p-{event.origin}-{int(event.ts * 1e6)}"
    return None


def isPart(event: events.Event) -> bool:
    """
    Whether a leave event is a PART (one room) rather than a QUIT.
    """
    text = event.text
    return text == PART or text.startswith(PART + ": ")


def quitReason(text: str) -> str:
    """
    A leave reason as IRC clients show a QUIT's: C{Quit: gone}.
    """
    if text == "quit":
        return "Quit"
    if text.startswith("quit: "):
        return "Quit: " + text[6:]
    return text


def lines(event: events.Event) -> list[str]:
    """
    The IRC lines (without tags or endings) that show C{event}.
    """
    kind = event.kind
    source = mask(event.name)
    if kind in (events.MESSAGE, events.ACTION, events.PRIVATE):
        target = event.target if kind == events.PRIVATE else "#" + event.room
        head = f":{source} PRIVMSG {target} :"
        room = LINE_MAX - 2 - len(head.encode("utf-8"))
        if kind == events.ACTION:
            room -= len("\x01ACTION \x01")
            return [f"{head}\x01ACTION {piece}\x01" for piece in fitText(event.text, room)]
        return [head + piece for piece in fitText(event.text, room)]
    channel = "#" + (event.room or "")
    if kind == events.JOIN:
        return [formatLine(source, "JOIN", channel)]
    if kind == events.LEAVE:
        if isPart(event):
            message = event.text[len(PART) + 2 :]
            params = (channel, message) if message else (channel,)
            return [formatLine(source, "PART", *params)]
        return [formatLine(source, "QUIT", quitReason(event.text))]
    if kind == events.RENAME:
        return [formatLine(source, "NICK", event.target)]
    if kind == events.TOPIC:
        return [formatLine(source, "TOPIC", channel, event.text)]
    raise ValueError(f"unknown event kind {kind!r}")


def tagsOf(event: events.Event, time: bool, ids: bool) -> str:
    """
    The tag section (without C{@}) for an event, or C{""}.
    """
    tags = []
    if time:
        tags.append("time=" + serverTime(event.ts))
    if ids:
        ident = msgid(event)
        if ident is not None:
            tags.append("msgid=" + escapeTag(ident))
    return ";".join(tags)


def render(event: events.Event, time: bool, ids: bool, extra: str = "") -> str:
    """
    C{event} as IRC lines joined by CRLF (no final ending), with the tags
    of the capabilities given, and C{extra} tags (a C{batch} reference)
    on every line.  Only the first line of a cut message carries its
    C{msgid}.
    """
    shown = lines(event)
    tags = tagsOf(event, time, ids)
    out = []
    for n, line in enumerate(shown):
        lineTags = tags
        if n and ids and "msgid=" in lineTags:
            lineTags = tagsOf(event, time, False)
        if extra:
            lineTags = f"{extra};{lineTags}" if lineTags else extra
        out.append(f"@{lineTags} {line}" if lineTags else line)
    return "\r\n".join(out)


def _registered(time: bool, ids: bool):
    def rendering(event: events.Event, history: bool) -> str:
        return render(event, time, ids)

    return rendering


for (_time, _ids), _name in RENDERINGS.items():
    events.register(_name, _registered(_time, _ids), ending=b"\r\n")
