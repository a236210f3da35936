"""
Tests for L{chatsvc.chat.session}: the chat session on its own, driven
through an in-memory sink with no line framing at all (as a WebSocket
gateway drives it: one frame per line), and what every gateway on one
hub shares (L{Population}).
"""

from __future__ import annotations

import json

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chatsvc.chat import events
from chatsvc.chat.lines import ChatFactory, ChatLineProtocol
from chatsvc.chat.rooms import Hub
from chatsvc.chat.session import ChatLimits, ChatSession, IChatSink, Population
from chatsvc.testing import Clock, MemoryHistory, MemorySink, lineConnection

#: Sat Nov 21 10:00:00 2026 UTC.
START = 1795255200.0

#: Renderings without a line ending, for a transport that frames by
#: itself (a WebSocket's text frames); registered for each test.
FRAMES = {"text": "session-text", "json": "session-json", events.SENT: "session-sent"}


def registerFrames(test: unittest.SynchronousTestCase) -> None:
    for name, framed in FRAMES.items():
        events.register(framed, events.RENDERINGS[name].render, ending=b"")
        test.addCleanup(events.unregister, framed)


class Frames:
    """
    One session on a L{MemorySink} whose frames carry no line ending.
    """

    def __init__(self, hub, clock, population=None, limits=None) -> None:
        self.sink = MemorySink(ending=b"", renderings=FRAMES)
        self.session = ChatSession(hub, self.sink, limits or ChatLimits(), clock, population)

    def send(self, *lines: str) -> None:
        for line in lines:
            self.session.lineReceived(line)

    def frames(self) -> list[str]:
        frames = [w.decode("utf-8") for w in self.sink.take()]
        for frame in frames:
            assert "\n" not in frame, frame
        return frames

    def objects(self) -> list[dict]:
        return [json.loads(frame) for frame in self.frames()]


class FramedSessionTests(unittest.SynchronousTestCase):
    """
    A whole chat session without LF framing: every write is one frame,
    one line of the protocol without its ending.
    """

    def setUp(self) -> None:
        registerFrames(self)
        self.clock = Clock()
        self.clock.advance(START)
        self.history = MemoryHistory()
        self.hub = Hub(self.clock, self.history)
        self.population = Population(self.clock)

    def connect(self) -> Frames:
        return Frames(self.hub, self.clock, self.population)

    def test_conversation(self) -> None:
        """
        Login, a message both ways, /who, /msg, /me, /nick, /history and
        /quit, in JSON on one side and text on the other.
        """
        alice = self.connect()
        alice.send("/format json", "alice")
        info, success, joined = alice.objects()
        self.assertEqual(info["text"], "format is now json")
        self.assertEqual((joined["type"], joined["name"]), ("join", "alice"))
        self.assertEqual(
            (success["type"], success["name"], success["room"], success["names"]),
            ("success", "alice", "lobby", []),
        )
        bob = self.connect()
        bob.send("bob")
        self.assertEqual(bob.frames(), ["success: logged in as bob, in #lobby with: alice"])
        [joined] = alice.objects()
        self.assertEqual((joined["type"], joined["name"]), ("join", "bob"))
        alice.send("hello bob")
        [ack] = alice.objects()
        self.assertEqual((ack["type"], ack["text"], ack["id"]), ("message", "hello bob", 1))
        self.assertEqual(bob.frames(), ["[Sat Nov 21 10:00:00 2026] #lobby alice: hello bob"])
        bob.send("hi alice", "/me waves", "/msg alice psst", "/who")
        self.assertEqual(
            bob.frames(),
            [
                "[Sat Nov 21 10:00:00 2026] (private) -> alice: psst",
                "info: #lobby: alice, bob",
            ],
        )
        self.assertEqual(
            [(o["type"], o["text"]) for o in alice.objects()],
            [("message", "hi alice"), ("action", "waves"), ("private", "psst")],
        )
        bob.send("/nick robert", "/history 2")
        self.assertEqual(
            bob.frames(),
            [
                "[Sat Nov 21 10:00:00 2026] #lobby bob is now robert",
                "[Sat Nov 21 10:00:00 2026] #lobby bob: hi alice",
                "[Sat Nov 21 10:00:00 2026] #lobby * bob waves",
                "info: end of history of #lobby (2 messages)",
            ],
        )
        [renamed] = alice.objects()
        self.assertEqual((renamed["from"], renamed["to"]), ("bob", "robert"))
        bob.send("/quit gone fishing")
        self.assertEqual(bob.frames(), ["info: bye"])
        self.assertTrue(bob.sink.closed)
        [left] = alice.objects()
        self.assertEqual((left["type"], left["reason"]), ("leave", "quit: gone fishing"))
        bob.session.connectionLost()
        self.assertEqual(alice.frames(), [])
        self.assertEqual(self.hub.who("lobby"), ("lobby", ["alice"]))

    def test_pacing(self) -> None:
        """
        Past the burst the session asks its sink to hold input, and
        releases it when the rate allows.
        """
        limits = ChatLimits(floodBurst=2, floodRate=1)
        alice = Frames(self.hub, self.clock, self.population, limits)
        pacing = alice.session.pacing
        self.assertEqual([pacing.allowed() for _ in range(3)], [True, True, False])
        self.assertEqual(alice.sink.holds, {"flood"})
        self.clock.advance(1)
        self.assertEqual(alice.sink.holds, set())
        self.assertTrue(pacing.allowed())

    def test_loginTimeout(self) -> None:
        alice = self.connect()
        self.clock.advance(ChatLimits.loginTimeout)
        self.assertEqual(alice.frames(), ["error: login timeout: no login within 30 seconds"])
        self.assertTrue(alice.sink.closed)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IChatSink, MemorySink()))


