"""
How many SSL_write calls a TLS fan-out costs per connection per reactor
turn: the real chat (L{chatsvc.chat.lines.ChatFactory}) on a real
loopback TLS listener (the same C{ssl:} endpoint description C{twistd
chat --port} takes), real TLS clients, and counters wrapped around the
calls that matter.

    python -m benchmarks.tls_writes                  # rooms of 200, bursts of 1..1000
    python -m benchmarks.tls_writes --members 50 --messages 10 --rounds 3

The server's TLS transport is Twisted's L{twisted.protocols.tls}: every
C{OpenSSL.SSL.Connection.send} is one C{SSL_write} (one or more TLS
records, at most 16 KiB of text each).  Counted, per connection of a
member (the sender's own is left out):

  - C{flushOutput}: chatsvc's batched write (L{chatsvc.net.output});
  - C{tls.write}: calls of the TLS transport's C{write} (Twisted's
    C{BufferingTLSTransport} aggregates them again: each first write of a
    turn schedules a C{callLater(0)} of its own);
  - C{SSL_write}: C{Connection.send}, and the reactor turns they fell in;
  - C{tcp.write}: writes of ciphertext to the TCP transport under it
    (Twisted buffers them and sends on the next turn).

The clients are threads with blocking sockets of the standard library's
C{ssl} module (not pyOpenSSL), so nothing they do is counted.  Nothing
here is timed: it counts calls.
"""

from __future__ import annotations

import argparse
import collections
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.tlscert import makeCert
from benchmarks.wire import MARK, messageText


class Counters:
    """
    Calls counted while a burst is fanned out, keyed by server connection.
    """

    def __init__(self) -> None:
        self.turn = 0
        self.reset()

    def reset(self) -> None:
        self.sslWrites: collections.Counter = collections.Counter()
        self.sslBytes: collections.Counter = collections.Counter()
        self.sslTurns: dict = collections.defaultdict(set)
        self.perTurn: collections.Counter = collections.Counter()
        self.flushes: collections.Counter = collections.Counter()
        self.tlsWrites: collections.Counter = collections.Counter()
        self.tcpWrites: collections.Counter = collections.Counter()
        self.epollCtl: collections.Counter = collections.Counter()
        self.sends: collections.Counter = collections.Counter()
        self.firstSendTurn: int | None = None
        self.callLaters = 0
        self.readTurn: int | None = None
        self.firstSSLTurn: int | None = None
        self.lastSSLTurn: int | None = None


