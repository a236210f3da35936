"""
The web gateway over real loopback sockets: the chat over a WebSocket
with a real WebSocket client (Twisted's, on wsproto), beside line users on
the same Hub; the page and its files; the HTTP refusals; the limits.
"""

from __future__ import annotations

import json
import socket

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase
from twisted.web.websocket import WebSocketClientEndpoint
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.testing import MemoryHistory
from chatsvc.web.site import WebGateway
from tests.support import LineClient, connect, waitFor, withDeadline


class BrowserSocket:
    """
    A WebSocket client protocol that keeps the JSON objects it gets.
    """

    def __init__(self) -> None:
        self.objects: list[dict] = []
        self.raw: list[str] = []
        self._waiters: list = []
        self.closed = defer.Deferred()

    # WebSocketProtocol
    def negotiationStarted(self, transport) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self.raw.append(message)
        self.objects.append(json.loads(message))
        waiters, self._waiters = self._waiters, []
        for predicate, d in waiters:
            if not self._offer(predicate, d):
                self._waiters.append((predicate, d))

    def bytesMessageReceived(self, data) -> None:
        raise AssertionError("the server sent a binary message")

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason) -> None:
        self.closed.callback(None)
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(reason)

    def _offer(self, predicate, d) -> bool:
        for obj in self.objects:
            if predicate(obj):
                self.objects.remove(obj)
                d.callback(obj)
                return True
        return False

    def expect(self, **fields) -> defer.Deferred:
        """
        The first object (kept or to come) whose keys have these values.
        """

        def predicate(obj):
            return all(obj.get(k) == v for k, v in fields.items())

        d = defer.Deferred()
        if not self._offer(predicate, d):
            self._waiters.append((predicate, d))
        return withDeadline(d, f"an object with {fields}")

    def send(self, line: str) -> None:
        self.transport.sendTextMessage(line)


class _Factory:
    def buildProtocol(self, url: str) -> BrowserSocket:
        return BrowserSocket()


class Servers:
    """
    A Hub with the line protocol and the web gateway on loopback ports.
    """

    def __init__(self, test: TestCase, limits: ChatLimits | None = None, **web) -> None:
        self.limits = limits or ChatLimits()
        self.hub = Hub(reactor, MemoryHistory())
        self.chat = ChatFactory(self.hub, self.limits, reactor)
        self.web = WebGateway(
            self.hub, self.limits, reactor, self.chat.population, self.chat.policy, **web
        )
        self.chatPort = reactor.listenTCP(0, self.chat, interface="127.0.0.1")
        self.webPort = reactor.listenTCP(0, self.web, interface="127.0.0.1")
        self.port = self.webPort.getHost().port
        self.sockets: list[BrowserSocket] = []
        self.clients: list = []
        test.addCleanup(self.stop)

    async def browser(self, login: str | None = None) -> BrowserSocket:
        endpoint = WebSocketClientEndpoint.new(reactor, f"http://127.0.0.1:{self.port}/ws")
        sock = await withDeadline(defer.ensureDeferred(endpoint.connect(_Factory())), "connect")
        self.sockets.append(sock)
        if login is not None:
            sock.send(login)
            await sock.expect(type="success")
        return sock

    async def line(self, name: str) -> LineClient:
        client = await connect(self.chatPort.getHost().port)
        self.clients.append(client)
        client.sendLine(name)
        assert (await client.readText()).startswith("success:")
        return client

    async def http(self, request: bytes) -> bytes:
        """
        Send a raw HTTP request; everything the server answers, until it
        closes.
        """
        client = await connect(self.port)
        self.clients.append(client)
        client.transport.write(request)
        await client.waitClosed()
        return bytes(client.received)

    async def stop(self) -> None:
        for sock in self.sockets:
            if not sock.closed.called:
                sock.transport.transport.abortConnection()
            await withDeadline(sock.closed, "the socket to close")
        for client in self.clients:
            if not client.isClosed:
                client.transport.abortConnection()
            await client.waitClosed()
        await waitFor(lambda: not self.web.connections, "every web chat to go")
        await defer.maybeDeferred(self.chatPort.stopListening)
        await defer.maybeDeferred(self.webPort.stopListening)


