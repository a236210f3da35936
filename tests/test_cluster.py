"""
The cluster's nodes in one process, against a real redis-server: each
node is a L{ClusterNode} with its own L{Hub}, on the real reactor, so
claims, the bus, the reaper and the outage queue run as they do in
separate processes (tests/test_cluster_process.py does that too).
"""

from __future__ import annotations

import io
import json
import sys
import uuid

from twisted.internet import defer, reactor
from twisted.trial import unittest

from chatsvc.chat import events
from chatsvc.chat.names import nameKeys
from chatsvc.chat.rooms import Hub, NameTaken
from chatsvc.chat.service import Options
from chatsvc.cluster.node import (
    BACK_NOTICE,
    DOWN_NOTICE,
    LOST_REASON,
    ClusterNode,
    RedisRefused,
    _Watchdog,
    parseRedisURL,
    preflight,
)
from chatsvc.cluster.replica import ReplicaState
from chatsvc.testing import FakeListener
from tests.redisserver import freePort, redisCommand, skipUnlessRedis, startRedis
from tests.support import waitFor, withDeadline

#: Short, so that the reaper's tests are quick; the heartbeat is a quarter.
TIMEOUT = 1.0


class Listener(FakeListener):
    """
    A member's listener that also keeps the server's notices.
    """

    def __init__(self) -> None:
        super().__init__()
        self.notices: list[str] = []

    def notice(self, text: str) -> None:
        self.notices.append(text)


class Node:
    """
    One node: a L{ClusterNode} and the L{Hub} on it.
    """

    def __init__(self, url: str, **kwargs) -> None:
        nodeId = uuid.uuid4().hex[:12]
        self.cluster = ClusterNode(
            parseRedisURL(url), reactor, nodeId, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs
        )
        self.hub = Hub(
            reactor, self.cluster.history, bus=self.cluster, state=self.cluster.state, nodeId=nodeId
        )

    async def start(self) -> Node:
        await withDeadline(self.cluster.start(), "the node to join")
        self.hub.restore()
        return self

    async def login(self, name: str, room: str | None = "lobby"):
        listener = Listener()
        member = await defer.maybeDeferred(self.hub.login, name, listener)
        if room is not None:
            self.hub.join(member, room)
        return member, listener


class ClusterTestCase(unittest.TestCase):
    skip = skipUnlessRedis

    async def startCluster(self, count: int, **kwargs) -> list[Node]:
        self.redis = await startRedis(self)
        nodes = []
        for _ in range(count):
            node = Node(self.redis.url, **kwargs)
            self.addCleanup(node.cluster.stop)
            nodes.append(await node.start())
        return nodes

    async def addNode(self, **kwargs) -> Node:
        node = Node(self.redis.url, **kwargs)
        self.addCleanup(node.cluster.stop)
        return await node.start()


def said(listener: FakeListener, room: str = "lobby") -> list[tuple[str, str, int]]:
    """
    The room messages a listener got: C{(sender, text, id)}, in order.
    """
    return [
        (e.name, e.text, e.id)
        for e in listener.events
        if e.kind in events.HISTORIC and e.room == room
    ]


def clusterMetrics(hub) -> dict[str, float]:
    """
    The cluster's figures on the metrics page (C{--metrics}).
    """
    from chatsvc.metrics import Instruments, ServiceCollector

    return {
        family.name: family.samples[0].value
        for family in ServiceCollector({}, Instruments(), hub).collect()
        if family.name.startswith("chatsvc_cluster")
    }


