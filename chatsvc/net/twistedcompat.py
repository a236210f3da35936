"""
Every use of Twisted's private internals in chatsvc, in one place.

Twisted has no public way to ask two things chatsvc needs, so this module
reads (and once writes) attributes whose names start with C{_}:

  - whether a TCP transport still holds unsent bytes, and whether its
    write side is shut (L{writeIdle}): L{chatsvc.net.output.sendNow} sends on
    the socket itself only when nothing is queued before it, or the
    bytes would go out of order.  It reads C{_tempDataLen} and
    C{dataBuffer} (the two halves of
    C{twisted.internet.abstract.FileDescriptor}'s write buffer) and
    C{_writeDisconnected} (set once C{loseWriteConnection} has shut the
    socket for writing).
  - that a stop on SIGTERM or SIGINT was clean (L{forgetExitSignal}):
    twistd kills itself again with the signal its reactor recorded in
    C{_exitSignal} (C{_ISupportsExitSignalCapturing}), which turns a
    graceful shutdown into "killed by SIGTERM" (exit status 143).

It also holds pyOpenSSL back from a process that serves no TLS
(L{holdBackTLS}), relying on a public behaviour rather than on private
names: Twisted's reactor, C{twisted.internet.tcp} and
C{twisted.internet.endpoints} import pyOpenSSL when it is installed and
carry on without TLS when that import fails.

Each use is guarded so that a Twisted which renames these degrades to
the public path instead of breaking: L{supportsDirectSend} says no, so
every write goes through C{transport.write} (slower, still correct);
L{forgetExitSignal} does nothing, so the exit status is 143 again.

Tested with Twisted 26.10 (the oldest that C{setup.cfg} allows and the
newest released) on CPython 3.10 to 3.13 (C{noxfile.py}), and earlier
with 25.5, the floor before the web gateway.
C{tests/test_twistedcompat.py} checks each attribute on a real loopback
connection and a real reactor, and fails loudly as soon as a Twisted
release changes one, rather than letting the silent fallback hide it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

#: The attributes of a TCP transport that L{writeIdle} reads.
TRANSPORT_ATTRIBUTES = ("_tempDataLen", "dataBuffer", "_writeDisconnected")

#: The reactor attribute that L{forgetExitSignal} clears.
EXIT_SIGNAL_ATTRIBUTE = "_exitSignal"


def supportsDirectSend(transport) -> bool:
    """
    Whether C{transport} has the internals L{writeIdle} reads; without
    them, sending on its socket directly cannot keep the order.
    """
    return all(hasattr(transport, name) for name in TRANSPORT_ATTRIBUTES)


def writeIdle(transport) -> bool:
    """
    Whether bytes sent on C{transport}'s socket right now would go out in
    order: it holds nothing unsent, is connected, not closing, and its
    write side is not shut.  Only for transports that
    L{supportsDirectSend} accepts.
    """
    return not (
        transport._tempDataLen
        or transport.dataBuffer
        or transport.disconnecting
        or not transport.connected
        or transport._writeDisconnected
    )


def forgetExitSignal(reactor) -> None:
    """
    Forget the signal that stopped C{reactor}, so that twistd exits with
    status 0 after a stop that went as asked instead of killing itself
    with that signal again.
    """
    if getattr(reactor, EXIT_SIGNAL_ATTRIBUTE, None) is not None:
        setattr(reactor, EXIT_SIGNAL_ATTRIBUTE, None)


#: Endpoint kinds that never use TLS: a process listening only on these
#: does not need pyOpenSSL.  Any other kind (C{ssl:}, or one a plugin
#: adds) might, so it keeps Twisted's TLS as Twisted loads it.
PLAIN_KINDS = frozenset({"tcp", "tcp6", "unix", "systemd"})

#: What importing pyOpenSSL brings along, and what Twisted imports it from.
TLS_MODULES = ("OpenSSL", "cryptography", "twisted.internet.ssl", "twisted.protocols.tls")
_TWISTED_IMPORTERS = (
    "twisted.internet.tcp",
    "twisted.internet.posixbase",
    "twisted.internet.endpoints",
)


def holdBackTLS(descriptions: Iterable[str], modules: Iterable[str] = ()) -> bool:
    """
    Import Twisted's reactor modules, and C{modules}, without pyOpenSSL
    when every endpoint description in C{descriptions} (a bare port
    number counts as C{tcp}) is of a kind in L{PLAIN_KINDS}.

    Twisted imports pyOpenSSL, and with it cryptography and its Rust
    extension, as soon as C{twisted.internet.tcp}, the reactor or
    C{twisted.internet.endpoints} is imported: about 13 MB of resident
    memory (benchmarks/RESULTS.md, "A smaller process") that a server
    listening on plain TCP never uses.  Those modules are imported here
    with C{OpenSSL} marked unimportable, so each takes its no-TLS branch;
    the mark is removed again at once.  A TCP transport then has no
    C{startTLS} and the reactor no C{listenSSL}; nothing in such a
    process calls them.  C{modules} are other Twisted modules that would
    load pyOpenSSL as well and that the process is about to import
    (C{twisted.web.client}, which Twisted's WebSocket server imports).

    Nothing happens (and L{False} is returned) when a description may
    need TLS, or when any of those modules is already imported (twistd
    C{--reactor}, a test run, a process that imported them for its own
    use): TLS stays exactly as Twisted set it up.  Call it before
    anything imports the reactor, with every description the process
    will listen on.

    @return: whether pyOpenSSL was held back.
    """
    for description in descriptions:
        value = description.strip()
        kind = "tcp" if value.isdigit() else value.split(":", 1)[0].strip().lower()
        if kind not in PLAIN_KINDS:
            return False
    if any(name in sys.modules for name in TLS_MODULES + _TWISTED_IMPORTERS):
        return False
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]  # "import OpenSSL" fails
    try:
        import twisted.internet.endpoints  # noqa: F401
        import twisted.internet.posixbase  # noqa: F401
        import twisted.internet.tcp  # noqa: F401

        for name in modules:
            importlib.import_module(name)
    finally:
        if sys.modules.get("OpenSSL", 0) is None:
            del sys.modules["OpenSSL"]
    return True
