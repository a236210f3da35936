"""
Listening on an endpoint description the way a user expects of a server.

L{ListenService} binds in C{privilegedStartService} (before twistd drops
privileges), and a port that cannot be bound (in use, no permission) is
one line on standard error and exit status 1, not a traceback.  Once
bound it logs where, as the port really is (C{tls [::]:21567}), and, for
a service meant for this host only, warns when it is reachable beyond
loopback, then how to reach it (L{connectHint}: C{chat: connect with:
chatsvc-client -p tls:localhost:6697:trustRoots=DIR}).  On stop it stops
listening first, then closes its connections with a notice
(L{chatsvc.net.lineproto.LineFactory.closeAll}).

With C{reusePort} (L{ListenService.reusePort}), a TCP or TLS port is
bound with C{SO_REUSEPORT}, so that several processes on one machine can
listen on the same port and the kernel hands each new connection to one
of them (the cluster mode of C{twistd chat --redis}).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import resource
import socket
import sys

from twisted.application import service
from twisted.internet import defer
from twisted.internet.address import UNIXAddress
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatsvc.net.options import splitDescription
from chatsvc.net.twistedcompat import forgetExitSignal

log = Logger()

#: The C{connect with} lines: their own namespace, so that whoever watches
#: for where a service listens sees one event per port.
hintLog = Logger(namespace="chatsvc.net.listening.connect")

#: Listen backlog given to TCP and TLS descriptions that name none: with
#: Twisted's 50, 2,000 simultaneous connects left 1,456 unanswered for
#: 3 s; 1024 answered all (README, "Limits and defaults").
DEFAULT_BACKLOG = 1024

#: Where Twisted's server endpoint parsers take C{backlog} as a positional
#: argument (after the port), as in L{chatsvc.net.options.namesInterface}.
_BACKLOG_POSITION = {"tcp": 2, "tcp6": 1, "ssl": 5}

#: Endpoint kinds whose port L{ListenService.reusePort} shares: TCP, and
#: TLS over TCP.  Any other kind listens as it always does.
REUSE_PORT_KINDS = frozenset({"tcp", "tcp6", "ssl"})

#: What the C{listening on} line calls the transport of each kind of
#: description: an C{ssl:} port's address says C{TCP}, but it speaks TLS.
_TRANSPORTS = {"tcp": "tcp", "tcp6": "tcp", "ssl": "tls", "unix": "unix"}


def withBacklog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """
    C{description} with a listen backlog of C{backlog} when it is a
    C{tcp:}, C{tcp6:} or C{ssl:} description that names none, so a burst
    of connects is answered rather than dropped.  Only what is handed to
    Twisted carries it: messages show the description as the user wrote it.
    """
    kind, args, kwargs = splitDescription(description)
    position = _BACKLOG_POSITION.get(kind)
    if position is None or "backlog" in kwargs or len(args) > position:
        return description
    return f"{description}:backlog={backlog}"


def transportOf(description: str) -> str | None:
    """
    What an endpoint description listens with (C{tcp}, C{tls}, C{unix}),
    or L{None} for kinds we do not know (the address then tells).
    """
    return _TRANSPORTS.get(splitDescription(description)[0])


#: What C{chatsvc-client} needs besides the address to talk to a service
#: of that label; L{None}: the client does not speak its protocol (RFC
#: 868 time is binary), so no C{connect with} line.
_CLIENT_ARGUMENTS = {"chat": " -u NAME", "time": None}


def describeAddress(address, transport: str | None = None) -> str:
    """
    A listening address as a person would write it: C{tcp 127.0.0.1:80},
    C{tls [::]:443}, C{unix /tmp/s}.

    @param transport: what listens there, when the address cannot say (a
        TLS port's address is a C{TCP} one); by default the address type.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        kind = transport or getattr(address, "type", "TCP").lower()
        if ":" in host:
            host = f"[{host}]"
        return f"{kind} {host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return f"{transport or 'unix'} {name.decode() if isinstance(name, bytes) else name}"
    return str(address)


def _escape(host: str) -> str:
    """
    C{host} as it goes inside an endpoint description (C{::1} as
    C{\\:\\:1}).
    """
    return host.replace(":", "\\:")


def _isWildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def certificateOf(description: str):
    """
    The server certificate an C{ssl:} description names (C{certKey}, or
    the C{privateKey} file when that holds both, C{server.pem} by default,
    as Twisted reads them), or L{None} when it cannot be read: it only
    serves the C{connect with} line.
    """
    from cryptography import x509

    kind, args, kwargs = splitDescription(description)
    if kind != "ssl":
        return None
    key = kwargs.get("privateKey") or (args[1] if len(args) > 1 else "server.pem")
    path = kwargs.get("certKey") or (args[2] if len(args) > 2 else key)
    try:
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return None


def certificateName(certificate) -> str | None:
    """
    The name a client should ask for: the certificate's first DNS name,
    else its common name; L{None} when it names neither.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns = names.value.get_values_for_type(x509.DNSName)
        if dns:
            return dns[0]
    except x509.ExtensionNotFound:
        pass
    common = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else None


def connectHint(description: str, address, label: str) -> str | None:
    """
    The C{chatsvc-client} command that reaches a service listening at
    C{address} on C{description}, for the start-up log, so the first
    thing a user sees tells them how to connect.

    A TLS port is named by its certificate's name (the client checks it),
    with C{trustRoots=DIR} when the certificate is self-signed (DIR: a
    directory holding that certificate's PEM file), since no system CA
    vouches for it.  A port on every interface is reached from here as
    C{localhost}, the client's default host.

    @return: L{None} when the client does not speak the service's
        protocol or the endpoint is of a kind it cannot reach.
    """
    extra = _CLIENT_ARGUMENTS.get(label, "")
    if extra is None:
        return None
    transport = transportOf(description)
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if transport == "unix":
        name = getattr(address, "name", None)
        if isinstance(name, bytes):
            name = name.decode()
        return f"chatsvc-client -p unix:{name}{extra}" if name else None
    if not isinstance(host, str) or port is None:
        return None
    if transport == "tcp":
        where = f"-p {port}" if _isWildcard(host) else f"--host {host} -p {port}"
        return f"chatsvc-client {where}{extra}"
    if transport == "tls":
        certificate = certificateOf(description)
        name = certificateName(certificate) if certificate is not None else None
        if name is None:
            name = "localhost" if _isWildcard(host) else _escape(host)
        trust = ""
        if certificate is not None and certificate.issuer == certificate.subject:
            trust = ":trustRoots=DIR"
        return f"chatsvc-client -p tls:{name}:{port}{trust}{extra}"
    return None


def isLocal(address) -> bool | None:
    """
    Whether only this host can reach a listening C{address}: a loopback
    IP address or a UNIX socket.  C{0.0.0.0} and C{::} are every
    interface, so not local.

    @return: L{None} when the address does not tell (an endpoint of a kind
        we do not know).
    """
    if isinstance(address, UNIXAddress):
        return True
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def raiseFileLimit(wanted: int = 65536) -> int:
    """
    Raise the soft open-file limit towards the hard one: running out of
    descriptors makes Twisted close new sockets silently (docs/hardening.rst).

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def startupError(line: str) -> None:
    """
    Report why the service cannot start, in one line, where a person
    running it looks: on the real standard error (twistd has already
    pointed C{sys.stderr} into its log when services start, so with
    C{-n} it would land on standard output with a timestamp).  Only when
    that goes nowhere (a daemon's standard error is C{/dev/null}) is the
    line logged instead, so a foreground run shows it once, not twice.
    """
    real = sys.__stderr__
    if real is not None and not _goesNowhere(real):
        try:
            real.write(line + "\n")
            real.flush()
            return
        except (OSError, ValueError):
            pass
    log.error("{line}", line=line)


def _goesNowhere(stream) -> bool:
    """
    Whether C{stream} is C{/dev/null}.  A stream without a file descriptor
    (a test's C{StringIO}) is somewhere.
    """
    try:
        there = os.fstat(stream.fileno())
        null = os.stat(os.devnull)
    except (OSError, ValueError):
        return False
    return (there.st_dev, there.st_ino) == (null.st_dev, null.st_ino)


def announceListening(reactor, label: str, where: str, hint: str | None = None) -> None:
    """
    Log C{LABEL listening on WHERE} (L{describeAddress}) once the reactor
    runs: by then twistd's signal handlers are in place, so whoever waits
    for this line (a supervisor, a test) may send SIGTERM at once and get
    a clean stop.  With C{hint} (L{connectHint}), a second line, from
    L{hintLog}, says how to connect.
    """
    reactor.callWhenRunning(log.info, "{label} listening on {address}", label=label, address=where)
    if hint is not None:
        reactor.callWhenRunning(
            hintLog.info, "{label}: connect with: {command}", label=label, command=hint
        )


def listenReusingPort(reactor, port: int, factory, backlog: int = 50, interface: str = ""):
    """
    Listen like C{reactor.listenTCP(port, factory, backlog, interface)},
    on a socket with C{SO_REUSEPORT} set before it is bound, so that other
    sockets that set it too (other processes of the same user) may listen
    on the same port.

    No reactor offers that yet (Twisted 26.10's C{tcp.makeBinding} takes
    C{reusePort}, but C{IReactorTCP2}, whose C{listenTCP} would accept
    it, is provided by no reactor), so the socket is made, bound and set
    listening here, as C{twisted.internet.tcp.Port} does it
    (C{SO_REUSEADDR}, non-blocking; an IPv6 interface, C{::} included,
    gives an IPv6 socket and is resolved numerically so that a scope such
    as C{fe80::1%eth0} is honoured), and handed to the reactor with
    C{adoptStreamPort}, which keeps a duplicate of it: our copy is closed.

    A port already bound without C{SO_REUSEPORT} (or by another user)
    cannot be shared: that fails as C{listenTCP} fails, with
    C{CannotListenError} (C{Address already in use}).

    @return: the C{IListeningPort}: its C{getHost} and C{stopListening}
        are those of any TCP port.
    """
    from twisted.internet.abstract import isIPv6Address
    from twisted.internet.error import CannotListenError

    reuse = getattr(socket, "SO_REUSEPORT", None)
    if reuse is None:
        why = OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not supported on this system")
        raise CannotListenError(interface, port, why)
    family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, reuse, 1)
        if family == socket.AF_INET6:
            numeric = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
            address = socket.getaddrinfo(interface, port, family, socket.SOCK_STREAM, 0, numeric)
            address = address[0][4]
        else:
            address = (interface, port)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise CannotListenError(interface, port, e) from e
    try:
        return reactor.adoptStreamPort(sock.fileno(), family, factory)
    finally:
        sock.close()


class ReusePortReactor:
    """
    The reactor that C{serverFromString}'s TCP and TLS endpoints are given
    when a service shares its port: their C{listenTCP} and C{listenSSL}
    (the only reactor methods those endpoints call) listen through
    L{listenReusingPort}.

    So Twisted still parses the description (port, C{interface},
    C{backlog}, and for C{ssl:} the key, certificate, method, chain and
    Diffie-Hellman parameters, into its context factory), and nothing
    here reads an endpoint's private attributes.  TLS is layered as the
    reactor's own C{listenSSL} layers it: a C{TLSMemoryBIOFactory} in
    server mode around the factory.
    """

    def __init__(self, reactor) -> None:
        self.reactor = reactor

    def listenTCP(self, port: int, factory, backlog: int = 50, interface: str = ""):
        return listenReusingPort(self.reactor, port, factory, backlog, interface)

    def listenSSL(self, port: int, factory, contextFactory, backlog: int = 50, interface: str = ""):
        from twisted.protocols.tls import TLSMemoryBIOFactory

        tls = TLSMemoryBIOFactory(contextFactory, False, factory)
        return listenReusingPort(self.reactor, port, tls, backlog, interface)


class PortService(service.Service):
    """
    What every chatsvc listener shares: bind in C{privilegedStartService}
    (low ports need it; started directly, it binds in C{startService}),
    announce where once the reactor runs, stop listening on stop.
    Subclasses implement L{bind}.

    @ivar port: the listening port once bound.
    """

    label = "chatsvc"
    port = None
    reactor = None

    def _reactor(self):
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        return self.reactor

    def bind(self):
        """
        Listen now and return the port; on failure say why in one line
        (L{startupError}) and raise C{SystemExit(1)}.
        """
        raise NotImplementedError()

    def where(self) -> str:
        """
        Where the bound port listens, for the log (L{describeAddress}).
        """
        return describeAddress(self.port.getHost())

    def hint(self) -> str | None:
        """
        How a user connects (L{connectHint}), or L{None} to say nothing.
        """
        return None

    def privilegedStartService(self) -> None:
        service.Service.privilegedStartService(self)
        self.port = self.bind()
        announceListening(self._reactor(), self.label, self.where(), self.hint())

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        service.Service.startService(self)

    def stopService(self):
        service.Service.stopService(self)
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)


