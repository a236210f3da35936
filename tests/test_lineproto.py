"""
Tests for the foundation every line service stands on:
L{chatsvc.net.lineproto} (framing rules on a connection, ordering, half-close,
back-pressure, the connection policy, timeouts, closing),
L{chatsvc.net.ratelimit}, L{chatsvc.net.options} and L{chatsvc.net.listening}.

Most tests drive a protocol on a C{StringTransport} with a C{task.Clock};
L{LoopbackTests} repeat the rules that depend on real sockets (kernel
buffers, half-close, resets) on loopback, port 0, with a tiny echo
service defined here.
"""

from __future__ import annotations

import datetime
import errno
import gc
import io
import os
import resource
import shutil
import socket
import sys
import tempfile
import weakref

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, error, protocol, reactor, task
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols import policies
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial import unittest

from chatsvc.net import listening, options
from chatsvc.net.lineproto import (
    ConnectionPolicy,
    Limits,
    LineFactory,
    LineProtocol,
    Refusal,
    addressKey,
    isLoopback,
)
from chatsvc.net.ratelimit import BucketTable, TokenBucket
from tests.hypothesisprofiles import examples
from tests.support import LineClient, waitFor, withDeadline

# -- a tiny service to test with --------------------------------------------------


class Echo(LineProtocol):
    """
    Answers C{LINE} with C{echo: LINE}, and a few commands:

      - C{hold}: answers C{held} and holds input (reason C{"work"}) until
        the test releases it, as slow work would;
      - C{big N}: writes about C{N} bytes in 1 KiB lines, then C{end};
      - C{bigbye N}: the same, then closes with the line C{bye}.

    @ivar received: the lines handed to L{lineReceived}.
    @ivar overflows: how many times L{sendQueueOverflow} was called.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self.received: list[str] = []
        self.overflows = 0

    def lineReceived(self, line: str) -> None:
        self.received.append(line)
        word, _, argument = line.partition(" ")
        if word == "hold":
            self.sendLine("held")
            self.holdInput("work")
        elif word in ("big", "bigbye"):
            chunk = b"x" * 1023 + b"\n"
            for _ in range(int(argument) // 1024):
                self.write(chunk)
            self.sendLine("end")
            if word == "bigbye":
                self.closeWith("bye")
        else:
            self.sendLine("echo: " + line)

    def sendQueueOverflow(self) -> None:
        self.overflows += 1
        super().sendQueueOverflow()


class EchoFactory(LineFactory):
    """
    Builds L{Echo}s, and remembers the refusals it built (to wait for
    their end); admitted protocols are not referenced from here, so that
    tests can check they are freed.
    """

    protocol = Echo

    def __init__(self, limits=None, clock=None) -> None:
        super().__init__(limits, clock)
        self.refusals: list[Refusal] = []

    def buildProtocol(self, addr):
        proto = super().buildProtocol(addr)
        if isinstance(proto, Refusal):
            self.refusals.append(proto)
        return proto


def peer(host: str, port: int = 40000):
    """
    An address object for C{host}, IPv4 or IPv6.
    """
    kind = IPv6Address if ":" in host else IPv4Address
    return kind("TCP", host, port)


def fakeConnect(factory, host: str = "192.0.2.1", transport=None):
    """
    Connect a protocol of C{factory} to a C{StringTransport} as if
    C{host} had connected.

    @return: C{(protocol, transport)}.
    """
    address = peer(host) if isinstance(host, str) else host
    proto = factory.buildProtocol(address)
    if transport is None:
        transport = StringTransport(peerAddress=address)
    proto.makeConnection(transport)
    return proto, transport


def written(transport) -> list[bytes]:
    """
    The complete lines written to C{transport}.
    """
    return transport.value().split(b"\n")[:-1]


def lose(proto, reason=error.ConnectionDone) -> None:
    """
    Tell C{proto} its connection is gone, as the transport would.
    """
    proto.connectionLost(Failure(reason()))


class HalfCloseTransport(StringTransport):
    """
    A C{StringTransport} that can also half-close.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


# -- on a StringTransport -------------------------------------------------------------


