"""
L{chatsvc.net.listening.ListenService} with C{reusePort}: two services of
one process stand for the processes of a cluster sharing one port with
C{SO_REUSEPORT}, on the real reactor and loopback.

Which listener the kernel gives a connection to is its business: the
tests only check that every connection reached exactly one of them and
that none was lost, never how they were spread.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import sys

from twisted.internet import defer, error, protocol, reactor
from twisted.internet.address import IPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from chatsvc.net import listening
from tests.support import withDeadline
from tests.test_client import makeCertificate
from tests.test_client_process import temporaryDirectory
from tests.test_tls import writePEM

#: Connections made to a shared port in each test.
CONNECTIONS = 24


class Greeter(protocol.Protocol):
    """
    Says which listener accepted it (C{NAME\\n}) and records the client's
    port, so a client can be matched with the listener that took it.
    """

    def connectionMade(self) -> None:
        self.factory.accepted.append(getattr(self.transport.getPeer(), "port", None))
        self.factory.open.append(self)
        self.lost = defer.Deferred()
        self.transport.write(self.factory.name + b"\n")

    def connectionLost(self, reason=None) -> None:
        self.factory.open.remove(self)
        self.lost.callback(None)


class GreeterFactory(protocol.ServerFactory):
    protocol = Greeter

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.accepted: list[int] = []
        self.open: list[Greeter] = []


class Greeted(protocol.Protocol):
    """
    A client that waits for the greeting line: C{greeting} fires with the
    name of the listener that accepted it.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.greeting: defer.Deferred[bytes] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer and not self.greeting.called:
            self.greeting.callback(self.buffer.split(b"\n", 1)[0])

    def connectionLost(self, reason=None) -> None:
        if not self.greeting.called:
            self.greeting.errback(reason)
        self.lost.callback(None)


def capturedStderr(test: TestCase) -> io.StringIO:
    """
    Standard error, as L{listening.startupError} writes it, into a string
    for the duration of C{test}.
    """
    stderr = io.StringIO()
    test.patch(sys, "stderr", stderr)
    test.patch(sys, "__stderr__", stderr)
    return stderr


