"""
Getting fan-out bytes onto sockets cheaply, and keeping them bounded.

Twisted's C{transport.write} never sends at once: it buffers, registers
the socket for writing (C{epoll_ctl}), sends on the next reactor turn and
unregisters again.  At chat loads (many senders at modest rates) that is
a send and two C{epoll_ctl} per delivery (docs/design.rst).  Two
pieces here do better:

  - L{WriteBatcher}: each connection's writes of one reactor turn are
    joined and sent once, at the start of the next turn; on plain TCP,
    when the transport holds nothing already, with one C{send} straight
    on the socket (what is not taken goes to C{transport.write}, which
    then keeps the order).  Under TLS each write would be its own TLS
    record, so batching alone already helps there.
  - L{Backlog}: the bytes a turn produced and the bytes piling up for
    peers that do not keep up, summed.  While it is over its limit,
    senders wait (the chat stops reading them), so a burst of fan-out
    cannot grow the server.  A peer that has not drained for C{patience}
    seconds stops counting: it is a slow reader, and the send-queue
    limit deals with it; no single bad reader stalls the others long.
"""

from __future__ import annotations

from errno import EAGAIN, EINTR, ENOBUFS, EWOULDBLOCK

from twisted.internet.interfaces import ISSLTransport

from chatsvc.net.twistedcompat import supportsDirectSend, writeIdle

_RETRY_LATER = (EAGAIN, EWOULDBLOCK, ENOBUFS, EINTR)


def isPlainTCP(transport) -> bool:
    """
    Whether we may send on C{transport}'s socket ourselves: a plain TCP
    connection, not carrying TLS (raw bytes would bypass the encryption),
    whose buffer we can see (L{chatsvc.net.twistedcompat.supportsDirectSend}).
    """
    # Imported here, not with this module: twisted.internet.tcp loads
    # pyOpenSSL unless chat's options held it back first
    # (twistedcompat.holdBackTLS); by the time a transport exists the
    # reactor has imported it anyway.
    from twisted.internet import tcp

    return (
        isinstance(transport, tcp.Connection)
        and not ISSLTransport.providedBy(transport)
        and supportsDirectSend(transport)
    )


def sendNow(transport, data: bytes) -> None:
    """
    Send C{data} on a plain TCP transport at once if it holds nothing
    unsent; give what the kernel does not take to C{transport.write}.
    """
    if not writeIdle(transport):
        transport.write(data)
        return
    try:
        sent = transport.getHandle().send(data)
    except OSError as e:
        # Retry later, or let the reactor's own write path find the error
        # and close the connection the usual way.
        sent = 0
        if e.errno not in _RETRY_LATER:
            transport.write(data)
            return
    if sent < len(data):
        transport.write(data[sent:])


def appendOwn(out: list, data: bytes) -> None:
    """
    Append a connection's own write to its output buffer C{out} when the
    buffer's tail holds open tokens (C{(group, start, None)}: a room
    group's messages of this turn, L{chatsvc.chat.fanout}): the room
    messages given so far stay before C{data}, the ones to come in this
    turn after it.
    """
    i = len(out)
    while i and out[i - 1].__class__ is tuple:
        i -= 1
    tail = out[i:]
    del out[i:]
    cut = []
    for group, start, end in tail:
        if end is None:
            end = len(group.turn)
            cut.append((group, end, None))
        out.append((group, start, end))
    out.append(data)
    out.extend(cut)


def takeOutput(out: list) -> bytes:
    """
    Empty a member's output buffer C{out} and return its bytes, tokens
    made into their groups' bytes.  A group whose turn is still going (a
    flush in the middle of a turn: a connection closing) leaves a token
    for the rest of it.
    """
    if len(out) == 1:
        item = out[0]
        if item.__class__ is bytes:
            out.clear()
            return item
        group = item[0]
        if item is group.token and not group.marked and id(out) not in group.own:
            # The common case at the end of a turn: all of one group's
            # messages, joined once for all its members.
            out.clear()
            return group.whole()
    parts = []
    rest = []
    for item in out:
        if item.__class__ is bytes:
            parts.append(item)
        else:
            group, start, end = item
            if end is None:
                end = len(group.turn)
                if group.marked:
                    rest.append((group, end, None))
            if end > start:
                parts.append(group.view(out, start, end))
    out[:] = rest
    return parts[0] if len(parts) == 1 else b"".join(parts)