class NamesTests(ClusterTestCase):
    """
    Names are claimed in Redis, all keys or none: unique over the nodes.
    """

    async def test_claimDecidedInRedis(self):
        a, b = await self.startCluster(2)
        pending = a.hub.login("alice", FakeListener())
        self.assertIsInstance(pending, defer.Deferred)
        alice = await pending
        self.assertEqual(alice.name, "alice")
        for taken in ("alice", "ALICE", "\uff41lice", "\u0430lice"):
            with self.assertRaises(NameTaken) as caught:
                await b.hub.login(taken, FakeListener())
            self.assertIn("(by alice)", str(caught.exception))
        keys = redisCommand(self.redis.port, "KEYS", "chatsvc:name:*")
        self.assertTrue(keys)
        for key in keys:
            self.assertEqual(redisCommand(self.redis.port, "GET", key), alice.id.encode())

    async def test_renameIsOneStep(self):
        a, b = await self.startCluster(2)
        alice, _ = await a.login("alice")
        await b.login("carol")
        with self.assertRaises(NameTaken):
            await a.hub.rename(alice, "CAROL")
        self.assertEqual(alice.name, "alice")
        await a.hub.rename(alice, "bob")
        self.assertEqual(alice.name, "bob")
        # The old name is free at once, the new one is not.
        await b.login("alice")
        with self.assertRaises(NameTaken):
            await b.hub.login("Bob", FakeListener())

    async def test_quitFreesTheName(self):
        a, b = await self.startCluster(2)
        alice, _ = await a.login("alice")
        a.hub.quit(alice)
        await waitFor(lambda: b.cluster.state.holder("alice") is None, "the release to reach b")
        member, _ = await b.login("alice")
        self.assertEqual(member.name, "alice")


