"""
The native line protocol of the chat: LF-framed lines on TCP (or TLS, or
a UNIX socket) carried to a L{ChatSession}.

The session (L{chatsvc.chat.session}) is the chat; this adapter adds
only what belongs to a byte stream: LF framing with its length limit, the
receive queue of complete lines waiting for the flood rate, the send
queue of a peer that does not read, and the first bytes of a TLS client
that came to a plain port.
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from chatsvc.chat import events
from chatsvc.chat.events import JSON, TEXT, encoder
from chatsvc.chat.interfaces import IBatchedListener
from chatsvc.chat.rooms import Hub
from chatsvc.chat.session import (
    DEFAULT_ROOM,
    HELP,
    ChatLimits,
    ChatSession,
    IChatSink,
    Population,
    SessionListener,
)
from chatsvc.net.lineproto import LineFactory, LineProtocol
from chatsvc.net.text import decodeUTF8

__all__ = ["ChatLineProtocol", "ChatFactory", "ChatLimits", "DEFAULT_ROOM", "HELP"]

log = Logger()

#: The first byte of a TLS record carrying a handshake (a ClientHello).
_TLS_HANDSHAKE = 0x16


@implementer(IChatSink, IBatchedListener)
class ChatLineProtocol(SessionListener, LineProtocol):
    """
    One connection speaking the native line protocol: the sink of one
    L{ChatSession}.
    """

    factory: ChatFactory
    session: ChatSession
    _firstData = True

    # Not neutralised on the way in: a refused name names the character
    # it was refused for (U+202E, not U+FFFD).  The hub makes relayed
    # text harmless, and replies are neutralised (L{replies.reply}).
    decode = staticmethod(decodeUTF8)

    #: IChatSink: LF ends every line; events are written as rendered.
    ending = b"\n"
    renderings = {TEXT: TEXT, JSON: JSON, events.SENT: events.SENT}

    def connectionMade(self) -> None:
        super().connectionMade()
        factory = self.factory
        self.maxLine = self.framer.maxLength
        self.session = ChatSession(
            factory.hub, self, factory.limits, self.clock, factory.population, factory.gateways
        )

    # -- IChatSink ------------------------------------------------------------

    def close(self) -> None:
        self.closeWith(None)

    def deliver(self, event: events.Event) -> None:
        """
        The hub's fan-out for this connection: L{ChatSession.deliver} with
        the batched write inlined.  It runs once per recipient of every
        event, and a call less per recipient is worth about a tenth of the
        fan-out's instructions (benchmarks/RESULTS.md).
        """
        session = self.session
        origin = event.origin
        if origin is not None and origin == session._ownInText:
            session.deliverOwn(event)
            return
        key = session._rendering
        data = event.rendered.get(key) or event.encoded(key)
        out = self._out
        if out and out[-1].__class__ is bytes and not self.disconnecting:
            out.append(data)
            self._batcher.pendingBytes += len(data)
        else:
            self.write(data)

    def fanout(self):
        """
        L{IBatchedListener}: room messages from others are this
        session's rendering, appended to this turn's buffer.
        """
        if self._out is None or self.disconnecting:
            return None
        return self._batcher, self.session._rendering, self._out, encoder(self.session._rendering)

    # -- input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._firstData and data:
            self._firstData = False
            if data[0] == _TLS_HANDSHAKE:
                self.session.wrongProtocol("TLS")
                return
        super().dataReceived(data)
        framer = self.framer
        # Refused (over-long) lines are not requests: they do not count.
        if len(framer) - framer.refused > self.factory.limits.recvQueue and not self.disconnecting:
            self.session.flooded()

    def lineAllowed(self) -> bool:
        return self.session.pacing.allowed()

    def lineTooLong(self) -> None:
        self.session.lineTooLong(self.framer.maxLength)

    def lineReceived(self, line: str) -> None:
        self.session.lineReceived(line)

    # -- leaving --------------------------------------------------------------------

    def sendQueueOverflow(self) -> None:
        self.session.leaveReason = "too slow"
        super().sendQueueOverflow()

    def idleTimedOut(self) -> None:
        self.session.idleTimedOut(self.factory.limits.idleTimeout)

    def shutdown(self, notice: str) -> None:
        """
        The server is stopping: a last line, then close.
        """
        self.session.shutdown(notice)

    def connectionLost(self, reason=None) -> None:
        self.session.connectionLost()
        super().connectionLost(reason)


class ChatFactory(LineFactory):
    """
    Builds L{ChatLineProtocol}s around one L{Hub}.

    @ivar population: what the sessions of every gateway on the hub share
        (write batching, the fan-out backlog, the shutdown flag).
    @ivar gateways: where other protocols are served (C{"irc"}, C{"web"}:
        an address for people), named to a client of theirs that comes
        here by mistake.
    """

    protocol = ChatLineProtocol

    def __init__(
        self,
        hub: Hub,
        limits: ChatLimits | None = None,
        clock=None,
        population: Population | None = None,
    ) -> None:
        super().__init__(limits if limits is not None else ChatLimits(), clock)
        self.hub = hub
        self.population = population if population is not None else Population(self.clock)
        self.batcher = self.population.batcher
        self.backlog = self.population.backlog
        self.gateways: dict[str, str] = {}

    @property
    def shuttingDown(self) -> bool:
        return self.population.shuttingDown

    def closeAll(self, notice: str | None = None, grace: float | None = None):
        """
        Stop: every user of every gateway gets C{notice} as a last line in
        its own format, nobody hears the others leave; fires once this
        factory's connections are gone.
        """
        self.population.shutdown(notice or "server shutting down")
        return super().closeAll(None, grace)
