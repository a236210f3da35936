"""
The command service, C{twistd -n cmdserv}: one line in, one line out.

C{date}, C{os}, C{ls [DIR]}, C{ip} and C{help} are commands
(case-insensitive, surrounding spaces ignored); any other line is echoed
back as C{[ctime] LINE}.  The wire protocol is in C{docs/protocol.rst}.

Everything is answered on the reactor thread except C{ls}, which reads
the disk: it runs on a small thread pool of its own (L{ListingService}),
so a flood of listings neither blocks the reactor nor takes the threads
the reactor's own pool keeps for name resolution and the like.  While a
listing runs, the connection holds its input (L{LineProtocol.holdInput}):
lines sent behind the C{ls} wait, so replies stay in request order.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python import threadpool, usage

from chatsvc import listing
from chatsvc.net.lineproto import LineFactory, LineProtocol
from chatsvc.net.listening import ExitCleanly, ListenService, raiseFileLimit
from chatsvc.net.options import DEFAULT_PORT, ServiceOptions, integer

log = Logger()

#: The one reply to every C{ls} that cannot be answered with a listing.
#: It is the same for paths outside the root, missing paths and files,
#: so a client learns nothing about what lies outside.
REFUSAL = "error: ls: no such directory in the served root"

#: The last line every connected client gets on SIGTERM.
SHUTDOWN_NOTICE = "server shutting down"

#: The reply when a listing fails for a reason that is our fault.
FAILURE = "error: ls: the listing failed"

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_SCAN = 1_000_000
DEFAULT_LIST_THREADS = 2

_WORDS = re.compile(r"[ \t]+")


# -- listings off the reactor thread ------------------------------------------


class ListingService(service.Service):
    """
    Runs C{ls} requests on a small thread pool of its own.

    The pool bounds how many listings read the disk at once; the rest
    wait in its queue (at most one per connection, since a connection
    holds its input while its listing runs).  On stop, running and queued
    listings are cancelled and the pool is stopped.

    @ivar root: the served root, resolved at start (L{listing.resolveRoot}).
    @ivar listFunction: the blocking function doing one request; tests
        wrap it to watch or gate listings.
    """

    def __init__(
        self,
        root: bytes,
        maxEntries: int = DEFAULT_MAX_ENTRIES,
        maxScan: int = DEFAULT_MAX_SCAN,
        threads: int = DEFAULT_LIST_THREADS,
        reactor=None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.root = root
        self.maxEntries = maxEntries
        self.maxScan = max(maxScan, maxEntries)
        self.reactor = reactor
        self.listFunction: Callable[..., str] = listing.listRequest
        self.pool = threadpool.ThreadPool(minthreads=0, maxthreads=threads, name="cmdserv-ls")
        self._stopping = threading.Event()

    def startService(self) -> None:
        service.Service.startService(self)
        self._stopping.clear()
        self.pool.start()

    def stopService(self):
        service.Service.stopService(self)
        self._stopping.set()
        # Workers poll the stop flag while reading, so this join is short.
        self.pool.stop()

    def list(self, request: str) -> tuple[defer.Deferred, Callable[[], None]]:
        """
        Start listing C{request} (a path relative to the root, C{""} for
        the root itself).

        @return: C{(deferred, cancel)}: C{deferred} fires with the reply
            line, or fails with L{listing.Refused} or L{listing.Cancelled};
            C{cancel()} makes a queued or running listing stop early.
        """
        if self._stopping.is_set():
            # The pool is stopped or stopping: nothing would run this.
            return defer.fail(listing.Cancelled()), lambda: None
        cancelledEvent = threading.Event()
        stopping = self._stopping

        def cancelled() -> bool:
            return cancelledEvent.is_set() or stopping.is_set()

        def job() -> str:
            return self.listFunction(self.root, request, self.maxEntries, self.maxScan, cancelled)

        d = threads.deferToThreadPool(self.reactor, self.pool, job)
        return d, cancelledEvent.set


# -- the protocol ---------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """
    One entry of the command table.

    @ivar usage: how C{help} shows it.
    @ivar method: the L{CommandProtocol} method answering it; it gets the
        argument text (C{""} when none was given).
    @ivar takesArgument: whether an argument is allowed; a command word
        followed by an argument it does not take is not that command (the
        line is echoed).
    """

    usage: str
    method: str
    takesArgument: bool = False


COMMANDS: dict[str, Command] = {
    "date": Command("date", "do_date"),
    "os": Command("os", "do_os"),
    "ls": Command("ls [DIR]", "do_ls", takesArgument=True),
    "ip": Command("ip", "do_ip"),
    "help": Command("help", "do_help"),
}


def helpLine() -> str:
    """
    The reply to C{help}: every command on one line.
    """
    names = ", ".join(command.usage for command in COMMANDS.values())
    return f"commands: {names}; anything else is echoed back with a timestamp"


def parseCommand(line: str) -> tuple[Command | None, str]:
    """
    Split a request into its command and argument.

    @return: C{(command, argument)}, or C{(None, "")} when the line is
        not a command (and is to be echoed).
    """
    words = _WORDS.split(line.strip(" \t"), 1)
    command = COMMANDS.get(words[0].lower())
    argument = words[1] if len(words) > 1 else ""
    if command is None or (argument and not command.takesArgument):
        return None, ""
    return command, argument


class CommandProtocol(LineProtocol):
    """
    Answers each request line with exactly one line, in request order.
    """

    factory: CommandFactory
    _cancelListing: Callable[[], None] | None = None

    def ctime(self) -> str:
        return time.ctime(self.clock.seconds())

    def lineReceived(self, line: str) -> None:
        command, argument = parseCommand(line)
        if command is None:
            self.sendLine(f"[{self.ctime()}] {line}")
        else:
            getattr(self, command.method)(argument)

    def do_date(self, argument: str) -> None:
        self.sendLine(self.ctime())

    def do_os(self, argument: str) -> None:
        self.sendLine(os.name)

    def do_ip(self, argument: str) -> None:
        peer = self.transport.getPeer()
        host = getattr(peer, "host", None)
        port = getattr(peer, "port", None)
        if host is None or port is None:
            self.sendLine("error: ip: this connection has no IP address")
        else:
            self.sendLine(f"{host} {port}")

    def do_help(self, argument: str) -> None:
        self.sendLine(helpLine())

    def do_ls(self, argument: str) -> None:
        """
        Hold input, list off the reactor thread, answer, release.
        """
        self.holdInput("ls")
        d, self._cancelListing = self.factory.lister.list(argument)
        d.addErrback(self._listingFailed)
        d.addCallback(self._listed)

    def _listingFailed(self, failure) -> str | None:
        if failure.check(listing.Refused):
            return REFUSAL
        if failure.check(listing.Cancelled):
            return None
        log.failure("ls failed", failure)
        return FAILURE

    def _listed(self, line: str | None) -> None:
        self._cancelListing = None
        if line is None or self.disconnecting:
            # The client is gone (or being closed): drop the result.
            return
        self.sendLine(line)
        self.releaseInput("ls")

    def connectionLost(self, reason=None) -> None:
        cancel, self._cancelListing = self._cancelListing, None
        if cancel is not None:
            cancel()
        super().connectionLost(reason)


class CommandFactory(LineFactory):
    """
    Builds L{CommandProtocol}s.

    @ivar lister: the L{ListingService} (or anything with its C{list}
        method) that answers C{ls}.
    """

    protocol = CommandProtocol
    noisy = False

    def __init__(self, lister, limits=None, clock=None) -> None:
        super().__init__(limits, clock)
        self.lister = lister


# -- twistd plugin ----------------------------------------------------------------


class Options(ServiceOptions):
    """
    C{twistd cmdserv} flags: the common line-service flags, and the served
    directory and listing bounds.
    """

    command = "cmdserv"
    synopsis = "[options]"
    longdesc = (
        "The command service: date, os, ls [DIR], ip and help; any other line is "
        "echoed back with a timestamp. ls shows the served directory to whoever can "
        "connect, so cmdserv listens on loopback only unless --port names an "
        "interface (tcp:21567:interface=0.0.0.0 for every IPv4 interface), and then "
        "logs a warning. A unix: socket is local too."
    )

    loopbackOnly = True
    portDefault = f"tcp:{DEFAULT_PORT}:interface=127.0.0.1"
    portHelp = (
        "Port number or endpoint description to listen on. Loopback only "
        "(127.0.0.1, ::1 for tcp6:) unless it names an interface, "
        "e.g. tcp:21567:interface=0.0.0.0 (logged as a warning), ssl:..., unix:/path."
    )

    optParameters = [
        [
            "root",
            None,
            None,
            "Directory served by ls (default: the working directory at start).",
        ],
        [
            "max-entries",
            None,
            str(DEFAULT_MAX_ENTRIES),
            'Most names in one ls reply; more are summed up as "... N more".',
        ],
        [
            "max-scan",
            None,
            str(DEFAULT_MAX_SCAN),
            "Most directory entries one ls reads; past it the count is "
            'shown as "... N+ more" (bounds the time a listing takes).',
        ],
        [
            "list-threads",
            None,
            str(DEFAULT_LIST_THREADS),
            "Threads reading directories at once; further ls requests wait their turn.",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["max-entries"] = integer("--max-entries", self["max-entries"], 1, 1_000_000)
        self["max-scan"] = integer("--max-scan", self["max-scan"], 1, 1_000_000_000)
        if self["max-scan"] < self["max-entries"]:
            raise usage.UsageError(
                f"--max-scan: must be at least --max-entries ({self['max-entries']}), "
                f"not {self['max-scan']}"
            )
        self["list-threads"] = integer("--list-threads", self["list-threads"], 1, 64)
        given = self["root"]
        path = given if given is not None else os.getcwd()
        try:
            self["root"] = listing.resolveRoot(path)
        except OSError as e:
            why = e.strerror or e.__class__.__name__
            raise usage.UsageError(f"--root: cannot serve {path!r}: {why}") from None


class CommandService(service.MultiService):
    """
    The listing pool and the listener.  On stop the children stop one
    after another, last added first: the listener stops listening and
    closes its connections (cancelling their listings) before the pool
    is stopped, so no request ever reaches a stopped pool.
    """

    def stopService(self):
        service.Service.stopService(self)
        d = defer.succeed(None)
        for child in reversed(list(self)):
            d.addCallback(lambda _, child=child: child.stopService())
            d.addErrback(lambda f, child=child: log.failure("stopping {child}", f, child=child))
        return d


def exposureWarning(root: str) -> str:
    """
    Why cmdserv should stay on loopback, for the warning logged when it
    does not (L{ListenService}'s C{localOnly}).
    """
    return (
        f"anyone who can connect can list {root} (dotfiles included); "
        "name interface=127.0.0.1 in --port to keep it on this host"
    )


def makeService(options) -> service.MultiService:
    """
    The listing pool and the listener, under one L{CommandService}; a
    stop on SIGTERM exits with status 0 (L{ExitCleanly}).
    """
    from twisted.internet import reactor

    raiseFileLimit()
    top = CommandService()
    # Stopped last: a SIGTERM stop that got this far exits 0.
    ExitCleanly(reactor).setServiceParent(top)
    lister = ListingService(
        options["root"],
        maxEntries=options["max-entries"],
        maxScan=options["max-scan"],
        threads=options["list-threads"],
        reactor=reactor,
    )
    lister.setServiceParent(top)
    factory = CommandFactory(lister, options["limits"], reactor)
    root = os.fsdecode(options["root"])
    ListenService(
        options["port"],
        factory,
        "cmdserv",
        reactor,
        notice=SHUTDOWN_NOTICE,
        localOnly=exposureWarning(root),
    ).setServiceParent(top)
    if options["metrics"] is not None:
        from chatsvc.metrics import serveMetrics  # prometheus_client only when asked for

        serveMetrics(options["metrics"], {"cmdserv": factory}, reactor).setServiceParent(top)
    log.info("cmdserv serving {root}", root=root)
    return top