class BusTests(ClusterTestCase):
    """
    Every event goes through Redis and back: once to every member, in one
    order for all, with ids from Redis.
    """

    async def test_everyMessageOnceInOneOrder(self):
        nodes = await self.startCluster(3)
        members = []
        for n, node in enumerate(nodes):
            for i in range(3):
                members.append((node, *await node.login(f"user{n}x{i}")))
        for round in range(4):
            for node, member, _ in members:
                node.hub.say(member, member.rooms["lobby"], f"{member.name} {round}")
        total = 4 * len(members)
        listeners = [listener for _, _, listener in members]
        await waitFor(lambda: all(len(said(x)) == total for x in listeners), "every message")
        first = said(listeners[0])
        self.assertEqual([i for _, _, i in first], list(range(1, total + 1)))
        for listener in listeners:
            self.assertEqual(said(listener), first)
        # Per sender, in the order said.
        for _, member, _ in members:
            texts = [t for name, t, _ in first if name == member.name]
            self.assertEqual(texts, [f"{member.name} {r}" for r in range(4)])

    async def test_oneTurnOneEntry(self):
        """
        What a node publishes in one reactor turn is one script call and
        one entry on the bus, in the order published.
        """
        a, b = await self.startCluster(2)
        alice, _ = await a.login("alice")
        bob, bobHears = await b.login("bob")
        await waitFor(lambda: len(a.hub.who("lobby")[1]) == 2, "bob on a")
        for i in range(50):
            a.hub.say(alice, alice.rooms["lobby"], f"m{i}")
        await waitFor(lambda: len(said(bobHears)) == 50, "the messages")
        self.assertEqual([t for _, t, _ in said(bobHears)], [f"m{i}" for i in range(50)])
        batches = [
            fields
            for _, fields in redisCommand(self.redis.port, "XRANGE", "chatsvc:bus", "-", "+")
            if fields[:2] == [b"t", b"eb"] and b'"m0"' in fields[3]
        ]
        self.assertEqual(len(batches), 1)
        self.assertEqual(len(json.loads(batches[0][3])), 50)

    async def test_sayThenQuitInOneTurn(self):
        """
        The member's name is released after its last words and its leave,
        though those wait for the end of the turn: operations reach Redis
        in the order they were made.
        """
        a, b = await self.startCluster(2)
        alice, _ = await a.login("alice")
        bob, bobHears = await b.login("bob")
        await waitFor(lambda: len(a.hub.who("lobby")[1]) == 2, "bob on a")
        a.hub.say(alice, alice.rooms["lobby"], "bye")
        a.hub.quit(alice, "quit: gone")
        await waitFor(lambda: events.LEAVE in bobHears.kinds(), "alice's leave")
        self.assertEqual(
            [(e.kind, e.text) for e in bobHears.events if e.name == "alice"][-2:],
            [(events.MESSAGE, "bye"), (events.LEAVE, "quit: gone")],
        )

    async def test_whoRoomsAndPrivateSeeTheCluster(self):
        a, b = await self.startCluster(2)
        alice, aliceHears = await a.login("alice")
        bob, bobHears = await b.login("bob")
        await b.login("carol", "kitchen")
        await waitFor(lambda: len(a.hub.who("lobby")[1]) == 2, "bob's join to reach a")
        await waitFor(lambda: len(a.hub.roomList()) == 2, "the kitchen to reach a")
        self.assertEqual(a.hub.who("lobby"), ("lobby", ["alice", "bob"]))
        self.assertEqual(a.hub.roomList(), [("kitchen", 1), ("lobby", 2)])
        a.hub.private(alice, "BOB", "psst")
        await waitFor(lambda: bobHears.texts(events.PRIVATE), "the private message")
        self.assertEqual(bobHears.texts(events.PRIVATE), ["psst"])
        await waitFor(lambda: aliceHears.texts(events.PRIVATE), "the sender's copy")

    async def test_topicAndHistoryReachALaterNode(self):
        a, b = await self.startCluster(2)
        alice, _ = await a.login("alice")
        bob, bobHears = await b.login("bob")
        a.hub.setTopic(alice, alice.rooms["lobby"], "tea at five")
        for i in range(5):
            a.hub.say(alice, alice.rooms["lobby"], f"m{i}")
        await waitFor(lambda: len(said(bobHears)) == 5, "the messages on b")
        self.assertEqual(b.hub.topic(bob.rooms["lobby"])[:2], ("tea at five", "alice"))
        late = await self.addNode()
        room = late.hub.room("lobby")
        self.assertEqual([e.text for e in late.hub.recent(room, 10)], [f"m{i}" for i in range(5)])
        self.assertEqual([e.id for e in late.hub.recent(room, 10)], [1, 2, 3, 4, 5])
        self.assertEqual(late.hub.topic(room)[:2], ("tea at five", "alice"))
        # Each message is kept once, under its id, in the room's stream.
        entries = redisCommand(self.redis.port, "XRANGE", "chatsvc:history:lobby", "-", "+")
        self.assertEqual([e[0] for e in entries], [f"0-{i}".encode() for i in range(1, 6)])
        with self.assertRaises(Exception) as caught:
            redisCommand(self.redis.port, "XADD", "chatsvc:history:lobby", "0-3", "e", "x")
        self.assertIn("equal or smaller", str(caught.exception))

    async def test_unreadableEntrySkipped(self):
        """
        Something else wrote to the bus: that entry is logged and skipped,
        and the bus goes on.
        """
        a, b = await self.startCluster(2)
        alice, _ = await a.login("alice")
        bob, bobHears = await b.login("bob")
        redisCommand(self.redis.port, "XADD", "chatsvc:bus", "*", "t", "ev", "e", "{not json")
        redisCommand(self.redis.port, "XADD", "chatsvc:bus", "*", "t", "ev", "e", '{"kind": 3}')
        a.hub.say(alice, alice.rooms["lobby"], "still here")
        await waitFor(lambda: said(bobHears), "the message after")
        self.assertEqual([t for _, t, _ in said(bobHears)], ["still here"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError, TypeError, AttributeError)), 4)

    async def test_oneReaderPerNode(self):
        """
        Each node holds two connections, commands and the bus reader, and
        after Redis comes back still two: nothing reads the bus twice.
        """
        a, b = await self.startCluster(2)
        alice, _ = await a.login("alice")
        bob, bobHears = await b.login("bob")

        def clients() -> int:
            return redisCommand(self.redis.port, "CLIENT", "LIST").count(b"cmd=") - 1

        self.assertEqual(clients(), 4)
        await self.redis.kill()
        await waitFor(lambda: not a.cluster.up and not b.cluster.up, "both nodes to go down")
        await self.redis.restart()
        await waitFor(lambda: a.cluster.up and b.cluster.up, "both nodes to come back")
        self.assertEqual(clients(), 4)
        a.hub.say(alice, alice.rooms["lobby"], "once")
        await waitFor(lambda: said(bobHears), "the message")
        b.hub.say(bob, bob.rooms["lobby"], "marker")
        await waitFor(lambda: len(said(bobHears)) == 2, "the marker")
        self.assertEqual([t for _, t, _ in said(bobHears)], ["once", "marker"])


