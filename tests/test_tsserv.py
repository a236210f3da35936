"""
Tests for the timestamp service, C{twistd tsserv}: the time formats, the
TCP line protocol (hostile input included), RFC 867/868 over TCP and
UDP, options and service wiring, the real C{rdate} client, and the real
C{twistd} process.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tempfile
import time

from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from chatsvc import stamps
from chatsvc.net.framing import DEFAULT_MAX_LINE
from chatsvc.net.lineproto import Limits
from chatsvc.net.listening import ExitCleanly, ListenService
from chatsvc.stamps import daytime, looksLikeDaytime, looksLikeTime, rfc868, stamp
from chatsvc.tsserv import (
    Options,
    TimestampFactory,
    TimestampProtocol,
    daytimeFactory,
    makeService,
    timeFactory,
)
from chatsvc.udpservices import (
    DatagramGuard,
    DatagramListenService,
    DaytimeDatagramProtocol,
    StampDatagramProtocol,
    TimeDatagramProtocol,
    UDPLimits,
)
from tests.support import (
    LineClient,
    TwistdProcess,
    connect,
    runProcess,
    waitFor,
    withDeadline,
)
from tests.test_udp import HOSTILE, assertSafeReply, udpClient

#: A fixed time for fake clocks: Sun Sep  9 01:46:40 2001 UTC.
NOW = 1_000_000_000.0

PEER = IPv4Address("TCP", "192.0.2.1", 40000)

LOOPBACK_TCP0 = "tcp:0:interface=127.0.0.1"


def tempDir(case: unittest.SynchronousTestCase) -> str:
    """
    A fresh directory, removed after C{case}.  (C{TestCase.mktemp} is
    relative to the working directory, which under pytest is the
    checkout.)
    """
    path = tempfile.mkdtemp(prefix="tsserv-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def fixedClock(seconds: float = NOW) -> task.Clock:
    clock = task.Clock()
    clock.advance(seconds)
    return clock


def replyTo(text: str, seconds: float = NOW) -> bytes:
    return stamp(seconds, text).encode("utf-8") + b"\n"


class FormatTests(unittest.SynchronousTestCase):
    """
    L{chatsvc.stamps}: the replies and their recognisers.
    """

    def test_stamp(self):
        self.assertEqual(stamp(NOW, "hi"), f"[{time.ctime(NOW)}] hi")

    def test_daytime(self):
        self.assertEqual(daytime(NOW), time.ctime(NOW).encode() + b"\r\n")

    def test_rfc868(self):
        """
        Seconds since 1900, big-endian, wrapping at 2**32 (2036).
        """
        self.assertEqual(rfc868(NOW), (1_000_000_000 + 2_208_988_800).to_bytes(4, "big"))
        self.assertEqual(rfc868(0), b"\x83\xaa\x7e\x80")
        self.assertEqual(rfc868(2**32 - 2_208_988_800), b"\x00\x00\x00\x00")

    def test_recognisers(self):
        self.assertTrue(stamps.looksLikeStamp(stamp(NOW, "x").encode()))
        self.assertTrue(stamps.looksLikeStamp(b"[Sat Nov 21 10:00:00 2026]"))
        self.assertFalse(stamps.looksLikeStamp(b"[Sat Nov 21 2026] x"))
        self.assertTrue(looksLikeDaytime(daytime(NOW)))
        self.assertFalse(looksLikeDaytime(daytime(NOW) + b"x"))
        self.assertTrue(looksLikeTime(rfc868(NOW), NOW))
        self.assertTrue(looksLikeTime(rfc868(NOW - 3600), NOW))
        self.assertFalse(looksLikeTime(rfc868(NOW - 86400 * 30), NOW))
        self.assertFalse(looksLikeTime(b"ping", NOW))
        self.assertFalse(looksLikeTime(rfc868(NOW) + b"x", NOW))

    def test_recogniseAcrossWrap(self):
        """
        Near the 2036 wrap, a reply a little after it is still near.
        """
        wrap = 2**32 - 2_208_988_800
        self.assertTrue(looksLikeTime(rfc868(wrap + 10), wrap - 10))


class ProtocolTests(unittest.SynchronousTestCase):
    """
    L{TimestampProtocol} on a L{StringTransport} with a fixed clock.
    """

    def connect(self, maxLine: int = DEFAULT_MAX_LINE) -> TimestampProtocol:
        factory = TimestampFactory(Limits(maxLine=maxLine), fixedClock())
        proto = factory.buildProtocol(PEER)
        proto.makeConnection(StringTransport(peerAddress=PEER))
        return proto

    def exchange(self, data: bytes, **kw) -> bytes:
        proto = self.connect(**kw)
        proto.dataReceived(data)
        return proto.transport.value()

    def test_echo(self):
        self.assertEqual(self.exchange(b"hello\n"), replyTo("hello"))

    def test_lineEndings(self):
        """
        LF and CRLF both end a line; the CR is not part of it.
        """
        self.assertEqual(self.exchange(b"a\r\nb\n"), replyTo("a") + replyTo("b"))

    def test_emptyLine(self):
        self.assertEqual(self.exchange(b"\n\r\n"), replyTo("") * 2)

    def test_invalidUTF8(self):
        """
        Bytes that are not UTF-8 are replaced; the connection stays.
        """
        proto = self.connect()
        proto.dataReceived(b"\xff|\xc0\xaf|\x80|\xed\xa0\x80|caf\xc3\xa9\n")
        self.assertEqual(
            proto.transport.value(), replyTo("\ufffd|\ufffd\ufffd|\ufffd|" + "\ufffd" * 3 + "|café")
        )
        self.assertFalse(proto.transport.disconnecting)

    def test_controlsNeutralised(self):
        """
        NUL, ESC, a lone CR and C1 controls come back harmless: neither
        the characters nor the raw bytes 0x1B, 0x07, 0x9B (CSI to a terminal
        that reads C1 controls from bytes) are in the reply.
        """
        reply = self.exchange(b"a\x00b\x1b[2Jc\rd\xc2\x9be\x07\n")
        self.assertEqual(reply, replyTo("a\u2400b\u238b[2Jc\u240dd\ufffde\u2407"))
        for control in "\x00\x1b\x07\x9b\r":
            self.assertNotIn(control, reply[:-1].decode("utf-8"))
        for raw in (b"\x00", b"\x1b", b"\x07", b"\x9b", b"\r"):
            self.assertNotIn(raw, reply)

    def test_lineAtTheLimit(self):
        """
        A line of exactly C{--max-line} bytes is answered.
        """
        reply = self.exchange(b"x" * 64 + b"\r\n", maxLine=64)
        self.assertEqual(reply, replyTo("x" * 64))

    def test_lineJustOverTheLimit(self):
        """
        One byte over: one error line, nothing of the line echoed, and the
        next line is served.
        """
        reply = self.exchange(b"x" * 65 + b"\nnext\n", maxLine=64)
        self.assertEqual(reply, b"error: line too long (limit 64 bytes)\n" + replyTo("next"))

    def test_hugeLineBounded(self):
        """
        1 MiB without a newline, in pieces: one error line, and the framer
        never holds more than the limit.
        """
        proto = self.connect()
        for _ in range(256):
            proto.dataReceived(b"y" * 4096)
            self.assertLessEqual(proto.framer.tailLength, DEFAULT_MAX_LINE + 1)
        proto.dataReceived(b"\nafter\n")
        self.assertEqual(
            proto.transport.value(),
            f"error: line too long (limit {DEFAULT_MAX_LINE} bytes)\n".encode() + replyTo("after"),
        )
        self.assertFalse(proto.transport.disconnecting)

    def test_pipelined(self):
        """
        10,000 lines in one write are all answered, in order.
        """
        data = b"".join(b"%d\n" % i for i in range(10_000))
        self.assertEqual(self.exchange(data), b"".join(replyTo(str(i)) for i in range(10_000)))

    def test_byteAtATime(self):
        """
        The same stream one byte at a time (UTF-8 characters split, CRLF
        split, an over-long line) gives exactly the same replies.
        """
        stream = (
            b"caf\xc3\xa9\r\n\n\xf0\x9f\x98\x80 smile\r\n"
            + b"z" * 70
            + b"\r\nbad \xff\x1b[0m\nlast\n"
        )
        whole = self.exchange(stream, maxLine=64)
        proto = self.connect(maxLine=64)
        for i in range(len(stream)):
            proto.dataReceived(stream[i : i + 1])
        self.assertEqual(proto.transport.value(), whole)
        self.assertEqual(whole.count(b"\n"), 6)

    def test_halfClose(self):
        """
        After the peer half-closes, the last (unterminated) line is
        answered, then the connection is closed.
        """
        proto = self.connect()
        proto.dataReceived(b"one\ntwo")
        self.assertFalse(proto.transport.disconnecting)
        proto.readConnectionLost()
        self.assertEqual(proto.transport.value(), replyTo("one") + replyTo("two"))
        self.assertTrue(proto.transport.disconnecting)

    def test_clockTime(self):
        """
        The time told is the clock's, read at each line.
        """
        proto = self.connect()
        proto.dataReceived(b"a\n")
        proto.clock.advance(61)
        proto.dataReceived(b"b\n")
        self.assertEqual(proto.transport.value(), replyTo("a") + replyTo("b", NOW + 61))


class OneShotTests(unittest.SynchronousTestCase):
    """
    RFC 867 and RFC 868 over TCP: one reply, then close.
    """

    def serve(self, factory) -> StringTransport:
        proto = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        proto.makeConnection(transport)
        proto.dataReceived(b"ignored\r\n")
        return transport

    def test_daytime(self):
        transport = self.serve(daytimeFactory(fixedClock()))
        self.assertEqual(transport.value(), time.ctime(NOW).encode() + b"\r\n")
        self.assertTrue(transport.disconnecting)

    def test_time(self):
        transport = self.serve(timeFactory(fixedClock()))
        self.assertEqual(transport.value(), rfc868(NOW))
        self.assertTrue(transport.disconnecting)


class StdErr:
    """
    Capture C{sys.stderr} for the length of a test.
    """

    def __init__(self, case: unittest.SynchronousTestCase) -> None:
        self.buffer = io.StringIO()
        case.patch(sys, "stderr", self.buffer)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(unittest.SynchronousTestCase):
    """
    C{twistd tsserv} options.
    """

    def test_defaults(self):
        options = parse()
        self.assertEqual(options["port"], "tcp:21567")
        self.assertEqual(options["udp-port"], (21567, ""))
        self.assertIsNone(options["daytime"])
        self.assertIsNone(options["time"])
        self.assertEqual(options["udp-limits"], UDPLimits(rate=10, burst=20, totalRate=500))

    def test_udpFollowsPort(self):
        """
        UDP takes the TCP port number and interface.
        """
        self.assertEqual(parse("--port", "5000")["udp-port"], (5000, ""))
        self.assertEqual(parse("--port", LOOPBACK_TCP0)["udp-port"], (0, "127.0.0.1"))
        self.assertEqual(parse("--port", "tcp6:5000")["udp-port"], (5000, "::"))

    def test_udpMoved(self):
        options = parse("--port", "tcp:5000:interface=127.0.0.1", "--udp", "6000")
        self.assertEqual(options["udp-port"], (6000, "127.0.0.1"))
        options = parse("--udp", "udp:7000:interface=127.0.0.2")
        self.assertEqual(options["udp-port"], (7000, "127.0.0.2"))
        options = parse("--udp", r"udp:port=7000:interface=\:\:1")
        self.assertEqual(options["udp-port"], (7000, "::1"))

    def test_udpOff(self):
        self.assertIsNone(parse("--udp", "off")["udp-port"])
        self.assertIsNone(parse("--udp", "OFF")["udp-port"])

    def test_udpOffForOtherEndpoints(self):
        """
        A UNIX socket has no port number: UDP is off unless named.
        """
        path = os.path.join(tempDir(self), "ts.sock")
        self.assertIsNone(parse("--port", f"unix:{path}")["udp-port"])
        self.assertEqual(parse("--port", f"unix:{path}", "--udp", "6000")["udp-port"], (6000, ""))

    def test_rfcPorts(self):
        options = parse("--daytime", "1313", "--time", LOOPBACK_TCP0)
        self.assertEqual(options["daytime"], "tcp:1313")
        self.assertEqual(options["time"], LOOPBACK_TCP0)

    def test_rates(self):
        options = parse("--udp-rate", "0.5", "--udp-burst", "3", "--udp-total-rate", "100")
        self.assertEqual(options["udp-limits"], UDPLimits(rate=0.5, burst=3, totalRate=100))

    def test_badValues(self):
        """
        Each bad value is one error line naming the flag, and exit status 2.
        """
        for flag, value in [
            ("--udp-rate", "abc"),
            ("--udp-rate", "0"),
            ("--udp-rate", "nan"),
            ("--udp-burst", "0"),
            ("--udp-burst", "1.5"),
            ("--udp-total-rate", "-1"),
            ("--udp", "nonsense"),
            ("--udp", "70000"),
            ("--udp", "udp:"),
            ("--udp", "udp:7000:interface=::1"),
            ("--udp", "udp:7000:backlog=5"),
            ("--daytime", "99999"),
            ("--time", "bogus:1"),
            ("--port", "70000"),
        ]:
            stderr = StdErr(self)
            with self.assertRaises(SystemExit) as caught:
                parse(flag, value)
            self.assertEqual(caught.exception.code, 2)
            [error] = [line for line in stderr.lines() if "error:" in line]
            self.assertTrue(error.startswith(f"twistd tsserv: error: {flag}"), error)


class MemoryUDPReactor(MemoryReactorClock):
    """
    A C{MemoryReactorClock} that also records C{listenUDP}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[tuple] = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        from twisted.internet.testing import _FakePort

        self.udpPorts.append((port, protocol, interface, maxPacketSize))
        fake = _FakePort(IPv4Address("UDP", interface or "0.0.0.0", port))
        protocol.makeConnection(fake)
        return fake


