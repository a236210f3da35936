"""
The cluster mode as a user runs it (issue 13): C{twistd -n chat --redis
URL} processes against a real C{redis-server}, with clients on loopback
sockets (line protocol in the JSON rendering, a text one, and IRC).

tests/test_cluster.py runs the nodes inside the test process; here each
node is a process of its own, so what is checked is what an operator
gets: the log lines, the exit statuses, SO_REUSEPORT on one port, a node
killed with SIGKILL, Redis frozen (SIGSTOP), killed and restarted empty.

Every wait is on an event (a line a client gets, a line a node logs, a
process ending) with a deadline; nothing sleeps.  The one bound that is
part of what is promised is how soon a killed node's users are seen to
leave: within C{3 * --cluster-timeout}.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import Counter

from twisted.internet import defer, error
from twisted.trial.unittest import TestCase

from tests.redisserver import freePort, skipUnlessRedis, startRedis
from tests.support import (
    DEADLINE,
    DeadlineExceeded,
    LineClient,
    TwistdProcess,
    connect,
    runProcess,
    waitFor,
    withDeadline,
)
from tests.test_chat_twistd import TWISTD
from tests.test_irc_loopback import IRCLineClient

#: --cluster-timeout for the nodes: a heartbeat every 0.5 s, a node silent
#: for 2 s is reaped, and Redis is taken for lost when it does not answer
#: within 1 s (a quarter of the timeout, but not less than a second).
TIMEOUT = 2

LOOPBACK = "tcp:{port}:interface=127.0.0.1"

#: What a node logs when it loses Redis, when Redis is back, and when
#: Redis came back without the cluster's data.
LOST = re.compile(rb"cluster: lost Redis at redis://127\.0\.0\.1:\d+/0 \(")
BACK = re.compile(
    rb"cluster: Redis at redis://127\.0\.0\.1:\d+/0 is back after [\d.]+ s; "
    rb"\d+ operations did not fit in the queue"
)
DATA_LOST = re.compile(rb"cluster: Redis at redis://127\.0\.0\.1:\d+/0 lost the cluster's data")
JOINED = re.compile(rb"chat: node [0-9a-f]+ is in the cluster at redis://127\.0\.0\.1:\d+/0")

#: The reasons a leave carries: a node lost (reaped), a name lost in an outage.
NODE_LOST = "quit: connection to its server lost"
NAME_LOST = "quit: its name was taken elsewhere in the cluster"


def _explained(d: defer.Deferred, explain) -> defer.Deferred:
    """
    C{d}, whose L{DeadlineExceeded} says more: C{explain()}, what was
    there to see when the wait gave up.
    """

    def failed(failure):
        failure.trap(DeadlineExceeded)
        raise DeadlineExceeded(f"{failure.value}\n{explain()}")

    return d.addErrback(failed)


class Node(TwistdProcess):
    """
    One cluster node, C{twistd -n chat --redis URL}, whose log a test can
    wait on (L{logged}).
    """

    def __init__(self) -> None:
        super().__init__()
        self._watches: list[tuple] = []

    def _collect(self, data: bytes) -> None:
        super()._collect(data)
        for entry in list(self._watches):
            test, d = entry
            if d.called:
                self._watches.remove(entry)
            elif test():
                self._watches.remove(entry)
                d.callback(None)

    def processEnded(self, reason) -> None:
        super().processEnded(reason)
        watches, self._watches = self._watches, []
        for _, d in watches:
            if not d.called:
                d.errback(RuntimeError(f"node exited ({self.exitCode}):\n{self.tail()}"))

    def count(self, pattern: re.Pattern) -> int:
        """
        How many log lines match C{pattern}.
        """
        return len(pattern.findall(bytes(self.output)))

    def logged(self, pattern: re.Pattern, times: int = 1, seconds: float = DEADLINE):
        """
        Fires once the log holds C{times} lines matching C{pattern}.
        """

        def test() -> bool:
            return self.count(pattern) >= times

        if test():
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._watches.append((test, d))
        return _explained(
            withDeadline(d, f"{times} log line(s) {pattern.pattern!r}", seconds), self.tail
        )

    def address(self, index: int = 0) -> tuple[str, int]:
        """
        Where the C{index}th listener is (an IPv4 address and port).
        """
        host, port = self.listening[index][1].rsplit(":", 1)
        return host, int(port)

    def tail(self) -> str:
        return bytes(self.output[-4000:]).decode("utf-8", "replace")


def _parse(line: bytes) -> dict:
    line = line.rstrip(b"\r")
    if line.startswith(b"{"):
        return json.loads(line)
    return {"type": "text", "line": line.decode("utf-8", "replace")}


def kind(type_: str, **fields):
    """
    A test for an object of the JSON rendering: its C{type} and fields.
    """

    def test(obj: dict) -> bool:
        return obj.get("type") == type_ and all(obj.get(k) == v for k, v in fields.items())

    return test


class Member(LineClient):
    """
    A chat client that keeps every line it gets as an object (JSON, or
    C{{"type": "text", "line": ...}} in the text rendering), and lets a
    test wait until what it got satisfies a condition (L{until}).
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self.objects: list[dict] = []
        self._tail = b""
        self._watches: list[tuple] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        *complete, self._tail = (self._tail + data).split(b"\n")
        for line in complete:
            self.objects.append(_parse(line))
        if complete:
            self._check()

    def connectionLost(self, reason=None) -> None:
        super().connectionLost(reason)
        self._check()
        watches, self._watches = self._watches, []
        for _, d, what in watches:
            if not d.called:
                d.errback(error.ConnectionDone(f"{self.name}: closed while waiting for {what}"))

    def _check(self) -> None:
        for entry in list(self._watches):
            test, d, _ = entry
            if d.called:
                self._watches.remove(entry)
            elif test(self):
                self._watches.remove(entry)
                d.callback(None)

    def until(self, test, what: str, seconds: float = DEADLINE) -> defer.Deferred:
        """
        Fires once C{test(self)} is true (checked now and after each line).
        """
        if test(self):
            return defer.succeed(None)
        if self.isClosed:
            return defer.fail(error.ConnectionDone(f"{self.name}: closed, waiting for {what}"))
        d: defer.Deferred[None] = defer.Deferred()
        self._watches.append((test, d, what))
        return _explained(
            withDeadline(d, f"{self.name or 'a client'}: {what}", seconds),
            lambda: "\n".join(map(str, self.objects[-30:])),
        )

    async def find(self, test, start: int = 0, what: str = "a line", seconds=DEADLINE) -> dict:
        """
        The first object from C{start} on that passes C{test}, once there is one.
        """
        await self.until(lambda c: any(test(o) for o in c.objects[start:]), what, seconds)
        return next(o for o in self.objects[start:] if test(o))

    async def ask(self, line: str, test, what: str | None = None) -> dict:
        """
        Send C{line}; the first object after it that passes C{test}.
        """
        start = len(self.objects)
        self.sendLine(line)
        return await self.find(test, start, what or f"the answer to {line!r}")

    def said(self, room: str) -> list[tuple[str, str, int]]:
        """
        The live messages of C{room} this member got: C{(from, text, id)}.
        """
        return [
            (o["from"], o["text"], o["id"])
            for o in self.objects
            if o["type"] == "message" and o["room"] == room and not o.get("history")
        ]

    def texts(self, room: str) -> Counter:
        """
        How often each C{(from, text)} of C{room} came.
        """
        return Counter((sender, text) for sender, text, _ in self.said(room))

    def seen(self, room: str) -> set[str]:
        """
        Who this member knows to be in C{room}: the names of its login or
        /join answer, and everyone it saw join since.
        """
        names: set[str] = set()
        for o in self.objects:
            if o["type"] == "success" and o["room"] == room:
                names.update(o["names"])
                names.add(o["name"])
            elif o["type"] == "join" and o["room"] == room:
                names.add(o["name"])
            elif o["type"] == "leave" and o["room"] == room:
                names.discard(o["name"])
        return names

    def left(self, room: str) -> dict[str, str]:
        """
        Who this member saw leave C{room}, with the reason.
        """
        return {
            o["name"]: o["reason"]
            for o in self.objects
            if o["type"] == "leave" and o["room"] == room
        }