class ChatOverWebSocketTests(TestCase):
    async def test_browserAndLineUser(self) -> None:
        """
        A browser logs in, gets JSON objects, one per message, and talks
        with a line user both ways; its own message comes back with its id.
        """
        servers = Servers(self)
        bob = await servers.line("bob")
        alice = await servers.browser()
        alice.send("alice")
        success = await alice.expect(type="success")
        self.assertEqual(
            (success["name"], success["room"], success["names"]), ("alice", "lobby", ["bob"])
        )
        self.assertTrue((await bob.readText()).endswith("#lobby alice joined"))
        alice.send("hello bob")
        own = await alice.expect(type="message")
        self.assertEqual((own["from"], own["text"], own["id"]), ("alice", "hello bob", 1))
        self.assertTrue((await bob.readText()).endswith("#lobby alice: hello bob"))
        bob.sendLine("hi alice")
        got = await alice.expect(type="message", **{"from": "bob"})
        self.assertEqual(got["text"], "hi alice")
        bob.sendLine("/me waves")
        self.assertEqual((await alice.expect(type="action"))["text"], "waves")
        alice.send("/msg bob psst")
        self.assertTrue((await bob.readText()).endswith("(private) alice: psst"))
        for raw in alice.raw:
            self.assertEqual(raw.count("\n"), 0)
            json.loads(raw)

    async def test_twoBrowsersAndHistory(self) -> None:
        servers = Servers(self)
        alice = await servers.browser("alice")
        alice.send("first")
        await alice.expect(type="message", text="first")
        carol = await servers.browser("carol")
        carol.send("/history 5")
        replayed = await carol.expect(type="message", history=True)
        self.assertEqual(replayed["text"], "first")
        carol.send("<script>alert(1)</script>")
        got = await alice.expect(type="message", **{"from": "carol"})
        self.assertEqual(got["text"], "<script>alert(1)</script>")

    async def test_tooLongAndFlood(self) -> None:
        """
        A message over the line limit is an error object and the socket
        stays; past the receive queue, a flood error and a close.
        """
        servers = Servers(self, ChatLimits(floodBurst=5, floodRate=1, recvQueue=10))
        alice = await servers.browser("alice")
        alice.send("x" * 3000)
        self.assertEqual((await alice.expect(type="error"))["code"], "too-long")
        alice.send("still here")
        await alice.expect(type="message", text="still here")
        for n in range(30):
            alice.send(f"m{n}")
        self.assertEqual((await alice.expect(type="error", code="flood"))["type"], "error")
        await withDeadline(alice.closed, "the close")

    async def test_manySmallMessagesAtOnce(self) -> None:
        """
        Many whole messages in one read (more bytes than one message may
        have) are messages, not one message too big.
        """
        servers = Servers(self, ChatLimits(floodBurst=1000, recvQueue=1000))
        alice = await servers.browser("alice")
        frames = b"".join(
            alice.transport._wsconn.send(TextMessage(f"m{n} " + "x" * 200)) for n in range(200)
        )
        alice.transport.transport.write(frames)
        last = await alice.expect(type="message", id=200)
        self.assertTrue(last["text"].startswith("m199 "))
        self.assertFalse(alice.closed.called)

    async def test_shutdown(self) -> None:
        """
        The gateway's closeAll (its listener stopping) says goodbye to
        every browser and fires once they are gone.
        """
        servers = Servers(self)
        alice = await servers.browser("alice")
        closed = servers.web.closeAll("server shutting down", grace=30)
        self.assertEqual((await alice.expect(type="info"))["text"], "server shutting down")
        await withDeadline(alice.closed, "the close")
        await withDeadline(closed, "closeAll to fire")
        self.assertEqual(servers.web.connections, set())


