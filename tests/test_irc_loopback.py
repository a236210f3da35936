"""
The IRC gateway over real loopback sockets, beside the line protocol on
the same Hub: a real IRC client library (C{irc}, as bots use it) talking
with a line user, fan-out across both sides with nothing lost or
duplicated, and an IRC client that never reads.
"""

from __future__ import annotations

import gc
import socket
import threading
import time
import weakref

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import SkipTest, TestCase

from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.irc.protocol import IRCFactory
from chatsvc.testing import MemoryHistory
from tests.support import DEADLINE, LineClient, connect, waitFor, withDeadline


class IRCLineClient(LineClient):
    """
    A test client for IRC: lines end with CRLF (the CR is removed).
    """

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data.replace(b"\r\n", b"\n"))

    def sendLine(self, line) -> None:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.transport.write(line + b"\r\n")

    async def until(self, fragment: bytes) -> bytes:
        """
        Read lines until one holds C{fragment}; return it.
        """
        while True:
            line = await self.readLine()
            if fragment in line:
                return line


class Servers:
    """
    A Hub with the line protocol and the IRC gateway on loopback ports.
    """

    def __init__(self, test: TestCase, limits: ChatLimits | None = None) -> None:
        limits = limits or ChatLimits()
        self.history = MemoryHistory(perRoom=100000)
        self.hub = Hub(reactor, self.history, historyLimit=1000)
        self.chat = ChatFactory(self.hub, limits, reactor)
        self.irc = IRCFactory(self.hub, limits, reactor, self.chat.population, self.chat.policy)
        self.chatPort = reactor.listenTCP(0, self.chat, backlog=1024, interface="127.0.0.1")
        self.ircPort = reactor.listenTCP(0, self.irc, backlog=1024, interface="127.0.0.1")
        self.clients: list[LineClient] = []
        test.addCleanup(self.stop)

    async def line(self, name: str, factory=LineClient) -> LineClient:
        client = await connect(self.chatPort.getHost().port, factory=factory)
        self.clients.append(client)
        client.sendLine(name)
        assert (await client.readText()).startswith("success:")
        return client

    async def ircClient(self, nick: str, factory=IRCLineClient) -> IRCLineClient:
        client = await connect(self.ircPort.getHost().port, factory=factory)
        self.clients.append(client)
        client.sendLine(f"NICK {nick}")
        client.sendLine(f"USER {nick} 0 * :{nick}")
        await client.until(b" 422 ")
        return client

    async def stop(self) -> None:
        for client in self.clients:
            if not client.isClosed:
                client.transport.abortConnection()
        for client in self.clients:
            await client.waitClosed()
        await waitFor(
            lambda: not self.chat.connections and not self.irc.connections, "every client to go"
        )
        await defer.maybeDeferred(self.chatPort.stopListening)
        await defer.maybeDeferred(self.ircPort.stopListening)


def ircBot(port: int, seen: list, ready: threading.Event) -> list:
    """
    A bot on the C{irc} library, in a thread of its own: registers, joins
    #lobby, answers the line user's greeting, and returns once it has
    seen that user's action and nick change (or the deadline passed).
    """
    import irc.client

    loop = irc.client.Reactor()
    done = threading.Event()

    def on(connection, event):
        nick = irc.client.NickMask(event.source).nick if event.source else None
        seen.append((event.type, nick, event.arguments))
        if event.type == "welcome":
            connection.join("#lobby")
        elif event.type == "join" and nick == "ircbot":
            ready.set()
        elif event.type == "pubmsg" and event.arguments == ["hello irc"]:
            connection.privmsg("#lobby", "hello line")
        elif event.type == "nick":
            connection.part("#lobby", "later")  # the library sends no colon: one word
            done.set()

    loop.add_global_handler("all_events", on)
    connection = loop.server().connect("127.0.0.1", port, "ircbot", ircname="A Bot")
    deadline = time.monotonic() + DEADLINE
    while not done.is_set() and time.monotonic() < deadline:
        loop.process_once(0.05)
    features = connection.features
    connection.quit("done")
    for _ in range(20):
        loop.process_once(0.01)
    connection.close()
    return [features.nicklen, features.chantypes, features.casemapping]