class ClusterTestCase(TestCase):
    skip = skipUnlessRedis

    def setUp(self) -> None:
        self.cwd = tempfile.mkdtemp(prefix="chatsvc-cluster-")
        self.addCleanup(shutil.rmtree, self.cwd, True)

    async def startRedis(self):
        self.redis = await startRedis(self)
        return self.redis

    async def node(self, *args: str, port: int = 0, timeout: float = TIMEOUT, listeners=1) -> Node:
        """
        A node of the cluster at C{self.redis}, once it listens.
        """
        node = await Node.start(
            "chat",
            "--port",
            LOOPBACK.format(port=port),
            "--redis",
            self.redis.url,
            "--cluster-timeout",
            str(timeout),
            *args,
            cwd=self.cwd,
            listeners=listeners,
        )
        self.addCleanup(node.stop)
        self.assertEqual(node.count(JOINED), 1, node.tail())
        # The node joins before it listens.
        joined = JOINED.search(bytes(node.output)).start()
        self.assertLess(joined, bytes(node.output).index(b"listening on tcp"))
        return node

    async def nodes(self, count: int, *args: str, **kwargs) -> list[Node]:
        """
        C{count} nodes, started together.
        """
        return await defer.gatherResults(
            [defer.ensureDeferred(self.node(*args, **kwargs)) for _ in range(count)],
            consumeErrors=True,
        )

    async def login(self, where, name: str, room: str = "lobby", rendering="json") -> Member:
        """
        A member called C{name} in C{room}, logged in at C{where} (a node,
        or a port number).
        """
        host, port = where.address() if isinstance(where, Node) else ("127.0.0.1", where)
        client = await connect(port, host, factory=Member)
        self.addCleanup(client.close)
        client.name = name
        if rendering == "json":
            client.sendLine("/format json")
        client.sendLine(f"{name} {room}")
        reply = await client.find(_loginAnswer, what="the login answer")
        self.assertTrue(
            reply["type"] == "success" or reply.get("line", "").startswith("success:"), reply
        )
        return client

    async def refused(self, node: Node, name: str) -> dict:
        """
        The answer to a login as C{name} on C{node} that is refused.
        """
        host, port = node.address()
        client = await connect(port, host, factory=Member)
        self.addCleanup(client.close)
        client.sendLine("/format json")
        client.sendLine(name)
        reply = await client.find(_loginAnswer, what="the login answer")
        await client.close()
        return reply

    async def members(self, spread: dict[Node, list[str]], room: str = "lobby") -> list[Member]:
        """
        Log in the names given for each node, in C{room}, and wait until
        every one of them has seen every other join: from then on, every
        message said in the room reaches all of them.
        """
        members = []
        for node, names in spread.items():
            for name in names:
                members.append(await self.login(node, name, room))
        await self.present(members, room)
        return members

    async def present(self, members: list[Member], room: str) -> None:
        names = {m.name for m in members}
        for member in members:
            await member.until(lambda c: names <= c.seen(room), f"{sorted(names)} in #{room}")

    async def exchange(self, rooms: dict[str, list[Member]], count: int, tag: str = "") -> dict:
        """
        Every member says C{count} messages in its room, all at once, then
        the first says a last one.  Every member gets every message of its
        room once (its own come back as the acknowledgement), in the same
        order as every other member, with ids that rise by one, from 1.

        @return: each room's messages as everyone got them: C{(from, text, id)}.
        """
        expected = {}
        for room, members in rooms.items():
            expected[room] = Counter()
            for member in members:
                for i in range(count):
                    expected[room][(member.name, f"{tag}{member.name} says {i}")] = 1
        for i in range(count):
            for members in rooms.values():
                for member in members:
                    member.sendLine(f"{tag}{member.name} says {i}")
        for room, members in rooms.items():
            total = len(expected[room])
            for member in members:
                await member.until(
                    lambda c, room=room, total=total: len(c.said(room)) >= total,
                    f"{total} messages in #{room}",
                )
            # Anything delivered twice would come before this one, or be
            # a message of the room's that someone did not get.
            last = (members[0].name, f"{tag}last word in #{room}")
            expected[room][last] = 1
            members[0].sendLine(last[1])
            for member in members:
                await member.until(
                    lambda c, room=room, last=last: last in c.texts(room), f"{last} in #{room}"
                )
        sequences = {}
        for room, members in rooms.items():
            sequences[room] = members[0].said(room)
            for member in members:
                self.assertEqual(member.texts(room), expected[room], member.name)
                self.assertEqual(member.said(room), sequences[room], member.name)
            ids = [i for _, _, i in sequences[room]]
            self.assertEqual(ids, list(range(1, len(ids) + 1)), room)
        return sequences

    async def sync(self, members: list[Member], room: str, text: str) -> None:
        """
        The first member says C{text}; wait until every member got it: what
        was on the bus before it has reached them all.
        """
        members[0].sendLine(text)
        for member in members:
            await member.until(
                lambda c: (members[0].name, text) in c.texts(room), f"{text!r} in #{room}"
            )


