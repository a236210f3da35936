"""
Tests for L{chatsvc.chat.rooms}: the chat domain without a reactor, with
plain calls, a L{Clock} and the doubles of L{chatsvc.testing}.
"""

from __future__ import annotations

from twisted.trial import unittest

from chatsvc.chat import events
from chatsvc.chat.events import Event
from chatsvc.chat.rooms import (
    TOPIC_MAX,
    Hub,
    InvalidName,
    NameTaken,
    NoSuchName,
    NotInRoom,
    TooLong,
)
from chatsvc.testing import Clock, FakeListener, MemoryHistory, RecordingBus, RecordingState


class HubTestCase(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.history = MemoryHistory()
        self.bus = RecordingBus()
        self.hub = Hub(self.clock, self.history, self.bus, historyLimit=50)

    def member(self, name: str, room: str | None = "lobby"):
        """
        Log C{name} in and into C{room}; every listener so far forgets
        what it heard, so that tests see only what they cause.
        """
        listener = FakeListener()
        member = self.hub.login(name, listener)
        if room is not None:
            self.hub.join(member, room)
        for m in self.hub.members.values():
            m.listener.clear()
        return member, listener


class LoginTests(HubTestCase):
    def test_login(self) -> None:
        member, _ = self.member("alice", None)
        self.assertEqual(member.name, "alice")
        self.assertIs(self.hub.find("alice"), member)
        self.assertIs(self.hub.find("ALICE"), member)
        self.assertEqual(member.rooms, {})

    def test_invalid(self) -> None:
        for name in ["", "1x", "a b", "a\u200bb", "x" * 25]:
            self.assertRaises(InvalidName, self.hub.login, name, FakeListener())
        self.assertEqual(self.hub.members, {})

    def test_taken(self) -> None:
        """
        Names collide by case, NFKC and confusable skeleton; the holder is
        not disturbed by the attempts.
        """
        alice, listener = self.member("alice")
        for other in ["alice", "ALICE", "Alice", "ａｌｉｃｅ", "\u0430lice", "al\u0131ce", "aIice"]:
            error = self.assertRaises(NameTaken, self.hub.login, other, FakeListener())
            self.assertEqual(error.code, "reuse")
            self.assertIn("taken", str(error))
        self.assertIs(self.hub.find("alice"), alice)
        self.assertEqual(list(self.hub.members.values()), [alice])
        self.assertEqual(listener.events, [])
        self.hub.say(alice, alice.rooms["lobby"], "still here")
        self.assertEqual(len(self.history.messages("lobby")), 1)

    def test_takenTheOtherWay(self) -> None:
        """
        Whoever came first holds the name, whatever form it had.
        """
        self.member("ＡＬＩＣＥ", None)
        self.assertRaises(NameTaken, self.hub.login, "alice", FakeListener())
        self.member("\u0432ob", None)  # Cyrillic ve is not b: a different name
        self.member("bob", None)

    def test_quitFreesName(self) -> None:
        alice, _ = self.member("alice")
        self.hub.quit(alice)
        self.assertIsNone(self.hub.find("alice"))
        again, _ = self.member("Alice")
        self.assertIs(self.hub.find("alice"), again)

    def test_quitTwice(self) -> None:
        alice, _ = self.member("alice")
        self.hub.quit(alice)
        self.hub.quit(alice, "again")
        self.assertEqual(self.bus.kinds().count(events.LEAVE), 1)


class RoomTests(HubTestCase):
    def test_join(self) -> None:
        """
        Joining publishes a join to the room, the joiner included; the
        room is created on first join, with its name as given.
        """
        alice, aliceHears = self.member("alice")
        bob, bobHears = self.member("bob", None)
        room = self.hub.join(bob, "#lobby")
        self.assertIs(room, alice.rooms["lobby"])
        self.assertEqual(room.names(), ["alice", "bob"])
        for heard in (aliceHears, bobHears):
            [event] = heard.events
            self.assertEqual((event.kind, event.room, event.name), (events.JOIN, "lobby", "bob"))
            self.assertEqual(event.ts, 1000)

    def test_joinAgain(self) -> None:
        alice, heard = self.member("alice")
        self.hub.join(alice, "LOBBY")
        self.assertEqual(heard.events, [])
        self.assertEqual(list(alice.rooms), ["lobby"])

    def test_joinInvalid(self) -> None:
        alice, _ = self.member("alice", None)
        self.assertRaises(InvalidName, self.hub.join, alice, "no room")
        self.assertEqual(self.hub.rooms, {})

    def test_manyRooms(self) -> None:
        """
        A member may be in many rooms at once.
        """
        alice, _ = self.member("alice")
        self.hub.join(alice, "dev")
        self.assertEqual(sorted(alice.rooms), ["dev", "lobby"])
        self.assertEqual(self.hub.roomList(), [("dev", 1), ("lobby", 1)])

    def test_part(self) -> None:
        alice, aliceHears = self.member("alice")
        bob, bobHears = self.member("bob")
        self.clock.advance(5)
        self.hub.part(bob, bob.rooms["lobby"], "part")
        [event] = aliceHears.events
        self.assertEqual(
            (event.kind, event.name, event.text, event.ts), (events.LEAVE, "bob", "part", 1005)
        )
        self.assertEqual(bobHears.events, [])
        self.assertEqual(bob.rooms, {})
        self.assertEqual(self.hub.who("lobby"), ("lobby", ["alice"]))

    def test_quitReason(self) -> None:
        alice, heard = self.member("alice")
        bob, _ = self.member("bob")
        self.hub.join(bob, "dev")
        self.hub.join(alice, "dev")
        heard.clear()
        self.hub.quit(bob, "quit: gone fishing")
        self.assertEqual(
            sorted((e.room, e.kind, e.text) for e in heard.events),
            [("dev", "leave", "quit: gone fishing"), ("lobby", "leave", "quit: gone fishing")],
        )

    def test_quitSilently(self) -> None:
        """
        At shutdown nobody hears the others leave.
        """
        _, heard = self.member("alice")
        bob, _ = self.member("bob")
        self.hub.quit(bob, "shutting down", announce=False)
        self.assertEqual(heard.events, [])
        self.assertEqual(self.hub.who("lobby"), ("lobby", ["alice"]))
        self.assertIsNone(self.hub.find("bob"))

    def test_emptyRoomForgotten(self) -> None:
        """
        An empty room where nothing was said is forgotten; one with
        messages is kept (its ids must go on increasing).
        """
        alice, _ = self.member("alice", "quiet")
        self.hub.part(alice, alice.rooms["quiet"], "part")
        self.assertIsNone(self.hub.room("quiet"))
        room = self.hub.join(alice, "busy")
        self.hub.say(alice, room, "hi")
        self.hub.quit(alice)
        self.assertIs(self.hub.room("busy"), room)
        self.assertEqual(self.hub.roomList(), [])

    def test_who(self) -> None:
        self.member("alice")
        self.member("bob")
        self.assertEqual(self.hub.who("#LOBBY"), ("lobby", ["alice", "bob"]))
        self.assertEqual(self.hub.who("nowhere"), ("nowhere", []))
        self.assertRaises(InvalidName, self.hub.who, "no where")

    def test_roomList(self) -> None:
        self.member("alice", "zeta")
        self.member("bob", "Alpha")
        self.member("carol", "alpha")
        self.assertEqual(self.hub.roomList(), [("Alpha", 2), ("zeta", 1)])


class TalkTests(HubTestCase):
    def test_say(self) -> None:
        alice, aliceHears = self.member("alice")
        _, bobHears = self.member("bob")
        room = alice.rooms["lobby"]
        self.clock.advance(1.5)
        event = self.hub.say(alice, room, "hello")
        self.assertEqual(
            (event.kind, event.room, event.name, event.text, event.id, event.ts),
            (events.MESSAGE, "lobby", "alice", "hello", 1, 1001.5),
        )
        # Everybody in the room gets the same event (adapters decide about
        # echoes), and nothing keeps the member alive through it: its
        # origin is the sender's id, a string, kept after delivery.
        self.assertEqual(aliceHears.events, [event])
        self.assertEqual(bobHears.events, [event])
        self.assertEqual(event.origin, alice.id)
        self.assertIsInstance(event.origin, str)
        self.assertEqual(self.history.messages("lobby"), [event])

    def test_harmless(self) -> None:
        """
        Whatever an adapter hands in, relayed text is harmless: controls
        neutralised, bidi overrides replaced, and ESC never shown as a
        character whose UTF-8 holds the byte 0x9B (CSI to some terminals).
        """
        alice, _ = self.member("alice")
        bob, heard = self.member("bob")
        hostile = "\x1b[2J\x07\u009b1m\x00\u202eabc\u241b"
        self.hub.say(alice, alice.rooms["lobby"], hostile)
        self.hub.act(alice, alice.rooms["lobby"], hostile)
        self.hub.private(alice, "bob", hostile)
        self.hub.quit(alice, "quit: " + hostile)
        self.assertEqual(len(heard.events), 4)
        for event in heard.events:
            for fmt in events.FORMATS:
                data = event.encoded(fmt)
                for bad in (b"\x1b", b"\x07", b"\x9b", b"\x00", "\u202e".encode()):
                    self.assertNotIn(bad, data, (fmt, event))
        self.assertEqual(heard.events[0].text, "\u238b[2J\u2407\ufffd1m\u2400\ufffdabc\u238b")
        self.assertIs(self.hub.say(bob, bob.rooms["lobby"], "plain").text, "plain")

    def test_originDuringDelivery(self) -> None:
        """
        During delivery the event names the member that caused it, by id,
        so an adapter can tell its own events.
        """
        seen = []

        class Peek(FakeListener):
            def deliver(self, event):
                seen.append(event.origin)

        alice = self.hub.login("alice", Peek())
        self.hub.join(alice, "lobby")
        self.hub.say(alice, alice.rooms["lobby"], "x")
        self.assertEqual(seen, [alice.id, alice.id])

    def test_originAfterwards(self) -> None:
        """
        An event that comes back later (from another node, through a
        cluster bus) still names its sender: the origin is not cleared
        after publishing, and a copy made from its plain data is told
        apart the same way.
        """
        alice, heard = self.member("alice")
        event = self.hub.say(alice, alice.rooms["lobby"], "x")
        self.assertEqual(event.origin, alice.id)
        again = Event.fromDict(event.toDict())
        heard.clear()
        self.hub.deliver(again)
        [late] = heard.events
        self.assertEqual(late.origin, alice.id)

    def test_idsPerRoom(self) -> None:
        alice, _ = self.member("alice")
        lobby = alice.rooms["lobby"]
        dev = self.hub.join(alice, "dev")
        ids = [
            self.hub.say(alice, lobby, "1").id,
            self.hub.act(alice, lobby, "2").id,
            self.hub.say(alice, dev, "1").id,
            self.hub.say(alice, lobby, "3").id,
        ]
        self.assertEqual(ids, [1, 2, 1, 3])
        self.assertEqual(
            [e.kind for e in self.history.messages("lobby")],
            [events.MESSAGE, events.ACTION, events.MESSAGE],
        )

    def test_notInRoom(self) -> None:
        alice, _ = self.member("alice")
        bob, _ = self.member("bob", "dev")
        error = self.assertRaises(NotInRoom, self.hub.say, bob, alice.rooms["lobby"], "x")
        self.assertEqual(error.code, "not-in-room")
        self.assertEqual(self.history.messages("lobby"), [])

    def test_private(self) -> None:
        alice, aliceHears = self.member("alice")
        bob, bobHears = self.member("bob", "dev")
        _, carolHears = self.member("carol")
        event = self.hub.private(alice, "BOB", "psst")
        self.assertEqual(
            (event.kind, event.room, event.name, event.target, event.text),
            (events.PRIVATE, None, "alice", "bob", "psst"),
        )
        self.assertEqual(bobHears.events, [event])
        self.assertEqual(aliceHears.events, [event])
        self.assertEqual(carolHears.events, [])
        self.assertEqual(self.history.messages("lobby"), [])

    def test_privateToSelf(self) -> None:
        alice, heard = self.member("alice")
        self.hub.private(alice, "alice", "note")
        self.assertEqual(len(heard.events), 1)

    def test_privateNobody(self) -> None:
        alice, _ = self.member("alice")
        error = self.assertRaises(NoSuchName, self.hub.private, alice, "nobody", "x")
        self.assertEqual(error.code, "no-such-name")

    def test_recent(self) -> None:
        alice, _ = self.member("alice")
        room = alice.rooms["lobby"]
        for i in range(60):
            self.hub.say(alice, room, str(i))
        self.assertEqual([e.text for e in self.hub.recent(room, 3)], ["57", "58", "59"])
        self.assertEqual(len(self.hub.recent(room, 1000)), 50)  # historyLimit
        self.assertEqual(self.hub.recent(room, 1000)[0].text, "10")
        self.assertEqual(self.hub.recent(room, 0), [])
        self.assertEqual(self.hub.recent(room, -1), [])

    def test_leavingDuringDelivery(self) -> None:
        """
        A member that leaves while an event is being delivered (its
        connection broke on write) does not upset the delivery to others.
        """
        hub = self.hub

        class Breaking(FakeListener):
            def deliver(self, event):
                super().deliver(event)
                if event.kind == events.MESSAGE:
                    hub.quit(self.member, "too slow")

        _, first = self.member("first")
        breaking = Breaking()
        breaking.member = hub.login("breaking", breaking)
        hub.join(breaking.member, "lobby")
        sender, last = self.member("last")
        first.clear()
        hub.say(sender, sender.rooms["lobby"], "hello")
        self.assertEqual(first.kinds(), [events.MESSAGE, events.LEAVE])
        self.assertEqual(set(last.kinds()), {events.MESSAGE, events.LEAVE})
        self.assertEqual(hub.who("lobby"), ("lobby", ["first", "last"]))


class MemberIdTests(HubTestCase):
    def test_unique(self) -> None:
        """
        Every login gets a new id, also for a name used before; the ids
        carry the hub's node id.
        """
        hub = Hub(Clock(), nodeId="node7")
        ids = []
        for _ in range(3):
            member = hub.login("alice", FakeListener())
            ids.append(member.id)
            hub.quit(member)
        self.assertEqual(len(set(ids)), 3)
        for id in ids:
            self.assertIsInstance(id, str)
            self.assertTrue(id.startswith("node7:"), id)

    def test_nodesDiffer(self) -> None:
        """
        Without a node id, two hubs (two nodes) still give different ids.
        """
        first = Hub(Clock()).login("alice", FakeListener())
        second = Hub(Clock()).login("alice", FakeListener())
        self.assertNotEqual(first.id, second.id)

    def test_privateSenderById(self) -> None:
        """
        The sender of a private message gets its copy by its id: also
        when it has another name by the time the message is delivered.
        """
        alice, aliceHears = self.member("alice")
        _, bobHears = self.member("bob")
        event = self.hub.private(alice, "bob", "psst")
        self.hub.rename(alice, "alicia")
        aliceHears.clear()
        bobHears.clear()
        self.hub.deliver(Event.fromDict(event.toDict()))
        self.assertEqual(len(aliceHears.events), 1)
        self.assertEqual(len(bobHears.events), 1)


class StateTests(HubTestCase):
    """
    The hub asks its state (L{IChatState}) for what all nodes share, and
    nothing when it delivers.
    """

    def setUp(self) -> None:
        super().setUp()
        self.state = RecordingState()
        self.hub = Hub(self.clock, self.history, self.bus, historyLimit=50, state=self.state)

    def test_sharedThroughState(self) -> None:
        """
        Names, membership, ids and lookups are the state's: a second hub
        on the same state (a second node) sees the first one's members,
        cannot take their names, and continues their rooms' ids.
        """
        alice, _ = self.member("alice")
        self.hub.say(alice, alice.rooms["lobby"], "one")
        other = Hub(Clock(), MemoryHistory(), RecordingBus(), state=self.state, nodeId="other")
        self.assertRaises(NameTaken, other.login, "ALICE", FakeListener())
        bob = other.login("bob", FakeListener())
        lobby = other.join(bob, "lobby")
        self.assertEqual(other.who("lobby"), ("lobby", ["alice", "bob"]))
        self.assertEqual(self.hub.who("lobby"), ("lobby", ["alice", "bob"]))
        self.assertEqual(self.hub.roomList(), [("lobby", 2)])
        self.assertEqual(other.say(bob, lobby, "two").id, 2)
        # Known to the state, not a member of this node.
        self.assertIsNone(other.find("alice"))
        self.assertEqual(other.private(bob, "alice", "hi").target, "alice")

    def test_renameIsOneCall(self) -> None:
        """
        A rename is one state call (claim new, release old: atomic), and
        a refused one changes nothing.
        """
        alice, _ = self.member("alice")
        self.member("bob")
        del self.state.calls[:]
        self.hub.rename(alice, "alicia")
        self.assertEqual(self.state.calls, ["rename"])
        self.assertRaises(NameTaken, self.hub.rename, alice, "bob")
        self.assertEqual(self.state.holder("alicia")[1], "alicia")
        self.assertIsNone(self.state.holder("alice"))

    def test_deliveryAsksNothing(self) -> None:
        """
        Fan-out is the hot path: it never asks the state.
        """
        alice, _ = self.member("alice")
        bob, _ = self.member("bob")
        event = self.hub.say(alice, alice.rooms["lobby"], "x")
        private = self.hub.private(alice, "bob", "y")
        del self.state.calls[:]
        for _ in range(3):
            self.hub.deliver(event)
            self.hub.deliver(private)
        self.assertEqual(self.state.calls, [])

    def test_quitReleases(self) -> None:
        alice, _ = self.member("alice")
        self.hub.quit(alice)
        self.assertIsNone(self.state.holder("alice"))
        self.assertIsNone(self.state.who("lobby"))


class SnapshotTests(HubTestCase):
    def test_snapshotShared(self) -> None:
        """
        Deliveries share one snapshot of a room's local members until they
        change; a join or a part makes the next delivery take a new one.
        """
        alice, _ = self.member("alice")
        room = alice.rooms["lobby"]
        self.hub.say(alice, room, "1")
        first = room.targets
        self.hub.say(alice, room, "2")
        self.assertIs(room.targets, first)
        bob, bobHears = self.member("bob")
        self.hub.say(alice, room, "3")
        self.assertEqual(len(room.targets), 2)
        self.assertEqual(bobHears.texts(events.MESSAGE), ["3"])
        self.hub.part(bob, room, "part")
        self.hub.say(alice, room, "4")
        self.assertEqual(len(room.targets), 1)
        self.assertEqual(bobHears.texts(events.MESSAGE), ["3"])


class TopicTests(HubTestCase):
    def test_setTopic(self) -> None:
        """
        A member sets its room's topic: the room hears a TOPIC event, the
        hub answers with it, and it is kept with the history.
        """
        alice, aliceHears = self.member("alice")
        _, bobHears = self.member("bob")
        _, carolHears = self.member("carol", "dev")
        room = alice.rooms["lobby"]
        self.assertIsNone(self.hub.topic(room))
        self.clock.advance(2)
        event = self.hub.setTopic(alice, room, "  release on Friday ")
        self.assertEqual(
            (event.kind, event.room, event.name, event.text, event.ts, event.origin),
            (events.TOPIC, "lobby", "alice", "release on Friday", 1002, alice.id),
        )
        self.assertEqual(aliceHears.events, [event])
        self.assertEqual(bobHears.events, [event])
        self.assertEqual(carolHears.events, [])
        self.assertEqual(self.hub.topic(room), ("release on Friday", "alice", 1002))
        [kept] = self.history.topics()
        self.assertEqual(
            (kept.room, kept.name, kept.text, kept.ts),
            ("lobby", "alice", "release on Friday", 1002),
        )
        # Not a message: no id, not in /history.
        self.assertIsNone(event.id)
        self.assertEqual(self.hub.recent(room, 10), [])

    def test_clear(self) -> None:
        alice, heard = self.member("alice")
        room = alice.rooms["lobby"]
        self.hub.setTopic(alice, room, "something")
        event = self.hub.setTopic(alice, room, "   ")
        self.assertEqual(event.text, "")
        self.assertIsNone(self.hub.topic(room))
        self.assertEqual(self.history.topics(), [])
        self.assertEqual(heard.kinds(), [events.TOPIC, events.TOPIC])

    def test_notInRoom(self) -> None:
        alice, _ = self.member("alice")
        bob, heard = self.member("bob", "dev")
        error = self.assertRaises(NotInRoom, self.hub.setTopic, bob, alice.rooms["lobby"], "x")
        self.assertEqual(error.code, "not-in-room")
        self.assertIsNone(self.hub.topic(alice.rooms["lobby"]))

    def test_tooLong(self) -> None:
        """
        A topic is at most L{TOPIC_MAX} characters; a longer one is refused
        (not cut), and the topic before it stays.
        """
        alice, heard = self.member("alice")
        room = alice.rooms["lobby"]
        self.hub.setTopic(alice, room, "before")
        heard.clear()
        self.hub.setTopic(alice, room, "é" * TOPIC_MAX)
        error = self.assertRaises(TooLong, self.hub.setTopic, alice, room, "x" * (TOPIC_MAX + 1))
        self.assertEqual(error.code, "too-long")
        self.assertIn(str(TOPIC_MAX), str(error))
        self.assertEqual(self.hub.topic(room)[0], "é" * TOPIC_MAX)
        self.assertEqual(len(heard.events), 1)

    def test_harmless(self) -> None:
        alice, _ = self.member("alice")
        event = self.hub.setTopic(alice, alice.rooms["lobby"], "\x1b[2Jbad\u202e")
        self.assertEqual(event.text, "\u238b[2Jbad\ufffd")
        self.assertEqual(self.hub.topic(alice.rooms["lobby"])[0], event.text)

    def test_topicKeepsRoom(self) -> None:
        """
        A room with a topic is not forgotten when everyone leaves, and
        has it when joined again.
        """
        alice, _ = self.member("alice", "quiet")
        self.hub.setTopic(alice, alice.rooms["quiet"], "shh")
        self.hub.quit(alice)
        room = self.hub.room("QUIET")
        self.assertIsNotNone(room)
        self.assertEqual(self.hub.topic(room)[0], "shh")
        bob, _ = self.member("bob", None)
        self.assertEqual(self.hub.topic(self.hub.join(bob, "quiet"))[0], "shh")


class RenameTests(HubTestCase):
    def test_rename(self) -> None:
        alice, aliceHears = self.member("alice")
        self.hub.join(alice, "dev")
        _, bobHears = self.member("bob")
        self.hub.rename(alice, "alicia")
        self.assertEqual(alice.name, "alicia")
        self.assertIs(self.hub.find("ALICIA"), alice)
        self.assertIsNone(self.hub.find("alice"))
        self.assertEqual(
            [(e.kind, e.room, e.name, e.target) for e in bobHears.events],
            [(events.RENAME, "lobby", "alice", "alicia")],
        )
        self.assertEqual(
            sorted((e.room, e.target) for e in aliceHears.events),
            [("dev", "alicia"), ("lobby", "alicia")],
        )
        # The old name is free, the new one taken.
        self.member("Alice", None)
        self.assertRaises(NameTaken, self.hub.login, "\u0430licia", FakeListener())

    def test_taken(self) -> None:
        alice, heard = self.member("alice")
        self.member("bob")
        heard.clear()
        for other in ["bob", "BOB", "ｂｏｂ"]:
            error = self.assertRaises(NameTaken, self.hub.rename, alice, other)
            self.assertEqual(error.code, "reuse")
        self.assertEqual(alice.name, "alice")
        self.assertIs(self.hub.find("alice"), alice)
        self.assertEqual(heard.events, [])

    def test_invalid(self) -> None:
        alice, _ = self.member("alice")
        self.assertRaises(InvalidName, self.hub.rename, alice, "not valid")
        self.assertIs(self.hub.find("alice"), alice)

    def test_ownName(self) -> None:
        """
        A member may change the case of its own name.
        """
        alice, _ = self.member("alice")
        self.hub.rename(alice, "Alice")
        self.assertEqual(alice.name, "Alice")
        self.assertIs(self.hub.find("alice"), alice)
        self.assertRaises(NameTaken, self.hub.login, "alice", FakeListener())


class RestoreTests(HubTestCase):
    def test_idsContinue(self) -> None:
        """
        A new hub on the same history goes on with the ids and answers
        for the recent messages; rooms without members are not listed.
        """
        alice, _ = self.member("alice")
        for i in range(5):
            self.hub.say(alice, alice.rooms["lobby"], f"m{i}")
        dev = self.hub.join(alice, "Dev")
        self.hub.act(alice, dev, "waves")

        hub = Hub(Clock(), self.history, RecordingBus(), historyLimit=3)
        hub.restore()
        self.assertEqual(hub.roomList(), [])
        self.assertEqual(hub.roomList(), [])
        lobby = hub.room("lobby")
        self.assertEqual([e.text for e in hub.recent(lobby, 10)], ["m2", "m3", "m4"])
        self.assertEqual(hub.room("dev").name, "Dev")
        bob = hub.login("bob", FakeListener())
        hub.join(bob, "lobby")
        self.assertEqual(hub.say(bob, lobby, "next").id, 6)
        self.assertEqual(hub.say(bob, hub.join(bob, "dev"), "next").id, 2)

    def test_topicsRestored(self) -> None:
        """
        A new hub on the same history has the rooms' topics, also of a
        room where nothing was said.
        """
        alice, _ = self.member("alice")
        self.hub.say(alice, alice.rooms["lobby"], "hi")
        self.hub.setTopic(alice, alice.rooms["lobby"], "welcome")
        quiet = self.hub.join(alice, "Quiet")
        self.hub.setTopic(alice, quiet, "shh")
        hub = Hub(Clock(), self.history, RecordingBus())
        hub.restore()
        self.assertEqual(hub.topic(hub.room("lobby")), ("welcome", "alice", 1000))
        self.assertEqual(hub.room("quiet").name, "Quiet")
        self.assertEqual(hub.topic(hub.room("quiet"))[0], "shh")

    def test_noHistoryLimit(self) -> None:
        """
        With no recent messages kept, a room known from history is still
        found, with its name and its ids.
        """
        alice, _ = self.member("alice", "Dev")
        self.hub.say(alice, alice.rooms["dev"], "one")
        hub = Hub(Clock(), self.history, RecordingBus(), historyLimit=0)
        hub.restore()
        bob = hub.login("bob", FakeListener())
        room = hub.join(bob, "dev")
        self.assertEqual(room.name, "Dev")
        hub.part(bob, room, "part")
        self.assertEqual(hub.room("dev").name, "Dev")
        self.assertEqual(hub.say(bob, hub.join(bob, "dev"), "two").id, 2)
