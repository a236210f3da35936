"""
One user's chat session, whatever carries it.

A L{ChatSession} is the chat as one user speaks it: the login, the
commands, the current room, the rendering, the flood pacing and the login
timer.  It takes lines of text (L{ChatSession.lineReceived}) and writes
whole lines of bytes to a sink (L{IChatSink}); it knows no transport.
The native line protocol (L{chatsvc.chat.lines}) feeds it lines framed by
LF, a WebSocket gateway would feed it one text frame per line, and a test
drives it through an in-memory sink (L{chatsvc.testing.MemorySink}).

L{Pacing} is the flood control on its own (a token bucket, and holding
senders while fan-out output is backed up), so that every gateway paces
the same way.  L{Population} is what the sessions of every gateway share:
the write batcher and the backlog of unsent fan-out output (senders on
any side wait while it is over its limit) and the shutdown flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from chatsvc.chat import events, replies
from chatsvc.chat.events import FORMATS, JSON, TEXT
from chatsvc.chat.names import InvalidName, checkRoom
from chatsvc.chat.rooms import ChatError, Hub
from chatsvc.net.lineproto import Limits
from chatsvc.net.output import Backlog, WriteBatcher
from chatsvc.net.ratelimit import TokenBucket

log = Logger()

DEFAULT_ROOM = "lobby"

HELP = (
    "commands: /join ROOM, /who [ROOM], /rooms, /msg NAME TEXT, /me TEXT, "
    "/topic [TEXT], /nick NAME, /history [N], /format text|json, /quit [REASON], /help; "
    "//text sends /text; anything else goes to the room"
)

#: Own events not shown back in text mode (JSON shows them: the ack).  An
#: own private message is shown, as C{-> NAME: text} (L{events.SENT}).
_NOT_ECHOED = (events.MESSAGE, events.ACTION, events.JOIN)

#: First lines of other protocols that reach a chat port by mistake.  IRC
#: clients send their registration commands in capitals (a user called
#: "nick" logs in as usual); an HTTP request line ends in its version.
_IRC_OPENING = re.compile(r"(?:CAP|NICK|USER|PASS) ")
_HTTP_REQUEST = re.compile(r"[A-Z]+ \S+ HTTP/\d")


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


class IChatSink(Interface):
    """
    Where a L{ChatSession} writes, and how it holds its user's input: the
    transport side of a session, as each gateway provides it.
    """

    ending = Attribute("The bytes that end each line on this transport (b'\\n', b'').")
    maxLine = Attribute("The longest line in bytes a reply should make (lists are split).")
    renderings = Attribute(
        "Format name (text, json) -> the name of the registered event rendering "
        "whose bytes this transport writes as they are (see chatsvc.chat.events)."
    )

    def write(data: bytes) -> None:
        """
        Write one or more whole lines, each already ending with C{ending}.
        """

    def holdInput(reason: str) -> None:
        """
        Hand the session no further line until L{releaseInput}(C{reason}).
        """

    def releaseInput(reason: str) -> None:
        """
        Drop one reason for holding input.
        """

    def close() -> None:
        """
        The session is over: let the peer take what was written, then
        close.
        """

    # Optional: deliver(event).  A sink whose transport batches writes
    # may take the hub's events itself, saving a call per recipient on
    # the fan-out path; it must do exactly what ChatSession.deliver does
    # (using the session's _ownInText, _rendering and deliverOwn).


class SessionListener:
    """
    For a connection that is its member's listener itself (it takes the
    hub's events on the fan-out's fast path): what the hub says to the
    member about the server (L{Hub.notice}, L{Hub.evict}) goes to its
    session, whose rendering it is.
    """

    session = None

    def evicted(self, why: str) -> None:
        self.session.evicted(why)

    def notice(self, text: str) -> None:
        self.session.notice(text)


class Population:
    """
    What the sessions of every gateway on one hub share: one write batcher
    (each connection's writes of a reactor turn are sent once), one
    backlog of fan-out output not yet taken by its peers (while it is over
    its limit, no sender on any side is read) and the shutdown flag.

    @ivar shuttingDown: C{True} once the server is stopping: members who
        go then leave without a word to the others.
    """

    #: Bytes of produced-but-untaken output over which senders wait.
    backlogLimit = 4 * 1024 * 1024
    #: Seconds a backed-up peer may hold senders before it counts as slow.
    backlogPatience = 2.0

    def __init__(self, clock) -> None:
        self.clock = clock
        self.batcher = WriteBatcher(clock)
        self.backlog = Backlog(clock, self.batcher, self.backlogLimit, self.backlogPatience)
        self.shuttingDown = False
        self.sessions: set[ChatSession] = set()

    def shutdown(self, notice: str) -> None:
        """
        The server is stopping: every session of every gateway gets
        C{notice} as its last line, and nobody hears the others leave.
        """
        self.shuttingDown = True
        for session in list(self.sessions):
            session.shutdown(notice)


class Pacing:
    """
    Flood control for one session: a burst, then a steady rate of lines
    (IRC-style); lines over the rate are not dropped, the sink holds them
    (its socket is not read) until the rate allows.  While the
    population's fan-out backlog is over its limit, no line is taken
    either.
    """

    def __init__(self, sink, clock, limits: ChatLimits, backlog: Backlog | None) -> None:
        self.sink = sink
        self.clock = clock
        self.backlog = backlog
        self.bucket = TokenBucket(limits.floodRate, limits.floodBurst, clock.seconds)
        self._timer = None

    def allowed(self) -> bool:
        """
        Whether the next line may be handled now; if not, input is held
        and released again when it may.
        """
        backlog = self.backlog
        if backlog is not None and backlog.isOver():
            # Fan-out already produced more than the peers took: read no
            # more from senders until it shrinks (chatsvc.net.output).
            self.sink.holdInput("backlog")
            backlog.wait(self.sink, self._backlogShrunk)
            return False
        if self.bucket.take():
            return True
        self.sink.holdInput("flood")
        self._timer = self.clock.callLater(self.bucket.delay(), self._floodOver)
        return False

    def _backlogShrunk(self) -> None:
        self.sink.releaseInput("backlog")

    def _floodOver(self) -> None:
        self._timer = None
        self.sink.releaseInput("flood")

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class ChatSession:
    """
    One user's session: reads lines, writes replies and room traffic to
    its sink.  It is the hub's listener for its member.

    @ivar member: the hub's member once logged in, else L{None}.
    @ivar room: the current room (where plain text goes).
    @ivar format: C{text} or C{json}.
    """

    def __init__(
        self,
        hub: Hub,
        sink,
        limits: ChatLimits,
        clock,
        population: Population | None = None,
        gateways: dict[str, str] | None = None,
    ) -> None:
        self.hub = hub
        self.sink = sink
        self.limits = limits
        self.clock = clock
        self.population = population
        self.gateways = gateways if gateways is not None else {}
        self.member = None
        self.room = None
        self.closed = False
        self.leaveReason = "quit"
        self.pacing = Pacing(sink, clock, limits, population.backlog if population else None)
        self._ending = sink.ending
        self._renderings = sink.renderings
        self._write = sink.write
        #: What the hub hands this user's events to: this session, or the
        #: sink if it takes them itself (L{IChatSink}'s optional deliver).
        self.listener = sink if hasattr(sink, "deliver") else self
        self._setFormat(TEXT)
        self._loginTimer = clock.callLater(limits.loginTimeout, self._loginTimedOut)
        if population is not None:
            population.sessions.add(self)

    def _setFormat(self, fmt: str) -> None:
        self.format = fmt
        self._own()
        self._rendering = self._renderings[fmt]
        self._sent = self._renderings.get(events.SENT, events.SENT)
        if self.member is not None:
            self.hub.renderingChanged(self.member)

    # -- operator log (chatsvc.net.oplog; never per message) ----------------

    @property
    def peer(self) -> str | None:
        """
        The peer as the operator log names it, if the sink knows one.
        """
        return getattr(self.sink, "peer", None)

    def _logCut(self, reason: str, why: str) -> None:
        member = self.member
        log.info(
            "chat: disconnecting {peer}{who}: {why}",
            peer=self.peer,
            who=f" ({member.name})" if member is not None else "",
            why=why,
            name=member.name if member is not None else None,
            event="cut",
            reason=reason,
        )

    # -- output -------------------------------------------------------------

    def _reply(self, kind: str, text: str, **fields) -> None:
        self._write(
            replies.reply(
                self.format, self.clock.seconds(), kind, text, ending=self._ending, **fields
            )
        )

    def _error(self, code: str, text: str) -> None:
        self._reply("error", text, code=code)

    def _info(self, text: str) -> None:
        self._reply("info", text)

    def _list(self, first, key, items, shown, empty="nobody", then=None) -> None:
        """
        A reply with a list, split over several lines if one would pass
        the line limit (L{replies.listing}); continuation lines are
        C{then}, by default like the first.
        """
        for line in replies.listing(
            self.format,
            self.clock.seconds(),
            self.sink.maxLine,
            first,
            then or first,
            key,
            items,
            shown,
            empty,
            ending=self._ending,
        ):
            self._write(line)

    def _names(self, first, shown: str, names: list[str]) -> None:
        """
        A first line about room C{shown}, then its members' names.
        """
        then = replies.ListLine("who", f"#{shown}", {"room": shown})
        self._list(first, "names", names, names, then=then)

    def deliver(self, event: events.Event) -> None:
        """
        The hub's fan-out: the same bytes for everyone reading a rendering
        (this runs once per recipient of every event: keep it short).
        """
        origin = event.origin
        if origin is not None and origin == self._ownInText:
            self.deliverOwn(event)
            return
        key = self._rendering
        self._write(event.rendered.get(key) or event.encoded(key))

    def deliverOwn(self, event: events.Event) -> None:
        """
        Deliver an event this user caused, in text mode: messages, actions
        and joins are not shown back; a private message is confirmed as
        C{-> bob: text}; the rest is shown as to everyone.
        """
        kind = event.kind
        if kind in _NOT_ECHOED:
            return
        if kind == events.PRIVATE:
            self._ownPrivate(event)
            return
        self._write(event.encoded(self._rendering))

    def _own(self) -> None:
        """
        Which origin's events are this user's own and not echoed: the
        member's id in text mode; in JSON (everything echoed) or before
        login, nothing.  Kept in one attribute, so that the fan-out
        decides with one comparison.
        """
        member = self.member
        self._ownInText = member.id if member is not None and self.format is TEXT else None

    def _ownPrivate(self, event: events.Event) -> None:
        """
        In text mode the sender of a private message sees what went to
        whom (C{-> bob: text}); sent to oneself, it also arrives.
        """
        self._write(event.encoded(self._sent))
        if event.target == self.member.name:
            self._write(event.encoded(self._rendering))

    # -- input --------------------------------------------------------------

    def lineReceived(self, line: str) -> None:
        """
        One line from the user (decoded, not yet neutralised).
        """
        if self.closed:
            return
        if self.member is None:
            self._login(line)
        elif line.startswith("//"):
            self._say(line[1:])
        elif line.startswith("/"):
            self._command(line)
        elif line.strip():
            self._say(line)

    def lineTooLong(self, limit: int) -> None:
        """
        The transport refused a line over C{limit} bytes.
        """
        self._error("too-long", f"line too long (limit {limit} bytes), ignored")

    def flooded(self) -> None:
        """
        More lines wait for the flood rate than the receive queue allows.
        """
        self.leaveReason = "flood"
        queue = self.limits.recvQueue
        self._logCut("flood", f"more than {queue} lines waiting")
        self._close("error", f"flood: more than {queue} lines waiting, disconnecting", code="flood")

    def wrongProtocol(self, spoken: str, what: str = "the chatsvc line protocol") -> None:
        """
        A client of another protocol (an IRC client, a browser, TLS) came
        to this port: one line saying what this port speaks and where
        that protocol is served, if it is, then close.
        """
        where = self.gateways.get(spoken.lower())
        hint = f"; {spoken} is served at {where}" if where else ""
        self._logCut("wrong-protocol", f"spoke {spoken}")
        self._close(
            "error",
            f"this port speaks {what} (send NAME [ROOM]), not {spoken}{hint}; closing",
            code="wrong-protocol",
        )

    # -- login ----------------------------------------------------------------

    def _login(self, line: str) -> None:
        if _IRC_OPENING.match(line):
            self.wrongProtocol("IRC")
            return
        if _HTTP_REQUEST.match(line):
            self.wrongProtocol("HTTP")
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
            result = self.hub.login(name, self.listener)
        except (ChatError, InvalidName) as e:
            self._loginRefused(e)
            return
        if isinstance(result, Deferred):
            # A cluster decides the claim: no line is read meanwhile.
            self.sink.holdInput("claim")
            result.addCallback(self._loggedIn, room)
            result.addErrback(self._claimFailed, self._loginRefused)
            result.addBoth(self._claimSettled)
            return
        self._loggedIn(result, room)

    def _loginRefused(self, e: Exception) -> None:
        if isinstance(e, InvalidName):
            self._error("invalid", f"{e}; send NAME [ROOM]")
        elif e.code == "reuse":
            self._reply("reuse", f"{e}; send another name")
        else:
            self._error(e.code, str(e))

    def _claimFailed(self, failure, refused) -> None:
        """
        A claim that was decided elsewhere failed: refused by the rules
        (C{refused} says so), or not decided at all.
        """
        if failure.check(ChatError, InvalidName):
            if not self.closed:
                refused(failure.value)
            return
        log.failure("chat: a name claim was not decided", failure)
        if not self.closed:
            self._error("unavailable", "the name could not be claimed now; try again")

    def _claimSettled(self, _) -> None:
        self.sink.releaseInput("claim")

    def _loggedIn(self, member, room: str) -> None:
        if self.closed:
            # The user went away while the claim was decided.
            self.hub.quit(member, self.leaveReason, announce=False)
            return
        self.member = member
        self._own()
        self._cancelLoginTimer()
        shown, names = self.hub.who(room)
        first = replies.ListLine(
            "success",
            f"logged in as {member.name}, in #{shown} with",
            {"name": member.name, "room": shown},
        )
        self._names(first, shown, names)
        self._enter(room)
        log.info(
            "chat: {peer} logged in as {name} in #{room}",
            peer=self.peer,
            name=member.name,
            room=self.room.name,
            event="login",
        )

    def _cancelLoginTimer(self) -> None:
        timer, self._loginTimer = self._loginTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _loginTimedOut(self) -> None:
        self._loginTimer = None
        self.leaveReason = "closed"
        timeout = self.limits.loginTimeout
        self._logCut("login-timeout", f"no login within {timeout:g} seconds")
        self._close("error", f"login timeout: no login within {timeout:g} seconds", code="timeout")

    # -- rooms ------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.room = self.hub.join(self.member, name)
        self._showTopic(quiet=True)
        count = self.limits.replay
        if count:
            self._sendHistory(self.hub.recent(self.room, count), end=False)

    def _sendHistory(self, messages: list, end: bool = True) -> None:
        for event in messages:
            self._write(event.encoded(self._rendering, history=True))
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

    def _showTopic(self, quiet: bool = False) -> None:
        """
        The current room's topic, rendered as the event that set it (in
        JSON a C{topic} object, with the time it was set); without one, a
        word to say so unless C{quiet}.
        """
        topic = self.hub.topic(self.room)
        if topic is None or not topic[0]:
            if not quiet:
                self._info(f"no topic in #{self.room.name}")
            return
        text, setter, ts = topic
        event = events.Event(events.TOPIC, self.room.name, setter, text, ts=ts)
        self._write(event.encoded(self._rendering))

    def do_topic(self, argument: str) -> None:
        if not argument:
            self._showTopic()
            return
        self.hub.setTopic(self.member, self.room, argument)

    def do_nick(self, argument: str) -> None:
        if not argument or " " in argument:
            self._error("usage", "usage: /nick NAME")
            return
        old = self.member.name
        result = self.hub.rename(self.member, argument)
        if isinstance(result, Deferred):
            self.sink.holdInput("claim")
            result.addCallback(lambda _: self._renamed(old))
            result.addErrback(self._claimFailed, self._commandRefused)
            result.addBoth(self._claimSettled)
            return
        self._renamed(old)

    def _commandRefused(self, e: Exception) -> None:
        self._error("invalid" if isinstance(e, InvalidName) else e.code, str(e))

    def _renamed(self, old: str) -> None:
        if self.member is None:
            return
        log.info(
            "chat: {peer} renamed {old} to {name}",
            peer=self.peer,
            old=old,
            name=self.member.name,
            event="rename",
        )

    def do_history(self, argument: str) -> None:
        count = self.limits.historyDefault
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
        self._setFormat(TEXT if choice == TEXT else JSON)
        self._info(f"format is now {self.format}")

    def do_quit(self, argument: str) -> None:
        self.leaveReason = f"quit: {argument}" if argument else "quit"
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
        "topic": do_topic,
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
        if not self.closed:
            self._reply(kind, text, **fields)
            self.closed = True
            self.sink.close()

    def _leave(self) -> None:
        member, self.member = self.member, None
        self._own()
        if member is not None:
            population = self.population
            # At shutdown nobody stays to hear, but in a cluster the others do.
            announce = population is None or not population.shuttingDown or self.hub.sequenced
            room = self.room.name if self.room is not None else None
            self.hub.quit(member, self.leaveReason, announce=announce)
            log.info(
                "chat: {name} ({peer}) left #{room}: {reason}",
                peer=self.peer,
                name=member.name,
                room=room,
                reason=self.leaveReason,
                event="quit",
            )

    def notice(self, text: str) -> None:
        """
        A word from the server to this user (L{Hub.notice}): an C{info:}
        line.
        """
        if not self.closed:
            self._info(text)

    def evicted(self, why: str) -> None:
        """
        The hub took this user's name away (L{Hub.evict}): say why and
        close; the hub makes the member leave, unannounced.
        """
        self._logCut("evicted", why)
        self.member = None
        self._own()
        self._close("error", why, code="reuse")

    def idleTimedOut(self, timeout: float) -> None:
        """
        Nothing was received for the idle timeout.
        """
        self.leaveReason = "idle"
        self._close("error", f"idle for {timeout:g} seconds, closing", code="idle")

    def shutdown(self, notice: str) -> None:
        """
        The server is stopping: a last line, then close.
        """
        self.leaveReason = "shutting down"
        self._close("info", notice)

    def connectionLost(self, reason: str | None = None) -> None:
        """
        The transport is gone (the peer closed, or it was cut): the member
        leaves with the reason set so far (C{reason} if given).
        """
        if reason is not None:
            self.leaveReason = reason
        self.closed = True
        self._cancelLoginTimer()
        self.pacing.stop()
        self._leave()
        if self.population is not None:
            self.population.sessions.discard(self)