class WriteBatcher:
    """
    Flushes the connections written to during a reactor turn, once each,
    at the start of the next turn.

    @ivar pendingBytes: bytes written and not yet flushed.
    """

    def __init__(self, clock) -> None:
        self.clock = clock
        self.pendingBytes = 0
        self._dirty: list = []
        self._scheduled = False
        self._afterFlush: list = []

    def mark(self, connection) -> None:
        """
        C{connection} has output waiting; flush it next turn.
        """
        self._dirty.append(connection)
        if not self._scheduled:
            self._scheduled = True
            self.clock.callLater(0, self.flush)

    def afterFlush(self, callback) -> None:
        """
        Call C{callback()} once, after the next flush.
        """
        self._afterFlush.append(callback)
        if not self._scheduled:
            self._scheduled = True
            self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        self.pendingBytes = 0
        for connection in dirty:
            connection.flushOutput()
        waiting, self._afterFlush = self._afterFlush, []
        for callback in waiting:
            callback()


class Backlog:
    """
    Output produced but not yet taken by its peers, summed over every
    connection of a factory, and the senders waiting for it to shrink.

    @ivar limit: bytes over which senders wait.
    @ivar patience: seconds a backed-up peer counts before it is taken
        for a slow reader and no longer holds others up.
    """

    def __init__(self, clock, batcher: WriteBatcher, limit: int, patience: float) -> None:
        self.clock = clock
        self.batcher = batcher
        self.limit = limit
        self.patience = patience
        self.backedUp = 0
        self._counted: dict = {}
        self._since: dict = {}
        self._waiting: dict = {}
        self._timer = None
        self._releasing = False
        self._releaseAfterFlush = False

    def isOver(self) -> bool:
        """
        Whether senders should wait now.
        """
        return self.batcher.pendingBytes + self.backedUp > self.limit

    def grew(self, connection, size: int) -> None:
        """
        C{size} more bytes wait for C{connection}, whose transport is full.
        """
        counted = self._counted.get(connection)
        if counted is None:
            if connection in self._since:  # stale: a slow reader
                return
            self._since[connection] = self.clock.seconds()
            counted = 0
        self._counted[connection] = counted + size
        self.backedUp += size

    def drained(self, connection) -> None:
        """
        C{connection}'s transport took everything.  If it is also a
        sender waiting for the backlog, it still waits (and is released
        with the others): dropping its wait here held its input for good.
        """
        self.backedUp -= self._counted.pop(connection, 0)
        self._since.pop(connection, None)
        self._maybeRelease()

    def forget(self, connection) -> None:
        """
        C{connection} is gone: its output no longer counts, and it no
        longer waits.
        """
        self._waiting.pop(connection, None)
        self.drained(connection)

    def wait(self, connection, release) -> None:
        """
        C{connection} holds its input until the backlog shrinks; then
        C{release()} is called.
        """
        self._waiting[connection] = release
        if self.batcher.pendingBytes:
            self._releaseWhenFlushed()
        self._watchPatience()

    def _releaseWhenFlushed(self) -> None:
        # Once per flush, however many senders wait: registering on every
        # wait made the after-flush list grow with the number of senders.
        if not self._releaseAfterFlush:
            self._releaseAfterFlush = True
            self.batcher.afterFlush(self._flushed)

    def _flushed(self) -> None:
        self._releaseAfterFlush = False
        self._maybeRelease()

    def _watchPatience(self) -> None:
        if self._timer is not None or not self._counted:
            return
        oldest = min(self._since[connection] for connection in self._counted)
        delay = max(0.0, oldest + self.patience - self.clock.seconds())
        self._timer = self.clock.callLater(delay, self._patienceOver)

    def _patienceOver(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        for connection, since in list(self._since.items()):
            if now - since >= self.patience and connection in self._counted:
                self.backedUp -= self._counted.pop(connection)
        self._maybeRelease()
        if self._waiting:
            self._watchPatience()

    def _maybeRelease(self) -> None:
        if self._releasing or not self._waiting or self.isOver():
            if self._waiting and self.batcher.pendingBytes:
                self._releaseWhenFlushed()
            return
        self._releasing = True
        try:
            waiting, self._waiting = self._waiting, {}
            for release in waiting.values():
                release()
        finally:
            self._releasing = False