def instrument(reactor, counters: Counters) -> dict:
    """
    Wrap the counted calls; return C{{OpenSSL.SSL.Connection: proto}} to
    be filled in as connections are made (the TLS transport's own
    L{Connection} to the chat protocol it carries).
    """
    from OpenSSL import SSL
    from twisted.internet import abstract, tcp
    from twisted.protocols import tls

    from chatsvc.net.lineproto import LineProtocol

    owners: dict = {}

    def doIteration(timeout, _orig=reactor.doIteration):
        counters.turn += 1
        return _orig(timeout)

    reactor.doIteration = doIteration

    def callLater(*a, _orig=reactor.callLater, **kw):
        counters.callLaters += 1
        return _orig(*a, **kw)

    reactor.callLater = callLater

    origSend = SSL.Connection.send

    def send(self, buf, flags=0):
        n = origSend(self, buf, flags)
        key = id(self)
        counters.sslWrites[key] += 1
        counters.sslBytes[key] += n
        counters.sslTurns[key].add(counters.turn)
        counters.perTurn[(key, counters.turn)] += 1
        if counters.firstSSLTurn is None:
            counters.firstSSLTurn = counters.turn
        counters.lastSSLTurn = counters.turn
        return n

    SSL.Connection.send = send

    origFlush = LineProtocol.flushOutput

    def flushOutput(self):
        if self._out:
            counters.flushes[id(self.transport._tlsConnection)] += 1
        return origFlush(self)

    LineProtocol.flushOutput = flushOutput

    origAggregate = tls._AggregateSmallWrites.write

    def aggregateWrite(self, data):
        counters.tlsWrites[id(self._write.__self__._tlsConnection)] += 1
        return origAggregate(self, data)

    tls._AggregateSmallWrites.write = aggregateWrite

    origTCP = abstract.FileDescriptor.write

    def tcpWrite(self, data):
        proto = getattr(self, "protocol", None)
        conn = getattr(proto, "_tlsConnection", None)
        if conn is not None:
            counters.tcpWrites[id(conn)] += 1
        return origTCP(self, data)

    abstract.FileDescriptor.write = tcpWrite

    def tlsOf(transport):
        return getattr(getattr(transport, "protocol", None), "_tlsConnection", None)

    def addWriter(writer, _orig=reactor.addWriter):
        conn = tlsOf(writer)
        if conn is not None and writer.fileno() not in reactor._writes:
            counters.epollCtl[id(conn)] += 1
        return _orig(writer)

    def removeWriter(writer, _orig=reactor.removeWriter):
        conn = tlsOf(writer)
        if conn is not None and writer.fileno() in reactor._writes:
            counters.epollCtl[id(conn)] += 1
        return _orig(writer)

    reactor.addWriter = addWriter
    reactor.removeWriter = removeWriter

    origSome = tcp.Connection.writeSomeData

    def writeSomeData(self, data):
        conn = tlsOf(self)
        if conn is not None:
            counters.sends[id(conn)] += 1
            if counters.firstSendTurn is None:
                counters.firstSendTurn = counters.turn
        return origSome(self, data)

    tcp.Connection.writeSomeData = writeSomeData

    origReceived = tls.TLSMemoryBIOProtocol.dataReceived

    def dataReceived(self, data):
        if counters.readTurn is None:
            counters.readTurn = counters.turn
        return origReceived(self, data)

    tls.TLSMemoryBIOProtocol.dataReceived = dataReceived
    return owners


class Member(threading.Thread):
    """
    One client: logs in, then counts message markers until told to stop.
    """

    def __init__(self, port: int, name: str, room: str) -> None:
        super().__init__(daemon=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw)
        self.sock.sendall(f"{name} {room}\n".encode())
        buf = b""
        while b"success:" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"{name}: closed at login: {buf!r}")
            buf += chunk
        self.received = 0
        self.last = 0
        self.cipher = self.sock.cipher()

    def run(self) -> None:
        try:
            while True:
                data = self.sock.recv(262144)
                if not data:
                    return
                n = data.count(MARK)
                if self.last == 126 and data[0] == 77:
                    n += 1
                self.last = data[-1]
                self.received += n
        except OSError:
            return