class PopulationTests(unittest.SynchronousTestCase):
    """
    Every gateway on one hub shares one population: one backlog that
    holds senders on every side, one shutdown.
    """

    def setUp(self) -> None:
        registerFrames(self)
        self.clock = Clock()
        self.clock.advance(START)
        self.hub = Hub(self.clock, MemoryHistory())
        self.population = Population(self.clock)
        self.lines = ChatFactory(self.hub, ChatLimits(), self.clock, self.population)
        self.other = ChatFactory(self.hub, ChatLimits(), self.clock, self.population)

    def test_shared(self) -> None:
        self.assertIs(self.lines.backlog, self.other.backlog)
        self.assertIs(self.lines.batcher, self.other.batcher)

    def test_lineProtocolIsASink(self) -> None:
        proto, _ = lineConnection(self.lines)
        self.assertIsInstance(proto, ChatLineProtocol)
        self.assertTrue(verifyObject(IChatSink, proto))

    def test_shutdownAcrossGateways(self) -> None:
        """
        Closing one gateway's factory tells every session of every
        gateway, and nobody hears the others leave.
        """
        proto, transport = lineConnection(self.lines)
        proto.dataReceived(b"alice\n")
        framed = Frames(self.hub, self.clock, self.population)
        framed.send("bob")
        framed.frames()
        self.lines.batcher.flush()
        transport.clear()
        self.lines.closeAll("server shutting down")
        self.lines.batcher.flush()
        self.assertEqual(transport.value(), b"info: server shutting down\n")
        self.assertEqual(framed.frames(), ["info: server shutting down"])
        self.assertTrue(framed.sink.closed)
        self.assertEqual(self.hub.members, {})

    def test_backlogHoldsEverySide(self) -> None:
        """
        While fan-out output is backed up, a sender on another gateway is
        held too.
        """
        framed = Frames(self.hub, self.clock, self.population)
        backlog = self.population.backlog
        proto, _ = lineConnection(self.lines)  # a reader on the line side, backed up
        backlog.grew(proto, backlog.limit + 1)
        self.assertFalse(framed.session.pacing.allowed())
        self.assertEqual(framed.sink.holds, {"backlog"})
        backlog.drained(proto)
        self.assertEqual(framed.sink.holds, set())
        self.assertTrue(framed.session.pacing.allowed())
