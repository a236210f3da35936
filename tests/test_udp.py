"""
Tests for tsserv's UDP services (L{chatsvc.udpservices}): the drop rules,
the rate limits, the drop log, loops between services, and the same on
real loopback sockets.
"""

from __future__ import annotations

import os
import time
from collections import deque

from twisted.internet import defer, error, reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from chatsvc import udpservices
from chatsvc.stamps import daytime, rfc868, stamp
from chatsvc.udpservices import (
    EMPTY,
    LOW_PORT,
    MAX_DATAGRAM,
    OVERSIZED,
    REPLY,
    SERVICE_PORT,
    SERVICE_PORTS,
    SOURCE_RATE,
    TOTAL_RATE,
    DatagramGuard,
    DatagramListenService,
    DaytimeDatagramProtocol,
    StampDatagramProtocol,
    TimeDatagramProtocol,
    UDPLimits,
    interfaceOf,
    splitDescription,
    udpTwinOf,
)
from tests.support import withDeadline

#: A fixed time for the clocks of these tests.
NOW = 1_700_000_000.0

CLIENT = ("127.0.0.1", 40000)


class FakeHost:
    def __init__(self, port: int) -> None:
        self.port = port


class FakeDatagramTransport:
    """
    Enough of a UDP port for a C{DatagramProtocol}: records what is sent.
    """

    def __init__(self, port: int = 21567) -> None:
        self.sent: list[tuple[bytes, tuple]] = []
        self._host = FakeHost(port)

    def write(self, datagram: bytes, addr) -> None:
        self.sent.append((datagram, addr))

    def getHost(self):
        return self._host


def makeProtocol(cls=StampDatagramProtocol, port: int = 21567, clock=None, **limits):
    """
    A started datagram protocol of class C{cls} on a fake transport.
    """
    if clock is None:
        clock = task.Clock()
        clock.advance(NOW)
    guard = DatagramGuard(clock, UDPLimits(**limits))
    proto = cls(guard)
    proto.makeConnection(FakeDatagramTransport(port))
    return proto


class LogCapture:
    """
    Collect log events of L{chatsvc.udpservices} while active.
    """

    def __init__(self, case: unittest.SynchronousTestCase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self._observe)
        case.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event: dict) -> None:
        if event.get("log_namespace") == udpservices.__name__:
            self.events.append(event)

    def drops(self) -> list[dict]:
        return [e for e in self.events if "dropped" in e.get("log_format", "")]


#: Hostile bytes (docs/hardening.rst items 7, 8, 9 and 10), each sent inside
#: C{a...z}: invalid UTF-8, NUL, terminal escapes (ESC[2J, an OSC 52
#: clipboard write ended by BEL, ESC[6n), U+009B as UTF-8, a lone BEL
#: and a bidi override.
HOSTILE: dict[str, bytes] = {
    "FF": b"\xff",
    "C0 AF": b"\xc0\xaf",
    "lone 80": b"\x80",
    "ED A0 80": b"\xed\xa0\x80",
    "NUL": b"\x00",
    "ESC[2J": b"\x1b[2J",
    "OSC 52": b"\x1b]52;c;aGk=\x07",
    "ESC[6n": b"\x1b[6n",
    "U+009B": b"\xc2\x9b",
    "BEL": b"\x07",
    "U+202E": "\u202e".encode(),
}

#: What no reply may hold once decoded.
UNSAFE_CHARACTERS = ("\x1b", "\x07", "\x9b", "\x00", "\u202e", "\r")


def assertSafeReply(case: unittest.SynchronousTestCase, reply: bytes, what: str) -> str:
    """
    C{reply} is strict UTF-8, holds no raw ESC, BEL or NUL byte, and its
    text holds none of L{UNSAFE_CHARACTERS} (0x9B may only appear inside
    a longer UTF-8 sequence, such as U+241B's).

    @return: the decoded text.
    """
    try:
        text = reply.decode("utf-8")
    except UnicodeDecodeError as e:
        case.fail(f"{what}: reply {reply!r} is not UTF-8: {e}")
    for raw in (b"\x1b", b"\x07", b"\x00", b"\r"):
        case.assertNotIn(raw, reply, what)
    for character in UNSAFE_CHARACTERS:
        case.assertNotIn(character, text, what)
    return text