def _loginAnswer(obj: dict) -> bool:
    if obj["type"] == "text":
        return obj["line"].startswith(("success:", "reuse:", "error:", "full:"))
    return obj["type"] == "success" or (obj["type"] == "error" and obj.get("code") != "usage")


class SpreadTests(ClusterTestCase):
    """
    Members spread over the nodes talk as if on one server.
    """

    async def test_twoNodes(self) -> None:
        """
        Two nodes, five members each, in #lobby and #games: every message
        once, in one order, ids 1..N per room.  A node started afterwards
        shows a joiner the topic set on another node, /who lists everyone,
        and /history holds what was said before it existed.
        """
        await self.startRedis()
        a, b = await self.nodes(2)
        lobby = await self.members({a: ["ann", "abe", "amy"], b: ["ben", "bea", "bob"]})
        games = await self.members({a: ["ada", "al"], b: ["bo", "bud"]}, "games")
        topic = await lobby[0].ask("/topic cluster tests", kind("topic", room="lobby"))
        self.assertEqual((topic["from"], topic["text"]), ("ann", "cluster tests"))
        for member in lobby[1:]:
            await member.find(kind("topic", room="lobby", text="cluster tests"), what="the topic")
        said = await self.exchange({"lobby": lobby, "games": games}, 3)
        self.assertEqual(len(said["lobby"]), 6 * 3 + 1)

        (late,) = await self.nodes(1)
        carla = await self.login(late, "carla")
        shown = await carla.find(kind("topic", room="lobby"), what="the topic on joining")
        self.assertEqual((shown["from"], shown["text"]), ("ann", "cluster tests"))
        who = await carla.ask("/who", kind("who"))
        self.assertEqual(sorted(who["names"]), sorted([m.name for m in lobby] + ["carla"]))
        start = len(carla.objects)
        carla.sendLine("/history 50")
        await carla.find(lambda o: o.get("text", "").startswith("end of history"), start)
        history = [
            (o["from"], o["text"], o["id"])
            for o in carla.objects[start:]
            if o["type"] == "message" and o.get("history")
        ]
        self.assertEqual(history, said["lobby"])

    async def test_threeNodes(self) -> None:
        """
        Three nodes, five members each: every message once, in one order;
        /who and /rooms on any node see every member; /msg reaches a user
        on another node in either rendering; a name held on one node
        (in any spelling that looks the same) is refused on the others,
        for a login and for /nick; after a rename the old name is free
        everywhere.
        """
        await self.startRedis()
        a, b, c = await self.nodes(3)
        lobby = await self.members(
            {a: ["alice", "abe", "amy"], b: ["ben", "bea", "bob"], c: ["cal", "cy", "cat"]}
        )
        games = await self.members(
            {a: ["ada", "al"], b: ["bo", "bud"], c: ["cid", "cole"]}, "games"
        )
        await self.exchange({"lobby": lobby, "games": games}, 2)

        everyone = {"lobby": sorted(m.name for m in lobby), "games": sorted(m.name for m in games)}
        for member in (lobby[0], lobby[3], lobby[6]):
            who = await member.ask("/who", kind("who", room="lobby"))
            self.assertEqual(sorted(who["names"]), everyone["lobby"], member.name)
            who = await member.ask("/who games", kind("who", room="games"))
            self.assertEqual(sorted(who["names"]), everyone["games"], member.name)
            rooms = await member.ask("/rooms", kind("rooms"))
            self.assertEqual(
                rooms["rooms"], [{"name": "games", "members": 6}, {"name": "lobby", "members": 9}]
            )

        # /msg to another node, in JSON and in text.
        alice, ben = lobby[0], lobby[3]
        sent = await alice.ask("/msg ben psst", kind("private"))
        self.assertEqual((sent["from"], sent["to"], sent["text"]), ("alice", "ben", "psst"))
        got = await ben.find(kind("private", text="psst"), what="alice's private message")
        self.assertEqual((got["from"], got["to"]), ("alice", "ben"))
        tina = await self.login(c, "tina", rendering="text")
        # Node b knows tina once it has read her join from the bus.
        await ben.until(lambda m: "tina" in m.seen("lobby"), "tina's join")
        await ben.ask("/msg tina hello tina", kind("private", to="tina"))
        line = await tina.find(lambda o: "(private)" in o.get("line", ""), what="ben's message")
        self.assertTrue(line["line"].endswith("] (private) ben: hello tina"), line)
        missing = await alice.ask("/msg nobody hi", kind("error"))
        self.assertEqual(missing["code"], "no-such-name")

        # One name space: ALICE, a Cyrillic а and full-width letters are alice.
        for node, name in ((b, "ALICE"), (c, "\u0430lice"), (b, "\uff41\uff4c\uff49\uff43\uff45")):
            reply = await self.refused(node, name)
            self.assertEqual(reply["code"], "reuse", reply)
            self.assertEqual(
                reply["text"], f"the name {name} is taken (by alice); send another name"
            )
        for name in ("Alice", "cat"):
            reply = await ben.ask(f"/nick {name}", kind("error"))
            self.assertEqual(reply["code"], "reuse", reply)
        renamed = await alice.ask("/nick alicia", kind("rename"))
        self.assertEqual((renamed["from"], renamed["to"]), ("alice", "alicia"))
        for member in lobby:
            await member.find(kind("rename", to="alicia"), what="alice's rename")
        again = await self.login(b, "alice")
        who = await again.ask("/who", kind("who"))
        self.assertIn("alice", who["names"])
        self.assertIn("alicia", who["names"])
        self.assertEqual((await self.refused(c, "ALICIA"))["code"], "reuse")