class FailureTests(ClusterTestCase):
    """
    A node that dies, and Redis going away.
    """

    async def test_deadNodeReaped(self):
        a, b = await self.startCluster(2)
        await a.login("alice")
        bob, bobHears = await b.login("bob")
        await waitFor(lambda: a.hub.who("lobby")[1] == ["alice", "bob"], "bob on a")
        # a dies: no goodbye, no heartbeat.
        a.cluster._stopping = True
        a.cluster._heartbeat.stop()
        for connection in (a.cluster._command, a.cluster._reader):
            connection.transport.abortConnection()
        await waitFor(
            lambda: "alice" in [e.name for e in bobHears.events if e.kind == events.LEAVE],
            "alice to leave",
            seconds=10 * TIMEOUT,
        )
        leave = [e for e in bobHears.events if e.kind == events.LEAVE][0]
        self.assertEqual(leave.text, LOST_REASON)
        self.assertEqual(b.hub.who("lobby")[1], ["bob"])
        member, _ = await b.login("alice")
        self.assertEqual(member.name, "alice")

    async def test_busTrimmedPastANode(self):
        """
        The bus no longer holds the last entry a node read (it was away
        longer than the bus keeps): it starts over from a snapshot, and
        its copy of the state and its delivery are right again.
        """
        a, b = await self.startCluster(2)
        alice, _ = await a.login("alice")
        bob, bobHears = await b.login("bob")
        await waitFor(lambda: len(b.hub.who("lobby")[1]) == 2, "alice on b")
        await waitFor(lambda: len(a.hub.who("lobby")[1]) == 2, "bob on a")
        from twisted.logger import globalLogPublisher

        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        b.cluster._goDown("a test")
        redisCommand(self.redis.port, "XTRIM", "chatsvc:bus", "MAXLEN", "0")
        await a.login("carol")
        await waitFor(lambda: b.cluster.up, "b to come back")
        self.assertEqual([e.get("event") for e in logged].count("cluster-gap"), 1)
        self.assertEqual(b.hub.who("lobby")[1], ["alice", "bob", "carol"])
        a.hub.say(alice, alice.rooms["lobby"], "after")
        await waitFor(lambda: said(bobHears), "the message after")
        self.assertEqual([t for _, t, _ in said(bobHears)], ["after"])

    async def test_outageDeliversLocallyAndQueues(self):
        a, b = await self.startCluster(2, queueLimit=3)
        alice, _ = await a.login("alice")
        ann, annHears = await a.login("ann")
        bob, bobHears = await b.login("bob")
        await self.redis.kill()
        await waitFor(lambda: not a.cluster.up, "a to notice")
        self.assertEqual(annHears.notices, [DOWN_NOTICE])
        for i in range(5):
            a.hub.say(alice, alice.rooms["lobby"], f"cut {i}")
        # Delivered here at once, with ids going on from the last known.
        self.assertEqual([t for _, t, _ in said(annHears)], [f"cut {i}" for i in range(5)])
        self.assertEqual([i for _, _, i in said(annHears)], [1, 2, 3, 4, 5])
        self.assertEqual(a.cluster.dropped, 2)
        self.assertEqual(
            clusterMetrics(a.hub),
            {"chatsvc_cluster_up": 0, "chatsvc_cluster_queue": 3, "chatsvc_cluster_dropped": 2},
        )
        await self.redis.restart()
        await waitFor(lambda: len(said(bobHears)) == 3, "the queued messages on b")
        self.assertEqual(annHears.notices, [DOWN_NOTICE, BACK_NOTICE])
        self.assertEqual([t for _, t, _ in said(bobHears)], ["cut 0", "cut 1", "cut 2"])
        # a's members are not given them twice.
        a.hub.say(alice, alice.rooms["lobby"], "after")
        await waitFor(lambda: len(said(annHears)) == 6, "the message after")
        self.assertEqual(said(annHears)[-1][1], "after")
        # Redis lost its data; ids still go on above every one given out.
        self.assertGreater(said(annHears)[-1][2], 5)
        self.assertEqual(
            clusterMetrics(a.hub),
            {"chatsvc_cluster_up": 1, "chatsvc_cluster_queue": 0, "chatsvc_cluster_dropped": 2},
        )

    async def test_nameClaimedTwiceInOutage(self):
        a, b = await self.startCluster(2)
        await a.login("alice")
        await b.login("bob")
        await self.redis.kill()
        await waitFor(lambda: not a.cluster.up and not b.cluster.up, "both to go down")
        erinA, _ = await a.login("erin")
        erinB, _ = await b.login("ERIN")
        await self.redis.restart()
        await waitFor(lambda: a.cluster.up and b.cluster.up, "both to come back")
        holders = [m for m in (erinA, erinB) if m.id in a.hub.members or m.id in b.hub.members]
        self.assertEqual(len(holders), 1)
        keys = redisCommand(self.redis.port, "KEYS", "chatsvc:name:*")
        owners = {redisCommand(self.redis.port, "GET", k) for k in keys}
        self.assertIn(holders[0].id.encode(), owners)
        loser = erinB if holders[0] is erinA else erinA
        self.assertNotIn(loser.id.encode(), owners)

    async def test_pausedRedisWithinTheReplyTimeout(self):
        """
        Redis stopped for less than the reply timeout: nothing is lost,
        nothing doubled, and no outage is declared.
        """
        a, b = await self.startCluster(2, timeout=8.0)
        alice, _ = await a.login("alice")
        bob, bobHears = await b.login("bob")
        self.redis.pause()
        for i in range(3):
            a.hub.say(alice, alice.rooms["lobby"], f"p{i}")
        self.redis.resume()
        await waitFor(lambda: len(said(bobHears)) == 3, "the messages")
        self.assertTrue(a.cluster.up)
        b.hub.say(bob, bob.rooms["lobby"], "end")
        await waitFor(lambda: len(said(bobHears)) == 4, "the marker")
        self.assertEqual([t for _, t, _ in said(bobHears)], ["p0", "p1", "p2", "end"])


