"""
The servers under test: how each is started, on loopback only, with the
limits raised that would otherwise measure a policy instead of a server.

Every server runs in the foreground as a child of the harness, in a
temporary directory that holds its config and its log, on a port picked
free on 127.0.0.1.  The child's soft open-file limit is raised to the
hard one before it starts (10,000 connections need it; chatsvc raises
its own as well).  The measured process is the child itself:
C{twistd -n}, C{ngircd -n} and C{miniircd} all stay in the foreground.

The exact command lines are in L{Server.command} and are copied into
RESULTS.md by the harness.

The C{-tls} servers are the same servers listening with TLS instead
(chatsvc: an C{ssl:} endpoint description; ngircd: its C{[SSL]} section),
with a self-signed certificate made at start into their directory
(L{benchmarks.tlscert}); the generator speaks TLS to them.
"""

from __future__ import annotations

import atexit
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.tlscert import makeCert, writeDHParams
from benchmarks.wire import nick

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("VENV", "/work/venv"))
PEERS_DIR = Path(os.environ.get("PEERS_DIR", Path.home() / ".cache/chatsvc-bench/peers"))
NGIRCD = shutil.which("ngircd") or "/usr/sbin/ngircd"
MINIIRCD = PEERS_DIR / "miniircd/bin/miniircd"

#: A tree of chatsvc exported from git (L{pinChatsvc}), or None to run
#: the chatsvc installed in the venv (the work tree, as it is right now).
PINNED: dict = {}

#: chatsvc as measured: its native line protocol, its IRC gateway
#: (C{--irc}), which the generator drives like any IRC server, and its
#: web gateway (C{--web}), driven over a WebSocket like a browser.
CHATSVC = ["chatsvc", "chatsvc-irc", "chatsvc-web"]

#: The same servers over TLS (not in a default run; name them in --server).
TLS = ["chatsvc-tls", "chatsvc-irc-tls", "ngircd-tls"]

#: chatsvc as a cluster (C{--redis}): one redis-server and 1, 2 or 4
#: nodes sharing one port (SO_REUSEPORT), the line protocol
#: (L{benchmarks.cluster_nodes}; measured by L{benchmarks.cluster}).
CLUSTER = ["chatsvc-cluster1", "chatsvc-cluster2", "chatsvc-cluster4"]

#: The password every IRC client of the generator uses where one is needed.
PASSWORD = "bench"

#: chatsvc's flags for benchmarking: no flood pacing, room for 10,000+
#: clients, a send queue large enough that a receiver is not cut off
#: while the generator keeps up (cuts are counted and reported).
CHATSVC_FLAGS = [
    "--history",
    ":memory:",
    "--max-clients",
    "20000",
    "--flood-burst",
    "1000000",
    "--flood-rate",
    "1000000",
    "--recv-queue",
    "1000000",
    "--send-queue",
    str(16 * 1024 * 1024),
    "--login-timeout",
    "300",
]

#: A cluster node's flags: the same, without a history store (a cluster
#: keeps its history in Redis; --history and --redis exclude each other).
CLUSTER_FLAGS = CHATSVC_FLAGS[2:]

NGIRCD_CONF = """\
# ngircd for benchmarks: loopback only, limits raised as far as the
# config allows.  MaxPenaltyTime = 0 disables penalty delays; the
# operator block lets senders set user mode +F (relaxed flood control:
# 10 instead of 3 commands per loop and no throttling).
[Global]
    Name = bench.local
    Info = chatsvc benchmark peer
    Listen = 127.0.0.1
    Ports = {port}
    MotdPhrase = benchmark
[Limits]
    MaxConnections = 0
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxPenaltyTime = 0
    PingTimeout = 600
    PongTimeout = 600
[Options]
    DNS = no
    Ident = no
    PAM = no
[Operator]
    Name = bench
    Password = {password}
"""

#: ngircd over TLS only: its plain port is a throwaway (ngircd always has
#: one), and the measured port is the SSL one.  ngircd is built with
#: GnuTLS; the DH file spares it generating parameters at start.
NGIRCD_TLS = """[SSL]
    CertFile = {cert}
    KeyFile = {key}
    DHFile = {dh}
    Ports = {tlsPort}
"""


