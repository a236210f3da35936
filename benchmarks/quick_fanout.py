"""
Quick fan-out figure for the chat: deliveries per second in one room.

Starts C{twistd -n chat} in a subprocess (history in memory, flood limits
raised so that the senders are not paced), logs in C{--clients} members,
lets every member send C{--messages} messages in one write, and counts
lines at every member until each has all the others' messages.  A
delivery is one message arriving at one recipient; the clients only
count newlines, so that the server, not the load generator, is measured
(both share the machine: see the CPU figures printed).

    python benchmarks/quick_fanout.py --clients 100 --messages 100
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import tempfile
import time

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

_LISTENING = re.compile(rb"listening on tcp [^\s]+:(\d+)")


class Server(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.port = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        match = _LISTENING.search(self.output)
        if match and not self.port.called:
            self.port.callback(int(match.group(1)))

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        if not self.port.called:
            self.port.errback(RuntimeError(self.output.decode("utf-8", "replace")))
        self.ended.callback(reason.value.exitCode)


class Member(protocol.Protocol):
    """
    Logs in, then counts lines until it has C{expected} of them.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.loggedIn = defer.Deferred()
        self.done = defer.Deferred()
        self.expected = None
        self.count = 0
        self.buffer = b""

    def connectionMade(self) -> None:
        self.transport.write(self.name.encode() + b"\n")

    def dataReceived(self, data: bytes) -> None:
        if not self.loggedIn.called:
            self.buffer += data
            if b"\n" in self.buffer:
                line, _, rest = self.buffer.partition(b"\n")
                if not line.startswith(b"success:"):
                    raise RuntimeError(line)
                self.buffer = b""
                self.loggedIn.callback(self)
                data = rest
        self.count += data.count(b"\n")
        if self.expected is not None and self.count >= self.expected and not self.done.called:
            self.done.callback(self.count)


def cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(options) -> None:
    server = Server()
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
        ":memory:",
        "--flood-burst",
        "1000000",
        "--flood-rate",
        "1000000",
        "--recv-queue",
        "1000000",
        "--send-queue",
        str(64 * 1024 * 1024),
        "--max-clients",
        "100000",
    ]
    process = reactor.spawnProcess(
        server, sys.executable, argv, env=dict(os.environ), path=tempfile.gettempdir()
    )
    try:
        port = await server.port
        members = []
        for i in range(options.clients):
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
            member = await connectProtocol(endpoint, Member(f"m{i:04}"))
            await member.loggedIn
            members.append(member)
        # Everyone has seen every later join; start counting from zero.
        for i, member in enumerate(members):
            member.expected = options.clients - 1 - i
            if member.count < member.expected:
                member.done = defer.Deferred()
                await member.done
        padding = b"x" * max(0, options.size - 12)
        for member in members:
            member.count = 0
            member.done = defer.Deferred()
            member.expected = (options.clients - 1) * options.messages
        payloads = [
            b"".join(b"%d %s\n" % (n, padding) for n in range(options.messages)) for _ in members
        ]
        serverCpu = cpuSeconds(process.pid)
        selfCpu = time.process_time()
        start = time.perf_counter()
        for member, payload in zip(members, payloads, strict=True):
            member.transport.write(payload)
        await defer.gatherResults([m.done for m in members])
        elapsed = time.perf_counter() - start
        serverCpu = cpuSeconds(process.pid) - serverCpu
        selfCpu = time.process_time() - selfCpu
        deliveries = sum(m.count for m in members)
        expected = options.clients * (options.clients - 1) * options.messages
        print(
            f"{options.clients} clients in one room, {options.messages} messages each "
            f"({options.size} bytes): {deliveries} deliveries (expected {expected}) "
            f"in {elapsed:.2f} s = {deliveries / elapsed:,.0f} deliveries/s, "
            f"{options.clients * options.messages / elapsed:,.0f} messages/s in; "
            f"server CPU {serverCpu:.2f} s ({100 * serverCpu / elapsed:.0f}%), "
            f"load generator CPU {selfCpu:.2f} s ({100 * selfCpu / elapsed:.0f}%)"
        )
        for member in members:
            member.transport.loseConnection()
    finally:
        try:
            process.signalProcess("TERM")
        except Exception:
            pass
        await server.ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100, help="messages per client")
    parser.add_argument("--size", type=int, default=40, help="bytes per message line")
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    task.react(lambda _: defer.ensureDeferred(run(options)))


if __name__ == "__main__":
    main()
