"""
One browser's chat over a WebSocket: the sink of a L{ChatSession}.

Each text message from the browser is one line of the line protocol
(the login, plain text, C{/commands}); each message to it is one JSON
object of the JSON rendering.  The WebSocket handshake and the browser's
frames are Twisted's (C{twisted.web.websocket}, on wsproto); what we
write, we frame ourselves: a server's frame is the same bytes for every
recipient but for a 2-10 byte header, so the fan-out writes the event's
shared rendering behind a small header (C{writeSequence}, no copy), not
one wsproto encoding per recipient.

The line protocol's limits hold here too: a message over the line limit
is refused with an error object and the connection stays; a message
that grows past a few times the limit before it ends (wsproto and
Twisted reassemble without bound) closes the socket with 1009; flood
pacing holds the socket unread; a peer that does not read is cut at the
send-queue limit and leaves as C{too slow}; the fan-out backlog is the
one every gateway shares.  The server pings a quiet browser and closes
one that does not answer.
"""

from __future__ import annotations

import struct
from collections import deque
from functools import partial

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from wsproto.utilities import LocalProtocolError
from zope.interface import implementer

from chatsvc.chat import events
from chatsvc.chat.events import JSON, SENT, TEXT
from chatsvc.chat.interfaces import IBatchedListener
from chatsvc.chat.session import ChatSession, IChatSink, SessionListener
from chatsvc.net.oplog import peerName
from chatsvc.net.output import appendOwn, isPlainTCP, sendNow, takeOutput

log = Logger()

#: The renderings a WebSocket writes: the core's, without a line ending
#: (a WebSocket message is framed already).
FRAMES = {fmt: "web-" + fmt for fmt in (TEXT, JSON, SENT)}


def registerFrames() -> None:
    """
    Register L{FRAMES} (again: registering the same rendering twice is
    harmless), when a gateway is made.
    """
    for fmt, name in FRAMES.items():
        events.register(name, events.RENDERINGS[fmt].render, ending=b"")


registerFrames()


def _frame(key, event: events.Event) -> bytes:
    """
    A WebSocket text frame (header and payload) of C{event} in rendering
    C{key}: made once per event and rendering, for the room fan-out.
    """
    frameKey = ("frame", key)
    frame = event.rendered.get(frameKey)
    if frame is None:
        data = event.encoded(key)
        size = len(data)
        frame = event.rendered[frameKey] = (
            _HEADERS[size] if size < 126 else frameHeader(size)
        ) + data
    return frame


#: WebSocket close codes (RFC 6455 section 7.4.1).
GOING_AWAY = 1001
UNSUPPORTED = 1003
TOO_BIG = 1009
NORMAL = 1000


def frameHeader(length: int) -> bytes:
    """
    The header of an unmasked, final text frame of C{length} bytes.
    """
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


#: The headers of short frames, made once.
_HEADERS = [bytes((0x81, n)) for n in range(126)]