class ListenService(PortService):
    """
    Listen on one endpoint description with one factory.

    @ivar port: the C{IListeningPort} once listening.
    @ivar backlog: the listen backlog given to a description that names
        none (L{withBacklog}).
    @ivar localOnly: for a service meant for this host only, why: once
        bound beyond loopback (or where the address cannot tell), a
        warning naming the address and this reason is logged.
    @ivar reusePort: share the port with other processes: a C{tcp:},
        C{tcp6:} or C{ssl:} description (L{REUSE_PORT_KINDS}) is bound
        with C{SO_REUSEPORT} (L{listenReusingPort}), so several processes
        of the same user listen on one port and the kernel gives each new
        connection to one of them.  It must be set on every one of them:
        a port held by a listener without it is in use, the usual
        one-line error.  Other kinds (C{unix:}, C{systemd:}, plugins')
        ignore it and listen as usual.  Linux resets the connections
        still waiting in the queue of a socket that stops listening,
        unless C{net.ipv4.tcp_migrate_req} is 1: a process leaving the
        group may drop a few connects that were not yet accepted.
    """

    reusePort = False

    def __init__(
        self,
        description: str,
        factory,
        label: str,
        reactor=None,
        notice: str | None = None,
        backlog: int = DEFAULT_BACKLOG,
        localOnly: str | None = None,
        reusePort: bool = False,
    ) -> None:
        self.description = description
        self.factory = factory
        self.label = label
        self.notice = notice
        self.reactor = reactor
        self.backlog = backlog
        self.localOnly = localOnly
        self.reusePort = reusePort
        self.grace: float | None = None

    def where(self) -> str:
        return describeAddress(self.port.getHost(), transportOf(self.description))

    def hint(self) -> str | None:
        return connectHint(self.description, self.port.getHost(), self.label)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.localOnly is not None:
            self._warnIfReachable()

    def _warnIfReachable(self) -> None:
        local = isLocal(self.port.getHost())
        if local:
            return
        if local is False:
            reach = "is reachable beyond loopback"
        else:
            reach = "may be reachable beyond loopback (its address does not say)"
        log.warn(
            "{label} {reach} on {address}: {why}",
            label=self.label,
            reach=reach,
            address=self.where(),
            why=self.localOnly,
        )

    def bind(self):
        # Imported here, not at the top: see chatsvc.net.twistedcompat.holdBackTLS.
        from twisted.internet import endpoints

        description = withBacklog(self.description, self.backlog)
        reactor = self._reactor()
        if self.reusePort and splitDescription(description)[0] in REUSE_PORT_KINDS:
            reactor = ReusePortReactor(reactor)
        endpoint = endpoints.serverFromString(reactor, description)
        outcome = []
        endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:  # an endpoint that listens later: report failures then
            raise RuntimeError(f"{self.description}: endpoint did not listen at once")
        result = outcome[0]
        if isinstance(result, Failure):
            reason = result.value
            why = getattr(reason, "socketError", None) or reason
            why = getattr(why, "strerror", None) or str(why)
            startupError(f"{self.label}: cannot listen on {self.description}: {why}")
            raise SystemExit(1)
        return result

    def stopService(self):
        d = super().stopService()
        closeAll = getattr(self.factory, "closeAll", None)
        if closeAll is not None:
            d.addCallback(lambda _: closeAll(self.notice, self.grace))
        return d


class ExitCleanly(service.Service):
    """
    Make a graceful stop on SIGTERM (or SIGINT) end with exit status 0.

    twistd stops the reactor on the signal, runs every C{stopService}, and
    then kills itself again with the same signal, so a server that shut
    down exactly as asked reports "killed by SIGTERM" (status 143).  Our
    services promise exit 0 after a clean stop (docs/hardening.rst, item 23):
    add this to a plugin's C{MultiService}.  Twisted has no public way to
    say so: this forgets the signal the reactor recorded, once the
    services are stopping (L{chatsvc.net.twistedcompat.forgetExitSignal}).
    """

    def __init__(self, reactor=None) -> None:
        self.reactor = reactor

    def stopService(self):
        service.Service.stopService(self)
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor
        forgetExitSignal(reactor)
