"""
The load generator: many chat clients driven from several processes.

One Python process tops out long before a C server does, so the clients
are split across worker processes (C{multiprocessing}, fork).  Each worker
runs its own C{selectors} loop over raw non-blocking sockets: no
framework between the socket and the counting, because the generator must
not be what is measured.  The parent only coordinates (over one pipe per
worker) and samples the server's CPU and memory.

A run has phases, all bounded in time:

  1. connect and log in every client (each worker its slice, at most
     C{concurrency} handshakes in flight per worker), then report ready;
  2. the parent lets the join chatter settle, then sends C{go} with one
     start time for all: senders send (flat out, or paced on a common
     schedule) until the end of the window; everyone reads all along;
  3. drain: the parent polls delivered counts until every expected
     delivery has arrived, or nothing arrived for a while, or a deadline;
  4. stop: workers send their statistics and close their sockets with a
     reset (no TIME_WAIT pile-up on the client side across runs).

With C{Plan.tls} every client wraps its socket in TLS (the standard
library's C{ssl}, non-blocking, no certificate check: the servers'
certificates are self-signed and everything is on loopback) after the TCP
connect and before logging in; a read then takes every TLS record
already decrypted or waiting (up to C{recvSize}) in one go.

Receiving costs C-speed work per chunk (C{bytes.count} of the marker);
only the receivers chosen for verification parse every message for
sequence, duplicates and latency (L{benchmarks.wire}).
"""

from __future__ import annotations

import errno
import heapq
import math
import multiprocessing
import os
import resource
import selectors
import socket
import ssl
import struct
import time
from array import array
from dataclasses import dataclass, field

from benchmarks.wire import MARK, MESSAGE_RE, makeDriver, messageText

_NOW = time.monotonic
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_LINGER_RESET = struct.pack("ii", 1, 0)

#: What a non-blocking plain or TLS socket raises when it would block.
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

#: Plaintext of one TLS record at most (RFC 8446 section 5.1).
_TLS_RECORD = 16384

#: Most latency samples one worker keeps (beyond that, every k-th).
MAX_SAMPLES = 2_000_000


