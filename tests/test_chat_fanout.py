"""
The grouped room fan-out (L{chatsvc.chat.fanout}): a room message is
rendered once per group of members reading the same bytes and appended to
their turn buffers without a call per member; every member still sees
exactly what its adapter would have written, in the order of events.
Line and IRC connections on one Hub, on C{StringTransport}s and a fake
clock (the web gateway's frames: tests/test_web_socket.py, on sockets).
"""

from __future__ import annotations

from chatsvc.chat import events
from tests.test_irc_session import GatewayTestCase


class GroupingTests(GatewayTestCase):
    def room(self):
        return self.hub.room("lobby")

    def test_oneGroupPerRendering(self) -> None:
        """
        Members reading the same bytes share a group, whatever the side:
        text and JSON lines, IRC with and without server-time are four
        groups for six members; each gets the message once, in its own
        rendering, and the sender (text mode) nothing.
        """
        alice = self.linePeer("alice")
        bob = self.linePeer("bob")
        carol = self.linePeer("carol")
        carol.send("/format json", ending=b"\n")
        dave = self.register("dave")
        erin = self.register("erin", "server-time")
        for peer in (dave, erin):
            peer.send("JOIN #lobby")
        for peer in (alice, bob, carol, dave, erin):
            peer.raw()
        alice.send("one", "two", ending=b"\n")
        fanout = self.room().fanout
        self.assertEqual(
            sorted(len(group.buffers) for group in fanout.groups),
            [1, 1, 1, 2],
        )
        self.assertEqual(
            [line.split("] ", 1)[1] for line in bob.lines()],
            [
                "#lobby alice: one",
                "#lobby alice: two",
            ],
        )
        self.assertEqual(alice.lines(), [])
        self.assertEqual([line.count('"text"') for line in carol.lines()], [1, 1])
        self.assertEqual(
            dave.lines(),
            [
                ":alice!alice@chatsvc PRIVMSG #lobby :one",
                ":alice!alice@chatsvc PRIVMSG #lobby :two",
            ],
        )
        timed = erin.lines()
        self.assertEqual(len(timed), 2)
        self.assertTrue(all(line.startswith("@time=") for line in timed), timed)

    def test_sameBytesObject(self) -> None:
        """
        A turn's messages are joined once per group: every member whose
        view is the whole turn sends the very same C{bytes} object; the
        sender's view leaves its own messages out.
        """
        alice = self.linePeer("alice")
        bob = self.linePeer("bob")
        carol = self.linePeer("carol")
        for peer in (alice, bob, carol):
            peer.raw()
        alice.send("one", "two", ending=b"\n")
        [group] = self.room().fanout.groups
        self.assertEqual(bob.proto._out, [group.token])
        self.assertEqual(carol.proto._out, [group.token])
        whole = group.view(bob.proto._out, 0, None)
        self.assertIs(group.view(carol.proto._out, 0, None), whole)
        self.assertEqual(whole.count(b"#lobby alice: "), 2)
        self.assertEqual(group.view(alice.proto._out, 0, None), b"")
        self.assertEqual(bob.raw(), whole)

    def test_midTurnFlushKeepsTheRest(self) -> None:
        """
        A connection flushed in the middle of a turn (as closing does)
        sends the room's messages so far and keeps a token for the rest
        of the turn, so nothing is lost or sent twice.
        """
        alice = self.linePeer("alice")
        bob = self.linePeer("bob")
        bob.raw()
        alice.send("one", ending=b"\n")
        bob.proto.flushOutput()
        self.assertIn(b"alice: one", bob.transport.value())
        alice.send("two", ending=b"\n")
        self.assertEqual(
            [line.split("] ", 1)[1] for line in bob.lines()],
            ["#lobby alice: one", "#lobby alice: two"],
        )

    def test_formatChangeRegroups(self) -> None:
        """
        A member that changes format (or IRC capabilities) is regrouped at
        the next message: it reads the new rendering from then on.
        """
        alice = self.linePeer("alice")
        bob = self.linePeer("bob")
        dave = self.register("dave")
        dave.send("JOIN #lobby")
        alice.send("before", ending=b"\n")
        self.assertIn("alice: before", bob.lines()[-1])
        self.assertIn("PRIVMSG #lobby :before", dave.lines()[-1])
        bob.send("/format json", ending=b"\n")
        dave.send("CAP REQ :server-time")
        bob.raw()
        dave.raw()
        alice.send("after", ending=b"\n")
        [json] = bob.lines()
        self.assertIn('"text":"after"', json.replace(" ", ""))
        [line] = dave.lines()
        self.assertTrue(line.startswith("@time="), line)

    def test_orderWithOtherEvents(self) -> None:
        """
        A private message written between two room messages of one turn
        is read between them: the fan-out appends to the buffer the
        member's own writes go to.
        """
        alice = self.linePeer("alice")
        bob = self.linePeer("bob")
        carol = self.linePeer("carol")
        bob.raw()
        alice.send("first", ending=b"\n")
        carol.send("/msg bob between", ending=b"\n")
        alice.send("second", ending=b"\n")
        self.assertEqual(
            [line.split("] ", 1)[1] for line in bob.lines()],
            [
                "#lobby alice: first",
                "(private) carol: between",
                "#lobby alice: second",
            ],
        )

    def test_ownMessageEchoRules(self) -> None:
        """
        The sender is taken out of its group's append and handed its own
        message by its adapter: nothing in text mode, the message with its
        id in JSON, nothing on IRC without echo-message, the PRIVMSG with
        it.
        """
        text = self.linePeer("text")
        json = self.linePeer("json")
        json.send("/format json", ending=b"\n")
        plain = self.register("plain")
        echo = self.register("echo", "echo-message")
        for peer in (plain, echo):
            peer.send("JOIN #lobby")
        for peer in (text, json, plain, echo):
            peer.raw()
        text.send("t", ending=b"\n")
        json.send("j", ending=b"\n")
        plain.send("PRIVMSG #lobby :p")
        echo.send("PRIVMSG #lobby :e")
        self.assertEqual([line.split(": ", 1)[1] for line in text.lines()], ["j", "p", "e"])
        own = [line for line in json.lines() if '"from":"json"' in line.replace(" ", "")]
        self.assertEqual(len(own), 1)
        self.assertIn('"id":', own[0])
        self.assertEqual([line.rsplit(":", 1)[1] for line in plain.lines()], ["t", "j", "e"])
        self.assertEqual([line.rsplit(":", 1)[1] for line in echo.lines()], ["t", "j", "p", "e"])

    def test_closingMemberGetsNothingMore(self) -> None:
        """
        Once a connection said its last line, what the room says before
        the member has left is dropped at its flush, not sent after it.
        """
        alice = self.linePeer("alice")
        bob = self.linePeer("bob")
        alice.send("in time", ending=b"\n")  # the room's groups are made
        self.assertIn("alice: in time", bob.raw().decode())
        bob.proto.closeWith("error: going")
        alice.send("too late", ending=b"\n")
        self.assertEqual(bob.raw(), b"error: going\n")
        self.assertEqual(
            self.chat.population.batcher.pendingBytes, 0, "the batcher's count is reset"
        )

    def test_pendingBytesCounted(self) -> None:
        """
        The batcher counts what the group appends (the backlog holds
        senders by it), the sender's own taken back out.
        """
        alice = self.linePeer("alice")
        self.linePeer("bob")
        self.linePeer("carol")
        dave = self.register("dave")
        dave.send("JOIN #lobby")
        self.chat.population.batcher.flush()
        alice.send("counted", ending=b"\n")
        event = self.hub.room("lobby").recent[-1]
        self.assertEqual(event.kind, events.MESSAGE)
        expected = 2 * len(event.encoded(events.TEXT)) + len(
            event.rendered[dave.proto.session.rendering]
        )
        self.assertEqual(self.chat.population.batcher.pendingBytes, expected)

    def test_memberWithoutBatcher(self) -> None:
        """
        A listener without C{fanout} (an adapter that does not batch) is
        delivered to one by one, beside the groups.
        """
        from chatsvc.testing import FakeListener

        alice = self.linePeer("alice")
        hears = FakeListener()
        member = self.hub.login("plain", hears)
        self.hub.join(member, "lobby")
        alice.send("to everyone", ending=b"\n")
        self.assertEqual(hears.texts(events.MESSAGE), ["to everyone"])
        self.assertEqual(len(self.room().fanout.single), 1)

    def test_orderAcrossRooms(self) -> None:
        """
        A member of two rooms reads one turn's messages of both, and a
        private message among them, in the order they happened.
        """
        alice = self.linePeer("alice")
        carol = self.linePeer("carol", "dev")
        erin = self.linePeer("erin", "other")
        dave = self.register("dave")
        dave.send("JOIN #lobby,#dev")
        dave.raw()
        alice.send("a1", ending=b"\n")
        carol.send("d1", ending=b"\n")
        erin.send("/msg dave p", ending=b"\n")
        alice.send("a2", ending=b"\n")
        carol.send("d2", ending=b"\n")
        self.assertEqual(
            [line.split(" ", 2)[2] for line in dave.lines()],
            [
                "#lobby :a1",
                "#dev :d1",
                "dave :p",
                "#lobby :a2",
                "#dev :d2",
            ],
        )

    def test_jsonSenderInOneRead(self) -> None:
        """
        A JSON sender of several messages in one read gets each back once,
        with its id, in order with the others' messages between them.
        """
        json = self.linePeer("json")
        other = self.linePeer("other")
        json.send("/format json", ending=b"\n")
        json.raw()
        json.send("one", "two", ending=b"\n")
        other.send("three", ending=b"\n")
        json.send("four", ending=b"\n")
        texts = [line.split('"text":"', 1)[1].split('"', 1)[0] for line in json.lines()]
        self.assertEqual(texts, ["one", "two", "three", "four"])
