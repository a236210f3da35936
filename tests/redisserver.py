"""
A throwaway C{redis-server} for tests that need a real one (the cluster
mode, C{twistd chat --redis URL}).

L{startRedis} starts one on a free loopback port with nothing persisted
(C{--save ""}, no append-only file, its own temporary C{--dir}) and
stops it after the test.  Readiness is an event: the server's own
C{Ready to accept connections} line on its standard output, within a
deadline.  The test can freeze it (L{RedisServer.pause}, SIGSTOP: it
holds its connections but answers nothing, as a stuck server would), kill
it (SIGKILL: connections reset) and bring it back on the same port
(L{RedisServer.restart}).

L{redisCommand} asks it something over a plain blocking socket with a
timeout, for assertions about keys; L{skipUnlessRedis} is the reason to
skip when C{redis-server} is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile

from twisted.internet import defer, error, protocol, reactor

from tests.support import DEADLINE, DeadlineExceeded, withDeadline

#: Why tests that need C{redis-server} skip, or L{None} when it is installed.
skipUnlessRedis: str | None = (
    None
    if shutil.which("redis-server")
    else "redis-server is not installed (Debian package redis-server; .ci/run installs it)"
)

#: What C{redis-server} prints once it accepts connections.
READY = b"Ready to accept connections"

#: What it prints when its port was taken between our choosing it and its bind.
IN_USE = b"Address already in use"

#: How many ports L{RedisServer.start} tries when another program takes
#: the one it chose before C{redis-server} binds it.
PORT_ATTEMPTS = 5

#: Seconds a server gets to exit after SIGTERM before it is killed.
STOP_GRACE = 10.0

#: On Linux, C{redis-server} is started through this: it asks the kernel
#: to kill it when the test process dies (C{PR_SET_PDEATHSIG}), so a test
#: run that is itself killed leaves no server behind, then becomes
#: C{redis-server} (same PID).  C{argv[1]} is our PID, to catch a parent
#: that died before the request was made.
_ORPHAN_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def freePort() -> int:
    """
    A loopback TCP port nobody listens on right now: the kernel's choice
    for a socket bound to port 0.  Another program may take it before
    C{redis-server} binds it; L{RedisServer.start} then tries another.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisError(Exception):
    """
    An error reply (C{-ERR ...}) from the server: its text.
    """


class RedisConnection:
    """
    A blocking RESP2 connection to C{127.0.0.1:port} for tests: every
    read has a timeout, so a server that does not answer (paused, gone)
    is a C{TimeoutError}, not a hang.  Commands may be sent and their
    replies read later (L{send}, L{read}), so a test can show that a
    command sent to a paused server is answered once it resumes.
    """

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, *args) -> None:
        """
        Send one command (C{"SET", "k", b"v"}): an array of bulk strings.
        """
        self.sock.sendall(encodeCommand(*args))

    def read(self, timeout: float | None = None):
        """
        One reply: a simple string as L{str}, an integer as L{int}, a bulk
        string as L{bytes}, an array as a L{list}, nil as L{None}; an error
        reply raises L{RedisError} (inside an array, it is returned as
        one, as C{EXEC}'s results are).  A reply that does not come within
        C{timeout} seconds raises C{TimeoutError}; what had arrived of it
        is kept, so reading again carries on.
        """
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        reply = self._reply()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def command(self, *args, timeout: float | None = None):
        """
        Send one command and read its reply (L{read}).
        """
        self.send(*args)
        return self.read(timeout)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis-server closed the connection")
        self._buffer += data

    def _line(self, at: int) -> tuple[bytes, int]:
        while True:
            end = self._buffer.find(b"\r\n", at)
            if end >= 0:
                return self._buffer[at:end], end + 2
            self._fill()

    def _parse(self, at: int):
        """
        The reply starting at C{self._buffer[at:]} and where it ends,
        reading more as needed.  Nothing is consumed here, so a timeout
        part way leaves the buffer whole.
        """
        line, at = self._line(at)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace"), at
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace")), at
        if kind == b":":
            return int(rest), at
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None, at
            while len(self._buffer) < at + length + 2:
                self._fill()
            return self._buffer[at : at + length], at + length + 2
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None, at
            items = []
            for _ in range(count):
                item, at = self._parse(at)
                items.append(item)
            return items, at
        raise ValueError(f"not a RESP reply: {line[:80]!r}")

    def _reply(self):
        reply, end = self._parse(0)
        self._buffer = self._buffer[end:]
        return reply


