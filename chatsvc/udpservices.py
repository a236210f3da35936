"""
tsserv's UDP side: the timestamp echo, RFC 867 daytime and RFC 868 time
as datagram services that are safe to put on a network.

A UDP service answers whoever the source address claims to be, so a
naive one is a reflector and an amplifier, and two of them (or one and
an echo, chargen, DNS or NTP server) bounce a single spoofed packet
between each other for ever (docs/hardening.rst, item 21; the CVE-2024-2169 class).
Every datagram therefore passes a L{DatagramGuard} before it is
answered; the guard drops:

  - empty datagrams (for the timestamp echo; RFC 867/868 requests are
    empty by definition, so those services take them) and datagrams over
    L{MAX_DATAGRAM} bytes;
  - datagrams from source ports below 1024 (servers, not clients) and
    from the ports of well-known reflecting services and of our own UDP
    services (L{SERVICE_PORTS}, L{DatagramGuard.ownPorts});
  - payloads that look like a reply of any of our services
    (L{chatsvc.stamps.looksLikeReply}), and for the time service any
    4-byte payload (a time reply from any clock);
  - anything over the per-source rate (a token bucket per IPv4 address or
    IPv6 /64, in a bounded table) or the overall rate (one bucket for
    every source and service together).

Drops are counted and logged without flooding the log: the first drop of
a quiet period is logged at once, later ones as one summary line per
interval (L{DropLog}).
"""

from __future__ import annotations

import types
from collections import Counter
from dataclasses import dataclass

from twisted.internet import error
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from chatsvc.net.lineproto import addressKey
from chatsvc.net.listening import PortService, startupError
from chatsvc.net.options import splitDescription
from chatsvc.net.ratelimit import BucketTable, TokenBucket
from chatsvc.net.text import decodeLine
from chatsvc.stamps import daytime, looksLikeReply, rfc868, stamp

log = Logger()

#: Longest datagram answered, in bytes (the classic "safe" UDP payload).
MAX_DATAGRAM = 512

#: Source ports of services that answer datagrams on their own and so
#: could bounce our replies back: echo, daytime, chargen, time, DNS, NTP
#: (all below 1024 and dropped as such anyway, listed for the record),
#: and the unprivileged SSDP, mDNS and memcached.
SERVICE_PORTS = frozenset({7, 13, 19, 37, 53, 123, 1900, 5353, 11211})

#: Source ports below this are servers' ports, never a client's.
LOWEST_CLIENT_PORT = 1024

#: Seconds between two summaries of dropped datagrams.
DROP_LOG_INTERVAL = 60.0

# Reasons for a drop, as logged and counted.
EMPTY = "empty"
OVERSIZED = "oversized"
LOW_PORT = "source port below 1024"
SERVICE_PORT = "source port of a service"
REPLY = "looks like a reply"
SOURCE_RATE = "over the per-source rate"
TOTAL_RATE = "over the total rate"
SEND_FAILED = "reply not sent"


@dataclass
class UDPLimits:
    """
    Rate limits on UDP replies (flags of C{twistd tsserv}).

    @ivar rate: replies per second to one source (IPv4 address or IPv6 /64).
    @ivar burst: replies one source may get at once before C{rate} applies.
    @ivar totalRate: replies per second in all, every source and UDP
        service together: the bound on what the process can reflect.
    @ivar totalBurst: the burst of the total bucket (one second's worth
        of C{totalRate} when L{None}).
    @ivar maxSources: sources remembered at once (least recently seen
        forgotten first), so spoofed source addresses cannot grow memory.
    """

    rate: float = 10.0
    burst: float = 20.0
    totalRate: float = 500.0
    totalBurst: float | None = None
    maxSources: int = 4096


