"""
The chat over real loopback sockets: an in-process L{ChatFactory} on a
real listener (port 0) and real clients, all in this test's reactor.

Fan-out to 200 members with nothing lost, duplicated or reordered; a
reader that never reads cut off at the send-queue limit while the others
get everything; a flooder paced without loss while others are served;
the connection caps; hostile bytes; half-close; the shutdown notice.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import weakref

from twisted.internet import defer, error, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.net.ratelimit import TokenBucket
from chatsvc.testing import Clock, MemoryHistory
from tests.support import DEADLINE, LineClient, connect, waitFor, withDeadline


class ChatServer:
    """
    A chat server in this process, listening on a loopback port.
    """

    def __init__(self, test: TestCase, limits: ChatLimits | None = None) -> None:
        self.history = MemoryHistory(perRoom=100000)
        self.hub = Hub(reactor, self.history, historyLimit=1000)
        self.factory = ChatFactory(self.hub, limits or ChatLimits(), reactor)
        self.listener = reactor.listenTCP(0, self.factory, backlog=1024, interface="127.0.0.1")
        self.port = self.listener.getHost().port
        self.test = test
        self.clients: list[LineClient] = []
        test.addCleanup(self.stop)

    async def connect(self, factory=LineClient, bind: str | None = None) -> LineClient:
        if bind is None:
            client = await connect(self.port, factory=factory)
        else:
            endpoint = TCP4ClientEndpoint(
                reactor, "127.0.0.1", self.port, timeout=10, bindAddress=(bind, 0)
            )
            client = await withDeadline(connectProtocol(endpoint, factory()), "connect")
        self.clients.append(client)
        return client

    async def login(self, name: str, room: str | None = None, factory=LineClient) -> LineClient:
        client = await self.connect(factory)
        client.sendLine(name if room is None else f"{name} {room}")
        line = await client.readText()
        self.test.assertTrue(line.startswith(f"success: logged in as {name},"), line)
        return client

    def serverSide(self, client: LineClient):
        """
        The server's protocol for C{client}.
        """
        port = client.transport.getHost().port
        for proto in self.factory.connections:
            if proto.transport.getPeer().port == port:
                return proto
        raise KeyError(port)

    async def stop(self) -> None:
        """
        Close every client, wait until the server has seen each go, stop
        listening.
        """
        for client in self.clients:
            if not client.isClosed:
                client.transport.abortConnection()
        for client in self.clients:
            await client.waitClosed()
        await waitFor(lambda: not self.factory.connections, "the server to see every client go")
        await defer.maybeDeferred(self.listener.stopListening)


class Tally(LineClient):
    """
    A client that counts messages C{m N [padding]} per sender instead of
    queueing lines, and fires L{done} once it has C{expected} of them.
    """

    expected = 0

    def __init__(self) -> None:
        super().__init__()
        self.bySender: dict[bytes, list[int]] = {}
        self.count = 0
        self.others: list[bytes] = []
        self.done = defer.Deferred()
        self._tail = b""
        self.counting = False

    def dataReceived(self, data: bytes) -> None:
        if not self.counting:
            return super().dataReceived(data)
        *complete, self._tail = (self._tail + data).split(b"\n")
        for line in complete:
            head, sep, rest = line.partition(b": m ")
            if not sep:
                self.others.append(line)
                continue
            sender = head.rsplit(b" ", 1)[1]
            self.bySender.setdefault(sender, []).append(int(rest.split(b" ", 1)[0]))
            self.count += 1
        if self.count >= self.expected and not self.done.called:
            self.done.callback(self)


class FanOutTests(TestCase):
    async def fanOut(self, clients: int, messages: int, limits: ChatLimits) -> None:
        """
        C{clients} members of one room each send C{messages} messages in
        one write; every member receives every message of every other
        member, in each sender's order, none lost, none duplicated, and
        none of its own.
        """
        server = ChatServer(self, limits)
        members = [await server.login(f"u{i:03}", factory=Tally) for i in range(clients)]
        await waitFor(lambda: len(server.hub.room("lobby").members) == clients, "every join")
        # Every member has seen every later join: then nothing else is due.
        for i, member in enumerate(members):
            for _ in range(clients - 1 - i):
                await member.readLine()
            member.lines.clear()
            member.counting = True
            member.expected = (clients - 1) * messages
        for member in members:
            member.transport.write(b"".join(b"m %d\n" % n for n in range(messages)))
        await withDeadline(defer.gatherResults([m.done for m in members]), "every message", 120)
        expected = list(range(messages))
        for i, member in enumerate(members):
            self.assertEqual(member.others, [])
            self.assertEqual(len(member.bySender), clients - 1)
            self.assertNotIn(b"u%03d" % i, member.bySender)
            for sender, numbers in member.bySender.items():
                self.assertEqual(numbers, expected, (i, sender))
        self.assertEqual(len(server.history.messages("lobby")), clients * messages)

    async def test_200x20(self) -> None:
        """
        200 clients in one room, 20 messages each (the login takes one
        token of the burst, so the burst is raised by one).
        """
        await self.fanOut(200, 20, ChatLimits(floodBurst=21))

    async def test_defaultLimits(self) -> None:
        """
        With the default flood limits (burst 20, then 5 lines/s) a burst
        beyond the limit is paced, and still nothing is lost.
        """
        await self.fanOut(20, 25, ChatLimits())


class SlowReaderTests(TestCase):
    async def test_neverReads(self) -> None:
        """
        A member that never reads while the room floods is cut off once
        its unsent output passes the send-queue limit: the room sees it
        leave C{(too slow)}, the server keeps nothing of it, and the
        readers get every message.
        """
        # The send queue must stay well above what one read of the sender
        # (64 KiB) fans out to each reader in one reactor turn: readers in
        # this very process are not cut off, the reader that never reads is.
        limits = ChatLimits(sendQueue=256 * 1024, floodBurst=100000, recvQueue=100000)
        server = ChatServer(self, limits)
        slow = await server.login("slow")
        readers = [await server.login(name, factory=Tally) for name in ("r1", "r2")]
        sender = await server.login("sender")
        slow.transport.pauseProducing()  # never reads again
        slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        proto = server.serverSide(slow)
        proto.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        slowRef = weakref.ref(proto)
        del proto
        await waitFor(lambda: len(server.hub.room("lobby").members) == 4, "every join")
        for reader in readers:
            reader.counting = True
            reader.expected = 1200
        reader.lines.clear()
        readers[0].lines.clear()
        line = b"m %d " + b"x" * 1000
        sender.transport.write(b"".join(line % n + b"\n" for n in range(1200)))
        await withDeadline(defer.gatherResults([r.done for r in readers]), "every message")

        def gone() -> bool:
            return any(b"slow left (too slow)" in x for x in readers[0].others)

        await waitFor(gone, "the room to see the slow reader leave")
        for reader in readers:
            numbers = reader.bySender[b"sender"]
            self.assertEqual(numbers, list(range(1200)))
        self.assertIsNone(server.hub.find("slow"))
        self.assertNotIn("slow", server.hub.who("lobby")[1])
        self.assertEqual(len(server.factory.connections), 3)
        gc.collect()
        self.assertIsNone(slowRef(), "the slow reader's protocol is still referenced")

    async def test_closeWhileOutputPaused(self) -> None:
        """
        A connection closed while its output is backed up (the shutdown
        notice to a reader that lags) closes as soon as the peer has read
        everything, not only when the grace period runs out.
        """
        limits = ChatLimits(sendQueue=64 * 1024 * 1024, floodBurst=100000, closeGrace=3600)
        server = ChatServer(self, limits)
        lagging = await server.login("lagging")
        sender = await server.login("sender")
        lagging.transport.pauseProducing()
        proto = server.serverSide(lagging)
        await waitFor(lambda: len(server.hub.room("lobby").members) == 2, "the join")
        chunk = b"".join(b"m %d %s\n" % (n, b"x" * 1000) for n in range(100))
        for _ in range(1000):  # 100 MB at most: the kernel buffers are far smaller
            if proto._outputPaused:
                break
            sender.transport.write(chunk)
            await deferLater(reactor, 0.001, lambda: None)
        self.assertTrue(proto._outputPaused)
        proto.closeWith("info: bye")
        lagging.transport.resumeProducing()
        await lagging.waitClosed()
        self.assertTrue(bytes(lagging.received).endswith(b"info: bye\n"))


class HostileInputTests(TestCase):
    async def test_megabyteWithoutNewline(self) -> None:
        """
        1 MiB without a line end from a logged-in member: one C{error:}
        too-long line, the server never holds more than C{maxLine + 1}
        bytes of it after any read, nothing reaches the room, and the
        connection stays; a canary member sends and receives as before.
        """
        server = ChatServer(self, ChatLimits())
        listener = await server.login("listener")
        canary = await server.login("canary")
        flooder = await server.login("flooder")
        await waitFor(lambda: len(server.hub.room("lobby").members) == 3, "every join")
        await listener.readLine()  # canary joined
        await listener.readLine()  # flooder joined
        await canary.readLine()  # flooder joined
        proto = server.serverSide(flooder)
        maxLine = server.factory.limits.maxLine
        seen = {"bytes": 0, "reads": 0, "maxTail": 0}
        original = proto.dataReceived

        def dataReceived(data: bytes) -> None:
            original(data)
            seen["bytes"] += len(data)
            seen["reads"] += 1
            seen["maxTail"] = max(seen["maxTail"], proto.framer.tailLength)

        proto.dataReceived = dataReceived
        size = 1024 * 1024
        for _ in range(size // (64 * 1024)):
            flooder.transport.write(b"x" * (64 * 1024))
        await waitFor(lambda: seen["bytes"] >= size, "the server to read the megabyte")
        self.assertEqual(seen["bytes"], size)
        self.assertGreater(seen["reads"], 1)
        self.assertLessEqual(seen["maxTail"], maxLine + 1)
        self.assertLessEqual(proto.framer.tailLength, maxLine + 1)
        # The line ends; the next command is answered after the one error.
        flooder.transport.write(b"yyy\n/who\n")
        self.assertEqual(
            await flooder.readText(), f"error: line too long (limit {maxLine} bytes), ignored"
        )
        self.assertEqual(await flooder.readText(), "info: #lobby: listener, canary, flooder")
        self.assertFalse(flooder.isClosed)
        self.assertEqual(proto.framer.tailLength, 0)
        # The canary is served: its message is the next thing the room
        # hears (nothing of the megabyte came first), and it hears others.
        canary.sendLine("still here")
        self.assertRegex(await listener.readText(), r"^\[.{24}\] #lobby canary: still here$")
        self.assertRegex(await flooder.readText(), r"^\[.{24}\] #lobby canary: still here$")
        listener.sendLine("heard you")
        self.assertRegex(await canary.readText(), r"^\[.{24}\] #lobby listener: heard you$")
        flooder.sendLine("short")
        self.assertRegex(await canary.readText(), r"^\[.{24}\] #lobby flooder: short$")
        for client in (listener, canary):
            self.assertNotIn(b"xxxx", bytes(client.received))
            self.assertNotIn(b"error", bytes(client.received))
        self.assertEqual(bytes(flooder.received).count(b"error:"), 1)
        self.assertFalse(flooder.isClosed)


#: A client in another process: logs in as NAME to PORT with a tiny receive
#: buffer, says so on stdout, then stops itself (SIGSTOP) and never reads.
STOPPED_CLIENT = """
import os, signal, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode() + b"\\n")
reply = b""
while not reply.endswith(b"\\n"):
    reply += s.recv(1)