@dataclass
class Plan:
    """
    Everything a run needs to know; picklable, one copy per worker.

    @ivar protocol: C{line} (chatsvc's native protocol), C{irc} or C{ws}
        (the chat's web gateway, L{benchmarks.wire.WebSocketDriver}).
    @ivar port: the server's port on C{host}.
    @ivar clients: how many clients in all.
    @ivar roomSize: clients per room (client i is in room C{i // roomSize}).
    @ivar senders: how many clients send (clients 0 .. senders-1), spread
        evenly over the workers.
    @ivar mode: C{idle} (nobody sends), C{flat} (senders flat out: as fast
        as the socket takes it) or C{paced} (C{rate} messages per second
        in all, on one schedule).
    @ivar batch: messages a flat-out sender writes at once.
    @ivar window: flat out: most messages of one sender that may be sent
        but not yet seen by a receiver in the same worker (0: no limit).
        Without it, "sent" means "in a loopback kernel buffer": millions
        of messages a server has not read, so neither a delivered
        fraction nor a drain would mean anything.
    @ivar verify: receivers per worker that parse every message
        (sequence, duplicates, latency); C{-1} means all of them.  With a
        window, at least two (each watches the other's messages).
    @ivar sources: local addresses to spread clients over (many clients
        need more than one address's ephemeral ports); empty for default.
    @ivar echo: whether senders get their own messages too (the web
        gateway's JSON): a message to a room of N is then N deliveries.
    @ivar tls: whether clients speak TLS to the server (over TCP, before
        the protocol; the server's certificate is not checked).
    @ivar tick: paced mode: 0 sends each message when it is due (one every
        1/C{rate} s, the load as evenly spread as it can be); above 0, the
        messages due within each C{tick} seconds go together at its end,
        as a generator driven by a timer of that period would send them
        (L{benchmarks.paced_cpu}).
    """

    protocol: str
    port: int
    clients: int
    host: str = "127.0.0.1"
    roomSize: int = 0
    senders: int = 0
    mode: str = "idle"
    rate: float = 0.0
    batch: int = 64
    window: int = 0
    verify: int = 8
    password: str | None = None
    oper: tuple | None = None
    sources: tuple = ()
    concurrency: int = 200
    connectTimeout: float = 120.0
    recvSize: int = 262144
    echo: bool = False
    tls: bool = False
    tick: float = 0.0

    def room(self, index: int) -> str:
        size = self.roomSize or self.clients
        return f"r{index // size}"

    def roomMembers(self, index: int) -> int:
        size = self.roomSize or self.clients
        first = (index // size) * size
        return min(size, self.clients - first)

    def perMessage(self, index: int = 0) -> int:
        """
        Deliveries of one message to the room of client C{index}.
        """
        return self.roomMembers(index) - (0 if self.echo else 1)


def sliceFor(plan: Plan, worker: int, workers: int) -> list[int]:
    """
    The client indices worker C{worker} of C{workers} drives: every
    C{workers}-th, so senders (the lowest indices) and rooms are spread
    evenly over the workers.
    """
    return [i for i in range(plan.clients) if i % workers == worker]


class Conn:
    """
    One client connection inside a worker.
    """

    __slots__ = (
        "index",
        "sock",
        "fd",
        "state",
        "steps",
        "step",
        "inbuf",
        "out",
        "room",
        "sender",
        "seq",
        "verify",
        "lastSeq",
        "delivered",
        "unique",
        "gaps",
        "backwards",
        "lastByte",
        "tail",
        "waiting",
    )

    def __init__(self, index: int, room: str, sender: bool, verify: bool) -> None:
        self.index = index
        self.sock = None
        self.fd = -1
        self.state = "new"
        self.steps = []
        self.step = 0
        self.inbuf = b""
        self.out = b""
        self.room = room
        self.sender = sender
        self.seq = 0
        self.verify = verify
        self.lastSeq: dict[int, int] = {}
        self.delivered = 0
        self.unique = 0
        self.gaps = 0
        self.backwards = 0
        self.lastByte = 0
        self.tail = b""
        self.waiting = False


@dataclass
class WorkerResult:
    """
    What one worker reports at the end of a run.
    """

    worker: int
    clients: int = 0
    ready: int = 0
    failed: int = 0
    failures: list = field(default_factory=list)
    connectStart: float = 0.0
    readyAt: float = 0.0
    sent: int = 0
    sentBySender: dict = field(default_factory=dict)
    sentAt: dict = field(default_factory=dict)
    delivered: int = 0
    deliveredAt: dict = field(default_factory=dict)
    cpuAt: dict = field(default_factory=dict)
    closed: int = 0
    closeReasons: list = field(default_factory=list)
    verified: int = 0
    verifiedReceivers: list = field(default_factory=list)
    gaps: int = 0
    backwards: int = 0
    latencies: array = field(default_factory=lambda: array("q"))
    latencyStride: int = 1
    tls: str = ""


def _raiseFileLimit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


class Worker:
    """
    Drives one slice of the clients of a L{Plan} in this process.
    """

    def __init__(self, plan: Plan, worker: int, workers: int, pipe) -> None:
        self.plan = plan
        self.pipe = pipe
        self.driver = makeDriver(
            plan.protocol, plan.password, plan.oper, f"{plan.host}:{plan.port}"
        )
        self.pingMark = self.driver.pingMark
        self.end = self.driver.end
        self.sel = selectors.DefaultSelector()
        self.result = WorkerResult(worker)
        indices = sliceFor(plan, worker, workers)
        verifyLeft = max(plan.verify, 2) if plan.window and plan.verify >= 0 else plan.verify
        self.conns: list[Conn] = []
        for i in indices:
            sender = i < plan.senders
            verify = verifyLeft != 0
            if verify and verifyLeft > 0:
                verifyLeft -= 1
            self.conns.append(Conn(i, plan.room(i), sender, verify))
        self.result.clients = len(self.conns)
        self.senders = [c for c in self.conns if c.sender]
        self.byIndex = {c.index: c for c in self.senders}
        #: Highest sequence number of each sender seen by a local verifier.
        self.seen: dict[int, int] = {}
        self.pending = list(reversed(self.conns))
        self.handshaking = 0
        self.sending = False
        self.tEnd = 0.0
        self.marks: list[tuple[float, str]] = []
        self.schedule: list = []
        self.sampleEvery = 1
        self.sampleCount = 0
        self.interval = 0.0
        self.t0 = 0.0
        self.tls = None
        if plan.tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE

    # -- connecting and logging in -------------------------------------

    def _open(self, conn: Conn) -> None:
        plan = self.plan
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if plan.sources:
            sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((plan.sources[conn.index % len(plan.sources)], 0))
        conn.sock = sock
        conn.fd = sock.fileno()
        conn.state = "connecting"
        conn.steps = self.driver.loginSteps(conn.index, conn.room)
        self.handshaking += 1
        err = sock.connect_ex((plan.host, plan.port))
        if err not in (0, errno.EINPROGRESS):
            self._fail(conn, f"connect: {os.strerror(err)}")
            return
        self.sel.register(sock, selectors.EVENT_WRITE, conn)

    def _fail(self, conn: Conn, why: str) -> None:
        if conn.state in ("connecting", "handshake", "login"):
            self.handshaking -= 1
            self.result.failed += 1
            if len(self.result.failures) < 5:
                self.result.failures.append(f"client {conn.index}: {why}")
        elif conn.state == "ready":
            self.result.closed += 1
            if len(self.result.closeReasons) < 5:
                self.result.closeReasons.append(f"client {conn.index}: {why}")
        conn.state = "closed"
        if conn.sock is not None:
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()

    def _connected(self, conn: Conn) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(conn, f"connect: {os.strerror(err)}")
            return
        if self.tls is not None:
            self.sel.unregister(conn.sock)
            conn.sock = self.tls.wrap_socket(conn.sock, do_handshake_on_connect=False)
            conn.state = "handshake"
            self.sel.register(conn.sock, selectors.EVENT_WRITE, conn)
            self._handshake(conn)
            return
        conn.state = "login"
        self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
        self._nextStep(conn)

    def _handshake(self, conn: Conn) -> None:
        """
        TLS: go on with the handshake; once done, log in.
        """
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        except ssl.SSLWantWriteError:
            self.sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return
        except OSError as e:
            self._fail(conn, f"TLS handshake: {e}")
            return
        if not self.result.tls:
            name, version, bits = conn.sock.cipher()
            self.result.tls = f"{version} {name}"
        conn.state = "login"
        self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
        self._nextStep(conn)

    def _nextStep(self, conn: Conn) -> None:
        while conn.step < len(conn.steps):
            step = conn.steps[conn.step]
            if step.data:
                conn.sock.sendall(step.data)
                step.data = b""
            if step.until is not None:
                return
            conn.step += 1
        conn.state = "ready"
        self.handshaking -= 1
        self.result.ready += 1

    def _loginRead(self, conn: Conn, data: bytes) -> None:
        lines, conn.inbuf = self.driver.split(conn.inbuf + data)
        for line in lines:
            answer = self.driver.pong(line)
            if answer:
                conn.sock.sendall(answer)
                continue
            if conn.state != "login":
                continue
            command = self.driver.command(line)
            if command == conn.steps[conn.step].until:
                conn.step += 1
                self._nextStep(conn)
            elif command in self.driver.failures:
                self._fail(conn, line.decode("utf-8", "replace").strip()[:200])
                return

    def _startConnecting(self) -> None:
        while self.pending and self.handshaking < self.plan.concurrency:
            self._open(self.pending.pop())

    # -- the running phase ---------------------------------------------

    def _recvTLS(self, sock) -> bytes:
        """
        Everything a TLS socket has for us now, up to C{recvSize}: a
        C{recv} returns one record at most, and records already read
        from the kernel would not wake the selector again.
        """
        chunks = []
        size = 0
        limit = self.plan.recvSize
        try:
            while size < limit:
                chunk = sock.recv(_TLS_RECORD)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except _WOULD_BLOCK:
            if not chunks:
                raise
        return b"".join(chunks)

    def _read(self, conn: Conn) -> None:
        try:
            if self.tls is None:
                data = conn.sock.recv(self.plan.recvSize)
            else:
                data = self._recvTLS(conn.sock)
        except _WOULD_BLOCK:
            return
        except OSError as e:
            self._fail(conn, f"recv: {e.strerror}")
            return
        if not data:
            reason = (conn.tail + conn.inbuf)[-200:].decode("utf-8", "replace").strip()
            self._fail(conn, f"closed by server; last bytes: {reason!r}")
            return
        if conn.state != "ready":
            self._loginRead(conn, data)
            return
        n = data.count(MARK)
        if conn.lastByte == 126 and data[0] == 77:  # "~" then "M" across reads
            n += 1
        conn.lastByte = data[-1]
        conn.delivered += n
        if self.pingMark in data:
            answer = self.driver.answers(conn.tail, data)
            if answer:
                conn.out += answer
                self._wantWrite(conn)
        if conn.verify:
            self._verify(conn, data)
        else:
            conn.tail = data[-200:]

    def _verify(self, conn: Conn, data: bytes) -> None:
        buf = conn.tail + data if conn.tail else data
        end = buf.rfind(self.end) + 1
        conn.tail = buf[end:]
        found = MESSAGE_RE.findall(buf, 0, end)
        if not found:
            return
        nowUs = time.monotonic_ns() // 1000
        last = conn.lastSeq
        seen = self.seen
        byIndex = self.byIndex
        lat = self.result.latencies
        every = self.sampleEvery
        for s, q, t in found:
            s = int(s)
            q = int(q)
            before = last.get(s, -1)
            if q > before:
                conn.unique += 1
                if q != before + 1:
                    conn.gaps += q - before - 1
                last[s] = q
                if q > seen.get(s, -1):
                    seen[s] = q
                    mine = byIndex.get(s)
                    if mine is not None and mine.waiting:
                        mine.waiting = False
                        self._wantWrite(mine)
            else:
                conn.backwards += 1
            self.sampleCount += 1
            if self.sampleCount % every == 0:
                lat.append(nowUs - int(t))
        if len(lat) >= MAX_SAMPLES:
            del lat[::2]
            self.sampleEvery *= 2

    def _wantWrite(self, conn: Conn) -> None:
        if conn.state == "ready":
            self.sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def _write(self, conn: Conn) -> None:
        if not conn.out and conn.sender and self.sending and self.plan.mode == "flat":
            count = self.plan.batch
            if self.plan.window:
                inFlight = conn.seq - 1 - self.seen.get(conn.index, -1)
                count = min(count, self.plan.window - inFlight)
                if count <= 0:
                    conn.waiting = True
                    self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
                    return
            self._fill(conn, count)
        if conn.out:
            try:
                n = conn.sock.send(conn.out)
            except _WOULD_BLOCK:
                return
            except OSError as e:
                self._fail(conn, f"send: {e.strerror}")
                return
            conn.out = conn.out[n:]
        if not conn.out and not (conn.sender and self.sending and self.plan.mode == "flat"):
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def _fill(self, conn: Conn, count: int) -> None:
        """
        Queue C{count} new messages of sender C{conn}, stamped now.
        """
        nowUs = time.monotonic_ns() // 1000
        line = self.driver.messageLine
        room = conn.room
        index = conn.index
        seq = conn.seq
        conn.out += b"".join(line(room, messageText(index, seq + k, nowUs)) for k in range(count))
        conn.seq = seq + count
        self.result.sent += count

    def _sendDue(self, now: float) -> float | None:
        """
        Paced mode: queue every message whose time has come; return when
        the next one is due.
        """
        schedule = self.schedule
        fire = self._fire
        while schedule and fire(schedule[0][0]) <= now:
            due, k, conn = heapq.heappop(schedule)
            if conn.state == "ready":
                self._fill(conn, 1)
                self._write(conn)
                if conn.out:
                    self._wantWrite(conn)
            if due + self.interval < self.tEnd:
                heapq.heappush(schedule, (due + self.interval, k, conn))
        return fire(schedule[0][0]) if schedule else None

    def _fire(self, due: float) -> float:
        """
        When a message due at C{due} is sent: then, or at the end of its
        tick (L{Plan.tick}).
        """
        tick = self.plan.tick
        if tick <= 0:
            return due
        return self.t0 + math.ceil((due - self.t0) / tick - 1e-9) * tick

    def _go(self, t0: float, tWarm: float, tEnd: float) -> None:
        plan = self.plan
        self.tEnd = tEnd
        self.t0 = t0
        self.marks = [(tWarm, "warm"), (tEnd, "end")]
        self.sending = True
        live = [c for c in self.senders if c.state == "ready"]
        if plan.mode == "flat":
            for conn in live:
                self._wantWrite(conn)
        elif plan.mode == "paced" and live:
            # Message m of all (m = 0, 1, ...) is due at t0 + m / rate and
            # is sent by sender m mod senders: one schedule for all workers.
            self.interval = plan.senders / plan.rate
            self.schedule = [(t0 + c.index / plan.rate, c.index, c) for c in live]
            heapq.heapify(self.schedule)

    def _sentNow(self) -> int:
        """
        Messages that have wholly left for the server: queued ones that
        are still (even partly) in our buffer do not count.
        """
        boundary = self.driver.boundary
        return self.result.sent - sum(c.out.count(boundary) for c in self.senders)

    def _mark(self, name: str) -> None:
        r = self.result
        r.deliveredAt[name] = sum(c.delivered for c in self.conns)
        r.sentAt[name] = self._sentNow()
        r.cpuAt[name] = _cpu()
        if name == "end":
            self.sending = False
            self.schedule = []

    # -- the loop --------------------------------------------------------

    def _command(self) -> bool:
        """
        Handle one command from the parent; False means stop.
        """
        msg = self.pipe.recv()
        kind = msg[0]
        if kind == "go":
            self._go(*msg[1:])
        elif kind == "poll":
            delivered = sum(c.delivered for c in self.conns)
            self.pipe.send(("count", delivered, self._sentNow(), self.result.closed))
        elif kind == "stop":
            return False
        return True

    def run(self) -> None:
        _raiseFileLimit()
        self.sel.register(self.pipe.fileno(), selectors.EVENT_READ, None)
        r = self.result
        r.connectStart = _NOW()
        deadline = r.connectStart + self.plan.connectTimeout
        self._startConnecting()
        reported = False
        running = True
        nextDue = None
        while running:
            now = _NOW()
            if not reported and ((not self.pending and self.handshaking == 0) or now > deadline):
                for conn in self.conns:
                    if conn.state in ("connecting", "login"):
                        self._fail(conn, "login timed out")
                r.failed += len(self.pending)
                self.pending = []
                r.readyAt = _NOW()
                reported = True
                self.pipe.send(("ready", r.ready, r.failed, r.connectStart, r.readyAt))
            timeout = 0.05
            if self.marks:
                timeout = min(timeout, max(0.0, self.marks[0][0] - now))
            if nextDue is not None:
                timeout = min(timeout, max(0.0, nextDue - now))
            for key, mask in self.sel.select(timeout):
                conn = key.data
                if conn is None:
                    running = self._command()
                    continue
                if conn.state == "closed":
                    continue
                if conn.state == "connecting":
                    self._connected(conn)
                    continue
                if conn.state == "handshake":
                    self._handshake(conn)
                    continue
                if mask & selectors.EVENT_READ:
                    self._read(conn)
                if mask & selectors.EVENT_WRITE and conn.state == "ready":
                    self._write(conn)
            if self.pending:
                self._startConnecting()
            now = _NOW()
            while self.marks and self.marks[0][0] <= now:
                self._mark(self.marks.pop(0)[1])
            nextDue = self._sendDue(now) if self.schedule else None
        self._finish()

    def _finish(self) -> None:
        r = self.result
        r.delivered = sum(c.delivered for c in self.conns)
        r.sent = self._sentNow()
        boundary = self.driver.boundary
        r.sentBySender = {c.index: c.seq - c.out.count(boundary) for c in self.senders}
        r.latencyStride = self.sampleEvery
        for conn in self.conns:
            if conn.verify and conn.state == "ready":
                r.verified += 1
                r.verifiedReceivers.append((conn.index, conn.unique))
                r.gaps += conn.gaps
                r.backwards += conn.backwards
            if conn.sock is not None and conn.state != "closed":
                try:
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                except OSError:
                    pass
                conn.sock.close()
        self.pipe.send(("done", r))


def _workerMain(plan: Plan, worker: int, workers: int, pipe) -> None:
    try:
        Worker(plan, worker, workers, pipe).run()
    except KeyboardInterrupt:
        pass
    except BaseException:
        import traceback

        pipe.send(("error", traceback.format_exc()))
        raise


@dataclass
class Timing:
    """
    How long each phase of a run may take.

    @ivar settle: seconds after everyone is ready before sending starts
        (join announcements die down).
    @ivar warmup: seconds of sending before the measured window opens.
    @ivar window: seconds in the measured window.
    @ivar drainQuiet: stop draining after this long without a delivery.
    @ivar drainMax: stop draining after this long in any case.
    @ivar hold: idle runs: seconds to hold all clients after login.
    """

    settle: float = 1.0
    warmup: float = 1.0
    window: float = 5.0
    drainQuiet: float = 2.0
    drainMax: float = 15.0
    hold: float = 2.0


class Pool:
    """
    The worker processes of one run, seen from the parent.
    """

    def __init__(self, plan: Plan, workers: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipes = []
        self.procs = []
        for w in range(workers):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_workerMain, args=(plan, w, workers, theirs), daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(mine)
            self.procs.append(proc)

    def expect(self, kind: str, timeout: float) -> list:
        """
        One message of C{kind} from every worker.
        """
        out = []
        deadline = _NOW() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - _NOW())):
                raise TimeoutError(f"a worker sent no {kind!r} in {timeout:g} s")
            msg = pipe.recv()
            if msg[0] == "error":
                raise RuntimeError(f"a worker failed:\n{msg[1]}")
            if msg[0] != kind:
                raise RuntimeError(f"expected {kind!r} from a worker, got {msg[0]!r}")
            out.append(msg)
        return out

    def send(self, msg) -> None:
        for pipe in self.pipes:
            pipe.send(msg)

    def poll(self) -> tuple[int, int, int]:
        self.send(("poll",))
        counts = self.expect("count", 30)
        return tuple(sum(m[i] for m in counts) for i in (1, 2, 3))

    def stop(self) -> list[WorkerResult]:
        self.send(("stop",))
        results = [m[1] for m in self.expect("done", 60)]
        self.close()
        return results

    def close(self) -> None:
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(1)