class DropLog:
    """
    Counts dropped datagrams and logs them in few lines: the first drop
    after a quiet period at once (with its source, useful when a user asks
    why nothing came back), then at most one summary per C{interval}.

    @ivar totals: every drop so far, by reason.
    """

    def __init__(self, clock, interval: float = DROP_LOG_INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        self.totals: Counter = Counter()
        self._pending: Counter = Counter()
        self._timer = None

    def dropped(self, reason: str, addr) -> None:
        """
        A datagram from C{addr} was dropped for C{reason}.
        """
        self.totals[reason] += 1
        if self._timer is not None:
            self._pending[reason] += 1
            return
        log.info(
            "udp: dropped a datagram from {host}:{port} ({reason}); further drops "
            "are summarised every {interval:g}s",
            host=addr[0],
            port=addr[1],
            reason=reason,
            interval=self.interval,
        )
        self._timer = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._pending:
            self._summarise()
            self._timer = self.clock.callLater(self.interval, self._tick)

    def _summarise(self) -> None:
        pending, self._pending = self._pending, Counter()
        log.info(
            "udp: dropped {count} more datagrams ({detail})",
            count=sum(pending.values()),
            detail=", ".join(f"{reason}: {n}" for reason, n in pending.most_common()),
        )

    def flush(self) -> None:
        """
        Log what is pending now and stop the timer (at shutdown).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._pending:
            self._summarise()


class DatagramGuard:
    """
    Decides which datagrams get an answer (the rules are in the module
    docstring).  One guard is shared by every UDP service of a process, so
    the rate limits hold across services and each service knows the
    ports of the others.

    @ivar ownPorts: the ports our UDP services listen on.
    @ivar drops: the L{DropLog}.
    """

    def __init__(
        self, clock, limits: UDPLimits | None = None, logInterval: float = DROP_LOG_INTERVAL
    ) -> None:
        limits = limits if limits is not None else UDPLimits()
        self.clock = clock
        self.limits = limits
        self.ownPorts: set[int] = set()
        self.drops = DropLog(clock, logInterval)
        self._perSource = BucketTable(limits.rate, limits.burst, clock.seconds, limits.maxSources)
        totalBurst = limits.totalBurst if limits.totalBurst is not None else limits.totalRate
        self._total = TokenBucket(limits.totalRate, max(1.0, totalBurst), clock.seconds)

    def refusal(
        self, payload: bytes, addr, allowEmpty: bool = False, refuseFourBytes: bool = False
    ) -> str | None:
        """
        Why the datagram C{payload} from C{addr} gets no answer, or L{None}
        when it is answered.  Spends rate tokens only on datagrams that
        pass every other rule, so a flood of junk costs nobody else.
        """
        size = len(payload)
        if size > MAX_DATAGRAM:
            return OVERSIZED
        if size == 0 and not allowEmpty:
            return EMPTY
        port = addr[1]
        if port < LOWEST_CLIENT_PORT:
            return LOW_PORT
        if port in SERVICE_PORTS or port in self.ownPorts:
            return SERVICE_PORT
        if (size == 4 and refuseFourBytes) or looksLikeReply(payload, self.clock.seconds()):
            return REPLY
        if not self._perSource.take(_sourceKey(addr[0])):
            return SOURCE_RATE
        if not self._total.take():
            return TOTAL_RATE
        return None

    def admit(
        self, payload: bytes, addr, allowEmpty: bool = False, refuseFourBytes: bool = False
    ) -> bool:
        """
        Whether to answer; a refused datagram is counted in L{drops}.
        """
        reason = self.refusal(payload, addr, allowEmpty, refuseFourBytes)
        if reason is None:
            return True
        self.drops.dropped(reason, addr)
        return False


def _sourceKey(host: str):
    """
    What the per-source rate counts under: the IPv4 address or IPv6 /64
    (IPv4-mapped addresses as IPv4), as the TCP per-address cap does.
    """
    return addressKey(types.SimpleNamespace(host=host)) or host


class ReplyProtocol(DatagramProtocol):
    """
    Answer every datagram the guard admits with L{reply}C{(payload)}.

    @cvar allowEmpty: whether an empty datagram is a request.
    @cvar refuseFourBytes: whether any 4-byte payload counts as a reply.
    """

    allowEmpty = False
    refuseFourBytes = False
    noisy = False

    def __init__(self, guard: DatagramGuard) -> None:
        self.guard = guard
        self.clock = guard.clock

    def startProtocol(self) -> None:
        self.guard.ownPorts.add(self.transport.getHost().port)

    def stopProtocol(self) -> None:
        self.guard.drops.flush()

    def datagramReceived(self, datagram: bytes, addr) -> None:
        if not self.guard.admit(datagram, addr, self.allowEmpty, self.refuseFourBytes):
            return
        try:
            self.transport.write(self.reply(datagram), addr)
        except (OSError, error.MessageLengthError):
            # A full send buffer or an unroutable source: UDP is lossy.
            self.guard.drops.dropped(SEND_FAILED, addr)

    def reply(self, datagram: bytes) -> bytes:
        """
        The answer to C{datagram}.
        """
        raise NotImplementedError()


class StampDatagramProtocol(ReplyProtocol):
    """
    The timestamp echo: C{X} is answered with C{[ctime] X}.

    C{X} is decoded and neutralised as a TCP line is (so no raw control
    bytes are reflected at anyone), except that a final LF or CRLF is
    kept: C{echo hi | nc -u} gets its reply on a line of its own.
    """

    def reply(self, datagram: bytes) -> bytes:
        ending = b""
        if datagram.endswith(b"\n"):
            ending = b"\r\n" if datagram.endswith(b"\r\n") else b"\n"
            datagram = datagram[: -len(ending)]
        text = stamp(self.clock.seconds(), decodeLine(datagram))
        return text.encode("utf-8") + ending


class DaytimeDatagramProtocol(ReplyProtocol):
    """
    RFC 867 daytime over UDP: any datagram, empty too, is answered with
    C{ctime} and CRLF.
    """

    allowEmpty = True

    def reply(self, datagram: bytes) -> bytes:
        return daytime(self.clock.seconds())


class TimeDatagramProtocol(ReplyProtocol):
    """
    RFC 868 time over UDP (C{rdate -u}): any datagram, empty too, is
    answered with 4 bytes of seconds since 1900.  A 4-byte request is
    refused whatever its value: it is how another time server's reply
    looks, and answering it would loop between two time servers whatever
    their clocks say.
    """

    allowEmpty = True
    refuseFourBytes = True

    def reply(self, datagram: bytes) -> bytes:
        return rfc868(self.clock.seconds())


class DatagramListenService(PortService):
    """
    Listen for datagrams on C{interface:port}, as L{chatsvc.net.listening.
    ListenService} does for streams: bound in C{privilegedStartService}
    (ports below 1024 need it), a port that cannot be bound is one line on
    standard error (L{chatsvc.net.listening.startupError}) and exit status 1, and the log line
    C{LABEL listening on udp HOST:PORT} says where.

    Datagrams are read with room for one byte over L{MAX_DATAGRAM}:
    Twisted cuts longer datagrams silently, and a cut one must still be
    seen as oversized.

    @ivar port: the listening UDP port once bound.
    """

    def __init__(self, port: int, interface: str, protocol, label: str, reactor=None) -> None:
        self.portNumber = port
        self.interface = interface
        self.protocol = protocol
        self.label = label
        self.reactor = reactor

    def bind(self):
        try:
            return self._reactor().listenUDP(
                self.portNumber,
                self.protocol,
                interface=self.interface,
                maxPacketSize=MAX_DATAGRAM + 1,
            )
        except error.CannotListenError as e:
            why = getattr(e.socketError, "strerror", None) or str(e.socketError)
            where = f"{self.interface or '*'}:{self.portNumber}"
            startupError(f"{self.label}: cannot listen on udp {where}: {why}")
            raise SystemExit(1) from None


def interfaceOf(description: str) -> str:
    """
    The interface a stream endpoint description binds: its C{interface=},
    else every IPv6 interface for C{tcp6:} and every IPv4 one otherwise
    (Twisted's defaults).
    """
    kind, _, kwargs = splitDescription(description)
    return kwargs.get("interface", "::" if kind == "tcp6" else "")


def udpTwinOf(description: str) -> tuple[int, str] | None:
    """
    The UDP C{(port, interface)} mirroring a plain TCP endpoint
    description: the same port number on the same interface.  L{None}
    for descriptions that are not C{tcp:} or C{tcp6:} (a UNIX socket has
    no port number; TLS over TCP has no plain UDP counterpart).
    """
    kind, args, kwargs = splitDescription(description)
    if kind not in ("tcp", "tcp6"):
        return None
    port = kwargs.get("port", args[0] if args else "")
    if not port.isdigit():
        return None
    return int(port), interfaceOf(description)
