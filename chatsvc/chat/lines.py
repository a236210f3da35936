"""
The native line protocol of the chat: a thin adapter on the L{Hub}.

It parses lines into calls on the hub and renders what comes back; it
keeps the line protocol's own notions (the current room, the format,
flood control, the login timeout) and nothing of the domain's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.logger import Logger

from chatsvc.chat import events, replies
from chatsvc.chat.events import FORMATS, JSON, TEXT
from chatsvc.chat.names import InvalidName, checkRoom
from chatsvc.chat.rooms import ChatError, Hub
from chatsvc.lineproto import Limits, LineFactory, LineProtocol
from chatsvc.ratelimit import TokenBucket
from chatsvc.text import decodeUTF8

log = Logger()

DEFAULT_ROOM = "lobby"

HELP = (
    "commands: /join ROOM, /who [ROOM], /rooms, /msg NAME TEXT, /me TEXT, "
    "/nick NAME, /history [N], /format text|json, /quit [REASON], /help; "
    "//text sends /text; anything else goes to the room"
)

#: First lines of other protocols that reach this port by mistake.  IRC
#: clients send their registration commands in capitals (a user called
#: "nick" logs in as usual); an HTTP request line ends in its version.
_IRC_OPENING = re.compile(r"(?:CAP|NICK|USER|PASS) ")
_HTTP_REQUEST = re.compile(r"[A-Z]+ \S+ HTTP/\d")

#: The first byte of a TLS record carrying a handshake (a ClientHello).
_TLS_HANDSHAKE = 0x16

#: Own events not shown back in text mode (JSON shows them: the ack).  An
#: own private message is shown, as C{-> NAME: text} (L{events.SENT}).
_NOT_ECHOED = (events.MESSAGE, events.ACTION, events.JOIN)


@dataclass
class ChatLimits(Limits):
    """
    L{Limits} plus the chat's own.

    @ivar loginTimeout: seconds to log in after connecting.
    @ivar floodBurst: lines accepted at once before pacing starts.
    @ivar floodRate: lines per second after the burst.
    @ivar recvQueue: complete lines that may wait for the flood rate
        before the client is disconnected.
    @ivar historyDefault: messages C{/history} shows without a count.
    @ivar replay: messages replayed on joining a room.
    """

    loginTimeout: float = 30.0
    floodBurst: int = 20
    floodRate: float = 5.0
    recvQueue: int = 200
    historyDefault: int = 20
    replay: int = 0


class ChatLineProtocol(LineProtocol):
    """
    One connection speaking the native line protocol.
    """

    factory: ChatFactory
    _floodTimer = None
    _firstData = True

    # Not neutralised on the way in: a refused name names the character
    # it was refused for (U+202E, not U+FFFD).  The hub makes relayed
    # text harmless, and replies are neutralised (L{replies.reply}).
    decode = staticmethod(decodeUTF8)

    def connectionMade(self) -> None:
        super().connectionMade()
        limits = self.factory.limits
        self.hub: Hub = self.factory.hub
        self.member = None
        self.room = None
        self.format = TEXT
        self._leaveReason = "quit"
        self._bucket = TokenBucket(limits.floodRate, limits.floodBurst, self.clock.seconds)
        self._loginTimer = self.clock.callLater(limits.loginTimeout, self._loginTimedOut)

    # -- output helpers ---------------------------------------------------

    def _reply(self, kind: str, text: str, **fields) -> None:
        self.write(replies.reply(self.format, self.clock.seconds(), kind, text, **fields))

    def _error(self, code: str, text: str) -> None:
        self.write(replies.error(self.format, self.clock.seconds(), code, text))

    def _info(self, text: str) -> None:
        self.write(replies.info(self.format, self.clock.seconds(), text))

    def _list(self, first, key, items, shown, empty="nobody", then=None) -> None:
        """
        A reply with a list, split over several lines if one would pass
        the line limit (L{replies.listing}); continuation lines are
        C{then}, by default like the first.
        """
        for line in replies.listing(
            self.format,
            self.clock.seconds(),
            self.framer.maxLength,
            first,
            then or first,
            key,
            items,
            shown,
            empty,
        ):
            self.write(line)

    def _names(self, first, shown: str, names: list[str]) -> None:
        """
        A first line about room C{shown}, then its members' names.
        """
        then = replies.ListLine("who", f"#{shown}", {"room": shown})
        self._list(first, "names", names, names, then=then)

    def deliver(self, event: events.Event) -> None:
        """
        The hub's fan-out: the same bytes for everyone reading a format.
        """
        # This runs once per recipient of every event: it is the hot path
        # of the server, so the common case (batching on, peer keeping up,
        # this turn's bytes already rendered) is inlined here.
        if self.disconnecting:
            return
        fmt = self.format
        origin = event.origin
        if origin is not None and origin is self.member and fmt is TEXT:
            if event.kind in _NOT_ECHOED:
                return
            if event.kind == events.PRIVATE:
                self._ownPrivate(event)
                return
        data = event.rendered.get(fmt) or event.encoded(fmt)
        out = self._out
        if out and not self._outputPaused:
            out.append(data)
            self.factory.batcher.pendingBytes += len(data)
        else:
            self.write(data)

    def _ownPrivate(self, event: events.Event) -> None:
        """
        In text mode the sender of a private message sees what went to
        whom (C{-> bob: text}); sent to oneself, it also arrives.
        """
        self.write(event.encoded(events.SENT))
        if event.target == self.member.name:
            self.write(event.encoded(TEXT))

    # -- input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._firstData and data:
            self._firstData = False
            if data[0] == _TLS_HANDSHAKE:
                self._wrongProtocol("TLS")
                return
        super().dataReceived(data)
        framer = self.framer
        # Refused (over-long) lines are not requests: they do not count.
        if len(framer) - framer.refused > self.factory.limits.recvQueue and not self.disconnecting:
            self._leaveReason = "flood"
            self._close(
                "error",
                f"flood: more than {self.factory.limits.recvQueue} lines waiting, disconnecting",
                code="flood",
            )

    def lineAllowed(self) -> bool:
        backlog = self.factory.backlog
        if backlog.isOver():
            # Fan-out already produced more than the peers took: read no
            # more from senders until it shrinks (chatsvc.output).
            self.holdInput("backlog")
            backlog.wait(self, self._backlogShrunk)
            return False
        if self._bucket.take():
            return True
        self.holdInput("flood")
        self._floodTimer = self.clock.callLater(self._bucket.delay(), self._floodOver)
        return False

    def _backlogShrunk(self) -> None:
        self.releaseInput("backlog")

    def _floodOver(self) -> None:
        self._floodTimer = None
        self.releaseInput("flood")

    def lineTooLong(self) -> None:
        self._error("too-long", f"line too long (limit {self.framer.maxLength} bytes), ignored")

    def lineReceived(self, line: str) -> None:
        if self.member is None:
            self._login(line)
        elif line.startswith("//"):
            self._say(line[1:])
        elif line.startswith("/"):
            self._command(line)
        elif line.strip():
            self._say(line)

    # -- login ----------------------------------------------------------------

    def _login(self, line: str) -> None:
        if _IRC_OPENING.match(line):
            self._wrongProtocol("IRC")
            return
        if _HTTP_REQUEST.match(line):
            self._wrongProtocol("HTTP")
            return
        words = line.split()
        if words and words[0].startswith("/"):
            command = words[0].lower()
            if command in ("/format", "/help", "/quit"):
                self._command(line)
            else:
                self._error("login-first", "log in first: send NAME [ROOM]")
            return
        if not 1 <= len(words) <= 2:
            self._error("invalid", "send NAME [ROOM] to log in (one name, one optional room)")
            return
        name = words[0]
        room = words[1] if len(words) == 2 else DEFAULT_ROOM
        try:
            room = checkRoom(room)
            member = self.hub.login(name, self)
        except ChatError as e:
            if e.code == "reuse":
                self._reply("reuse", f"{e}; send another name")
            else:
                self._error(e.code, str(e))
            return
        except InvalidName as e:
            self._error("invalid", f"{e}; send NAME [ROOM]")
            return
        self.member = member
        if self._loginTimer.active():
            self._loginTimer.cancel()
        self._loginTimer = None
        shown, names = self.hub.who(room)
        first = replies.ListLine(
            "success",
            f"logged in as {member.name}, in #{shown} with",
            {"name": member.name, "room": shown},
        )
        self._names(first, shown, names)
        self._enter(room)

    def _wrongProtocol(self, spoken: str) -> None:
        """
        A client of another protocol (an IRC client, a browser, TLS) came
        to this port: one line saying what this port speaks and where
        that protocol is served, if it is, then close.
        """
        where = self.factory.gateways.get(spoken.lower())
        hint = f"; {spoken} is served at {where}" if where else ""
        self._close(
            "error",
            f"this port speaks the chatsvc line protocol (send NAME [ROOM]), not {spoken}"
            f"{hint}; closing",
            code="wrong-protocol",
        )

    def _loginTimedOut(self) -> None:
        self._leaveReason = "closed"
        timeout = self.factory.limits.loginTimeout
        self._close("error", f"login timeout: no login within {timeout:g} seconds", code="timeout")

    # -- rooms ------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.room = self.hub.join(self.member, name)
        count = self.factory.limits.replay
        if count:
            self._sendHistory(self.hub.recent(self.room, count), end=False)

    def _sendHistory(self, messages: list, end: bool = True) -> None:
        for event in messages:
            self.write(event.encoded(self.format, history=True))
        if end:
            self._info(f"end of history of #{self.room.name} ({len(messages)} messages)")

    # -- commands -----------------------------------------------------------------

    def _command(self, line: str) -> None:
        word, _, argument = line[1:].partition(" ")
        handler = self._commands.get(word.lower())
        if handler is None:
            self._error("unknown-command", f"unknown command /{word} (try /help)")
            return
        try:
            handler(self, argument.strip())
        except InvalidName as e:
            self._error("invalid", str(e))
        except ChatError as e:
            self._error(e.code, str(e))

    def _say(self, text: str) -> None:
        self.hub.say(self.member, self.room, text)

    def do_me(self, text: str) -> None:
        if not text:
            self._error("usage", "usage: /me TEXT")
            return
        self.hub.act(self.member, self.room, text)

    def do_msg(self, argument: str) -> None:
        name, _, text = argument.partition(" ")
        if not name or not text.strip():
            self._error("usage", "usage: /msg NAME TEXT")
            return
        self.hub.private(self.member, name, text.strip())

    def do_join(self, argument: str) -> None:
        if not argument or " " in argument:
            self._error("usage", "usage: /join ROOM")
            return
        name = checkRoom(argument)
        if self.room is not None and self.hub.room(name) is self.room:
            self._info(f"you are already in #{self.room.name}")
            return
        shown, names = self.hub.who(name)
        self.hub.part(self.member, self.room, "part")
        self._names(replies.ListLine("info", f"you are now in #{shown} with"), shown, names)
        self._enter(name)

    def do_who(self, argument: str) -> None:
        room = argument or self.room.name
        shown, names = self.hub.who(room)
        self._names(replies.ListLine("who", f"#{shown}", {"room": shown}), shown, names)

    def do_rooms(self, argument: str) -> None:
        rooms = self.hub.roomList()
        self._list(
            replies.ListLine("rooms", "rooms"),
            "rooms",
            [{"name": name, "members": count} for name, count in rooms],
            [f"#{name} ({count})" for name, count in rooms],
            empty="none",
        )

    def do_nick(self, argument: str) -> None:
        if not argument or " " in argument:
            self._error("usage", "usage: /nick NAME")
            return
        self.hub.rename(self.member, argument)

    def do_history(self, argument: str) -> None:
        limits = self.factory.limits
        count = limits.historyDefault
        if argument:
            # ASCII digits only: str.isdigit() also says yes to '²', which
            # int() refuses.
            if not (argument.isascii() and argument.isdigit()):
                self._error("usage", "usage: /history [N]")
                return
            count = min(int(argument), self.hub.historyLimit)
        self._sendHistory(self.hub.recent(self.room, count))

    def do_format(self, argument: str) -> None:
        choice = argument.lower()
        if choice not in FORMATS:
            self._error("usage", "usage: /format text|json")
            return
        self.format = TEXT if choice == TEXT else JSON
        self._info(f"format is now {self.format}")

    def do_quit(self, argument: str) -> None:
        self._leaveReason = f"quit: {argument}" if argument else "quit"
        self._leave()
        self._close("info", "bye")

    def do_help(self, argument: str) -> None:
        self._info(HELP)

    _commands = {
        "me": do_me,
        "msg": do_msg,
        "join": do_join,
        "who": do_who,
        "rooms": do_rooms,
        "nick": do_nick,
        "history": do_history,
        "format": do_format,
        "quit": do_quit,
        "help": do_help,
    }

    # -- leaving --------------------------------------------------------------------

    def _close(self, kind: str, text: str, **fields) -> None:
        """
        Say a last line and close (the member leaves at once).
        """
        self._leave()
        if not self.disconnecting:
            self._reply(kind, text, **fields)
            self.closeWith(None)

    def _leave(self) -> None:
        member, self.member = self.member, None
        if member is not None:
            announce = not self.factory.shuttingDown
            self.hub.quit(member, self._leaveReason, announce=announce)

    def sendQueueOverflow(self) -> None:
        self._leaveReason = "too slow"
        super().sendQueueOverflow()

    def idleTimedOut(self) -> None:
        self._leaveReason = "idle"
        self._close(
            "error", f"idle for {self.factory.limits.idleTimeout:g} seconds, closing", code="idle"
        )

    def shutdown(self, notice: str) -> None:
        """
        The server is stopping: a last line, then close.
        """
        self._leaveReason = "shutting down"
        self._close("info", notice)

    def connectionLost(self, reason=None) -> None:
        for timer in (self._loginTimer, self._floodTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._floodTimer = None
        self._leave()
        super().connectionLost(reason)


class ChatFactory(LineFactory):
    """
    Builds L{ChatLineProtocol}s around one L{Hub}.
    """

    protocol = ChatLineProtocol
    batchWrites = True

    def __init__(self, hub: Hub, limits: ChatLimits | None = None, clock=None) -> None:
        super().__init__(limits if limits is not None else ChatLimits(), clock)
        self.hub = hub
        self.shuttingDown = False
        #: Where other protocols are served (C{"irc"}, C{"web"}, C{"tls"}:
        #: an address for people), named to a client of theirs that comes
        #: here by mistake.
        self.gateways: dict[str, str] = {}

    def closeAll(self, notice: str | None = None, grace: float | None = None):
        """
        Stop: every user gets C{notice} as a last line in its own format,
        nobody hears the others leave.
        """
        self.shuttingDown = True
        notice = notice or "server shutting down"
        for proto in list(self.connections):
            if isinstance(proto, ChatLineProtocol):
                proto.shutdown(notice)
        return super().closeAll(None, grace)