class LineProtocolTests(unittest.SynchronousTestCase):
    """
    L{LineProtocol} on a C{StringTransport} with a C{task.Clock}.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.limits = Limits()
        self.factory = EchoFactory(self.limits, self.clock)

    def connect(self, host: str = "192.0.2.1"):
        return fakeConnect(self.factory, host)

    def test_linesAnswered(self) -> None:
        """
        LF and CRLF end lines; each line is answered in order.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"one\ntwo\r\nthr")
        proto.dataReceived(b"ee\n")
        self.assertEqual(written(transport), [b"echo: one", b"echo: two", b"echo: three"])

    def test_textDecodedAndNeutralised(self) -> None:
        """
        Subclasses get text: decoded per line with replacement, controls
        made visible, a lone CR never raw.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"caf\xc3")
        proto.dataReceived(b"\xa9 \xff\x1b[2J a\rb\n")
        self.assertEqual(proto.received, ["caf\u00e9 \ufffd\u238b[2J a\u240db"])

    def test_overLongLineOneErrorConnectionKept(self) -> None:
        """
        An over-long line gets one C{error:} line, the rest of it is
        discarded, the connection stays and the next line is answered.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"x" * 3000)
        proto.dataReceived(b"x" * 3000 + b"\nok\n")
        self.assertEqual(
            written(transport), [b"error: line too long (limit 2048 bytes)", b"echo: ok"]
        )
        self.assertFalse(transport.disconnecting)
        self.assertEqual(proto.received, ["ok"])

    def test_megabyteWithoutNewlineBounded(self) -> None:
        """
        1 MiB without a newline: one error line, never more than the limit
        held for the unfinished line.
        """
        proto, transport = self.connect()
        for _ in range(256):
            proto.dataReceived(b"A" * 4096)
            self.assertLessEqual(proto.framer.tailLength, self.limits.maxLine + 1)
        proto.dataReceived(b"\nok\n")
        self.assertEqual(
            written(transport), [b"error: line too long (limit 2048 bytes)", b"echo: ok"]
        )

    def test_lineReceivedMustBeImplemented(self) -> None:
        """
        The base class does not guess what a line means.
        """
        factory = LineFactory(Limits(), self.clock)
        proto, _ = fakeConnect(factory)
        self.assertRaises(NotImplementedError, proto.dataReceived, b"x\n")

    # -- holding input -------------------------------------------------------------

    def test_holdInputKeepsOrder(self) -> None:
        """
        While input is held no further line is handled and the socket is
        not read; on release the waiting lines are answered in order, after
        the reply of the work that held input.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"hold\nafter1\nafter2\n")
        self.assertEqual(written(transport), [b"held"])
        self.assertEqual(transport.producerState, "paused")
        self.assertTrue(proto.isHeld("work"))
        proto.dataReceived(b"after3\n")
        self.assertEqual(proto.received, ["hold"])
        proto.sendLine("work done")
        proto.releaseInput("work")
        self.assertEqual(
            written(transport),
            [b"held", b"work done", b"echo: after1", b"echo: after2", b"echo: after3"],
        )
        self.assertEqual(transport.producerState, "producing")
        self.assertFalse(proto.isHeld())

    def test_holdForTwoReasons(self) -> None:
        """
        Input stays held until every reason is released; releasing a
        reason that is not held does nothing.
        """
        proto, transport = self.connect()
        proto.holdInput("a")
        proto.holdInput("b")
        proto.holdInput("b")
        proto.dataReceived(b"x\n")
        proto.releaseInput("c")
        proto.releaseInput("a")
        self.assertEqual(proto.received, [])
        self.assertEqual(transport.producerState, "paused")
        proto.releaseInput("b")
        self.assertEqual(proto.received, ["x"])
        self.assertEqual(transport.producerState, "producing")

    def test_lineAllowedDefers(self) -> None:
        """
        A subclass that says a line may not go yet (flood control) holds
        input; the line waits in the framer, unlost, until released.
        """

        class Paced(Echo):
            allowed = 0

            def lineAllowed(self) -> bool:
                if self.allowed:
                    self.allowed -= 1
                    return True
                self.holdInput("flood")
                return False

        self.factory.protocol = Paced
        proto, transport = self.connect()
        proto.allowed = 1
        proto.dataReceived(b"a\nb\nc\n")
        self.assertEqual(proto.received, ["a"])
        self.assertEqual(len(proto.framer), 2)
        proto.allowed = 2
        proto.releaseInput("flood")
        self.assertEqual(proto.received, ["a", "b", "c"])

    # -- half-close -----------------------------------------------------------------

    def test_halfCloseRepliesThenCloses(self) -> None:
        """
        After the peer half-closes, every line it sent is answered (an
        unfinished last line too), then the connection is closed.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"one\ntwo")
        self.assertFalse(transport.disconnecting)
        proto.readConnectionLost()
        self.assertEqual(written(transport), [b"echo: one", b"echo: two"])
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)

    def test_halfCloseWaitsForHeldWork(self) -> None:
        """
        A half-close while work holds input closes only once that work and
        the lines after it are answered.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"hold\nlast\n")
        proto.readConnectionLost()
        self.assertFalse(transport.disconnecting)
        proto.sendLine("work done")
        proto.releaseInput("work")
        self.assertEqual(written(transport), [b"held", b"work done", b"echo: last"])
        self.assertTrue(transport.disconnecting)

    def test_halfCloseNonReaderAborted(self) -> None:
        """
        A peer that half-closed and does not take its replies is aborted
        after the grace period rather than held forever.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"one\n")
        proto.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.clock.advance(self.limits.closeGrace)
        self.assertTrue(transport.disconnected)
        lose(proto, error.ConnectionAborted)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_writeConnectionLostAborts(self) -> None:
        """
        When our sending side is gone there is nothing left to do.
        """
        proto, transport = self.connect()
        proto.writeConnectionLost()
        self.assertTrue(transport.disconnected)

    # -- back-pressure ------------------------------------------------------------------

    def test_pauseResumeIdempotent(self) -> None:
        """
        The transport calls C{pauseProducing} on every write while its
        buffer is full: pausing twice is pausing once, and so is resuming;
        resuming what is not paused does nothing.
        """
        proto, transport = self.connect()
        proto.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        proto.pauseProducing()
        proto.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        self.assertTrue(proto.isHeld("output"))
        proto.dataReceived(b"waits\n")
        self.assertEqual(proto.received, [])
        proto.resumeProducing()
        self.assertEqual(proto.received, ["waits"])
        self.assertEqual(transport.producerState, "producing")
        proto.resumeProducing()
        self.assertFalse(proto.isHeld())
        self.assertEqual(transport.producerState, "producing")

    def test_outputPauseAndWorkHold(self) -> None:
        """
        Output back-pressure and other holds combine: input comes back only
        when both are over.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"hold\nnext\n")
        proto.pauseProducing()
        proto.resumeProducing()
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(proto.received, ["hold"])
        proto.releaseInput("work")
        self.assertEqual(proto.received, ["hold", "next"])

    def test_sendQueueCountsOnlyWhilePaused(self) -> None:
        """
        Output is limited only while the transport's buffer is full, and
        the count starts again each time the buffer drains.
        """
        self.limits.sendQueue = 1000
        proto, transport = self.connect()
        proto.write(b"a" * 5000)
        proto.pauseProducing()
        proto.write(b"b" * 900)
        proto.resumeProducing()
        proto.pauseProducing()
        proto.write(b"c" * 900)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(transport.value()), 6800)
        self.assertEqual(proto.overflows, 0)

    def test_sendQueueOverflowAborts(self) -> None:
        """
        Past the send-queue limit while paused the connection is aborted
        once; what did not fit is not written, nor is anything after.
        """
        self.limits.sendQueue = 1000
        proto, transport = self.connect()
        proto.pauseProducing()
        proto.write(b"a" * 600)
        proto.write(b"b" * 600)
        proto.write(b"c" * 600)
        self.assertEqual(transport.value(), b"a" * 600)
        self.assertTrue(transport.disconnected)
        self.assertEqual(proto.overflows, 1)
        self.assertTrue(proto.disconnecting)

    def test_overflowedProtocolForgotten(self) -> None:
        """
        Once an aborted connection is lost the protocol is out of the
        factory's connections, its policy slot is free, no timer is left,
        and nothing else keeps it alive.
        """
        self.limits.sendQueue = 1000
        self.limits.idleTimeout = 60
        proto, transport = self.connect()
        self.assertIn(proto, self.factory.connections)
        self.assertEqual(self.factory.policy.count, 1)
        proto.pauseProducing()
        proto.write(b"z" * 2000)
        self.assertTrue(transport.disconnected)
        lose(proto, error.ConnectionAborted)
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.factory.policy.count, 0)
        self.assertEqual(dict(self.factory.policy.perAddress), {})
        self.assertEqual(self.clock.getDelayedCalls(), [])
        ref = weakref.ref(proto)
        del proto, transport
        gc.collect()
        self.assertIsNone(ref())

    # -- closing --------------------------------------------------------------------------

    def test_closeWithSendsLineThenCloses(self) -> None:
        """
        C{closeWith} sends its line, closes, ignores further input, and
        aborts if the peer has not taken its output within the grace.
        """
        proto, transport = self.connect()
        proto.closeWith("bye")
        proto.closeWith("bye again")
        proto.dataReceived(b"ignored\n")
        self.assertEqual(written(transport), [b"bye"])
        self.assertEqual(proto.received, [])
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.clock.advance(self.limits.closeGrace)
        self.assertTrue(transport.disconnected)

    def test_closeWithUnregistersProducer(self) -> None:
        """
        Twisted does not close a transport while a streaming producer it
        has paused is registered (C{loseConnection} waits for the producer
        to go), so C{closeWith} unregisters the protocol first.
        """
        proto, transport = self.connect()
        self.assertIs(transport.producer, proto)
        proto.pauseProducing()
        proto.closeWith("bye")
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)

    def test_closedInTimeCancelsTimer(self) -> None:
        """
        A connection that closes within the grace leaves no timer behind.
        """
        proto, transport = self.connect()
        proto.closeWith(None)
        self.assertEqual(transport.value(), b"")
        lose(proto)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_abort(self) -> None:
        """
        C{abort} drops the connection at once.
        """
        proto, transport = self.connect()
        proto.abort()
        self.assertTrue(transport.disconnected)
        self.assertTrue(proto.disconnecting)

    def test_idleTimeout(self) -> None:
        """
        With an idle timeout, a connection with no complete line for that
        long is closed with a line; each complete line starts the wait
        again, an unfinished line does not.
        """
        self.limits.idleTimeout = 10
        proto, transport = self.connect()
        self.clock.advance(9)
        proto.dataReceived(b"still here\n")
        self.clock.advance(9)
        proto.dataReceived(b"x")
        self.clock.advance(0.5)
        proto.dataReceived(b"y")
        self.clock.advance(0.4)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertEqual(
            written(transport), [b"echo: still here", b"error: idle for 10 seconds, closing"]
        )
        self.assertTrue(transport.disconnecting)
        self.clock.advance(self.limits.closeGrace)
        self.assertTrue(transport.disconnected)
        lose(proto)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noIdleTimeoutByDefault(self) -> None:
        """
        The idle timeout is off unless switched on: no timer at all.
        """
        proto, transport = self.connect()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10**6)
        self.assertFalse(transport.disconnecting)

    def test_closeAll(self) -> None:
        """
        C{closeAll} sends the notice to everyone, waits the grace, aborts
        those who have not gone, and fires once the last one is gone.
        """
        protos = [self.connect(f"192.0.2.{i}") for i in range(1, 4)]
        d = self.factory.closeAll("server shutting down", grace=3)
        for _, transport in protos:
            self.assertEqual(written(transport), [b"server shutting down"])
            self.assertTrue(transport.disconnecting)
        lose(protos[0][0])
        lose(protos[1][0])
        self.assertNoResult(d)
        self.assertFalse(protos[2][1].disconnected)
        self.clock.advance(3)
        self.assertTrue(protos[2][1].disconnected)
        self.assertNoResult(d)
        lose(protos[2][0], error.ConnectionAborted)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeAllNobody(self) -> None:
        """
        With no connection, C{closeAll} is done at once.
        """
        self.assertIsNone(self.successResultOf(self.factory.closeAll("bye")))

    def test_connectionLostCancelsTimers(self) -> None:
        """
        A connection that goes leaves no timer behind.
        """
        self.limits.idleTimeout = 30
        proto, transport = self.connect()
        proto.closeWith("bye")
        lose(proto)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PolicyTests(unittest.SynchronousTestCase):
    """
    The connection policy through L{LineFactory.buildProtocol}, and
    L{addressKey}.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()

    def factory(self, **limits) -> EchoFactory:
        return EchoFactory(Limits(**limits), self.clock)

    def assertRefused(self, factory, host, line: bytes) -> None:
        proto, transport = fakeConnect(factory, host)
        self.assertIsInstance(proto, Refusal)
        self.assertEqual(written(transport), [line])
        self.assertTrue(transport.disconnecting)

    def assertAdmitted(self, factory, host):
        proto, transport = fakeConnect(factory, host)
        self.assertIsInstance(proto, Echo)
        return proto

    def test_perAddressIPv4(self) -> None:
        """
        The per-address cap refuses with a clear C{error:} line; another
        address is still admitted; a slot freed is usable again.
        """
        factory = self.factory(maxPerAddress=2)
        first = self.assertAdmitted(factory, "192.0.2.1")
        self.assertAdmitted(factory, "192.0.2.1")
        line = b"error: too many connections from your address (limit 2)"
        self.assertRefused(factory, "192.0.2.1", line)
        self.assertAdmitted(factory, "192.0.2.2")
        lose(first)
        self.assertAdmitted(factory, "192.0.2.1")
        self.assertRefused(factory, "192.0.2.1", line)

    def test_perAddressIPv6Network(self) -> None:
        """
        IPv6 peers count per /64: two hosts of one /64 share the cap, the
        next /64 is another address.
        """
        factory = self.factory(maxPerAddress=2)
        self.assertAdmitted(factory, "2001:db8:1:2::1")
        self.assertAdmitted(factory, "2001:db8:1:2:ffff:ffff:ffff:ffff")
        self.assertRefused(
            factory,
            "2001:db8:1:2::99",
            b"error: too many connections from your address (limit 2)",
        )
        self.assertAdmitted(factory, "2001:db8:1:3::1")

    def test_perAddressIPv4Mapped(self) -> None:
        """
        An IPv4-mapped IPv6 address counts as its IPv4 address (a dual-stack
        listener sees IPv4 peers this way).
        """
        factory = self.factory(maxPerAddress=2)
        self.assertAdmitted(factory, "192.0.2.7")
        self.assertAdmitted(factory, "::ffff:192.0.2.7")
        self.assertRefused(
            factory,
            "::ffff:192.0.2.7",
            b"error: too many connections from your address (limit 2)",
        )

    def test_perAddressOff(self) -> None:
        """
        C{maxPerAddress=0} switches the per-address cap off.
        """
        factory = self.factory(maxPerAddress=0)
        for _ in range(50):
            self.assertAdmitted(factory, "192.0.2.1")

    def test_totalCap(self) -> None:
        """
        Past C{maxClients} every address is refused with a C{full:} line
        (loopback included); a slot freed is usable again.
        """
        factory = self.factory(maxClients=2)
        first = self.assertAdmitted(factory, "192.0.2.1")
        self.assertAdmitted(factory, "127.0.0.1")
        line = b"full: the server is full (2 connections)"
        self.assertRefused(factory, "192.0.2.9", line)
        self.assertRefused(factory, "127.0.0.1", line)
        lose(first)
        self.assertAdmitted(factory, "192.0.2.9")

    def test_totalCapOff(self) -> None:
        """
        C{maxClients=0} switches the total cap off.
        """
        factory = self.factory(maxClients=0, maxPerAddress=0)
        for i in range(1200):
            self.assertAdmitted(factory, f"10.0.{i // 250}.{i % 250}")

    def test_loopbackExempt(self) -> None:
        """
        Loopback peers (local bridges, proxies, tests) are not counted per
        address unless C{limitLoopback} is set, IPv6 C{::1} included.
        """
        factory = self.factory(maxPerAddress=1)
        for host in ("127.0.0.1", "127.0.0.1", "127.0.0.2", "::1", "::1", "::ffff:127.0.0.1"):
            self.assertAdmitted(factory, host)
        self.assertEqual(factory.policy.count, 6)

    def test_limitLoopback(self) -> None:
        """
        With C{limitLoopback}, loopback peers are counted like any other.
        """
        factory = self.factory(maxPerAddress=1, limitLoopback=True)
        line = b"error: too many connections from your address (limit 1)"
        for host in ("127.0.0.1", "::1"):
            self.assertAdmitted(factory, host)
            self.assertRefused(factory, host, line)
        self.assertAdmitted(factory, "127.0.0.2")

    def test_unixPeersCountedInTotalOnly(self) -> None:
        """
        Peers without an IP address count towards the total cap only.
        """
        factory = self.factory(maxClients=3, maxPerAddress=1)
        for _ in range(3):
            self.assertAdmitted(factory, UNIXAddress(None))
        self.assertRefused(factory, UNIXAddress(None), b"full: the server is full (3 connections)")

    def test_refusalNotCounted(self) -> None:
        """
        Refused connections take no slot and release none.
        """
        factory = self.factory(maxPerAddress=1)
        proto = self.assertAdmitted(factory, "192.0.2.1")
        refused, _ = fakeConnect(factory, "192.0.2.1")
        lose(refused)
        self.assertEqual(factory.policy.count, 1)
        lose(proto)
        self.assertEqual(factory.policy.count, 0)
        self.assertEqual(dict(factory.policy.perAddress), {})

    def test_policyDirect(self) -> None:
        """
        L{ConnectionPolicy.admit} gives the refusal line or the key to
        release.
        """
        policy = ConnectionPolicy(Limits(maxPerAddress=1))
        refusal, key = policy.admit(peer("198.51.100.4"))
        self.assertEqual((refusal, key), (None, "198.51.100.4"))
        refusal, _ = policy.admit(peer("198.51.100.4"))
        self.assertTrue(refusal.startswith("error: "))
        policy.release(key)
        self.assertEqual((policy.count, dict(policy.perAddress)), (0, {}))

    def test_addressKey(self) -> None:
        """
        The key is the IPv4 address, the IPv6 /64, the IPv4 address of an
        IPv4-mapped IPv6 address; loopback keeps its own address; there is
        none without an IP.
        """
        cases = {
            "203.0.113.5": "203.0.113.5",
            "2001:db8:aa:bb:1:2:3:4": "2001:db8:aa:bb::/64",
            "::ffff:203.0.113.5": "203.0.113.5",
            "fe80::1%eth0": "fe80::/64",
            "127.0.0.1": "127.0.0.1",
            "::1": "::1",
        }
        for host, key in cases.items():
            self.assertEqual(addressKey(peer(host)), key, host)
        self.assertIsNone(addressKey(UNIXAddress(b"/tmp/sock")))
        self.assertIsNone(addressKey(IPv4Address("TCP", "not-an-ip", 1)))

    def test_isLoopback(self) -> None:
        """
        Loopback keys are recognised, IPv4 and IPv6; others are not.
        """
        for host in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
            self.assertTrue(isLoopback(addressKey(peer(host))), host)
        for host in ("192.0.2.1", "2001:db8::1", "::2"):
            self.assertFalse(isLoopback(addressKey(peer(host))), host)
        self.assertFalse(isLoopback(None))

    def test_twistedPerPeerLimitUnusable(self) -> None:
        """
        Twisted's C{LimitConnectionsByPeer} indexes the address object as a
        tuple and raises C{TypeError} on every connection (docs/hardening.rst),
        which is why chatsvc has its own policy.  If this test starts to
        fail, Twisted has fixed it.
        """
        wrapped = policies.LimitConnectionsByPeer(protocol.Factory.forProtocol(protocol.Protocol))
        wrapped.startFactory()
        self.assertRaises(TypeError, wrapped.buildProtocol, peer("192.0.2.1"))


