"""
What every chatsvc TCP line service shares.

L{LineProtocol} is a C{Protocol} shaped like C{LineReceiver} (subclasses
implement L{LineProtocol.lineReceived} and get text), built on
L{chatsvc.net.framing.LineFramer}, with the contract's common rules:

  - lines end with LF (a CR before it is dropped), are decoded per line
    and have their controls neutralised (L{chatsvc.net.text.decodeLine});
  - an over-long line gets one C{error:} line and the connection stays;
  - replies keep request order: while anything holds input (slow work,
    flood control, a full send buffer) no further line is handled and
    the socket is not read; the lines already read wait in the framer;
  - half-close: every reply due is sent, then the connection is closed;
  - back-pressure: the protocol is the transport's streaming producer;
    while the transport's buffer is over its high-water mark the
    protocol stops reading its peer, and a peer whose unsent output
    passes the send-queue limit is aborted (a peer that never reads can
    otherwise grow the server without bound).

L{LineFactory} applies the connection policy (a total cap and a cap per
address, each refused with a clear line) and holds the limits.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter
from dataclasses import dataclass

from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from chatsvc.net.framing import DEFAULT_MAX_LINE, TOO_LONG, LineFramer
from chatsvc.net.oplog import peerName
from chatsvc.net.output import Backlog, WriteBatcher, appendOwn, isPlainTCP, sendNow, takeOutput
from chatsvc.net.text import decodeLine

log = Logger()

_TCP_NODELAY = getattr(socket, "TCP_NODELAY", None)


@dataclass
class Limits:
    """
    The limits a line service enforces.  Every one has a flag
    (L{chatsvc.net.options}); the defaults are explained in the README.

    @ivar maxLine: longest accepted line in bytes (without its ending).
    @ivar maxClients: total connections held at once; C{0} means no cap.
    @ivar maxPerAddress: connections from one IPv4 address or IPv6 /64;
        C{0} means no cap.
    @ivar limitLoopback: apply C{maxPerAddress} to loopback peers too
        (local bridges and proxies are exempt by default).
    @ivar sendQueue: bytes of unsent output, past the transport's own
        buffer, after which a peer that does not read is disconnected.
    @ivar idleTimeout: seconds without a complete line before a
        connection is closed; C{0} means never.
    @ivar closeGrace: seconds a closing connection gets to take its last
        lines before it is aborted.
    """

    maxLine: int = DEFAULT_MAX_LINE
    maxClients: int = 1000
    maxPerAddress: int = 16
    limitLoopback: bool = False
    sendQueue: int = 1024 * 1024
    idleTimeout: float = 0
    closeGrace: float = 5.0


def addressKey(address) -> str | None:
    """
    The key the per-address cap counts under: the IPv4 address, or the
    /64 network of an IPv6 address (one host usually owns a whole /64).
    IPv4-mapped IPv6 addresses count as their IPv4 address.  L{None} for
    peers without an IP address (UNIX sockets).
    """
    host = getattr(address, "host", None)
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ip.is_loopback:
            # "::/64" would not be recognised as loopback by isLoopback.
            return str(ip)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def isLoopback(key: str | None) -> bool:
    """
    Whether an L{addressKey} is on the loopback network.
    """
    if key is None:
        return False
    return ipaddress.ip_network(key, strict=False).is_loopback


class ConnectionPolicy:
    """
    Counts connections, total and per address, and says which to refuse.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.count = 0
        self.perAddress: Counter = Counter()

    def admit(self, address) -> tuple[str | None, str | None]:
        """
        Decide on a new connection from C{address}.

        @return: C{(refusal, key)}: C{refusal} is L{None} when the
            connection is admitted, else the line to send before closing;
            C{key} must be handed to L{release} when an admitted connection
            ends.
        """
        limits = self.limits
        if limits.maxClients and self.count >= limits.maxClients:
            return f"full: the server is full ({limits.maxClients} connections)", None
        key = addressKey(address)
        counted = key is not None and (limits.limitLoopback or not isLoopback(key))
        if counted and limits.maxPerAddress and self.perAddress[key] >= limits.maxPerAddress:
            return (
                f"error: too many connections from your address (limit {limits.maxPerAddress})",
                None,
            )
        self.count += 1
        if counted:
            self.perAddress[key] += 1
            return None, key
        return None, None

    def release(self, key: str | None) -> None:
        """
        An admitted connection has ended.
        """
        self.count -= 1
        if key is not None:
            self.perAddress[key] -= 1
            if self.perAddress[key] <= 0:
                del self.perAddress[key]