class DescriptionTests(unittest.SynchronousTestCase):
    """
    Finding the UDP twin of a stream endpoint description.
    """

    def test_split(self):
        self.assertEqual(
            splitDescription(r"tcp6:21567:interface=\:\:1:backlog=5"),
            ("tcp6", ["21567"], {"interface": "::1", "backlog": "5"}),
        )

    def test_tcpTwin(self):
        self.assertEqual(udpTwinOf("tcp:21567:backlog=1024"), (21567, ""))
        self.assertEqual(udpTwinOf("tcp:0:interface=127.0.0.1"), (0, "127.0.0.1"))
        self.assertEqual(udpTwinOf("tcp:port=99:interface=10.0.0.1"), (99, "10.0.0.1"))

    def test_tcp6Twin(self):
        self.assertEqual(udpTwinOf("tcp6:21567"), (21567, "::"))
        self.assertEqual(udpTwinOf(r"tcp6:21567:interface=\:\:1"), (21567, "::1"))

    def test_noTwin(self):
        self.assertIsNone(udpTwinOf("unix:/tmp/ts.sock"))
        self.assertIsNone(udpTwinOf("ssl:21567:privateKey=k.pem"))

    def test_interfaceOf(self):
        self.assertEqual(interfaceOf("ssl:443:interface=10.1.2.3:privateKey=k"), "10.1.2.3")
        self.assertEqual(interfaceOf("unix:/x"), "")