class RefusalTests(unittest.SynchronousTestCase):
    """
    L{Refusal}: say why, half-close, drain, abort after the grace.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()

    def test_halfClosesAndDrains(self) -> None:
        """
        The line is written and only our sending side is closed; what the
        peer sends is read and dropped; the peer's end closes the rest.
        """
        refusal = Refusal("full: no room", self.clock, 5)
        transport = HalfCloseTransport()
        refusal.makeConnection(transport)
        self.assertEqual(transport.value(), b"full: no room\n")
        self.assertTrue(transport.writeClosed)
        self.assertFalse(transport.disconnecting)
        refusal.dataReceived(b"NAME lobby\n" * 1000)
        self.assertEqual(transport.value(), b"full: no room\n")
        refusal.writeConnectionLost()
        refusal.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        refusal.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_abortsAfterGrace(self) -> None:
        """
        A peer that neither reads nor closes is aborted after the grace.
        """
        refusal = Refusal("error: go away", self.clock, 5)
        transport = HalfCloseTransport()
        refusal.makeConnection(transport)
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnected)

    def test_withoutHalfClose(self) -> None:
        """
        A transport that cannot half-close is closed after the line.
        """
        refusal = Refusal("full: no room", self.clock, 5)
        transport = StringTransport()
        refusal.makeConnection(transport)
        self.assertEqual(transport.value(), b"full: no room\n")
        self.assertTrue(transport.disconnecting)


# -- on loopback -----------------------------------------------------------------------


class Client(LineClient):
    """
    A L{LineClient} that keeps why its connection ended.
    """

    reason: Failure | None = None

    def connectionLost(self, reason=None) -> None:
        self.reason = reason
        super().connectionLost(reason)

    def closedCleanly(self) -> bool:
        return self.reason is not None and self.reason.check(error.ConnectionDone) is not None


class EagerClient(Client):
    """
    Sends a login-sized burst as soon as it connects, before reading
    anything (the case where a refusal line can be destroyed by a reset).
    """

    def connectionMade(self) -> None:
        self.transport.write(b"somebody lobby\n" + b"junk" * 16384)
        super().connectionMade()


class LoopbackTests(unittest.TestCase):
    """
    The rules that involve the kernel, on real loopback sockets.
    """

    def serve(self, limits: Limits | None = None, interface: str = "127.0.0.1"):
        """
        Listen on C{interface}, port 0, with an L{EchoFactory}.

        @return: C{(factory, port number)}.
        """
        factory = EchoFactory(limits or Limits(), reactor)
        port = reactor.listenTCP(0, factory, interface=interface)
        self.addCleanup(lambda: defer.ensureDeferred(self._stopServing(port, factory)))
        return factory, port.getHost().port

    async def _stopServing(self, port, factory) -> None:
        await port.stopListening()
        for proto in list(factory.connections):
            proto.transport.abortConnection()
        await waitFor(
            lambda: not factory.connections and all(r._timer is None for r in factory.refusals),
            "the server's connections to end",
        )

    async def connect(
        self, port: int, source: str = "127.0.0.1", factory=Client, host: str = "127.0.0.1"
    ) -> Client:
        """
        Connect a client from C{source}; it is closed when the test ends.
        """
        if ":" in host:
            endpoint = TCP6ClientEndpoint(reactor, host, port, timeout=10, bindAddress=(source, 0))
        else:
            endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=10, bindAddress=(source, 0))
        client = await withDeadline(connectProtocol(endpoint, factory()), "connect")
        self.addCleanup(lambda: defer.ensureDeferred(self._closeClient(client)))
        return client

    async def _closeClient(self, client: Client) -> None:
        if not client.isClosed:
            client.transport.abortConnection()
        await client.waitClosed()

    async def serverSide(self, factory, count: int = 1) -> list[Echo]:
        """
        Wait until the server holds C{count} connections; return them.
        """
        await waitFor(lambda: len(factory.connections) >= count, "the server to see clients")
        return list(factory.connections)

    async def echoes(self, client: Client, text: str = "ping") -> None:
        client.sendLine(text)
        self.assertEqual(await client.readLine(), b"echo: " + text.encode())

    async def test_overLongLine(self) -> None:
        """
        An over-long line, and 1 MiB without a newline: one error line
        each, the connection stays and is served.
        """
        factory, port = self.serve()
        client = await self.connect(port)
        client.transport.write(b"x" * 5000 + b"\nhello\n")
        self.assertEqual(await client.readLine(), b"error: line too long (limit 2048 bytes)")
        self.assertEqual(await client.readLine(), b"echo: hello")
        client.transport.write(b"A" * (1024 * 1024))
        self.assertEqual(await client.readLine(), b"error: line too long (limit 2048 bytes)")
        (proto,) = await self.serverSide(factory)
        self.assertLessEqual(proto.framer.tailLength, 2049)
        client.transport.write(b"\n")
        await self.echoes(client)

    async def test_halfCloseAfterRequest(self) -> None:
        """
        A client that half-closes after its requests (the last one without
        a newline) gets every reply, then a clean close.
        """
        factory, port = self.serve()
        client = await self.connect(port)
        client.transport.write(b"one\ntwo\nthree")
        client.transport.loseWriteConnection()
        self.assertEqual(await client.readLines(3), [b"echo: one", b"echo: two", b"echo: three"])
        await client.waitClosed()
        self.assertTrue(client.closedCleanly(), client.reason)
        await waitFor(lambda: not factory.connections, "the server to forget it")

    async def test_halfCloseAfterBigReply(self) -> None:
        """
        A reply far larger than the transport's buffer (so the protocol is
        paused as a producer when the peer's input ends) is delivered
        whole, and then the connection is closed cleanly, not held open
        nor reset.
        """
        factory, port = self.serve(Limits(sendQueue=64 * 1024 * 1024, closeGrace=3600))
        client = await self.connect(port)
        client.transport.write(b"big 4194304\n")
        client.transport.loseWriteConnection()
        lines = await client.readLines(4097)
        self.assertEqual(lines[-1], b"end")
        await client.waitClosed()
        self.assertTrue(client.closedCleanly(), client.reason)

    async def test_closeWithAfterBigReply(self) -> None:
        """
        C{closeWith} while the transport's buffer is full closes cleanly
        once the peer has read everything (not at the grace, by abort).
        """
        factory, port = self.serve(Limits(sendQueue=64 * 1024 * 1024, closeGrace=3600))
        client = await self.connect(port)
        client.sendLine("bigbye 4194304")
        lines = await client.readLines(4098)
        self.assertEqual(lines[-2:], [b"end", b"bye"])
        await client.waitClosed()
        self.assertTrue(client.closedCleanly(), client.reason)

    async def test_holdInputKeepsOrder(self) -> None:
        """
        Lines sent while work holds input are answered after that work's
        reply, in order.
        """
        factory, port = self.serve()
        client = await self.connect(port)
        client.transport.write(b"hold\nafter1\nafter2\n")
        self.assertEqual(await client.readLine(), b"held")
        (proto,) = await self.serverSide(factory)
        await waitFor(lambda: proto.framer.pendingBytes == 12, "both lines to be read")
        proto.sendLine("work done")
        proto.releaseInput("work")
        self.assertEqual(
            await client.readLines(3), [b"work done", b"echo: after1", b"echo: after2"]
        )

    async def test_nonReaderCutOthersServed(self) -> None:
        """
        A client that never reads is cut once its unsent output passes the
        send-queue limit; a canary is served throughout; the cut protocol
        leaves the factory and is freed.
        """
        limits = Limits(sendQueue=256 * 1024)
        factory, port = self.serve(limits)
        canary = await self.connect(port)
        await self.echoes(canary, "before")
        (canaryProto,) = await self.serverSide(factory)
        reader = await self.connect(port)
        reader.transport.pauseProducing()
        protos = await self.serverSide(factory, 2)
        (proto,) = [p for p in protos if p is not canaryProto]
        del protos, canaryProto
        ref = weakref.ref(proto)
        chunk = b"y" * 16383 + b"\n"
        for _ in range(4096):  # at most 64 MiB; the cut comes after a few
            if proto.disconnecting:
                break
            proto.write(chunk)
            await task.deferLater(reactor, 0, lambda: None)
        self.assertTrue(proto.disconnecting, "never cut")
        self.assertEqual(proto.overflows, 1)
        del proto
        await waitFor(lambda: len(factory.connections) == 1, "the server to drop it")
        await self.echoes(canary, "after")
        await task.deferLater(reactor, 0, lambda: None)
        gc.collect()
        self.assertIsNone(ref(), gc.get_referrers(ref()) if ref() is not None else None)
        reader.transport.resumeProducing()
        await reader.waitClosed()

    async def test_protocolFreedAfterClose(self) -> None:
        """
        After an ordinary close nothing keeps the server's protocol alive.
        """
        factory, port = self.serve()
        client = await self.connect(port)
        await self.echoes(client)
        (proto,) = await self.serverSide(factory)
        ref = weakref.ref(proto)
        del proto
        await client.close()
        await waitFor(lambda: not factory.connections, "the server to forget it")
        await task.deferLater(reactor, 0, lambda: None)
        gc.collect()
        self.assertIsNone(ref())
        self.assertEqual(factory.policy.count, 0)

    async def test_perAddressCap(self) -> None:
        """
        With loopback counted, the third connection from one address is
        refused with a clear line and a clean close, while another address
        gets in at once.
        """
        factory, port = self.serve(Limits(maxPerAddress=2, limitLoopback=True))
        first = await self.connect(port)
        second = await self.connect(port)
        await self.echoes(first)
        await self.echoes(second)
        third = await self.connect(port)
        self.assertEqual(
            await third.readLine(), b"error: too many connections from your address (limit 2)"
        )
        await third.waitClosed()
        self.assertTrue(third.closedCleanly(), third.reason)
        other = await self.connect(port, source="127.0.0.2")
        await self.echoes(other)
        await self.echoes(first)

    async def test_loopbackExemptByDefault(self) -> None:
        """
        Without C{limitLoopback}, loopback clients are not capped per
        address.
        """
        factory, port = self.serve(Limits(maxPerAddress=1))
        clients = [await self.connect(port) for _ in range(4)]
        for client in clients:
            await self.echoes(client)

    async def test_loopbackIPv6ExemptByDefault(self) -> None:
        """
        C{::1} is loopback too.
        """
        try:
            factory, port = self.serve(Limits(maxPerAddress=1), interface="::1")
        except error.CannotListenError as e:
            if not noIPv6Loopback(e):
                raise
            raise unittest.SkipTest(f"no IPv6 loopback: {e}") from e
        clients = [await self.connect(port, source="::1", host="::1") for _ in range(3)]
        for client in clients:
            await self.echoes(client)

    async def test_totalCapFull(self) -> None:
        """
        Past the total cap: a C{full:} line and a clean close.
        """
        factory, port = self.serve(Limits(maxClients=1))
        first = await self.connect(port)
        await self.echoes(first)
        second = await self.connect(port)
        self.assertEqual(await second.readLine(), b"full: the server is full (1 connections)")
        await second.waitClosed()
        self.assertTrue(second.closedCleanly(), second.reason)

    async def test_refusalReadEvenIfClientSpokeFirst(self) -> None:
        """
        A refused client that sent data before reading still reads the
        refusal line and sees a clean close (no reset), every time.
        """
        factory, port = self.serve(Limits(maxClients=1))
        holder = await self.connect(port)
        await self.echoes(holder)
        for _ in range(20):
            client = await self.connect(port, factory=EagerClient)
            self.assertEqual(await client.readLine(), b"full: the server is full (1 connections)")
            await client.waitClosed()
            self.assertTrue(client.closedCleanly(), client.reason)
        await self.echoes(holder)

    async def test_idleTimeout(self) -> None:
        """
        A client that sends nothing is closed at the idle timeout, with a
        line saying so.
        """
        factory, port = self.serve(Limits(idleTimeout=0.2))
        client = await self.connect(port)
        self.assertEqual(await client.readLine(), b"error: idle for 0.2 seconds, closing")
        await client.waitClosed()
        self.assertTrue(client.closedCleanly(), client.reason)

    async def test_closeAll(self) -> None:
        """
        C{closeAll}: every reading client gets the notice and a clean
        close; a client that does not read is aborted after the grace; the
        Deferred fires when all are gone.
        """
        factory, port = self.serve(Limits(sendQueue=64 * 1024 * 1024))
        readers = [await self.connect(port) for _ in range(3)]
        for client in readers:
            await self.echoes(client)
        stuck = await self.connect(port)
        stuck.transport.pauseProducing()
        await self.serverSide(factory, 4)
        stuck.sendLine("big 8388608")
        await waitFor(
            lambda: any(p.received == ["big 8388608"] for p in factory.connections),
            "the big request",
        )
        done = factory.closeAll("server shutting down", grace=0.5)
        for client in readers:
            self.assertEqual(await client.readLine(), b"server shutting down")
            await client.waitClosed()
            self.assertTrue(client.closedCleanly(), client.reason)
        await withDeadline(done, "closeAll")
        self.assertEqual(factory.connections, set())
        stuck.transport.resumeProducing()
        await stuck.waitClosed()


# -- rate limits ------------------------------------------------------------------------


class TokenBucketTests(unittest.SynchronousTestCase):
    """
    L{TokenBucket} with a C{task.Clock}.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()

    def test_burstThenRate(self) -> None:
        """
        A full bucket allows the burst at once, then one token per
        C{1/rate} seconds.
        """
        bucket = TokenBucket(2.0, 5, self.clock.seconds)
        self.assertEqual([bucket.take() for _ in range(6)], [True] * 5 + [False])
        self.assertAlmostEqual(bucket.delay(), 0.5)
        self.clock.advance(0.25)
        self.assertFalse(bucket.take())
        self.assertAlmostEqual(bucket.delay(), 0.25)
        self.clock.advance(0.25)
        self.assertEqual(bucket.delay(), 0.0)
        self.assertTrue(bucket.take())
        self.assertFalse(bucket.take())

    def test_refillCapped(self) -> None:
        """
        A long quiet time refills the bucket to the burst, no further.
        """
        bucket = TokenBucket(10.0, 3, self.clock.seconds)
        for _ in range(3):
            bucket.take()
        self.clock.advance(3600)
        self.assertEqual([bucket.take() for _ in range(4)], [True] * 3 + [False])

    def test_tokensAtOnce(self) -> None:
        """
        Taking several tokens at once needs that many.
        """
        bucket = TokenBucket(1.0, 4, self.clock.seconds)
        self.assertTrue(bucket.take(3))
        self.assertFalse(bucket.take(2))
        self.assertAlmostEqual(bucket.delay(2), 1.0)

    def test_clockBackwards(self) -> None:
        """
        A clock that goes back does not make tokens.
        """
        now = [100.0]
        bucket = TokenBucket(1.0, 1, lambda: now[0])
        self.assertTrue(bucket.take())
        now[0] = 50.0
        self.assertFalse(bucket.take())
        now[0] = 50.5
        self.assertFalse(bucket.take())
        now[0] = 51.0
        self.assertTrue(bucket.take())

    def test_invalid(self) -> None:
        """
        A bucket that could never allow anything is an error.
        """
        self.assertRaises(ValueError, TokenBucket, 0, 5, self.clock.seconds)
        self.assertRaises(ValueError, TokenBucket, -1, 5, self.clock.seconds)
        self.assertRaises(ValueError, TokenBucket, 1, 0.5, self.clock.seconds)

    @settings(max_examples=examples(300))
    @given(
        rate=st.floats(0.1, 100),
        burst=st.integers(1, 50),
        steps=st.lists(st.tuples(st.floats(0, 5), st.integers(1, 20)), max_size=60),
    )
    def test_neverMoreThanBurstPlusRate(self, rate, burst, steps) -> None:
        """
        However requests come, what is allowed over a time T never exceeds
        C{burst + rate * T}.
        """
        clock = task.Clock()
        bucket = TokenBucket(rate, burst, clock.seconds)
        allowed = 0
        for wait, attempts in steps:
            clock.advance(wait)
            allowed += sum(bucket.take() for _ in range(attempts))
            self.assertLessEqual(allowed, burst + rate * clock.seconds() + 1e-6)


