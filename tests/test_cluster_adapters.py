"""
The adapters' side of a cluster, with no Redis: a state whose name claims
are decided later (as a cluster's are, in Redis), and the hub's notices
and evictions, on the line protocol and on IRC (C{StringTransport}s and a
L{Clock}, as in tests/test_irc_session.py).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.chat.state import LocalState
from chatsvc.irc.protocol import IRCFactory
from chatsvc.testing import Clock, MemoryHistory
from tests.test_irc_session import START, Peer, numerics


class LaterState(LocalState):
    """
    A L{LocalState} whose claims and renames answer when the test says
    (L{decide}): as a cluster's, which Redis decides.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[defer.Deferred, object]] = []

    def _later(self, decide):
        d = defer.Deferred()
        self.pending.append((d, decide))
        return d

    def claim(self, memberId, name, keys):
        return self._later(lambda: LocalState.claim(self, memberId, name, keys))

    def rename(self, memberId, name, keys):
        return self._later(lambda: LocalState.rename(self, memberId, name, keys))

    def decide(self, fail: Exception | None = None) -> None:
        d, decide = self.pending.pop(0)
        if fail is not None:
            d.errback(fail)
        else:
            d.callback(decide())


class AdapterTestCase(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.state = LaterState()
        self.hub = Hub(self.clock, MemoryHistory(), state=self.state)
        limits = ChatLimits()
        self.chat = ChatFactory(self.hub, limits, self.clock)
        self.irc = IRCFactory(
            self.hub, limits, self.clock, self.chat.population, policy=self.chat.policy
        )
        self._port = 41000

    def line(self, login: str | None = None) -> Peer:
        self._port += 1
        peer = Peer(self.chat, "10.0.1.1", self._port)
        if login is not None:
            peer.send(login, ending=b"\n")
            self.state.decide()
            self.assertTrue(peer.lines()[0].startswith("success:"))
        return peer

    def ircPeer(self) -> Peer:
        self._port += 1
        return Peer(self.irc, "10.0.0.1", self._port)


class LineClaimTests(AdapterTestCase):
    def test_loginWaitsForTheClaim(self) -> None:
        """
        Nothing is read while the claim is out: the next line waits for
        the answer, then is handled as a logged-in user's.
        """
        peer = self.line()
        peer.send("alice lobby", "/who", ending=b"\n")
        self.assertEqual(peer.lines(), [])
        self.assertIn("claim", peer.proto._holds)
        self.state.decide()
        lines = peer.lines()
        self.assertTrue(lines[0].startswith("success: logged in as alice"), lines)
        self.assertEqual(lines[-1], "info: #lobby: alice")
        self.assertNotIn("claim", peer.proto._holds)

    def test_loginRefusedLater(self) -> None:
        self.line("alice lobby")
        peer = self.line()
        peer.send("ALICE lobby", ending=b"\n")
        self.state.decide()
        self.assertEqual(
            peer.lines(), ["reuse: the name ALICE is taken (by alice); send another name"]
        )
        peer.send("bob lobby", ending=b"\n")
        self.state.decide()
        self.assertTrue(peer.lines()[0].startswith("success: logged in as bob"))

    def test_claimNotDecided(self) -> None:
        peer = self.line()
        peer.send("alice lobby", ending=b"\n")
        self.state.decide(ConnectionError("gone"))
        self.assertEqual(peer.lines(), ["error: the name could not be claimed now; try again"])
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        self.assertEqual(self.hub.members, {})

    def test_goneBeforeTheAnswer(self) -> None:
        """
        A user who leaves while the claim is out does not keep the name.
        """
        peer = self.line()
        peer.send("alice lobby", ending=b"\n")
        peer.proto.connectionLost(None)
        self.state.decide()
        self.assertEqual(self.hub.members, {})
        self.assertIsNone(self.state.holder("alice"))

    def test_nickWaitsForTheClaim(self) -> None:
        alice = self.line("alice lobby")
        bob = self.line("bob lobby")
        alice.lines()
        alice.send("/nick carol", "hello", ending=b"\n")
        self.assertEqual(bob.lines(), [])
        self.state.decide()
        self.assertEqual(
            [line.split("] ", 1)[1] for line in bob.lines()],
            ["#lobby alice is now carol", "#lobby carol: hello"],
        )
        alice.lines()
        alice.send("/nick bob", ending=b"\n")
        self.state.decide()
        self.assertEqual(alice.lines(), ["error: the name bob is taken (by bob)"])


class IRCClaimTests(AdapterTestCase):
    def test_registrationWaitsForTheClaim(self) -> None:
        peer = self.ircPeer()
        peer.send("NICK alice", "USER u 0 * :A", "JOIN #lobby")
        self.assertEqual(peer.lines(), [])
        self.state.decide()
        lines = peer.lines()
        self.assertEqual(numerics(lines)[:1], ["001"])
        self.assertIn(":alice!alice@chatsvc JOIN #lobby", lines)

    def test_nickRefusedLater(self) -> None:
        self.line("bob lobby")
        peer = self.ircPeer()
        peer.send("NICK alice", "USER u 0 * :A")
        self.state.decide()
        peer.lines()
        peer.send("NICK BOB")
        self.state.decide()
        self.assertEqual(numerics(peer.lines()), ["433"])
        peer.send("NICK carol")
        self.state.decide(ConnectionError("gone"))
        self.assertEqual(numerics(peer.lines()), ["437"])
        self.flushLoggedErrors(ConnectionError)


class NoticeAndEvictTests(AdapterTestCase):
    def test_noticeOnEverySide(self) -> None:
        line = self.line("alice lobby")
        irc = self.ircPeer()
        irc.send("NICK bob", "USER u 0 * :B")
        self.state.decide()
        irc.lines()
        self.hub.notice("the network is split")
        self.assertEqual(line.lines(), ["info: the network is split"])
        self.assertEqual(irc.lines(), [":chatsvc NOTICE bob :the network is split"])

    def test_evicted(self) -> None:
        alice = self.line("alice lobby")
        bob = self.line("bob lobby")
        irc = self.ircPeer()
        irc.send("NICK carol", "USER u 0 * :C", "JOIN #lobby")
        self.state.decide()
        for peer in (alice, bob, irc):
            peer.lines()
        self.hub.evict(self.hub.find("alice"), "your name went elsewhere")
        self.assertEqual(alice.lines(), ["error: your name went elsewhere"])
        self.assertTrue(alice.closing)
        self.assertEqual(
            [line.split("] ", 1)[1] for line in bob.lines()],
            ["#lobby alice left (quit: its name was taken elsewhere in the cluster)"],
        )
        self.hub.evict(self.hub.find("carol"), "yours too")
        lines = irc.lines()
        self.assertEqual(lines[-1], f"ERROR :Closing Link: 10.0.0.1:{self._port} (yours too)")
        self.assertIsNone(self.state.holder("carol"))
