"""
Tests for L{chatsvc.net.twistedcompat}: the private Twisted attributes chatsvc
relies on are still there and still mean what it assumes.

These run on a real loopback TCP connection and the real reactor.  When
one fails, the Twisted installed has changed an internal that
C{chatsvc/net/twistedcompat.py} reads: chatsvc still works (it falls back to
the public path, slower, or exits 143 after SIGTERM), but that module and
the tested range in its docstring and in C{setup.cfg} need updating.
"""

from __future__ import annotations

from twisted.internet import defer, protocol, reactor, tcp
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.trial import unittest
from zope.interface import implementer

import twisted
from chatsvc.net.twistedcompat import (
    EXIT_SIGNAL_ATTRIBUTE,
    TRANSPORT_ATTRIBUTES,
    forgetExitSignal,
    supportsDirectSend,
    writeIdle,
)
from tests.support import connect, waitFor, withDeadline

CHANGED = f"Twisted {twisted.__version__} changed an internal: update chatsvc/net/twistedcompat.py"


@implementer(IHalfCloseableProtocol)
class Peer(protocol.Protocol):
    """
    One end of the loopback connection: counts what it receives and
    fires a Deferred at each kind of end.
    """

    def __init__(self) -> None:
        self.received = 0
        self.expected = 0
        self.gotAll = defer.Deferred()
        self.eof = defer.Deferred()
        self.lost = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.expected and self.received >= self.expected and not self.gotAll.called:
            self.gotAll.callback(None)

    def readConnectionLost(self) -> None:
        self.eof.callback(None)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)


class Server(protocol.Factory):
    def __init__(self) -> None:
        self.peers: list[Peer] = []

    def buildProtocol(self, addr) -> Peer:
        peer = Peer()
        self.peers.append(peer)
        return peer


class TransportTests(unittest.TestCase):
    """
    The write buffer and write-side flag of a real TCP transport.
    """

    async def connected(self) -> tuple[Peer, Peer]:
        """
        A loopback connection: the server's end (whose transport is a
        real C{tcp.Server}) and the client's.
        """
        factory = Server()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        client = await connect(port.getHost().port, factory=Peer)
        await waitFor(lambda: factory.peers, "the server's end")
        [server] = factory.peers
        self.addCleanup(self.close, server, client)
        self.assertIsInstance(server.transport, tcp.Server)
        return server, client

    async def close(self, server: Peer, client: Peer) -> None:
        client.transport.loseConnection()
        server.transport.loseConnection()
        await withDeadline(defer.gatherResults([server.lost, client.lost]), "both ends closed")

    async def test_attributes(self) -> None:
        """
        A TCP transport has every attribute L{writeIdle} reads, so
        chatsvc sends directly on it.
        """
        server, _ = await self.connected()
        for name in TRANSPORT_ATTRIBUTES:
            self.assertTrue(hasattr(server.transport, name), f"{CHANGED}: no {name}")
        self.assertTrue(supportsDirectSend(server.transport))

    async def test_writtenThisTurn(self) -> None:
        """
        Bytes written and not yet sent (C{_tempDataLen}) make the
        transport busy until they are sent.
        """
        server, client = await self.connected()
        self.assertTrue(writeIdle(server.transport))
        client.expected = 10
        server.transport.write(b"x" * 10)
        self.assertFalse(writeIdle(server.transport), CHANGED)
        await withDeadline(client.gotAll, "the bytes")
        self.assertTrue(writeIdle(server.transport), CHANGED)

    async def test_partlySent(self) -> None:
        """
        What the kernel did not take waits in C{dataBuffer}: busy.
        """
        server, client = await self.connected()
        client.transport.pauseProducing()  # read nothing: the kernel fills up
        size = 32 * 1024 * 1024  # far more than loopback buffers hold
        server.transport.write(b"x" * size)
        transport = server.transport
        await waitFor(
            lambda: transport.offset or not transport._tempDataLen,
            "Twisted's first send",
        )
        self.assertGreater(len(transport.dataBuffer), transport.offset, CHANGED)
        self.assertFalse(writeIdle(transport), CHANGED)
        client.expected = size
        client.transport.resumeProducing()
        await withDeadline(client.gotAll, "every byte")
        self.assertTrue(writeIdle(transport), CHANGED)

    async def test_writeSideShut(self) -> None:
        """
        After C{loseWriteConnection} has shut the socket for writing
        (the peer sees end of file), C{_writeDisconnected} is set: busy.
        """
        server, client = await self.connected()
        server.transport.loseWriteConnection()
        await withDeadline(client.eof, "end of file")
        self.assertTrue(server.transport._writeDisconnected, CHANGED)
        self.assertFalse(writeIdle(server.transport))

    async def test_closing(self) -> None:
        """
        A transport asked to close is busy at once.
        """
        server, _ = await self.connected()
        server.transport.loseConnection()
        self.assertFalse(writeIdle(server.transport))


class ExitSignalTests(unittest.SynchronousTestCase):
    """
    The reactor records the signal that stopped it where
    L{forgetExitSignal} clears it.  (The twistd tests that SIGTERM a
    server and expect exit status 0 check the whole path.)
    """

    def test_reactorHasIt(self) -> None:
        """
        The real reactor has C{_exitSignal}, and says so the way twistd
        asks before reading it (C{_ISupportsExitSignalCapturing}).
        """
        from twisted.internet.interfaces import _ISupportsExitSignalCapturing

        self.assertTrue(_ISupportsExitSignalCapturing.providedBy(reactor), CHANGED)
        self.assertTrue(hasattr(reactor, EXIT_SIGNAL_ATTRIBUTE), CHANGED)

    def test_signalRecorded(self) -> None:
        """
        The reactor's SIGTERM handler records the signal in
        C{_exitSignal}, and L{forgetExitSignal} clears it.
        """
        stops = []

        class Recording(type(reactor)):
            def __init__(self) -> None:
                pass  # no waker, no file descriptors: only the handler runs

            def callFromThread(self, f, *args, **kwargs) -> None:
                stops.append(f)

        recording = Recording()
        recording.sigTerm(15)
        self.assertEqual(getattr(recording, EXIT_SIGNAL_ATTRIBUTE, None), 15, CHANGED)
        self.assertEqual(len(stops), 1)
        forgetExitSignal(recording)
        self.assertIsNone(getattr(recording, EXIT_SIGNAL_ATTRIBUTE))

    def test_unknownReactor(self) -> None:
        """
        A reactor without C{_exitSignal} is left alone.
        """

        class Bare:
            pass

        bare = Bare()
        forgetExitSignal(bare)
        self.assertFalse(hasattr(bare, EXIT_SIGNAL_ATTRIBUTE))