def freePort() -> int:
    """
    A TCP port free on 127.0.0.1 right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raiseFileLimit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Server:
    """
    One kind of server.

    @ivar name: as in results and C{--server}.
    @ivar protocol: what the generator speaks to it (C{line}, C{irc} or
        C{ws}).
    @ivar oper: IRC operator login and modes for senders, or L{None}.
    @ivar password: sent with PASS, or L{None}.
    @ivar relay: false for the blaster, which relays nothing.
    @ivar extra: more arguments for the command.
    @ivar tls: whether it listens with TLS (a certificate is made for it).
    @ivar nodes: above 0, chatsvc as a cluster of this many processes on
        one port, through a Redis of its own (L{benchmarks.cluster_nodes}).
    """

    name: str
    protocol: str
    oper: tuple | None = None
    password: str | None = None
    relay: bool = True
    extra: tuple = ()
    tls: bool = False
    nodes: int = 0

    @property
    def isChatsvc(self) -> bool:
        """
        Whether this is chatsvc itself (native protocol or a gateway, over
        TCP or TLS, one process or a cluster).
        """
        return self.name.removesuffix("-tls") in CHATSVC or self.nodes > 0

    @property
    def base(self) -> str:
        """
        The server's name without C{-tls}: what it runs.
        """
        return self.name.removesuffix("-tls")

    @property
    def isGenerator(self) -> bool:
        """
        Whether this is one of our own trivial servers (the blaster).
        """
        return self.name.startswith(("blaster", "relay"))

    def prepare(self, port: int, workdir: Path, clients: int) -> None:
        """
        Write what the server reads at start into C{workdir}.
        """
        if self.tls:
            makeCert(workdir)
        if self.name == "words":
            users = "".join(f"{nick(i)}:{PASSWORD}\n" for i in range(clients))
            (workdir / "users.txt").write_text(users)
        elif self.base == "ngircd":
            conf = NGIRCD_CONF.format(port=freePort() if self.tls else port, password=PASSWORD)
            if self.tls:
                conf += NGIRCD_TLS.format(
                    cert=workdir / "cert.pem",
                    key=workdir / "key.pem",
                    dh=writeDHParams(workdir),
                    tlsPort=port,
                )
            (workdir / "ngircd.conf").write_text(conf)

    def command(
        self, port: int, workdir: Path, redis: str = "redis://127.0.0.1:REDISPORT/0"
    ) -> tuple[list[str], dict]:
        """
        The command line and extra environment that start this server (for
        a cluster: one node, joining the Redis at C{redis}).
        """
        py = str(VENV / "bin/python")
        if self.isChatsvc:
            listen = f"tcp:{port}:interface=127.0.0.1"
            if self.tls:
                listen = (
                    f"ssl:{port}:interface=127.0.0.1:privateKey={workdir / 'key.pem'}"
                    f":certKey={workdir / 'cert.pem'}"
                )
            if self.protocol in ("irc", "ws"):
                # The gateway on PORT; the line port, unused, on any free
                # port of loopback (port 0: no second port to pick).
                gateway = "--irc" if self.protocol == "irc" else "--web"
                listens = ["--port", "tcp:0:interface=127.0.0.1", gateway, listen]
            else:
                listens = ["--port", listen]
            flags = [*CLUSTER_FLAGS, "--redis", redis] if self.nodes else CHATSVC_FLAGS
            args = ["-n", "--pidfile=", "chat", *listens, *flags]
            if PINNED:
                # twistd from the exported tree: it comes first on sys.path,
                # so its chatsvc (and its plugin file) is the one that runs.
                run = 'import sys; from twisted.scripts.twistd import run; sys.argv[0] = "twistd"; run()'
                return [py, "-c", run, *args], {"PYTHONPATH": str(PINNED["tree"])}
            return [str(VENV / "bin/twistd"), *args], {}
        if self.name == "words":
            users = workdir / "users.txt"
            argv = [py, str(HERE / "words_peer.py"), "-n", "--pidfile=", "words"]
            argv += ["--irc-port", f"tcp:{port}:interface=127.0.0.1"]
            return argv, {"BENCH_WORDS_USERS": str(users)}
        if self.name == "miniircd":
            argv = [str(MINIIRCD), "--listen", "127.0.0.1", "--ports", str(port)]
            if os.geteuid() == 0:  # it refuses to run as root
                argv += ["--setuid", "nobody"]
            return argv, {}
        if self.base == "ngircd":
            return [NGIRCD, "-n", "-f", str(workdir / "ngircd.conf")], {}
        if self.isGenerator:
            argv = [py, "-m", "benchmarks.blaster", "--port", str(port)]
            if self.tls:
                argv[2] = "benchmarks.blaster_tls"
                argv += ["--tls", f"{workdir / 'cert.pem'},{workdir / 'key.pem'}"]
            return argv + ["--protocol", self.protocol, *self.extra], {}
        raise ValueError(f"unknown server {self.name!r}")

    def version(self) -> str:
        """
        The version of this server's software, for RESULTS.md.
        """
        try:
            if self.isChatsvc:
                if PINNED:
                    return f"chatsvc at git {PINNED['rev']} (exported, pinned)"
                return f"chatsvc work tree at git {_gitHead()}{_dirty()}"
            if self.name == "words":
                import twisted

                return f"Twisted {twisted.__version__} words"
            if self.name == "miniircd":
                out = subprocess.run([str(MINIIRCD), "--version"], capture_output=True, text=True)
                return f"miniircd {(out.stdout or out.stderr).strip()}"
            if self.base == "ngircd":
                out = subprocess.run([NGIRCD, "--version"], capture_output=True, text=True)
                return out.stdout.splitlines()[0].strip()
        except (OSError, IndexError, ImportError) as e:
            return f"unknown ({e})"
        return "benchmarks/blaster.py"


def _dirty() -> str:
    """
    C{" + uncommitted changes"} when chatsvc's code in the work tree
    differs from HEAD (others may be editing it while we measure).
    """
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "chatsvc", "twisted"],
            capture_output=True,
            text=True,
        )
        lines = [x for x in out.stdout.splitlines() if not x.endswith("dropin.cache")]
        return " + uncommitted changes" if lines else ""
    except OSError:
        return ""


def stopProcess(proc: subprocess.Popen) -> None:
    """
    SIGTERM, a few seconds' grace, then SIGKILL.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def pinChatsvc(rev: str) -> str:
    """
    Export chatsvc (and its twistd plugin) at git revision C{rev} into a
    temporary directory and run that instead of the work tree: the work
    tree is shared, and its chatsvc can change in the middle of a session.

    @return: the full commit hash.
    """
    repo = str(HERE.parent)
    full = subprocess.run(
        ["git", "-C", repo, "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix="bench-chatsvc-"))
    atexit.register(shutil.rmtree, tree, True)
    archive = subprocess.run(
        ["git", "-C", repo, "archive", full, "chatsvc", "twisted"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    PINNED.update(tree=tree, rev=full[:10])
    return full


def _gitHead() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


SERVERS = {
    "chatsvc": Server("chatsvc", "line"),
    "chatsvc-irc": Server("chatsvc-irc", "irc"),
    "chatsvc-web": Server("chatsvc-web", "ws"),
    "ngircd": Server("ngircd", "irc", oper=("bench", PASSWORD, "+F")),
    "chatsvc-tls": Server("chatsvc-tls", "line", tls=True),
    "chatsvc-irc-tls": Server("chatsvc-irc-tls", "irc", tls=True),
    "ngircd-tls": Server("ngircd-tls", "irc", oper=("bench", PASSWORD, "+F"), tls=True),
    "miniircd": Server("miniircd", "irc"),
    "words": Server("words", "irc", password=PASSWORD),
    "blaster-line": Server("blaster-line", "line", relay=False),
    "blaster-irc": Server("blaster-irc", "irc", relay=False),
    "relay-line": Server("relay-line", "line", extra=("--mode", "relay")),
    "relay-irc": Server("relay-irc", "irc", extra=("--mode", "relay")),
    "blaster-ws": Server("blaster-ws", "ws", relay=False),
    "relay-ws": Server("relay-ws", "ws", extra=("--mode", "relay")),
    **{name: Server(name, "line", nodes=int(name[-1])) for name in CLUSTER},
}
# The generator over TLS: the same blasters behind TLS.
for _name in list(SERVERS):
    if SERVERS[_name].isGenerator:
        _plain = SERVERS[_name]
        SERVERS[f"{_name}-tls"] = Server(
            f"{_name}-tls", _plain.protocol, relay=_plain.relay, extra=_plain.extra, tls=True
        )
del _name, _plain

#: Peers in the order RESULTS.md shows them (ngircd is the yardstick).
PEERS = ["ngircd", "miniircd", "words"]


def _path(first: str | None) -> str:
    """
    PYTHONPATH for a server: C{first} (a pinned chatsvc) before the
    repository root (which holds C{benchmarks} for the blaster).
    """
    return f"{first}:{HERE.parent}" if first else str(HERE.parent)


class Running:
    """
    A started server: its process, port and directory.  For a cluster
    kind, a L{benchmarks.cluster_nodes.ClusterRunning} (Redis and every
    node) with the same interface.
    """

    def __new__(cls, server: Server, clients: int, extra: list[str] = ()):
        if server.nodes:
            from benchmarks.cluster_nodes import ClusterRunning

            return ClusterRunning(server, clients, extra)
        return super().__new__(cls)

    def __init__(self, server: Server, clients: int, extra: list[str] = ()) -> None:
        self.server = server
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{server.name}-"))
        self.port = freePort()
        server.prepare(self.port, self.dir, clients)
        self.argv, env = server.command(self.port, self.dir)
        self.argv += list(extra)
        self.log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=os.environ | env | {"PYTHONPATH": _path(env.get("PYTHONPATH"))},
            preexec_fn=_raiseFileLimit,
        )
        self.pid = self.proc.pid
        self._waitListening()

    def _waitListening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.server.name} exited at start:\n{self.logTail()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    time.sleep(0.3)  # let it forget the probe
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.server.name} did not listen within {timeout:g} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logTail(self, size: int = 2000) -> str:
        try:
            return (self.dir / "server.log").read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def logErrors(self) -> tuple[int, str]:
        """
        How many tracebacks the server has logged so far, and the last
        line of the last one (a server can keep serving after an error
        it logged, and the run would not show it otherwise).
        """
        try:
            text = (self.dir / "server.log").read_bytes().decode("utf-8", "replace")
        except OSError:
            return 0, ""
        count = text.count("Traceback (most recent call last)")
        if not count:
            return 0, ""
        tail = text[text.rindex("Traceback (most recent call last)") :].splitlines()
        # twistd's text log goes on with a tab on each line of one event;
        # the exception is the first line not indented after that tab.
        lines = (x[1:] if x.startswith("\t") else x for x in tail[1:])
        last = next((x for x in lines if x and not x[0].isspace()), tail[0])
        return count, last.strip()[:300]

    def stop(self) -> int | None:
        """
        SIGTERM, a few seconds' grace, then SIGKILL; remove the directory.
        """
        stopProcess(self.proc)
        self.log.close()
        code = self.proc.returncode
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


def commandLine(server: Server) -> str:
    """
    The command that starts C{server}, as shell text for RESULTS.md, with
    C{PORT}, C{DIR} (its temporary directory) and C{TREE} (a pinned
    chatsvc's export) as placeholders.
    """
    argv, env = server.command(6667, Path("DIR"))
    words = [f"{k}={v}" for k, v in env.items()] + argv
    text = shlex.join(words).replace("6667", "PORT")
    if server.nodes:
        from benchmarks.cluster_nodes import redisArgv

        redis = shlex.join(redisArgv(6379, "DIR")).replace("6379", "REDISPORT")
        text = f"{redis} & {server.nodes} x {{ {text} & }}"
    if PINNED:
        text = text.replace(str(PINNED["tree"]), f"TREE-{PINNED['rev']}")
    return text.replace(str(HERE.parent) + "/", "").replace(str(Path.home()), "~")
