"""
Tests for L{chatsvc.chat.state.LocalState}: the names, membership, ids
and topics every node of a chat must agree on, with plain data in and
out (as a shared store would give them).
"""

from __future__ import annotations

import json

from twisted.trial import unittest

from chatsvc.chat.names import nameKeys
from chatsvc.chat.state import LocalState


class NameTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.state = LocalState()

    def claim(self, memberId: str, name: str):
        return self.state.claim(memberId, name, nameKeys(name))

    def test_claim(self) -> None:
        self.assertIsNone(self.claim("n:1", "alice"))
        self.assertEqual(self.state.holder(nameKeys("ALICE")[0]), ("n:1", "alice"))
        self.assertIsNone(self.state.holder(nameKeys("bob")[0]))

    def test_conflictTakesNothing(self) -> None:
        """
        A claim that collides on any key takes none of them, and names
        the holder.
        """
        self.claim("n:1", "alice")
        keys = ("fresh", nameKeys("alice")[1])
        self.assertEqual(self.state.claim("n:2", "other", keys), "alice")
        self.assertIsNone(self.state.holder("fresh"))

    def test_ownKeysNoConflict(self) -> None:
        self.claim("n:1", "alice")
        self.assertIsNone(self.claim("n:1", "Alice"))

    def test_rename(self) -> None:
        """
        A rename takes the new keys and frees the old ones in one call;
        the member is shown by its new name in its rooms.
        """
        self.claim("n:1", "alice")
        self.state.enter("lobby", "lobby", "n:1")
        self.assertIsNone(self.state.rename("n:1", "alicia", nameKeys("alicia")))
        self.assertIsNone(self.state.holder(nameKeys("alice")[0]))
        self.assertEqual(self.state.holder(nameKeys("alicia")[0]), ("n:1", "alicia"))
        self.assertEqual(self.state.who("lobby"), ("lobby", ["alicia"]))
        self.assertIsNone(self.claim("n:2", "alice"))

    def test_renameRefused(self) -> None:
        """
        A refused rename changes nothing: the old name stays held.
        """
        self.claim("n:1", "alice")
        self.claim("n:2", "bob")
        self.assertEqual(self.state.rename("n:1", "BOB", nameKeys("BOB")), "bob")
        self.assertEqual(self.state.holder(nameKeys("alice")[0]), ("n:1", "alice"))
        self.assertEqual(self.state.holder(nameKeys("bob")[0]), ("n:2", "bob"))

    def test_renameSameKey(self) -> None:
        """
        Changing only the case keeps the keys held.
        """
        self.claim("n:1", "alice")
        self.state.rename("n:1", "Alice", nameKeys("Alice"))
        self.assertEqual(self.state.holder(nameKeys("alice")[0]), ("n:1", "Alice"))
        self.assertEqual(self.claim("n:2", "alice"), "Alice")

    def test_release(self) -> None:
        self.claim("n:1", "alice")
        self.state.release("n:1")
        self.state.release("n:1")
        self.state.release("n:unknown")
        self.assertIsNone(self.state.holder(nameKeys("alice")[0]))
        self.assertIsNone(self.claim("n:2", "alice"))


class RoomTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.state = LocalState()
        for i, name in enumerate(["alice", "bob", "carol"], 1):
            self.state.claim(f"n:{i}", name, nameKeys(name))

    def test_enterOrder(self) -> None:
        """
        Members are listed in the order they entered; entering twice
        changes nothing; the first spelling of the room is kept.
        """
        self.assertEqual(self.state.enter("lobby", "Lobby", "n:2"), "Lobby")
        self.assertEqual(self.state.enter("lobby", "LOBBY", "n:1"), "Lobby")
        self.state.enter("lobby", "lobby", "n:2")
        self.assertEqual(self.state.who("lobby"), ("Lobby", ["bob", "alice"]))
        self.assertEqual(self.state.roomName("lobby"), "Lobby")

    def test_enterUnclaimed(self) -> None:
        self.assertRaises(KeyError, self.state.enter, "lobby", "lobby", "n:99")

    def test_leave(self) -> None:
        """
        A room left empty with nothing in it is forgotten.
        """
        self.state.enter("quiet", "quiet", "n:1")
        self.assertTrue(self.state.leave("quiet", "n:1"))
        self.assertFalse(self.state.leave("quiet", "n:1"))
        self.assertFalse(self.state.leave("nowhere", "n:1"))
        self.assertIsNone(self.state.who("quiet"))
        self.assertIsNone(self.state.roomName("quiet"))

    def test_keptWithIds(self) -> None:
        """
        A room whose ids were used is kept empty: its ids must go on.
        """
        self.state.enter("busy", "Busy", "n:1")
        self.assertEqual([self.state.nextId("busy") for _ in range(3)], [1, 2, 3])
        self.state.leave("busy", "n:1")
        self.assertIsNone(self.state.who("busy"))
        self.assertEqual(self.state.roomName("busy"), "Busy")
        self.assertEqual(self.state.nextId("busy"), 4)

    def test_idsPerRoom(self) -> None:
        self.state.enter("a", "a", "n:1")
        self.state.enter("b", "b", "n:1")
        ids = [self.state.nextId(r) for r in ("a", "a", "b", "a")]
        self.assertEqual(ids, [1, 2, 1, 3])

    def test_seed(self) -> None:
        """
        Seeding from history makes ids continue above the last one; a
        lower or repeated seed changes nothing.
        """
        self.state.seedRoom("dev", "Dev", 41)
        self.state.seedRoom("dev", "dev", 7)
        self.assertEqual(self.state.roomName("dev"), "Dev")
        self.assertEqual(self.state.nextId("dev"), 42)
        self.state.seedRoom("dev", "Dev", 41)
        self.assertEqual(self.state.nextId("dev"), 43)

    def test_roomList(self) -> None:
        """
        Rooms with members, by key, with their counts.
        """
        self.state.enter("zeta", "zeta", "n:1")
        self.state.enter("alpha", "Alpha", "n:2")
        self.state.enter("alpha", "alpha", "n:3")
        self.state.seedRoom("empty", "empty", 3)
        self.assertEqual(self.state.roomList(), [("Alpha", 2), ("zeta", 1)])

    def test_renameShown(self) -> None:
        self.state.enter("a", "a", "n:1")
        self.state.enter("b", "b", "n:1")
        self.state.rename("n:1", "alicia", nameKeys("alicia"))
        self.assertEqual(self.state.who("a"), ("a", ["alicia"]))
        self.assertEqual(self.state.who("b"), ("b", ["alicia"]))

    def test_releaseShown(self) -> None:
        """
        The Hub leaves rooms before releasing; the other members stay.
        """
        self.state.enter("a", "a", "n:1")
        self.state.enter("a", "a", "n:2")
        self.state.leave("a", "n:1")
        self.state.release("n:1")
        self.assertEqual(self.state.who("a"), ("a", ["bob"]))


class TopicTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.state = LocalState()
        self.state.claim("n:1", "alice", nameKeys("alice"))

    def test_topic(self) -> None:
        self.assertIsNone(self.state.topic("lobby"))
        self.state.enter("lobby", "lobby", "n:1")
        self.state.setTopic("lobby", "lobby", "hello", "alice", 5.0)
        self.assertEqual(self.state.topic("lobby"), ("hello", "alice", 5.0))
        self.state.setTopic("lobby", "lobby", "", "alice", 6.0)
        self.assertIsNone(self.state.topic("lobby"))

    def test_topicKeepsRoom(self) -> None:
        """
        A room with a topic is known without members; cleared, it is
        forgotten.
        """
        self.state.setTopic("quiet", "Quiet", "shh", "alice", 1.0)
        self.assertEqual(self.state.roomName("quiet"), "Quiet")
        self.state.enter("quiet", "quiet", "n:1")
        self.state.leave("quiet", "n:1")
        self.assertEqual(self.state.topic("quiet")[0], "shh")
        self.state.setTopic("quiet", "Quiet", "", "alice", 2.0)
        self.assertIsNone(self.state.roomName("quiet"))


class PlainDataTests(unittest.SynchronousTestCase):
    def test_resultsArePlainData(self) -> None:
        """
        Everything the state answers survives JSON (what a shared store
        would hold): no objects cross the interface.
        """
        state = LocalState()
        state.claim("n:1", "alice", nameKeys("alice"))
        state.enter("lobby", "lobby", "n:1")
        state.setTopic("lobby", "lobby", "t", "alice", 1.5)
        answers = [
            state.holder(nameKeys("alice")[0]),
            state.who("lobby"),
            state.roomList(),
            state.roomName("lobby"),
            state.nextId("lobby"),
            state.topic("lobby"),
        ]
        self.assertEqual(
            json.loads(json.dumps(answers)),
            [
                ["n:1", "alice"],
                ["lobby", ["alice"]],
                [["lobby", 1]],
                "lobby",
                1,
                ["t", "alice", 1.5],
            ],
        )