class MakeServiceTests(unittest.SynchronousTestCase):
    """
    L{makeService} builds the listeners the options ask for.
    """

    def build(self, *argv: str) -> tuple:
        """
        Build and start the service on a memory reactor; returns its
        listeners and the reactor.
        """
        memory = MemoryUDPReactor()
        top = makeService(parse(*argv), memory)
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        others = [s for s in top if not hasattr(s, "label")]
        self.assertEqual([type(s) for s in others], [ExitCleanly])
        return [s for s in top if hasattr(s, "label")], memory

    def test_exitCleanly(self):
        """
        Stopping after a signal clears the signal twistd would otherwise
        kill itself with once stopped: exit status 0.
        """
        memory = MemoryUDPReactor()
        top = makeService(parse("--udp", "off"), memory)
        top.startService()
        memory._exitSignal = 15
        top.stopService()
        self.assertIsNone(memory._exitSignal)

    def test_default(self):
        top, memory = self.build()
        [tcp, udp] = list(top)
        self.assertIsInstance(tcp, ListenService)
        self.assertIsInstance(tcp.factory, TimestampFactory)
        self.assertIs(tcp.factory.clock, memory)
        self.assertEqual(memory.tcpServers[0][0], 21567)
        self.assertEqual(memory.tcpServers[0][2], 1024)
        [(port, proto, interface, size)] = memory.udpPorts
        self.assertEqual((port, interface, size), (21567, "", 513))
        self.assertIsInstance(proto, StampDatagramProtocol)
        self.assertIs(proto.clock, memory)

    def test_everything(self):
        top, memory = self.build(
            "--port",
            "tcp:5000:interface=127.0.0.1",
            "--daytime",
            "1313",
            "--time",
            "tcp:3737:interface=127.0.0.1",
        )
        self.assertEqual(
            [(s.label, type(s).__name__) for s in top],
            [
                ("tsserv", "ListenService"),
                ("tsserv", "DatagramListenService"),
                ("daytime", "ListenService"),
                ("daytime", "DatagramListenService"),
                ("time", "ListenService"),
                ("time", "DatagramListenService"),
            ],
        )
        self.assertEqual(
            [(p, type(proto).__name__, i) for p, proto, i, _ in memory.udpPorts],
            [
                (5000, "StampDatagramProtocol", "127.0.0.1"),
                (1313, "DaytimeDatagramProtocol", ""),
                (3737, "TimeDatagramProtocol", "127.0.0.1"),
            ],
        )
        guards = {id(proto.guard) for _, proto, _, _ in memory.udpPorts}
        self.assertEqual(len(guards), 1, "one guard for every UDP service")
        self.assertEqual(memory.udpPorts[0][1].guard.ownPorts, {5000, 1313, 3737})

    def test_udpOff(self):
        top, memory = self.build("--udp", "off", "--time", "3737")
        self.assertEqual(len(top), 3)
        self.assertEqual([p for p, *_ in memory.udpPorts], [3737])

    def test_unixPort(self):
        path = os.path.join(tempDir(self), "ts.sock")
        top, memory = self.build("--port", f"unix:{path}")
        self.assertEqual(len(top), 1)
        self.assertEqual(memory.udpPorts, [])
        self.assertEqual(memory.unixServers[0][0], path)


