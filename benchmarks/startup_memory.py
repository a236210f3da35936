"""
Memory of an idle server before its first client: chatsvc beside
Twisted's own C{twistd words}, in the same run.

Each server starts in the foreground (C{twistd -n}) in a temporary
working directory (chatsvc's default history file goes there), on free
ports of 127.0.0.1.  It is measured once it is ready: every port it was
given is in LISTEN state in C{/proc/net/tcp} and its main thread is
waiting in C{epoll_wait} (C{/proc/PID/wchan}), i.e. the reactor is idle.
Nothing connects to it, so no client is counted.  Then:

  - RSS: C{VmRSS} of C{/proc/PID/status} (shared libraries included);
  - USS: C{Private_Clean + Private_Dirty} of C{/proc/PID/smaps_rollup},
    what stopping the process would give back;
  - PSS and the thread count.

Each server is stopped with SIGTERM and waited for (SIGKILL after a
bounded wait).  The kinds run interleaved, round after round, and the
table gives medians.  C{--rev REV} adds chatsvc exported from git at
C{REV} (as C{benchmarks.servers.pinChatsvc} does), so a before and an
after are measured in the same run; C{--tree DIR} adds chatsvc from a
directory holding C{chatsvc/} and C{twisted/plugins/} (a copy with a
change not yet made in the work tree); C{--mappings} prints, per kind,
the resident KiB of each mapped file (the shared libraries that were
loaded).

USS counts a file's pages as private while no other process maps that
file, so it moves with what else runs (other Python processes share
libpython); its dirty part (C{Private_Dirty}, printed too) is the
process's own heap and does not.

Usage::

    python -m benchmarks.startup_memory --runs 7
    python -m benchmarks.startup_memory --runs 7 --rev b46fb17 --mappings
    python -m benchmarks.startup_memory --runs 7 --tree /tmp/chatsvc-copy
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("VENV", Path(sys.executable).parent.parent))

#: Seconds a server has to be ready, and then to exit after SIGTERM.
READY_DEADLINE = 60.0
EXIT_DEADLINE = 20.0

#: What the main thread's wchan says while it waits in epoll_wait.
IDLE_WCHANS = {"do_epoll_wait", "ep_poll"}

_RUN = 'import sys; from twisted.scripts.twistd import run; sys.argv[0] = "twistd"; run()'


@dataclass
class Kind:
    """
    One way of starting a server: a name for the table, the arguments
    after C{twistd -n --pidfile=} (with C{{0}}, C{{1}}, ... for ports),
    and an optional exported tree of chatsvc to run instead of the
    installed one.
    """

    name: str
    args: list[str]
    ports: int = 1
    tree: Path | None = None

    def command(self, ports: list[int]) -> tuple[list[str], dict[str, str]]:
        args = [a.format(*ports) for a in ["-n", "--pidfile=", *self.args]]
        env = dict(os.environ)
        if self.tree is None:
            return [str(VENV / "bin/twistd"), *args], env
        # As benchmarks.servers runs a pinned tree: first on sys.path.
        env["PYTHONPATH"] = str(self.tree)
        return [str(VENV / "bin/python"), "-c", _RUN, *args], env


@dataclass
class Sample:
    rss: int  # KiB
    uss: int  # KiB
    dirty: int  # KiB
    pss: int  # KiB
    threads: int
    mappings: dict[str, int] = field(default_factory=dict)


def listen(port: int) -> str:
    return f"tcp:{port}:interface=127.0.0.1"


def kinds(rev: str | None, tree: Path | None = None) -> list[Kind]:
    chat = ["chat", "--port", "{0}"]
    gateways = [*chat, "--irc", "{1}", "--web", "{2}"]
    found = [
        Kind("words", ["words", "--irc-port", "{0}"]),
        Kind("chat", chat),
        Kind("chat --irc --web", gateways, ports=3),
    ]
    if rev is not None:
        from benchmarks.servers import PINNED, pinChatsvc

        full = pinChatsvc(rev)
        pinned = PINNED["tree"]
        found.insert(1, Kind(f"chat at {full[:10]}", chat, tree=pinned))
        found.append(Kind(f"chat --irc --web at {full[:10]}", gateways, ports=3, tree=pinned))
    if tree is not None:
        found.insert(1, Kind(f"chat from {tree}", chat, tree=tree))
        found.append(Kind(f"chat --irc --web from {tree}", gateways, ports=3, tree=tree))
    return found


def freePorts(count: int) -> list[int]:
    """
    Ports free on 127.0.0.1 right now (all held open together, so distinct).
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def listeningPorts() -> set[int]:
    """
    Local ports in LISTEN state (TCP over IPv4), from /proc/net/tcp.
    """
    ports = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def idle(pid: int) -> bool:
    """
    Whether the process's main thread waits in epoll_wait (the reactor
    has nothing to do); true if the kernel does not tell.
    """
    try:
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        return True
    return wchan in IDLE_WCHANS or wchan in ("", "0")