class IRCLibraryTests(TestCase):
    async def test_botAndLineUser(self) -> None:
        """
        The C{irc} library registers, reads ISUPPORT, joins #lobby, and
        talks with a line user both ways; it sees the line user's C{/me}
        as an action and C{/nick} as a NICK; the line user sees its PART.
        """
        try:
            import irc.client  # noqa: F401
        except ImportError:
            raise SkipTest("the irc library is not installed (pip install irc)") from None
        servers = Servers(self)
        bob = await servers.line("bob")
        seen: list = []
        ready = threading.Event()
        bot = threads.deferToThread(ircBot, servers.ircPort.getHost().port, seen, ready)
        await waitFor(ready.is_set, "the bot to join #lobby")
        self.assertIn("ircbot joined", await bob.readText())
        bob.sendLine("hello irc")
        self.assertTrue((await bob.readText()).endswith("#lobby ircbot: hello line"))
        bob.sendLine("/me waves")
        bob.sendLine("/nick robert")
        self.assertTrue((await bob.readText()).endswith("#lobby bob is now robert"))
        line = await bob.readText()
        self.assertTrue(line.endswith("#lobby ircbot left (part: later)"), line)
        features = await withDeadline(bot, "the bot to finish")
        self.assertEqual(features, [24, "#", "rfc8265"])
        kinds = [
            (kind, who, args) for kind, who, args in seen if kind in ("pubmsg", "action", "nick")
        ]
        self.assertEqual(
            kinds,
            [
                ("pubmsg", "bob", ["hello irc"]),
                ("action", "bob", ["waves"]),
                ("nick", "bob", []),
            ],
        )


class Tally(IRCLineClient):
    """
    Counts C{m N} messages per sender, from IRC or line lines alike.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bySender: dict[bytes, list[int]] = {}
        self.count = 0
        self.expected = 0
        self.counting = False
        self.done = defer.Deferred()
        self._tail = b""

    def dataReceived(self, data: bytes) -> None:
        if not self.counting:
            return super().dataReceived(data)
        *complete, self._tail = (self._tail + data).split(b"\n")
        for line in complete:
            line = line.rstrip(b"\r")
            if line.startswith(b":") and b" PRIVMSG #lobby :m " in line:
                sender = line[1:].split(b"!", 1)[0]
                number = line.rsplit(b" :m ", 1)[1]
            elif b"#lobby " in line and b": m " in line:
                head, _, number = line.partition(b": m ")
                sender = head.rsplit(b" ", 1)[1]
            else:
                continue
            self.bySender.setdefault(sender, []).append(int(number.split(b" ")[0]))
            self.count += 1
        if self.count >= self.expected and not self.done.called:
            self.done.callback(self)


class FanOutTests(TestCase):
    async def test_bothSides(self) -> None:
        """
        20 IRC and 20 line members of #lobby each send 10 messages at
        once: every member gets every other member's messages exactly
        once, in each sender's order, whichever side either is on.
        """
        servers = Servers(self, ChatLimits(floodBurst=100, recvQueue=1000))
        irc = [await servers.ircClient(f"i{n:02}", factory=Tally) for n in range(20)]
        lines = [await servers.line(f"l{n:02}", factory=Tally) for n in range(20)]
        for client in irc:
            client.sendLine("JOIN #lobby")
        await waitFor(lambda: len(servers.hub.room("lobby").members) == 40, "every join")
        everyone = irc + lines
        for client in everyone:
            client.lines.clear()
            client.counting = True
            client.expected = 39 * 10
        for client in irc:
            client.transport.write(b"".join(b"PRIVMSG #lobby :m %d\r\n" % n for n in range(10)))
        for client in lines:
            client.transport.write(b"".join(b"m %d\n" % n for n in range(10)))
        await withDeadline(defer.gatherResults([c.done for c in everyone]), "every message", 120)
        for client in everyone:
            self.assertEqual(len(client.bySender), 39)
            for sender, numbers in client.bySender.items():
                self.assertEqual(numbers, list(range(10)), sender)


class SlowReaderTests(TestCase):
    async def test_ircNeverReads(self) -> None:
        """
        An IRC client that never reads while the room floods is cut off at
        the send-queue limit; the room sees it leave (too slow), the
        others get everything, and nothing of it is kept.
        """
        limits = ChatLimits(sendQueue=256 * 1024, floodBurst=100000, recvQueue=100000)
        servers = Servers(self, limits)
        slow = await servers.ircClient("slow")
        slow.sendLine("JOIN #lobby")
        await slow.until(b" 366 ")
        reader = await servers.line("reader", factory=Tally)
        sender = await servers.line("sender")
        slow.transport.pauseProducing()
        slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        (proto,) = servers.irc.connections
        proto.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        slowRef = weakref.ref(proto)
        del proto
        reader.lines.clear()
        reader.counting = True
        reader.expected = 1200
        sender.transport.write(b"".join(b"m %d %s\n" % (n, b"x" * 1000) for n in range(1200)))
        await withDeadline(reader.done, "every message")
        await waitFor(lambda: servers.hub.find("slow") is None, "the slow reader to be cut")
        self.assertEqual(reader.bySender[b"sender"], list(range(1200)))
        self.assertNotIn("slow", servers.hub.who("lobby")[1])
        self.assertEqual(len(servers.irc.connections), 0)
        gc.collect()
        self.assertIsNone(slowRef(), "the slow reader's connection is still referenced")