class BucketTableTests(unittest.SynchronousTestCase):
    """
    L{BucketTable}: one bucket per key, bounded, least recently used
    forgotten first.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()

    def test_keysIndependent(self) -> None:
        """
        Each key has its own bucket.
        """
        table = BucketTable(1.0, 2, self.clock.seconds)
        self.assertEqual([table.take("a") for _ in range(3)], [True, True, False])
        self.assertTrue(table.take("b"))
        self.assertFalse(table.take("a"))

    def test_bounded(self) -> None:
        """
        The table never holds more than C{maxKeys}, however many keys come.
        """
        table = BucketTable(1.0, 1, self.clock.seconds, maxKeys=100)
        for i in range(10000):
            table.take(i)
            self.assertLessEqual(len(table), 100)
        self.assertEqual(len(table), 100)

    def test_leastRecentlyUsedForgotten(self) -> None:
        """
        A key in use is kept; the key unused longest is forgotten, and a
        forgotten key starts with a full bucket.
        """
        table = BucketTable(1.0, 1, self.clock.seconds, maxKeys=2)
        self.assertTrue(table.take("old"))
        self.assertTrue(table.take("busy"))
        self.assertFalse(table.take("old"))  # "old" is now the most recent
        self.assertTrue(table.take("new"))  # forgets "busy"
        self.assertFalse(table.take("old"))
        self.assertTrue(table.take("busy"))  # forgotten: full bucket again


# -- options ------------------------------------------------------------------------------


def noIPv6Loopback(e: error.CannotListenError) -> bool:
    """
    Whether C{e} says that this host has no IPv6 loopback (the one reason
    an IPv6 test may skip): the address is not available here, or IPv6 is
    not supported at all.
    """
    code = getattr(e.socketError, "errno", None)
    return code in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


class NoIPv6LoopbackTests(unittest.SynchronousTestCase):
    """
    L{noIPv6Loopback}: only a missing IPv6 loopback excuses a test.
    """

    def test_reasons(self) -> None:
        def failed(code: int) -> error.CannotListenError:
            return error.CannotListenError("::1", 0, OSError(code, os.strerror(code)))

        self.assertTrue(noIPv6Loopback(failed(errno.EADDRNOTAVAIL)))
        self.assertTrue(noIPv6Loopback(failed(errno.EAFNOSUPPORT)))
        self.assertFalse(noIPv6Loopback(failed(errno.EADDRINUSE)))
        self.assertFalse(noIPv6Loopback(failed(errno.EACCES)))


class PortDescriptionTests(unittest.SynchronousTestCase):
    """
    L{options.portDescription}: what the user asked for, as a description.
    """

    def test_bareNumber(self) -> None:
        """
        A bare number is TCP on that port, nothing added: messages show
        what the user typed (the backlog is added when listening).
        """
        self.assertEqual(options.portDescription("--port", "21567"), "tcp:21567")
        self.assertEqual(options.portDescription("--port", " 0 "), "tcp:0")

    def test_endpointStrings(self) -> None:
        """
        Endpoint descriptions are passed through as given.
        """
        for value in (
            "tcp:21567:interface=127.0.0.1",
            "tcp6:21567:interface=\\:\\:1",
            "tcp:21567:backlog=5",
            "unix:/tmp/chatsvc-test.sock",
        ):
            self.assertEqual(options.portDescription("--port", value), value)

    def test_loopback(self) -> None:
        """
        With C{loopback}, a number or a C{tcp:}, C{tcp6:} or C{ssl:}
        description that names no interface binds loopback; one that names
        an interface (by keyword or by position) and a UNIX socket are
        left alone.
        """
        pem = selfSignedPEM(self)
        cases = {
            "2000": "tcp:2000:interface=127.0.0.1",
            "tcp:2000": "tcp:2000:interface=127.0.0.1",
            "tcp:2000:backlog=5": "tcp:2000:backlog=5:interface=127.0.0.1",
            "tcp6:2000": "tcp6:2000:interface=\\:\\:1",
            f"ssl:2000:privateKey={pem}": f"ssl:2000:privateKey={pem}:interface=127.0.0.1",
            "tcp:2000:interface=0.0.0.0": "tcp:2000:interface=0.0.0.0",
            "tcp:2000:0.0.0.0": "tcp:2000:0.0.0.0",
            "tcp6:2000:50:\\:\\:": "tcp6:2000:50:\\:\\:",
            "tcp6:2000:interface=\\:\\:": "tcp6:2000:interface=\\:\\:",
            "unix:/tmp/chatsvc-test.sock": "unix:/tmp/chatsvc-test.sock",
        }
        for value, expected in cases.items():
            self.assertEqual(options.portDescription("--port", value, loopback=True), expected)

    def test_namesInterface(self) -> None:
        self.assertTrue(options.namesInterface("tcp:1:interface=10.0.0.1"))
        self.assertTrue(options.namesInterface("tcp:1:10.0.0.1"))
        self.assertTrue(options.namesInterface("tcp6:1:50:\\:\\:"))
        self.assertTrue(options.namesInterface("ssl:1:k.pem:c.pem:SSLv23_METHOD:10.0.0.1"))
        self.assertFalse(options.namesInterface("tcp:1"))
        self.assertFalse(options.namesInterface("tcp6:1:50"))
        self.assertFalse(options.namesInterface("ssl:1:k.pem"))

    def test_garbage(self) -> None:
        """
        Anything else is a L{usage.UsageError} of one line naming the flag.
        """
        for value in ("", "  ", "70000", "-1", "nonsense:1", "tcp:notaport", "tcp", "21567x"):
            e = self.assertRaises(usage.UsageError, options.portDescription, "--port", value)
            message = str(e)
            self.assertTrue(message.startswith("--port: "), message)
            self.assertNotIn("\n", message)


class NumberOptionTests(unittest.SynchronousTestCase):
    """
    L{options.integer} and L{options.seconds}.
    """

    def test_integer(self) -> None:
        self.assertEqual(options.integer("--n", "12"), 12)
        self.assertEqual(options.integer("--n", " 7 "), 7)
        self.assertEqual(options.integer("--n", 5, 5, 5), 5)

    def test_integerRefused(self) -> None:
        for value, minimum, maximum in (
            ("x", 0, None),
            ("1.5", 0, None),
            ("-1", 0, None),
            ("11", 0, 10),
        ):
            e = self.assertRaises(usage.UsageError, options.integer, "--n", value, minimum, maximum)
            self.assertTrue(str(e).startswith("--n: "), str(e))

    def test_seconds(self) -> None:
        self.assertEqual(options.seconds("--t", "1.5"), 1.5)
        self.assertEqual(options.seconds("--t", "0"), 0.0)
        self.assertEqual(options.seconds("--t", 30), 30.0)

    def test_secondsRefused(self) -> None:
        for value in ("abc", "nan", "inf", "-inf", "-1", ""):
            e = self.assertRaises(usage.UsageError, options.seconds, "--t", value)
            self.assertTrue(str(e).startswith("--t: "), str(e))
        self.assertRaises(usage.UsageError, options.seconds, "--t", "0", 0.001)

    def test_otherUnit(self) -> None:
        """
        The error names what the flag counts (a rate is not seconds).
        """
        e = self.assertRaises(
            usage.UsageError, options.seconds, "--r", "x", 0.001, "a number of lines per second"
        )
        self.assertEqual(str(e), "--r: expected a number of lines per second, not 'x'")


class ServiceOptionsTests(unittest.SynchronousTestCase):
    """
    L{options.ServiceOptions}: the common flags, one-line errors.
    """

    def parse(self, *argv):
        config = options.ServiceOptions()
        config.parseOptions(list(argv))
        return config

    def test_defaults(self) -> None:
        """
        The defaults are the L{Limits} defaults, on port 21567.
        """
        config = self.parse()
        self.assertEqual(config["port"], "tcp:21567")
        self.assertEqual(config["limits"], Limits())

    def test_portHelp(self) -> None:
        """
        C{--help} says that a C{--port} without an interface listens on
        every interface.
        """
        usageText = options.ServiceOptions().getUsage(width=2000)
        self.assertIn("on every interface unless it names one", usageText)
        self.assertIn("[default: 21567]", usageText)

    def test_flags(self) -> None:
        config = self.parse(
            "--port=tcp:0:interface=127.0.0.1",
            "--max-line=100",
            "--max-clients=5",
            "--max-per-address=0",
            "--limit-loopback",
            "--send-queue=4096",
            "--idle-timeout=2.5",
        )
        self.assertEqual(
            config["limits"],
            Limits(
                maxLine=100,
                maxClients=5,
                maxPerAddress=0,
                limitLoopback=True,
                sendQueue=4096,
                idleTimeout=2.5,
            ),
        )

    def test_badValueOneLine(self) -> None:
        """
        A bad value: exit status 2 and one line naming the flag, not
        the whole usage text.
        """
        for argv, flag in (
            (["--max-line=x"], "--max-line"),
            (["--max-line=1"], "--max-line"),
            (["--port=bogus:thing"], "--port"),
            (["--idle-timeout=-3"], "--idle-timeout"),
            (["--no-such-flag"], "no-such-flag"),
        ):
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            e = self.assertRaises(SystemExit, self.parse, *argv)
            self.assertEqual(e.code, 2)
            lines = stderr.getvalue().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertIn(flag, lines[0])
            self.assertTrue(lines[0].startswith("twistd chatsvc: error: "), lines[0])


# -- listening -------------------------------------------------------------------------------


class ClosingFactory(protocol.Factory):
    """
    A factory with C{closeAll}, recording how it was called.
    """

    protocol = protocol.Protocol

    def __init__(self) -> None:
        self.closed = []

    def closeAll(self, notice, grace):
        self.closed.append((notice, grace))
        return defer.succeed(None)


class ListenServiceTests(unittest.SynchronousTestCase):
    """
    L{listening.ListenService} and L{listening.raiseFileLimit}.
    """

    def test_portInUse(self) -> None:
        """
        A port already in use: one line on standard error, exit status 1.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        number = taken.getsockname()[1]
        stderr = io.StringIO()
        # twistd points sys.stderr into its log, so the line may be written
        # to sys.__stderr__: both are the same stream here.
        self.patch(sys, "stderr", stderr)
        self.patch(sys, "__stderr__", stderr)
        description = f"tcp:{number}:interface=127.0.0.1"
        service = listening.ListenService(description, ClosingFactory(), "test", reactor)
        e = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertEqual(e.code, 1)
        lines = stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith(f"test: cannot listen on {description}: "), lines[0])
        self.assertIsNone(service.port)

    def test_listensAndStops(self) -> None:
        """
        Starting listens on the description; stopping stops listening,
        then closes the connections with the notice and grace.
        """
        memory = MemoryReactorClock()
        factory = ClosingFactory()
        service = listening.ListenService(
            "tcp:21567:interface=127.0.0.1", factory, "test", memory, notice="bye"
        )
        service.grace = 1.5
        service.startService()
        self.assertTrue(service.running)
        ((port, listened, backlog, interface),) = memory.tcpServers
        self.assertEqual((port, interface), (21567, "127.0.0.1"))
        self.assertEqual(backlog, listening.DEFAULT_BACKLOG)
        self.assertIs(listened, factory)
        self.successResultOf(defer.maybeDeferred(service.stopService))
        self.assertEqual(factory.closed, [("bye", 1.5)])
        self.assertIsNone(service.port)

    def test_backlogNamedKept(self) -> None:
        """
        A description that names a backlog listens with that one.
        """
        memory = MemoryReactorClock()
        service = listening.ListenService("tcp:21567:backlog=5", ClosingFactory(), "t", memory)
        service.privilegedStartService()
        self.assertEqual(memory.tcpServers[0][2], 5)

    def test_describeAddress(self) -> None:
        """
        C{KIND HOST:PORT} with IPv6 hosts in brackets, C{unix PATH}; the
        transport, when given, names the kind.
        """
        self.assertEqual(
            listening.describeAddress(IPv4Address("TCP", "127.0.0.1", 80)), "tcp 127.0.0.1:80"
        )
        self.assertEqual(listening.describeAddress(IPv6Address("TCP", "::", 80)), "tcp [::]:80")
        self.assertEqual(
            listening.describeAddress(IPv4Address("TCP", "0.0.0.0", 443), "tls"), "tls 0.0.0.0:443"
        )
        self.assertEqual(listening.describeAddress(IPv6Address("UDP", "::1", 13)), "udp [::1]:13")
        self.assertEqual(listening.describeAddress(UNIXAddress(b"/tmp/s")), "unix /tmp/s")

    def test_transportOf(self) -> None:
        self.assertEqual(listening.transportOf("tcp:1"), "tcp")
        self.assertEqual(listening.transportOf("tcp6:1"), "tcp")
        self.assertEqual(listening.transportOf("ssl:1:privateKey=k.pem"), "tls")
        self.assertEqual(listening.transportOf("unix:/tmp/s"), "unix")
        self.assertIsNone(listening.transportOf("systemd:domain=INET:index=0"))

    def test_isLocal(self) -> None:
        """
        Loopback addresses and UNIX sockets are local; every-interface and
        other addresses are not; an address without an IP cannot tell.
        """
        for host in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
            self.assertIs(listening.isLocal(IPv4Address("TCP", host, 1)), True, host)
        self.assertIs(listening.isLocal(UNIXAddress(b"/tmp/s")), True)
        for host in ("0.0.0.0", "::", "192.0.2.1", "2001:db8::1", "fe80::1%eth0"):
            self.assertIs(listening.isLocal(IPv4Address("TCP", host, 1)), False, host)
        self.assertIsNone(listening.isLocal(object()))
        self.assertIsNone(listening.isLocal(IPv4Address("TCP", "example.org", 1)))


