"""
The IRC gateway's transport side: one L{IRCConnection} per client, built
by an L{IRCFactory} on the same Hub, population and connection policy as
the line protocol.

It is the line protocol's plumbing (L{chatsvc.net.lineproto}) with IRC's
framing: lines end with CRLF or LF; 512 bytes with the ending, plus up
to 8191 bytes of IRCv3 tags, and a longer line is answered C{417} and
skipped, never a disconnect; each line is decoded on its own, UTF-8 or
else Latin-1 (L{chatsvc.irc.wire.decodeIRC}).  Flood control is the
core's (L{chatsvc.chat.session.Pacing}): lines over the rate wait, and a
client that queues too many is closed with IRC's C{Excess Flood}.  The
server pings a client that has been quiet, and closes one that does not
answer (C{Ping timeout}).
"""

from __future__ import annotations

import time

from twisted.internet import task
from twisted.logger import Logger
from zope.interface import implementer

from chatsvc.chat import events
from chatsvc.chat.events import encoder
from chatsvc.chat.interfaces import IBatchedListener
from chatsvc.chat.lines import ChatLimits
from chatsvc.chat.session import Population, SessionListener
from chatsvc.irc.session import ROOM_TALK, IRCSession
from chatsvc.irc.wire import LINE_MAX, TAGS_MAX, decodeIRC, formatLine
from chatsvc.net.lineproto import ConnectionPolicy, LineFactory, LineProtocol

log = Logger()

#: The first byte of a TLS record carrying a handshake (a ClientHello).
_TLS_HANDSHAKE = 0x16

#: How IRC names this server in numerics.
SERVER_NAME = "chatsvc"


@implementer(IBatchedListener)
class IRCConnection(SessionListener, LineProtocol):
    """
    One IRC client's connection: the sink of its L{IRCSession}, and the
    Hub's listener for its member (L{deliver}).
    """

    factory: IRCFactory
    session: IRCSession
    decode = staticmethod(decodeIRC)
    _firstData = True
    _pinged = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._lastSeen = self.clock.seconds()
        self.session = IRCSession(self.factory, self)
        self.factory.watch(self)

    # -- fan-out -------------------------------------------------------

    def deliver(self, event: events.Event) -> None:
        """
        The Hub's fan-out for this client: a room message from someone
        else is appended to this turn's output as the shared rendering
        (L{LineProtocol.write} inlined: this runs once per recipient of
        every message); anything else is the session's
        (L{IRCSession.deliverOther}).
        """
        session = self.session
        if event.kind in ROOM_TALK and event.origin != session.memberId:
            key = session.rendering
            data = event.rendered.get(key) or event.encoded(key)
            out = self._out
            if out and out[-1].__class__ is bytes and not self.disconnecting:
                out.append(data)
                self._batcher.pendingBytes += len(data)
            else:
                self.write(data)
        else:
            session.deliverOther(event)

    def fanout(self):
        """
        L{IBatchedListener}: room messages from others are the session's
        rendering (by capabilities), appended to this turn's buffer.
        """
        if self._out is None or self.disconnecting:
            return None
        key = self.session.rendering
        return self._batcher, key, self._out, encoder(key)

    # -- input ---------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._firstData and data:
            self._firstData = False
            if data[0] == _TLS_HANDSHAKE:
                # A TLS client on a plain port: nothing it could read.
                self.session.leaveReason = "closed"
                self.abort()
                return
        self._lastSeen = self.clock.seconds()
        self._pinged = False
        super().dataReceived(data)
        framer = self.framer
        if len(framer) - framer.refused > self.factory.limits.recvQueue and not self.disconnecting:
            self.session.flooded()

    def lineAllowed(self) -> bool:
        return self.session.pacing.allowed()

    def lineTooLong(self) -> None:
        self.session.lineTooLong()

    def lineReceived(self, line: str) -> None:
        self.session.lineReceived(line)

    # -- ping ----------------------------------------------------------

    def pingCheck(self, now: float) -> None:
        """
        The factory's sweep: quiet for the ping interval, PING it; quiet
        for the timeout after that, close it.
        """
        if self.disconnecting:
            return
        factory = self.factory
        quiet = now - self._lastSeen
        if self._pinged:
            if quiet >= factory.pingInterval + factory.pingTimeout:
                self.session.pingTimedOut(quiet)
        elif quiet >= factory.pingInterval:
            self._pinged = True
            self.write(b"PING :" + factory.serverName.encode("ascii") + b"\r\n")

    # -- the session's sink --------------------------------------------

    def close(self) -> None:
        self.closeWith(None)

    def sendQueueOverflow(self) -> None:
        self.session.leaveReason = "too slow"
        super().sendQueueOverflow()

    def connectionLost(self, reason=None) -> None:
        self.session.connectionLost()
        super().connectionLost(reason)
        self.factory.unwatch(self)


