"""
Command-line options shared by the chatsvc twistd plugins.

twistd answers a bad flag by printing its whole usage text and then the
error; L{ServiceOptions} answers with one line naming the flag and what is
wrong, and exits with status 2.  Values are checked in C{postOptions} by
the small parsers below, each of which names its flag in its error.
"""

from __future__ import annotations

import sys

from twisted.python import usage

from chatsvc.net.lineproto import Limits
from chatsvc.net.oplog import useLogFormat

DEFAULT_PORT = 21567


def splitDescription(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    Split an endpoint description into its kind, positional arguments and
    keyword arguments, honouring backslash escapes as Twisted does
    (C{tcp6:21567:interface=\\:\\:1}).
    """
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in description:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    kind, args, kwargs = parts[0].lower(), [], {}
    for part in parts[1:]:
        name, equals, value = part.partition("=")
        if equals:
            kwargs[name] = value
        else:
            args.append(part)
    return kind, args, kwargs


#: Where Twisted's server endpoint parsers take C{interface} as a
#: positional argument (after the port): C{tcp:PORT:INTERFACE:BACKLOG},
#: C{tcp6:PORT:BACKLOG:INTERFACE}, C{ssl:PORT:KEY:CERT:METHOD:INTERFACE}.
_INTERFACE_POSITION = {"tcp": 1, "tcp6": 2, "ssl": 4}

#: The loopback interface a description of that kind gets when it names none.
_LOOPBACK = {"tcp": "127.0.0.1", "tcp6": "\\:\\:1", "ssl": "127.0.0.1"}


def namesInterface(description: str) -> bool:
    """
    Whether a C{tcp:}, C{tcp6:} or C{ssl:} description says which
    interface to bind, by keyword or by position.
    """
    kind, args, kwargs = splitDescription(description)
    position = _INTERFACE_POSITION.get(kind)
    return "interface" in kwargs or (position is not None and len(args) > position)


def portDescription(flag: str, value: str, loopback: bool = False) -> str:
    """
    Turn a C{--port}-style value into a server endpoint description.

    A bare number becomes C{tcp:N} (C{serverFromString} does not accept a
    bare number).  With C{loopback}, a C{tcp:}, C{tcp6:} or C{ssl:}
    description that names no interface binds loopback (C{127.0.0.1}, or
    C{::1} for C{tcp6:}), for a service that should not be reachable from
    the network unless the user says so.  The result is what the user
    asked for, and what error messages show; the listen backlog is added
    only when listening (L{chatsvc.net.listening.withBacklog}).
    """
    value = value.strip()
    if not value:
        raise usage.UsageError(f"{flag}: needs a port number or an endpoint description")
    if value.isdigit():
        port = int(value)
        if not 0 <= port <= 65535:
            raise usage.UsageError(f"{flag}: port {value} is out of range 0-65535")
        value = f"tcp:{port}"
    kind = splitDescription(value)[0]
    if loopback and kind in _LOOPBACK and not namesInterface(value):
        value += f":interface={_LOOPBACK[kind]}"
    _checkEndpoint(flag, value)
    return value


def _checkEndpoint(flag: str, description: str) -> None:
    """
    Parse C{description} now, so that a typo is a one-line error at start
    and not a traceback later.  Nothing listens yet.
    """
    from twisted.internet import endpoints, reactor

    try:
        endpoints.serverFromString(reactor, description)
    except Exception as e:  # any parse or certificate error is the user's
        raise usage.UsageError(f"{flag}: cannot use {description!r}: {_why(e)}") from e


def _why(e: Exception) -> str:
    text = str(e).strip() or e.__class__.__name__
    return text.splitlines()[0]


def integer(flag: str, value, minimum: int = 0, maximum: int | None = None) -> int:
    """
    Parse a whole number for C{flag} within C{minimum}..C{maximum}.
    """
    try:
        number = int(str(value).strip())
    except ValueError:
        raise usage.UsageError(f"{flag}: expected a whole number, not {value!r}") from None
    if number < minimum:
        raise usage.UsageError(f"{flag}: must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise usage.UsageError(f"{flag}: must be at most {maximum}, not {number}")
    return number


def seconds(flag: str, value, minimum: float = 0.0, what: str = "a number of seconds") -> float:
    """
    Parse a number of seconds (or, with C{what}, another finite number)
    for C{flag}.
    """
    try:
        number = float(str(value).strip())
    except ValueError:
        raise usage.UsageError(f"{flag}: expected {what}, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or number < minimum:
        raise usage.UsageError(f"{flag}: must be {what} >= {minimum:g}")
    return number


def versionLine(command: str) -> str:
    """
    What C{twistd SERVICE --version} prints: chatsvc's version first (an
    operator's bug report needs it; twistd's own C{--version} names only
    Twisted's), then Twisted's and Python's.
    """
    import platform

    import chatsvc
    import twisted

    return (
        f"twistd {command} (chatsvc) {chatsvc.__version__}, "
        f"Twisted {twisted.__version__}, Python {platform.python_version()}"
    )


class ServiceOptions(usage.Options):
    """
    Base of every chatsvc plugin's options: the common line-service
    flags, and one-line errors.

    @cvar command: the twistd subcommand, for messages.
    """

    command = "chatsvc"

    #: Whether a C{--port} that names no interface binds loopback only
    #: (L{portDescription}); C{portDefault} and C{portHelp} should say so.
    loopbackOnly = False

    #: The C{--port} default, as C{--help} shows it.
    portDefault = str(DEFAULT_PORT)

    #: The C{--port} help text.
    portHelp = (
        "Port number or endpoint description to listen on, on every interface "
        "unless it names one (e.g. 21567, tcp:21567:interface=127.0.0.1, ssl:..., unix:/path)."
    )

    optParameters = [
        ["port", "p", None, "(set from portDefault and portHelp)"],
        [
            "max-line",
            None,
            str(Limits.maxLine),
            "Longest accepted line in bytes; a longer line is refused with an error line.",
        ],
        ["max-clients", None, str(Limits.maxClients), "Most connections at once (0: no cap)."],
        [
            "max-per-address",
            None,
            str(Limits.maxPerAddress),
            "Most connections from one "
            "IPv4 address or IPv6 /64 (0: no cap). Loopback is exempt unless --limit-loopback.",
        ],
        [
            "send-queue",
            None,
            str(Limits.sendQueue),
            "Bytes of unsent output after which a client that does not read is disconnected.",
        ],
        [
            "idle-timeout",
            None,
            "0",
            "Seconds without a line before a client is disconnected (0: never).",
        ],
        [
            "log-format",
            None,
            "text",
            "Log as text, or as json: one JSON object per line (for log shippers), "
            "to twistd's --logfile (standard output with -n).",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics over HTTP (GET /metrics) on this port number or "
            "endpoint description, loopback only unless it names an interface (e.g. 9567). "
            "Default: off.",
        ],
    ]

    optFlags = [
        ["limit-loopback", None, "Apply --max-per-address to loopback clients too."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = self.defaults["port"] = self.portDefault
        self.docs["port"] = self.portHelp

    def opt_version(self) -> None:
        """
        Show chatsvc's version (and Twisted's and Python's) and exit.
        """
        sys.stdout.write(versionLine(self.command) + "\n")
        sys.stdout.flush()
        raise SystemExit(0)

    def parseOptions(self, options=None):
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            message = str(e)
            prefix = "Parameter type enforcement failed: "
            if message.startswith(prefix):
                message = message[len(prefix) :]
            sys.stderr.write(
                f"twistd {self.command}: error: {message} (see twistd {self.command} --help)\n"
            )
            raise SystemExit(2) from None

    def postOptions(self) -> None:
        self["port"] = portDescription("--port", self["port"], self.loopbackOnly)
        self["limits"] = Limits(
            maxLine=integer("--max-line", self["max-line"], 16, 1024 * 1024),
            maxClients=integer("--max-clients", self["max-clients"]),
            maxPerAddress=integer("--max-per-address", self["max-per-address"]),
            limitLoopback=bool(self["limit-loopback"]),
            sendQueue=integer("--send-queue", self["send-queue"], 1024),
            idleTimeout=seconds("--idle-timeout", self["idle-timeout"]),
        )
        self["log-format"] = useLogFormat(self, self["log-format"])
        if self["metrics"] is not None:
            self["metrics"] = portDescription("--metrics", self["metrics"], loopback=True)