class ProbeProtocol(TimestampProtocol):
    """
    Records, after every read, how much the framer holds.
    """

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.factory.observe(len(data), self.framer.tailLength)


class ProbeFactory(TimestampFactory):
    protocol = ProbeProtocol

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.bytesIn = 0
        self.largestTail = 0
        self._waiting: list = []

    def observe(self, size: int, tail: int) -> None:
        self.bytesIn += size
        self.largestTail = max(self.largestTail, tail)
        for entry in list(self._waiting):
            if self.bytesIn >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def received(self, count: int) -> defer.Deferred:
        """
        Fires once the server has read C{count} bytes in all.
        """
        if self.bytesIn >= count:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append((count, d))
        return withDeadline(d, f"the server to read {count} bytes")


class LoopbackTests(unittest.TestCase):
    """
    The TCP timestamp protocol on real loopback sockets (port 0), the
    time told by a fixed clock.
    """

    def serve(self, factory=None) -> tuple:
        """
        Listen with C{factory}; at the end, stop listening, close every
        connection from the server side and wait until clients see it.
        """
        if factory is None:
            factory = ProbeFactory(Limits(), fixedClock())
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        clients: list[LineClient] = []

        async def cleanup():
            await port.stopListening()
            await factory.closeAll()
            for client in clients:
                await client.waitClosed()

        self.addCleanup(lambda: defer.ensureDeferred(cleanup()))

        async def client() -> LineClient:
            c = await connect(port.getHost().port)
            clients.append(c)
            return c

        return factory, client

    async def test_echo(self):
        factory, client = self.serve()
        c = await client()
        c.transport.write(b"hello\r\nworld\n")
        self.assertEqual(await c.readLines(2), [replyTo("hello")[:-1], replyTo("world")[:-1]])

    async def test_hugeLineWithCanary(self):
        """
        1 MiB without a newline in one write: one error line, the
        connection stays, the server's framer stays bounded all along, and
        a canary client is served throughout.
        """
        factory, client = self.serve()
        canary = await client()
        canary.sendLine("before")
        self.assertEqual(await canary.readLine(), replyTo("before")[:-1])
        big = await client()
        mib = 1024 * 1024
        big.transport.write(b"x" * mib)
        await factory.received(len(b"before\n") + mib)
        self.assertLessEqual(factory.largestTail, DEFAULT_MAX_LINE + 1)
        self.assertEqual(
            await big.readLine(), f"error: line too long (limit {DEFAULT_MAX_LINE} bytes)".encode()
        )
        canary.sendLine("during")
        self.assertEqual(await canary.readLine(), replyTo("during")[:-1])
        big.transport.write(b"x" * 1000 + b"\nafter\n")
        self.assertEqual(await big.readLine(), replyTo("after")[:-1])
        self.assertFalse(big.isClosed)
        self.assertLessEqual(factory.largestTail, DEFAULT_MAX_LINE + 1)

    async def test_pipelined(self):
        """
        10,000 lines in one write: every reply, in order.
        """
        factory, client = self.serve()
        c = await client()
        c.transport.write(b"".join(b"line %d\n" % i for i in range(10_000)))
        lines = await c.readLines(10_000)
        self.assertEqual(lines, [replyTo(f"line {i}")[:-1] for i in range(10_000)])

    async def test_halfClose(self):
        """
        Half-close after a request: the reply arrives, then the server
        closes.
        """
        factory, client = self.serve()
        c = await client()
        c.transport.write(b"bye")
        c.transport.loseWriteConnection()
        self.assertEqual(await c.readLine(), replyTo("bye")[:-1])
        await c.waitClosed()