class GatewayTests(ClusterTestCase):
    async def test_ircOnAnotherNode(self) -> None:
        """
        An IRC client on one node and line users on another share #lobby:
        NAMES lists the line users, messages and private messages cross
        both ways, each once; a nick held on the other node is 433.
        """
        await self.startRedis()
        (a,) = await self.nodes(1)
        b = await self.node("--irc", LOOPBACK.format(port=0), listeners=2)
        alice, bob = await self.members({a: ["alice", "bob"]})
        carol = await connect(b.port(1), factory=IRCLineClient)
        self.addCleanup(carol.close)
        carol.sendLine("NICK alice")
        carol.sendLine("USER carol 0 * :Carol")
        self.assertIn(b" 433 ", await carol.until(b" 433 "))
        carol.sendLine("NICK carol")
        await carol.until(b" 001 ")
        carol.sendLine("JOIN #lobby")
        # NAMES is node b's copy of the room, which follows the bus: it may
        # not have read alice's and bob's joins yet, and then carol is
        # told of them after it, as JOINs.
        names = set((await carol.until(b" 353 ")).rsplit(b":", 1)[1].split())
        self.assertIn(b"carol", names)
        await carol.until(b" 366 ")
        while not {b"alice", b"bob"} <= names:
            names.add((await carol.until(b" JOIN #lobby"))[1:].split(b"!")[0])
        self.assertEqual(sorted(names), [b"alice", b"bob", b"carol"])
        for member in (alice, bob):
            await member.until(lambda c: "carol" in c.seen("lobby"), "carol's join")

        carol.sendLine("PRIVMSG #lobby :hello from IRC")
        alice.sendLine("hello from the line")
        line = await carol.until(b"PRIVMSG #lobby")
        self.assertEqual(line, b":alice!alice@chatsvc PRIVMSG #lobby :hello from the line")
        carol.sendLine("PRIVMSG bob :psst from IRC")
        alice.sendLine("/msg carol psst from the line")
        private = await carol.until(b"PRIVMSG carol")
        self.assertEqual(private, b":alice!alice@chatsvc PRIVMSG carol :psst from the line")
        got = await bob.find(kind("private", text="psst from IRC"), what="carol's private message")
        self.assertEqual((got["from"], got["to"]), ("carol", "bob"))
        await self.sync([alice, bob], "lobby", "the end")
        await carol.until(b":the end")
        for member in (alice, bob):
            self.assertEqual(
                member.texts("lobby"),
                Counter(
                    {
                        ("carol", "hello from IRC"): 1,
                        ("alice", "hello from the line"): 1,
                        ("alice", "the end"): 1,
                    }
                ),
            )
        received = bytes(carol.received)
        self.assertEqual(received.count(b"PRIVMSG #lobby :hello from the line"), 1)
        self.assertEqual(received.count(b"PRIVMSG #lobby :hello from IRC"), 0)  # no echo
        self.assertEqual(received.count(b"PRIVMSG carol :psst"), 1)

    async def test_browserOnAnotherNode(self) -> None:
        """
        A browser (the web gateway's WebSocket, as the page uses it) on one
        node and a line user on another: the browser's login sees the
        cluster, messages and private messages cross both ways, each once,
        and the browser's own message comes back with the id Redis gave.
        """
        from twisted.internet import reactor
        from twisted.web.websocket import WebSocketClientEndpoint

        from tests.test_web_socket import _Factory as BrowserFactory

        await self.startRedis()
        (a,) = await self.nodes(1)
        b = await self.node("--web", LOOPBACK.format(port=0), listeners=2)
        (bob,) = await self.members({a: ["bob"]})
        endpoint = WebSocketClientEndpoint.new(reactor, f"http://127.0.0.1:{b.port(1)}/ws")
        alice = await withDeadline(
            defer.ensureDeferred(endpoint.connect(BrowserFactory())), "the browser's connect"
        )
        self.addCleanup(lambda: alice.closed.called or alice.transport.transport.abortConnection())
        alice.send("bob")
        refused = await alice.expect(type="error", code="reuse")
        self.assertIn("is taken (by bob)", refused["text"])
        alice.send("alice")
        success = await alice.expect(type="success")
        self.assertEqual(success["room"], "lobby")
        await bob.until(lambda c: "alice" in c.seen("lobby"), "alice's join")
        alice.send("hello from the browser")
        own = await alice.expect(type="message", **{"from": "alice"})
        got = await bob.find(kind("message", text="hello from the browser"), what="the message")
        self.assertEqual(own["id"], got["id"])
        bob.sendLine("hello from the line")
        back = await alice.expect(type="message", **{"from": "bob"})
        self.assertEqual(back["text"], "hello from the line")
        self.assertGreater(back["id"], own["id"])
        alice.send("/msg bob psst")
        private = await bob.find(kind("private", text="psst"), what="the private message")
        self.assertEqual((private["from"], private["to"]), ("alice", "bob"))
        await self.sync([bob], "lobby", "the end")
        await alice.expect(type="message", text="the end")
        self.assertEqual(
            bob.texts("lobby"),
            Counter(
                {
                    ("alice", "hello from the browser"): 1,
                    ("bob", "hello from the line"): 1,
                    ("bob", "the end"): 1,
                }
            ),
        )


