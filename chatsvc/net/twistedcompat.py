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
