#!/usr/bin/env python3
"""
Soak test of the chat service (docs/hardening.rst, "Soak").

Starts C{twistd -n chat} as a subprocess on loopback (port 0, history in a
temporary directory) and drives it from this process with the Twisted
reactor:

  - chatters (default 150) in several rooms, one message a second each,
    every message numbered and time-stamped;
  - lurkers, who only read;
  - churners, who connect, log in, say something, C{/quit}, again and
    again (always under the same name: the name must be free again);
  - one slow reader that never reads after logging in (it must be cut at
    the send-queue limit, and the room must see it leave "too slow");
  - one flooder that sends paced bursts (delayed, not lost) and bursts
    past the receive-queue limit (disconnected with C{error: flood}), and
    reconnects;
  - one fuzzer sending random bytes, terminal escapes, invalid UTF-8,
    bidi controls and over-long lines (each refused with one error line,
    the connection kept).

While it runs it prints the server's RSS, open file descriptors and CPU.
At the end it checks, and exits 1 when any check fails:

  - RSS flat after the warm-up (the largest sample after the warm-up is
    within a margin of the first one);
  - the server's file descriptors back to their baseline once every
    client has gone;
  - every non-policed client (chatters, lurkers, the fuzzer) received
    every message of every chatter of its room exactly once and in order
    (deliveries checked, order errors, losses, duplicates);
  - p99 latency (sender's write to receiver's read) under a limit well
    under a second;
  - nothing unsafe (invalid UTF-8, raw controls, bidi overrides) in any
    line any client received;
  - the slow reader was cut, the fuzzer kept its connection and got one
    error line per over-long line, every churn cycle worked;
  - no traceback in the server's log.

Usage (from the project root, with the project's virtualenv)::

    python benchmarks/soak.py            # short CI mode: 3 minutes of traffic
    python benchmarks/soak.py --short    # the same
    python benchmarks/soak.py --minutes 30

It needs only Python, Twisted and the installed chatsvc plugin (no import
of the test suite or of other benchmark modules), and stops by itself:
every wait has a deadline, and a watchdog ends the run (killing the
server) if the whole thing overruns.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import time

from twisted.internet import defer, error, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

TICKS = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024

#: A room message in the text rendering: C{[ctime] #ROOM NAME: SEQ T ...}.
MESSAGE = re.compile(rb"^\[[^\]]*\] #([^ ]+) ([^ :]+): (\d+) (\d+\.\d+) ")
LISTENING = re.compile(rb"chat listening on tcp [^\s]+:(\d+)")
#: What must never reach a user raw (independent of chatsvc.net.text).
UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
TRACEBACK = (b"Traceback (most recent call last)", b"Unhandled Error")
NEWLINE = b"\n"

#: Pieces the fuzzer strings together.
FUZZ_PIECES = [
    b"\r",
    b"\x00",
    b"\x07",
    b"\x08",
    b"\x7f",
    b"\x1b[2J",
    b"\x1b[6n",
    b"\x1b]52;c;aGVsbG8=\x07",
    b"\x1b]0;title\x07",
    b"\xc2\x9b31m",
    b"\x9b",
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\x80\x80",
    "\u202e".encode(),
    "\u2066".encode(),
    "\u200b".encode(),
    "\u00e9".encode(),
    "\U0001f600".encode(),
    "\U0001f600".encode()[:3],
    b"\t",
    b"\\",
    b"%s%n",
    b"' OR 1=1 --",
    b"<script>",
    b"a",
    b" ",
]


def rssBytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def openFiles(pid: int) -> list[str]:
    base = f"/proc/{pid}/fd"
    targets = []
    for name in os.listdir(base):
        try:
            targets.append(os.readlink(os.path.join(base, name)))
        except OSError:
            pass
    return targets


def cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def sleep(seconds: float) -> defer.Deferred:
    from twisted.internet import reactor

    return task.deferLater(reactor, seconds, lambda: None)


def deadline(d: defer.Deferred, seconds: float) -> defer.Deferred:
    from twisted.internet import reactor

    return d.addTimeout(seconds, reactor)


class Latencies:
    """
    A histogram of latencies in 0.1 ms bins up to 10 s (bounded memory for
    a run of any length).
    """

    BIN = 0.0001
    BINS = 100_000

    def __init__(self) -> None:
        self.bins = [0] * (self.BINS + 1)
        self.count = 0
        self.worst = 0.0

    def add(self, seconds: float) -> None:
        index = int(seconds / self.BIN)
        self.bins[index if 0 <= index < self.BINS else self.BINS] += 1
        self.count += 1
        if seconds > self.worst:
            self.worst = seconds

    def quantile(self, q: float) -> float:
        if not self.count:
            return 0.0
        wanted = q * self.count
        seen = 0
        for index, n in enumerate(self.bins):
            seen += n
            if seen >= wanted:
                return min((index + 1) * self.BIN, self.worst)
        return self.worst


class Stats:
    def __init__(self) -> None:
        self.delivered = 0
        self.orderErrors = 0
        self.duplicates = 0
        self.unexpected = 0
        self.latency = Latencies()
        self.windowWorst = (0.0, "", "")
        self.unsafe = 0
        self.invalidUtf8 = 0
        self.samples: list[bytes] = []
        self.errors: dict[str, int] = {}
        self.slowCuts: list[float] = []
        self.slowWaiting = False
        self.floodCuts = 0
        self.floodPaced = 0
        self.fuzzSent = 0
        self.fuzzTooLongSent = 0
        self.fuzzTooLongReplies = 0
        self.fuzzErrors = 0
        self.fuzzLost = False
        self.churnCycles = 0
        self.churnFailures: list[str] = []
        self.crashes: list[str] = []

    def bad(self, kind: str, line: bytes) -> None:
        if len(self.samples) < 5:
            self.samples.append(kind.encode() + b": " + line[:200])


class Client(protocol.Protocol):
    """
    One chat connection: logs in, checks every line it reads, and (for
    the roles that are checked) keeps, per chatter of its room, the next
    message number it expects.
    """

    def __init__(self, soak: Soak, name: str, room: str, role: str) -> None:
        self.soak = soak
        self.stats = soak.stats
        self.name = name
        self.room = room
        self.role = role
        self.tracked = role in ("chatter", "lurker", "fuzzer")
        self.expect: dict[bytes, list] = {}
        self.buffer = b""
        self.loggedIn = defer.Deferred()
        self.closed = defer.Deferred()
        self.isClosed = False
        self.sent = 0
        self.reason = None

    def connectionMade(self) -> None:
        self.transport.write(f"{self.name} {self.room}\n".encode())

    def dataReceived(self, data: bytes) -> None:
        now = time.monotonic()
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        if len(self.buffer) > 65536:
            self.stats.unsafe += 1
            self.stats.bad("unbounded line from server", self.buffer)
            self.buffer = b""
        for line in lines:
            self.lineReceived(line, now)

    def lineReceived(self, line: bytes, now: float) -> None:
        stats = self.stats
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            stats.invalidUtf8 += 1
            stats.bad("invalid UTF-8", line)
            text = line.decode("utf-8", "replace")
        if UNSAFE.search(text) is not None:
            stats.unsafe += 1
            stats.bad("unsafe", line)
        match = MESSAGE.match(line)
        if match is not None:
            if self.tracked:
                self.account(match, now)
            return
        if not self.loggedIn.called:
            if line.startswith(b"success:"):
                self.loggedIn.callback(self)
            elif line.startswith((b"reuse:", b"error:", b"full:")):
                self.loggedIn.errback(RuntimeError(f"{self.name}: {line[:200]!r}"))
            return
        if line.endswith(b" left (too slow)") and stats.slowWaiting:
            if b"] #r0 slow left" in line:
                stats.slowCuts.append(now)
                stats.slowWaiting = False
        elif line.startswith(b"error:"):
            if self.role == "fuzzer":
                if b"line too long" in line:
                    stats.fuzzTooLongReplies += 1
                else:
                    stats.fuzzErrors += 1
            elif self.role == "flooder" and line.startswith(b"error: flood"):
                stats.floodCuts += 1
            else:
                key = f"{self.role}: {line[:60].decode('utf-8', 'replace')}"
                stats.errors[key] = stats.errors.get(key, 0) + 1

    def account(self, match, now: float) -> None:
        stats = self.stats
        sender = match.group(2)
        state = self.expect.get(sender)
        if state is None:
            if sender in self.soak.chatterNames:
                stats.unexpected += 1
                stats.bad("message from a chatter of another room", match.group(0))
            return
        seq = int(match.group(3))
        expected = state[0]
        if seq == expected:
            state[0] = seq + 1
        elif seq > expected:
            stats.orderErrors += 1
            state[1].update(range(expected, seq))
            state[0] = seq + 1
        elif seq in state[1]:
            state[1].discard(seq)
            stats.orderErrors += 1
        else:
            stats.duplicates += 1
            return
        stats.delivered += 1
        latency = now - float(match.group(4))
        stats.latency.add(latency)
        if latency > stats.windowWorst[0]:
            stats.windowWorst = (latency, self.name, sender.decode())

    def say(self) -> None:
        """
        One numbered, time-stamped message (a chatter's tick).
        """
        if self.isClosed:
            return
        self.transport.write(b"%d %.6f %s\n" % (self.sent, time.monotonic(), self.soak.padding))
        self.sent += 1

    def connectionLost(self, reason=None) -> None:
        self.isClosed = True
        self.reason = reason
        if not self.loggedIn.called:
            self.loggedIn.errback(RuntimeError(f"{self.name}: closed before login"))
        self.closed.callback(None)

    def waitClosed(self, seconds: float) -> defer.Deferred:
        if self.isClosed:
            return defer.succeed(None)
        d = defer.Deferred()
        self.closed.addBoth(lambda r: (d.called or d.callback(None), r)[1])
        return deadline(d, seconds)


class Server(protocol.ProcessProtocol):
    """
    C{twistd -n chat} in a subprocess; keeps its output.
    """

    def __init__(self) -> None:
        self.output = bytearray()
        self.port: int | None = None
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.exitCode: int | None = None
        self.exitSignal: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if self.port is None:
            match = LISTENING.search(self.output)
            if match is not None:
                self.port = int(match.group(1))
                self.ready.callback(self.port)

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.exitCode = reason.value.exitCode
        self.exitSignal = reason.value.signal
        if not self.ready.called:
            self.ready.errback(RuntimeError("twistd chat exited before listening"))
        self.ended.callback(None)

    @property
    def pid(self) -> int:
        return self.transport.pid


class Soak:
    def __init__(self, args, reactor) -> None:
        self.args = args
        self.reactor = reactor
        self.stats = Stats()
        self.random = random.Random(args.seed)
        self.running = True
        self.rooms = [f"r{i}" for i in range(args.rooms)]
        self.chatters: list[Client] = []
        self.receivers: list[Client] = []
        self.clients: set[Client] = set()
        self.chatterNames = {f"c{i}".encode() for i in range(args.chatters)}
        self.padding = "padding \u00e9\u00e8 \U0001f600 lorem ipsum dolor sit amet".encode()
        self.samples: list[tuple] = []
        self.fuzzer: Client | None = None
        self.slow: Client | None = None

    def say(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    # -- the server ----------------------------------------------------------------

    async def startServer(self) -> None:
        args = self.args
        self.directory = tempfile.mkdtemp(prefix="chatsvc-soak-")
        argv = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--history",
            os.path.join(self.directory, "history.sqlite3"),
            "--send-queue",
            str(args.send_queue),
            "--max-clients",
            str(max(1000, 2 * self.expectedClients())),
            "--flood-rate",
            str(args.flood_rate),
            "--flood-burst",
            str(args.flood_burst),
        ]
        environ = dict(os.environ, PYTHONUNBUFFERED="1")
        self.server = Server()
        self.reactor.spawnProcess(
            self.server, sys.executable, argv, env=environ, path=self.directory
        )
        await deadline(self.server.ready, 30)
        self.say(f"server: pid {self.server.pid}, port {self.server.port}, dir {self.directory}")
        self.say("        " + " ".join(argv[3:]))

    def expectedClients(self) -> int:
        a = self.args
        return a.chatters + a.lurkers + a.churners + 3

    async def stopServer(self) -> float:
        started = time.monotonic()
        if self.server.exitCode is None and self.server.exitSignal is None:
            self.server.transport.signalProcess("TERM")
            try:
                await deadline(self.server.ended, 15)
            except defer.TimeoutError:
                self.server.transport.signalProcess("KILL")
                await deadline(self.server.ended, 10)
        return time.monotonic() - started

    # -- clients ----------------------------------------------------------------------

    async def connect(self, name: str, room: str, role: str) -> Client:
        client = Client(self, name, room, role)
        if role == "slow":
            self.connectSmallWindow(client)
        else:
            endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.server.port, timeout=10)
            await deadline(connectProtocol(endpoint, client), 15)
        self.clients.add(client)
        client.closed.addBoth(lambda _: self.clients.discard(client))
        await deadline(client.loggedIn, 20)
        return client

    def connectSmallWindow(self, client: Client) -> None:
        """
        Connect C{client} with a small receive buffer set before the
        connect (which also stops the kernel from growing it): a client
        that wants to be a slow reader controls that, and it keeps the
        kernel from absorbing minutes of room traffic before the server's
        send queue is ever used.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", self.server.port))
            sock.setblocking(False)
            factory = protocol.Factory()
            factory.buildProtocol = lambda addr: client
            self.reactor.adoptStreamConnection(sock.fileno(), socket.AF_INET, factory)
        finally:
            sock.close()

    async def connectTracked(self) -> None:
        a = self.args
        pending = []
        for i in range(a.chatters):
            pending.append(self.connect(f"c{i}", self.rooms[i % a.rooms], "chatter"))
        for i in range(a.lurkers):
            pending.append(self.connect(f"l{i}", self.rooms[i % a.rooms], "lurker"))
        pending.append(self.connect("fz", self.rooms[0], "fuzzer"))
        clients = await defer.gatherResults(
            [defer.ensureDeferred(p) for p in pending], consumeErrors=True
        )
        for client in clients:
            if client.role == "chatter":
                self.chatters.append(client)
            elif client.role == "fuzzer":
                self.fuzzer = client
            self.receivers.append(client)
        for receiver in self.receivers:
            for chatter in self.chatters:
                if chatter.room == receiver.room and chatter is not receiver:
                    receiver.expect[chatter.name.encode()] = [0, set()]

    # -- roles -----------------------------------------------------------------------

    def startChatters(self) -> list:
        loops = []
        for chatter in self.chatters:
            loop = task.LoopingCall(chatter.say)
            loop.clock = self.reactor
            loops.append(loop)
            self.reactor.callLater(self.random.random(), self._startLoop, loop)
        return loops

    def _startLoop(self, loop) -> None:
        if self.running:
            loop.start(1.0, now=True)

    async def slowReader(self, first: defer.Deferred) -> None:
        """
        A client that stops reading once logged in; each time the room sees
        it cut ("too slow"), another one takes its place.
        """
        while self.running:
            try:
                slow = await self.connect("slow", self.rooms[0], "slow")
            except Exception as e:
                self.stats.errors[f"slow reader login: {e}"] = 1
                await self.wait(1)
                continue
            slow.transport.pauseProducing()
            self.slow = slow
            self.stats.slowWaiting = True
            if not first.called:
                first.callback(None)
            while self.running and self.stats.slowWaiting:
                await sleep(0.5)
            if self.running:
                slow.transport.abortConnection()
                await self.wait(1)

    async def flooder(self) -> None:
        n = 0
        while self.running:
            try:
                client = await self.connect("flood", self.rooms[0], "flooder")
            except Exception as e:
                self.stats.errors[f"flooder login: {e}"] = 1
                await sleep(1)
                continue
            # A burst of long lines within the receive queue: paced by the
            # flood rate, nothing lost (and a heavy stream for the slow
            # reader of the same room).
            paced = 150
            filler = b"f" * 1900
            client.transport.write(
                b"".join(b"flood paced %d %s\n" % (i, filler) for i in range(paced))
            )
            self.stats.floodPaced += paced
            await self.wait(paced / self.args.flood_rate + 2)
            if not self.running:
                client.transport.write(b"/quit\n")
                break
            # A burst past the receive queue: disconnected with error: flood.
            client.transport.write(b"".join(b"flood burst %d %d\n" % (n, i) for i in range(1000)))
            n += 1
            try:
                await client.waitClosed(15)
            except defer.TimeoutError:
                self.stats.errors["flooder not disconnected after 1000 lines"] = n
                client.transport.abortConnection()
            await self.wait(1)

    def fuzzLine(self) -> tuple[bytes, bool]:
        rnd = self.random
        kind = rnd.random()
        if kind < 0.1:
            size = rnd.randint(2049, 10000)
            line = bytes(rnd.choice(b"ab\xff\x1b \r\xc3") for _ in range(size)) + b"!"
            return line, True
        parts = []
        for _ in range(rnd.randint(1, 12)):
            if rnd.random() < 0.5:
                parts.append(rnd.choice(FUZZ_PIECES))
            else:
                parts.append(bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16))))
        body = b"".join(parts).replace(b"\n", b"")
        if kind < 0.2:
            line = b"/me " + body
        elif kind < 0.25:
            line = b"/msg c1 " + body
        elif kind < 0.3:
            line = b"/who " + body
        elif kind < 0.33:
            line = b"/" + bytes(rnd.choice(b"abcxyz") for _ in range(5)) + b" " + body
        else:
            line = body if not body.startswith(b"/") else b"x" + body
        return line, False

    async def fuzz(self, stopAt: float) -> None:
        client = self.fuzzer
        while self.running and time.monotonic() < stopAt:
            if client.isClosed:
                self.stats.fuzzLost = True
                return
            line, tooLong = self.fuzzLine()
            client.transport.write(line + b"\n")
            self.stats.fuzzSent += 1
            self.stats.fuzzTooLongSent += tooLong
            await sleep(1 / self.args.fuzz_rate)

    async def churner(self, index: int) -> None:
        name = f"h{index}"
        while self.running:
            room = self.random.choice(self.rooms)
            try:
                client = await self.connect(name, room, "churner")
                client.transport.write(b"churning through\n")
                await sleep(self.random.uniform(0.1, 1.0))
                client.transport.write(b"/quit churning\n")
                await client.waitClosed(10)
                self.stats.churnCycles += 1
            except Exception as e:
                self.stats.churnFailures.append(f"{name}: {e!r}"[:200])
                for c in list(self.clients):
                    if c.name == name:
                        c.transport.abortConnection()
            await self.wait(self.random.uniform(0.2, 1.0))

    async def wait(self, seconds: float) -> None:
        """
        Sleep, waking early (within a second) once the run is over.
        """
        end = time.monotonic() + seconds
        while self.running and time.monotonic() < end:
            await sleep(min(1.0, end - time.monotonic()))

    # -- measuring ---------------------------------------------------------------------

    def sample(self, start: float) -> None:
        pid = self.server.pid
        try:
            rss = rssBytes(pid)
            fds = len(openFiles(pid))
            cpu = cpuSeconds(pid)
        except OSError:
            return
        now = time.monotonic()
        elapsed = now - start
        if self.samples:
            _, _, _, lastCpu, lastNow = self.samples[-1]
            share = (cpu - lastCpu) / max(1e-9, now - lastNow)
        else:
            share = 0.0
        self.samples.append((elapsed, rss, fds, cpu, now))
        lat = self.stats.latency
        worst, receiver, sender = self.stats.windowWorst
        self.stats.windowWorst = (0.0, "", "")
        self.say(
            f"t={elapsed:6.0f}s  rss={rss / MiB:7.1f} MiB  fds={fds:5d}  cpu={share * 100:5.1f}%  "
            f"clients={len(self.clients):4d}  delivered={self.stats.delivered:9d}  "
            f"p99={lat.quantile(0.99) * 1000:7.1f} ms  "
            f"worst={worst * 1000:7.1f} ms ({sender}->{receiver})"
        )

    async def serverFiles(self) -> list[str]:
        return openFiles(self.server.pid)

    async def settledFiles(self, seconds: float, target: int | None = None) -> list[str]:
        """
        The server's open files once their number stops changing (or
        reaches C{target}), within C{seconds}.
        """
        end = time.monotonic() + seconds
        files = openFiles(self.server.pid)
        stable = 0
        while time.monotonic() < end:
            await sleep(0.25)
            now = openFiles(self.server.pid)
            if target is not None and len(now) == target:
                return now
            stable = stable + 1 if len(now) == len(files) else 0
            files = now
            if target is None and stable >= 4:
                return files
        return files

    def allDelivered(self) -> bool:
        sent = {c.name.encode(): c.sent for c in self.chatters}
        for receiver in self.receivers:
            if receiver.isClosed:
                continue
            for sender, state in receiver.expect.items():
                if state[0] < sent[sender] or state[1]:
                    return False
        return True

    def losses(self) -> int:
        sent = {c.name.encode(): c.sent for c in self.chatters}
        lost = 0
        for receiver in self.receivers:
            for sender, state in receiver.expect.items():
                lost += len(state[1]) + max(0, sent[sender] - state[0])
        return lost

    def expectedDeliveries(self) -> int:
        sent = {c.name.encode(): c.sent for c in self.chatters}
        return sum(sent[s] for r in self.receivers for s in r.expect)

    # -- the run ------------------------------------------------------------------------

    async def run(self) -> int:
        a = self.args
        self.say(
            f"soak: {a.duration:.0f} s of traffic, warm-up {a.warmup:.0f} s, {a.chatters} chatters "
            f"in {a.rooms} rooms at 1 msg/s, {a.lurkers} lurkers, {a.churners} churners, "
            f"1 slow reader, 1 flooder, 1 fuzzer; send queue {a.send_queue} bytes, "
            f"flood rate {a.flood_rate:g}/s burst {a.flood_burst}"
        )
        await self.startServer()
        # Warm the server once (history file, first login), then take the
        # baseline of open files with nobody connected.
        probe = await self.connect("probe", "r0", "probe")
        probe.transport.write(b"hello\n/quit\n")
        await probe.waitClosed(10)
        baseline = await self.settledFiles(5)
        self.say(
            f"baseline: {len(baseline)} open files, rss {rssBytes(self.server.pid) / MiB:.1f} MiB"
        )

        await self.connectTracked()
        slowStarted = defer.Deferred()
        slow = defer.ensureDeferred(self.slowReader(slowStarted))
        await deadline(slowStarted, 20)
        self.say(f"connected: {len(self.receivers)} checked clients, slow reader paused")

        start = time.monotonic()
        end = start + a.duration
        sampler = task.LoopingCall(self.sample, start)
        sampler.clock = self.reactor
        sampler.start(a.sample_interval, now=True)
        loops = self.startChatters()
        background = [slow, defer.ensureDeferred(self.flooder())]
        background.append(defer.ensureDeferred(self.fuzz(end - 5)))
        background += [defer.ensureDeferred(self.churner(i)) for i in range(a.churners)]

        while time.monotonic() < end:
            await sleep(min(1.0, end - time.monotonic()))

        # Stop sending, let everything be delivered.
        self.running = False
        for loop in loops:
            if loop.running:
                loop.stop()
        drainStart = time.monotonic()
        while not self.allDelivered() and time.monotonic() - drainStart < 20:
            await sleep(0.2)
        drained = time.monotonic() - drainStart
        for ok, result in await defer.DeferredList(background, consumeErrors=True):
            if not ok:
                self.stats.crashes.append(result.getTraceback())
        sampler.stop()
        self.sample(start)

        # Everybody leaves.
        if self.slow is not None and not self.slow.isClosed:
            self.slow.transport.resumeProducing()
        for client in list(self.clients):
            client.transport.write(b"/quit\n")
        for client in list(self.clients):
            try:
                await client.waitClosed(10)
            except defer.TimeoutError:
                client.transport.abortConnection()
        await sleep(0.5)
        final = await self.settledFiles(20, target=len(baseline))
        finalRss = rssBytes(self.server.pid)
        stopTime = await self.stopServer()
        return self.report(baseline, final, finalRss, drained, stopTime)

    # -- the verdict ------------------------------------------------------------------------

    def report(self, baseline, final, finalRss, drained, stopTime) -> int:
        a = self.args
        s = self.stats
        checks = []

        def check(ok: bool, text: str) -> None:
            checks.append(ok)
            self.say(f"  [{'PASS' if ok else 'FAIL'}] {text}")

        def info(text: str) -> None:
            self.say(f"  [info] {text}")

        self.say("== soak result")
        after = [(t, rss) for (t, rss, *_rest) in self.samples if t >= a.warmup]
        if len(after) >= 2:
            warm = after[0][1]
            peak = max(rss for _, rss in after)
            margin = max(a.rss_margin * MiB, warm * a.rss_percent / 100)
            check(
                peak - warm <= margin,
                f"RSS flat after warm-up: {warm / MiB:.1f} MiB at {after[0][0]:.0f} s, "
                f"peak {peak / MiB:.1f} MiB (+{(peak - warm) / MiB:.1f}), "
                f"end {finalRss / MiB:.1f} MiB; margin {margin / MiB:.1f} MiB",
            )
        else:
            check(False, "RSS flat after warm-up: too few samples after the warm-up")
        peakFds = max((fds for _, _, fds, *_rest in self.samples), default=0)
        ok = len(final) == len(baseline)
        check(
            ok,
            f"open files back to baseline: baseline {len(baseline)}, peak {peakFds}, "
            f"end {len(final)}",
        )
        if not ok:
            extra = sorted(set(final) - set(baseline))
            info(f"files not in the baseline: {extra[:10]}")
        expected = self.expectedDeliveries()
        lost = self.losses()
        check(
            s.orderErrors == 0 and lost == 0 and s.duplicates == 0 and s.unexpected == 0,
            f"exactly once, in order: {s.delivered} deliveries checked of {expected} expected; "
            f"order errors {s.orderErrors}, losses {lost}, duplicates {s.duplicates}, "
            f"misrouted {s.unexpected} (drained in {drained:.1f} s)",
        )
        lat = s.latency
        p99 = lat.quantile(0.99)
        check(
            p99 < a.p99_limit,
            f"latency p99 {p99 * 1000:.1f} ms < {a.p99_limit * 1000:g} ms "
            f"(p50 {lat.quantile(0.5) * 1000:.1f} ms, p99.9 {lat.quantile(0.999) * 1000:.1f} ms, "
            f"max {lat.worst * 1000:.1f} ms)",
        )
        check(
            s.unsafe == 0 and s.invalidUtf8 == 0,
            f"nothing unsafe received: {s.unsafe} lines with raw controls, "
            f"{s.invalidUtf8} with invalid UTF-8",
        )
        for sample in s.samples:
            info(f"sample: {sample!r}")
        cuts = ", ".join(f"{t - self.samples[0][4]:.0f}" for t in s.slowCuts[:20])
        check(
            bool(s.slowCuts),
            f"slow reader cut at the send-queue limit {len(s.slowCuts)} times "
            f"(the room saw it leave 'too slow' at t= {cuts or '-'} s)",
        )
        check(
            not s.fuzzLost and s.fuzzTooLongReplies == s.fuzzTooLongSent,
            f"fuzzer kept its connection: {s.fuzzSent} fuzz lines, "
            f"{s.fuzzTooLongSent} over-long, {s.fuzzTooLongReplies} 'line too long' replies, "
            f"{s.fuzzErrors} other error replies",
        )
        check(
            not s.churnFailures and s.churnCycles > 0,
            f"churners: {s.churnCycles} connect/login/quit cycles, {len(s.churnFailures)} failures",
        )
        for failure in s.churnFailures[:5]:
            info(f"churn failure: {failure}")
        check(not s.crashes, f"client tasks that crashed: {len(s.crashes)}")
        for crash in s.crashes[:3]:
            info(crash)
        if len(self.samples) >= 2:
            first, last = self.samples[0], self.samples[-1]
            share = (last[3] - first[3]) / max(1e-9, last[4] - first[4])
            info(f"server CPU: {share * 100:.1f}% of one core on average during the traffic")
        info(f"flooder: {s.floodPaced} paced lines sent, {s.floodCuts} disconnects for flood")
        for key, count in sorted(s.errors.items()):
            info(f"unexpected error line x{count}: {key}")
        output = bytes(self.server.output)
        tracebacks = sum(output.count(marker) for marker in TRACEBACK)
        check(tracebacks == 0, f"tracebacks in the server log: {tracebacks}")
        if tracebacks:
            index = min(i for i in (output.find(m) for m in TRACEBACK) if i >= 0)
            info(output[max(0, index - 200) : index + 2000].decode("utf-8", "replace"))
        exit = (
            f"exit status {self.server.exitCode}"
            if self.server.exitSignal is None
            else f"killed by signal {self.server.exitSignal}"
        )
        info(f"server stopped on SIGTERM in {stopTime:.1f} s, {exit}")
        cutLines = output.count(b"send queue over")
        info(f"server log: {output.count(NEWLINE)} lines, {cutLines} send-queue disconnects")
        passed = all(checks)
        self.say(f"RESULT: {'PASS' if passed else 'FAIL'}")
        if not a.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            self.say(f"kept {self.directory}")
        return 0 if passed else 1