# -- hostile input through a real factory, shared with test_cmdserv ----------

#: Small caps, so that docs/hardening.rst items 14-16 show with a few clients.
CAPPED = {"maxClients": 2, "maxPerAddress": 1, "limitLoopback": True, "sendQueue": 65536}


async def connectFrom(port: int, source: str) -> LineClient:
    """
    Connect a L{LineClient} to C{127.0.0.1:port} from the loopback
    address C{source} (any of 127.0.0.0/8 is local on Linux).
    """
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10, bindAddress=(source, 0))
    return await withDeadline(connectProtocol(endpoint, LineClient()), "connect")


async def assertServed(case, client: LineClient, text: str = "ping") -> None:
    """
    C{text} is echoed with a timestamp (both tsserv and cmdserv do that
    for a line that is not a command).
    """
    client.sendLine(text)
    reply = await client.readLine()
    case.assertTrue(reply.endswith(b"] " + text.encode()), reply)


def captureErrors(case) -> list[dict]:
    """
    Log events at level error or above, or carrying a failure, logged
    while C{case} runs.
    """
    errors: list[dict] = []

    def observe(event: dict) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    case.addCleanup(globalLogPublisher.removeObserver, observe)
    return errors


async def allGone(factory) -> None:
    await waitFor(lambda: not factory.connections, "the server to drop every connection")