class SharedPortTests(ClusterTestCase):
    async def test_threeNodesOnePort(self) -> None:
        """
        Three nodes bind the same --port and the same --irc port
        (SO_REUSEPORT); twelve users who connect to the line port, and an
        IRC client on the IRC port, wherever the kernel sends them, are in
        one room: each gets every message once, in one order, and /who
        lists all.
        """
        await self.startRedis()
        port, ircPort = freePort(), freePort()
        irc = LOOPBACK.format(port=ircPort)
        nodes = await self.nodes(3, "--irc", irc, port=port, listeners=2)
        for node in nodes:
            self.assertEqual(
                node.listening, [("tcp", f"127.0.0.1:{port}"), ("tcp", f"127.0.0.1:{ircPort}")]
            )
        ircy = await connect(ircPort, factory=IRCLineClient)
        self.addCleanup(ircy.close)
        ircy.sendLine("NICK ircy")
        ircy.sendLine("USER ircy 0 * :IRC")
        ircy.sendLine("JOIN #lobby")
        await ircy.until(b" 366 ")
        names = [f"u{i:02}" for i in range(12)]
        members = [await self.login(port, name) for name in names]
        await self.present(members, "lobby")
        for member in members:
            await member.until(lambda c: "ircy" in c.seen("lobby"), "ircy's join")
        said = await self.exchange({"lobby": members}, 1)
        await ircy.until(b":last word in #lobby")
        got = [line for line in bytes(ircy.received).splitlines() if b" PRIVMSG #lobby :" in line]
        self.assertEqual(
            got,
            [f":{s}!{s}@chatsvc PRIVMSG #lobby :{t}".encode() for s, t, _ in said["lobby"]],
        )
        who = await members[0].ask("/who", kind("who"))
        self.assertEqual(sorted(who["names"]), sorted([*names, "ircy"]))
        # Each login was served by one node (which ones is the kernel's choice).
        self.assertEqual(sum(node.output.count(b" logged in as u") for node in nodes), 12)


