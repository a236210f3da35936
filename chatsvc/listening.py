"""
Listening on an endpoint description the way a user expects of a server.

L{ListenService} binds in C{privilegedStartService} (before twistd drops
privileges), and a port that cannot be bound (in use, no permission) is
one line on standard error and exit status 1, not a traceback.  On stop
it stops listening first, then closes its connections with a notice
(L{chatsvc.lineproto.LineFactory.closeAll}).
"""

from __future__ import annotations

import resource
import sys

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


def describeAddress(address) -> str:
    """
    A listening address as a person would write it.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        kind = getattr(address, "type", "TCP").lower()
        return f"{kind} {host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return f"unix {name.decode() if isinstance(name, bytes) else name}"
    return str(address)


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
    C{-n} it would land on standard output with a timestamp), and in the
    log too (where a daemon's output goes).
    """
    real = sys.__stderr__
    if real is not None:
        try:
            real.write(line + "\n")
            real.flush()
        except (OSError, ValueError):
            pass
    if sys.stderr is not real:
        log.error("{line}", line=line)


def announceListening(reactor, label: str, address) -> None:
    """
    Log C{LABEL listening on KIND HOST:PORT} once the reactor runs: by then
    twistd's signal handlers are in place, so whoever waits for this line
    (a supervisor, a test) may send SIGTERM at once and get a clean stop.
    """
    reactor.callWhenRunning(
        log.info, "{label} listening on {address}", label=label, address=describeAddress(address)
    )


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

    def privilegedStartService(self) -> None:
        service.Service.privilegedStartService(self)
        self.port = self.bind()
        announceListening(self._reactor(), self.label, self.port.getHost())

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
    """

    def __init__(
        self, description: str, factory, label: str, reactor=None, notice: str | None = None
    ) -> None:
        self.description = description
        self.factory = factory
        self.label = label
        self.notice = notice
        self.reactor = reactor
        self.grace: float | None = None

    def bind(self):
        endpoint = endpoints.serverFromString(self._reactor(), self.description)
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
    add this to a plugin's C{MultiService}.  Twisted keeps the signal in
    the reactor's C{_exitSignal} (its C{_ISupportsExitSignalCapturing});
    this forgets it once the services are stopping.
    """

    def __init__(self, reactor=None) -> None:
        self.reactor = reactor

    def stopService(self):
        service.Service.stopService(self)
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor
        if getattr(reactor, "_exitSignal", None) is not None:
            reactor._exitSignal = None
