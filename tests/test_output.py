"""
Tests for L{chatsvc.net.output}: write batching, direct sends and the backlog
that holds senders while fan-out output is backed up.
"""

from __future__ import annotations

from twisted.internet import defer, error, protocol, reactor, tcp
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial import unittest
from zope.interface import directlyProvides

from chatsvc.net.lineproto import LineFactory, LineProtocol
from chatsvc.net.output import Backlog, WriteBatcher, isPlainTCP, sendNow
from chatsvc.net.twistedcompat import writeIdle
from tests.support import connect, waitFor, withDeadline


class Recorder:
    """
    A connection as L{WriteBatcher} sees it: counts its flushes.
    """

    def __init__(self) -> None:
        self.flushes = 0

    def flushOutput(self) -> None:
        self.flushes += 1


class WriteBatcherTests(unittest.SynchronousTestCase):
    def test_oneFlushPerTurn(self) -> None:
        """
        However often connections are marked in a turn, one call is
        scheduled and each marked connection is flushed at the next turn.
        """
        clock = Clock()
        batcher = WriteBatcher(clock)
        a, b = Recorder(), Recorder()
        batcher.mark(a)
        batcher.mark(b)
        batcher.pendingBytes = 10
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual((a.flushes, b.flushes), (0, 0))
        clock.advance(0)
        self.assertEqual((a.flushes, b.flushes), (1, 1))
        self.assertEqual(batcher.pendingBytes, 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_afterFlush(self) -> None:
        """
        C{afterFlush} callbacks run once, after the connections are flushed.
        """
        clock = Clock()
        batcher = WriteBatcher(clock)
        a = Recorder()
        seen = []
        batcher.mark(a)
        batcher.afterFlush(lambda: seen.append(a.flushes))
        clock.advance(0)
        clock.advance(0)
        self.assertEqual(seen, [1])


class FakeSocket:
    """
    A socket whose C{send} takes at most C{takes} bytes, or raises
    C{takes} if it is an exception.
    """

    def __init__(self, takes: int | Exception) -> None:
        self.takes = takes
        self.sent: list[bytes] = []
        self.shutdowns: list[int] = []

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return -1

    def send(self, data) -> int:
        if isinstance(self.takes, Exception):
            raise self.takes
        taken = bytes(data[: self.takes])
        if taken:
            self.sent.append(taken)
        return len(taken)

    def shutdown(self, how: int) -> None:
        self.shutdowns.append(how)


def fakeTCP(takes) -> tcp.Connection:
    """
    A connected Twisted TCP transport, real but for its socket (a
    L{FakeSocket}) and its reactor: L{sendNow} sees Twisted's own buffer
    and flags, and C{doWrite} sends what Twisted buffered.
    """
    transport = tcp.Connection(FakeSocket(takes), protocol.Protocol(), reactor=MemoryReactor())
    transport.connected = True
    return transport


class SendNowTests(unittest.SynchronousTestCase):
    def test_direct(self) -> None:
        """
        With nothing buffered, the bytes go straight to the socket.
        """
        transport = fakeTCP(takes=100)
        sendNow(transport, b"hello")
        self.assertEqual(transport.socket.sent, [b"hello"])
        self.assertTrue(writeIdle(transport))

    def test_restBuffered(self) -> None:
        """
        What the kernel does not take goes to the transport, and from then
        on everything does, so the order holds.
        """
        transport = fakeTCP(takes=2)
        sendNow(transport, b"hello")
        sendNow(transport, b"world")
        self.assertEqual(transport.socket.sent, [b"he"])
        transport.socket.takes = 100
        transport.doWrite()
        self.assertEqual(transport.socket.sent, [b"he", b"lloworld"])

    def test_wouldBlock(self) -> None:
        """
        EAGAIN: everything goes to the transport, to be sent when writable.
        """
        transport = fakeTCP(takes=BlockingIOError(11, "again"))
        sendNow(transport, b"hello")
        self.assertFalse(writeIdle(transport))
        transport.socket.takes = 100
        transport.doWrite()
        self.assertEqual(transport.socket.sent, [b"hello"])

    def test_brokenPipe(self) -> None:
        """
        Another error: the transport's own write path finds it and closes.
        """
        transport = fakeTCP(takes=BrokenPipeError(32, "pipe"))
        sendNow(transport, b"hello")
        self.assertIsInstance(transport.doWrite(), error.ConnectionLost)

    def test_closing(self) -> None:
        """
        A closing, closed or half-closed transport is never written to
        directly.
        """

        def shutWrites(transport):
            transport.loseWriteConnection()
            transport.doWrite()
            self.assertEqual(transport.socket.shutdowns, [1])

        for what, close in (
            ("closing", lambda transport: transport.loseConnection()),
            ("closed", lambda transport: setattr(transport, "connected", False)),
            ("write side shut", shutWrites),
        ):
            transport = fakeTCP(takes=100)
            close(transport)
            sendNow(transport, b"x")
            self.assertEqual(transport.socket.sent, [], what)


class IsPlainTCPTests(unittest.SynchronousTestCase):
    """
    L{isPlainTCP}: whose sockets L{sendNow} may write to.
    """

    def test_plain(self) -> None:
        self.assertTrue(isPlainTCP(fakeTCP(takes=100)))

    def test_notTCP(self) -> None:
        self.assertFalse(isPlainTCP(StringTransport()))

    def test_tls(self) -> None:
        """
        A TCP transport carrying TLS (it provides C{ISSLTransport}, as
        C{startTLS} makes it) is not plain: raw bytes would bypass TLS.
        """
        transport = fakeTCP(takes=100)
        directlyProvides(transport, ISSLTransport)
        self.assertFalse(isPlainTCP(transport))

    def test_unknownInternals(self) -> None:
        """
        A Twisted whose transports lack the buffer attributes that
        L{writeIdle} reads gets no direct sends (every write goes through
        C{transport.write}), rather than an C{AttributeError} per line.
        """
        transport = fakeTCP(takes=100)
        del transport._tempDataLen
        self.assertFalse(isPlainTCP(transport))


class Echo(LineProtocol):
    """
    Answers C{N} with N numbered lines, anything else with itself.
    """

    def lineReceived(self, line: str) -> None:
        if line.isdigit():
            for i in range(int(line)):
                self.sendLine("%08d" % i + "x" * 200)
        else:
            self.sendLine(line)


class BatchingFactory(LineFactory):
    protocol = Echo
    batchWrites = True


class BatchedProtocolTests(unittest.SynchronousTestCase):
    def connect(self):
        clock = Clock()
        factory = BatchingFactory(clock=clock)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return clock, factory, proto, transport

    def test_joinedPerTurn(self) -> None:
        """
        The lines written in one turn reach the transport in one write, in
        order, at the next turn; a transport that is not plain TCP is
        written through C{transport.write}.
        """
        clock, factory, proto, transport = self.connect()
        self.assertFalse(isPlainTCP(transport))
        writes = []
        transport.write = lambda data: writes.append(data)
        proto.dataReceived(b"a\nb\nc\n")
        self.assertEqual(writes, [])
        self.assertEqual(factory.batcher.pendingBytes, 6)
        clock.advance(0)
        self.assertEqual(writes, [b"a\nb\nc\n"])

    def test_closeFlushesFirst(self) -> None:
        """
        A last line queued with C{closeWith} is written before the close.
        """
        clock, factory, proto, transport = self.connect()
        proto.dataReceived(b"hello\n")
        proto.closeWith("bye")
        self.assertEqual(transport.value(), b"hello\nbye\n")
        self.assertTrue(transport.disconnecting)

    def test_abortDropsQueued(self) -> None:
        """
        An aborted connection's queued output is dropped, never written.
        """
        clock, factory, proto, transport = self.connect()
        proto.dataReceived(b"hello\n")
        proto.abort()
        clock.advance(0)
        self.assertEqual(transport.value(), b"")

    def test_halfCloseFlushes(self) -> None:
        """
        A peer that half-closes gets its replies before the close.
        """
        clock, factory, proto, transport = self.connect()
        proto.dataReceived(b"one\ntwo")
        proto.readConnectionLost()
        self.assertEqual(transport.value(), b"one\ntwo\n")


class BacklogTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.batcher = WriteBatcher(self.clock)
        self.backlog = Backlog(self.clock, self.batcher, limit=1000, patience=2.0)
        self.released = []

    def release(self, name):
        return lambda: self.released.append(name)

    def test_overCountsPendingAndBackedUp(self) -> None:
        """
        Both this turn's unflushed bytes and the bytes waiting for full
        transports count toward the limit.
        """
        self.assertFalse(self.backlog.isOver())
        self.batcher.pendingBytes = 600
        self.backlog.grew("reader", 500)
        self.assertTrue(self.backlog.isOver())
        self.batcher.pendingBytes = 0
        self.assertFalse(self.backlog.isOver())

    def test_releasedWhenDrained(self) -> None:
        """
        Waiting senders are released once the backed-up peer drains.
        """
        self.backlog.grew("reader", 2000)
        self.backlog.wait("sender", self.release("sender"))
        self.assertEqual(self.released, [])
        self.backlog.drained("reader")
        self.assertEqual(self.released, ["sender"])
        self.assertEqual(self.backlog.backedUp, 0)

    def test_senderWhoseOwnOutputDrains(self) -> None:
        """
        A sender that waits for the backlog and is itself backed up is
        still released when the backlog shrinks, after its own output
        drained first (its wait was once dropped then, holding its input
        for good).
        """
        self.backlog.grew("both", 600)
        self.backlog.grew("reader", 600)
        self.backlog.wait("both", self.release("both"))
        self.backlog.drained("both")
        self.assertEqual(self.released, ["both"])

    def test_senderWaitsWhileOthersBackedUp(self) -> None:
        self.backlog.grew("both", 600)
        self.backlog.grew("reader", 1600)
        self.backlog.wait("both", self.release("both"))
        self.backlog.drained("both")
        self.assertEqual(self.released, [])
        self.backlog.drained("reader")
        self.assertEqual(self.released, ["both"])

    def test_forgetGone(self) -> None:
        """
        A connection that is gone no longer waits, and its output no
        longer counts.
        """
        self.backlog.grew("gone", 2000)
        self.backlog.wait("gone", self.release("gone"))
        self.backlog.forget("gone")
        self.assertEqual(self.released, [])
        self.assertEqual(self.backlog.backedUp, 0)

    def test_releasedAfterFlush(self) -> None:
        """
        A sender held because this turn produced too much goes on after
        the flush.
        """
        self.batcher.pendingBytes = 5000
        self.batcher.mark(Recorder())
        self.backlog.wait("sender", self.release("sender"))
        self.clock.advance(0)
        self.assertEqual(self.released, ["sender"])

    def test_oneAfterFlushPerTurn(self) -> None:
        """
        However many senders wait in a turn, the backlog asks to be called
        once after the flush (the list of after-flush calls does not grow
        with the number of senders).
        """
        self.batcher.pendingBytes = 5000
        self.batcher.mark(Recorder())
        for i in range(100):
            self.backlog.wait(i, self.release(i))
            self.backlog.drained("someone else")
        self.assertEqual(len(self.batcher._afterFlush), 1)
        self.clock.advance(0)
        self.assertEqual(self.released, list(range(100)))

    def test_slowReaderStopsCounting(self) -> None:
        """
        A peer backed up for longer than the patience no longer holds the
        others; what it piles up afterwards is not counted either (the
        send-queue limit deals with it).
        """
        self.backlog.grew("slow", 2000)
        self.backlog.wait("sender", self.release("sender"))
        self.clock.advance(1.9)
        self.assertEqual(self.released, [])
        self.clock.advance(0.2)
        self.assertEqual(self.released, ["sender"])
        self.backlog.grew("slow", 5000)
        self.assertEqual(self.backlog.backedUp, 0)
        self.assertFalse(self.backlog.isOver())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_goneWhileWaiting(self) -> None:
        """
        A waiting sender that disconnects is forgotten, not released.
        """
        self.backlog.grew("reader", 2000)
        self.backlog.wait("sender", self.release("sender"))
        self.backlog.forget("sender")
        self.backlog.drained("reader")
        self.assertEqual(self.released, [])


class Collector(protocol.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.done = defer.Deferred()
        self.expected = 0

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.expected and len(self.data) >= self.expected and not self.done.called:
            self.done.callback(None)


class DirectSendTests(unittest.TestCase):
    """
    On real loopback sockets: direct sends keep order with what the
    transport buffers when the kernel does not take everything.
    """

    async def test_orderKeptWhenKernelFull(self) -> None:
        factory = BatchingFactory(clock=reactor)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        client = await connect(port.getHost().port, factory=Collector)
        client.transport.pauseProducing()  # read nothing: the kernel fills up
        count = 40000  # about 8 MB, far more than loopback buffers hold
        client.transport.write(b"%d\n" % count)
        await waitFor(lambda: len(factory.connections) == 1, "the server")
        (server,) = factory.connections
        self.assertTrue(isPlainTCP(server.transport))
        transport = server.transport
        await waitFor(lambda: not writeIdle(transport), "a partial send")
        client.expected = count * 209  # 8 digits, 200 x, newline
        client.transport.resumeProducing()
        await withDeadline(client.done, "every line")
        lines = bytes(client.data).split(b"\n")[:-1]
        self.assertEqual(len(lines), count)
        self.assertEqual([int(line[:8]) for line in lines], list(range(count)))
        client.transport.loseConnection()
        await waitFor(lambda: not factory.connections, "the disconnect")