class GuardTests(unittest.SynchronousTestCase):
    """
    L{DatagramGuard}'s drop rules, through the timestamp protocol.
    """

    def setUp(self):
        self.proto = makeProtocol()
        self.sent = self.proto.transport.sent
        self.drops = self.proto.guard.drops.totals

    def test_normalReply(self):
        self.proto.datagramReceived(b"hello", CLIENT)
        self.assertEqual(self.sent, [(stamp(NOW, "hello").encode(), CLIENT)])

    def test_finalNewlineKept(self):
        """
        C{echo hi | nc -u} sends C{hi\\n}: the reply ends with the same
        line ending (no newline is added, none is lost).
        """
        self.proto.datagramReceived(b"hi\n", CLIENT)
        self.proto.datagramReceived(b"hi\r\n", CLIENT)
        self.assertEqual(
            [d for d, _ in self.sent],
            [stamp(NOW, "hi").encode() + b"\n", stamp(NOW, "hi").encode() + b"\r\n"],
        )

    def test_neutralised(self):
        """
        Invalid UTF-8 is replaced and controls (an inner LF among them)
        are made visible: no raw control byte is reflected.
        """
        self.proto.datagramReceived(b"a\xff\x1b[2J\x00b\nc", CLIENT)
        [(reply, _)] = self.sent
        self.assertEqual(reply, stamp(NOW, "a\ufffd\u238b[2J\u2400b\u240ac").encode())
        for raw in (b"\x00", b"\x1b", b"\x9b", b"\n"):
            self.assertNotIn(raw, reply)

    def test_empty(self):
        self.proto.datagramReceived(b"", CLIENT)
        self.assertEqual(self.sent, [])
        self.assertEqual(self.drops, {EMPTY: 1})

    def test_sizes(self):
        """
        512 bytes are answered; 513 (what a cut longer datagram reads as)
        are not.
        """
        self.proto.datagramReceived(b"x" * MAX_DATAGRAM, CLIENT)
        self.proto.datagramReceived(b"x" * (MAX_DATAGRAM + 1), CLIENT)
        self.assertEqual(len(self.sent), 1)
        self.assertEqual(self.drops, {OVERSIZED: 1})

    def test_lowPorts(self):
        for port in (0, 1, 7, 13, 19, 37, 53, 123, 1023):
            self.proto.datagramReceived(b"hi", ("127.0.0.1", port))
        self.assertEqual(self.sent, [])
        self.assertEqual(self.drops, {LOW_PORT: 9})

    def test_servicePorts(self):
        """
        Unprivileged well-known service ports and our own port are dropped.
        """
        for port in (1900, 5353, 11211, 21567):
            self.proto.datagramReceived(b"hi", ("127.0.0.1", port))
        self.assertEqual(self.sent, [])
        self.assertEqual(self.drops, {SERVICE_PORT: 4})

    def test_otherServicesPorts(self):
        """
        One guard serves every UDP service of a process: each service
        drops datagrams from the ports of the others.
        """
        DaytimeDatagramProtocol(self.proto.guard).makeConnection(FakeDatagramTransport(1313))
        self.proto.datagramReceived(b"hi", ("127.0.0.1", 1313))
        self.assertEqual(self.drops, {SERVICE_PORT: 1})

    def test_replyLooking(self):
        """
        Payloads shaped like a reply of any of our services are dropped;
        text that merely mentions a date is answered.
        """
        for payload in (
            stamp(NOW, "hello").encode(),
            stamp(NOW - 86400 * 400, "").encode(),
            b"[Mon Jan  1 00:00:00 1990]",
            daytime(NOW),
            daytime(NOW)[:-2],
            rfc868(NOW),
            rfc868(NOW + 3600),
        ):
            self.proto.datagramReceived(payload, CLIENT)
        self.assertEqual(self.sent, [])
        self.assertEqual(self.drops, {REPLY: 7})
        for payload in (
            b"ping",
            b"[hello]",
            b"it is Mon Jan  1 00:00:00 1990",
            b"\x00\x00\x00\x01",
        ):
            self.proto.datagramReceived(payload, CLIENT)
        self.assertEqual(len(self.sent), 4)

    def test_cutOversizedDetected(self):
        """
        The listening port reads one byte more than the limit, so a longer
        datagram (cut by the socket read) is seen as oversized.
        """
        self.assertEqual(udpservices.MAX_DATAGRAM, 512)
        service = DatagramListenService(0, "127.0.0.1", self.proto, "tsserv", FakeUDPReactor())
        service.privilegedStartService()
        self.assertEqual(service.reactor.maxPacketSize, MAX_DATAGRAM + 1)


class HostileBytesTests(unittest.SynchronousTestCase):
    """
    The timestamp datagram service and every entry of L{HOSTILE}: each is
    answered with strict UTF-8 holding no control or bidi override.
    """

    def test_hostileBytes(self):
        proto = makeProtocol(burst=100)
        for name, hostile in HOSTILE.items():
            del proto.transport.sent[:]
            proto.datagramReceived(b"a" + hostile + b"z", CLIENT)
            [(reply, to)] = proto.transport.sent
            self.assertEqual(to, CLIENT, name)
            text = assertSafeReply(self, reply, name)
            self.assertTrue(text.startswith(stamp(NOW, "a")), (name, text))
            self.assertTrue(text.endswith("z"), (name, text))
        self.assertEqual(proto.guard.drops.totals, {})