class IRCFactory(LineFactory):
    """
    Builds L{IRCConnection}s on a Hub shared with the other gateways.

    @ivar population: shared with every gateway on the hub (write
        batching, the fan-out backlog, shutdown).
    @ivar policy: the connection caps; share the line protocol's so that
        C{--max-clients} and the per-address cap count every gateway.
    @ivar pingInterval: seconds of silence before the server sends PING.
    @ivar pingTimeout: seconds after that PING before the client is cut.
    """

    protocol = IRCConnection
    logName = "irc"
    pingInterval = 120.0
    pingTimeout = 60.0

    def __init__(
        self,
        hub,
        limits: ChatLimits | None = None,
        clock=None,
        population: Population | None = None,
        policy: ConnectionPolicy | None = None,
        serverName: str = SERVER_NAME,
    ) -> None:
        limits = limits if limits is not None else ChatLimits()
        # 512 bytes with CRLF, and the tags a client may put before them.
        limits = ChatLimits(**{**vars(limits), "maxLine": LINE_MAX - 2 + TAGS_MAX + 1})
        super().__init__(limits, clock)
        self.hub = hub
        self.population = population if population is not None else Population(self.clock)
        self.batcher = self.population.batcher
        self.backlog = self.population.backlog
        if policy is not None:
            self.policy = policy
        self.serverName = serverName
        self.created = time.time()
        self._watched: set[IRCConnection] = set()
        self._sweep: task.LoopingCall | None = None

    def watch(self, connection: IRCConnection) -> None:
        """
        Ping C{connection} when it is quiet: one sweep over every
        connection, every half of the shorter of the ping interval and
        timeout, rather than a timer per client.
        """
        self._watched.add(connection)
        if self._sweep is None:
            self._sweep = task.LoopingCall(self._pingSweep)
            self._sweep.clock = self.clock
            self._sweep.start(min(self.pingInterval, self.pingTimeout) / 2, now=False)

    def unwatch(self, connection: IRCConnection) -> None:
        self._watched.discard(connection)
        if not self._watched and self._sweep is not None:
            sweep, self._sweep = self._sweep, None
            if sweep.running:
                sweep.stop()

    def _pingSweep(self) -> None:
        now = self.clock.seconds()
        for connection in list(self._watched):
            connection.pingCheck(now)

    def buildProtocol(self, addr):
        proto = super().buildProtocol(addr)
        line = getattr(proto, "line", None)
        if line is not None:
            # A refusal (chatsvc.net.lineproto.Refusal): said the IRC way.
            proto.line = formatLine(None, "ERROR", f"Closing Link: {line}")
        return proto

    def closeAll(self, notice: str | None = None, grace: float | None = None):
        """
        Stop: every user of every gateway gets C{notice} (as IRC's ERROR
        here); fires once this factory's connections are gone.
        """
        self.population.shutdown(notice or "server shutting down")
        return super().closeAll(None, grace)
