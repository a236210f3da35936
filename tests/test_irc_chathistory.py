"""
Tests for IRCv3 C{draft/chathistory} in the IRC gateway: the pure
selection (L{chatsvc.irc.chathistory.select}) and the command as a client
uses it, with history said on the line side.
"""

from __future__ import annotations

from twisted.trial import unittest

from chatsvc.chat import events
from chatsvc.chat.events import Event
from chatsvc.irc import chathistory
from chatsvc.irc.chathistory import BadReference, reference, select
from tests.test_irc_session import START, GatewayTestCase


def history(count: int) -> list[Event]:
    """
    Messages 1..count of #lobby, one a minute from START.
    """
    return [
        Event(events.MESSAGE, "lobby", "bob", f"m{n}", id=n, ts=START + 60 * (n - 1))
        for n in range(1, count + 1)
    ]


def ids(selected: list[Event]) -> list[int]:
    return [e.id for e in selected]


class SelectTests(unittest.SynchronousTestCase):
    def test_latest(self) -> None:
        recent = history(10)
        self.assertEqual(ids(select(recent, "LATEST", [None], 3)), [8, 9, 10])
        self.assertEqual(ids(select(recent, "LATEST", [("id", 8)], 5)), [9, 10])

    def test_beforeAfter(self) -> None:
        recent = history(10)
        self.assertEqual(ids(select(recent, "BEFORE", [("id", 5)], 2)), [3, 4])
        self.assertEqual(ids(select(recent, "AFTER", [("id", 5)], 2)), [6, 7])
        self.assertEqual(ids(select(recent, "BEFORE", [("ts", START + 60)], 9)), [1])

    def test_around(self) -> None:
        self.assertEqual(ids(select(history(10), "AROUND", [("id", 5)], 4)), [3, 4, 5, 6])

    def test_betweenEitherWay(self) -> None:
        recent = history(10)
        self.assertEqual(ids(select(recent, "BETWEEN", [("id", 2), ("id", 7)], 3)), [3, 4, 5])
        self.assertEqual(ids(select(recent, "BETWEEN", [("id", 7), ("id", 2)], 3)), [4, 5, 6])

    def test_limitCapped(self) -> None:
        recent = history(300)
        self.assertEqual(len(select(recent, "LATEST", [None], 10**6)), chathistory.MAX_LIMIT)
        self.assertEqual(select(recent, "LATEST", [None], 0), [])

    def test_references(self) -> None:
        self.assertIsNone(reference("*", "Lobby"))
        self.assertEqual(reference("msgid=lobby-42", "Lobby"), ("id", 42))
        self.assertEqual(reference("timestamp=2026-11-21T10:00:00.000Z", "lobby"), ("ts", START))
        for bad in (
            "msgid=kitchen-4",
            "msgid=lobby-x",
            "timestamp=yesterday",
            "id=4",
            "msgid=lobby-٤",
        ):
            self.assertRaises(BadReference, reference, bad, "lobby")


class CommandTests(GatewayTestCase):
    def setUp(self) -> None:
        super().setUp()
        bob = self.linePeer("bob")
        for n in range(1, 11):
            bob.send(f"m{n}", ending=b"\n")
            self.clock.advance(60)
        self.alice = self.register(
            "alice", "draft/chathistory", "batch", "server-time", "message-tags"
        )

    def texts(self, lines: list[str]) -> list[str]:
        return [line.rsplit(" :", 1)[1] for line in lines if " PRIVMSG " in line]

    def test_isupport(self) -> None:
        peer = self.ircPeer()
        peer.send("NICK carol", "USER c 0 * :c")
        tokens = " ".join(peer.lines()).split(" ")
        self.assertIn("CHATHISTORY=100", tokens)
        self.assertIn("MSGREFTYPES=msgid,timestamp", tokens)

    def test_noAutoReplayWhenTheClientAsks(self) -> None:
        self.alice.send("JOIN #lobby")
        self.assertEqual(self.texts(self.alice.lines()), [])

    def test_latestInBatch(self) -> None:
        self.alice.send("CHATHISTORY LATEST #lobby * 3")
        lines = self.alice.lines()
        self.assertEqual(lines[0], ":chatsvc BATCH +h1 chathistory #lobby")
        self.assertEqual(
            lines[1],
            "@batch=h1;time=2026-11-21T10:07:00.000Z;msgid=lobby-8 "
            ":bob!bob@chatsvc PRIVMSG #lobby :m8",
        )
        self.assertEqual(self.texts(lines), ["m8", "m9", "m10"])
        self.assertEqual(lines[-1], ":chatsvc BATCH -h1")

    def test_beforeMsgidAndTimestamp(self) -> None:
        self.alice.send("CHATHISTORY BEFORE #LOBBY msgid=lobby-5 2")
        self.assertEqual(self.texts(self.alice.lines()), ["m3", "m4"])
        self.alice.send("CHATHISTORY AFTER #lobby timestamp=2026-11-21T10:07:30.000Z 10")
        self.assertEqual(self.texts(self.alice.lines()), ["m9", "m10"])
        self.alice.send("CHATHISTORY BETWEEN #lobby msgid=lobby-1 msgid=lobby-4 10")
        self.assertEqual(self.texts(self.alice.lines()), ["m2", "m3"])

    def test_refusals(self) -> None:
        self.alice.send(
            "CHATHISTORY",
            "CHATHISTORY FROB #lobby * 1",
            "CHATHISTORY LATEST #nowhere * 5",
            "CHATHISTORY LATEST nobody * 5",
            "CHATHISTORY BEFORE #lobby * 5",
            "CHATHISTORY BEFORE #lobby msgid=kitchen-3 5",
            "CHATHISTORY LATEST #lobby * many",
            "CHATHISTORY AFTER #lobby",
        )
        codes = [line.split(" ")[3] for line in self.alice.lines()]
        self.assertEqual(
            codes,
            [
                "NEED_MORE_PARAMS",
                "INVALID_PARAMS",
                "INVALID_TARGET",
                "INVALID_TARGET",
                "INVALID_PARAMS",
                "INVALID_PARAMS",
                "INVALID_PARAMS",
                "NEED_MORE_PARAMS",
            ],
        )

    def test_privateAndTargetsEmpty(self) -> None:
        self.alice.send("CHATHISTORY LATEST bob * 5", "CHATHISTORY TARGETS * * 5")
        self.assertEqual(
            self.alice.lines(),
            [
                ":chatsvc BATCH +h1 chathistory bob",
                ":chatsvc BATCH -h1",
                ":chatsvc BATCH +h2 draft/chathistory-targets",
                ":chatsvc BATCH -h2",
            ],
        )
