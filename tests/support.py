"""
Helpers for tests on real sockets and real processes.

L{LineClient} is a loopback client that hands out received lines as
Deferreds; L{TwistdProcess} runs C{twistd -n SERVICE} in a subprocess and
tells the test which port it bound (the services log
C{listening on tcp HOST:PORT}).  Every wait has a generous deadline that
turns a hang into a failure; no test depends on timing otherwise.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections import deque

from twisted.internet import defer, error, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

#: Deadline for any single wait, in seconds.  Only hit when something hangs.
DEADLINE = 30.0


class DeadlineExceeded(Exception):
    """
    A wait took longer than L{DEADLINE}: the thing awaited never happened.
    """


def withDeadline(d: defer.Deferred, what: str, seconds: float = DEADLINE) -> defer.Deferred:
    """
    Fail C{d} with L{DeadlineExceeded} if it has not fired in C{seconds}.
    """
    timer = reactor.callLater(
        seconds, lambda: d.called or d.errback(DeadlineExceeded(f"waited {seconds}s for {what}"))
    )

    def done(result):
        if timer.active():
            timer.cancel()
        return result

    return d.addBoth(done)


class LineClient(protocol.Protocol):
    """
    A test client: collects LF-terminated lines (bytes, ending removed).

    @ivar lines: lines received and not yet read with L{readLine}.
    @ivar received: every byte received, in order.
    """

    delimiter = b"\n"

    def __init__(self) -> None:
        self.lines: deque[bytes] = deque()
        self._waiters: deque[defer.Deferred] = deque()
        self._buffer = b""
        self.received = bytearray()
        # Not "connected": Protocol.makeConnection sets that to 1 before
        # connectionMade, which broke every connect().
        self.made = defer.Deferred()
        self.closed = defer.Deferred()
        self.isClosed = False

    def connectionMade(self) -> None:
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._buffer += data
        *complete, self._buffer = self._buffer.split(self.delimiter)
        for line in complete:
            if self._waiters:
                self._waiters.popleft().callback(line)
            else:
                self.lines.append(line)

    def connectionLost(self, reason=None) -> None:
        self.isClosed = True
        waiters, self._waiters = self._waiters, deque()
        for d in waiters:
            d.errback(error.ConnectionDone("closed while waiting for a line"))
        self.closed.callback(None)

    def readLine(self, seconds: float = DEADLINE) -> defer.Deferred:
        """
        The next line (bytes), now or when it arrives.
        """
        if self.lines:
            return defer.succeed(self.lines.popleft())
        if self.isClosed:
            return defer.fail(error.ConnectionDone("connection closed"))
        d = defer.Deferred()
        self._waiters.append(d)
        return withDeadline(d, "a line", seconds)

    async def readText(self) -> str:
        """
        The next line, decoded from UTF-8.
        """
        return (await self.readLine()).decode("utf-8")

    async def readLines(self, count: int) -> list[bytes]:
        """
        The next C{count} lines.
        """
        return [await self.readLine() for _ in range(count)]

    def sendLine(self, line) -> None:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.transport.write(line + b"\n")

    def waitClosed(self) -> defer.Deferred:
        """
        Fires when the server has closed the connection.
        """
        if self.isClosed:
            return defer.succeed(None)
        d = defer.Deferred()
        self.closed.addBoth(lambda r: (d.called or d.callback(None), r)[1])
        return withDeadline(d, "the connection to close")

    async def close(self) -> None:
        """
        Close from our side and wait until the connection is gone.
        """
        if not self.isClosed:
            self.transport.loseConnection()
        await self.waitClosed()


async def connect(port: int, host: str = "127.0.0.1", factory=LineClient) -> LineClient:
    """
    Connect a L{LineClient} (or C{factory()}) to C{host:port}.
    """
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=10)
    return await withDeadline(connectProtocol(endpoint, factory()), "connect")


async def waitFor(predicate, what: str, seconds: float = DEADLINE, step: float = 0.01):
    """
    Wait until C{predicate()} is true, looking at each reactor turn (for
    state that has no event of its own, such as a server's connection set).
    """
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + seconds
    while not predicate():
        if reactor.seconds() > deadline:
            raise DeadlineExceeded(f"waited {seconds}s for {what}")
        await deferLater(reactor, step, lambda: None)


_LISTENING = re.compile(rb"listening on (tcp|tls|udp|unix) ([^\s]+)")


class TwistdProcess(protocol.ProcessProtocol):
    """
    C{twistd -n --pidfile= SERVICE ARGS...} in a subprocess.

    @ivar output: everything it printed (stdout and stderr together).
    @ivar listening: C{(kind, address)} pairs from its
        C{listening on ...} log lines, in order.
    """

    def __init__(self) -> None:
        self.output = bytearray()
        self.stderr = bytearray()
        self.listening: list[tuple[str, str]] = []
        self._ready: defer.Deferred | None = None
        self._wanted = 1
        self.ended = defer.Deferred()
        self.exitCode: int | None = None

    @classmethod
    async def start(
        cls, service: str, *args: str, cwd: str, listeners: int = 1, env: dict | None = None
    ) -> TwistdProcess:
        """
        Start the service and wait until C{listeners} listeners are up.
        """
        self = cls()
        self._wanted = listeners
        self._spawn(service, args, cwd, env)
        try:
            await withDeadline(self._ready, f"twistd {service} to listen")
        except Exception:
            self.kill()
            await self.wait()
            raise
        return self

    @classmethod
    async def startOrEnd(cls, service: str, *args: str, cwd: str) -> TwistdProcess:
        """
        Start the service and wait until it listens or exits, whichever
        comes first: for a start that should be refused, so that one that
        is not fails at once.  C{exitCode} is L{None} while it runs.
        """
        self = cls()
        self._spawn(service, args, cwd, None)
        either = defer.DeferredList(
            [self._ready, self.ended], fireOnOneCallback=True, consumeErrors=True
        )
        try:
            await withDeadline(either, f"twistd {service} to listen or exit")
        except Exception:
            self.kill()
            await self.wait()
            raise
        return self

    def wrapper(self) -> tuple[str, ...]:
        """
        A command that runs twistd's command line (and becomes it, so
        that signals reach twistd): none here; C{ip netns exec NS} for a
        node in a network namespace.
        """
        return ()

    def _spawn(self, service: str, args, cwd: str, env: dict | None) -> None:
        self._ready = defer.Deferred()
        argv = [
            *self.wrapper(),
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            service,
            *args,
        ]
        environ = dict(os.environ)
        environ.pop("NO_COLOR", None)
        environ["PYTHONUNBUFFERED"] = "1"
        if env:
            environ.update(env)
        self.transport = reactor.spawnProcess(self, argv[0], argv, env=environ, path=cwd)

    def port(self, index: int = 0) -> int:
        """
        The port number of the C{index}th listener.
        """
        return int(self.listening[index][1].rsplit(":", 1)[1])

    def outReceived(self, data: bytes) -> None:
        self._collect(data)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        self._collect(data)

    def _collect(self, data: bytes) -> None:
        start = len(self.output)
        self.output += data
        text = bytes(self.output[max(0, start - 200) :])
        for match in _LISTENING.finditer(text):
            entry = (match.group(1).decode(), match.group(2).decode())
            if entry not in self.listening:
                self.listening.append(entry)
        if self._ready is not None and len(self.listening) >= self._wanted:
            ready, self._ready = self._ready, None
            ready.callback(self)

    def processEnded(self, reason) -> None:
        self.exitCode = reason.value.exitCode
        if self._ready is not None:
            ready, self._ready = self._ready, None
            ready.errback(
                RuntimeError(
                    f"twistd exited ({self.exitCode}) before listening:\n"
                    + self.output.decode("utf-8", "replace")
                )
            )
        self.ended.callback(self.exitCode)

    def signal(self, name: str = "TERM") -> None:
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass

    def kill(self) -> None:
        self.signal("KILL")

    def wait(self, seconds: float = DEADLINE) -> defer.Deferred:
        """
        Fires with the exit code once the process has ended.
        """
        if self.exitCode is not None or self.ended.called:
            return defer.succeed(self.exitCode)
        d = defer.Deferred()
        self.ended.addBoth(lambda r: (d.called or d.callback(r), r)[1])
        return withDeadline(d, "twistd to exit", seconds)

    async def stop(self) -> int | None:
        """
        SIGTERM, and wait for the exit code (SIGKILL if it hangs).
        """
        if self.exitCode is None:
            self.signal("TERM")
            try:
                return await self.wait()
            except DeadlineExceeded:
                self.kill()
                await self.wait()
                raise
        return self.exitCode


async def runProcess(
    argv: list[str],
    stdin: bytes = b"",
    cwd: str | None = None,
    env: dict | None = None,
    seconds: float = DEADLINE,
):
    """
    Run a command to completion: C{(exitCode, stdout, stderr)}.
    """
    proto = _Collect(stdin)
    environ = dict(os.environ)
    if env:
        environ.update(env)
    transport = reactor.spawnProcess(proto, argv[0], argv, env=environ, path=cwd)
    try:
        return await withDeadline(proto.done, " ".join(argv[:3]), seconds)
    except DeadlineExceeded:
        try:
            transport.signalProcess(signal.SIGKILL)
        except error.ProcessExitedAlready:
            pass
        raise


class _Collect(protocol.ProcessProtocol):
    def __init__(self, stdin: bytes) -> None:
        self.stdin = stdin
        self.out = bytearray()
        self.err = bytearray()
        self.done = defer.Deferred()

    def connectionMade(self) -> None:
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        self.done.callback((reason.value.exitCode, bytes(self.out), bytes(self.err)))