class FakeUDPReactor:
    """
    Records the arguments of C{listenUDP}.
    """

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.maxPacketSize = maxPacketSize
        self.interface = interface
        return self

    def getHost(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", self.interface, 4321)

    def callWhenRunning(self, f, *args, **kwargs):
        f(*args, **kwargs)


class RFCServiceTests(unittest.SynchronousTestCase):
    """
    RFC 867 daytime and RFC 868 time over UDP.
    """

    def test_daytime(self):
        """
        Any datagram, the empty one included, gets C{ctime} and CRLF.
        """
        proto = makeProtocol(DaytimeDatagramProtocol)
        proto.datagramReceived(b"", CLIENT)
        proto.datagramReceived(b"what time is it?\n", CLIENT)
        self.assertEqual(proto.transport.sent, [(daytime(NOW), CLIENT)] * 2)
        self.assertEqual(daytime(NOW), time.ctime(NOW).encode() + b"\r\n")

    def test_time(self):
        """
        An empty datagram (what C{rdate -u} sends) gets 4 bytes.
        """
        proto = makeProtocol(TimeDatagramProtocol)
        proto.datagramReceived(b"", CLIENT)
        self.assertEqual(proto.transport.sent, [(rfc868(NOW), CLIENT)])
        self.assertEqual(int.from_bytes(rfc868(NOW), "big"), int(NOW) + 2208988800)

    def test_timeRefusesAnyFourBytes(self):
        """
        A 4-byte payload is how any time server's reply looks, whatever
        its clock: the time service never answers one.
        """
        proto = makeProtocol(TimeDatagramProtocol)
        proto.datagramReceived(b"\x00\x00\x00\x01", CLIENT)
        proto.datagramReceived(b"ping", CLIENT)
        self.assertEqual(proto.transport.sent, [])
        self.assertEqual(proto.guard.drops.totals, {REPLY: 2})

    def test_sameRules(self):
        """
        Daytime and time keep the other drop rules.
        """
        for cls in (DaytimeDatagramProtocol, TimeDatagramProtocol):
            proto = makeProtocol(cls)
            proto.datagramReceived(b"", ("127.0.0.1", 37))
            proto.datagramReceived(b"", ("127.0.0.1", 1900))
            proto.datagramReceived(b"x" * 600, CLIENT)
            proto.datagramReceived(stamp(NOW, "x").encode(), CLIENT)
            self.assertEqual(proto.transport.sent, [])
            self.assertEqual(
                proto.guard.drops.totals,
                {LOW_PORT: 1, SERVICE_PORT: 1, OVERSIZED: 1, REPLY: 1},
            )


class RateTests(unittest.SynchronousTestCase):
    """
    Per-source and total token buckets.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(NOW)

    def test_perSource(self):
        """
        A source gets its burst, then C{rate} replies a second; another
        source is unaffected.
        """
        proto = makeProtocol(clock=self.clock, rate=10, burst=20)
        for _ in range(1000):
            proto.datagramReceived(b"x", CLIENT)
        proto.datagramReceived(b"x", ("127.0.0.2", 40000))
        self.assertEqual(len(proto.transport.sent), 21)
        self.assertEqual(proto.transport.sent[-1][1], ("127.0.0.2", 40000))
        self.assertEqual(proto.guard.drops.totals, {SOURCE_RATE: 980})
        self.clock.advance(1)
        for _ in range(100):
            proto.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(proto.transport.sent), 31)

    def test_sourceIsTheAddress(self):
        """
        Changing source port does not buy a new bucket; an IPv6 /64 is
        one source.
        """
        proto = makeProtocol(clock=self.clock, rate=1, burst=2)
        for port in range(40000, 40010):
            proto.datagramReceived(b"x", ("127.0.0.1", port))
        for host in ("2001:db8::1", "2001:db8::2", "2001:db8:0:0:ffff::3"):
            proto.datagramReceived(b"x", (host, 40000))
        self.assertEqual(len(proto.transport.sent), 4)

    def test_total(self):
        """
        The total bucket bounds replies over many sources.
        """
        proto = makeProtocol(clock=self.clock, rate=10, burst=20, totalRate=5)
        for i in range(100):
            proto.datagramReceived(b"x", (f"10.0.0.{i}", 40000))
        self.assertEqual(len(proto.transport.sent), 5)
        self.assertEqual(proto.guard.drops.totals, {TOTAL_RATE: 95})

    def test_junkCostsNoTokens(self):
        """
        Datagrams dropped by the other rules spend nothing from the
        buckets.
        """
        proto = makeProtocol(clock=self.clock, rate=1, burst=1, totalRate=1)
        for _ in range(50):
            proto.datagramReceived(b"", CLIENT)
            proto.datagramReceived(b"x", ("127.0.0.1", 53))
        proto.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(proto.transport.sent), 1)

    def test_tableBounded(self):
        """
        Spoofed source addresses cannot grow the per-source table.
        """
        proto = makeProtocol(clock=self.clock, maxSources=100, totalRate=1e9)
        for i in range(5000):
            proto.datagramReceived(b"x", (f"10.{i // 256}.{i % 256}.1", 40000))
        self.assertEqual(len(proto.guard._perSource), 100)


class DropLogTests(unittest.SynchronousTestCase):
    """
    Drops are logged, but never one line per datagram.
    """

    def test_flood(self):
        """
        A thousand drops: one line at once, then one summary per interval.
        """
        logged = LogCapture(self)
        clock = task.Clock()
        clock.advance(NOW)
        proto = makeProtocol(clock=clock, rate=1, burst=1)
        for _ in range(1000):
            proto.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(logged.drops()), 1)
        self.assertIn("127.0.0.1", logged.drops()[0]["host"])
        clock.advance(udpservices.DROP_LOG_INTERVAL)
        self.assertEqual(len(logged.drops()), 2)
        self.assertEqual(logged.drops()[1]["count"], 998)
        for _ in range(1000):
            proto.datagramReceived(b"", CLIENT)
        self.assertEqual(len(logged.drops()), 2)
        clock.advance(udpservices.DROP_LOG_INTERVAL)
        self.assertEqual(len(logged.drops()), 3)
        clock.advance(udpservices.DROP_LOG_INTERVAL * 10)
        self.assertEqual(len(logged.drops()), 3)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_flushOnStop(self):
        """
        Stopping the protocol logs what is pending and leaves no timer.
        """
        logged = LogCapture(self)
        clock = task.Clock()
        proto = makeProtocol(clock=clock)
        for _ in range(3):
            proto.datagramReceived(b"", CLIENT)
        proto.doStop()
        self.assertEqual([e.get("count") for e in logged.drops()], [None, 2])
        self.assertEqual(clock.getDelayedCalls(), [])


class Network:
    """
    A loss-free in-memory network between datagram protocols, to see
    whether a packet bounces between services.
    """

    def __init__(self) -> None:
        self.queue: deque = deque()
        self.nodes: dict[tuple, DatagramProtocol] = {}
        self.delivered = 0

    def attach(self, proto: DatagramProtocol, addr: tuple) -> None:
        network = self

        class Transport(FakeDatagramTransport):
            def write(self, datagram, to):
                network.queue.append((datagram, addr, to))

        proto.makeConnection(Transport(addr[1]))
        self.nodes[addr] = proto

    def run(self, limit: int = 100) -> int:
        while self.queue and self.delivered < limit:
            datagram, source, to = self.queue.popleft()
            self.delivered += 1
            self.nodes[to].datagramReceived(datagram, source)
        return self.delivered


class LoopTests(unittest.SynchronousTestCase):
    """
    Two services (two tsserv instances, or different services) and one
    spoofed packet claiming to come from one of them: at most two packets
    go over the wire, whatever the pair and whatever the trigger.
    """

    kinds = {
        "stamp": StampDatagramProtocol,
        "daytime": DaytimeDatagramProtocol,
        "time": TimeDatagramProtocol,
    }
    triggers = (b"", b"x", b"ping", b"\x00\x00\x00\x00", b"hello\n", b"x" * 512)

    def test_noLoop(self):
        clock = task.Clock()
        clock.advance(NOW)
        for a in self.kinds:
            for b in self.kinds:
                for trigger in self.triggers:
                    network = Network()
                    one = ("127.0.0.1", 30001)
                    two = ("127.0.0.2", 30002)
                    # Separate guards: separate processes (or machines).
                    network.attach(self.kinds[a](DatagramGuard(clock)), one)
                    network.attach(self.kinds[b](DatagramGuard(clock)), two)
                    network.queue.append((trigger, two, one))
                    self.assertLessEqual(network.run(), 2, (a, b, trigger))

    def test_noLoopAcrossClocks(self):
        """
        Two time services whose clocks disagree by years still do not
        loop.
        """
        early, late = task.Clock(), task.Clock()
        late.advance(NOW)
        network = Network()
        one, two = ("127.0.0.1", 30001), ("127.0.0.2", 30002)
        network.attach(TimeDatagramProtocol(DatagramGuard(early)), one)
        network.attach(TimeDatagramProtocol(DatagramGuard(late)), two)
        network.queue.append((b"", two, one))
        self.assertEqual(network.run(), 2)


class UDPClient(DatagramProtocol):
    """
    A loopback UDP client: received datagrams as Deferreds.
    """

    noisy = False

    def __init__(self) -> None:
        self.received: deque = deque()
        self._waiters: deque = deque()

    def datagramReceived(self, datagram: bytes, addr) -> None:
        if self._waiters:
            self._waiters.popleft().callback(datagram)
        else:
            self.received.append(datagram)

    def receive(self) -> defer.Deferred:
        """
        The next datagram, now or when it arrives.
        """
        if self.received:
            return defer.succeed(self.received.popleft())
        d = defer.Deferred()
        self._waiters.append(d)
        return withDeadline(d, "a datagram")

    def send(self, datagram: bytes, port: int, host: str = "127.0.0.1") -> None:
        self.transport.write(datagram, (host, port))


def udpClient(case: unittest.TestCase, host: str = "127.0.0.1") -> UDPClient:
    """
    A L{UDPClient} on a loopback port, closed at the end of C{case}
    (C{host} another loopback address for a second source).
    """
    client = UDPClient()
    port = reactor.listenUDP(0, client, interface=host)
    case.addCleanup(port.stopListening)
    return client


class CountingMixin:
    """
    Count datagrams handled, and fire waiters when a count is reached
    (the event that says the server has seen what was sent).
    """

    def datagramReceived(self, datagram, addr):
        super().datagramReceived(datagram, addr)
        self.count = getattr(self, "count", 0) + 1
        waiting = getattr(self, "waiting", [])
        for entry in list(waiting):
            if self.count >= entry[0]:
                waiting.remove(entry)
                entry[1].callback(None)

    def handled(self, count: int) -> defer.Deferred:
        """
        Fires once C{count} datagrams have been handled in all.
        """
        if getattr(self, "count", 0) >= count:
            return defer.succeed(None)
        d = defer.Deferred()
        self.__dict__.setdefault("waiting", []).append((count, d))
        return withDeadline(d, f"{count} datagrams handled")


class CountingStamp(CountingMixin, StampDatagramProtocol):
    pass


class CountingDaytime(CountingMixin, DaytimeDatagramProtocol):
    pass


class LoopbackTests(unittest.TestCase):
    """
    The timestamp datagram service on a real loopback socket.
    """

    def listen(self, cls=CountingStamp, clock=None, **limits) -> tuple:
        """
        Serve C{cls} on a loopback port through L{DatagramListenService}.
        """
        if clock is None:
            clock = task.Clock()
            clock.advance(NOW)
        proto = cls(DatagramGuard(clock, UDPLimits(**limits)))
        service = DatagramListenService(0, "127.0.0.1", proto, "tsserv", reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return proto, service.port.getHost().port

    async def test_reply(self):
        proto, port = self.listen()
        client = udpClient(self)
        client.send(b"hello\n", port)
        self.assertEqual(await client.receive(), stamp(NOW, "hello").encode() + b"\n")

    async def test_dropped(self):
        """
        Empty, oversized (513 bytes, and more than Twisted's 8192-byte
        read), and reply-looking datagrams get nothing; the good datagram
        sent after them is the first and only answer.
        """
        proto, port = self.listen()
        client = udpClient(self)
        for junk in (
            b"",
            b"x" * 513,
            b"y" * 9000,
            stamp(NOW, "loop?").encode(),
            daytime(NOW),
            rfc868(NOW),
        ):
            client.send(junk, port)
        client.send(b"good", port)
        self.assertEqual(await client.receive(), stamp(NOW, "good").encode())
        await proto.handled(7)
        self.assertEqual(proto.guard.drops.totals, {EMPTY: 1, OVERSIZED: 2, REPLY: 3})
        self.assertEqual(len(client.received), 0)

    def sourceOn(self, ports) -> tuple[UDPClient, int]:
        """
        A client bound to the first of C{ports} that is free (and allowed).
        """
        for number in ports:
            client = UDPClient()
            try:
                port = reactor.listenUDP(number, client, interface="127.0.0.1")
            except error.CannotListenError:
                continue
            self.addCleanup(port.stopListening)
            return client, number
        raise unittest.SkipTest(f"none of the ports {sorted(ports)} can be bound here")

    async def test_servicePortSource(self):
        """
        A datagram really sent from a well-known service port (SSDP,
        mDNS, memcached: unprivileged ones) gets nothing.
        """
        proto, port = self.listen()
        service, number = self.sourceOn(sorted(p for p in SERVICE_PORTS if p >= 1024))
        service.send(b"hi", port)
        client = udpClient(self)
        client.send(b"good", port)
        self.assertEqual(await client.receive(), stamp(NOW, "good").encode())
        await proto.handled(2)
        self.assertEqual(proto.guard.drops.totals, {SERVICE_PORT: 1})
        self.assertEqual(len(service.received), 0)

    async def test_lowPortSource(self):
        """
        A datagram really sent from a port below 1024 gets nothing (needs
        root to bind one; the rule itself is tested above either way).
        """
        if os.geteuid() != 0:
            raise unittest.SkipTest("binding a port below 1024 needs root")
        proto, port = self.listen()
        low, number = self.sourceOn([1023, 1022, 1021, 999])
        low.send(b"hi", port)
        client = udpClient(self)
        client.send(b"good", port)
        self.assertEqual(await client.receive(), stamp(NOW, "good").encode())
        await proto.handled(2)
        self.assertEqual(proto.guard.drops.totals, {LOW_PORT: 1})
        self.assertEqual(len(low.received), 0)

    async def test_floodFromOneSource(self):
        """
        1,000 datagrams from one source get the burst (the clock stands
        still, so nothing refills); a second source is answered at once;
        the log holds two lines about it, not a thousand.
        """
        logged = LogCapture(self)
        proto, port = self.listen(rate=10, burst=20)
        flooder, other = udpClient(self), udpClient(self, "127.0.0.2")
        for batch in range(20):
            for i in range(50):
                flooder.send(b"flood %d" % (batch * 50 + i), port)
            # Wait for each batch so that the kernel's socket buffer never
            # overflows: every drop is ours.
            await proto.handled((batch + 1) * 50)
        other.send(b"me too", port)
        self.assertEqual(await other.receive(), stamp(NOW, "me too").encode())
        self.assertEqual(proto.guard.drops.totals, {SOURCE_RATE: 980})
        await proto.handled(1001)
        proto.guard.drops.flush()  # as stopListening does
        self.assertEqual([e.get("count") for e in logged.drops()], [None, 979])

    async def test_twoInstancesNoLoop(self):
        """
        Two services and one packet "from" the second to the first (sent
        from the second's own socket, as a spoofer would make it look):
        the first answers, the second drops the answer, nothing more.
        """
        one, onePort = self.listen(clock=reactor)
        two, twoPort = self.listen(clock=reactor)
        daytimeProto, daytimePort = self.listen(CountingDaytime, clock=reactor)
        two.transport.write(b"hello", ("127.0.0.1", onePort))
        await two.handled(1)
        self.assertEqual((one.count, two.count), (1, 1))
        self.assertEqual(two.guard.drops.totals, {REPLY: 1})
        self.assertEqual(one.guard.drops.totals, {})
        # Daytime to timestamp and back.
        one.transport.write(b"", ("127.0.0.1", daytimePort))
        await one.handled(2)
        self.assertEqual(daytimeProto.count, 1)
        self.assertEqual(one.guard.drops.totals, {REPLY: 1})
