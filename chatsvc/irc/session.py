"""
One IRC client's session: IRC commands to Hub calls, the core's
refusals to numerics, and the Hub's events to IRC lines.

The session keeps no list of who is where: rooms, members, names and
topics are asked of the Hub (L{chatsvc.chat.rooms.Hub}) each time, so an
IRC client sees the same rooms as a line or web user, and a cluster
(another state behind the Hub) changes nothing here.  What it keeps is
IRC's own: the registration in progress, the capabilities negotiated
(CAP, IRCv3), the away message and the ping timer.

Refusals are numerics (RFC 1459/2812 and modern IRC):

  - before registration, anything but CAP/PASS/NICK/USER/PING/PONG/QUIT
    is C{451}; C{USER} or C{PASS} again is C{462};
  - a name the core refuses is C{432}, a name taken (by anyone, on any
    side, or one that looks the same) is C{433};
  - a channel that is not valid or not known is C{403}, a nick not
    known C{401}, a channel one is not in C{442} (C{404} for a message);
  - a missing parameter is C{461}, an unknown command C{421}, a line
    over 512 bytes C{417}.
"""

from __future__ import annotations

import fnmatch
import re
import time

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatsvc import __version__
from chatsvc.chat import events
from chatsvc.chat.names import NAME_MAX, ROOM_MAX, InvalidName, checkName, checkRoom, nameKey
from chatsvc.chat.rooms import TOPIC_MAX, ChatError, NameTaken, NoSuchName, NotInRoom, harmless
from chatsvc.chat.session import Pacing
from chatsvc.irc import chathistory, render
from chatsvc.irc.wire import (
    CLIENT_TAGS_MAX,
    LINE_MAX,
    BadLine,
    formatLine,
    numeric,
    parse,
    stripFormatting,
)

log = Logger()

#: The capabilities offered (CAP LS); none takes a value.
CAPABILITIES = (
    "away-notify",
    "batch",
    "draft/chathistory",
    "echo-message",
    "message-tags",
    "multi-prefix",
    "server-time",
    "userhost-in-names",
)

#: Commands allowed before registration.
_BEFORE_REGISTRATION = {"CAP", "PASS", "NICK", "USER", "PING", "PONG", "QUIT"}

#: The most targets one PRIVMSG, NOTICE, JOIN or PART may name.
MAX_TARGETS = 4

#: Messages of a room's history replayed on JOIN to a client that shows
#: the original times (server-time), unless C{--replay} says another.
DEFAULT_REPLAY = 20

AWAY_MAX = 200

#: Numerics whose last parameter is not text (a time, modes): no colon.
_NOT_TEXT = frozenset({"RPL_TOPICWHOTIME", "RPL_MYINFO", "RPL_CHANNELMODEIS", "RPL_UMODEIS"})
CTCP = "\x01"

#: Room messages and actions: the fan-out's common case.
ROOM_TALK = frozenset({events.MESSAGE, events.ACTION})