class WithBacklogTests(unittest.SynchronousTestCase):
    """
    L{listening.withBacklog}: the listen backlog handed to Twisted.
    """

    def test_added(self) -> None:
        cases = {
            "tcp:21567": "tcp:21567:backlog=1024",
            "tcp:21567:interface=127.0.0.1": "tcp:21567:interface=127.0.0.1:backlog=1024",
            "tcp6:21567:interface=\\:\\:1": "tcp6:21567:interface=\\:\\:1:backlog=1024",
            "ssl:443:privateKey=k.pem": "ssl:443:privateKey=k.pem:backlog=1024",
        }
        for value, expected in cases.items():
            self.assertEqual(listening.withBacklog(value), expected)

    def test_kept(self) -> None:
        """
        A backlog named by keyword or by position, and descriptions of
        other kinds, are left alone.
        """
        for value in (
            "tcp:21567:backlog=5",
            "tcp:21567:127.0.0.1:5",
            "tcp6:21567:5",
            "unix:/tmp/s",
            "systemd:domain=INET:index=0",
        ):
            self.assertEqual(listening.withBacklog(value), value)

    def test_custom(self) -> None:
        self.assertEqual(listening.withBacklog("tcp:6667", 64), "tcp:6667:backlog=64")


class LogCapture:
    """
    Log events of C{namespace}, collected while a test runs.
    """

    def __init__(self, case: unittest.SynchronousTestCase, namespace: str) -> None:
        self.namespace = namespace
        self.events: list[dict] = []
        self._waiting: list[tuple[int, defer.Deferred]] = []
        globalLogPublisher.addObserver(self._observe)
        case.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event: dict) -> None:
        if event.get("log_namespace") == self.namespace:
            self.events.append(event)
            waiting, self._waiting = self._waiting, []
            for count, d in waiting:
                if len(self.events) >= count:
                    d.callback(None)
                else:
                    self._waiting.append((count, d))

    def waitFor(self, count: int) -> defer.Deferred:
        """
        Fires once C{count} events have been logged in all.
        """
        if len(self.events) >= count:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append((count, d))
        return withDeadline(d, f"{count} log events of {self.namespace}")

    def texts(self, level: LogLevel | None = None) -> list[str]:
        return [formatEvent(e) for e in self.events if level is None or e.get("log_level") == level]