@implementer(interfaces.IHalfCloseableProtocol)
class Refusal(protocol.Protocol):
    """
    Say why a connection is refused, then close it politely.

    The line is followed by a half-close, and whatever the peer sends
    meanwhile is read and dropped: closing a socket with unread input
    makes the kernel send a reset, which can destroy the refusal line
    before the peer reads it.  After C{grace} seconds the connection is
    aborted whatever the peer does.
    """

    def __init__(self, line: str, clock, grace: float) -> None:
        #: The policy's refusal (L{ConnectionPolicy.admit}), as given:
        #: C{line} is what is sent, which a gateway may word its own way.
        self.refused = line
        self.line = line
        self.clock = clock
        self.grace = grace
        self._timer = None

    def connectionMade(self) -> None:
        self.transport.write(self.line.encode("utf-8") + b"\n")
        if hasattr(self.transport, "loseWriteConnection"):
            self.transport.loseWriteConnection()
        else:
            self.transport.loseConnection()
        self._timer = self.clock.callLater(self.grace, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        pass

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason=None) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


@implementer(interfaces.IHalfCloseableProtocol, interfaces.IPushProducer)
class LineProtocol(protocol.Protocol):
    """
    A line protocol with the contract's framing, ordering, half-close and
    back-pressure rules.  Subclasses implement L{lineReceived}.

    @ivar factory: the L{LineFactory} that built this protocol.
    @ivar framer: the L{LineFramer} of this connection.
    @ivar disconnecting: C{True} once the protocol decided to close.
    """

    factory: LineFactory
    framer: LineFramer
    _policyKey: str | None = None

    #: Bytes of one line to the text L{lineReceived} gets: by default
    #: UTF-8 with replacement and controls neutralised.
    decode = staticmethod(decodeLine)

    # Defaults on the class, so that an idle connection's instance dict
    # holds only what it changed (thousands of idle clients add up).
    disconnecting = False
    _holds: set | frozenset = frozenset()
    _handling = False
    _inputEnded = False
    _outputPaused = False
    _outputClosed = False
    _pausedBytes = 0
    _closeTimer = None
    _idleTimer = None

    def connectionMade(self) -> None:
        limits = self.factory.limits
        self.clock = self.factory.clock
        self.framer = LineFramer(limits.maxLine)
        self._lastActivity = self.clock.seconds()
        self._batcher = self.factory.batcher
        self._out: list | None = [] if self._batcher is not None else None
        self._direct = isPlainTCP(self.transport)
        self.factory.connections.add(self)
        self.transport.registerProducer(self, True)
        _tuneSocket(self.transport)
        if limits.idleTimeout:
            self._idleTimer = self.clock.callLater(limits.idleTimeout, self._idleCheck)
        log.info(
            "{service}: {peer} connected",
            service=serviceName(self.factory),
            peer=self.peer,
            event="connect",
        )

    @property
    def peer(self) -> str:
        """
        The peer's address as the operator log shows it (L{peerName});
        computed when asked, so that an idle connection holds no copy.
        """
        transport = self.transport
        return peerName(transport.getPeer() if transport is not None else None)

    # -- input ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.disconnecting:
            return
        self.framer.feed(data)
        self._handleLines()

    def _handleLines(self) -> None:
        """
        Hand queued lines to the subclass while nothing holds input.
        """
        if self._handling:
            return
        self._handling = True
        try:
            framer = self.framer
            trackIdle = self.factory.limits.idleTimeout
            while not self._holds and not self.disconnecting and len(framer):
                # A refused (over-long) line is not a request: it costs no
                # flood token and is answered at once, in its turn.
                if not (framer.refused and framer.nextIsRefused()) and not self.lineAllowed():
                    break
                line = framer.next()
                if trackIdle:
                    self._lastActivity = self.clock.seconds()
                if line is TOO_LONG:
                    self._logTooLong()
                    self.lineTooLong()
                else:
                    self.lineReceived(self.decode(line))
        finally:
            self._handling = False
        if self._inputEnded and not self._holds and not len(self.framer):
            if not self.disconnecting:
                self.inputEnded()

    def holdInput(self, reason: str) -> None:
        """
        Handle no further line and stop reading the socket until every
        reason given here has been released with L{releaseInput}.
        """
        holds = self._holds
        if not holds:
            if not self._inputEnded and self.transport is not None:
                self.transport.pauseProducing()
            if not isinstance(holds, set):
                holds = self._holds = set()
        holds.add(reason)

    def releaseInput(self, reason: str) -> None:
        """
        Drop one reason for holding input; when none is left, go on with
        the lines already read and read the socket again.
        """
        if reason not in self._holds:
            return
        self._holds.discard(reason)
        if self._holds or self.disconnecting:
            return
        if not self._inputEnded:
            self.transport.resumeProducing()
        self._handleLines()

    def isHeld(self, reason: str | None = None) -> bool:
        """
        Whether input is held (for C{reason}, or for any reason).
        """
        return bool(self._holds) if reason is None else reason in self._holds

    def lineAllowed(self) -> bool:
        """
        Whether the next line may be handled now (flood control).  A
        subclass that says no must hold input (L{holdInput}) and release
        it when the line may go; the line waits in the framer meanwhile.
        """
        return True

    def lineReceived(self, line: str) -> None:
        """
        Handle one line of text (decoded, neutralised, without its ending).
        """
        raise NotImplementedError()

    def _logTooLong(self) -> None:
        log.info(
            "{service}: {peer} sent a line over {limit} bytes, refused",
            service=serviceName(self.factory),
            peer=self.peer,
            limit=self.framer.maxLength,
            event="line-refused",
            reason="too-long",
        )

    def lineTooLong(self) -> None:
        """
        A line over the limit was refused; the default says so in one line.
        """
        self.sendLine(f"error: line too long (limit {self.framer.maxLength} bytes)")

    # -- half-close ---------------------------------------------------------

    def readConnectionLost(self) -> None:
        """
        The peer will send nothing more: finish what it asked, then close.
        """
        if self.disconnecting:
            self.transport.loseConnection()
            return
        self._inputEnded = True
        self.framer.finish()
        self._handleLines()

    def writeConnectionLost(self) -> None:
        if not self.disconnecting:
            self.transport.abortConnection()

    def inputEnded(self) -> None:
        """
        The peer half-closed and every line it sent has been answered:
        close (aborting after the grace if it does not take its replies).
        """
        self.closeWith(None)

    # -- output -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Write bytes, counting what piles up while the peer does not read;
        past the send-queue limit the connection is aborted.  Once the
        protocol decided to close, nothing more is written.

        With a write batcher the bytes join this turn's buffer, which a
        room's fan-out appends to directly as well
        (L{chatsvc.chat.fanout}), and L{flushOutput} does the counting.
        """
        if self.disconnecting:
            return
        out = self._out
        if out is None:
            if self._outputPaused and not self._countPaused(len(data)):
                return
            self.transport.write(data)
            return
        if not out:
            self._batcher.mark(self)
            out.append(data)
        elif out[-1].__class__ is tuple:
            appendOwn(out, data)
        else:
            out.append(data)
        self._batcher.pendingBytes += len(data)

    def _countPaused(self, size: int) -> bool:
        """
        C{size} more bytes while the peer is not reading: cut it past the
        send-queue limit (then C{False}: do not write them), else count
        them towards the shared backlog.
        """
        self._pausedBytes += size
        if self._pausedBytes > self.factory.limits.sendQueue:
            if not self._outputClosed:
                self.sendQueueOverflow()
            return False
        backlog = self.factory.backlog
        if backlog is not None:
            backlog.grew(self, size)
        return True

    def flushOutput(self) -> None:
        """
        Send what this turn's writes queued (see L{chatsvc.net.output}).
        What the room fan-out appended after the last flush before
        closing is dropped.
        """
        out = self._out
        if out:
            self.sendOutput(takeOutput(out))

    def sendOutput(self, data: bytes) -> None:
        """
        Send a turn's output, taken from the buffer already (by
        L{flushOutput}, or by a room group's flush, which takes the
        common case, one token for a whole turn, itself).
        """
        if self._outputClosed or not data:
            return
        if self._outputPaused:
            if self._countPaused(len(data)):
                self.transport.write(data)
        elif self._direct:
            sendNow(self.transport, data)
        else:
            self.transport.write(data)

    def sendLine(self, line: str) -> None:
        """
        Write one line of text.
        """
        self.write(line.encode("utf-8") + b"\n")

    def sendQueueOverflow(self) -> None:
        """
        The peer let more than the send-queue limit pile up: cut it off.
        """
        log.info(
            "{service}: disconnecting {peer}: send queue over {limit} bytes",
            service=serviceName(self.factory),
            peer=self.peer,
            limit=self.factory.limits.sendQueue,
            event="cut",
            reason="too-slow",
        )
        self.abort()

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full (called again on every further
        write, so this is idempotent).
        """
        if not self._outputPaused:
            self._outputPaused = True
            self._pausedBytes = 0
            self.holdInput("output")

    def resumeProducing(self) -> None:
        if self._outputPaused:
            self._outputPaused = False
            self._pausedBytes = 0
            if self.factory.backlog is not None:
                self.factory.backlog.drained(self)
            self.releaseInput("output")

    def stopProducing(self) -> None:
        pass

    # -- closing ------------------------------------------------------------

    def closeWith(self, line: str | None = None) -> None:
        """
        Send a last line, close, and abort if the peer has not taken it
        within the grace period.
        """
        if self.disconnecting:
            return
        if line is not None:
            self.sendLine(line)
        self.disconnecting = True
        self.framer.clear()
        # A transport never closes while a streaming producer it paused is
        # registered (loseConnection waits for it to be unregistered).
        self.flushOutput()
        self._outputClosed = True
        self.transport.unregisterProducer()
        if self._direct and not self._inputEnded:
            # Closing a socket with unread input makes the kernel send a
            # reset, which can destroy the last line before the peer reads
            # it.  So: half-close, read and drop until the peer closes too
            # (readConnectionLost), abort after the grace period.
            self.transport.resumeProducing()
            self.transport.loseWriteConnection()
        else:
            self.transport.loseConnection()
        self._closeTimer = self.clock.callLater(
            self.factory.limits.closeGrace, self.transport.abortConnection
        )

    def abort(self) -> None:
        """
        Drop the connection now, unsent output included.
        """
        self.disconnecting = True
        self._outputClosed = True
        self.framer.clear()
        if self._out:
            self._out.clear()
        self.transport.abortConnection()

    def _idleCheck(self) -> None:
        self._idleTimer = None
        timeout = self.factory.limits.idleTimeout
        idle = self.clock.seconds() - self._lastActivity
        if idle >= timeout:
            log.info(
                "{service}: disconnecting {peer}: idle for {timeout:g} seconds",
                service=serviceName(self.factory),
                peer=self.peer,
                timeout=timeout,
                event="cut",
                reason="idle-timeout",
            )
            self.idleTimedOut()
        else:
            self._idleTimer = self.clock.callLater(timeout - idle, self._idleCheck)

    def idleTimedOut(self) -> None:
        """
        Nothing was received for the idle timeout.
        """
        self.closeWith(f"error: idle for {self.factory.limits.idleTimeout:g} seconds, closing")

    def connectionLost(self, reason=None) -> None:
        self.disconnecting = True
        self.framer.clear()
        self._out = None
        if self.factory.backlog is not None:
            self.factory.backlog.forget(self)
        for timer in (self._closeTimer, self._idleTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._closeTimer = self._idleTimer = None
        if self in self.factory.connections:
            log.info(
                "{service}: {peer} disconnected",
                service=serviceName(self.factory),
                peer=self.peer,
                event="disconnect",
            )
            self.factory.connections.discard(self)
            self.factory.policy.release(self._policyKey)
            self.factory.connectionGone(self)


def serviceName(factory) -> str:
    """
    The service a factory serves, as its log lines begin: its C{logName}
    if it has one, else its module's (C{chat} for C{chatsvc.chat.*},
    C{tsserv} for C{chatsvc.tsserv}).
    """
    name = getattr(factory, "logName", None)
    if name:
        return name
    parts = type(factory).__module__.split(".")
    return parts[1] if parts[0] == "chatsvc" and len(parts) > 1 else parts[-1]


def _tuneSocket(transport) -> None:
    """
    TCP_NODELAY (replies are small and latency matters) and keepalive
    (a peer that vanished is found) on TCP transports; nothing elsewhere.
    """
    if not interfaces.ITCPTransport.providedBy(transport):
        return
    try:
        transport.setTcpNoDelay(True)
        transport.setTcpKeepAlive(True)
        handle = transport.getHandle()
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            option = getattr(socket, name, None)
            if option is not None:
                handle.setsockopt(socket.IPPROTO_TCP, option, value)
    except (OSError, AttributeError):
        pass


class LineFactory(protocol.Factory):
    """
    Builds L{LineProtocol}s under a L{ConnectionPolicy}.

    @ivar limits: the L{Limits} in force.
    @ivar clock: the reactor (or a C{task.Clock}) for timers.
    """

    protocol = LineProtocol
    noisy = False

    #: Coalesce each connection's writes per reactor turn and hold senders
    #: while output is backed up (L{chatsvc.net.output}); for fan-out services.
    batchWrites = False
    #: Bytes of produced-but-untaken output over which senders wait.
    backlogLimit = 4 * 1024 * 1024
    #: Seconds a backed-up peer may hold senders before it counts as slow.
    backlogPatience = 2.0

    def __init__(self, limits: Limits | None = None, clock=None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.limits = limits if limits is not None else Limits()
        self.clock = clock
        self.policy = ConnectionPolicy(self.limits)
        self.connections: set[LineProtocol] = set()
        self._gone: list = []
        self.batcher: WriteBatcher | None = None
        self.backlog: Backlog | None = None
        if self.batchWrites:
            self.batcher = WriteBatcher(clock)
            self.backlog = Backlog(clock, self.batcher, self.backlogLimit, self.backlogPatience)

    def connectionGone(self, proto: LineProtocol) -> None:
        """
        C{proto} has disconnected; wakes L{closeAll} when the last one goes.
        """
        if not self.connections:
            waiting, self._gone = self._gone, []
            for d in waiting:
                d.callback(None)

    def closeAll(self, notice: str | None = None, grace: float | None = None):
        """
        Close every connection: send C{notice}, let each take its output
        for up to C{grace} seconds, then abort the rest.

        @return: a Deferred that fires once every connection is gone.
        """
        from twisted.internet import defer

        if grace is None:
            grace = self.limits.closeGrace
        for proto in list(self.connections):
            proto.closeWith(notice)
        if not self.connections:
            return defer.succeed(None)
        d = defer.Deferred()
        self._gone.append(d)

        def abortRest():
            for proto in list(self.connections):
                proto.transport.abortConnection()

        timer = self.clock.callLater(grace, abortRest)

        def cancelTimer(result):
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(cancelTimer)

    def buildProtocol(self, addr):
        refusal, key = self.policy.admit(addr)
        if refusal is not None:
            log.info(
                "{service}: refused {peer}: {line}",
                service=serviceName(self),
                peer=peerName(addr),
                line=refusal,
                event="refused",
                reason="full" if refusal.startswith("full:") else "per-address",
            )
            return Refusal(refusal, self.clock, self.limits.closeGrace)
        proto = super().buildProtocol(addr)
        proto._policyKey = key
        return proto