def serverFor(factory, client: LineClient):
    """
    The server-side protocol of C{client}'s connection.
    """
    host = client.transport.getHost()
    [server] = [
        p
        for p in factory.connections
        if (p.transport.getPeer().host, p.transport.getPeer().port) == (host.host, host.port)
    ]
    return server


async def checkHostileLines(case, client: LineClient) -> None:
    """
    Every entry of L{HOSTILE} inside a line: one reply each, strict UTF-8
    without controls or bidi overrides, and the connection stays open.
    """
    for name, hostile in HOSTILE.items():
        client.transport.write(b"a" + hostile + b"z\n")
        text = assertSafeReply(case, await client.readLine(), name)
        case.assertRegex(text, r"^\[[^]]+\] a.*z$", name)
    await assertServed(case, client)
    case.assertFalse(client.isClosed)


async def checkCaps(case, factory, port: int) -> None:
    """
    Items 15 and 16 under L{CAPPED}: a second connection from one address
    gets the per-address C{error:} line while another address gets in;
    past the total cap a connection gets C{full:}; slots are released.
    """
    first = await connectFrom(port, "127.0.0.1")
    await assertServed(case, first)
    again = await connectFrom(port, "127.0.0.1")
    case.assertEqual(
        await again.readLine(), b"error: too many connections from your address (limit 1)"
    )
    await again.waitClosed()
    other = await connectFrom(port, "127.0.0.2")
    await assertServed(case, other)
    third = await connectFrom(port, "127.0.0.3")
    case.assertTrue((await third.readLine()).startswith(b"full: "))
    await third.waitClosed()
    await assertServed(case, first)
    case.assertEqual(len(factory.connections), 2)
    await other.close()
    await waitFor(lambda: len(factory.connections) == 1, "the server to see the close")
    late = await connectFrom(port, "127.0.0.3")
    await assertServed(case, late)
    for client in (first, late):
        await client.close()
    await allGone(factory)
    case.assertEqual((factory.policy.count, dict(factory.policy.perAddress)), (0, {}))