sys.stdout.write(reply.decode())
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGSTOP)
"""


class StoppedProcess(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.ended = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def processEnded(self, reason) -> None:
        self.ended.callback(None)


def processState(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class StoppedPeerTests(TestCase):
    async def test_sigstoppedClientCut(self) -> None:
        """
        A real client process that logs in and is then stopped (SIGSTOP)
        in a busy room is cut at the send queue: the room sees it leave
        C{(too slow)}, and the reader gets every message.
        """
        limits = ChatLimits(sendQueue=65536, floodBurst=100000, recvQueue=100000)
        server = ChatServer(self, limits)
        reader = await server.login("reader", factory=Tally)
        sender = await server.login("sender")
        child = StoppedProcess()
        transport = reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, "-c", STOPPED_CLIENT, str(server.port), "stopped"],
            env=dict(os.environ),
        )
        pid = transport.pid

        async def reap() -> None:
            try:
                transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass
            await withDeadline(child.ended, "the stopped client to be killed")

        self.addCleanup(reap)
        await waitFor(lambda: b"\n" in child.out, "the stopped client's login")
        self.assertTrue(child.out.startswith(b"success: logged in as stopped,"), child.out)
        await waitFor(lambda: processState(pid) == "T", "the client to be stopped")
        await waitFor(lambda: len(server.hub.room("lobby").members) == 3, "every join")
        proto = next(
            p
            for p in server.factory.connections
            if p.session.member and p.session.member.name == "stopped"
        )
        proto.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        del proto
        await reader.readLine()  # sender joined
        await reader.readLine()  # stopped joined
        reader.counting = True

        def gone() -> bool:
            return any(b"stopped left (too slow)" in x for x in reader.others)

        # Batches the reader takes at once (so only the stopped client
        # lags), until the server gives up on the stopped one.
        line = b"m %d " + b"x" * 1000
        sent = 0
        while not gone():
            self.assertLess(sent, 20000, "the stopped client was never cut")
            sender.transport.write(b"".join(line % n + b"\n" for n in range(sent, sent + 16)))
            sent += 16
            reader.expected = sent
            await waitFor(lambda: reader.count >= reader.expected or gone(), "the reader")
        await waitFor(lambda: reader.count >= sent, "the reader to catch up")
        self.assertEqual(reader.bySender[b"sender"], list(range(sent)))
        self.assertIsNone(server.hub.find("stopped"))
        await waitFor(lambda: len(server.factory.connections) == 2, "the server to drop it")

    async def test_socketOptions(self) -> None:
        """
        Accepted chat sockets have keepalive and no Nagle delay.
        """
        server = ChatServer(self)
        client = await server.login("alice")
        handle = server.serverSide(client).transport.getHandle()
        self.assertEqual(handle.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        self.assertEqual(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 60)


class FloodTests(TestCase):
    async def test_flooderPaced(self) -> None:
        """
        A flooder's lines are delayed, not lost, in order; meanwhile other
        members are served at once.

        The flooder's pacing runs on a L{Clock} of the test's (its socket
        on the real reactor): while that clock stands still the flooder
        gets exactly its burst through, so the canary's message overtakes
        the rest by construction, not by a race against the flood rate.
        """
        limits = ChatLimits(floodBurst=5, floodRate=50, recvQueue=200)
        server = ChatServer(self, limits)
        listener = await server.login("listener", factory=Tally)
        flooder = await server.login("flooder")
        canary = await server.login("canary")
        await waitFor(lambda: len(server.hub.room("lobby").members) == 3, "every join")
        pacing = Clock()
        flooding = server.serverSide(flooder)
        flooding.session.pacing.clock = pacing
        flooding.session.pacing.bucket = TokenBucket(
            limits.floodRate, limits.floodBurst, pacing.seconds
        )
        listener.lines.clear()
        listener.counting = True
        listener.expected = 101
        flooder.transport.write(b"".join(b"m %d\n" % n for n in range(100)))
        await waitFor(lambda: flooding.isHeld("flood"), "the flooder to be paced")
        canary.sendLine("m 1000")
        await waitFor(lambda: b"canary" in listener.bySender, "the canary's message")
        self.assertEqual(listener.bySender[b"flooder"], list(range(limits.floodBurst)))

        def released() -> bool:
            # Each second of the pacing clock lets one more burst through.
            pacing.advance(1)
            return listener.done.called

        await waitFor(released, "every flood line")
        self.assertEqual(listener.bySender[b"flooder"], list(range(100)))
        self.assertEqual(listener.bySender[b"canary"], [1000])
        self.assertFalse(flooder.isClosed)
        self.assertNotIn(b"error", bytes(flooder.received))

    async def test_recvQueueOverflow(self) -> None:
        """
        Past the receive queue: an C{error:} line, the connection closed,
        the room sees why.
        """
        server = ChatServer(self, ChatLimits())
        other = await server.login("other")
        flooder = await server.login("flooder")
        await other.readLine()  # flooder joined
        flooder.transport.write(b"x\n" * 1000)
        await flooder.waitClosed()
        self.assertIn(
            b"error: flood: more than 200 lines waiting, disconnecting\n", bytes(flooder.received)
        )
        while True:
            line = await other.readText()
            if "flooder left" in line:
                break
        self.assertTrue(line.endswith("#lobby flooder left (flood)"), line)


class LimitTests(TestCase):
    async def test_full(self) -> None:
        server = ChatServer(self, ChatLimits(maxClients=3))
        for _ in range(3):
            await server.connect()
        fourth = await server.connect()
        self.assertEqual(await fourth.readText(), "full: the server is full (3 connections)")
        await fourth.waitClosed()
        self.assertEqual(len(server.factory.connections), 3)

    async def test_perAddress(self) -> None:
        """
        The per-address cap holds with a clear line; another address gets
        in at once.
        """
        server = ChatServer(self, ChatLimits(maxPerAddress=2, limitLoopback=True))
        for _ in range(2):
            await server.connect()
        third = await server.connect()
        self.assertEqual(
            await third.readText(), "error: too many connections from your address (limit 2)"
        )
        await third.waitClosed()
        other = await server.connect(bind="127.0.0.2")
        other.sendLine("carol")
        self.assertTrue((await other.readText()).startswith("success: "))

    async def test_loopbackExempt(self) -> None:
        server = ChatServer(self, ChatLimits(maxPerAddress=2))
        clients = [await server.connect() for _ in range(5)]
        for i, client in enumerate(clients):
            client.sendLine(f"user{i}")
            self.assertTrue((await client.readText()).startswith("success: "))


class ConversationTests(TestCase):
    async def test_conversation(self) -> None:
        """
        Login replies, a message, an action, JSON with its ack, /quit with
        a reason, over real sockets.
        """
        server = ChatServer(self)
        alice = await server.login("alice")
        bob = await server.connect()
        bob.sendLine("ALICE")
        self.assertTrue((await bob.readText()).startswith("reuse: "))
        bob.sendLine("\u0430lice")
        self.assertTrue((await bob.readText()).startswith("reuse: "))
        bob.sendLine("bob #lobby")
        self.assertEqual(await bob.readText(), "success: logged in as bob, in #lobby with: alice")
        self.assertRegex(await alice.readText(), r"^\[.{24}\] #lobby bob joined$")
        alice.sendLine("hello")
        alice.sendLine("/me waves")
        self.assertRegex(await bob.readText(), r"^\[.{24}\] #lobby alice: hello$")
        self.assertRegex(await bob.readText(), r"^\[.{24}\] #lobby \* alice waves$")
        bob.sendLine("/format json")
        self.assertIn('"format is now json"', await bob.readText())
        bob.sendLine("hi")
        self.assertRegex(await alice.readText(), r"^\[.{24}\] #lobby bob: hi$")
        self.assertIn('"type":"message"', ack := await bob.readText())
        self.assertIn('"id":3', ack)
        bob.sendLine("/quit gone fishing")
        self.assertIn('"bye"', await bob.readText())
        await bob.waitClosed()
        self.assertRegex(
            await alice.readText(), r"^\[.{24}\] #lobby bob left \(quit: gone fishing\)$"
        )
        self.assertEqual(alice.lines, type(alice.lines)())

    async def test_ircClientTurnedAway(self) -> None:
        """
        An IRC client's registration over a real socket gets one line
        saying what the port speaks, and the server closes; nobody is
        logged in, so no room hears of it.
        """
        server = ChatServer(self)
        irc = await server.connect()
        irc.transport.write(b"CAP LS 302\r\nNICK alice\r\nUSER alice 0 * :Alice\r\n")
        await irc.waitClosed()
        self.assertEqual(
            bytes(irc.received),
            b"error: this port speaks the chatsvc line protocol (send NAME [ROOM]), "
            b"not IRC; closing\n",
        )
        self.assertEqual(server.hub.members, {})

    async def test_closedSocket(self) -> None:
        """
        Closing the socket is /quit without a reason.
        """
        server = ChatServer(self)
        alice = await server.login("alice")
        bob = await server.login("bob")
        await alice.readLine()
        await bob.close()
        self.assertRegex(await alice.readText(), r"#lobby bob left \(quit\)$")

    async def test_partialLineThenReset(self) -> None:
        """
        A partial line then a reset: the fragment is dropped, one leave.
        """
        server = ChatServer(self)
        alice = await server.login("alice")
        bob = await server.login("bob")
        await alice.readLine()
        bob.transport.write(b"half a line")
        await waitFor(lambda: server.serverSide(bob).framer.tailLength, "the fragment")
        bob.transport.abortConnection()
        await bob.waitClosed()
        self.assertRegex(await alice.readText(), r"#lobby bob left \(quit\)$")
        alice.sendLine("/who")
        self.assertEqual(await alice.readText(), "info: #lobby: alice")

    async def test_harmless(self) -> None:
        """
        Escape sequences, BEL, NUL, C1 controls and invalid UTF-8 sent one
        byte at a time never reach the other terminal raw.
        """
        server = ChatServer(self, ChatLimits(floodBurst=1000))
        alice = await server.login("alice")
        bob = await server.login("bob")
        await alice.readLine()
        hostile = [
            b"\x1b[2J\x1b[H",
            b"\x1b]52;c;aGVsbG8=\x07",
            b"\x1b[6n",
            b"\xc2\x9b31m",
            b"\x9b31m",
            b"nul\x00 bell\x07",
            b"\xff\xc0\xaf\x80\xed\xa0\x80",
            "\u202e\u2066caf\u00e9 \u2603".encode(),
            b"/me \x1b[5m",
        ]
        stream = b"".join(x + b"\n" for x in hostile) + b"/quit \x1b[2J\n"
        for i in range(len(stream)):
            alice.transport.write(stream[i : i + 1])
        await alice.waitClosed()
        lines = await bob.readLines(len(hostile) + 1)
        data = b"\n".join(lines)
        for bad in (b"\x1b", b"\x07", b"\x9b", b"\x00", b"\xc2\x9b"):
            self.assertNotIn(bad, data)
        text = data.decode("utf-8")  # strict
        self.assertIn("caf\u00e9 \u2603", text)
        self.assertIn("\ufffd", text)

    async def test_halfClose(self) -> None:
        server = ChatServer(self)
        alice = await server.login("alice")
        alice.sendLine("/who")
        alice.transport.loseWriteConnection()
        self.assertEqual(await alice.readText(), "info: #lobby: alice")
        await alice.waitClosed()
        await waitFor(lambda: server.hub.find("alice") is None, "alice to be gone")

    async def test_shutdown(self) -> None:
        """
        Stopping: every client gets a last line saying so, in its format,
        and is closed; nobody hears the others leave.
        """
        server = ChatServer(self)
        alice = await server.login("alice")
        bob = await server.login("bob")
        await alice.readLine()
        bob.sendLine("/format json")
        await bob.readLine()
        anonymous = await server.connect()
        await defer.maybeDeferred(server.listener.stopListening)
        await withDeadline(server.factory.closeAll("server shutting down", 5), "closeAll", DEADLINE)
        self.assertEqual(await alice.readText(), "info: server shutting down")
        self.assertIn("shutting down", await bob.readText())
        self.assertEqual(await anonymous.readText(), "info: server shutting down")
        for client in (alice, bob, anonymous):
            await client.waitClosed()
            self.assertEqual(client.lines, type(client.lines)())