class NodeLossTests(ClusterTestCase):
    async def test_killedNode(self) -> None:
        """
        A node killed with SIGKILL: within three timeouts the other node's
        users see each of its users leave, the connection to its server
        lost; /who no longer lists them and their names are free.
        """
        await self.startRedis()
        a, b = await self.nodes(2)
        members = await self.members({a: ["ann", "abe", "amy"], b: ["ben", "bea", "bob"]})
        here, gone = members[:3], ["ben", "bea", "bob"]
        b.kill()
        await b.wait()
        for member in here:
            await member.until(
                lambda c: all(c.left("lobby").get(name) == NODE_LOST for name in gone),
                "the killed node's users to leave",
                seconds=3 * TIMEOUT,
            )
        who = await here[0].ask("/who", kind("who"))
        self.assertEqual(sorted(who["names"]), ["abe", "amy", "ann"])
        ben = await self.login(a, "ben")
        await self.sync([ben, *here], "lobby", "ben is back")

    async def test_cleanStop(self) -> None:
        """
        SIGTERM to one node: its users are told and closed, it exits 0,
        and the other node's users see them leave; their names are free.
        """
        await self.startRedis()
        a, b = await self.nodes(2)
        members = await self.members({a: ["ann", "abe"], b: ["ben", "bea"]})
        b.signal("TERM")
        for member in members[2:]:
            await member.find(kind("info", text="server shutting down"), what="the notice")
            await member.waitClosed()
        self.assertEqual(await b.wait(), 0)
        self.assertNotIn(b"Traceback", bytes(b.output))
        for member in members[:2]:
            await member.until(lambda c: {"ben", "bea"} <= set(c.left("lobby")), "ben, bea leave")
            self.assertEqual(member.left("lobby"), {"ben": "shutting down", "bea": "shutting down"})
        who = await members[0].ask("/who", kind("who"))
        self.assertEqual(sorted(who["names"]), ["abe", "ann"])
        await self.login(a, "bea")