class ReplicaTests(unittest.TestCase):
    """
    The replica's own logic, with no Redis: a node that is down.
    """

    def setUp(self):
        class Down:
            up = False
            busLength = 10

            def __init__(self):
                self.sent = []

            def send(self, *args):
                self.sent.append(args)

        self.node = Down()
        self.state = ReplicaState(self.node)

    def test_outageClaimsAgainstTheCopy(self):
        self.assertIsNone(self.state.claim("n1:1", "alice", ("alice",)))
        self.assertEqual(self.state.claim("n2:1", "Alice", ("alice",)), "alice")

    def test_claimFromTheBusWins(self):
        self.state.claim("n1:1", "alice", ("alice",))
        self.state.enter("lobby", "lobby", "n1:1")
        self.state.applyClaim("n2:7", "alice", ("alice",))
        self.assertEqual(self.state.holder("alice"), ("n2:7", "alice"))
        self.assertIsNone(self.state.who("lobby"))

    def test_joinOfAnUnknownMember(self):
        self.state.applyEvent(events.Event(events.JOIN, "Lobby", "zed", origin="n3:1"))
        self.assertEqual(self.state.who("lobby"), ("Lobby", ["zed"]))
        self.state.applyEvent(events.Event(events.LEAVE, "Lobby", "zed", origin="n3:1"))
        self.assertIsNone(self.state.who("lobby"))

    def test_othersByNode(self):
        """
        What a node writes back for the others after Redis lost its data.
        """
        self.state.claim("me:1", "alice", ("alice",))
        self.state.applyClaim("n2:1", "Bob")
        self.state.applyClaim("n2:2", "carol")
        self.state.applyClaim("n3:1", "dave")
        self.state.enter("lobby", "lobby", "me:1")
        self.state.applyEvent(events.Event(events.JOIN, "Lobby", "Bob", origin="n2:1"))
        self.state.applyEvent(events.Event(events.JOIN, "kitchen", "Bob", origin="n2:1"))
        self.assertEqual(
            self.state.othersByNode("me"),
            {
                "n2": [
                    ("n2:1", "Bob", nameKeys("Bob"), [("lobby", "lobby"), ("kitchen", "kitchen")]),
                    ("n2:2", "carol", nameKeys("carol"), []),
                ],
                "n3": [("n3:1", "dave", nameKeys("dave"), [])],
            },
        )

    def test_writesAreQueuedBehind(self):
        self.state.claim("me:1", "alice", ("alice",))
        self.state.enter("lobby", "lobby", "me:1")
        self.state.leave("lobby", "me:1")
        self.state.release("me:1")
        self.assertEqual([args[0] for args in self.node.sent], ["enter", "leave", "release"])


