"""
A chat cluster for the benchmarks: one C{redis-server} and N C{twistd
chat --redis} nodes sharing one port of 127.0.0.1 through SO_REUSEPORT.

The harness starts a server with L{benchmarks.servers.Running}; for a
cluster kind (C{chatsvc-cluster1}, C{-cluster2}, C{-cluster4}) that is a
L{ClusterRunning}, which offers what the harness uses of a started
server (C{port}, C{pid}, C{alive}, C{logErrors}, C{logTail}, C{stop}) and
what only L{benchmarks.cluster} reads: every node's PID, Redis's PID, its
C{INFO commandstats}, and which node the kernel gave each client.

The generator needs no change: it connects to one port and the kernel
spreads the connections over the nodes' listening sockets (a hash of the
connection's addresses and ports picks one).  Redis runs as the Debian
package installs it, with nothing persisted (C{--save ""},
C{--appendonly no}), on a free port, in the cluster's temporary
directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procstat import cpuSeconds, machineBusy, rssKiB

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"


def redisArgv(port: int, directory: str) -> list[str]:
    """
    How the benchmark's Redis is started: loopback, nothing persisted,
    in the foreground.
    """
    return [
        REDIS_SERVER,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
        "--daemonize",
        "no",
        "--loglevel",
        "notice",
    ]


class RedisClient:
    """
    A small blocking RESP2 client: one command, one reply.  Enough for
    the harness's own questions (PING, INFO, CONFIG RESETSTAT); the
    cluster's nodes speak to Redis through txredisapi, not this.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    @staticmethod
    def encode(*args) -> bytes:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            data = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buf) < size + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("redis-server closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:size], self.buf[size + 2 :]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise RuntimeError(f"not a RESP reply: {line[:80]!r}")

    def info(self, section: str) -> dict[str, str]:
        out = {}
        for line in self.call("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                key, _, value = line.partition(":")
                out[key] = value
        return out

    def commandStats(self) -> dict[str, dict[str, float]]:
        """
        C{INFO commandstats} by command: calls and total microseconds
        (Redis's own time in the command: the script for EVALSHA, the
        reply for XREAD; not the socket reads and writes around it).
        """
        out = {}
        for key, value in self.info("commandstats").items():
            fields = dict(kv.split("=", 1) for kv in value.split(","))
            out[key.removeprefix("cmdstat_")] = {
                "calls": float(fields["calls"]),
                "usec": float(fields["usec"]),
            }
        return out

    def close(self) -> None:
        self.sock.close()


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """
    A C{redis-server} of our own on a free port of 127.0.0.1, in
    C{directory}, its output in C{redis.log} there.
    """

    def __init__(self, directory: Path, attempts: int = 5) -> None:
        self.dir = directory
        for _ in range(attempts):
            self.port = freePort()
            self.argv = redisArgv(self.port, str(directory))
            self.log = open(directory / "redis.log", "wb")
            self.proc = subprocess.Popen(
                self.argv,
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            if self._waitReady():
                self.pid = self.proc.pid
                self.client = RedisClient(self.port)
                return
            self.log.close()  # the port was taken meanwhile: another
        raise RuntimeError(f"redis-server did not start:\n{self.logTail()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _waitReady(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                client = RedisClient(self.port, timeout=1.0)
                try:
                    if client.call("PING") == "PONG":
                        return True
                finally:
                    client.close()
            except (OSError, RuntimeError):
                pass
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        return False

    def logTail(self, size: int = 2000) -> str:
        try:
            return (self.dir / "redis.log").read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        from benchmarks.servers import stopProcess

        stopProcess(self.proc)
        try:
            self.client.close()
        except AttributeError:
            pass
        self.log.close()


def _tcpTable() -> list[tuple[int, str, int]]:
    """
    (local port, state, inode) of every IPv4 TCP socket of the machine.
    """
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            port = int(fields[1].rpartition(":")[2], 16)
            out.append((port, fields[3], int(fields[9])))
    return out


def _socketInodes(pid: int) -> set[int]:
    inodes = set()
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{base}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listeners(port: int, pids: list[int]) -> list[int]:
    """
    How many listening sockets on C{port} each of C{pids} holds.
    """
    listening = {inode for p, state, inode in _tcpTable() if p == port and state == "0A"}
    return [len(_socketInodes(pid) & listening) for pid in pids]


def clientsPerProcess(port: int, pids: list[int]) -> list[int]:
    """
    How many established connections to C{port} each of C{pids} holds:
    where the kernel put the generator's clients.
    """
    accepted = {inode for p, state, inode in _tcpTable() if p == port and state == "01"}
    return [len(_socketInodes(pid) & accepted) for pid in pids]


@dataclass
class Mark:
    """
    One moment of a running server: the CPU seconds of every node and of
    Redis, the machine's busy seconds, and Redis's command statistics.
    """

    wall: float
    nodes: list[float]
    redis: float | None
    machine: float
    stats: dict = field(default_factory=dict)


def mark(pids: list[int], redis: RedisServer | None = None) -> Mark:
    wall = time.monotonic()
    nodes = [cpuSeconds(pid) for pid in pids]
    redisCpu = cpuSeconds(redis.pid) if redis is not None else None
    stats = redis.client.commandStats() if redis is not None else {}
    return Mark(wall, nodes, redisCpu, machineBusy(), stats)


class ClusterRunning:
    """
    A started cluster: Redis, then C{server.nodes} chat nodes on one port,
    each its own C{twistd -n chat --redis URL} process with its own log.
    Ready once every node holds a listening socket on the port (a node
    listens only once it has read the cluster's state from Redis).
    """

    def __init__(self, server, clients: int, extra=()) -> None:
        from benchmarks.servers import _path, _raiseFileLimit

        self.server = server
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{server.name}-"))
        self.redis = RedisServer(self.dir)
        self.port = freePort()
        self.procs: list[subprocess.Popen] = []
        self.logs = []
        argv, env = server.command(self.port, self.dir, redis=self.redis.url)
        self.argv = argv + list(extra)
        environ = os.environ | env | {"PYTHONPATH": _path(env.get("PYTHONPATH"))}
        try:
            for i in range(server.nodes):
                log = open(self.dir / f"node{i}.log", "wb")
                self.logs.append(log)
                self.procs.append(
                    subprocess.Popen(
                        self.argv,
                        cwd=self.dir,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=environ,
                        preexec_fn=_raiseFileLimit,
                    )
                )
            self._waitListening()
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    @property
    def pid(self) -> int:
        """
        The first node: the one whose RSS the generator samples.
        """
        return self.procs[0].pid

    def _waitListening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.server.name} node {i} exited at start:\n{self.logTail(index=i)}"
                    )
            if all(listeners(self.port, self.pids)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.server.name} did not listen within {timeout:g} s")

    def mark(self) -> Mark:
        return mark(self.pids, self.redis)

    def clients(self) -> list[int]:
        return clientsPerProcess(self.port, self.pids)

    def rss(self) -> list[int]:
        return [rssKiB(pid) for pid in self.pids] + [rssKiB(self.redis.pid)]

    def alive(self) -> bool:
        return self.redis.proc.poll() is None and all(p.poll() is None for p in self.procs)

    def _text(self, index: int) -> str:
        try:
            return (self.dir / f"node{index}.log").read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def logTail(self, size: int = 2000, index: int | None = None) -> str:
        if index is None:
            dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
            if self.redis.proc.poll() is not None:
                return self.redis.logTail(size)
            index = dead[0] if dead else 0
        return self._text(index)[-size:]

    def logErrors(self) -> tuple[int, str]:
        """
        Tracebacks logged by all nodes, and the last line of the last one.
        """
        count, last = 0, ""
        for i in range(len(self.procs)):
            text = self._text(i)
            n = text.count("Traceback (most recent call last)")
            if n:
                count += n
                tail = text[text.rindex("Traceback (most recent call last)") :].splitlines()
                lines = (x[1:] if x.startswith("\t") else x for x in tail[1:])
                last = next((x for x in lines if x and not x[0].isspace()), tail[0])
                last = f"node {i}: {last.strip()[:300]}"
        return count, last

    def stop(self) -> int | None:
        """
        SIGTERM to every node at once, a few seconds' grace, SIGKILL; then
        Redis; remove the directory.  The first node's exit status, or
        the first other one that is not a clean stop.
        """
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                proc.wait(8)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            codes.append(proc.returncode)
        for log in self.logs:
            log.close()
        self.redis.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        bad = [c for c in codes if c not in (0, None, -15)]
        return bad[0] if bad else (codes[0] if codes else None)