async def checkNonReader(case, factory, port: int) -> None:
    """
    Item 14: a client pipelining 20 MB of requests that never reads its
    replies is paced by back-pressure (the server stops reading it, and
    holds at most one read of its requests) or cut at the send queue; a
    canary is served throughout; once it is gone, its protocol is dropped
    from C{factory.connections}.
    """
    canary = await connectFrom(port, "127.0.0.1")
    await assertServed(case, canary)
    hog = await connectFrom(port, "127.0.0.2")
    await assertServed(case, hog)
    server = serverFor(factory, hog)
    hog.transport.pauseProducing()
    hog.transport.write((b"x" * 1000 + b"\n") * 20_000)
    await waitFor(
        lambda: server.isHeld("output") or server not in factory.connections,
        "the server to stop reading the non-reader or cut it",
    )
    if server in factory.connections:
        case.assertNotIn(server.transport, reactor.getReaders())
        # No more than one socket read (64 KiB) of its requests waits.
        case.assertLessEqual(len(server.framer), 65536 // 1001 + 1)
        case.assertLessEqual(server.framer.tailLength, 1001)
    # (The kernel may take more of its replies meanwhile, so the server
    # may read it again for a while: paced, not stopped for good.)
    await assertServed(case, canary)
    hog.transport.abortConnection()
    await hog.waitClosed()
    await waitFor(lambda: server not in factory.connections, "the server to drop the non-reader")
    await assertServed(case, canary)
    await canary.close()
    await allGone(factory)


async def checkPartialLineThenReset(case, factory, port: int) -> None:
    """
    Item 19: C{half} without a line end, then a reset: nothing answered,
    nothing logged as an error, the connection dropped from
    C{factory.connections}, and the next client served.
    """
    errors = captureErrors(case)
    client = await connectFrom(port, "127.0.0.1")
    client.transport.write(b"half")
    await waitFor(
        lambda: any(p.framer.tailLength == 4 for p in factory.connections),
        "the server to read the fragment",
    )
    server = serverFor(factory, client)
    client.transport.abortConnection()
    await client.waitClosed()
    await waitFor(lambda: server not in factory.connections, "the server to see the reset")
    case.assertEqual(bytes(client.received), b"")
    case.assertEqual(server.framer.tailLength, 0)
    nextClient = await connectFrom(port, "127.0.0.1")
    await assertServed(case, nextClient)
    await nextClient.close()
    await allGone(factory)
    case.assertEqual(errors, [])
    case.assertEqual(case.flushLoggedErrors(), [])


class FactoryLimitTests(unittest.TestCase):
    """
    L{TimestampFactory} on a loopback port under L{CAPPED}: the policy,
    the send queue and resets through the real service factory.
    """

    def setUp(self):
        self.factory = TimestampFactory(Limits(**CAPPED), reactor)
        self.listening = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port

        async def cleanup():
            await self.listening.stopListening()
            await self.factory.closeAll(None, grace=1)
            await allGone(self.factory)

        self.addCleanup(lambda: defer.ensureDeferred(cleanup()))

    async def test_caps(self):
        await checkCaps(self, self.factory, self.port)

    async def test_nonReader(self):
        await checkNonReader(self, self.factory, self.port)

    async def test_partialLineThenReset(self):
        await checkPartialLineThenReset(self, self.factory, self.port)

    async def test_hostileBytes(self):
        """
        Items 7-10 over TCP: see L{checkHostileLines}.
        """
        client = await connectFrom(self.port, "127.0.0.1")
        await checkHostileLines(self, client)
        await client.close()
        await allGone(self.factory)


class RFCLoopbackTests(unittest.TestCase):
    """
    RFC 867 daytime and RFC 868 time on real loopback TCP and UDP
    sockets, and the real C{rdate} reading them.
    """

    def serve(self, kind: str) -> tuple[int, int]:
        """
        Serve C{kind} (daytime or time) over TCP and UDP, with a fixed
        clock; returns the TCP and UDP port numbers.
        """
        clock = fixedClock()
        if kind == "daytime":
            factory, proto = daytimeFactory(clock), DaytimeDatagramProtocol(DatagramGuard(clock))
        else:
            factory, proto = timeFactory(clock), TimeDatagramProtocol(DatagramGuard(clock))
        tcp = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(tcp.stopListening)
        udp = DatagramListenService(0, "127.0.0.1", proto, kind, reactor)
        udp.startService()
        self.addCleanup(udp.stopService)
        return tcp.getHost().port, udp.port.getHost().port

    async def tcpReply(self, port: int) -> bytes:
        c = await connect(port)
        await c.waitClosed()
        return bytes(c.received)

    async def test_daytimeTCP(self):
        tcp, _ = self.serve("daytime")
        self.assertEqual(await self.tcpReply(tcp), time.ctime(NOW).encode() + b"\r\n")

    async def test_daytimeUDP(self):
        _, udp = self.serve("daytime")
        client = udpClient(self)
        client.send(b"", udp)
        self.assertEqual(await client.receive(), time.ctime(NOW).encode() + b"\r\n")

    async def test_timeTCP(self):
        tcp, _ = self.serve("time")
        self.assertEqual(await self.tcpReply(tcp), rfc868(NOW))

    async def test_timeUDP(self):
        _, udp = self.serve("time")
        client = udpClient(self)
        client.send(b"", udp)
        self.assertEqual(await client.receive(), rfc868(NOW))

    async def rdate(self, *args: str) -> str:
        """
        Run C{rdate -p ARGS 127.0.0.1} and return what it printed.

        rdate is a test requirement (Debian package C{rdate}): missing, the
        test fails rather than skips, unless C{CHATSVC_SKIP_RDATE=1} says
        to skip on purpose.
        """
        path = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin"
        rdate = shutil.which("rdate", path=path)
        if rdate is None:
            if os.environ.get("CHATSVC_SKIP_RDATE") == "1":
                raise unittest.SkipTest("rdate is not installed (CHATSVC_SKIP_RDATE=1)")
            self.fail("rdate is not installed: apt-get install rdate")
        code, out, err = await runProcess(
            [rdate, "-p", *args, "127.0.0.1"], env={"TZ": "UTC", "LC_ALL": "C"}
        )
        self.assertEqual((code, err), (0, b""), out)
        return out.decode().strip()

    def expected(self) -> str:
        return time.strftime("%a %b %e %H:%M:%S UTC %Y", time.gmtime(NOW))

    async def test_rdateTCP(self):
        """
        C{rdate -p} (RFC 868 over TCP, its default) reads our time.
        """
        tcp, _ = self.serve("time")
        self.assertEqual(await self.rdate("-o", str(tcp)), self.expected())

    async def test_rdateUDP(self):
        """
        C{rdate -p -u} (RFC 868 over UDP: an empty datagram) reads it too.
        """
        _, udp = self.serve("time")
        self.assertEqual(await self.rdate("-u", "-o", str(udp)), self.expected())


_LISTENING = re.compile(rb"(\w+) listening on (tcp|udp) \S+:(\d+)")


def portsOf(process: TwistdProcess) -> dict[tuple[str, str], int]:
    """
    C{(label, kind) -> port} from a twistd's C{listening on} log lines.
    """
    return {
        (m.group(1).decode(), m.group(2).decode()): int(m.group(3))
        for m in _LISTENING.finditer(bytes(process.output))
    }


def twistdArgv(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "tsserv",
        *args,
    ]


class TwistdTests(unittest.TestCase):
    """
    The real C{twistd -n tsserv} process.
    """

    def setUp(self):
        self.cwd = tempDir(self)

    async def start(self, *args: str, listeners: int) -> TwistdProcess:
        process = await TwistdProcess.start(
            "tsserv", "--port", LOOPBACK_TCP0, *args, cwd=self.cwd, listeners=listeners
        )

        async def stop():
            await process.stop()

        self.addCleanup(lambda: defer.ensureDeferred(stop()))
        return process

    async def test_everyServiceThenSIGTERM(self):
        """
        TCP and UDP timestamp, daytime and time all answer; SIGTERM closes
        connections, stops every port (UDP ones too) and exits 0.
        """
        process = await self.start("--daytime", LOOPBACK_TCP0, "--time", LOOPBACK_TCP0, listeners=6)
        ports = portsOf(process)
        self.assertEqual(len(ports), 6, ports)

        c = await connect(ports["tsserv", "tcp"])
        c.sendLine("hello")
        self.assertRegex(
            (await c.readLine()).decode(), r"^\[\w{3} \w{3} [ \d]\d [\d:]{8} \d{4}\] hello$"
        )

        udp = udpClient(self)
        udp.send(b"hello", ports["tsserv", "udp"])
        self.assertTrue((await udp.receive()).endswith(b"] hello"))
        udp.send(b"", ports["daytime", "udp"])
        self.assertTrue(looksLikeDaytime(await udp.receive()))
        udp.send(b"", ports["time", "udp"])
        self.assertTrue(looksLikeTime(await udp.receive(), time.time()))

        day = await connect(ports["daytime", "tcp"])
        await day.waitClosed()
        self.assertTrue(looksLikeDaytime(bytes(day.received)))
        self.assertTrue(bytes(day.received).endswith(b"\r\n"))
        tm = await connect(ports["time", "tcp"])
        await tm.waitClosed()
        self.assertTrue(looksLikeTime(bytes(tm.received), time.time()))

        self.assertEqual(await process.stop(), 0)
        await c.waitClosed()
        output = bytes(process.output)
        self.assertNotIn(b"Traceback", output)
        for (label, kind), port in ports.items():
            self.assertIn(f"({kind.upper()} Port {port} Closed)".encode(), output, label)

    async def test_sigtermNotice(self):
        """
        SIGTERM: a connected client gets a last line saying the server is
        shutting down, then the connection closes and twistd exits 0.
        """
        process = await self.start("--udp", "off", listeners=1)
        c = await connect(process.port())
        c.sendLine("hello")
        self.assertTrue((await c.readLine()).endswith(b"] hello"))
        process.signal("TERM")
        self.assertIn(b"shutting down", await c.readLine())
        await c.waitClosed()
        self.assertEqual(await process.wait(), 0)
        self.assertNotIn(b"Traceback", bytes(process.output))

    async def test_udpFloodLogged(self):
        """
        A flood from one source gets its burst and no more; the log tells
        the first drop with its source, then sums the rest up, so every
        drop is accounted for without a line per datagram.

        The rate is so low (one token per 1000 s) that no token comes back
        within the run: what is answered and dropped does not depend on how
        fast the machine is.  How many summary lines there are does (one
        per minute of flood), so the test counts drops, not lines.
        """
        process = await self.start("--udp-rate", "0.001", "--udp-burst", "1", listeners=2)
        port = portsOf(process)["tsserv", "udp"]
        flooder = udpClient(self)
        flood = 20  # few enough that the kernel's socket buffer never drops one
        for i in range(flood):
            flooder.send(b"%d" % i, port)
        # The second source's datagram queues behind the flood on the same
        # server socket: once it is answered, the whole flood was read.
        other = udpClient(self, "127.0.0.2")
        other.send(b"me", port)
        self.assertTrue((await other.receive()).endswith(b"] me"))
        self.assertTrue((await flooder.receive()).endswith(b"] 0"))
        self.assertEqual(await process.stop(), 0)  # logs what is pending
        output = bytes(process.output)
        self.assertNotIn(b"Traceback", output)
        self.assertEqual(len(flooder.received), 0)
        first = re.findall(rb"udp: dropped a datagram from 127\.0\.0\.1:\d+ \(([^)]*)\)", output)
        self.assertEqual(first, [b"over the per-source rate"], output.decode())
        summed = re.findall(
            rb"udp: dropped (\d+) more datagrams \(over the per-source rate: \1\)", output
        )
        self.assertEqual(1 + sum(int(n) for n in summed), flood - 1, output.decode())

    async def test_portInUse(self):
        """
        A TCP or UDP port that is taken: one line on stderr, a non-zero
        exit, no traceback.
        """
        first = await self.start(listeners=2)
        ports = portsOf(first)
        for args in (
            ["--port", f"tcp:{ports['tsserv', 'tcp']}:interface=127.0.0.1"],
            ["--port", LOOPBACK_TCP0, "--udp", str(ports["tsserv", "udp"])],
        ):
            code, out, err = await runProcess(twistdArgv(*args), cwd=self.cwd)
            self.assertNotEqual(code, 0)
            self.assertNotIn(b"Traceback", out + err)
            lines = err.decode().splitlines()
            self.assertEqual(len(lines), 1, err)
            self.assertRegex(lines[0], r"^tsserv: cannot listen on .*in use")
            # What the user typed, and only on standard error.
            self.assertNotIn(b"backlog", err)
            self.assertNotIn(b"cannot listen", out)

    async def test_badFlag(self):
        """
        A bad flag value: one error line naming it, exit status 2.
        """
        code, out, err = await runProcess(twistdArgv("--udp-rate", "fast"), cwd=self.cwd)
        self.assertEqual(code, 2)
        self.assertNotIn(b"Traceback", out + err)
        errors = [line for line in err.decode().splitlines() if "error" in line]
        self.assertEqual(len(errors), 1, err)
        self.assertIn("--udp-rate", errors[0])

    async def test_help(self):
        """
        C{twistd tsserv --help} lists every option.
        """
        code, out, err = await runProcess(twistdArgv("--help"), cwd=self.cwd)
        self.assertEqual(code, 0, err)
        text = out.decode()
        names = [name.rstrip("=") for name in Options().longOpt]
        for name in [
            "port",
            "udp",
            "udp-rate",
            "udp-burst",
            "udp-total-rate",
            "daytime",
            "time",
            "max-line",
        ]:
            self.assertIn(name, names)
        for name in names:
            self.assertRegex(text, rf"--{re.escape(name)}\b", name)

    def test_helpOnEmptyDatagrams(self):
        """
        C{--help} tells the truth about empty datagrams: the timestamp echo
        drops them, daytime and time answer them (RFC 867/868).
        """
        text = " ".join(Options().getUsage(width=2000).split())
        self.assertIn("and so are empty ones, except that daytime and time answer them", text)
        self.assertNotIn("empty, oversized", text)
