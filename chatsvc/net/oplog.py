"""
Operator logs: what every service says about its connections, and in
which format.

Each event an operator reads is one C{twisted.logger} event with an
C{event} field naming its kind, stable so that a log shipper can filter
on it (the message text may change, the field names do not):

  - C{connect} (C{peer}), C{disconnect} (C{peer});
  - C{refused} (C{peer}, C{reason}: C{full} or C{per-address});
  - C{cut} (C{peer}, C{reason}: C{too-slow}, C{idle-timeout},
    C{login-timeout}, C{flood}, C{wrong-protocol}; C{name} when known);
  - C{line-refused} (C{peer}, C{reason}: C{too-long}; the connection
    stays);
  - the chat's C{login} (C{peer}, C{name}, C{room}), C{rename} (C{peer},
    C{name}, C{old}) and C{quit} (C{peer}, C{name}, C{room}, C{reason}).

Nothing is logged per message or per delivery: a busy room would drown
the log, and the fan-out path must stay free of it.

C{--log-format json} (L{useLogFormat}) makes twistd write one JSON object
per line (L{jsonLine}) where it would have written text: the same
C{--logfile} (or standard output with C{-n}), rotated on SIGUSR1 as
twistd rotates its own.
"""

from __future__ import annotations

import io
import sys

from twisted.logger import FileLogObserver, eventAsJSON, formatEvent
from twisted.python import usage

#: The values of C{--log-format}.
LOG_FORMATS = ("text", "json")

#: Where the JSON observer writes: set from twistd's options by
#: L{useLogFormat}, read by L{jsonObserver} (which twistd calls without
#: arguments, as it calls any C{--logger} factory).
_destination: dict = {}


def peerName(address) -> str:
    """
    A peer address as the log shows it: C{host:port} (C{[host]:port} for
    IPv6), the socket path for a UNIX peer, else its C{repr}.  A string,
    so that it is the same in text and JSON.
    """
    host = getattr(address, "host", None)
    if host is not None:
        shown = f"[{host}]" if ":" in host else host
        return f"{shown}:{address.port}"
    name = getattr(address, "name", None)
    if name is not None:
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    if address is not None and type(address).__name__ == "UNIXAddress":
        return "unix"
    return repr(address)


def jsonLine(event: dict) -> str:
    """
    One event as one line of JSON: every field of the event (as
    C{eventAsJSON} keeps them), plus C{text}, the message as the text log
    would show it, so that a shipper needs no Twisted to read it.
    """
    fields = dict(event)
    fields["text"] = formatEvent(event)
    # eventAsJSON's output has no raw newline (JSON escapes them), so one
    # event is one line whatever its text.
    return eventAsJSON(fields) + "\n"


def jsonFileObserver(outFile: io.TextIOBase) -> FileLogObserver:
    """
    An observer writing L{jsonLine}s to C{outFile}.
    """
    return FileLogObserver(outFile, jsonLine)


def jsonObserver() -> FileLogObserver:
    """
    twistd's log observer under C{--log-format json}: the file twistd
    would have written its text log to (L{useLogFormat} noted it).
    """
    path = _destination.get("path")
    if path is None:
        return jsonFileObserver(sys.stdout)
    from twisted.python import logfile

    logFile = logfile.LogFile.fromFullPath(path)
    _rotateOnSIGUSR1(logFile)
    return jsonFileObserver(logFile)


def _rotateOnSIGUSR1(logFile) -> None:
    """
    Rotate C{logFile} on SIGUSR1, as twistd does for its own log file
    (unless something else handles the signal already).
    """
    import signal

    if not hasattr(signal, "SIGUSR1") or signal.getsignal(signal.SIGUSR1):
        return

    def rotate(number, frame):
        from twisted.internet import reactor

        reactor.callFromThread(logFile.rotate)

    signal.signal(signal.SIGUSR1, rotate)


def useLogFormat(options: usage.Options, fmt: str) -> str:
    """
    Check a C{--log-format} value and, for C{json}, have twistd log
    through L{jsonObserver}.

    twistd makes its log observer from its own options (C{--logger},
    C{--logfile}, C{--syslog}, C{-n}) after the service's options are
    parsed, so a service's option can only choose by setting twistd's
    C{--logger}; nothing happens without a twistd parent (unit tests).

    @return: the format.
    @raise usage.UsageError: an unknown format, or one twistd's own
        logging flags contradict.
    """
    fmt = fmt.strip().lower()
    if fmt not in LOG_FORMATS:
        raise usage.UsageError(f"--log-format: expected text or json, not {fmt!r}")
    parent = getattr(options, "parent", None)
    if fmt != "json" or parent is None or "logger" not in parent:
        return fmt
    if parent.get("logger"):
        raise usage.UsageError("--log-format json: cannot be combined with twistd's --logger")
    if parent.get("syslog"):
        raise usage.UsageError("--log-format json: cannot be combined with twistd's --syslog")
    path = parent.get("logfile") or None
    nodaemon = bool(parent.get("nodaemon"))
    if path == "-" or (path is None and nodaemon):
        if not nodaemon:
            raise usage.UsageError("--logfile -: a daemon cannot log to standard output")
        path = None
    elif path is None:
        path = "twistd.log"
    _destination.clear()
    _destination["path"] = path
    parent["logger"] = f"{__name__}.{jsonObserver.__name__}"
    return fmt
