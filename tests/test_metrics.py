"""
C{twistd chat --metrics}: a real chat service tree on loopback port 0,
real clients, and the page scraped with a real HTTP client (Twisted's
C{Agent}) and read with the Prometheus text parser.

The numbers follow what the clients did: connections, members, rooms,
messages and deliveries, bytes out, a refusal when full, a cut from the
log, held connections, history write times once the history is written.
Without C{--metrics}, C{prometheus_client} is not even imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from chatsvc.chat.service import Options, makeService
from chatsvc.metrics import MetricsService, WriteTimes, refusalReason
from tests.support import LineClient, TwistdProcess, connect, waitFor, withDeadline


def parseOptions(*args: str) -> Options:
    options = Options()
    options.parseOptions(["--port", "tcp:0:interface=127.0.0.1", *args])
    return options


def samples(text: str) -> dict:
    """
    Every sample of a Prometheus text page, by name and sorted labels.
    """
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class OptionsTests(SynchronousTestCase):
    def test_bareNumberIsLoopback(self) -> None:
        """
        A bare port number serves metrics on loopback only.
        """
        self.assertEqual(
            parseOptions("--metrics", "9567")["metrics"], "tcp:9567:interface=127.0.0.1"
        )

    def test_namedInterfaceKept(self) -> None:
        """
        An interface the user names is used as given.
        """
        value = "tcp:9567:interface=0.0.0.0"
        self.assertEqual(parseOptions("--metrics", value)["metrics"], value)

    def test_offByDefault(self) -> None:
        self.assertIsNone(parseOptions()["metrics"])

    def test_badValueOneLine(self) -> None:
        """
        A bad --metrics value is one line naming the flag, exit status 2.
        """
        self.patch(sys, "stderr", stream := _Buffer())
        with self.assertRaises(SystemExit) as caught:
            parseOptions("--metrics", "nonsense:1")
        self.assertEqual(caught.exception.code, 2)
        self.assertEqual(len(stream.text.splitlines()), 1, stream.text)
        self.assertIn("--metrics", stream.text)

    def test_notImportedWithoutMetrics(self) -> None:
        """
        A chat server without --metrics does not import prometheus_client.
        """
        code = (
            "import sys\n"
            "from chatsvc.chat.service import Options, makeService\n"
            "o = Options(); o.parseOptions(['--history', ':memory:'])\n"
            "makeService(o)\n"
            "print('prometheus_client' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(out.stdout.strip(), "False", out.stderr)


class _Buffer:
    def __init__(self) -> None:
        self.text = ""

    def write(self, data: str) -> None:
        self.text += data

    def flush(self) -> None:
        pass


class PiecesTests(SynchronousTestCase):
    def test_refusalReasons(self) -> None:
        self.assertEqual(refusalReason("full: the server is full (2 connections)"), "full")
        self.assertEqual(
            refusalReason("error: too many connections from your address (limit 1)"), "per-address"
        )

    def test_writeTimesCumulative(self) -> None:
        """
        Buckets are cumulative, with +Inf counting every write.
        """
        times = WriteTimes((0.01, 0.1))
        for seconds in (0.001, 0.05, 0.05, 3.0):
            times.observe(seconds)
        family = times.family()
        buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
        self.assertEqual(buckets, {"0.01": 1, "0.1": 3, "+Inf": 4})


class ScrapeTests(TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="chatsvc-metrics-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.clients: list[LineClient] = []

    def startServer(self, *args: str):
        history = os.path.join(self.dir, "history.sqlite3")
        options = parseOptions("--history", history, "--metrics", "tcp:0", *args)
        top = makeService(options)
        top.privilegedStartService()
        top.startService()
        self.addCleanup(self.stopServer, top)
        chat = next(s for s in top if getattr(s, "label", None) == "chat")
        metrics = next(s for s in top if isinstance(s, MetricsService))
        self.chatPort = chat.port.getHost().port
        self.metricsPort = metrics.port.getHost().port
        self.assertEqual(metrics.port.getHost().host, "127.0.0.1")
        return top

    async def stopServer(self, top) -> None:
        for client in self.clients:
            if not client.isClosed:
                client.transport.loseConnection()
        if top.running:
            await top.stopService()

    async def login(self, name: str) -> LineClient:
        client = await connect(self.chatPort)
        self.clients.append(client)
        client.sendLine(name)
        line = (await client.readLine()).decode()
        self.assertTrue(line.startswith(f"success: logged in as {name}"), line)
        return client

    async def scrape(self, path: str = "/metrics") -> dict:
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{self.metricsPort}{path}".encode()
        response = await withDeadline(agent.request(b"GET", url), "the metrics page")
        body = await withDeadline(readBody(response), "the metrics body")
        self.assertEqual(response.code, 200)
        self.assertIn(b"text/plain", response.headers.getRawHeaders(b"content-type")[0])
        return samples(body.decode("utf-8"))

    async def test_conversation(self) -> None:
        """
        Two members, a message: every number says so.
        """
        self.startServer()
        alice = await self.login("alice")
        bob = await self.login("bob")
        await alice.readLine()  # bob joined
        alice.sendLine("hello")
        await bob.readLine()
        found = await self.scrape()
        self.assertEqual(found[("chatsvc_connections", (("service", "chat"),))], 2)
        self.assertEqual(found[("chatsvc_members", ())], 2)
        self.assertEqual(found[("chatsvc_rooms", ())], 1)
        self.assertEqual(found[("chatsvc_messages_total", (("kind", "message"),))], 1)
        self.assertEqual(found[("chatsvc_messages_total", (("kind", "join"),))], 2)
        # joins: alice's to alice, bob's to both; the message to both
        self.assertEqual(found[("chatsvc_deliveries_total", ())], 5)
        self.assertGreater(found[("chatsvc_bytes_out_total", ())], len(b"[x] #lobby alice: hello"))
        self.assertEqual(
            found[("chatsvc_held_connections", (("hold", "output"), ("service", "chat")))], 0
        )
        self.assertIn(("chatsvc_backlog_bytes", ()), found)
        self.assertIn(("chatsvc_history_pending", ()), found)
        self.assertIn(("chatsvc_history_write_seconds_count", ()), found)

    async def test_ircGateway(self) -> None:
        """
        With --irc, the IRC gateway's connections are counted under their
        own service, and its members are members like any other.
        """
        top = self.startServer("--irc", "tcp:0:interface=127.0.0.1")
        irc = next(s for s in top if getattr(s, "label", None) == "irc")
        client = await connect(irc.port.getHost().port)
        self.clients.append(client)
        client.sendLine("NICK alice\r\nUSER alice 0 * :Alice\r\nJOIN #lobby\r")
        while b" 366 " not in await client.readLine():
            pass
        found = await self.scrape()
        self.assertEqual(found[("chatsvc_connections", (("service", "irc"),))], 1)
        self.assertEqual(found[("chatsvc_connections", (("service", "chat"),))], 0)
        self.assertEqual(found[("chatsvc_members", ())], 1)

    async def test_webGateway(self) -> None:
        """
        With --web, the browsers' chats are counted under service web; a
        connection over the cap on the web port is counted as refused.
        """
        from twisted.web.websocket import WebSocketClientEndpoint

        from tests.test_web_socket import _Factory

        top = self.startServer("--web", "tcp:0:interface=127.0.0.1", "--max-clients", "1")
        web = next(s for s in top if getattr(s, "label", None) == "web")
        port = web.port.getHost().port
        endpoint = WebSocketClientEndpoint.new(reactor, f"http://127.0.0.1:{port}/ws")
        alice = await withDeadline(defer.ensureDeferred(endpoint.connect(_Factory())), "connect")
        self.addCleanup(lambda: alice.transport.transport.abortConnection())
        alice.send("alice")
        await alice.expect(type="success")
        refused = await connect(port)
        self.clients.append(refused)
        await refused.waitClosed()
        found = await self.scrape()
        self.assertEqual(found[("chatsvc_connections", (("service", "web"),))], 1)
        self.assertEqual(found[("chatsvc_refusals_total", (("reason", "full"),))], 1)
        self.assertEqual(found[("chatsvc_members", ())], 1)

    async def test_refusalsAndCuts(self) -> None:
        """
        A connection refused when full counts as a refusal; the operator
        log's events for a cut and a refused line count, by their reason.
        """
        self.startServer("--max-clients", "1")
        await self.login("alice")
        late = await connect(self.chatPort)
        self.clients.append(late)
        self.assertTrue((await late.readLine()).startswith(b"full:"))
        Logger().info("cut {peer}", peer="test", event="cut", reason="flood")
        Logger().info("refused {peer}", peer="test", event="line-refused", reason="too-long")
        found = await self.scrape()
        self.assertEqual(found[("chatsvc_refusals_total", (("reason", "full"),))], 1)
        self.assertEqual(found[("chatsvc_cuts_total", (("reason", "flood"),))], 1)
        self.assertEqual(found[("chatsvc_refusals_total", (("reason", "too-long"),))], 1)

    async def test_realCut(self) -> None:
        """
        A connection the server cuts off (here: idle) counts once, by the
        reason its operator log event gives.
        """
        self.startServer("--idle-timeout", "0.05")
        idle = await connect(self.chatPort)
        self.clients.append(idle)
        await idle.waitClosed()
        found = await self.scrape()
        self.assertEqual(found[("chatsvc_cuts_total", (("reason", "idle-timeout"),))], 1)
        self.assertEqual(found[("chatsvc_connections", (("service", "chat"),))], 0)

    async def test_historyWriteTimed(self) -> None:
        """
        Once the history writer has written, its write time is observed
        and nothing is pending.
        """
        top = self.startServer()
        alice = await self.login("alice")
        bob = await self.login("bob")
        await alice.readLine()  # bob joined
        alice.sendLine("to be written")
        await bob.readLine()
        history = top.history
        await waitFor(lambda: history._waiting() == 0 and history._writing is None, "the writer")
        found = await self.scrape()
        self.assertGreaterEqual(found[("chatsvc_history_write_seconds_count", ())], 1)
        self.assertEqual(found[("chatsvc_history_pending", ())], 0)

    async def test_otherPathNotFound(self) -> None:
        self.startServer()
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{self.metricsPort}/nope".encode()
        response = await withDeadline(agent.request(b"GET", url), "the page")
        await readBody(response)
        self.assertEqual(response.code, 404)


class TwistdMetricsTests(TestCase):
    """
    C{twistd -n chat --metrics tcp:0} as an operator runs it.
    """

    def setUp(self) -> None:
        self.cwd = tempfile.mkdtemp(prefix="chatsvc-metrics-")
        self.addCleanup(shutil.rmtree, self.cwd, True)

    async def test_scrapeRealServer(self) -> None:
        """
        The metrics listener is announced like the chat's, on loopback,
        and serves a page the Prometheus parser reads.
        """
        server = await TwistdProcess.start(
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--history",
            ":memory:",
            "--metrics",
            "tcp:0",
            cwd=self.cwd,
            listeners=2,
        )
        self.addCleanup(server.stop)
        client = await connect(server.port(0))
        self.addCleanup(client.close)
        client.sendLine("alice")
        await client.readLine()
        self.assertTrue(server.listening[1][1].startswith("127.0.0.1:"), server.listening)
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{server.port(1)}/metrics".encode()
        response = await withDeadline(agent.request(b"GET", url), "the metrics page")
        found = samples((await withDeadline(readBody(response), "the body")).decode())
        self.assertEqual(found[("chatsvc_members", ())], 1)
        self.assertEqual(found[("chatsvc_connections", (("service", "chat"),))], 1)


class LineServiceTests(TestCase):
    """
    tsserv and cmdserv take C{--metrics} too: their connections,
    refusals and cuts, and nothing of the chat's.
    """

    async def scrapeWhileConnected(self, module, *args: str) -> dict:
        options = module.Options()
        options.parseOptions(["--port", "tcp:0:interface=127.0.0.1", "--metrics", "tcp:0", *args])
        top = module.makeService(options)
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        listeners = [s for s in top if getattr(s, "port", None) is not None]
        metrics = next(s for s in listeners if isinstance(s, MetricsService))
        line = next(s for s in listeners if s is not metrics and hasattr(s, "factory"))
        client = await connect(line.port.getHost().port)
        self.addCleanup(client.close)
        client.sendLine("help")
        await client.readLine()
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{metrics.port.getHost().port}/metrics".encode()
        response = await withDeadline(agent.request(b"GET", url), "the metrics page")
        return samples((await withDeadline(readBody(response), "the body")).decode())

    async def test_tsserv(self) -> None:
        from chatsvc import tsserv

        found = await self.scrapeWhileConnected(tsserv, "--udp", "off")
        self.assertEqual(found[("chatsvc_connections", (("service", "tsserv"),))], 1)
        self.assertNotIn(("chatsvc_members", ()), found)

    async def test_cmdserv(self) -> None:
        from chatsvc import cmdserv

        found = await self.scrapeWhileConnected(cmdserv)
        self.assertEqual(found[("chatsvc_connections", (("service", "cmdserv"),))], 1)
        self.assertNotIn(("chatsvc_history_pending", ()), found)