@implementer(IChatSink, IBatchedListener, IPushProducer)
class WebChat(SessionListener):
    """
    One WebSocket connection (a C{twisted.web.websocket}
    C{WebSocketProtocol}), the sink of its session.

    @ivar gateway: the L{chatsvc.web.site.WebGateway} it belongs to.
    @ivar session: its L{ChatSession}, made once the handshake is done.
    """

    ending = b""
    renderings = FRAMES

    session = None
    _transport = None
    _closing = False
    _closeTimer = None
    _pingTimer = None
    _pinged = False
    _paused = False
    _pausedBytes = 0
    _unfinished = 0
    _outputClosed = False
    _out: list | tuple = ()

    def __init__(self, gateway, request) -> None:
        self.gateway = gateway
        self.limits = gateway.limits
        self.maxLine = self.limits.maxLine
        self.clock = gateway.clock
        self.channel = request.channel
        self.peer = peerName(self.channel.transport.getPeer())
        self.waiting: deque[str] = deque()
        self.holds: set[str] = set()

    # -- twisted.web.websocket.WebSocketProtocol -------------------------

    def negotiationStarted(self, transport) -> None:
        self.ws = transport

    def negotiationFinished(self) -> None:
        gateway, channel = self.gateway, self.channel
        self._transport = channel.transport
        self._direct = isPlainTCP(channel.transport)
        self._batcher = gateway.population.batcher
        self._out: list[bytes] = []
        # The HTTP channel's idle timeout would cut a quiet chat: the ping
        # does that job now.  Its producer slot tells us when the
        # socket's send buffer is full (pauseProducing) and empty again.
        channel.setTimeout(None)
        channel.registerProducer(self, True)
        received = channel.dataReceived

        def dataReceived(data: bytes) -> None:
            # Bytes since the last complete message (textMessageReceived
            # resets the count): checked after the read is parsed, so a
            # read of many small whole messages is no "message too big";
            # a message without end is cut once it passes maxPending (by
            # at most one read).
            self._lastSeen = self.clock.seconds()
            self._pinged = False
            self._unfinished += len(data)
            received(data)
            if self._unfinished > gateway.maxPending and not self._closing:
                self._tooBig()

        channel.dataReceived = dataReceived
        self._lastSeen = self.clock.seconds()
        gateway.connections.add(self)
        self.session = ChatSession(
            gateway.hub, self, self.limits, self.clock, gateway.population, gateway.gateways
        )
        self.session._setFormat(JSON)
        self._pingTimer = self.clock.callLater(gateway.pingInterval, self._pingCheck)
        log.info("web: {peer} connected", peer=self.peer, event="connect")

    def textMessageReceived(self, message: str) -> None:
        self._unfinished = 0
        if self._closing or self.session is None:
            return
        self.waiting.append(message)
        if len(self.waiting) > self.limits.recvQueue:
            self.session.flooded()
            return
        self._handle()

    def bytesMessageReceived(self, data) -> None:
        self._unfinished = 0
        self._logCut("binary", "sent a binary message")
        self.session.leaveReason = "closed"
        self._closeWith(UNSUPPORTED, "text messages only")

    def pongReceived(self, payload: bytes) -> None:
        pass  # any data counts as activity (dataReceived above)

    def connectionLost(self, reason=None) -> None:
        self._closing = True
        self.waiting.clear()
        self._out = ()
        for timer in (self._pingTimer, self._closeTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._pingTimer = self._closeTimer = None
        self.gateway.population.backlog.forget(self)
        if self.session is not None:
            self.session.connectionLost()
        if self in self.gateway.connections:
            log.info("web: {peer} disconnected", peer=self.peer, event="disconnect")
            self.gateway.chatGone(self)
        self.channel.releasePolicy()

    # -- input -----------------------------------------------------------

    def _handle(self) -> None:
        session = self.session
        maxLine = self.maxLine
        while self.waiting and not self.holds and not session.closed:
            if len(self.waiting[0].encode("utf-8")) > maxLine:
                # Refused in its turn; it costs no flood token.
                self.waiting.popleft()
                session.lineTooLong(maxLine)
            elif session.pacing.allowed():
                session.lineReceived(self.waiting.popleft())
            # else: held; releaseInput() goes on

    def _tooBig(self) -> None:
        limit = self.gateway.maxPending
        self._logCut("too-big", f"a message over {limit} bytes")
        if self.session is not None:
            self.session.leaveReason = "closed"
        self._unfinished = 0
        self._closeWith(TOO_BIG, f"message over {limit} bytes")

    # -- IChatSink -------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        One JSON object as one text frame, queued for this turn's flush
        (the population's write batcher: one send per connection per
        turn, as on the line protocol).  While the socket's buffer is
        full, what is written counts towards the send queue (past it the
        peer is cut as too slow) and the shared fan-out backlog.
        """
        if self._closing:
            return
        out = self._out
        size = len(data)
        header = _HEADERS[size] if size < 126 else frameHeader(size)
        if not out:
            self._batcher.mark(self)
        elif out[-1].__class__ is tuple:
            appendOwn(out, header + data)
            self._batcher.pendingBytes += size
            return
        out.append(header)
        out.append(data)
        self._batcher.pendingBytes += size

    def flushOutput(self) -> None:
        """
        Send what this turn's writes (and the room fan-out, which appends
        whole frames: L{fanout}) queued; the batcher calls this.  While
        the socket's buffer is full what is sent counts towards the send
        queue and the shared backlog.  What was appended after the last
        flush before closing is dropped.
        """
        out = self._out
        if out:
            self.sendOutput(takeOutput(out))

    def sendOutput(self, data: bytes) -> None:
        """
        Send a turn's output, taken from the buffer already (by
        L{flushOutput}, or by a room group's flush).
        """
        if (
            not data
            or self._outputClosed
            or self._transport is None
            or getattr(self._transport, "disconnected", False)
        ):
            return
        if self._paused:
            self._pausedBytes += len(data)
            if self._pausedBytes > self.limits.sendQueue:
                self._tooSlow()
                return
            self.gateway.population.backlog.grew(self, len(data))
            self._transport.write(data)
        elif self._direct:
            sendNow(self._transport, data)
        else:
            self._transport.write(data)

    def fanout(self):
        """
        L{IBatchedListener}: room messages from others are whole frames
        of this session's rendering, appended to this turn's buffer.
        """
        if self._closing or self.session is None or not isinstance(self._out, list):
            return None
        key = self.session._rendering
        return self._batcher, key, self._out, partial(_frame, key)

    def holdInput(self, reason: str) -> None:
        if not self.holds and not self._closing:
            self._transport.pauseProducing()
        self.holds.add(reason)

    def releaseInput(self, reason: str) -> None:
        if reason not in self.holds:
            return
        self.holds.discard(reason)
        if not self.holds and not self._closing:
            self._transport.resumeProducing()
            self._handle()

    def isHeld(self, reason: str | None = None) -> bool:
        """
        Whether input is held (for C{reason}; C{output}: the socket's send
        buffer is full), as the metrics ask of every connection.
        """
        if reason == "output":
            return self._paused
        return reason in self.holds if reason is not None else bool(self.holds)

    def close(self) -> None:
        """
        The session said its last line: close the socket once the browser
        has it (abort after the grace period).
        """
        self._closeWith(NORMAL, "")

    def deliver(self, event: events.Event) -> None:
        """
        The hub's fan-out for this browser (L{ChatSession.deliver} with
        L{write} inlined: this runs once per recipient of every event):
        everything, its own messages included, in JSON.
        """
        session = self.session
        origin = event.origin
        if origin is not None and origin == session._ownInText:
            session.deliverOwn(event)
            return
        key = session._rendering
        data = event.rendered.get(key) or event.encoded(key)
        out = self._out
        if self._closing or not out or out[-1].__class__ is not bytes:
            self.write(data)
            return
        size = len(data)
        out.append(_HEADERS[size] if size < 126 else frameHeader(size))
        out.append(data)
        self._batcher.pendingBytes += size

    # -- output back-pressure (IPushProducer, via the HTTP channel) -------

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            self._pausedBytes = 0

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._pausedBytes = 0
            self.gateway.population.backlog.drained(self)

    def stopProducing(self) -> None:
        pass

    # -- closing -----------------------------------------------------------

    def _closeWith(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self.waiting.clear()
        if self._transport is None:
            return
        self.flushOutput()  # the last lines go before the close frame
        self._outputClosed = True
        self._transport.resumeProducing()  # read the browser's close frame
        try:
            self.ws.loseConnection(code, reason)
        except LocalProtocolError:
            # wsproto closed already (the browser broke the protocol).
            self._transport.loseConnection()
        self._closeTimer = self.clock.callLater(
            self.limits.closeGrace, self._transport.abortConnection
        )

    def abort(self) -> None:
        """
        Drop the connection now.
        """
        self._closing = True
        self._out = ()
        if self._transport is not None:
            self._transport.abortConnection()

    def _tooSlow(self) -> None:
        self._logCut("too-slow", f"send queue over {self.limits.sendQueue} bytes")
        self.session.leaveReason = "too slow"
        self._closing = True
        self._out = ()
        self._transport.abortConnection()

    def _pingCheck(self) -> None:
        """
        Quiet for the ping interval: ping; quiet for the timeout after
        that: close.
        """
        self._pingTimer = None
        if self._closing:
            return
        gateway = self.gateway
        quiet = self.clock.seconds() - self._lastSeen
        if self._pinged and quiet >= gateway.pingInterval + gateway.pingTimeout:
            self._logCut("ping-timeout", f"no answer to a ping in {quiet:g} seconds")
            self.session.leaveReason = "ping timeout"
            self._closeWith(GOING_AWAY, "ping timeout")
            return
        if not self._pinged and quiet >= gateway.pingInterval:
            self._pinged = True
            self.ws.ping(b"chatsvc")
            delay = gateway.pingTimeout
        elif self._pinged:
            delay = gateway.pingInterval + gateway.pingTimeout - quiet
        else:
            delay = gateway.pingInterval - quiet
        self._pingTimer = self.clock.callLater(delay, self._pingCheck)

    def _logCut(self, reason: str, why: str) -> None:
        log.info(
            "web: disconnecting {peer}: {why}", peer=self.peer, why=why, event="cut", reason=reason
        )