class AddressTests(unittest.TestCase):
    """
    C{--redis URL} and the check before anything listens.
    """

    def test_urls(self):
        address = parseRedisURL("redis://:s%40cret@example.org:6390/3")
        self.assertEqual(
            (address.host, address.port, address.db, address.password),
            ("example.org", 6390, 3, "s@cret"),
        )
        self.assertEqual(str(parseRedisURL("redis://[::1]")), "redis://[::1]:6379/0")
        self.assertEqual(
            str(parseRedisURL("unix:///run/redis.sock?db=2")), "unix:///run/redis.sock?db=2"
        )

    def test_badURLs(self):
        for url, why in [
            ("http://x", "is not a redis:// URL"),
            ("redis://", "names no host"),
            ("redis://h:99999/0", "port must be a number"),
            ("redis://h:6379/x", "database must be a number"),
            ("unix://", "names no socket"),
        ]:
            with self.assertRaises(ValueError) as caught:
                parseRedisURL(url)
            self.assertIn(why, str(caught.exception))

    def test_options(self):
        options = Options()
        options.parseOptions(["--redis", "redis://127.0.0.1:7/1", "--cluster-timeout", "3"])
        self.assertEqual(options["redis"].port, 7)
        self.assertEqual(options["cluster-timeout"], 3.0)
        for argv, why in [
            (["--redis", "http://x"], "--redis: 'http://x' is not a redis:// URL"),
            (["--redis", "redis://h/0", "--history", "x.db"], "keeps its history in Redis"),
            (["--cluster-timeout", "0"], "--cluster-timeout"),
            (["--cluster-queue", "-1"], "--cluster-queue"),
        ]:
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            with self.assertRaises(SystemExit) as caught:
                Options().parseOptions(argv)
            self.assertEqual(caught.exception.code, 2)
            self.assertEqual(stderr.getvalue().count("\n"), 1)
            self.assertIn(why, stderr.getvalue())

    def test_preflightRefused(self):
        port = freePort()
        with self.assertRaises(RedisRefused) as caught:
            preflight(parseRedisURL(f"redis://127.0.0.1:{port}/0"), 2.0)
        self.assertEqual(str(caught.exception), "connection refused")


class WatchdogTests(unittest.SynchronousTestCase):
    """
    The reply timeout: one timer per connection, on a test clock.
    """

    def setUp(self):
        from twisted.internet.task import Clock

        class TurnClock(Clock):
            """
            A clock that keeps C{callLater(0, ...)} for after the turn's
            I/O (L{runSoon}), as the reactor runs a call made by a timer
            in its next turn, after it has read the sockets.
            """

            def __init__(self):
                super().__init__()
                self.soon = []

            def callLater(self, delay, f, *args, **kwargs):
                if delay == 0:
                    self.soon.append((f, args, kwargs))
                    return None
                return super().callLater(delay, f, *args, **kwargs)

            def runSoon(self):
                soon, self.soon = self.soon, []
                for f, args, kwargs in soon:
                    f(*args, **kwargs)

        class Transport:
            aborted = False

            def abortConnection(self):
                self.aborted = True

        class Connection:
            def __init__(self):
                self.replyQueue = defer.DeferredQueue()
                self.transport = Transport()
                self.gone = defer.Deferred()

            def whenDisconnected(self):
                return self.gone

        self.clock = TurnClock()
        self.connection = Connection()
        _Watchdog(self.connection, 2.0, self.clock)

    def wait(self):
        d = self.connection.replyQueue.get()
        d.addErrback(lambda f: None)
        return d

    def test_unansweredIsAborted(self):
        self.wait()
        self.clock.pump([0.5] * 5)
        self.clock.runSoon()
        self.assertTrue(self.connection.transport.aborted)

    def test_answersInTimeAreNot(self):
        for _ in range(10):
            self.wait()
            self.clock.advance(0.5)
            self.connection.replyQueue.put("OK")
            self.clock.runSoon()
        self.assertFalse(self.connection.transport.aborted)

    def test_answerReadAfterAStall(self):
        """
        This process stalled: the answer came, but is read only after the
        timer's turn.  The timer looks again after the sockets: no abort.
        """
        self.wait()
        self.clock.advance(0.5)
        self.clock.advance(2.0)  # the stall; the check finds it overdue
        self.connection.replyQueue.put("OK")  # the turn's I/O reads the answer
        self.clock.runSoon()
        self.assertFalse(self.connection.transport.aborted)