def waitReady(process: subprocess.Popen, ports: list[int], log: Path) -> None:
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        if set(ports) <= listeningPorts() and idle(process.pid):
            return
        time.sleep(0.02)  # polling interval, bounded by the deadline
    raise RuntimeError(f"not listening on {ports} within {READY_DEADLINE}s:\n{log.read_text()}")


def measure(pid: int, mappings: bool) -> Sample:
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "Threads"):
                values[key] = int(rest.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Private_Clean", "Private_Dirty", "Pss"):
                values[key] = int(rest.split()[0])
    perFile: dict[str, int] = {}
    if mappings:
        name = ""
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 6)
                if "-" in first[0] and not first[0].endswith(":"):
                    name = first[5].strip() if len(first) > 5 else "[anon]"
                elif first[0] == "Rss:":
                    perFile[name] = perFile.get(name, 0) + int(first[1])
    return Sample(
        rss=values["VmRSS"],
        uss=values["Private_Clean"] + values["Private_Dirty"],
        dirty=values["Private_Dirty"],
        pss=values["Pss"],
        threads=values["Threads"],
        mappings=perFile,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def runOnce(kind: Kind, mappings: bool) -> Sample:
    workdir = Path(tempfile.mkdtemp(prefix="startup-memory-"))
    log = workdir / "twistd.out"
    ports = freePorts(kind.ports)
    argv, env = kind.command([listen(p) for p in ports])
    try:
        with open(log, "wb") as out:
            process = subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            waitReady(process, ports, log)
            return measure(process.pid, mappings)
        finally:
            stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds; medians are reported")
    parser.add_argument("--rev", help="also measure chatsvc exported from git at this revision")
    parser.add_argument("--tree", type=Path, help="also measure chatsvc from this directory")
    parser.add_argument(
        "--mappings", action="store_true", help="print resident KiB per mapped file (median)"
    )
    options = parser.parse_args(argv)
    todo = kinds(options.rev, options.tree.resolve() if options.tree else None)
    samples: dict[str, list[Sample]] = {k.name: [] for k in todo}
    for _ in range(options.runs):
        for kind in todo:
            samples[kind.name].append(runOnce(kind, options.mappings))

    print(f"Idle before the first client; medians of {options.runs} runs, MiB")
    print(f"(twistd {VENV / 'bin/twistd'}, Python {sys.version.split()[0]})\n")
    print("| process | RSS | USS | USS dirty | PSS | threads |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in todo:
        got = samples[kind.name]

        def med(attribute: str, got: list[Sample] = got) -> float:
            return statistics.median(getattr(s, attribute) for s in got)

        print(
            f"| {kind.name} | {mib(med('rss'))} | {mib(med('uss'))} | {mib(med('dirty'))} | "
            f"{mib(med('pss'))} | {med('threads'):.0f} |"
        )
    if options.mappings:
        for kind in todo:
            got = samples[kind.name]
            names = set().union(*(s.mappings for s in got))
            rows = sorted(
                ((statistics.median(s.mappings.get(n, 0) for s in got), n) for n in names),
                reverse=True,
            )
            print(f"\n{kind.name}: resident KiB per mapping (median; 64 KiB and more)")
            for kib, name in rows:
                if kib >= 64:
                    print(f"  {kib:8.0f}  {name}")


if __name__ == "__main__":
    main()