def runLoad(
    plan: Plan,
    workers: int,
    timing: Timing,
    serverPid: int | None,
    relay: bool = True,
    onWindow=None,
) -> dict:
    """
    Run one load against a server that is already listening; return the
    raw figures (see L{benchmarks.metrics} for what is made of them).

    C{serverPid} is the process whose CPU and RSS are measured (L{None}
    for none).  C{relay} is false for the blaster, which relays nothing:
    then no delivery is expected, and draining waits for quiet only.
    C{onWindow(seconds)} is called when the measured window opens (to
    start a profiler, say).
    """
    from benchmarks.procstat import CPUMark, Sampler, rssKiB

    out: dict = {"plan": plan.__dict__ | {}, "workers": workers}
    sampler = None
    if serverPid is not None:
        out["rssBefore"] = rssKiB(serverPid)
    pool = Pool(plan, workers)
    if serverPid is not None:  # a thread only after the fork
        sampler = Sampler(serverPid)
        sampler.start()
    try:
        readies = pool.expect("ready", plan.connectTimeout + 30)
        out["ready"] = sum(m[1] for m in readies)
        out["failed"] = sum(m[2] for m in readies)
        out["connectSeconds"] = max(m[4] for m in readies) - min(m[3] for m in readies)
        time.sleep(timing.settle)
        if serverPid is not None:
            out["rssReady"] = rssKiB(serverPid)
        if plan.mode == "idle":
            mark = CPUMark(serverPid) if serverPid is not None else None
            time.sleep(timing.hold)
            if mark is not None:
                out["cpuIdle"] = mark.share(CPUMark(serverPid))
                out["rssHeld"] = rssKiB(serverPid)
        else:
            _runWindow(pool, plan, timing, serverPid, out, relay, onWindow)
        delivered, sent, closed = pool.poll()
        results = pool.stop()
    except BaseException:
        for proc in pool.procs:
            proc.kill()
        raise
    finally:
        if sampler is not None:
            sampler.stop()
    out["results"] = results
    if sampler is not None:
        start = out.get("tWarm", 0.0)
        end = out.get("tEnd", float("inf"))
        window = sampler.between(start, end)
        out["rssWindow"] = (window[0], window[-1], max(window)) if window else None
        out["rssPeak"] = max((kib for _, kib in sampler.samples), default=0)
    return out