class ReusePortTests(TestCase):
    """
    Two listeners with C{reusePort} on one TCP or TLS port both bind and
    between them accept every connection; without it the port is in use.
    """

    def listen(self, description: str, name: bytes, reusePort: bool = True):
        """
        Start a L{listening.ListenService} on C{description}, stopped after
        the test (its connections closed first).
        """
        factory = GreeterFactory(name)
        service = listening.ListenService(
            description, factory, "chat", reactor, reusePort=reusePort
        )
        service.startService()
        self.addCleanup(self.stop, service)
        return service, factory

    async def stop(self, service) -> None:
        if service.running:
            await service.stopService()
        for greeter in list(service.factory.open):
            greeter.transport.loseConnection()
            await withDeadline(greeter.lost, "a server connection to close")

    async def connectAll(self, endpoint, count: int = CONNECTIONS) -> list[tuple[int, bytes]]:
        """
        Connect C{count} clients through C{endpoint}, wait for each one's
        greeting, close them: C{(client port, listener name)} per client.
        """
        clients = []
        for _ in range(count):
            d = connectProtocol(endpoint, Greeted())
            clients.append(await withDeadline(d, "a connection to the shared port"))
        reached = []
        for client in clients:
            name = await withDeadline(client.greeting, "the listener's greeting")
            reached.append((getattr(client.transport.getHost(), "port", None), name))
        for client in clients:
            client.transport.loseConnection()
            await withDeadline(client.lost, "a client connection to close")
        return reached

    def assertEachReachedOne(self, reached, *factories) -> None:
        """
        Every client reached exactly one of C{factories}, the one whose
        name it was greeted with, and the listeners accepted nobody else.
        """
        byName = {factory.name: factory for factory in factories}
        for port, name in reached:
            self.assertIn(name, byName)
            self.assertIn(port, byName[name].accepted)
            others = [f for f in factories if f is not byName[name]]
            self.assertFalse([f for f in others if port in f.accepted], port)
        self.assertEqual(sum(len(f.accepted) for f in factories), len(reached))

    async def test_twoShareTCP(self) -> None:
        """
        The second listener binds the first one's port; connections to it
        are all accepted, each by one of the two.  Once one stops, the
        other takes every connection; once both stop, nobody listens (the
        socket made before adopting it is not left open).
        """
        first, a = self.listen("tcp:0:interface=127.0.0.1", b"a")
        port = first.port.getHost().port
        second, b = self.listen(f"tcp:{port}:interface=127.0.0.1", b"b")
        self.assertEqual(second.port.getHost().port, port)
        self.assertEqual(second.where(), f"tcp 127.0.0.1:{port}")
        self.assertEqual(second.hint(), f"chatsvc-client --host 127.0.0.1 -p {port} -u NAME")

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10)
        reached = await self.connectAll(endpoint)
        self.assertEqual(len(reached), CONNECTIONS)
        self.assertEachReachedOne(reached, a, b)

        await first.stopService()
        self.assertIsNone(first.port)
        before = len(a.accepted)
        later = await self.connectAll(endpoint, 4)
        self.assertEqual({name for _, name in later}, {b"b"})
        self.assertEqual(len(a.accepted), before)

        await second.stopService()
        with self.assertRaises(error.ConnectionRefusedError):
            await withDeadline(connectProtocol(endpoint, Greeted()), "a refusal")

    async def test_settableAttribute(self) -> None:
        """
        C{reusePort} may be set on a service after it is made, before it
        starts.
        """
        factory = GreeterFactory(b"a")
        first = listening.ListenService("tcp:0:interface=127.0.0.1", factory, "chat", reactor)
        first.reusePort = True
        first.startService()
        self.addCleanup(self.stop, first)
        port = first.port.getHost().port
        second, b = self.listen(f"tcp:{port}:interface=127.0.0.1", b"b")
        self.assertEqual(second.port.getHost().port, port)

    def assertInUse(self, description: str, service, stderr: io.StringIO) -> None:
        e = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertEqual(e.code, 1)
        lines = stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(
            lines[0],
            f"chat: cannot listen on {description}: {os.strerror(errno.EADDRINUSE)}",
            lines[0],
        )
        self.assertIsNone(service.port)

    def test_heldWithoutReusePort(self) -> None:
        """
        A port held by a listener without C{SO_REUSEPORT} cannot be shared:
        the usual one-line error and exit status 1.
        """
        first, _ = self.listen("tcp:0:interface=127.0.0.1", b"a", reusePort=False)
        description = f"tcp:{first.port.getHost().port}:interface=127.0.0.1"
        stderr = capturedStderr(self)
        service = listening.ListenService(
            description, GreeterFactory(b"b"), "chat", reactor, reusePort=True
        )
        self.assertInUse(description, service, stderr)

    def test_sharedRefusesPlainListener(self) -> None:
        """
        A listener without C{reusePort} cannot join a shared port either:
        the same one-line error as for any port in use.
        """
        first, _ = self.listen("tcp:0:interface=127.0.0.1", b"a")
        description = f"tcp:{first.port.getHost().port}:interface=127.0.0.1"
        stderr = capturedStderr(self)
        service = listening.ListenService(description, GreeterFactory(b"b"), "chat", reactor)
        self.assertInUse(description, service, stderr)

    def test_heldByPlainSocket(self) -> None:
        """
        A port bound by another program that did not ask to share it (a
        plain listening socket here) is in use.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        description = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        stderr = capturedStderr(self)
        service = listening.ListenService(
            description, GreeterFactory(b"b"), "chat", reactor, reusePort=True
        )
        self.assertInUse(description, service, stderr)

    async def test_twoShareTLS(self) -> None:
        """
        An C{ssl:} description with C{reusePort}: both listeners bind the
        port and speak TLS with the description's certificate.
        """
        from cryptography.hazmat.primitives import serialization
        from twisted.internet.endpoints import wrapClientTLS
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        directory = temporaryDirectory(self)
        certificate, key = makeCertificate("localhost", "127.0.0.1")
        cert = writePEM(os.path.join(directory, "server.pem"), certificate)
        keyFile = writePEM(os.path.join(directory, "server.key"), key=key)
        options = f"privateKey={keyFile}:certKey={cert}:interface=127.0.0.1"

        first, a = self.listen(f"ssl:0:{options}", b"a")
        port = first.port.getHost().port
        second, b = self.listen(f"ssl:{port}:{options}", b"b")
        self.assertEqual(second.port.getHost().port, port)
        self.assertEqual(second.where(), f"tls 127.0.0.1:{port}")
        self.assertEqual(
            second.hint(), f"chatsvc-client -p tls:localhost:{port}:trustRoots=DIR -u NAME"
        )

        trust = Certificate.loadPEM(certificate.public_bytes(serialization.Encoding.PEM))
        endpoint = wrapClientTLS(
            optionsForClientTLS("localhost", trustRoot=trust),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10),
        )
        reached = await self.connectAll(endpoint)
        self.assertEqual(len(reached), CONNECTIONS)
        self.assertEachReachedOne(reached, a, b)

    async def test_twoShareTCP6(self) -> None:
        """
        A C{tcp6:} description gets an IPv6 socket, and its address is an
        IPv6 one.
        """
        probe = socket.socket(socket.AF_INET6)
        try:
            probe.bind(("::1", 0))
        except OSError:
            raise self.skipTest("no IPv6 loopback here") from None
        finally:
            probe.close()
        first, a = self.listen("tcp6:0:interface=\\:\\:1", b"a")
        host = first.port.getHost()
        self.assertIsInstance(host, IPv6Address)
        second, b = self.listen(f"tcp6:{host.port}:interface=\\:\\:1", b"b")
        self.assertEqual(second.where(), f"tcp [::1]:{host.port}")
        endpoint = TCP6ClientEndpoint(reactor, "::1", host.port, timeout=10)
        reached = await self.connectAll(endpoint, 8)
        self.assertEachReachedOne(reached, a, b)

    async def test_unixIgnoresIt(self) -> None:
        """
        A C{unix:} description listens as usual with C{reusePort} set.
        """
        path = os.path.join(temporaryDirectory(self), "s")
        service, factory = self.listen(f"unix:{path}", b"u")
        self.assertEqual(service.where(), f"unix {path}")
        from twisted.internet.endpoints import UNIXClientEndpoint

        reached = await self.connectAll(UNIXClientEndpoint(reactor, path), 2)
        self.assertEqual([name for _, name in reached], [b"u", b"u"])