class IRCSession:
    """
    One IRC client.  C{sink} is its connection
    (L{chatsvc.irc.protocol.IRCConnection}): C{write(bytes)},
    C{holdInput}, C{releaseInput}, C{close} and C{peer}.

    @ivar member: the Hub's member once registered, else L{None}.
    @ivar caps: the IRCv3 capabilities this client enabled.
    @ivar away: the away message, or L{None}.
    """

    # Defaults on the class, so that an idle client's instance holds only
    # what it changed (ten thousand idle clients add up).
    member = None
    memberId = None
    nick: str | None = None
    user: str | None = None
    realname = ""
    caps: frozenset | set = frozenset()
    away: str | None = None
    closed = False
    leaveReason = "closed"
    rendering = render.RENDERINGS[(False, False)]
    _capPending = False
    _echo = False
    _lastShared = None
    _oldName = ""
    _batches = 0

    def __init__(self, gateway, sink) -> None:
        """
        @param gateway: the L{chatsvc.irc.protocol.IRCFactory}: the hub,
            limits, clock, population and server name.
        @param sink: this client's connection.
        """
        self.gateway = gateway
        self.hub = gateway.hub
        self.limits = limits = gateway.limits
        self.clock = clock = gateway.clock
        self.sink = sink
        self._write = sink.write
        population = gateway.population
        self.pacing = Pacing(sink, clock, limits, population.backlog)
        self._loginTimer = clock.callLater(limits.loginTimeout, self._registrationTimedOut)
        population.sessions.add(self)

    @property
    def server(self) -> str:
        return self.gateway.serverName

    @property
    def population(self):
        return self.gateway.population

    # -- output --------------------------------------------------------

    @property
    def me(self) -> str:
        """
        The client's nick as numerics address it (C{*} before registration).
        """
        return self.member.name if self.member is not None else "*"

    @property
    def peer(self) -> str | None:
        return getattr(self.sink, "peer", None)

    def send(self, line: str) -> None:
        self.sink.write(line.encode("utf-8") + b"\r\n")

    def numeric(self, symbol: str, *params: str) -> None:
        """
        A numeric reply to this client: C{:server NNN nick params...}.
        """
        text = symbol not in _NOT_TEXT
        self.send(formatLine(self.server, numeric(symbol), self.me, *params, trailing=text))

    def _names(self, symbol: str, head: tuple, names: list[str]) -> None:
        """
        A numeric whose last parameter is a list of names, over as many
        lines as keep each within 512 bytes (353, 319).
        """
        base = formatLine(self.server, numeric(symbol), self.me, *head, "x", trailing=True)[:-1]
        room = LINE_MAX - 2 - len(base.encode("utf-8"))
        line: list[str] = []
        used = 0
        for name in names:
            size = len(name.encode("utf-8")) + (1 if line else 0)
            if line and used + size > room:
                self.send(base + " ".join(line))
                line, used = [], 0
                size -= 1
            line.append(name)
            used += size
        if line:
            self.send(base + " ".join(line))

    # -- fan-out (the Hub's listener) ----------------------------------

    def deliver(self, event: events.Event) -> None:
        """
        An event for this member: the Hub's fan-out, once per recipient of
        every event, so a room message from someone else is one
        comparison and one write of the shared rendering; the rest is
        L{_deliverOther}.
        """
        if event.kind in ROOM_TALK and event.origin != self.memberId:
            key = self.rendering
            self._write(event.rendered.get(key) or event.encoded(key))
        else:
            self.deliverOther(event)

    def deliverOther(self, event: events.Event) -> None:
        """
        Its own messages come back only with echo-message; its own QUIT
        never (it gets ERROR instead); a QUIT or a NICK that reaches it
        through several shared rooms is shown once.
        """
        kind = event.kind
        origin = event.origin
        if origin is not None and origin == self.memberId:
            if kind in ROOM_TALK:
                if not self._echo:
                    return
            elif kind == events.PRIVATE:
                if not self._echo and nameKey(event.target) != nameKey(self.member.name):
                    return
            elif kind == events.LEAVE and not render.isPart(event):
                return
        if kind == events.RENAME or (kind == events.LEAVE and not render.isPart(event)):
            shared = (origin, kind, event.name, event.target)
            if shared == self._lastShared:
                return
            self._lastShared = shared
        key = self.rendering
        self._write(event.rendered.get(key) or event.encoded(key))

    # -- input ---------------------------------------------------------

    def lineReceived(self, line: str) -> None:
        """
        One decoded line from the client (without its ending).
        """
        if self.closed:
            return
        try:
            message = parse(line)
        except BadLine:
            return  # an empty line: ignored, as every server does
        # Tags have their own limit (a client's: 4094 bytes, with the @
        # and the space 4096); the rest is IRC's 512 bytes.
        tags, body = line.partition(" ")[::2] if line.startswith("@") else ("", line)
        if len(body.encode("utf-8")) > LINE_MAX - 2 or len(tags.encode("utf-8")) > CLIENT_TAGS_MAX:
            self.numeric("ERR_INPUTTOOLONG", "Input line was too long")
            return
        command = message.command
        if self.member is None and command not in _BEFORE_REGISTRATION:
            if command in _COMMANDS:
                self.numeric("ERR_NOTREGISTERED", "You have not registered")
            else:
                self.numeric("ERR_UNKNOWNCOMMAND", command, "Unknown command")
            return
        handler = _COMMANDS.get(command)
        if handler is None:
            self.numeric("ERR_UNKNOWNCOMMAND", command, "Unknown command")
            return
        handler(self, message.params)

    def lineTooLong(self) -> None:
        self.numeric("ERR_INPUTTOOLONG", "Input line was too long")

    def flooded(self) -> None:
        self.leaveReason = "flood"
        self._logCut("flood", f"more than {self.limits.recvQueue} lines waiting")
        self.closeWith("Excess Flood")

    def _needs(self, params: list, count: int, command: str) -> bool:
        if len(params) < count or not all(params[:count]):
            self.numeric("ERR_NEEDMOREPARAMS", command, "Not enough parameters")
            return False
        return True

    # -- registration --------------------------------------------------

    def irc_CAP(self, params: list) -> None:
        if not self._needs(params, 1, "CAP"):
            return
        sub = params[0].upper()
        if sub == "LS":
            if self.member is None:
                self._capPending = True
            self.send(formatLine(self.server, "CAP", self.me, "LS", " ".join(CAPABILITIES)))
        elif sub == "LIST":
            self.send(formatLine(self.server, "CAP", self.me, "LIST", " ".join(sorted(self.caps))))
        elif sub == "REQ":
            if self.member is None:
                self._capPending = True
            wanted = params[1] if len(params) > 1 else ""
            self._capRequest(wanted)
        elif sub == "END":
            if self._capPending:
                self._capPending = False
                self._tryRegister()
        else:
            self.numeric("ERR_INVALIDCAPCMD", params[0], "Invalid CAP command")

    def _capRequest(self, wanted: str) -> None:
        """
        All or nothing: every capability named must be known, or none
        changes (NAK).
        """
        changes = []
        for word in wanted.split():
            enable = not word.startswith("-")
            name = word.lstrip("-")
            if name not in CAPABILITIES:
                self.send(formatLine(self.server, "CAP", self.me, "NAK", wanted))
                return
            changes.append((name, enable))
        if not isinstance(self.caps, set):
            self.caps = set()
        for name, enable in changes:
            if enable:
                self.caps.add(name)
            else:
                self.caps.discard(name)
        self._capsChanged()
        self.send(formatLine(self.server, "CAP", self.me, "ACK", wanted))

    def _capsChanged(self) -> None:
        caps = self.caps
        self.rendering = render.RENDERINGS[("server-time" in caps, "message-tags" in caps)]
        self._echo = "echo-message" in caps
        if self.member is not None:
            self.hub.renderingChanged(self.member)

    def irc_PASS(self, params: list) -> None:
        if self.member is not None:
            self.numeric("ERR_ALREADYREGISTRED", "You may not reregister")
            return
        self._needs(params, 1, "PASS")  # accepted and ignored: no accounts

    def irc_NICK(self, params: list) -> None:
        if not params or not params[0]:
            self.numeric("ERR_NONICKNAMEGIVEN", "No nickname given")
            return
        wanted = params[0]
        try:
            checkName(wanted)
        except InvalidName as e:
            self.numeric("ERR_ERRONEUSNICKNAME", wanted, f"Erroneous nickname: {e}")
            return
        if self.member is not None:
            self._rename(wanted)
            return
        held = self.hub.state.holder(nameKey(wanted))
        if held is not None:
            self.numeric("ERR_NICKNAMEINUSE", wanted, "Nickname is already in use")
            return
        self.nick = wanted
        self._tryRegister()

    def _rename(self, wanted: str) -> None:
        member = self.member
        if wanted == member.name:
            return
        try:
            result = self.hub.rename(member, wanted)
        except (NameTaken, InvalidName) as e:
            self._nickRefused(wanted, e)
            return
        if isinstance(result, Deferred):
            # A cluster decides the claim: no line is read meanwhile.
            self.sink.holdInput("claim")
            result.addCallback(lambda _: self._renamed(member))
            result.addErrback(self._claimFailed, wanted)
            result.addBoth(self._claimSettled)
            return
        self._renamed(member)

    def _nickRefused(self, wanted: str, e: Exception) -> None:
        if isinstance(e, InvalidName):
            self.numeric("ERR_ERRONEUSNICKNAME", wanted, f"Erroneous nickname: {e}")
        else:
            self.numeric("ERR_NICKNAMEINUSE", wanted, "Nickname is already in use")

    def _claimFailed(self, failure, wanted: str) -> None:
        if self.closed:
            return
        if failure.check(NameTaken, InvalidName):
            self._nickRefused(wanted, failure.value)
            return
        log.failure("irc: a nick claim was not decided", failure)
        self.numeric("ERR_UNAVAILRESOURCE", wanted, "Nick could not be claimed now; try again")

    def _claimSettled(self, _) -> None:
        self.sink.releaseInput("claim")

    def _renamed(self, member) -> None:
        if self.member is not member:
            return
        if not member.rooms:
            # Nobody shares a room to hear it, so the Hub sent no event:
            # the client still needs to see its new nick.
            self.send(formatLine(render.mask(self._oldName), "NICK", member.name))
        self._oldName = member.name

    def irc_USER(self, params: list) -> None:
        if self.member is not None:
            self.numeric("ERR_ALREADYREGISTRED", "You may not reregister")
            return
        if len(params) < 4 or not params[0] or not params[3]:
            self.numeric("ERR_NEEDMOREPARAMS", "USER", "Not enough parameters")
            return
        self.user = params[0]
        self.realname = stripFormatting(params[3])[:100]
        self._tryRegister()

    def _tryRegister(self) -> None:
        if self.member is not None or self.nick is None or self.user is None:
            return
        if self._capPending:
            return
        nick, self.nick = self.nick, None
        try:
            result = self.hub.login(nick, self.sink if hasattr(self.sink, "deliver") else self)
        except (NameTaken, InvalidName) as e:
            self._nickRefused(nick, e)
            return
        if isinstance(result, Deferred):
            self.sink.holdInput("claim")
            result.addCallback(self._registered)
            result.addErrback(self._claimFailed, nick)
            result.addBoth(self._claimSettled)
            return
        self._registered(result)

    def _registered(self, member) -> None:
        if self.closed:
            # The client went away while the claim was decided.
            self.hub.quit(member, self.leaveReason, announce=False)
            return
        self.member, self.memberId = member, member.id
        self._oldName = member.name
        self._cancelLoginTimer()
        self._welcome()
        log.info(
            "irc: {peer} registered as {name}",
            peer=self.peer,
            name=member.name,
            event="login",
        )

    def isupport(self) -> list[str]:
        """
        The ISUPPORT (005) tokens.
        """
        return [
            "AWAYLEN=%d" % AWAY_MAX,
            "CASEMAPPING=rfc8265",
            "CHANLIMIT=#:",
            "CHANMODES=,,,n",
            "CHANNELLEN=%d" % (ROOM_MAX + 1),
            "CHANTYPES=#",
            "CHATHISTORY=%d" % chathistory.MAX_LIMIT,
            "ELIST=",
            "MAXTARGETS=%d" % MAX_TARGETS,
            "MODES=0",
            "MSGREFTYPES=msgid,timestamp",
            "NETWORK=chatsvc",
            "NICKLEN=%d" % NAME_MAX,
            "PREFIX=",
            "TARGMAX=JOIN:%d,PART:%d,PRIVMSG:%d,NOTICE:%d,NAMES:1,WHOIS:1" % ((MAX_TARGETS,) * 4),
            "TOPICLEN=%d" % TOPIC_MAX,
        ]

    def _welcome(self) -> None:
        name = self.member.name
        version = f"chatsvc-{__version__}"
        self.numeric("RPL_WELCOME", f"Welcome to the chatsvc IRC gateway {render.mask(name)}")
        self.numeric("RPL_YOURHOST", f"Your host is {self.server}, running version {version}")
        self.numeric("RPL_CREATED", f"This server was created {time.ctime(self.gateway.created)}")
        self.numeric("RPL_MYINFO", self.server, version, "i", "n")
        tokens = self.isupport()
        for start in range(0, len(tokens), 12):
            self.numeric(
                "RPL_ISUPPORT", *tokens[start : start + 12], "are supported by this server"
            )
        self.irc_LUSERS([])
        self.irc_MOTD([])

    def _cancelLoginTimer(self) -> None:
        timer, self._loginTimer = self._loginTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _registrationTimedOut(self) -> None:
        self._loginTimer = None
        self._logCut("login-timeout", "not registered in time")
        self.closeWith("Registration timed out")

    # -- queries -------------------------------------------------------

    def irc_PING(self, params: list) -> None:
        if not params or not params[0]:
            self.numeric("ERR_NOORIGIN", "No origin specified")
            return
        self.send(formatLine(self.server, "PONG", self.server, params[0]))

    def irc_PONG(self, params: list) -> None:
        pass  # any line counts as activity (IRCConnection)

    def irc_MOTD(self, params: list) -> None:
        self.numeric("ERR_NOMOTD", "MOTD File is missing")

    def irc_LUSERS(self, params: list) -> None:
        users = len(self.hub.members)
        rooms = len(self.hub.roomList())
        self.numeric("RPL_LUSERCLIENT", f"There are {users} users and 0 invisible on 1 servers")
        self.numeric("RPL_LUSERCHANNELS", str(rooms), "channels formed")
        self.numeric("RPL_LUSERME", f"I have {users} clients and 0 servers")
        count = str(users)
        self.numeric("RPL_LOCALUSERS", count, count, f"Current local users {users}, max {users}")
        self.numeric("RPL_GLOBALUSERS", count, count, f"Current global users {users}, max {users}")

    def irc_ISON(self, params: list) -> None:
        if not self._needs(params, 1, "ISON"):
            return
        present = []
        for word in " ".join(params).split():
            held = self.hub.state.holder(nameKey(word))
            if held is not None:
                present.append(held[1])
        self.numeric("RPL_ISON", " ".join(present))

    def irc_USERHOST(self, params: list) -> None:
        if not self._needs(params, 1, "USERHOST"):
            return
        found = []
        for word in params[:5]:
            held = self.hub.state.holder(nameKey(word))
            if held is not None:
                away = "-" if self._awayOf(held[1]) else "+"
                found.append(f"{held[1]}={away}{held[1]}@{render.HOST}")
        self.numeric("RPL_USERHOST", " ".join(found))

    def irc_TIME(self, params: list) -> None:
        self.numeric("RPL_TIME", self.server, time.ctime(self.clock.seconds()))

    def irc_VERSION(self, params: list) -> None:
        self.numeric("RPL_VERSION", f"chatsvc-{__version__}.", self.server, "IRC gateway")

    def _awayOf(self, name: str) -> str | None:
        """
        The away message of a member of this node's IRC gateway, if any.
        """
        member = self.hub.find(name)
        if member is None:
            return None
        session = ircSession(member)
        return session.away if session is not None else None

    def _realnameOf(self, member) -> str:
        session = ircSession(member) if member is not None else None
        return (session.realname if session is not None else "") or "chatsvc user"

    def _channel(self, word: str):
        """
        The room a channel parameter names: C{(shown, room)}; C{room} is
        L{None} when it does not exist.

        @raise InvalidName: not a channel name we could have.
        """
        if not word.startswith("#"):
            raise InvalidName("channel names start with #")
        name = checkRoom(word[1:])
        return name, self.hub.room(name)

    def irc_NAMES(self, params: list) -> None:
        if not params or not params[0]:
            self.numeric("RPL_ENDOFNAMES", "*", "End of /NAMES list")
            return
        for word in params[0].split(",")[:MAX_TARGETS]:
            try:
                name, _ = self._channel(word)
            except InvalidName:
                self.numeric("RPL_ENDOFNAMES", word, "End of /NAMES list")
                continue
            shown, names = self.hub.who(name)
            if names:
                self._names("RPL_NAMREPLY", ("=", "#" + shown), self._shownNames(names))
            self.numeric("RPL_ENDOFNAMES", "#" + shown, "End of /NAMES list")

    def _shownNames(self, names: list[str]) -> list[str]:
        """
        Names as NAMES lists them: with C{userhost-in-names}, full masks.
        """
        if "userhost-in-names" in self.caps:
            return [render.mask(name) for name in names]
        return names

    def irc_WHO(self, params: list) -> None:
        mask = params[0] if params and params[0] else "*"
        if mask.startswith("#"):
            try:
                name, _ = self._channel(mask)
            except InvalidName:
                self.numeric("RPL_ENDOFWHO", mask, "End of /WHO list")
                return
            shown, names = self.hub.who(name)
            for each in names:
                self._whoLine("#" + shown, each)
            self.numeric("RPL_ENDOFWHO", mask, "End of /WHO list")
            return
        if "*" in mask or "?" in mask:
            # A mask: matched against the members of this node, by key.
            pattern = re.compile(fnmatch.translate(mask.casefold()))
            for member in list(self.hub.members.values()):
                if pattern.match(member.name.casefold()):
                    self._whoLine("*", member.name)
        else:
            held = self.hub.state.holder(nameKey(mask))
            if held is not None:
                self._whoLine("*", held[1])
        self.numeric("RPL_ENDOFWHO", mask, "End of /WHO list")

    def _whoLine(self, channel: str, name: str) -> None:
        member = self.hub.find(name)
        session = ircSession(member) if member is not None else None
        here = "G" if session is not None and session.away else "H"
        self.numeric(
            "RPL_WHOREPLY",
            channel,
            name,
            render.HOST,
            self.server,
            name,
            here,
            "0 " + self._realnameOf(member),
        )

    def irc_WHOIS(self, params: list) -> None:
        if not params or not params[-1]:
            self.numeric("ERR_NONICKNAMEGIVEN", "No nickname given")
            return
        wanted = params[-1].split(",")[0]
        held = self.hub.state.holder(nameKey(wanted))
        if held is None:
            self.numeric("ERR_NOSUCHNICK", wanted, "No such nick/channel")
            self.numeric("RPL_ENDOFWHOIS", wanted, "End of /WHOIS list")
            return
        name = held[1]
        member = self.hub.members.get(held[0])
        self.numeric("RPL_WHOISUSER", name, name, render.HOST, "*", self._realnameOf(member))
        if member is not None and member.rooms:
            self._names("RPL_WHOISCHANNELS", (name,), ["#" + r.name for r in member.rooms.values()])
        self.numeric("RPL_WHOISSERVER", name, self.server, "chatsvc")
        session = ircSession(member) if member is not None else None
        away = session.away if session is not None else None
        if away:
            self.numeric("RPL_AWAY", name, away)
        self.numeric("RPL_ENDOFWHOIS", name, "End of /WHOIS list")

    def irc_LIST(self, params: list) -> None:
        wanted = None
        if params and params[0]:
            wanted = {w[1:].casefold() for w in params[0].split(",") if w.startswith("#")}
        self.numeric("RPL_LISTSTART", "Channel", "Users  Name")
        for name, count in self.hub.roomList():
            if wanted is not None and name.casefold() not in wanted:
                continue
            room = self.hub.room(name)
            topic = self.hub.topic(room) if room is not None else None
            self.numeric("RPL_LIST", "#" + name, str(count), topic[0] if topic else "")
        self.numeric("RPL_LISTEND", "End of /LIST")

    # -- rooms ---------------------------------------------------------

    def irc_JOIN(self, params: list) -> None:
        if not self._needs(params, 1, "JOIN"):
            return
        if params[0] == "0":
            for room in list(self.member.rooms.values()):
                self._part(room, render.PART)
            return
        for word in params[0].split(",")[:MAX_TARGETS]:
            try:
                name, room = self._channel(word)
            except InvalidName:
                self.numeric("ERR_NOSUCHCHANNEL", word, "No such channel")
                continue
            if room is not None and self.member in room.members:
                continue
            room = self.hub.join(self.member, name)
            if self.away:
                self._notifyAway((room,))
            self._topic(room, quiet=True)
            shown, names = self.hub.who(room.name)
            self._names("RPL_NAMREPLY", ("=", "#" + shown), self._shownNames(names))
            self.numeric("RPL_ENDOFNAMES", "#" + shown, "End of /NAMES list")
            self._replay(room)

    def _replay(self, room) -> None:
        """
        The room's last messages, with their original times, to a client
        that shows them (server-time), in a C{chathistory} batch when it
        takes batches.
        """
        if "server-time" not in self.caps or "draft/chathistory" in self.caps:
            return  # no times to show them with; or the client asks itself
        count = self.limits.replay or DEFAULT_REPLAY
        recent = self.hub.recent(room, count)
        if recent:
            self._history("#" + room.name, recent)

    def _history(self, target: str | None, messages: list, kind: str = "chathistory") -> None:
        """
        Messages from the history, with their original times and ids, in
        a C{chathistory} batch if the client takes batches.
        """
        ids = "message-tags" in self.caps
        batch = "batch" in self.caps
        extra = ""
        if batch:
            self._batches += 1
            ref = f"h{self._batches}"
            extra = "batch=" + ref
            head = (kind, target) if target is not None else (kind,)
            self.send(formatLine(self.server, "BATCH", "+" + ref, *head))
        for event in messages:
            self.send(render.render(event, True, ids, extra))
        if batch:
            self.send(formatLine(self.server, "BATCH", "-" + ref))

    def irc_CHATHISTORY(self, params: list) -> None:
        """
        IRCv3 draft/chathistory (L{chatsvc.irc.chathistory}).
        """
        if not params:
            self._fail("CHATHISTORY", "NEED_MORE_PARAMS", "*", "Missing parameters")
            return
        sub = params[0].upper()
        if sub == "TARGETS":
            # No private history is kept: no targets to list.
            self._history(None, [], "draft/chathistory-targets")
            return
        if sub not in chathistory.SUBCOMMANDS:
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "Unknown subcommand")
            return
        points = 2 if sub == "BETWEEN" else 1
        if len(params) < 3 + points:
            self._fail("CHATHISTORY", "NEED_MORE_PARAMS", sub, "Missing parameters")
            return
        target, words, limit = params[1], params[2 : 2 + points], params[2 + points]
        if not (limit.isascii() and limit.isdigit()):
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "The limit is not a number")
            return
        if not target.startswith("#"):
            if self.hub.state.holder(nameKey(target)) is None:
                self._fail("CHATHISTORY", "INVALID_TARGET", sub, target, "No such nick")
            else:
                self._history(target, [])  # private messages are not kept
            return
        try:
            _, room = self._channel(target)
        except InvalidName:
            room = None
        if room is None:
            self._fail("CHATHISTORY", "INVALID_TARGET", sub, target, "No such channel")
            return
        try:
            refs = [chathistory.reference(word, room.name) for word in words]
        except chathistory.BadReference as e:
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, f"Bad message reference {e}")
            return
        if sub != "LATEST" and None in refs:
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "Only LATEST takes *")
            return
        recent = self.hub.recent(room, self.hub.historyLimit)
        self._history("#" + room.name, chathistory.select(recent, sub, refs, int(limit)))

    def _fail(self, command: str, code: str, *context: str) -> None:
        """
        An IRCv3 standard reply: C{FAIL COMMAND CODE context... :text}.
        """
        self.send(formatLine(self.server, "FAIL", command, code, *context, trailing=True))

    def irc_PART(self, params: list) -> None:
        if not self._needs(params, 1, "PART"):
            return
        text = stripFormatting(params[1]).strip() if len(params) > 1 else ""
        reason = f"{render.PART}: {text}" if text else render.PART
        for word in params[0].split(",")[:MAX_TARGETS]:
            try:
                _, room = self._channel(word)
            except InvalidName:
                room = None
            if room is None:
                self.numeric("ERR_NOSUCHCHANNEL", word, "No such channel")
            elif self.member not in room.members:
                self.numeric("ERR_NOTONCHANNEL", "#" + room.name, "You're not on that channel")
            else:
                self._part(room, reason)

    def _part(self, room, reason: str) -> None:
        """
        Leave C{room}.  The others hear it from the Hub; the member, out
        of the room by then, is told here.
        """
        event = events.Event(
            events.LEAVE, room.name, self.member.name, harmless(reason), ts=self.clock.seconds()
        )
        self.hub.part(self.member, room, reason)
        self.sink.write(event.encoded(self.rendering))

    def irc_TOPIC(self, params: list) -> None:
        if not self._needs(params, 1, "TOPIC"):
            return
        try:
            _, room = self._channel(params[0])
        except InvalidName:
            room = None
        if room is None:
            self.numeric("ERR_NOSUCHCHANNEL", params[0], "No such channel")
            return
        if len(params) == 1:
            self._topic(room)
            return
        if self.member not in room.members:
            self.numeric("ERR_NOTONCHANNEL", "#" + room.name, "You're not on that channel")
            return
        self.hub.setTopic(self.member, room, stripFormatting(params[1])[:TOPIC_MAX])

    def _topic(self, room, quiet: bool = False) -> None:
        topic = self.hub.topic(room)
        channel = "#" + room.name
        if topic is None or not topic[0]:
            if not quiet:
                self.numeric("RPL_NOTOPIC", channel, "No topic is set")
            return
        text, setter, ts = topic
        self.numeric("RPL_TOPIC", channel, text)
        self.numeric("RPL_TOPICWHOTIME", channel, setter, str(int(ts)))

    def irc_MODE(self, params: list) -> None:
        if not self._needs(params, 1, "MODE"):
            return
        target = params[0]
        if target.startswith("#"):
            try:
                _, room = self._channel(target)
            except InvalidName:
                room = None
            if room is None:
                self.numeric("ERR_NOSUCHCHANNEL", target, "No such channel")
            elif len(params) == 1:
                self.numeric("RPL_CHANNELMODEIS", "#" + room.name, "+n")
            elif params[1].lstrip("+") in ("b", "e", "I"):
                # Ban, exception and invite lists: there are none.
                end = {"b": "RPL_ENDOFBANLIST", "e": "RPL_ENDOFEXCEPTLIST"}
                symbol = end.get(params[1].lstrip("+"), "RPL_ENDOFINVITELIST")
                self.numeric(symbol, "#" + room.name, "End of list")
            else:
                self.numeric("ERR_CHANOPRIVSNEEDED", "#" + room.name, "You're not channel operator")
            return
        if nameKey(target) != nameKey(self.member.name):
            self.numeric("ERR_USERSDONTMATCH", "Cannot change mode for other users")
            return
        if len(params) == 1:
            self.numeric("RPL_UMODEIS", "+i")
        elif any(c not in "+-iw" for c in params[1]):
            self.numeric("ERR_UMODEUNKNOWNFLAG", "Unknown MODE flag")

    def irc_KICK(self, params: list) -> None:
        if not self._needs(params, 2, "KICK"):
            return
        self.numeric("ERR_CHANOPRIVSNEEDED", params[0], "You're not channel operator")

    irc_INVITE = irc_KICK

    def irc_OPER(self, params: list) -> None:
        if self._needs(params, 2, "OPER"):
            self.numeric("ERR_NOOPERHOST", "There are no operators here")

    def irc_WHOWAS(self, params: list) -> None:
        """
        Nobody's past is kept: every nick was never here.
        """
        if not params or not params[0]:
            self.numeric("ERR_NONICKNAMEGIVEN", "No nickname given")
            return
        nick = params[0].split(",")[0]
        self.numeric("ERR_WASNOSUCHNICK", nick, "There was no such nickname")
        self.numeric("RPL_ENDOFWHOWAS", nick, "End of WHOWAS")

    # -- talking -------------------------------------------------------

    def irc_PRIVMSG(self, params: list, notice: bool = False) -> None:
        command = "NOTICE" if notice else "PRIVMSG"
        if not params or not params[0]:
            if not notice:
                self.numeric("ERR_NORECIPIENT", f"No recipient given ({command})")
            return
        if len(params) < 2 or not params[1]:
            if not notice:
                self.numeric("ERR_NOTEXTTOSEND", "No text to send")
            return
        text = params[1]
        kind = events.MESSAGE
        if text.startswith(CTCP):
            inner = text.strip(CTCP)
            word, _, rest = inner.partition(" ")
            if word.upper() != "ACTION":
                return  # other CTCP (VERSION, PING...) has no meaning on the other sides
            kind, text = events.ACTION, rest
        text = stripFormatting(text)
        if not text.strip():
            return
        for target in params[0].split(",")[:MAX_TARGETS]:
            self._sendTo(target, kind, text, notice)

    def irc_NOTICE(self, params: list) -> None:
        self.irc_PRIVMSG(params, notice=True)

    def _sendTo(self, target: str, kind: str, text: str, notice: bool) -> None:
        """
        One target of a PRIVMSG or NOTICE (a NOTICE never gets an error
        back, RFC 2812 section 3.3.2).
        """
        hub = self.hub
        if target.startswith("#"):
            try:
                _, room = self._channel(target)
            except InvalidName:
                room = None
            if room is None:
                if not notice:
                    self.numeric("ERR_NOSUCHCHANNEL", target, "No such channel")
                return
            try:
                hub.say(self.member, room, text, kind)
            except NotInRoom:
                if not notice:
                    self.numeric("ERR_CANNOTSENDTOCHAN", "#" + room.name, "Cannot send to channel")
            return
        if kind == events.ACTION:
            # The core's private messages have no action kind: shown as
            # "* alice waves" on every side.
            text = f"* {self.member.name} {text}"
        try:
            hub.private(self.member, target, text)
        except NoSuchName:
            if not notice:
                self.numeric("ERR_NOSUCHNICK", target, "No such nick/channel")
            return
        away = self._awayOf(target)
        if away and not notice:
            self.numeric("RPL_AWAY", target, away)

    def irc_TAGMSG(self, params: list) -> None:
        pass  # client-only tags (typing, reactions) are not relayed

    def irc_AWAY(self, params: list) -> None:
        text = stripFormatting(params[0]).strip()[:AWAY_MAX] if params else ""
        self.away = text or None
        if self.away:
            self.numeric("RPL_NOWAWAY", "You have been marked as being away")
        else:
            self.numeric("RPL_UNAWAY", "You are no longer marked as being away")
        self._notifyAway()

    def _notifyAway(self, rooms=None) -> None:
        """
        away-notify: the IRC clients of this node that share a room with
        this member and asked for it hear of the change.
        """
        member = self.member
        line = formatLine(render.mask(member.name), "AWAY", *((self.away,) if self.away else ()))
        data = line.encode("utf-8") + b"\r\n"
        told = {member}
        for room in rooms if rooms is not None else member.rooms.values():
            for other in room.members:
                if other in told:
                    continue
                told.add(other)
                session = ircSession(other)
                if session is not None and "away-notify" in session.caps:
                    session.sink.write(data)

    # -- leaving -------------------------------------------------------

    def irc_QUIT(self, params: list) -> None:
        text = stripFormatting(params[0]).strip() if params else ""
        self.leaveReason = f"quit: {text}" if text else "quit"
        self.closeWith(f"Quit: {text}" if text else "Quit")

    def notice(self, text: str) -> None:
        """
        A word from the server to this client (L{Hub.notice}): a server
        NOTICE.
        """
        if not self.closed:
            self.send(formatLine(self.server, "NOTICE", self.me, text))

    def evicted(self, why: str) -> None:
        """
        The hub took this client's nick away (L{Hub.evict}): its rooms
        never heard of it, so it leaves unannounced, then ERROR.
        """
        self._logCut("evicted", why)
        self.member = None
        self.closeWith(why)

    def closeWith(self, why: str) -> None:
        """
        Leave the chat, send ERROR (IRC's last line) and close.
        """
        if self.closed:
            return
        self._leave()
        self.closed = True
        self.send(formatLine(None, "ERROR", f"Closing Link: {self.peer or self.server} ({why})"))
        self.sink.close()

    def _leave(self) -> None:
        member, self.member = self.member, None
        self._cancelLoginTimer()
        self.pacing.stop()
        if member is None:
            return
        population = self.population
        # At shutdown nobody stays to hear, but in a cluster the others do.
        announce = population is None or not population.shuttingDown or self.hub.sequenced
        self.hub.quit(member, self.leaveReason, announce=announce)
        log.info(
            "irc: {name} ({peer}) left the chat: {reason}",
            peer=self.peer,
            name=member.name,
            reason=self.leaveReason,
            event="quit",
        )

    def _logCut(self, reason: str, why: str) -> None:
        log.info(
            "irc: disconnecting {peer}: {why}",
            peer=self.peer,
            why=why,
            event="cut",
            reason=reason,
        )

    def pingTimedOut(self, seconds: float) -> None:
        self.leaveReason = "ping timeout"
        self._logCut("ping-timeout", f"no reply to PING within {seconds:g} seconds")
        self.closeWith(f"Ping timeout: {seconds:g} seconds")

    def shutdown(self, notice: str) -> None:
        """
        The server is stopping (L{Population.shutdown}).
        """
        self.leaveReason = "shutting down"
        self.closeWith(notice)

    def connectionLost(self, reason: str | None = None) -> None:
        if reason is not None:
            self.leaveReason = reason
        self.closed = True
        self._leave()
        if self.population is not None:
            self.population.sessions.discard(self)


def ircSession(member) -> IRCSession | None:
    """
    The IRC session of a member of this node, or L{None} for a member of
    another gateway.  (Its listener is the session, or the connection
    whose C{session} it is.)
    """
    listener = member.listener
    if isinstance(listener, IRCSession):
        return listener
    session = getattr(listener, "session", None)
    return session if isinstance(session, IRCSession) else None


#: Command -> handler.
_COMMANDS = {
    name[4:]: method
    for name, method in vars(IRCSession).items()
    if name.startswith("irc_") and callable(method)
}

__all__ = ["IRCSession", "CAPABILITIES", "ChatError"]