def waitFor(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def measure(port: int, members: int, bursts: list[int], rounds: int, counters: Counters):
    """
    In a thread while the reactor runs: log C{members} clients in, then
    for each burst size K, C{rounds} times: the sender writes K messages
    in one C{sendall}, and once every member has them, the counters.
    """
    clients = [Member(port, f"m{i}", "bench") for i in range(members)]
    for c in clients:
        c.start()
    sender = clients[0]
    receivers = clients[1:]
    time.sleep(0.5)  # join announcements die down
    rows = []
    seq = 0
    for k in bursts:
        for _ in range(rounds):
            counters.reset()
            before = [c.received for c in receivers]
            lines = [f"{messageText(0, seq + j, time.monotonic_ns() // 1000)}\n" for j in range(k)]
            seq += k
            sender.sock.sendall("".join(lines).encode())
            want = [b + k for b in before]
            ok = waitFor(
                lambda w=want: all(c.received >= n for c, n in zip(receivers, w, strict=True))
            )
            time.sleep(0.05)  # let the last turn's counters settle
            rows.append((k, ok, summarize(counters, len(receivers))))
    return rows, sender.cipher


def summarize(counters: Counters, receivers: int) -> dict:
    keys = [k for k in counters.sslWrites if counters.flushes.get(k)]
    n = max(1, len(keys))
    turnsWithWrites = sum(len(counters.sslTurns[k]) for k in keys)
    worst = max((v for (k, _), v in counters.perTurn.items() if k in set(keys)), default=0)
    return {
        "members": len(keys),
        "flushOutput": sum(counters.flushes[k] for k in keys) / n,
        "tls.write": sum(counters.tlsWrites[k] for k in keys) / n,
        "SSL_write": sum(counters.sslWrites[k] for k in keys) / n,
        "turns": turnsWithWrites / n,
        "per_turn": sum(counters.sslWrites[k] for k in keys) / max(1, turnsWithWrites),
        "max_per_turn": worst,
        "bytes_per_SSL_write": sum(counters.sslBytes[k] for k in keys)
        / max(1, sum(counters.sslWrites[k] for k in keys)),
        "tcp.write": sum(counters.tcpWrites[k] for k in keys) / n,
        "epoll_ctl": sum(counters.epollCtl[k] for k in keys) / n,
        "send": sum(counters.sends[k] for k in keys) / n,
        "read_to_send_turns": (
            None
            if counters.readTurn is None or counters.firstSendTurn is None
            else counters.firstSendTurn - counters.readTurn
        ),
        "callLater": counters.callLaters,
        "read_to_SSL_write_turns": (
            None
            if counters.readTurn is None or counters.firstSSLTurn is None
            else counters.firstSSLTurn - counters.readTurn
        ),
        "complete": receivers,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tls_writes", description=__doc__)
    p.add_argument("--members", type=int, default=200, help="room size (default 200)")
    p.add_argument(
        "--messages", default="1,10,64,200,1000", help="burst sizes (default 1,10,64,200,1000)"
    )
    p.add_argument("--rounds", type=int, default=3, help="bursts of each size (default 3)")
    args = p.parse_args(argv)
    bursts = [int(x) for x in args.messages.split(",")]

    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.threads import deferToThread

    from chatsvc.chat.history import MemoryHistory
    from chatsvc.chat.lines import ChatFactory
    from chatsvc.chat.rooms import Hub
    from chatsvc.chat.session import ChatLimits

    counters = Counters()
    instrument(reactor, counters)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-writes-"))
    key, cert = makeCert(tmp)
    limits = ChatLimits(
        floodBurst=10**6, floodRate=10**6, recvQueue=10**6, sendQueue=16 * 1024 * 1024
    )
    hub = Hub(reactor, MemoryHistory())
    factory = ChatFactory(hub, limits, reactor)
    description = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    out: dict = {}

    async def run():
        port = await serverFromString(reactor, description).listen(factory)
        try:
            out["rows"], out["cipher"] = await deferToThread(
                measure, port.getHost().port, args.members, bursts, args.rounds, counters
            )
        finally:
            reactor.stop()

    def start():
        from twisted.internet.defer import Deferred

        Deferred.fromCoroutine(run()).addErrback(lambda f: out.setdefault("error", f))

    reactor.callWhenRunning(start)
    reactor.run()
    if "error" in out:
        out["error"].printTraceback()
        return 1
    import twisted

    print(f"Twisted {twisted.__version__}, {ssl.OPENSSL_VERSION}, cipher {out['cipher']}")
    print(f"room of {args.members}: one sender, K messages in one write; per receiving member:")
    head = (
        "| K | flushOutput | tls.write | SSL_write | turns with SSL_write | SSL_write per turn"
        " (max) | bytes per SSL_write | tcp.write | epoll_ctl | send(2) | callLater (all)"
        " | turns read→SSL_write | turns read→send(2) |"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for k, ok, s in out["rows"]:
        print(
            f"| {k} | {s['flushOutput']:.2f} | {s['tls.write']:.2f} | {s['SSL_write']:.2f} | "
            f"{s['turns']:.2f} | {s['per_turn']:.2f} ({s['max_per_turn']}) | "
            f"{s['bytes_per_SSL_write']:.0f} | {s['tcp.write']:.2f} | {s['epoll_ctl']:.2f} | "
            f"{s['send']:.2f} | {s['callLater']} | {s['read_to_SSL_write_turns']} | "
            f"{s['read_to_send_turns']} |" + ("" if ok else " (incomplete)")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