class RedisOutageTests(ClusterTestCase):
    async def outage(self, a: Node, b: Node, members: list[Member]) -> None:
        """
        While both nodes are cut off from Redis: a member on each node
        speaks, and the other member on the same node hears it.
        """
        await a.logged(LOST)
        await b.logged(LOST)
        ann, abe, ben, bea = members
        ann.sendLine("ann while cut off")
        ben.sendLine("ben while cut off")
        for member, sender in ((abe, "ann"), (ann, "ann"), (bea, "ben"), (ben, "ben")):
            await member.until(
                lambda c, s=sender: (s, f"{s} while cut off") in c.texts("lobby"),
                f"{sender}'s message on the same node",
            )
        for member in members:
            await member.find(
                lambda o: o["type"] == "info" and "lost touch" in o["text"], what="the notice"
            )

    async def afterwards(self, a: Node, b: Node, members: list[Member]) -> None:
        """
        Once both nodes are back: messages cross again, and every member
        has every message once: the one before, the two said while cut
        off, the two after.
        """
        await a.logged(BACK)
        await b.logged(BACK)
        ann, abe, ben, bea = members
        ann.sendLine("ann after")
        ben.sendLine("ben after")
        await self.sync(members, "lobby", "last")
        for member in members:
            await member.until(
                lambda c: {("ann", "ann after"), ("ben", "ben after")} <= set(c.texts("lobby")),
                "the messages after",
            )
            self.assertEqual(
                member.texts("lobby"),
                Counter(
                    [
                        ("ann", "before"),
                        ("ann", "ann while cut off"),
                        ("ben", "ben while cut off"),
                        ("ann", "ann after"),
                        ("ben", "ben after"),
                        ("ann", "last"),
                    ]
                ),
                member.name,
            )
            await member.find(
                lambda o: o["type"] == "info" and "back in touch" in o["text"], what="the notice"
            )
        # What was said once both were back has one id everywhere, above
        # every id anyone was given before (provisional ones included).
        after = {("ann", "ann after"), ("ben", "ben after"), ("ann", "last")}
        ids = {(s, t): i for s, t, i in ann.said("lobby") if (s, t) in after}
        for member in members:
            said = member.said("lobby")
            self.assertEqual({(s, t): i for s, t, i in said if (s, t) in after}, ids, member.name)
            earlier = [i for s, t, i in said if (s, t) not in after]
            self.assertLess(max(earlier), min(ids.values()), (member.name, said))
        for node in (a, b):
            self.assertEqual(node.count(LOST), 1, node.tail())
            self.assertEqual(node.count(BACK), 1, node.tail())
            self.assertNotIn(b"Traceback", bytes(node.output))
        for member in (ann, ben):
            who = await member.ask("/who", kind("who"))
            self.assertEqual(sorted(who["names"]), ["abe", "ann", "bea", "ben"])

    async def start(self, timeout: float = TIMEOUT) -> tuple[Node, Node, list[Member]]:
        await self.startRedis()
        a, b = await self.nodes(2, timeout=timeout)
        members = await self.members({a: ["ann", "abe"], b: ["ben", "bea"]})
        await self.sync(members, "lobby", "before")
        return a, b, members

    async def test_frozenRedis(self) -> None:
        """
        Redis frozen (SIGSTOP) until both nodes take it for lost, then
        thawed: each node's users talk among themselves meanwhile, and
        afterwards every message reaches everyone once.
        """
        a, b, members = await self.start()
        self.redis.pause()
        await self.outage(a, b, members)
        self.redis.resume()
        await self.afterwards(a, b, members)
        self.assertEqual(a.count(DATA_LOST) + b.count(DATA_LOST), 0)

    async def test_killedAndRestartedRedis(self) -> None:
        """
        Redis killed, then started again, empty, on its port: each node's
        users talk among themselves meanwhile; each node logs the loss,
        the data lost and the return once; afterwards every message
        reaches everyone once, and /who sees all members again.
        """
        a, b, members = await self.start()
        await self.redis.kill()
        await self.outage(a, b, members)
        await self.redis.start()
        await a.logged(DATA_LOST)
        await b.logged(DATA_LOST)
        await self.afterwards(a, b, members)
        self.assertEqual(a.count(DATA_LOST), 1)
        self.assertEqual(b.count(DATA_LOST), 1)

    async def test_nodeKilledWhileRedisLostItsData(self) -> None:
        """
        Redis killed; while it is away node b is killed too; Redis comes
        back empty.  Node b never comes back to put its users in again,
        so they are gone: node a's users see each of them leave, as when
        any node dies, within three timeouts, and /who agrees.  (Node a
        writes back what it knew of b's users, and the reaper finds b
        silent: ClusterNode._synchronise, scripts.RESTORE.)
        """
        a, b, members = await self.start()
        await self.redis.kill()
        await a.logged(LOST)
        await b.logged(LOST)
        b.kill()
        await b.wait()
        await self.redis.start()
        await a.logged(BACK)
        ann, abe = members[:2]
        for member in (ann, abe):
            await member.until(
                lambda c: {c.left("lobby").get(name) for name in ("ben", "bea")} == {NODE_LOST},
                "ben and bea to leave",
                seconds=3 * TIMEOUT,
            )
        who = await ann.ask("/who", kind("who"))
        self.assertEqual(sorted(who["names"]), ["abe", "ann"])
        await self.login(a, "ben")

    async def test_queueBound(self) -> None:
        """
        With --cluster-queue 2, a node cut off from Redis keeps its first
        two messages for the others and drops the rest: its own users get
        all five at once, the other node's users the first two once Redis
        is back, and the node logs how many did not fit.
        """
        await self.startRedis()
        a, b = await self.nodes(2, "--cluster-queue", "2")
        members = await self.members({a: ["ann", "abe"], b: ["ben", "bea"]})
        ann, abe, ben, bea = members
        self.redis.pause()
        await a.logged(LOST)
        await b.logged(LOST)
        for i in range(5):
            ann.sendLine(f"queued {i}")
        await abe.until(lambda c: ("ann", "queued 4") in c.texts("lobby"), "the five messages")
        self.redis.resume()
        await a.logged(BACK)
        await b.logged(BACK)
        await self.sync([ben, bea, ann, abe], "lobby", "after")
        for member in (ann, abe):
            self.assertEqual(
                [t for _, t, _ in member.said("lobby")],
                [f"queued {i}" for i in range(5)] + ["after"],
            )
        for member in (ben, bea):
            self.assertEqual(
                [t for _, t, _ in member.said("lobby")], ["queued 0", "queued 1", "after"]
            )
        self.assertIn(b"; 3 operations did not fit in the queue", bytes(a.output))
        self.assertIn(b"; 0 operations did not fit in the queue", bytes(b.output))

    async def test_briefFreeze(self) -> None:
        """
        Redis frozen for less than the reply timeout, while every member
        sends: only a delay.  Nothing is lost or given twice, the order
        and the ids are one, and no node took Redis for lost.
        """
        # A reply timeout of 5 s: the freeze lasts as long as it takes to
        # see the messages in Redis's socket buffers.
        a, b, members = await self.start(timeout=20)
        self.redis.pause()
        pad = "x" * 300
        for member in members:
            for i in range(2):
                member.sendLine(f"{member.name} {i} {pad}")
        await waitFor(
            lambda: unreadBytes(self.redis.port) >= len(members) * 2 * len(pad),
            "the messages to wait in Redis's sockets",
        )
        self.redis.resume()
        for member in members:
            await member.until(lambda c: len(c.said("lobby")) >= 9, "nine messages")
        await self.sync(members, "lobby", "last")
        expected = Counter([("ann", "before"), ("ann", "last")])
        expected.update((m.name, f"{m.name} {i} {pad}") for m in members for i in range(2))
        for member in members:
            self.assertEqual(member.texts("lobby"), expected, member.name)
            self.assertEqual(member.said("lobby"), members[0].said("lobby"), member.name)
        self.assertEqual([i for _, _, i in members[0].said("lobby")], list(range(1, 11)))
        for node in (a, b):
            self.assertEqual(node.count(LOST), 0, node.tail())

    async def test_nameTakenOnBothSides(self) -> None:
        """
        While Redis is frozen, erin logs in on one node and ERIN on the
        other.  Once it is back, one keeps the name; the other is told why
        and disconnected, and the users of its node see it leave.  Both
        nodes' /who show one erin.
        """
        await self.startRedis()
        a, b = await self.nodes(2)
        ann, ben = await self.members({a: ["ann"], b: ["ben"]})
        self.redis.pause()
        await a.logged(LOST)
        await b.logged(LOST)
        erin = await self.login(a, "erin")
        ERIN = await self.login(b, "ERIN")
        await ann.until(lambda c: "erin" in c.seen("lobby"), "erin's join")
        await ben.until(lambda c: "ERIN" in c.seen("lobby"), "ERIN's join")
        self.redis.resume()
        await a.logged(BACK)
        await b.logged(BACK)
        closed = await withDeadline(
            defer.DeferredList(
                [erin.closed, ERIN.closed], fireOnOneCallback=True, consumeErrors=True
            ),
            "one erin to be disconnected",
        )
        loser = (erin, ERIN)[closed[1]]
        winner, witness = (ERIN, ann) if loser is erin else (erin, ben)
        self.assertFalse(winner.isClosed)
        told = [o for o in loser.objects if o["type"] == "error"]
        self.assertEqual(
            [o["text"] for o in told],
            [
                f"the name {loser.name} was taken elsewhere in the cluster while this server "
                "was cut off from it; log in again with another name"
            ],
        )
        await witness.until(lambda c: loser.name in c.left("lobby"), "the loser to leave")
        self.assertEqual(witness.left("lobby")[loser.name], NAME_LOST)
        await self.sync([ann, ben, winner], "lobby", "who is erin?")
        for member in (ann, ben):
            who = await member.ask("/who", kind("who"))
            self.assertEqual(sorted(who["names"]), sorted(["ann", "ben", winner.name]))
        self.assertEqual([o for o in winner.objects if o["type"] == "error"], [])