class RawSocket(protocol.Protocol):
    """
    A WebSocket client by hand (wsproto), for what a browser would never
    send: a foreign Origin, a binary frame, a message without end, a
    peer that ignores pings.
    """

    def __init__(self, origin: bytes | None = None, answerPings: bool = True) -> None:
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.origin = origin
        self.answerPings = answerPings
        self.accepted = defer.Deferred()
        self.closeCode = defer.Deferred()
        self.gone = defer.Deferred()
        self.texts: list[str] = []
        self.pings = 0

    def connectionMade(self) -> None:
        headers = [(b"Origin", self.origin)] if self.origin else []
        self.transport.write(
            self.ws.send(Request(host="127.0.0.1", target="/ws", extra_headers=headers))
        )

    def dataReceived(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted.callback(None)
            elif isinstance(event, TextMessage):
                self.texts.append(event.data)
            elif isinstance(event, CloseConnection):
                if not self.closeCode.called:
                    self.closeCode.callback(event.code)
            elif type(event).__name__ == "Ping":
                self.pings += 1
                if self.answerPings:
                    self.transport.write(self.ws.send(event.response()))
            elif type(event).__name__ == "RejectConnection":
                if not self.accepted.called:
                    self.accepted.errback(Exception(f"rejected: {event.status_code}"))

    def connectionLost(self, reason=None) -> None:
        if not self.closeCode.called:
            self.closeCode.callback(None)
        self.gone.callback(None)


class LimitTests(TestCase):
    async def raw(self, servers: Servers, **kwargs) -> RawSocket:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", servers.port)
        sock = await withDeadline(connectProtocol(endpoint, RawSocket(**kwargs)), "connect")
        self.addCleanup(lambda: sock.transport.abortConnection() if not sock.gone.called else None)
        return sock

    async def test_binaryRefused(self) -> None:
        servers = Servers(self)
        sock = await self.raw(servers)
        await withDeadline(sock.accepted, "the handshake")
        from wsproto.events import BytesMessage

        sock.transport.write(sock.ws.send(BytesMessage(b"\x00\x01")))
        self.assertEqual(await withDeadline(sock.closeCode, "the close"), 1003)

    async def test_messageWithoutEnd(self) -> None:
        """
        A message that keeps growing without its final frame is cut at a
        bound (1009), not buffered without end; the others are fine.
        """
        servers = Servers(self)
        bob = await servers.line("bob")
        sock = await self.raw(servers)
        await withDeadline(sock.accepted, "the handshake")
        for _ in range(64):
            if sock.closeCode.called:
                break
            # The first frame of a text message, then its continuations.
            sock.transport.write(sock.ws.send(TextMessage("y" * 4096, message_finished=False)))
        self.assertEqual(await withDeadline(sock.closeCode, "the close"), 1009)
        bob.sendLine("/who")
        self.assertEqual(await bob.readText(), "info: #lobby: bob")

    async def test_fragmentedMessageIsOneMessage(self) -> None:
        """
        A text message in several frames (as a client may send a long one)
        is one chat message, not one per frame.  Twisted before 26.10
        handed each frame over as a message of its own, which is why
        C{setup.cfg} asks for 26.10.
        """
        servers = Servers(self)
        bob = await servers.line("bob")
        sock = await self.raw(servers)
        await withDeadline(sock.accepted, "the handshake")
        sock.transport.write(sock.ws.send(TextMessage("alice")))
        self.assertTrue((await bob.readText()).endswith("#lobby alice joined"))
        sock.transport.write(
            sock.ws.send(TextMessage("hello ", message_finished=False))
            + sock.ws.send(TextMessage("in three ", message_finished=False))
            + sock.ws.send(TextMessage("frames", message_finished=True))
        )
        self.assertTrue((await bob.readText()).endswith("#lobby alice: hello in three frames"))
        bob.sendLine("/who")
        self.assertEqual(await bob.readText(), "info: #lobby: bob, alice")

    async def test_foreignOrigin(self) -> None:
        servers = Servers(self, origins=("https://friend.example",))
        sock = await self.raw(servers, origin=b"https://evil.example")
        with self.assertRaises(Exception) as caught:
            await withDeadline(sock.accepted, "the handshake")
        self.assertIn("403", str(caught.exception))
        ok = await self.raw(servers, origin=b"https://friend.example")
        await withDeadline(ok.accepted, "the handshake")
        same = await self.raw(servers, origin=b"http://127.0.0.1")
        await withDeadline(same.accepted, "the handshake")

    async def test_brokenFraming(self) -> None:
        """
        A client that breaks the WebSocket protocol (a new text frame in
        the middle of a fragmented message) is closed by wsproto; the
        server logs no error and the member leaves.
        """
        servers = Servers(self)
        bob = await servers.line("bob")
        sock = await self.raw(servers)
        await withDeadline(sock.accepted, "the handshake")
        sock.transport.write(sock.ws.send(TextMessage("intruder")))
        self.assertTrue((await bob.readText()).endswith("#lobby intruder joined"))
        chunk = sock.ws.send(TextMessage("y" * 4096, message_finished=False))
        for _ in range(8):
            sock.transport.write(chunk)  # the same TEXT opcode again: a protocol error
        await withDeadline(sock.gone, "the close")
        line = await bob.readText()
        self.assertRegex(line, r"#lobby intruder left \((quit|closed)\)$")

    async def test_pingTimeout(self) -> None:
        """
        A peer that answers no ping is closed and leaves; one that answers
        stays.
        """
        servers = Servers(self)
        servers.web.pingInterval = servers.web.pingTimeout = 0.1
        bob = await servers.line("bob")
        deaf = await self.raw(servers, answerPings=False)
        await withDeadline(deaf.accepted, "the handshake")
        deaf.transport.write(deaf.ws.send(TextMessage("deaf")))
        self.assertTrue((await bob.readText()).endswith("#lobby deaf joined"))
        self.assertTrue((await bob.readText()).endswith("#lobby deaf left (ping timeout)"))
        self.assertGreater(deaf.pings, 0)

    async def test_neverReads(self) -> None:
        """
        A browser that never reads while the room floods is cut at the
        send-queue limit (too slow); the line reader gets everything.
        """
        limits = ChatLimits(sendQueue=256 * 1024, floodBurst=100000, recvQueue=100000)
        servers = Servers(self, limits)
        slow = await self.raw(servers)
        await withDeadline(slow.accepted, "the handshake")
        slow.transport.write(slow.ws.send(TextMessage("slow")))
        await waitFor(lambda: servers.hub.find("slow") is not None, "the login")
        slow.transport.pauseProducing()
        slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        (chat,) = servers.web.connections
        chat._transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        del chat
        reader = await servers.line("reader")
        sender = await servers.line("sender")
        sender.transport.write(b"".join(b"m %d %s\n" % (n, b"x" * 1000) for n in range(1200)))
        seen = []
        while len(seen) < 1200:
            line = await reader.readLine()
            if b": m " in line:
                seen.append(int(line.split(b": m ")[1].split(b" ")[0]))
        self.assertEqual(seen, list(range(1200)))
        await waitFor(lambda: servers.hub.find("slow") is None, "the slow browser to be cut")


class HTTPTests(TestCase):
    async def test_pageAndFiles(self) -> None:
        servers = Servers(self)
        page = await servers.http(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        head, _, body = page.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200"), head)
        self.assertIn(b"text/html", head)
        self.assertIn(b"Content-Security-Policy: default-src 'self'", head)
        self.assertIn(b"<html", body)

    async def test_refusals(self) -> None:
        servers = Servers(self)
        cases = [
            (b"GET /nope HTTP/1.0\r\n\r\n", b" 404 "),
            (b"GET /static/missing.js HTTP/1.0\r\n\r\n", b" 404 "),
            (b"GET /static/../site.py HTTP/1.0\r\n\r\n", b" 404 "),
            (b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", b" 405 "),
            (b"GET /ws HTTP/1.0\r\n\r\n", b" 426 "),
            (b"PUT /ws HTTP/1.0\r\nContent-Length: 0\r\n\r\n", b" 405 "),
            (b"POST / HTTP/1.0\r\nContent-Length: 10000000\r\n\r\n", b" 413 "),
            (b"GET / HTTP/1.0\r\n" + b"X-A: b\r\n" * 100 + b"\r\n", b" 400 "),
            (b"GET /" + b"a" * 5000 + b" HTTP/1.0\r\n\r\n", b" 400 "),
        ]
        for request, status in cases:
            answer = await servers.http(request)
            self.assertIn(status, answer.split(b"\r\n", 1)[0], (request[:40], answer[:80]))

    async def test_capsShared(self) -> None:
        servers = Servers(self, ChatLimits(maxClients=1))
        await servers.line("bob")
        answer = await servers.http(b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 503 "), answer[:60])
        self.assertIn(b"full", answer)
