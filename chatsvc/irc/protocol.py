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

from twisted.logger import Logger

from chatsvc.chat.lines import ChatLimits
from chatsvc.chat.session import Population
from chatsvc.irc.session import IRCSession
from chatsvc.irc.wire import LINE_MAX, TAGS_MAX, decodeIRC, formatLine
from chatsvc.net.lineproto import ConnectionPolicy, LineFactory, LineProtocol

log = Logger()

#: The first byte of a TLS record carrying a handshake (a ClientHello).
_TLS_HANDSHAKE = 0x16

#: How IRC names this server in numerics.
SERVER_NAME = "chatsvc"


class IRCConnection(LineProtocol):
    """
    One IRC client's connection: the sink of its L{IRCSession}.
    """

    factory: IRCFactory
    session: IRCSession
    decode = staticmethod(decodeIRC)
    _firstData = True
    _pingTimer = None
    _pinged = False

    def connectionMade(self) -> None:
        super().connectionMade()
        factory = self.factory
        self._lastSeen = self.clock.seconds()
        self.session = IRCSession(
            factory.hub,
            self,
            factory.limits,
            self.clock,
            factory.population,
            factory.serverName,
            factory.created,
        )
        self._pingTimer = self.clock.callLater(factory.pingInterval, self._pingCheck)

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

    def _pingCheck(self) -> None:
        """
        Quiet for the ping interval: PING it; quiet for the timeout after
        that: close it.
        """
        self._pingTimer = None
        if self.disconnecting:
            return
        factory = self.factory
        quiet = self.clock.seconds() - self._lastSeen
        if self._pinged and quiet >= factory.pingInterval + factory.pingTimeout:
            self.session.pingTimedOut(quiet)
            return
        if not self._pinged and quiet >= factory.pingInterval:
            self._pinged = True
            self.write(formatLine(None, "PING", factory.serverName).encode("ascii") + b"\r\n")
            delay = factory.pingTimeout
        elif self._pinged:
            delay = factory.pingInterval + factory.pingTimeout - quiet
        else:
            delay = factory.pingInterval - quiet
        self._pingTimer = self.clock.callLater(delay, self._pingCheck)

    # -- the session's sink --------------------------------------------

    def close(self) -> None:
        self.closeWith(None)

    def sendQueueOverflow(self) -> None:
        self.session.leaveReason = "too slow"
        super().sendQueueOverflow()

    def connectionLost(self, reason=None) -> None:
        timer, self._pingTimer = self._pingTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.session.connectionLost()
        super().connectionLost(reason)


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