def tempDirectory(case: unittest.SynchronousTestCase) -> str:
    path = tempfile.mkdtemp(prefix="chatsvc-listen-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def selfSignedPEM(case: unittest.SynchronousTestCase) -> str:
    """
    A PEM file holding a fresh self-signed certificate for C{localhost}
    and its key, as C{ssl:...:privateKey=} takes it; removed after C{case}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = os.path.join(tempDirectory(case), "server.pem")
    with open(path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return path


class StartupErrorTests(unittest.SynchronousTestCase):
    """
    L{listening.startupError}: one line, where the person starting the
    service looks, once.
    """

    def test_foregroundOnce(self) -> None:
        """
        In the foreground (C{twistd -n}) the line goes to the real standard
        error only; twistd's log (standard output) does not repeat it.
        """
        real, redirected = io.StringIO(), io.StringIO()
        self.patch(sys, "__stderr__", real)
        self.patch(sys, "stderr", redirected)
        logged = LogCapture(self, "chatsvc.net.listening")
        listening.startupError("test: cannot listen on tcp:1: Address already in use")
        self.assertEqual(real.getvalue(), "test: cannot listen on tcp:1: Address already in use\n")
        self.assertEqual(redirected.getvalue(), "")
        self.assertEqual(logged.events, [])

    def test_daemonLogged(self) -> None:
        """
        When the real standard error goes nowhere (a daemon's is
        C{/dev/null}), the line is logged instead.
        """
        with open(os.devnull, "w") as null:
            self.patch(sys, "__stderr__", null)
            self.patch(sys, "stderr", io.StringIO())
            logged = LogCapture(self, "chatsvc.net.listening")
            listening.startupError("test: cannot listen")
        self.assertEqual(logged.texts(LogLevel.error), ["test: cannot listen"])


class ListenAnnounceTests(unittest.TestCase):
    """
    The C{LABEL listening on ...} line names the real transport and the
    bound address, and a service meant for this host warns when it is
    reachable beyond loopback.  Real listening ports on loopback.
    """

    def listen(self, description: str, localOnly: str | None = None, memory=None):
        logged = LogCapture(self, "chatsvc.net.listening")
        service = listening.ListenService(
            description, ClosingFactory(), "test", memory or reactor, localOnly=localOnly
        )
        service.privilegedStartService()
        self.addCleanup(service.stopService)
        return service, logged

    async def test_tcp(self) -> None:
        """
        The bound port number, not the 0 asked for; loopback: no warning.
        """
        service, logged = self.listen("tcp:0:interface=127.0.0.1", localOnly="why")
        await logged.waitFor(1)
        number = service.port.getHost().port
        self.assertNotEqual(number, 0)
        self.assertEqual(logged.texts(), [f"test listening on tcp 127.0.0.1:{number}"])

    async def test_tls(self) -> None:
        """
        An C{ssl:} port's address says TCP, but the line says C{tls}.
        """
        pem = selfSignedPEM(self)
        service, logged = self.listen(f"ssl:0:privateKey={pem}:interface=127.0.0.1")
        await logged.waitFor(1)
        number = service.port.getHost().port
        self.assertEqual(logged.texts(), [f"test listening on tls 127.0.0.1:{number}"])

    async def test_unix(self) -> None:
        """
        A UNIX socket is named by its path, and is local: no warning.
        """
        path = os.path.join(tempDirectory(self), "s")
        service, logged = self.listen(f"unix:{path}", localOnly="why")
        await logged.waitFor(1)
        self.assertEqual(logged.texts(), [f"test listening on unix {path}"])

    def test_everyInterfaceWarns(self) -> None:
        """
        Bound to every IPv4 or IPv6 interface, a C{localOnly} service logs
        one warning naming the address and the reason, before the
        C{listening on} line.
        """
        for description, where in (
            ("tcp:2000:interface=0.0.0.0", "tcp 0.0.0.0:2000"),
            ("tcp6:2000:interface=\\:\\:", "tcp [::]:2000"),
        ):
            memory = MemoryReactorClock()
            memory.running = True
            service, logged = self.listen(description, localOnly="anyone can ls", memory=memory)
            self.assertEqual(
                logged.texts(LogLevel.warn),
                [f"test is reachable beyond loopback on {where}: anyone can ls"],
            )

    def test_notLocalOnlyNoWarning(self) -> None:
        memory = MemoryReactorClock()
        service, logged = self.listen("tcp:2000:interface=0.0.0.0", memory=memory)
        self.assertEqual(logged.texts(LogLevel.warn), [])

    def test_unknownAddressWarns(self) -> None:
        """
        An endpoint whose address has no IP (a kind we do not know) may be
        reachable from anywhere: the warning says it cannot tell.
        """

        class Elsewhere:
            def __str__(self) -> str:
                return "somewhere"

        class Port:
            def getHost(self):
                return Elsewhere()

            def stopListening(self):
                return None

        class Service(listening.ListenService):
            def bind(self):
                return Port()

        logged = LogCapture(self, "chatsvc.net.listening")
        service = Service(
            "other:thing", ClosingFactory(), "test", MemoryReactorClock(), localOnly="why"
        )
        service.privilegedStartService()
        self.assertEqual(
            logged.texts(LogLevel.warn),
            ["test may be reachable beyond loopback (its address does not say) on somewhere: why"],
        )

    def test_raiseFileLimit(self) -> None:
        """
        The soft open-file limit is raised toward the wanted number, never
        past the hard limit.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        ceiling = soft if hard == resource.RLIM_INFINITY else hard
        lowered = max(256, min(soft, ceiling) // 2)
        if lowered >= ceiling:
            raise unittest.SkipTest("the hard limit leaves no room to test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        self.assertEqual(listening.raiseFileLimit(lowered + 10), lowered + 10)
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], lowered + 10)
        self.assertEqual(listening.raiseFileLimit(lowered), lowered + 10)  # never lowers
        if hard != resource.RLIM_INFINITY:
            self.assertEqual(listening.raiseFileLimit(hard * 2), hard)