def parseArgs(argv=None):
    parser = argparse.ArgumentParser(
        description="Soak the chat service (docs/hardening.rst): short CI mode by default."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--short", action="store_true", help="CI mode: 3 minutes of traffic (the default)"
    )
    mode.add_argument("--minutes", type=float, help="minutes of traffic (long mode: 30)")
    parser.add_argument("--chatters", type=int, default=150)
    parser.add_argument("--lurkers", type=int, default=30)
    parser.add_argument("--churners", type=int, default=10)
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument(
        "--send-queue",
        type=int,
        default=128 * 1024,
        help="the server's --send-queue, small enough that the slow reader is cut "
        "within the short run (default %(default)s)",
    )
    parser.add_argument(
        "--flood-rate",
        type=float,
        default=20.0,
        help="the server's --flood-rate (lines/s after the burst); the flooder's paced "
        "bursts of long lines then load the slow reader's room enough that it is cut "
        "within the short run (default %(default)s)",
    )
    parser.add_argument(
        "--flood-burst",
        type=int,
        default=40,
        help="the server's --flood-burst (default %(default)s)",
    )
    parser.add_argument("--fuzz-rate", type=float, default=3.0, help="fuzz lines per second")
    parser.add_argument("--warmup", type=float, help="seconds before RSS must be flat")
    parser.add_argument("--sample-interval", type=float, help="seconds between samples")
    parser.add_argument("--rss-margin", type=float, default=8.0, help="MiB (default 8)")
    parser.add_argument(
        "--rss-percent", type=float, default=10.0, help="or this %% of RSS, if more"
    )
    parser.add_argument(
        "--p99-limit",
        type=float,
        default=0.5,
        help="seconds (default %(default)s: well under a second, with room for a CI "
        "machine shared with other jobs)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else 3.0
    args.duration = minutes * 60
    if args.warmup is None:
        args.warmup = min(300.0, args.duration / 3)
    if args.sample_interval is None:
        args.sample_interval = 5.0 if minutes <= 5 else 30.0
    if args.rooms < 1 or args.chatters < 1:
        parser.error("need at least one room and one chatter")
    return args


def main(argv=None) -> None:
    args = parseArgs(argv)

    async def go(reactor):
        soak = Soak(args, reactor)
        limit = args.duration + 180

        def overrun():
            soak.say(f"RESULT: FAIL (watchdog: the run took over {limit:.0f} s)")
            server = getattr(soak, "server", None)
            if server is not None and server.exitCode is None:
                try:
                    server.transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass
            os._exit(1)

        watchdog = reactor.callLater(limit, overrun)
        try:
            code = await soak.run()
        except Exception:
            server = getattr(soak, "server", None)
            if server is not None and server.exitCode is None and server.exitSignal is None:
                server.transport.signalProcess("KILL")
            raise
        finally:
            if watchdog.active():
                watchdog.cancel()
        if code:
            raise SystemExit(code)

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    task.react(lambda reactor: defer.ensureDeferred(go(reactor)))


if __name__ == "__main__":
    main()