def unreadBytes(port: int) -> int:
    """
    Bytes waiting, unread, in the receive buffers of the established TCP
    connections whose local port is C{port} (a server's side of them).
    """
    total = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                total += int(queues.split(":")[1], 16)
    return total


class FrozenStartTests(ClusterTestCase):
    async def test_frozenRedisAtStart(self) -> None:
        """
        Redis accepts the connection but answers nothing (SIGSTOP): the
        node does not wait for ever; one line naming the URL, exit 1.
        """
        await self.startRedis()
        self.redis.pause()
        code, out, err = await runProcess(
            [
                *TWISTD,
                "chat",
                "--port",
                LOOPBACK.format(port=0),
                "--redis",
                self.redis.url,
                "--cluster-timeout",
                str(TIMEOUT),
            ],
            cwd=self.cwd,
        )
        self.redis.resume()
        self.assertEqual(code, 1, out + err)
        lines = err.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(
            lines[0].startswith(f"twistd chat: cannot use Redis at {self.redis.url}: no answer"),
            lines,
        )
        self.assertNotIn(b"listening on", out)


class StartErrorTests(TestCase):
    """
    A node that cannot join says so in one line and exits; no Redis needed.
    """

    def setUp(self) -> None:
        self.cwd = tempfile.mkdtemp(prefix="chatsvc-cluster-")
        self.addCleanup(shutil.rmtree, self.cwd, True)

    async def twistd(self, *args: str) -> tuple[int, bytes, bytes]:
        return await runProcess(
            [*TWISTD, "chat", "--port", LOOPBACK.format(port=0), *args], cwd=self.cwd
        )

    async def test_redisRefuses(self) -> None:
        """
        Nothing listens at the URL: one line naming it, exit status 1,
        nothing listening.
        """
        url = f"redis://127.0.0.1:{freePort()}/0"
        code, out, err = await self.twistd("--redis", url)
        self.assertEqual(code, 1, out + err)
        self.assertEqual(
            err.decode().splitlines(),
            [f"twistd chat: cannot use Redis at {url}: connection refused"],
        )
        self.assertNotIn(b"Traceback", out + err)
        self.assertNotIn(b"listening on", out)
        self.assertNotIn(b"is in the cluster", out)

    async def test_usageErrors(self) -> None:
        """
        A URL that is not Redis's, or --history with --redis: a usage
        error, exit status 2 as for any bad flag, one line naming it.
        """
        for args, message in [
            (
                ["--redis", "http://x"],
                "--redis: 'http://x' is not a redis:// URL (redis://HOST:PORT/DB)",
            ),
            (
                ["--redis", "redis://127.0.0.1:6379/0", "--history", "x.db"],
                "--history and --redis: a cluster keeps its history in Redis; leave --history out",
            ),
        ]:
            code, out, err = await self.twistd(*args)
            self.assertEqual(code, 2, (args, out, err))
            self.assertEqual(
                err.decode().splitlines(),
                [f"twistd chat: error: {message} (see twistd chat --help)"],
            )
            self.assertEqual(out, b"")