def _runWindow(
    pool: Pool, plan: Plan, timing: Timing, serverPid, out: dict, relay: bool, onWindow
) -> None:
    """
    Send for warm-up plus window, measure the server over the window,
    then drain until every expected delivery is in (or it stops coming).
    """
    from benchmarks.procstat import CPUMark, rssKiB

    t0 = _NOW() + 0.2
    tWarm = t0 + timing.warmup
    tEnd = tWarm + timing.window
    out.update(t0=t0, tWarm=tWarm, tEnd=tEnd)
    pool.send(("go", t0, tWarm, tEnd))
    _sleepUntil(tWarm)
    if onWindow is not None:
        onWindow(timing.window)
    warm = CPUMark(serverPid) if serverPid is not None else None
    _sleepUntil(tEnd)
    if warm is not None:
        end = CPUMark(serverPid)
        out["cpu"] = warm.share(end)
        out["machineCores"] = warm.machineShare(end)
        out["rssEnd"] = rssKiB(serverPid)
    perMessage = plan.perMessage(0)
    drainStart = _NOW()
    last = -1
    lastChange = drainStart
    while True:
        time.sleep(0.1)
        delivered, sent, closed = pool.poll()
        now = _NOW()
        if delivered != last:
            last, lastChange = delivered, now
        if relay and delivered >= sent * perMessage:
            break
        if now - lastChange >= timing.drainQuiet or now - drainStart >= timing.drainMax:
            break
    out["drainSeconds"] = _NOW() - drainStart


def _sleepUntil(when: float) -> None:
    delay = when - _NOW()
    if delay > 0:
        time.sleep(delay)
