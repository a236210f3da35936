"""
C{chatsvc-client}: a full-duplex line client for the chatsvc services.

One C{LineReceiver} reads the keyboard (L{chatsvc.console}), another
(L{ServerConnection}) reads the socket, and L{Session} ties them
together, so lines from the server appear while the user types.

With C{--username} it logs in to the chat service (C{NAME [ROOM]}) and
reports the answer; without, it is a plain line client for tsserv and
cmdserv: every line typed is sent, every line received is shown.  Server
lines go to standard output, the client's own messages to standard error.

Exit status: 0 after a clean end (C{/quit}, end of input answered by the
server), 1 when the connection failed or the server went away unasked,
2 for bad options, 3 when the login was refused (name taken or invalid,
server full) and not retried, 130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

from twisted.internet import defer, error, interfaces, protocol
from twisted.protocols.basic import LineReceiver
from twisted.python import usage

import chatsvc
from chatsvc.console import PROGRAM, Colours, openConsole
from chatsvc.text import decodeLine

DEFAULT_PORT = 21567

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM

#: Seconds to wait for a connection to be made.
CONNECT_TIMEOUT = 15
#: Seconds the server gets to close the connection after C{/quit}, and
#: the socket gets to flush when the client leaves on its own.
CLOSE_GRACE = 10.0


class Options(usage.Options):
    """
    The command line.  A bad flag is one line on standard error and
    exit status 2 (L{parseOptions}).
    """

    synopsis = f"Usage: {PROGRAM} [options]"

    longdesc = (
        "Connect to a chatsvc service and talk to it line by line: what you type is "
        "sent, what the server sends is shown as it arrives.  With --username it logs "
        "in to the chat service; without, it is a plain line client for tsserv and "
        "cmdserv.  Server lines go to standard output, the client's own messages to "
        "standard error.  Ctrl-D (end of input) leaves; in chat mode /quit does too.  "
        "Exit status: 0 clean end, 1 connection failed or closed by the server, "
        "2 bad options, 3 login refused, 130 interrupted."
    )

    optParameters = [
        ["host", None, None, "Host name or address of the server (default: localhost)."],
        [
            "port",
            "p",
            str(DEFAULT_PORT),
            "Port number, or a Twisted client endpoint description that names the "
            "host itself (tcp:HOST:PORT, tls:HOST:PORT, unix:PATH).",
        ],
        [
            "username",
            "u",
            None,
            "Log in to the chat service with this name; without it the client "
            "is a plain line client.",
        ],
        ["room", "r", None, "Room to join at login (needs --username; default: lobby)."],
        [
            "color",
            None,
            "auto",
            "Colour: auto (on a terminal, unless NO_COLOR is set), always or never.",
        ],
    ]

    def opt_version(self) -> None:
        """
        Show the version and exit.
        """
        sys.stdout.write(f"{PROGRAM} {chatsvc.__version__}\n")
        sys.exit(0)

    def parseArgs(self, *args: str) -> None:
        if args:
            raise usage.UsageError(f"unexpected argument {args[0]!r}")

    def postOptions(self) -> None:
        self["color"] = self["color"].strip().lower()
        if self["color"] not in ("auto", "always", "never"):
            raise usage.UsageError("--color: expected auto, always or never")
        for flag in ("username", "room"):
            value = self[flag]
            if value is not None and (not value.strip() or len(value.split()) != 1):
                raise usage.UsageError(f"--{flag}: must be one word, not {value!r}")
        if self["room"] is not None and self["username"] is None:
            raise usage.UsageError("--room: needs --username (the room is joined at login)")
        self["target"] = Target.parse(self["host"], self["port"])


def parseOptions(argv: list[str]) -> Options:
    """
    Parse C{argv}; on an error write one line to standard error and exit
    with status 2.
    """
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        message = str(e)
        prefix = "Parameter type enforcement failed: "
        if message.startswith(prefix):
            message = message[len(prefix) :]
        sys.stderr.write(f"{PROGRAM}: error: {message} (see {PROGRAM} --help)\n")
        sys.exit(EXIT_USAGE)
    return options


@dataclass(frozen=True)
class Target:
    """
    Where to connect: a host and port, or an endpoint description.
    """

    host: str = "localhost"
    port: int | None = DEFAULT_PORT
    description: str | None = None

    @classmethod
    def parse(cls, host: str | None, port: str) -> Target:
        port = port.strip()
        if port.isdigit():
            number = int(port)
            if not 1 <= number <= 65535:
                raise usage.UsageError(f"--port: {port} is out of range 1-65535")
            host = "localhost" if host is None else host.strip()
            if not host:
                raise usage.UsageError("--host: must not be empty")
            return cls(host=host, port=number)
        if host is not None:
            raise usage.UsageError(
                "--host: not used with an endpoint description; put the host in --port"
            )
        target = cls(host="", port=None, description=port)
        from twisted.internet import reactor

        try:
            target.endpoint(reactor)
        except Exception as e:  # any parse or certificate error is the user's
            why = (str(e).strip() or e.__class__.__name__).splitlines()[0]
            raise usage.UsageError(f"--port: cannot use {port!r}: {why}") from e
        return target

    def endpoint(self, reactor):
        """
        The client endpoint to connect with.
        """
        from twisted.internet import endpoints

        if self.description is not None:
            return endpoints.clientFromString(reactor, self.description)
        return endpoints.HostnameEndpoint(reactor, self.host, self.port, timeout=CONNECT_TIMEOUT)

    def __str__(self) -> str:
        if self.description is not None:
            return self.description
        return f"{self.host} port {self.port}"


def describeFailure(reason) -> str:
    """
    A connection failure in a few words, for one line.
    """
    if reason.check(error.ConnectionRefusedError):
        return "connection refused"
    if reason.check(error.DNSLookupError, error.UnknownHostError):
        return "host not found"
    if reason.check(error.TimeoutError, defer.TimeoutError):
        return "timed out"
    if reason.check(error.NoRouteError):
        return "no route to host"
    value = reason.value
    text = str(value).strip() or value.__class__.__name__
    return text.splitlines()[0]


class ServerConnection(LineReceiver):
    """
    The socket side: LF-terminated lines (a CR before the LF dropped) go
    to the session as bytes; at the end, so does whatever was left of an
    unfinished line.

    @ivar closed: fires when the connection is gone.
    """

    delimiter = b"\n"
    #: A line longer than this is shown in pieces rather than buffered on.
    MAX_LENGTH = 1024 * 1024

    def __init__(self, session: Session) -> None:
        self.session = session
        self.closed: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.session.connected(self)

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        self.session.serverLine(line)

    def lineLengthExceeded(self, data: bytes) -> None:
        for piece in data.split(self.delimiter):
            self.lineReceived(piece)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        partial = self.clearLineBuffer()
        if partial.endswith(b"\r"):
            partial = partial[:-1]
        self.session.serverClosed(reason, partial)
        self.closed.callback(None)

    def whenClosed(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        if self.closed.called:
            d.callback(None)
        else:
            self.closed.addBoth(lambda r: (d.callback(None), r)[1])
        return d


def canHalfClose(transport) -> bool:
    """
    Whether C{transport} can shut down its sending side alone.  TLS
    cannot (its wrapper merely forwards to the TCP connection, which
    would cut the TLS stream short), so it claims to but is excluded.
    """
    if interfaces.INegotiated.providedBy(transport):
        return False
    return interfaces.IHalfCloseableDescriptor.providedBy(transport)


def isQuit(line: bytes) -> bool:
    """
    Whether a typed chat line is C{/quit} (with or without a reason).
    """
    word = line.strip().split(None, 1)
    return bool(word) and word[0].lower() == b"/quit"


CONNECTING = "connecting"
LOGIN = "login"
NAMING = "naming"
READY = "ready"
DONE = "done"


class Session:
    """
    The client's logic, between a console and the server connection.

    States: C{connecting}; C{login} (chat: the login line is sent, its
    answer awaited); C{naming} (chat on a terminal: the name was refused,
    the user types another); C{ready}; C{done}.  Lines typed before
    C{ready} wait in order and go out once it is reached.

    The session remembers whether it asked for the connection to end
    (C{/quit}, end of input, leaving): a close it asked for is a clean
    end, any other a failure.

    @ivar finished: fires with the exit status when the session is over
        and its output written.
    """

    def __init__(self, target: Target, clock, username: str | None = None, room=None) -> None:
        self.target = target
        self.clock = clock
        self.chat = username is not None
        self.name = username
        self.room = room
        self.console = None
        self.connection: ServerConnection | None = None
        self.state = CONNECTING
        self.exitCode: int | None = None
        self.finished: defer.Deferred = defer.Deferred()
        self._pending: list[tuple[bytes, bool]] = []
        self._inputEnded = False
        self._leaving = False
        self._awaitReplies = False
        self._sent = 0
        self._replies = 0
        self._timer = None
        self._connecting: defer.Deferred | None = None

    def start(self, console, endpoint) -> None:
        """
        Use C{console} for the user's side, connect with C{endpoint}.
        """
        self.console = console
        factory = protocol.Factory.forProtocol(lambda: ServerConnection(self))
        self._connecting = endpoint.connect(factory)
        self._connecting.addErrback(self.connectionFailed)

    # The server connection

    def connected(self, connection: ServerConnection) -> None:
        self._connecting = None
        if self.state == DONE:
            connection.transport.abortConnection()
            return
        self.connection = connection
        self.console.attach(connection.transport)
        if self.chat:
            self.state = LOGIN
            self._login(self._loginLine(self.name))
        else:
            self._ready()

    def connectionFailed(self, reason) -> None:
        self._connecting = None
        if self.state == DONE:
            return
        self.console.showStatus(
            f"cannot connect to {self.target}: {describeFailure(reason)}", "error"
        )
        self._finish(EXIT_FAILED)

    def serverLine(self, raw: bytes) -> None:
        text = decodeLine(raw)
        if self.state == LOGIN:
            self._loginReply(text)
            return
        self._replies += 1
        self.console.showLine(text)
        if self._awaitReplies:
            self._closeIfAnswered()

    def serverClosed(self, reason, partial: bytes) -> None:
        self.connection = None
        if self.console is not None:
            self.console.detach()
        if partial:
            self.console.showLine(decodeLine(partial))
        if self.state == DONE:
            return
        if partial:
            self.console.showStatus(
                "the server closed the connection in the middle of a line", "error"
            )
        if self.state in (LOGIN, NAMING):
            if not partial:
                self.console.showStatus("the server closed the connection before login", "error")
            self._finish(EXIT_FAILED)
            return
        if self._leaving:
            self._finish(EXIT_FAILED if partial else EXIT_OK)
            return
        if not partial:
            if reason.check(error.ConnectionDone):
                self.console.showStatus("the server closed the connection", "error")
            else:
                self.console.showStatus(
                    f"lost the connection to the server: {describeFailure(reason)}", "error"
                )
        self._finish(EXIT_FAILED)

    # Logging in

    def _loginLine(self, name: str) -> bytes:
        line = name if self.room is None else f"{name} {self.room}"
        return line.encode("utf-8")

    def _login(self, line: bytes) -> None:
        self.connection.transport.write(line + b"\n")

    def _loginReply(self, text: str) -> None:
        """
        The first line after a login is its answer: say which it was (the
        server's text explains), then go on, ask again or give up.
        """
        kind, _, rest = text.partition(":")
        rest = rest.strip()
        if kind == "success":
            self.console.showStatus(f"login success: {rest}", "ok")
            self._ready()
        elif kind in ("reuse", "error"):
            self.console.showStatus(f"login {kind}: {rest}", "error")
            self._refused()
        elif kind == "full":
            self.console.showStatus(f"login full: {rest}", "error")
            self._finish(EXIT_REFUSED)
        else:
            self.console.showStatus(
                "unexpected answer to the login (is this the chat service?)", "warn"
            )
            self.console.showLine(text)
            self._ready()

    def _refused(self) -> None:
        """
        On a terminal, ask for another name; otherwise give up.
        """
        self._pending.clear()
        if self.console.interactive and not self._inputEnded:
            self.state = NAMING
            self.console.showStatus("type another name (Ctrl-D leaves)", "info")
            self.console.setPrompt("name: ")
        else:
            self.console.showStatus("not logged in (no terminal to ask for another name)", "error")
            self._finish(EXIT_REFUSED)

    def _rename(self, line: bytes) -> None:
        words = line.decode("utf-8", "replace").split()
        if not words:
            return
        self.name = words[0]
        self.state = LOGIN
        self.console.setPrompt("")
        if len(words) > 1:
            self._login(line.strip())
        else:
            self._login(self._loginLine(self.name))

    def _ready(self) -> None:
        self.state = READY
        self.console.setPrompt("> ")
        pending, self._pending = self._pending, []
        for data, isLine in pending:
            self._send(data, isLine)
        if self._inputEnded:
            self._endOfInput()
        elif not self._leaving:
            self.console.resumeInput("start")

    # The user

    def lineTyped(self, line: bytes) -> None:
        if self.state in (CONNECTING, LOGIN):
            self._pending.append((line, True))
        elif self.state == NAMING:
            self._rename(line)
        elif self.state == READY and not self._leaving:
            self._send(line, True)

    def dataTyped(self, data: bytes) -> None:
        if self.state in (CONNECTING, LOGIN):
            self._pending.append((data, False))
        elif self.state == READY and not self._leaving:
            self._send(data, False)

    def inputEnded(self) -> None:
        if self._inputEnded or self.state == DONE:
            return
        self._inputEnded = True
        if self.state == NAMING:
            self._finish(EXIT_REFUSED)
        elif self.state == READY:
            self._endOfInput()

    def interrupted(self, code: int = EXIT_INTERRUPTED) -> None:
        if self.state == DONE:
            return
        if self.chat and self.state == READY and not self._leaving:
            self._send(b"/quit", True)
        self._finish(code)

    def outputLost(self) -> None:
        if self.chat and self.state == READY and not self._leaving:
            self._send(b"/quit", True)
        self._finish(EXIT_OK)

    # Sending and leaving

    def _send(self, data: bytes, isLine: bool) -> None:
        if self.connection is None or self._leaving:
            return
        if isLine:
            self.connection.transport.write(data + b"\n")
            self._sent += 1
            if self.chat and isQuit(data):
                self._leave()
        else:
            self.connection.transport.write(data)

    def _leave(self) -> None:
        """
        C{/quit} was sent: the server will close; wait, but not forever.
        """
        self._leaving = True
        self.console.pauseInput("leaving")
        self._timer = self.clock.callLater(CLOSE_GRACE, self._closeNow)

    def _endOfInput(self) -> None:
        """
        Chat: leave with C{/quit}.  Plain: half-close, so the server
        answers what it has and then closes; where the transport cannot
        half-close (TLS), close once every line sent has had its reply.
        """
        if self._leaving or self.connection is None:
            return
        if self.chat:
            self._send(b"/quit", True)
            return
        self._leaving = True
        transport = self.connection.transport
        if canHalfClose(transport):
            transport.loseWriteConnection()
        else:
            self._awaitReplies = True
            self._closeIfAnswered()

    def _closeIfAnswered(self) -> None:
        if self._replies >= self._sent and self.connection is not None:
            self._close()

    def _close(self) -> None:
        """
        Close the connection once what was written has gone out.  The
        console lets go of it first: TLS does not close while a producer
        is registered with it.
        """
        self.console.detach()
        self.connection.transport.loseConnection()

    def _closeNow(self) -> None:
        self._timer = None
        if self.connection is not None:
            self.connection.transport.abortConnection()

    def _finish(self, code: int) -> None:
        """
        End the session with exit status C{code}: close the connection
        (letting what was written go out), then the console.
        """
        if self.state == DONE:
            return
        self.state = DONE
        self.exitCode = code
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._connecting is not None:
            self._connecting.cancel()
        self.console.pauseInput("done")
        if self.connection is not None:
            closed = self.connection.whenClosed()
            transport = self.connection.transport
            self._close()
            timer = self.clock.callLater(CLOSE_GRACE, transport.abortConnection)
            closed.addBoth(lambda _: timer.active() and timer.cancel())
        else:
            closed = defer.succeed(None)
        closed.addBoth(lambda _: self.console.close())
        closed.addBoth(lambda _: self.finished.callback(code))


class Terminal:
    """
    The controlling terminal while the terminal console runs: raw mode
    in, the user's settings back out (also around Ctrl-Z).

    @ivar statusOnTerminal: standard error is the same terminal, so the
        client's messages are drawn by the console, above the input line.
    """

    def __init__(self, fd: int = 0) -> None:
        import termios

        self.fd = fd
        self._saved = termios.tcgetattr(fd)
        self.statusOnTerminal = _sameTerminal(1, 2)

    @staticmethod
    def wanted(environ=None) -> bool:
        """
        Whether to use the terminal console: standard input and output are
        terminals, and the terminal is not a dumb one.
        """
        environ = os.environ if environ is None else environ
        if environ.get("TERM") == "dumb":
            return False
        try:
            return os.isatty(0) and os.isatty(1)
        except OSError:
            return False

    def enter(self) -> None:
        import tty

        tty.setraw(self.fd)

    def restore(self) -> None:
        import termios

        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        except (OSError, termios.error):
            pass

    def size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(1)
        except OSError:
            return 80, 24
        return size.columns or 80, size.lines or 24

    def suspend(self) -> None:
        """
        Ctrl-Z: give the shell back its terminal as it was, stop, and
        take it again when continued.
        """
        flags = _saveFlags()
        self.restore()
        _restoreFlags(flags, {fd: flag & ~os.O_NONBLOCK for fd, flag in flags.items()})
        os.kill(os.getpid(), signal.SIGTSTP)
        _restoreFlags(flags)
        self.enter()


def _sameTerminal(a: int, b: int) -> bool:
    try:
        if not (os.isatty(a) and os.isatty(b)):
            return False
        return os.fstat(a).st_rdev == os.fstat(b).st_rdev
    except OSError:
        return False


def _saveFlags() -> dict[int, int]:
    import fcntl

    flags = {}
    for fd in (0, 1, 2):
        try:
            flags[fd] = fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            pass
    return flags


def _restoreFlags(saved: dict[int, int], override: dict[int, int] | None = None) -> None:
    """
    Put the file status flags back: C{StandardIO} leaves standard input
    and output non-blocking, which would break the shell or the next
    program sharing them.
    """
    import fcntl

    for fd, flag in (override or saved).items():
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flag)
        except OSError:
            pass


def run(reactor, options: Options) -> int:
    """
    Run a session on the real standard input and output; return its exit
    status.
    """
    flags = _saveFlags()
    terminal = Terminal() if Terminal.wanted() else None
    session = Session(options["target"], reactor, options["username"], options["room"])
    colours = Colours.decide(options["color"])
    handlers = {}
    try:
        if terminal is not None:
            terminal.enter()
        console = openConsole(reactor, session, colours, terminal)

        def onSignal(number, frame):
            code = EXIT_TERMINATED if number == signal.SIGTERM else EXIT_INTERRUPTED
            reactor.callFromThread(session.interrupted, code)

        for number in (signal.SIGINT, signal.SIGTERM):
            handlers[number] = signal.signal(number, onSignal)
        if terminal is not None and hasattr(signal, "SIGWINCH"):

            def onResize(number, frame):
                reactor.callFromThread(lambda: console.terminalSize(*terminal.size()))

            handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, onResize)
        session.finished.addBoth(lambda _: reactor.stop())
        reactor.callWhenRunning(session.start, console, options["target"].endpoint(reactor))
        reactor.run(installSignalHandlers=False)
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        if terminal is not None:
            terminal.restore()
        _restoreFlags(flags)
    return EXIT_INTERRUPTED if session.exitCode is None else session.exitCode


def main(argv: list[str] | None = None) -> None:
    """
    The C{chatsvc-client} console script.
    """
    options = parseOptions(sys.argv[1:] if argv is None else argv)
    from twisted.internet import reactor

    sys.exit(run(reactor, options))


if __name__ == "__main__":
    main()
