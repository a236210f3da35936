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

import datetime
import os
import signal
import sys
from dataclasses import dataclass

from twisted.internet import address, defer, error, interfaces, protocol
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from zope.interface import implementer

import chatsvc
from chatsvc.console import PROGRAM, Colours, openConsole
from chatsvc.net.text import decodeLine

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
        "standard error.  Ctrl-D (end of input) leaves; in chat mode /quit does too."
    )

    #: Shown after the options as it is (C{longdesc} is reflowed).  Each
    #: status is checked by a test in C{tests/test_client_process.py}.
    epilog = (
        "Exit status:\n"
        f"  {EXIT_OK:<4} clean end: /quit, end of input answered by the server, or the\n"
        "       reader of standard output went away; also --help and --version\n"
        f"  {EXIT_FAILED:<4} cannot connect (refused, host not found, timed out, TLS\n"
        "       handshake or certificate refused), or the server closed or lost\n"
        "       the connection unasked\n"
        f"  {EXIT_USAGE:<4} bad options\n"
        f"  {EXIT_REFUSED:<4} login refused: name taken or invalid with no terminal to ask\n"
        "       again (or Ctrl-D at the name prompt), or the server is full\n"
        f"  {EXIT_INTERRUPTED:<4} interrupted (Ctrl-C, SIGINT); in chat mode /quit is sent first\n"
        f"  {EXIT_TERMINATED:<4} terminated (SIGTERM); in chat mode /quit is sent first\n"
    )

    optParameters = [
        ["host", None, None, "Host name or address of the server (default: localhost)."],
        [
            "port",
            "p",
            str(DEFAULT_PORT),
            "Port number, or a Twisted client endpoint description that names the "
            "host itself (tcp:HOST:PORT, tls:HOST:PORT[:trustRoots=DIR], unix:PATH).",
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

    def getUsage(self, width: int | None = None) -> str:
        return super().getUsage(width) + "\n" + self.epilog

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

    @property
    def serverName(self) -> str:
        """
        The host name the server's TLS certificate must carry.
        """
        if self.description is None:
            return self.host
        kind, args, kwargs = splitDescription(self.description)
        return kwargs.get("host", args[0] if args else self.description)

    def __str__(self) -> str:
        """
        Where, as messages say it: C{HOST:PORT}, C{unix socket PATH}, or
        the description itself for any other kind of endpoint.
        """
        if self.description is None:
            return hostPort(self.host, self.port)
        kind, args, kwargs = splitDescription(self.description)
        if kind in ("tcp", "tls", "ssl"):
            values = iter(args)
            host = kwargs.get("host") or next(values, "")
            port = kwargs.get("port") or next(values, "")
            if host and port:
                return hostPort(host, port)
        if kind == "unix":
            path = kwargs.get("path") or (args[0] if args else "")
            if path:
                return f"unix socket {path}"
        return self.description


def hostPort(host: str, port) -> str:
    """
    C{HOST:PORT}, with an IPv6 address in brackets so the port stands out.
    """
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def splitDescription(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    An endpoint description's kind, positional and keyword arguments,
    split as Twisted splits them (C{:} between fields, C{=} after a key,
    a backslash escaping the next character), so that messages can name
    the host and port the user meant.
    """
    fields: list[tuple[str | None, str]] = []
    key: str | None = None
    text = ""
    escaped = False
    for char in description:
        if escaped:
            text += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append((key, text))
            key, text = None, ""
        elif char == "=" and key is None:
            key, text = text, ""
        else:
            text += char
    fields.append((key, text))
    kind = fields[0][1].lower()
    args = [value for name, value in fields[1:] if name is None]
    kwargs = {name: value for name, value in fields[1:] if name is not None}
    return kind, args, kwargs


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
    if reason.check(error.ConnectionAborted):
        return "aborted"
    if reason.check(error.ConnectionLost):
        # Twisted's own words ("... lost in a non-clean fashion") say less.
        detail = " ".join(str(arg) for arg in value.args).strip()
        return detail.splitlines()[0].lower() if detail else "connection reset"
    if reason.check(error.ConnectError):
        # Its str() is "An error occurred while connecting: 2: ...".
        if isinstance(value.osError, int):
            return os.strerror(value.osError).lower()
        text = " ".join(str(arg) for arg in value.args).strip() or "cannot connect"
        return text.splitlines()[0]
    text = str(value).strip() or value.__class__.__name__
    return text.splitlines()[0]


#: What OpenSSL says when the bytes that came back are not TLS at all.
NOT_TLS = frozenset(
    {
        "wrong version number",
        "packet length too long",
        "record layer failure",
        "unknown protocol",
        "http request",
        "record too long",
    }
)


def opensslReasons(reason) -> list[str]:
    """
    The reason strings of an C{OpenSSL.SSL.Error} (none for anything
    else): its argument is a list of C{(library, function, reason)}.
    """
    from OpenSSL import SSL

    if not reason.check(SSL.Error) or not reason.value.args:
        return []
    entries = reason.value.args[0]
    if not isinstance(entries, list):
        return [str(entries)]
    return [str(entry[-1]) for entry in entries if isinstance(entry, tuple) and entry]


def isCertificateFailure(reason) -> bool:
    """
    Whether a TLS handshake failed because the server's certificate was
    refused: its chain is not trusted, or it is for another host.
    """
    if "certificate verify failed" in opensslReasons(reason):
        return True
    from service_identity import CertificateError, VerificationError

    return reason.check(VerificationError, CertificateError) is not None


def peerChain(transport) -> list:
    """
    The certificates the server presented (C{cryptography} objects, the
    server's own first); none if they cannot be had.
    """
    try:
        handle = transport.getHandle()
        try:
            return list(handle.get_peer_cert_chain(as_cryptography=True) or [])
        except TypeError:  # pyOpenSSL before 24.3 has only its own X509
            return [cert.to_cryptography() for cert in handle.get_peer_cert_chain() or []]
    except Exception:  # no handle, no chain: say less, never fail here
        return []


def certificateNames(cert) -> list[str]:
    """
    The host names and addresses a certificate is for.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return san.get_values_for_type(x509.DNSName) + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def certificateProblem(reason, chain: list, now: datetime.datetime) -> str:
    """
    Why the server's certificate was refused, in a few words.

    OpenSSL's own verdict has no public accessor in pyOpenSSL, so this
    reads the certificate itself: out of date, for another host (Twisted
    reports that as a C{service_identity} error), self-signed, or from an
    issuer that is not trusted.
    """
    if not chain:
        return "no certificate"
    leaf = chain[0]
    if now > leaf.not_valid_after_utc:
        return f"expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
    if now < leaf.not_valid_before_utc:
        return f"not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"
    if not opensslReasons(reason):
        names = certificateNames(leaf)
        return f"it is for {', '.join(names)}" if names else "it names no host"
    if len(chain) == 1 and leaf.issuer == leaf.subject:
        return "self-signed certificate"
    return f"issuer not trusted: {chain[-1].issuer.rfc4514_string()}"


def describeTLSFailure(reason, transport, target: Target) -> str:
    """
    A TLS handshake that failed, in one line: the certificate was
    refused, the server does not speak TLS, or it went away.
    """
    if isCertificateFailure(reason):
        now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 (3.10)
        problem = certificateProblem(reason, peerChain(transport), now)
        return (
            f"TLS: the server's certificate for {target.serverName} could not be "
            f"verified ({problem})"
        )
    reasons = opensslReasons(reason)
    if NOT_TLS.intersection(reasons):
        return f"TLS handshake failed: the server at {target} does not speak TLS"
    if "unexpected eof while reading" in reasons or reason.check(
        error.ConnectionDone, error.ConnectionLost
    ):
        return f"TLS handshake failed: the server at {target} closed the connection"
    why = ", ".join(reasons) if reasons else describeFailure(reason)
    return f"TLS handshake failed with {target}: {why}"


def describePeer(transport, target: Target) -> str:
    """
    The address a connection reached, for C{connected to ...}: the
    address the host name resolved to, or the socket's path.
    """
    peer = transport.getPeer()
    if isinstance(peer, (address.IPv4Address, address.IPv6Address)):
        return hostPort(peer.host, peer.port)
    if isinstance(peer, address.UNIXAddress) and peer.name:
        return f"unix socket {os.fsdecode(peer.name)}"
    return str(target)


@implementer(interfaces.IHandshakeListener)
class ServerConnection(LineReceiver):
    """
    The socket side: LF-terminated lines (a CR before the LF dropped) go
    to the session as bytes; at the end, so does whatever was left of an
    unfinished line.

    The session hears of the socket as soon as it is made, but counts
    the connection as up only once a TLS handshake is done: a
    certificate the client refuses is then a failed connection, not a
    server that hung up.

    @ivar closed: fires when the connection is gone.
    """

    delimiter = b"\n"
    #: A line longer than this is shown in pieces rather than buffered on.
    MAX_LENGTH = 1024 * 1024

    def __init__(self, session: Session) -> None:
        self.session = session
        self.closed: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.session.socketMade(self)
        if not isTLS(self.transport):
            self.session.connected(self)

    def handshakeCompleted(self) -> None:
        # Twisted before 25 checks the certificate's name as the handshake
        # ends and still reports it completed after refusing it (it has
        # begun aborting the connection by then): the refusal arrives at
        # connectionLost, so this is not a connection that came up.
        if getattr(self.transport, "disconnecting", False):
            return
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


def isTLS(transport) -> bool:
    """
    Whether C{transport} is Twisted's TLS wrapper (the only transport
    that negotiates).
    """
    return interfaces.INegotiated.providedBy(transport)


def canHalfClose(transport) -> bool:
    """
    Whether C{transport} can shut down its sending side alone.  TLS
    cannot (its wrapper merely forwards to the TCP connection, which
    would cut the TLS stream short), so it claims to but is excluded.
    """
    if isTLS(transport):
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

    States: C{connecting} (until the socket is made and, for TLS, its
    handshake done); C{login} (chat: the login line is sent, its
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
        self._handshakeTimer = None
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

    def socketMade(self, connection: ServerConnection) -> None:
        """
        The socket is connected; a TLS handshake gets as long as a
        connect does.
        """
        self._connecting = None
        if self.state == DONE:
            connection.transport.abortConnection()
            return
        self.connection = connection
        if isTLS(connection.transport):
            self._handshakeTimer = self.clock.callLater(CONNECT_TIMEOUT, self._handshakeTimedOut)

    def connected(self, connection: ServerConnection) -> None:
        """
        The connection is up (TLS: the server's certificate accepted):
        log in, or say where it went and start sending.
        """
        self._cancelHandshakeTimer()
        if self.state == DONE:
            return
        transport = connection.transport
        self.console.attach(transport)
        if self.chat:
            self.state = LOGIN
            self._login(self._loginLine(self.name))
        else:
            secure = " (TLS)" if isTLS(transport) else ""
            where = describePeer(transport, self.target)
            self.console.showStatus(f"connected to {where}{secure}", "info")
            self._ready()

    def _handshakeTimedOut(self) -> None:
        self._handshakeTimer = None
        self.console.showStatus(
            f"TLS handshake failed: no answer from the server at {self.target} "
            f"in {CONNECT_TIMEOUT} seconds",
            "error",
        )
        self._finish(EXIT_FAILED)

    def _cancelHandshakeTimer(self) -> None:
        if self._handshakeTimer is not None and self._handshakeTimer.active():
            self._handshakeTimer.cancel()
        self._handshakeTimer = None

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
        transport = None if self.connection is None else self.connection.transport
        self._cancelHandshakeTimer()
        self.connection = None
        if self.console is not None:
            self.console.detach()
        if partial:
            self.console.showLine(decodeLine(partial))
        if self.state == DONE:
            return
        if self.state == CONNECTING:
            self.console.showStatus(describeTLSFailure(reason, transport, self.target), "error")
            self._finish(EXIT_FAILED)
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
        self._cancelHandshakeTimer()
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