def encodeCommand(*args) -> bytes:
    """
    A command as RESP: an array of bulk strings (L{str} as UTF-8, numbers
    as their decimal text).
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8")
        elif isinstance(arg, (int, float)):
            arg = str(arg).encode("ascii")
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def redisCommand(port: int, *args, timeout: float = 5.0):
    """
    Connect to C{127.0.0.1:port}, send one command, return its reply
    (L{RedisConnection.read}: L{RedisError} for an error reply,
    C{TimeoutError} when nothing comes within C{timeout} seconds) and
    close.  Blocking: for tests, with a server that answers at once.
    """
    with RedisConnection(port, timeout) as connection:
        return connection.command(*args)


class _RedisProcess(protocol.ProcessProtocol):
    """
    One run of C{redis-server}: C{ready} fires once it accepts
    connections (or fails if it exits first), C{ended} with its exit
    status or signal once it has exited and been reaped.
    """

    def __init__(self) -> None:
        self.output = bytearray()
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.reason = None

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.ready.called and READY in self.output:
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.reason = reason.value
        if not self.ready.called:
            self.ready.errback(
                RuntimeError(
                    "redis-server exited before accepting connections:\n"
                    + self.output.decode("utf-8", "replace")
                )
            )
        self.ended.callback(None)


class RedisServer:
    """
    A C{redis-server} of a test's own, on C{127.0.0.1:port}.

    @ivar port: its port, chosen at the first L{start} and kept across
        L{restart}s.
    @ivar directory: its working directory (C{--dir}), made by us unless
        given, and removed by L{cleanup}.
    @ivar pid: its process id while it runs, else L{None}.
    @ivar output: what the last run printed.
    """

    def __init__(self, directory: str | None = None, executable: str | None = None) -> None:
        self.executable = executable or shutil.which("redis-server") or "redis-server"
        self._ownDirectory = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="chatsvc-redis-")
        self.port: int | None = None
        self.paused = False
        self._process: _RedisProcess | None = None
        self._transport = None

    @property
    def url(self) -> str:
        """
        Where the cluster mode is told to find it (C{--redis URL}).
        """
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._transport.pid if self._transport is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and not self._process.ended.called

    @property
    def exitCode(self) -> int | None:
        """
        The exit status of the last run once it has ended; L{None} while
        it runs, or when a signal ended it (C{kill}).
        """
        reason = self._process.reason if self._process is not None else None
        return getattr(reason, "exitCode", None)

    @property
    def output(self) -> bytes:
        return bytes(self._process.output) if self._process is not None else b""

    def argv(self) -> list[str]:
        return [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.directory,
            "--daemonize",
            "no",
            "--loglevel",
            "notice",
        ]

    def start(self, seconds: float = DEADLINE) -> defer.Deferred[RedisServer]:
        """
        Start it and fire once it accepts connections.  The first start
        picks a free port, and another one if that is taken before the
        server binds it; a start after that (L{restart}) reuses the port.
        """
        return defer.ensureDeferred(self._start(seconds))

    async def _start(self, seconds: float) -> RedisServer:
        if self.running:
            raise RuntimeError(f"redis-server already runs on port {self.port}")
        choose = self.port is None
        for _ in range(PORT_ATTEMPTS if choose else 1):
            if choose:
                self.port = freePort()
            self._spawn()
            try:
                await withDeadline(self._process.ready, "redis-server to be ready", seconds)
                return self
            except DeadlineExceeded:
                await self.kill()
                raise
            except RuntimeError:
                await self._process.ended
                if not (choose and IN_USE in self._process.output):
                    raise
        raise RuntimeError(f"redis-server found no free port in {PORT_ATTEMPTS} attempts")

    def _spawn(self) -> None:
        self._process = _RedisProcess()
        self.paused = False
        argv = self.argv()
        if sys.platform.startswith("linux"):
            argv = [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *argv]
        self._transport = reactor.spawnProcess(
            self._process, argv[0], argv, env=dict(os.environ), path=self.directory
        )

    def _signal(self, number: int) -> bool:
        """
        Send it signal C{number}; whether it was running to receive it.
        """
        if not self.running:
            return False
        try:
            self._transport.signalProcess(number)
        except error.ProcessExitedAlready:
            return False
        return True

    def pause(self) -> None:
        """
        Freeze it (SIGSTOP): connections stay open, nothing is answered,
        and the kernel still completes new connects to its port.
        """
        if self._signal(signal.SIGSTOP):
            self.paused = True

    def resume(self) -> None:
        """
        Let a paused server run again (SIGCONT): it answers what it was sent.
        """
        self._signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> defer.Deferred[None]:
        """
        SIGKILL, as a crash: fires once it has exited and been reaped.
        """
        if not self.running:
            return defer.succeed(None)
        self._signal(signal.SIGKILL)
        return self._waitEnded(DEADLINE)

    def stop(self, grace: float = STOP_GRACE) -> defer.Deferred[None]:
        """
        SIGTERM (and SIGCONT, should it be paused), then SIGKILL when it
        has not exited after C{grace} seconds: fires once it has exited
        and been reaped, so its PID is gone.
        """
        return defer.ensureDeferred(self._stop(grace))

    async def _stop(self, grace: float) -> None:
        if not self.running:
            return
        self._signal(signal.SIGTERM)
        self.resume()
        try:
            await self._waitEnded(grace)
        except DeadlineExceeded:
            await self.kill()

    def _waitEnded(self, seconds: float) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._process.ended.addBoth(lambda result: (d.called or d.callback(None), result)[1])
        return withDeadline(d, "redis-server to exit", seconds)

    def restart(self, seconds: float = DEADLINE) -> defer.Deferred[RedisServer]:
        """
        Stop it if it runs, then start it again on the same port, with
        the same directory (empty: nothing was saved).
        """
        return defer.ensureDeferred(self._restart(seconds))

    async def _restart(self, seconds: float) -> RedisServer:
        await self.stop()
        return await self.start(seconds)

    def cleanup(self) -> defer.Deferred[None]:
        """
        Stop it and remove the directory we made for it.
        """
        d = self.stop()
        if self._ownDirectory:
            d.addBoth(lambda result: (shutil.rmtree(self.directory, True), result)[1])
        return d


def startRedis(test, **kwargs) -> defer.Deferred[RedisServer]:
    """
    Start a L{RedisServer} for C{test} (a trial C{TestCase}), cleaned up
    after it (L{RedisServer.cleanup}).  C{kwargs} go to L{RedisServer}.

    Skip the test with L{skipUnlessRedis} as its class's C{skip}, or
    this fails to start it.
    """
    server = RedisServer(**kwargs)
    test.addCleanup(server.cleanup)
    return server.start()
