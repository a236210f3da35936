"""
Tests for L{chatsvc.cmdserv}: the command table and protocol on memory
transports with a fake clock, the service on real loopback sockets, and
C{twistd -n cmdserv} in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import threading
import time

from twisted.internet import defer, protocol, reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from chatsvc import cmdserv, listing
from chatsvc.net.lineproto import Limits
from chatsvc.net.listening import ListenService
from tests.support import DEADLINE, TwistdProcess, connect, runProcess, waitFor, withDeadline
from tests.test_lineproto import selfSignedPEM
from tests.test_listing import TRAVERSALS, TREE_LISTING, bigDirectory, makeTree, tempDir
from tests.test_tsserv import (
    CAPPED,
    checkCaps,
    checkHostileLines,
    checkNonReader,
    checkPartialLineThenReset,
    connectFrom,
)

CTIME = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}")
NOW = 1_795_000_000.5


# -- doubles --------------------------------------------------------------------


class SyncLister:
    """
    A lister that runs the real listing at once, on the calling thread.
    """

    def __init__(self, root: bytes, maxEntries: int = 1000, maxScan: int = 10**6) -> None:
        self.root = root
        self.maxEntries = maxEntries
        self.maxScan = maxScan

    def list(self, request):
        d = defer.maybeDeferred(
            listing.listRequest, self.root, request, self.maxEntries, self.maxScan
        )
        return d, lambda: None


class ControlledLister:
    """
    A lister whose results the test hands out by hand.

    @ivar requests: C{(request, deferred)} in the order asked.
    @ivar cancelled: requests whose C{cancel} was called.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, defer.Deferred]] = []
        self.cancelled: list[str] = []

    def list(self, request):
        d = defer.Deferred()
        self.requests.append((request, d))
        return d, lambda: self.cancelled.append(request)


