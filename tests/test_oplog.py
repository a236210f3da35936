"""
The operator log (L{chatsvc.net.oplog}): one structured event per
connect, login, rename, quit, refusal and cut, none per message; and
C{--log-format json}, down to a real C{twistd -n chat} writing one JSON
object per line.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from chatsvc.chat import service as chatservice
from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.net import oplog
from chatsvc.testing import Clock, MemoryHistory, lineConnection
from tests.support import TwistdProcess, connect, withDeadline


class EventCapture:
    """
    The operator events (those with an C{event} field) chatsvc logs while
    it is installed on the global log publisher.

    @ivar events: the events, in order.
    """

    def __init__(self, case: unittest.SynchronousTestCase) -> None:
        self.events: list[dict] = []
        self._waiting: list[tuple[str, defer.Deferred]] = []
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict) -> None:
        if "event" not in event or not event.get("log_namespace", "").startswith("chatsvc"):
            return
        self.events.append(event)
        for entry in list(self._waiting):
            if entry[0] == event["event"]:
                self._waiting.remove(entry)
                entry[1].callback(event)

    def kinds(self) -> list[str]:
        return [event["event"] for event in self.events]

    def only(self, kind: str) -> dict:
        [event] = [event for event in self.events if event["event"] == kind]
        return event

    def wait(self, kind: str) -> defer.Deferred:
        """
        Fires with the next event of C{kind}.
        """
        d = defer.Deferred()
        self._waiting.append((kind, d))
        return withDeadline(d, f"a {kind} event")


class Peer:
    def __init__(self, factory, host: str, port: int) -> None:
        self.proto, self.transport = lineConnection(factory, host, port)

    def send(self, *lines: str) -> None:
        self.proto.dataReceived("".join(line + "\n" for line in lines).encode("utf-8"))

    def lost(self) -> None:
        self.proto.connectionLost(None)


class SessionEventTests(unittest.SynchronousTestCase):
    """
    The events of chat sessions, on in-memory transports.
    """

    limits = ChatLimits()

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock, MemoryHistory())
        self.factory = ChatFactory(self.hub, self.limits, self.clock)
        self.capture = EventCapture(self)
        self._port = 40000

    def connect(self, host: str = "198.51.100.7") -> Peer:
        self._port += 1
        return Peer(self.factory, host, self._port)

    def test_sessionEvents(self) -> None:
        """
        A session is one event per connect, login, rename, quit and
        disconnect, each naming the peer; messages log nothing.
        """
        alice = self.connect()
        alice.send("alice kitchen", "hello", "/me waves", "/nick alicia", "still here")
        alice.send("/quit gone home")
        alice.lost()
        self.assertEqual(self.capture.kinds(), ["connect", "login", "rename", "quit", "disconnect"])
        peer = "198.51.100.7:40001"
        self.assertTrue(all(event["peer"] == peer for event in self.capture.events))
        login = self.capture.only("login")
        self.assertEqual((login["name"], login["room"]), ("alice", "kitchen"))
        rename = self.capture.only("rename")
        self.assertEqual((rename["old"], rename["name"]), ("alice", "alicia"))
        quit = self.capture.only("quit")
        self.assertEqual(
            (quit["name"], quit["room"], quit["reason"]), ("alicia", "kitchen", "quit: gone home")
        )

    def test_noEventPerMessage(self) -> None:
        """
        Messages, actions, private messages and their deliveries log
        nothing at all.
        """
        alice, bob = self.connect(), self.connect()
        alice.send("alice")
        bob.send("bob")
        del self.capture.events[:]
        for i in range(50):
            alice.send(f"message {i}", "/me nods", "/msg bob psst")
        self.assertEqual(self.capture.events, [])

    def test_closedWithoutLogin(self) -> None:
        """
        A peer that leaves without logging in is a connect and a
        disconnect, no quit.
        """
        self.connect().lost()
        self.assertEqual(self.capture.kinds(), ["connect", "disconnect"])

    def test_textNamesPeer(self) -> None:
        """
        The message text an operator reads names who and what.
        """
        from twisted.logger import formatEvent

        self.connect().send("alice")
        self.assertEqual(
            formatEvent(self.capture.only("login")),
            "chat: 198.51.100.7:40001 logged in as alice in #lobby",
        )

    def test_loginTimeout(self) -> None:
        """
        No login in time: a C{cut} with reason C{login-timeout}.
        """
        self.connect()
        self.clock.advance(self.limits.loginTimeout)
        cut = self.capture.only("cut")
        self.assertEqual((cut["reason"], cut["peer"]), ("login-timeout", "198.51.100.7:40001"))

    def test_wrongProtocol(self) -> None:
        """
        An IRC client on the chat port: a C{cut} with reason
        C{wrong-protocol}.
        """
        self.connect().send("NICK alice")
        self.assertEqual(self.capture.only("cut")["reason"], "wrong-protocol")


class LimitEventTests(unittest.SynchronousTestCase):
    """
    Refusals and cuts by the shared line plumbing and the chat's flood
    control.
    """

    def factory(self, **limits) -> ChatFactory:
        self.clock = Clock()
        self.capture = EventCapture(self)
        return ChatFactory(Hub(self.clock, MemoryHistory()), ChatLimits(**limits), self.clock)

    def test_refusedFull(self) -> None:
        """
        The server is full: C{refused}, reason C{full}.
        """
        factory = self.factory(maxClients=1)
        Peer(factory, "198.51.100.7", 1)
        Peer(factory, "198.51.100.8", 2)
        refused = self.capture.only("refused")
        self.assertEqual((refused["reason"], refused["peer"]), ("full", "198.51.100.8:2"))

    def test_refusedPerAddress(self) -> None:
        """
        Too many from one address: C{refused}, reason C{per-address}.
        """
        factory = self.factory(maxPerAddress=1)
        Peer(factory, "198.51.100.7", 1)
        Peer(factory, "198.51.100.7", 2)
        self.assertEqual(self.capture.only("refused")["reason"], "per-address")

    def test_flood(self) -> None:
        """
        More lines waiting than the receive queue holds: C{cut}, reason
        C{flood}, naming the member; its quit says C{flood}.
        """
        peer = Peer(self.factory(floodBurst=1, recvQueue=2), "198.51.100.7", 1)
        peer.send("alice")
        peer.send(*["x"] * 10)
        cut = self.capture.only("cut")
        self.assertEqual((cut["reason"], cut["name"]), ("flood", "alice"))
        self.assertEqual(self.capture.only("quit")["reason"], "flood")

    def test_tooSlow(self) -> None:
        """
        A peer that does not read past the send queue: C{cut}, reason
        C{too-slow}; its quit says C{too slow}.
        """
        factory = self.factory(sendQueue=1024, floodBurst=1000, recvQueue=1000)
        alice = Peer(factory, "198.51.100.7", 1)
        slow = Peer(factory, "198.51.100.8", 2)
        alice.send("alice")
        slow.send("slow")
        slow.proto.pauseProducing()
        alice.send(*["x" * 100] * 30)
        factory.batcher.flush()  # the end of the turn: the send queue is counted
        slow.lost()
        cut = self.capture.only("cut")
        self.assertEqual((cut["reason"], cut["peer"]), ("too-slow", "198.51.100.8:2"))
        self.assertEqual(self.capture.only("quit")["reason"], "too slow")

    def test_tooLong(self) -> None:
        """
        A line over the limit: C{line-refused}, reason C{too-long}; the
        connection stays.
        """
        peer = Peer(self.factory(maxLine=16), "198.51.100.7", 1)
        peer.send("x" * 100)
        refused = self.capture.only("line-refused")
        self.assertEqual((refused["reason"], refused["limit"]), ("too-long", 16))
        self.assertNotIn("disconnect", self.capture.kinds())

    def test_idleTimeout(self) -> None:
        """
        Nothing received for the idle timeout: C{cut}, reason
        C{idle-timeout}; the member's quit says C{idle}.
        """
        peer = Peer(self.factory(idleTimeout=5), "198.51.100.7", 1)
        peer.send("alice")
        self.clock.advance(5)
        self.assertEqual(self.capture.only("cut")["reason"], "idle-timeout")
        self.assertEqual(self.capture.only("quit")["reason"], "idle")


class LoopbackTests(unittest.TestCase):
    """
    A real chat session on a loopback port, read back from the log.
    """

    async def test_session(self) -> None:
        capture = EventCapture(self)
        hub = Hub(reactor, MemoryHistory())
        factory = ChatFactory(hub, ChatLimits(), reactor)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = await connect(port.getHost().port)
        self.addCleanup(client.close)
        local = client.transport.getHost()
        gone = capture.wait("disconnect")
        client.sendLine("alice")
        await client.readText()
        client.sendLine("hello")
        client.sendLine("/quit")
        await gone
        self.assertEqual(capture.kinds(), ["connect", "login", "quit", "disconnect"])
        self.assertEqual(capture.only("login")["peer"], f"127.0.0.1:{local.port}")


class PeerNameTests(unittest.SynchronousTestCase):
    def test_addresses(self) -> None:
        """
        IPv4 as C{host:port}, IPv6 bracketed, a UNIX peer by its path.
        """
        self.assertEqual(oplog.peerName(IPv4Address("TCP", "10.0.0.1", 5)), "10.0.0.1:5")
        self.assertEqual(oplog.peerName(IPv6Address("TCP", "::1", 5)), "[::1]:5")
        self.assertEqual(oplog.peerName(UNIXAddress(b"/run/chat.sock")), "/run/chat.sock")
        self.assertEqual(oplog.peerName(UNIXAddress(None)), "unix")


class JSONTests(unittest.SynchronousTestCase):
    """
    C{--log-format}: its values, its JSON lines, and how it reaches twistd.
    """

    def setUp(self) -> None:
        self.addCleanup(oplog._destination.clear)

    def test_jsonLine(self) -> None:
        """
        One event is one line of JSON with its fields and its text, even
        when the text has a newline.
        """
        event = {
            "log_format": "chat: {peer} says {what}",
            "peer": "10.0.0.1:5",
            "what": "two\nlines",
            "event": "login",
            "log_time": 1.5,
        }
        line = oplog.jsonLine(event)
        self.assertEqual(line.count("\n"), 1)
        self.assertTrue(line.endswith("\n"))
        loaded = json.loads(line)
        self.assertEqual(loaded["event"], "login")
        self.assertEqual(loaded["peer"], "10.0.0.1:5")
        self.assertEqual(loaded["text"], "chat: 10.0.0.1:5 says two\nlines")

    def test_jsonFileObserver(self) -> None:
        out = io.StringIO()
        observer = oplog.jsonFileObserver(out)
        observer({"log_format": "a", "event": "connect", "log_time": 1.0})
        observer({"log_format": "b", "event": "disconnect", "log_time": 2.0})
        self.assertEqual(
            [json.loads(line)["event"] for line in out.getvalue().splitlines()],
            ["connect", "disconnect"],
        )

    def twistd(self, *args: str):
        from twisted.scripts.twistd import ServerOptions

        config = ServerOptions()
        config.parseOptions(["--pidfile=", *args])
        return config

    def test_setsTwistdLogger(self) -> None:
        """
        Under twistd, C{--log-format json} makes twistd's log observer the
        JSON one, writing where twistd would have written text.
        """
        config = self.twistd("-n", "chat", "--history", ":memory:", "--log-format", "JSON")
        self.assertIs(config["logger"], oplog.jsonObserver)
        self.assertEqual(config.subOptions["log-format"], "json")
        self.assertIsNone(oplog._destination["path"])
        config = self.twistd("--logfile", "chat.log", "chat", "--log-format", "json")
        self.assertEqual(oplog._destination["path"], "chat.log")
        config = self.twistd("chat", "--log-format", "json")
        self.assertEqual(oplog._destination["path"], "twistd.log")

    def test_textLeavesTwistdAlone(self) -> None:
        config = self.twistd("-n", "chat", "--history", ":memory:")
        self.assertIsNone(config["logger"])
        self.assertEqual(config.subOptions["log-format"], "text")

    def errorLine(self, *args: str) -> str:
        err = io.StringIO()
        self.patch(__import__("sys"), "stderr", err)
        with self.assertRaises(SystemExit) as raised:
            self.twistd(*args)
        self.assertEqual(raised.exception.code, 2)
        return err.getvalue()

    def test_unknownFormat(self) -> None:
        """
        An unknown format is one line naming the flag.
        """
        self.assertEqual(
            self.errorLine("-n", "chat", "--log-format", "xml"),
            "twistd chat: error: --log-format: expected text or json, not 'xml' "
            "(see twistd chat --help)\n",
        )

    def test_conflicts(self) -> None:
        """
        twistd's own --logger or --syslog and JSON cannot both choose.
        """
        self.assertIn(
            "--logger",
            self.errorLine(
                "-n", "--logger", "chatsvc.net.oplog.jsonObserver", "chat", "--log-format", "json"
            ),
        )
        self.assertIn("--syslog", self.errorLine("--syslog", "chat", "--log-format", "json"))

    def test_chatOptionsAlone(self) -> None:
        """
        Parsed without twistd (no parent), the option is only checked.
        """
        options = chatservice.Options()
        options.parseOptions(["--log-format", "json", "--history", ":memory:"])
        self.assertEqual(options["log-format"], "json")
        self.assertEqual(oplog._destination, {})


class TwistdJSONTests(unittest.TestCase):
    """
    A real C{twistd -n chat --log-format json}.
    """

    async def test_jsonLines(self) -> None:
        cwd = tempfile.mkdtemp(prefix="chatsvc-oplog-")
        self.addCleanup(shutil.rmtree, cwd, True)
        server = await TwistdProcess.start(
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--history",
            ":memory:",
            "--log-format",
            "json",
            cwd=cwd,
        )
        self.addCleanup(server.stop)
        objects = [json.loads(line) for line in bytes(server.output).splitlines() if line]
        [listening] = [o for o in objects if "listening on" in o["text"]]
        port = int(re.search(r"127\.0\.0\.1:(\d+)", listening["text"]).group(1))
        client = await connect(port)
        self.addCleanup(client.close)
        client.sendLine("alice")
        await client.readText()
        client.sendLine("hello")
        client.sendLine("/quit")
        await withDeadline(client.closed, "the server to close")
        self.assertEqual(await server.stop(), 0)
        objects = [json.loads(line) for line in bytes(server.output).splitlines() if line]
        kinds = [o["event"] for o in objects if "event" in o]
        self.assertEqual(kinds, ["connect", "login", "quit", "disconnect"])
        [login] = [o for o in objects if o.get("event") == "login"]
        self.assertEqual((login["name"], login["room"]), ("alice", "lobby"))
        self.assertEqual(server.stderr, b"")
