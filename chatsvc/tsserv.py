"""
The timestamp service, C{twistd -n tsserv}.

Over TCP every line C{X} is answered with C{[ctime] X}; over UDP every
datagram likewise (L{chatsvc.udpservices}, with the rules that keep a UDP
reply service from being a reflector); optionally RFC 867 daytime and
RFC 868 time on their own ports, over TCP and UDP.

The plugin (C{twisted/plugins/chatsvc_plugins.py}) loads L{Options} and
L{makeService} from here; the shape is magic-wormhole-mailbox-server's
tap module: options in, one C{MultiService} of listeners out.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import protocol
from twisted.python import usage

from chatsvc.net.lineproto import LineFactory, LineProtocol
from chatsvc.net.listening import ExitCleanly, ListenService, raiseFileLimit
from chatsvc.net.options import ServiceOptions, integer, portDescription, splitDescription
from chatsvc.stamps import daytime, rfc868, stamp
from chatsvc.udpservices import (
    DatagramGuard,
    DatagramListenService,
    DaytimeDatagramProtocol,
    StampDatagramProtocol,
    TimeDatagramProtocol,
    UDPLimits,
    interfaceOf,
    udpTwinOf,
)

#: The last line every connected timestamp client gets on SIGTERM.
SHUTDOWN_NOTICE = "server shutting down"

# -- TCP protocols -------------------------------------------------------------


class TimestampProtocol(LineProtocol):
    """
    Answer each line with C{[ctime] line}.  Framing, decoding, the line
    limit, ordering and half-close are L{LineProtocol}'s.
    """

    def lineReceived(self, line: str) -> None:
        self.sendLine(stamp(self.clock.seconds(), line))


class TimestampFactory(LineFactory):
    """
    Builds L{TimestampProtocol}s; C{clock} gives both the time told and
    the timers.
    """

    protocol = TimestampProtocol


class OneShotProtocol(protocol.Protocol):
    """
    Send one reply at once and close, as inetd's built-in daytime and
    time services do; anything the client sends is ignored.
    """

    def connectionMade(self) -> None:
        self.transport.write(self.factory.reply(self.factory.clock.seconds()))
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        pass


class OneShotFactory(protocol.Factory):
    """
    Builds L{OneShotProtocol}s that send C{reply(seconds)}.

    (Twisted's C{twisted.protocols.wire.Daytime} writes a C{str} and
    crashes on Python 3, hence these.)
    """

    protocol = OneShotProtocol
    noisy = False

    def __init__(self, reply, clock=None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.reply = reply
        self.clock = clock


def daytimeFactory(clock=None) -> OneShotFactory:
    """
    RFC 867 daytime over TCP: one line, C{ctime} and CRLF.
    """
    return OneShotFactory(daytime, clock)


def timeFactory(clock=None) -> OneShotFactory:
    """
    RFC 868 time over TCP: 4 bytes, big-endian seconds since 1900.
    """
    return OneShotFactory(rfc868, clock)


# -- options -------------------------------------------------------------------

_OFF = ("off", "no", "none")


def positiveRate(flag: str, value) -> float:
    """
    Parse a rate in events per second for C{flag}: a number above zero.
    """
    try:
        number = float(str(value).strip())
    except ValueError:
        raise usage.UsageError(f"{flag}: expected a number per second, not {value!r}") from None
    if not 0 < number < float("inf"):
        raise usage.UsageError(f"{flag}: must be a number per second above 0, not {value!r}")
    return number


def udpPort(value: str | None, tcpDescription: str) -> tuple[int, str] | None:
    """
    Parse C{--udp} against the C{--port} description.

    @return: C{(port, interface)} to bind, or L{None} for no UDP.
    """
    if value is None:
        return udpTwinOf(tcpDescription)
    value = value.strip()
    if value.lower() in _OFF:
        return None
    interface = interfaceOf(tcpDescription)
    kind, args, kwargs = splitDescription(value)
    if kind == "udp" and len(args) <= 1 and set(kwargs) <= {"port", "interface"}:
        port = kwargs.get("port", args[0] if args else "")
        interface = kwargs.get("interface", interface)
    elif not args and not kwargs:
        port = value
    else:
        port = ""
    if not port.isdigit():
        raise usage.UsageError(
            f"--udp: expected a port number, udp:PORT[:interface=ADDR] or off, not {value!r}"
        )
    number = integer("--udp", port, 0, 65535)
    return number, interface


class Options(ServiceOptions):
    """
    C{twistd tsserv} options: the common line-service flags and the UDP,
    daytime and time flags.
    """

    command = "tsserv"
    synopsis = "[options]"
    longdesc = (
        "Timestamp echo: every TCP line X is answered with '[ctime] X', every "
        "UDP datagram X with the datagram '[ctime] X'. UDP listens on the --port "
        "number and interface when --port is tcp: or tcp6: (a bare number is tcp:); "
        "with a unix:, ssl: or other --port it is off unless --udp names a port. "
        "UDP replies are rate-limited; oversized (>512 bytes) and reply-like "
        "datagrams and those from ports below 1024 or of known services are dropped, "
        "and so are empty ones, except that daytime and time answer them as "
        "RFC 867/868 ask."
    )

    optParameters = [
        [
            "udp",
            None,
            None,
            "UDP port for timestamp datagrams: a number (on --port's interface), "
            "udp:PORT:interface=ADDR, or 'off'. Default: the --port number if "
            "--port is tcp:/tcp6:, else off.",
        ],
        [
            "udp-rate",
            None,
            f"{UDPLimits.rate:g}",
            "UDP replies per second to one source address (IPv4 address or IPv6 /64).",
        ],
        [
            "udp-burst",
            None,
            str(int(UDPLimits.burst)),
            "UDP replies one source may get at once before --udp-rate applies.",
        ],
        [
            "udp-total-rate",
            None,
            f"{UDPLimits.totalRate:g}",
            "UDP replies per second in all, for every source and UDP service together.",
        ],
        [
            "daytime",
            None,
            None,
            "Also serve RFC 867 daytime over TCP and UDP on this port number or "
            "endpoint description (13 is the standard port). Default: off.",
        ],
        [
            "time",
            None,
            None,
            "Also serve RFC 868 time (rdate) over TCP and UDP on this port number or "
            "endpoint description (37 is the standard port). Default: off.",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["udp-port"] = udpPort(self["udp"], self["port"])
        self["udp-limits"] = UDPLimits(
            rate=positiveRate("--udp-rate", self["udp-rate"]),
            burst=integer("--udp-burst", self["udp-burst"], 1),
            totalRate=positiveRate("--udp-total-rate", self["udp-total-rate"]),
        )
        for flag in ("daytime", "time"):
            if self[flag] is not None:
                self[flag] = portDescription(f"--{flag}", self[flag])


# -- the service ---------------------------------------------------------------


def makeService(options: Options, reactor=None) -> service.MultiService:
    """
    The listeners C{options} ask for, in one C{MultiService}: the
    timestamp echo on TCP (and UDP unless off), then daytime and time,
    each on TCP and on UDP at the same port number.  A SIGTERM stops
    them all (UDP ports too) and twistd exits 0.

    @param reactor: the reactor to listen with and take the time from
        (the global one by default).
    """
    if reactor is None:
        from twisted.internet import reactor
    raiseFileLimit()
    top = service.MultiService()
    ExitCleanly(reactor).setServiceParent(top)
    guard = DatagramGuard(reactor, options["udp-limits"])

    factories = {}

    def listen(description, factory, label, datagramProtocol, udp, notice=None):
        factories[label] = factory
        ListenService(description, factory, label, reactor, notice=notice).setServiceParent(top)
        if udp is not None:
            port, interface = udp
            DatagramListenService(
                port, interface, datagramProtocol, label, reactor
            ).setServiceParent(top)

    listen(
        options["port"],
        TimestampFactory(options["limits"], reactor),
        "tsserv",
        StampDatagramProtocol(guard),
        options["udp-port"],
        notice=SHUTDOWN_NOTICE,
    )
    if options["daytime"] is not None:
        listen(
            options["daytime"],
            daytimeFactory(reactor),
            "daytime",
            DaytimeDatagramProtocol(guard),
            udpTwinOf(options["daytime"]),
        )
    if options["time"] is not None:
        listen(
            options["time"],
            timeFactory(reactor),
            "time",
            TimeDatagramProtocol(guard),
            udpTwinOf(options["time"]),
        )
    if options["metrics"] is not None:
        from chatsvc.metrics import serveMetrics  # prometheus_client only when asked for

        serveMetrics(options["metrics"], factories, reactor).setServiceParent(top)
    return top