class Gate:
    """
    Wraps the real listing function so that listings running on the pool
    threads wait until the test opens the gate, and reports (on the
    reactor thread) when each starts and finishes.  Lets tests prove
    what happens I{while} a listing runs by the order of events alone.

    @ivar midScan: wait in the middle of reading the directory (at the
        listing's first cancellation poll, after
        L{listing.CANCEL_CHECK_EVERY} entries) rather than before it.
    """

    def __init__(self, midScan: bool = False) -> None:
        self.midScan = midScan
        self.opened = threading.Event()
        self.started = 0
        self.scanning = 0
        self.finished = 0
        self.running = 0
        self.mostRunning = 0
        self.sawCancel: list[bool] = []
        self._lock = threading.Lock()
        self._waiters: list[tuple[str, int, defer.Deferred]] = []

    def __call__(self, root, request, maxEntries, maxScan, cancelled):
        with self._lock:
            self.running += 1
            self.mostRunning = max(self.mostRunning, self.running)
        reactor.callFromThread(self._count, "started")
        polls = 0

        def pollWaitingMidScan() -> bool:
            nonlocal polls
            polls += 1
            if polls == 2:  # the first poll is before reading starts
                reactor.callFromThread(self._count, "scanning")
                self.opened.wait(DEADLINE)
            return cancelled()

        try:
            if self.midScan:
                return listing.listRequest(root, request, maxEntries, maxScan, pollWaitingMidScan)
            self.opened.wait(DEADLINE)
            self.sawCancel.append(cancelled())
            return listing.listRequest(root, request, maxEntries, maxScan, cancelled)
        finally:
            with self._lock:
                self.running -= 1
            reactor.callFromThread(self._count, "finished")

    def _count(self, what: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        for waiter in list(self._waiters):
            name, count, d = waiter
            if getattr(self, name) >= count:
                self._waiters.remove(waiter)
                d.callback(None)

    def waitFor(self, what: str, count: int) -> defer.Deferred:
        """
        Fires once C{count} listings have C{what} (started, scanning or
        finished).
        """
        if getattr(self, what) >= count:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiters.append((what, count, d))
        return withDeadline(d, f"{count} listings {what}")


# -- the command table -------------------------------------------------------------


class ParseCommandTests(unittest.SynchronousTestCase):
    def test_commands(self) -> None:
        """
        Command words are case-insensitive and surrounding spaces and tabs
        are ignored.
        """
        for line in ("date", "DATE", "Date", "  date", "date  ", "\tdate\t", " \t DaTe \t "):
            command, argument = cmdserv.parseCommand(line)
            self.assertIs(command, cmdserv.COMMANDS["date"], repr(line))
            self.assertEqual(argument, "")
        for name in ("os", "ip", "help", "ls"):
            self.assertIs(cmdserv.parseCommand(name.upper())[0], cmdserv.COMMANDS[name])

    def test_lsArgument(self) -> None:
        """
        C{ls} takes the rest of the line, stripped, as its path; spaces
        inside it are kept.
        """
        self.assertEqual(cmdserv.parseCommand("LS   beta  ")[1], "beta")
        self.assertEqual(cmdserv.parseCommand("ls\tmy dir ")[1], "my dir")
        self.assertEqual(cmdserv.parseCommand("ls")[1], "")

    def test_notCommands(self) -> None:
        """
        Anything else, including a command word with an argument it does
        not take, is not a command.
        """
        for line in ("", " ", "dates", "lsbeta", "date now", "os x", "help me", "ip 1", "d ate"):
            self.assertEqual(cmdserv.parseCommand(line), (None, ""), repr(line))

    def test_help(self) -> None:
        """
        The help line names every command.
        """
        line = cmdserv.helpLine()
        for name in cmdserv.COMMANDS:
            self.assertIn(name, line)
        self.assertNotIn("\n", line)


# -- the protocol on a memory transport ----------------------------------------------


class ProtocolMixin:
    def connect(self, lister, peer=None, limits: Limits | None = None):
        self.clock = Clock()
        self.clock.advance(NOW)
        factory = cmdserv.CommandFactory(lister, limits or Limits(), self.clock)
        peer = peer or IPv4Address("TCP", "10.1.2.3", 4567)
        proto = factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        return proto, transport

    def replies(self, transport) -> list[str]:
        data = transport.value().decode("utf-8")
        transport.clear()
        self.assertTrue(data == "" or data.endswith("\n"))
        return data.split("\n")[:-1]


class ProtocolTests(ProtocolMixin, unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.base = tempDir(self)
        self.root = listing.resolveRoot(makeTree(self.base))
        self.proto, self.transport = self.connect(SyncLister(self.root))

    def send(self, data: bytes) -> list[str]:
        self.proto.dataReceived(data)
        return self.replies(self.transport)

    def test_date(self) -> None:
        """
        C{date} answers the ctime of the clock passed in.
        """
        self.assertEqual(self.send(b"date\n"), [time.ctime(NOW)])
        self.clock.advance(3600)
        self.assertEqual(self.send(b"  DaTe \r\n"), [time.ctime(NOW + 3600)])

    def test_os(self) -> None:
        self.assertEqual(self.send(b"os\nOS\n  Os  \n"), [os.name] * 3)

    def test_ip(self) -> None:
        """
        C{ip} answers the peer's address and port.
        """
        self.assertEqual(self.send(b"ip\n IP \n"), ["10.1.2.3 4567"] * 2)
        proto, transport = self.connect(SyncLister(self.root), IPv6Address("TCP", "2001:db8::1", 9))
        proto.dataReceived(b"ip\n")
        self.assertEqual(self.replies(transport), ["2001:db8::1 9"])

    def test_ipWithoutAddress(self) -> None:
        """
        A connection with no IP address (a UNIX socket) gets an error line.
        """
        proto, transport = self.connect(SyncLister(self.root), UNIXAddress(None))
        proto.dataReceived(b"ip\n")
        self.assertEqual(self.replies(transport), ["error: ip: this connection has no IP address"])

    def test_help(self) -> None:
        self.assertEqual(self.send(b"help\nHELP\n"), [cmdserv.helpLine()] * 2)

    def test_echo(self) -> None:
        """
        Anything else is echoed with the timestamp, exactly as received:
        not stripped, case kept, a command word with extra words included.
        """
        stamp = f"[{time.ctime(NOW)}] "
        lines = ["hello", "  Hello, World  ", "date now", "lsx", "help me", "\t"]
        sent = "".join(line + "\n" for line in lines).encode()
        self.assertEqual(self.send(sent), [stamp + line for line in lines])

    def test_emptyLine(self) -> None:
        """
        An empty line (LF or CRLF) is echoed as the bare timestamp.
        """
        stamp = f"[{time.ctime(NOW)}] "
        self.assertEqual(self.send(b"\n\r\n   \n"), [stamp, stamp, stamp + "   "])

    def test_badBytes(self) -> None:
        """
        Invalid UTF-8 is replaced, NUL and ESC are made visible, the
        connection stays.
        """
        stamp = f"[{time.ctime(NOW)}] "
        replies = self.send(b"\xff\xc0\xaf\xed\xa0\x80x\n\x00\n\x1b[2J\ndate\n")
        self.assertEqual(replies[0], stamp + "\ufffd" * 6 + "x")
        self.assertEqual(replies[1], stamp + "\u2400")
        self.assertEqual(replies[2], stamp + "\u238b[2J")
        self.assertEqual(replies[3], time.ctime(NOW))
        self.assertFalse(self.transport.disconnecting)

    def test_loneCarriageReturn(self) -> None:
        """
        A lone CR does not end a line and is echoed made visible (U+240D),
        never as a raw CR byte.
        """
        self.proto.dataReceived(b"a\rb\n")
        reply = self.transport.value()
        self.assertNotIn(b"\r", reply)
        self.assertEqual(reply.decode("utf-8"), f"[{time.ctime(NOW)}] a\u240db\n")
        self.assertFalse(self.transport.disconnecting)

    def test_ls(self) -> None:
        """
        C{ls} lists the root; C{ls DIR} a directory inside it.
        """
        self.assertEqual(json.loads(self.send(b"ls\n")[0]), TREE_LISTING)
        self.assertEqual(json.loads(self.send(b" LS \n")[0]), TREE_LISTING)
        self.assertEqual(json.loads(self.send(b"ls beta/../beta\n")[0]), ["gamma/", "inner"])
        self.assertEqual(json.loads(self.send(b"Ls   chain1  \n")[0]), ["gamma/", "inner"])

    def test_lsRefusedAlike(self) -> None:
        """
        Every traversal, missing path and file gets one and the same line.
        """
        for request in TRAVERSALS:
            raw = request.encode("utf-8")
            self.assertEqual(self.send(b"ls " + raw + b"\n"), [cmdserv.REFUSAL], repr(request))

    def test_lsCapped(self) -> None:
        proto, transport = self.connect(SyncLister(self.root, maxEntries=2))
        proto.dataReceived(b"ls\n")
        self.assertEqual(json.loads(self.replies(transport)[0]), [".dot", "absin/", "... 16 more"])

    def test_pipelined(self) -> None:
        """
        Many requests in one read get their replies in order.
        """
        requests, expected = [], []
        for i in range(500):
            requests += ["date", "ls beta", "ls ..", f"x{i}", "os"]
            expected += [
                time.ctime(NOW),
                '["gamma/", "inner"]',
                cmdserv.REFUSAL,
                f"[{time.ctime(NOW)}] x{i}",
                os.name,
            ]
        self.assertEqual(self.send("\n".join(requests).encode() + b"\n"), expected)

    def test_byteAtATime(self) -> None:
        """
        The same stream one byte at a time gives the same replies.
        """
        stream = "date\r\nls beta\n\u00e9t\u00e9\nls ../x\nip\n".encode()
        whole = self.send(stream)
        pieces = []
        for i in range(len(stream)):
            pieces += self.send(stream[i : i + 1])
        self.assertEqual(pieces, whole)
        self.assertEqual(len(whole), 5)

    def test_lineTooLong(self) -> None:
        """
        An over-long line is refused with one error line; the connection
        stays and the next line is answered.
        """
        proto, transport = self.connect(SyncLister(self.root), limits=Limits(maxLine=16))
        proto.dataReceived(b"a" * 17 + b"\n" + b"a" * 16 + b"\n" + b"x" * 10000 + b"\nos\n")
        replies = self.replies(transport)
        self.assertEqual(
            replies,
            [
                "error: line too long (limit 16 bytes)",
                f"[{time.ctime(NOW)}] " + "a" * 16,
                "error: line too long (limit 16 bytes)",
                os.name,
            ],
        )
        self.assertFalse(transport.disconnecting)


class ListingOrderTests(ProtocolMixin, unittest.SynchronousTestCase):
    """
    While a listing is out, the connection holds its input: nothing after
    it is answered and the socket is not read.
    """

    def setUp(self) -> None:
        self.lister = ControlledLister()
        self.proto, self.transport = self.connect(self.lister)

    def test_heldUntilListed(self) -> None:
        self.proto.dataReceived(b"ls\ndate\nls beta\nos\n")
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual([r for r, _ in self.lister.requests], [""])
        self.lister.requests[0][1].callback('["a"]')
        self.assertEqual(self.replies(self.transport), ['["a"]', time.ctime(NOW)])
        self.assertEqual(self.transport.producerState, "paused")
        self.lister.requests[1][1].errback(listing.Refused())
        self.assertEqual(self.replies(self.transport), [cmdserv.REFUSAL, os.name])
        self.assertEqual(self.transport.producerState, "producing")

    def test_disconnectWhileListing(self) -> None:
        """
        A client gone mid-listing cancels the listing, and its result is
        dropped without a write or an error.
        """
        self.proto.dataReceived(b"ls\ndate\n")
        self.proto.connectionLost(None)
        self.assertEqual(self.lister.cancelled, [""])
        self.lister.requests[0][1].callback('["a"]')
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.proto.factory.connections, set())

    def test_cancelledDropped(self) -> None:
        """
        A listing that ends cancelled (the server is stopping) answers
        nothing.
        """
        self.proto.dataReceived(b"ls\n")
        self.lister.requests[0][1].errback(listing.Cancelled())
        self.assertEqual(self.transport.value(), b"")

    def test_unexpectedFailure(self) -> None:
        """
        A listing that fails for another reason is logged and answered
        with an error line; the connection goes on.
        """
        self.proto.dataReceived(b"ls\nos\n")
        self.lister.requests[0][1].errback(ZeroDivisionError())
        self.assertEqual(self.replies(self.transport), [cmdserv.FAILURE, os.name])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_halfCloseAfterLs(self) -> None:
        """
        A half-close with a listing out: the reply is written, then the
        connection closes.
        """
        self.proto.dataReceived(b"ls\nos")
        self.proto.readConnectionLost()
        self.assertFalse(self.transport.disconnecting)
        self.lister.requests[0][1].callback("[]")
        self.assertEqual(self.replies(self.transport), ["[]", os.name])
        self.assertTrue(self.transport.disconnecting)


# -- options --------------------------------------------------------------------------


class OptionsTests(unittest.SynchronousTestCase):
    def parse(self, *argv: str) -> cmdserv.Options:
        options = cmdserv.Options()
        options.parseOptions(list(argv))
        return options

    def refused(self, *argv: str) -> str:
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as caught:
            self.parse(*argv)
        self.assertEqual(caught.exception.code, 2)
        return stderr.getvalue().splitlines()[0]

    def test_defaults(self) -> None:
        """
        By default the working directory is served, resolved, with 1000
        names a listing, a million entries read at most and two threads.
        """
        options = self.parse()
        self.assertEqual(options["root"], os.fsencode(os.path.realpath(os.getcwd())))
        self.assertEqual(options["max-entries"], 1000)
        self.assertEqual(options["max-scan"], 1_000_000)
        self.assertEqual(options["list-threads"], 2)
        self.assertEqual(options["port"], "tcp:21567:interface=127.0.0.1")

    def test_loopbackUnlessNamed(self) -> None:
        """
        cmdserv shows the host's files: a C{--port} that names no interface
        binds loopback; one that names an interface is taken as given.
        """
        for value, expected in [
            ("2000", "tcp:2000:interface=127.0.0.1"),
            ("tcp:2000", "tcp:2000:interface=127.0.0.1"),
            ("tcp6:2000", "tcp6:2000:interface=\\:\\:1"),
            ("tcp:2000:interface=0.0.0.0", "tcp:2000:interface=0.0.0.0"),
            ("unix:/tmp/cmdserv.sock", "unix:/tmp/cmdserv.sock"),
        ]:
            self.assertEqual(self.parse("--port", value)["port"], expected, value)

    def test_helpSaysLoopback(self) -> None:
        """
        C{--help} tells that cmdserv listens on loopback unless told
        otherwise, and how to tell it.
        """
        text = " ".join(cmdserv.Options().getUsage(width=2000).split())
        self.assertIn("[default: tcp:21567:interface=127.0.0.1]", text)
        self.assertIn("Loopback only (127.0.0.1, ::1 for tcp6:) unless it names an interface", text)
        self.assertIn("listens on loopback only unless --port names an interface", text)

    def test_values(self) -> None:
        base = tempDir(self)
        os.mkdir(os.path.join(base, "real"))
        os.symlink("real", os.path.join(base, "link"))
        options = self.parse(
            "--root",
            os.path.join(base, "link"),
            "--max-entries",
            "5",
            "--max-scan",
            "5",
            "--list-threads",
            "1",
            "--port",
            "0",
        )
        self.assertEqual(options["root"], os.fsencode(os.path.join(base, "real")))
        self.assertEqual((options["max-entries"], options["max-scan"]), (5, 5))
        self.assertEqual(options["list-threads"], 1)

    def test_badValues(self) -> None:
        """
        A bad value is one line naming the flag, and exit status 2.
        """
        missing = os.path.join(tempDir(self), "missing")
        cases = {
            ("--max-entries", "0"): "--max-entries",
            ("--max-entries", "many"): "--max-entries",
            ("--max-scan", "-1"): "--max-scan",
            ("--max-entries", "10", "--max-scan", "9"): "--max-scan",
            ("--list-threads", "0"): "--list-threads",
            ("--list-threads", "1000"): "--list-threads",
            ("--root", missing): "--root",
            ("--root", __file__): "--root",
            ("--port", "99999"): "--port",
            ("--bogus",): "bogus",
        }
        for argv, flag in cases.items():
            line = self.refused(*argv)
            self.assertTrue(line.startswith("twistd cmdserv: error: "), line)
            self.assertIn(flag, line)


# -- the service on real loopback sockets ----------------------------------------------


class ServerMixin:
    """
    Runs the real listing service and factory in this process on a
    loopback port, with real threads.
    """

    async def startServer(self, rootPath: str | bytes, **kwargs) -> None:
        self.clients = []
        limits = kwargs.pop("limits", None)
        self.lister = cmdserv.ListingService(
            listing.resolveRoot(rootPath), reactor=reactor, **kwargs
        )
        self.gate = Gate()
        self.lister.startService()
        self.addCleanup(self.lister.stopService)
        # Cleanups run last-in first-out: open the gate before the pool
        # is stopped, so no thread is left waiting on it.
        self.addCleanup(self.gate.opened.set)
        self.factory = cmdserv.CommandFactory(self.lister, limits or Limits(), reactor)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(lambda: defer.ensureDeferred(self.stopServer()))

    async def stopServer(self) -> None:
        for client in self.clients:
            await client.close()
        await self.factory.closeAll(None, grace=DEADLINE)
        await self.port.stopListening()

    def useGate(self, midScan: bool = False) -> Gate:
        self.gate.midScan = midScan
        self.lister.listFunction = self.gate
        return self.gate

    async def client(self):
        client = await connect(self.port.getHost().port)
        self.clients.append(client)
        return client

    async def ask(self, client, line) -> str:
        client.sendLine(line)
        return await client.readText()


class LoopbackTests(ServerMixin, unittest.TestCase):
    def setUp(self) -> None:
        self.base = tempDir(self)
        self.rootPath = makeTree(self.base)

    async def test_everyCommand(self) -> None:
        """
        Every command over a real socket.
        """
        await self.startServer(self.rootPath)
        client = await self.client()
        self.assertRegex(await self.ask(client, "date"), f"^{CTIME.pattern}$")
        self.assertEqual(await self.ask(client, " OS "), os.name)
        local = client.transport.getHost()
        self.assertEqual(await self.ask(client, "ip"), f"127.0.0.1 {local.port}")
        self.assertEqual(await self.ask(client, "Help"), cmdserv.helpLine())
        self.assertEqual(json.loads(await self.ask(client, "ls")), TREE_LISTING)
        self.assertEqual(json.loads(await self.ask(client, "ls beta/../beta")), ["gamma/", "inner"])
        self.assertRegex(
            await self.ask(client, "  hi there "), rf"^\[{CTIME.pattern}\]   hi there $"
        )
        for request in TRAVERSALS:
            self.assertEqual(await self.ask(client, "ls " + request), cmdserv.REFUSAL)

    async def test_hugeDirectoryLeavesReactorFree(self) -> None:
        """
        While a listing is in the middle of reading 100,000 entries,
        another client is answered: the listing is held mid-directory
        until the other client's replies have arrived.  The listing is
        capped.
        """
        big = bigDirectory()
        await self.startServer(os.path.dirname(big))
        gate = self.useGate(midScan=True)
        lister, other = await self.client(), await self.client()
        lister.sendLine("ls big")
        await gate.waitFor("scanning", 1)
        self.assertRegex(await self.ask(other, "date"), CTIME)
        self.assertEqual(await self.ask(other, "ls ."), '["big/"]')
        # Only the other client's small listing has finished.
        self.assertEqual(gate.finished, 1)
        self.assertEqual(lister.received, b"")
        gate.opened.set()
        shown = json.loads(await lister.readText())
        self.assertEqual(len(shown), 1001)
        self.assertEqual(shown[:1000], [f"f{i:06d}" for i in range(1000)])
        self.assertEqual(shown[-1], "... 99000 more")

    async def test_listingsBounded(self) -> None:
        """
        A flood of listings from many clients runs on at most
        C{threads} threads; the rest wait, and other clients' commands
        are still answered.
        """
        await self.startServer(self.rootPath, threads=2)
        gate = self.useGate()
        listers = [await self.client() for _ in range(6)]
        other = await self.client()
        for client in listers:
            client.sendLine("ls beta")
        await gate.waitFor("started", 2)
        self.assertEqual(await self.ask(other, "os"), os.name)
        self.assertEqual(gate.started, 2)
        gate.opened.set()
        for client in listers:
            self.assertEqual(json.loads(await client.readText()), ["gamma/", "inner"])
        self.assertEqual(gate.mostRunning, 2)

    async def test_pipelinedInOrder(self) -> None:
        """
        10,000 mixed requests in one write are answered in order.
        """
        await self.startServer(self.rootPath)
        client = await self.client()
        port = client.transport.getHost().port
        kinds = [
            ("date", lambda i, r: CTIME.fullmatch(r)),
            ("os", lambda i, r: r == os.name),
            ("ls", lambda i, r: json.loads(r) == TREE_LISTING),
            ("ip", lambda i, r: r == f"127.0.0.1 {port}"),
            ("echo {i}", lambda i, r: r.endswith(f"] echo {i}") and CTIME.search(r)),
            ("LS beta", lambda i, r: r == '["gamma/", "inner"]'),
            ("ls ../secret", lambda i, r: r == cmdserv.REFUSAL),
            ("help", lambda i, r: r == cmdserv.helpLine()),
        ]
        count = 10_000
        requests = [kinds[i % len(kinds)][0].format(i=i) for i in range(count)]
        client.transport.write("".join(r + "\n" for r in requests).encode())
        for i in range(count):
            reply = await client.readText()
            self.assertTrue(kinds[i % len(kinds)][1](i, reply), (i, requests[i], reply))

    async def test_disconnectMidListing(self) -> None:
        """
        A client that resets its connection while its listing runs (and
        another that closes normally): the socket is not read while the
        listing runs, so the server finds out when the listing is done;
        the reply goes nowhere, nothing is logged as an error, and the
        next client is served.
        """
        await self.startServer(self.rootPath)
        gate = self.useGate()
        aborter, closer = await self.client(), await self.client()
        aborter.sendLine("ls")
        closer.sendLine("ls beta")
        await gate.waitFor("started", 2)
        aborter.transport.abortConnection()
        await aborter.close()
        await closer.close()
        gate.opened.set()
        await gate.waitFor("finished", 2)
        await waitFor(lambda: not self.factory.connections, "the server to see the closes")
        canary = await self.client()
        self.assertEqual(await self.ask(canary, "ls beta"), '["gamma/", "inner"]')

    async def test_closedByServerMidListing(self) -> None:
        """
        A connection the server drops while its listing runs (shutdown,
        send-queue overflow): the listing is told to stop, and its result
        is dropped.
        """
        await self.startServer(self.rootPath)
        gate = self.useGate()
        client = await self.client()
        client.sendLine("ls")
        await gate.waitFor("started", 1)
        [server] = self.factory.connections
        server.abort()
        await client.waitClosed()
        await waitFor(lambda: not self.factory.connections, "the server to drop it")
        gate.opened.set()
        await gate.waitFor("finished", 1)
        self.assertEqual(gate.sawCancel, [True])
        self.assertEqual(client.received, b"")

    async def test_halfCloseAfterLs(self) -> None:
        """
        A client that sends C{ls} and half-closes gets the listing (and
        everything after it), then the server closes.
        """
        await self.startServer(self.rootPath)
        gate = self.useGate()
        client = await self.client()
        client.transport.write(b"ls\nos")
        client.transport.loseWriteConnection()
        await gate.waitFor("started", 1)
        gate.opened.set()
        self.assertEqual(json.loads(await client.readText()), TREE_LISTING)
        self.assertEqual(await client.readText(), os.name)
        await client.waitClosed()

    async def test_hostileLines(self) -> None:
        """
        1 MiB without a line end, a line just over the limit, invalid
        UTF-8, NUL and an empty line: each answered with one line, the
        connection kept, a canary served throughout.
        """
        await self.startServer(self.rootPath)
        client, canary = await self.client(), await self.client()
        client.transport.write(b"x" * (1024 * 1024))
        self.assertEqual(await self.ask(canary, "os"), os.name)
        client.transport.write(b"\n")
        self.assertEqual(await client.readText(), "error: line too long (limit 2048 bytes)")
        self.assertEqual(
            await self.ask(client, "y" * 2049), "error: line too long (limit 2048 bytes)"
        )
        self.assertTrue((await self.ask(client, "z" * 2048)).endswith("] " + "z" * 2048))
        client.sendLine(b"\xff\xfe bad")
        self.assertTrue((await client.readText()).endswith("] \ufffd\ufffd bad"))
        client.sendLine(b"a\x00b")
        self.assertTrue((await client.readText()).endswith("] a\u2400b"))
        client.sendLine(b"")
        self.assertRegex(await client.readText(), rf"^\[{CTIME.pattern}\] $")
        self.assertEqual(await self.ask(client, "os"), os.name)
        self.assertEqual(await self.ask(canary, "os"), os.name)

    async def test_stopService(self) -> None:
        """
        makeService's service listens, answers and stops: connections are
        closed, then the listing pool stops.
        """
        options = cmdserv.Options()
        options.parseOptions(["--port", "tcp:0:interface=127.0.0.1", "--root", self.rootPath])
        top = cmdserv.makeService(options)
        top.privilegedStartService()
        top.startService()
        [listen] = [s for s in top if isinstance(s, ListenService)]
        client = await connect(listen.port.getHost().port)
        client.sendLine("ls beta")
        self.assertEqual(await client.readText(), '["gamma/", "inner"]')
        await top.stopService()
        await client.waitClosed()
        [pool] = [s.pool for s in top if isinstance(s, cmdserv.ListingService)]
        self.assertTrue(pool.joined)


class FactoryLimitTests(ServerMixin, unittest.TestCase):
    """
    L{cmdserv.CommandFactory} (with its real listing pool) on a loopback
    port under L{CAPPED}: hostile bytes, the policy, the send queue and
    resets through the real service factory.
    """

    def setUp(self) -> None:
        self.base = tempDir(self)
        self.rootPath = makeTree(self.base)

    async def serve(self) -> int:
        await self.startServer(self.rootPath, limits=Limits(**CAPPED))
        return self.port.getHost().port

    async def test_hostileBytes(self) -> None:
        """
        Items 7-10: see L{tests.test_tsserv.checkHostileLines}.
        """
        client = await connectFrom(await self.serve(), "127.0.0.1")
        self.clients.append(client)
        await checkHostileLines(self, client)

    async def test_caps(self) -> None:
        port = await self.serve()
        await checkCaps(self, self.factory, port)

    async def test_nonReader(self) -> None:
        port = await self.serve()
        await checkNonReader(self, self.factory, port)

    async def test_partialLineThenReset(self) -> None:
        port = await self.serve()
        await checkPartialLineThenReset(self, self.factory, port)


# -- twistd -n cmdserv -------------------------------------------------------------------

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
LOOPBACK = ["--port", "tcp:0:interface=127.0.0.1"]


class TwistdTests(unittest.TestCase):
    async def startTwistd(self, *args: str) -> TwistdProcess:
        process = await TwistdProcess.start("cmdserv", *LOOPBACK, *args, cwd=self.cwd)
        self.addCleanup(lambda: defer.ensureDeferred(self.stopTwistd(process)))
        return process

    async def stopTwistd(self, process: TwistdProcess) -> None:
        self.assertEqual(await process.stop(), 0)
        self.assertIn(b"Server Shut Down", process.output)
        self.assertNotIn(b"Traceback", process.output)

    def setUp(self) -> None:
        self.cwd = tempDir(self)

    async def test_sigtermNotice(self) -> None:
        """
        SIGTERM: a connected client gets a last line saying the server is
        shutting down, then the connection closes and twistd exits 0.
        """
        process = await self.startTwistd()
        client = await connect(process.port())
        self.assertEqual(await self._ask(client, "os"), os.name)
        process.signal("TERM")
        self.assertIn(b"shutting down", await client.readLine())
        await client.waitClosed()
        self.assertEqual(await process.wait(), 0)

    async def test_commands(self) -> None:
        """
        The real plugin: commands, listing the working directory by
        default, refusals alike, a root given as a symlink.
        """
        root = makeTree(self.cwd)
        link = os.path.join(self.cwd, "rootlink")
        os.symlink(root, link)
        process = await self.startTwistd("--root", link)
        self.assertIn(b"cmdserv serving " + os.fsencode(os.path.realpath(root)), process.output)
        client = await connect(process.port())
        try:
            self.assertRegex(await self._ask(client, "DATE"), CTIME)
            self.assertEqual(await self._ask(client, "os"), os.name)
            self.assertEqual(json.loads(await self._ask(client, "ls")), TREE_LISTING)
            self.assertEqual(
                await self._ask(client, "ip"), f"127.0.0.1 {client.transport.getHost().port}"
            )
            for request in ("..", "../rootlink", "/etc", "out", "\0", "sub/../../etc"):
                self.assertEqual(await self._ask(client, "ls " + request), cmdserv.REFUSAL)
        finally:
            await client.close()

    async def _ask(self, client, line) -> str:
        client.sendLine(line)
        return await client.readText()

    async def test_defaultRootAndCap(self) -> None:
        """
        Without C{--root} the working directory is served; C{--max-entries}
        caps the reply.
        """
        for name in ("b", "a", ".c"):
            open(os.path.join(self.cwd, name), "w").close()
        process = await self.startTwistd("--max-entries", "2")
        client = await connect(process.port())
        try:
            self.assertEqual(json.loads(await self._ask(client, "ls")), [".c", "a", "... 1 more"])
        finally:
            await client.close()

    async def test_hugeDirectory(self) -> None:
        big = bigDirectory()
        process = await self.startTwistd("--root", os.fsdecode(big))
        client = await connect(process.port())
        try:
            shown = json.loads(await self._ask(client, "ls"))
            self.assertEqual(len(shown), 1001)
            self.assertEqual(shown[-1], "... 99000 more")
        finally:
            await client.close()

    async def test_portInUse(self) -> None:
        """
        A port already in use, given as a number or a description: one
        line on standard error naming the port as the user gave it (no
        backlog the user never typed), no copy of it in the log on
        standard output, exit 1, no traceback.
        """
        taken = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        for given, shown in [
            (str(port), f"tcp:{port}:interface=127.0.0.1"),
            (f"tcp:{port}:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"),
        ]:
            code, out, err = await runProcess([*TWISTD, "cmdserv", "--port", given], cwd=self.cwd)
            self.assertEqual(code, 1, (given, out, err))
            self.assertNotIn(b"Traceback", out + err)
            self.assertEqual(
                err.decode().splitlines(),
                [f"cmdserv: cannot listen on {shown}: Address already in use"],
            )
            self.assertNotIn(b"cannot listen", out)
            self.assertNotIn(b"backlog", out + err)

    async def test_loopbackByDefault(self) -> None:
        """
        A bare port number listens on loopback only, and says so; nothing
        is warned about.
        """
        process = await TwistdProcess.start("cmdserv", "--port", "0", cwd=self.cwd)
        self.addCleanup(lambda: defer.ensureDeferred(self.stopTwistd(process)))
        self.assertEqual(process.listening[0][0], "tcp")
        self.assertTrue(process.listening[0][1].startswith("127.0.0.1:"), process.listening)
        self.assertNotIn(b"#warn]", process.output)
        client = await connect(process.port())
        try:
            self.assertEqual(await self._ask(client, "os"), os.name)
        finally:
            await client.close()

    async def test_everyInterfaceWarns(self) -> None:
        """
        Asked to listen on every interface, cmdserv does, and logs one
        warning line naming the address and the served directory.
        """
        root = tempDir(self)
        process = await TwistdProcess.start(
            "cmdserv", "--port", "tcp:0:interface=0.0.0.0", "--root", root, cwd=self.cwd
        )
        self.addCleanup(lambda: defer.ensureDeferred(self.stopTwistd(process)))
        warnings = [line for line in process.output.splitlines() if b"#warn]" in line]
        self.assertEqual(len(warnings), 1, process.output)
        self.assertIn(
            f"cmdserv is reachable beyond loopback on tcp 0.0.0.0:{process.port()}: "
            f"anyone who can connect can list {os.path.realpath(root)}".encode(),
            warnings[0],
        )

    async def test_tls(self) -> None:
        """
        An C{ssl:} port: on loopback unless told otherwise, announced as
        C{tls} with the bound address, and it speaks TLS.
        """
        from twisted.internet import ssl
        from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol

        from tests.support import LineClient

        pem = selfSignedPEM(self)
        process = await TwistdProcess.start(
            "cmdserv", "--port", f"ssl:0:privateKey={pem}", cwd=self.cwd
        )
        self.addCleanup(lambda: defer.ensureDeferred(self.stopTwistd(process)))
        self.assertEqual(process.listening, [("tls", f"127.0.0.1:{process.port()}")])
        self.assertNotIn(b"#warn]", process.output)
        endpoint = SSL4ClientEndpoint(
            reactor, "127.0.0.1", process.port(), ssl.CertificateOptions()
        )
        client = await withDeadline(connectProtocol(endpoint, LineClient()), "TLS connect")
        try:
            self.assertEqual(await self._ask(client, "os"), os.name)
        finally:
            await client.close()

    async def test_unix(self) -> None:
        """
        A UNIX socket is announced by its path and, being local, warned
        about by nobody.
        """
        from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol

        from tests.support import LineClient

        path = os.path.join(tempDir(self), "cmdserv.sock")
        process = await TwistdProcess.start("cmdserv", "--port", f"unix:{path}", cwd=self.cwd)
        self.addCleanup(lambda: defer.ensureDeferred(self.stopTwistd(process)))
        self.assertEqual(process.listening, [("unix", path)])
        self.assertNotIn(b"#warn]", process.output)
        endpoint = UNIXClientEndpoint(reactor, path)
        client = await withDeadline(connectProtocol(endpoint, LineClient()), "UNIX connect")
        try:
            self.assertEqual(await self._ask(client, "os"), os.name)
        finally:
            await client.close()

    async def test_badFlags(self) -> None:
        """
        Bad flag values and a missing root: one error line, exit 2.
        """
        for args, flag in [
            (["--max-entries", "lots"], "--max-entries"),
            (["--list-threads", "0"], "--list-threads"),
            (["--root", os.path.join(self.cwd, "missing")], "--root"),
        ]:
            code, out, err = await runProcess([*TWISTD, "cmdserv", *args], cwd=self.cwd)
            self.assertEqual(code, 2, (args, err))
            self.assertNotIn(b"Traceback", out + err)
            first = err.decode().splitlines()[0]
            self.assertTrue(first.startswith("twistd cmdserv: error: " + flag), first)
