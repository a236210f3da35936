"""
A cluster whose nodes are on other hosts, as far as the network goes:
each node runs in a network namespace of its own (C{ip netns}), joined to
the test's namespace by a veth pair, and reaches Redis, which listens in
the test's namespace, across that link.  The clients connect to each
node across its link too.  Nothing goes over loopback, so this is the
path two machines take (README: two machines with Redis on one of them).

Needs root and C{ip} (Debian package iproute2); skipped otherwise, with
what the probe said.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from twisted.trial.unittest import SkipTest

from tests.redisserver import RedisConnection, RedisServer, skipUnlessRedis
from tests.test_cluster_process import ClusterTestCase, Node, kind

IP = shutil.which("ip")

#: The private networks the links are numbered from: 10.213.N.0/24, the
#: test's end .1, the node's end .2.
PREFIX = "10.213"


def ip(*args: str) -> subprocess.CompletedProcess:
    """
    Run C{ip ARGS}: blocking, but each is a few milliseconds.
    """
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)


def freeSubnets(count: int) -> list[int]:
    """
    C{count} values of N for which no interface here has an address in
    10.213.N.0/24 (another run of this test may be using some).
    """
    shown = ip("-o", "-4", "addr", "show").stdout
    return [n for n in range(1, 255) if f" {PREFIX}.{n}." not in shown][:count]


class Link:
    """
    A network namespace joined to ours by a veth pair on 10.213.N.0/24.
    """

    def __init__(self, tag: str, n: int) -> None:
        self.namespace = f"chatsvc-{tag}-{n}"
        self.outside = f"cs{tag}h{n}"  # interface names: 15 characters at most
        self.inside = f"cs{tag}n{n}"
        self.here = f"{PREFIX}.{n}.1"
        self.there = f"{PREFIX}.{n}.2"

    def create(self) -> str | None:
        """
        Make it; what went wrong (the command and its error) if anything did.
        """
        for args in (
            ("netns", "add", self.namespace),
            ("link", "add", self.outside, "type", "veth", "peer", "name", self.inside),
            ("link", "set", self.inside, "netns", self.namespace),
            ("addr", "add", f"{self.here}/24", "dev", self.outside),
            ("link", "set", self.outside, "up"),
            ("-n", self.namespace, "addr", "add", f"{self.there}/24", "dev", self.inside),
            ("-n", self.namespace, "link", "set", self.inside, "up"),
            ("-n", self.namespace, "link", "set", "lo", "up"),
        ):
            done = ip(*args)
            if done.returncode != 0:
                return f"'ip {' '.join(args)}' failed: {done.stderr.strip()}"
        return None

    def remove(self) -> None:
        ip("link", "del", self.outside)
        ip("netns", "del", self.namespace)


class NamespacedNode(Node):
    """
    A node run with C{ip netns exec NAMESPACE}, which becomes it (same
    PID): signals reach twistd itself.
    """

    namespace = ""

    def wrapper(self) -> tuple[str, ...]:
        return (IP, "netns", "exec", self.namespace)


class VethRedis(RedisServer):
    """
    A redis-server listening on the test's ends of the links (and on
    loopback, for the test's own questions), with a password, as the
    README says to run one that other machines reach (without one, Redis
    answers only loopback clients: protected mode).
    """

    password = "s3cret-of-the-test"

    def __init__(self, addresses: list[str]) -> None:
        super().__init__()
        self.addresses = addresses

    def argv(self) -> list[str]:
        argv = super().argv()
        at = argv.index("--bind")
        argv[at + 1 : at + 2] = [*self.addresses, "127.0.0.1"]
        return [*argv, "--requirepass", self.password]

    def urlAt(self, address: str, password: bool = True) -> str:
        secret = f":{self.password}@" if password else ""
        return f"redis://{secret}{address}:{self.port}/0"

    def command(self, *args):
        """
        Ask it something, over loopback, authenticated.
        """
        with RedisConnection(self.port) as connection:
            connection.command("AUTH", self.password)
            return connection.command(*args)


class NamespaceTests(ClusterTestCase):
    skip = skipUnlessRedis

    def setUp(self) -> None:
        if IP is None:
            raise SkipTest("no ip command (Debian package iproute2)")
        if os.geteuid() != 0:
            raise SkipTest("network namespaces need root")
        super().setUp()
        tag = str(os.getpid())
        self.links = [Link(tag, n) for n in freeSubnets(2)]
        for link in self.links:
            self.addCleanup(link.remove)
            problem = link.create()
            if problem is not None:
                raise SkipTest(f"cannot make a network namespace with a veth link: {problem}")

    async def namespacedNode(self, link: Link) -> Node:
        """
        A node in C{link}'s namespace, listening on its end of the link,
        with Redis at the test's end.
        """
        kind_ = type("LinkedNode", (NamespacedNode,), {"namespace": link.namespace})
        node = await kind_.start(
            "chat",
            "--port",
            f"tcp:0:interface={link.there}",
            "--redis",
            self.redis.urlAt(link.here),
            "--cluster-timeout",
            "2",
            cwd=self.cwd,
        )
        self.addCleanup(node.stop)
        # The log names Redis without its password.
        self.assertIn(
            f"is in the cluster at {self.redis.urlAt(link.here, password=False)}\n".encode(),
            bytes(node.output),
        )
        self.assertNotIn(self.redis.password.encode(), bytes(node.output))
        self.assertEqual(node.address()[0], link.there)
        return node

    async def test_nodesAcrossLinks(self) -> None:
        """
        Two nodes in two namespaces, Redis in ours: Redis sees each node
        connect from its end of its link; members on either node, reached
        across the links, talk as in one room, each message once and in
        one order; /who and /msg cross between the nodes.
        """
        one, two = self.links
        self.redis = VethRedis([one.here, two.here])
        self.addCleanup(self.redis.cleanup)
        await self.redis.start()
        a = await self.namespacedNode(one)
        b = await self.namespacedNode(two)

        clients = self.redis.command("CLIENT", "LIST").decode()
        peers = sorted(
            field.split("=", 1)[1].rsplit(":", 1)[0]
            for line in clients.splitlines()
            for field in line.split()
            if field.startswith("addr=")
        )
        # Each node's command and bus connections, and our question.
        self.assertEqual(peers, sorted([one.there] * 2 + [two.there] * 2 + ["127.0.0.1"]))

        members = await self.members({a: ["alice", "amy"], b: ["bob", "ben"]})
        for member in members:
            self.assertIn(member.transport.getPeer().host, (one.there, two.there))
        await self.exchange({"lobby": members}, 3)
        who = await members[0].ask("/who", kind("who"))
        self.assertEqual(sorted(who["names"]), ["alice", "amy", "ben", "bob"])
        await members[0].ask("/msg bob across the links", kind("private"))
        got = await members[2].find(kind("private", text="across the links"), what="the message")
        self.assertEqual((got["from"], got["to"]), ("alice", "bob"))
