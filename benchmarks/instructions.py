"""
A fixed, in-process fan-out workload for counting instructions, a figure
that does not drift with the machine's load as wall-clock time does.

A Hub and a ChatFactory on a fake clock, N connections on
C{StringTransport}s logged into one room, one member sends M messages,
each in a read of its own, and the write batcher is flushed every K
messages (as the next reactor turn would).  It checks that every other
member got every message.  Run it under callgrind, once with M=0 for the
baseline::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.instructions 200 0
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.instructions 200 200 20

Instructions per delivery = (collected - baseline) / (M * (N - 1)).
K=1 is the paced case (each message its own turn); K=20 the flat-out
one (many lines in one read, one flush).  Results: RESULTS.md.
"""

from __future__ import annotations

import sys

from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.testing import Clock, MemoryHistory, lineConnection

START = 1795255200.0


def main(n: int, m: int, k: int = 1) -> None:
    clock = Clock()
    clock.advance(START)
    hub = Hub(clock, MemoryHistory())
    limits = ChatLimits(
        maxClients=20000,
        floodBurst=1_000_000,
        floodRate=1_000_000.0,
        recvQueue=1_000_000,
        sendQueue=16 * 1024 * 1024,
        loginTimeout=300.0,
    )
    factory = ChatFactory(hub, limits, clock)
    batcher = factory.batcher
    connections = []
    for i in range(n):
        # One address per member, so the per-address cap does not apply.
        proto, transport = lineConnection(factory, f"10.0.{i // 250}.{i % 250 + 1}", 40000 + i)
        proto.dataReceived(f"user{i:03d} bench\n".encode())
        batcher.flush()
        connections.append((proto, transport))
    for _, transport in connections:
        transport.clear()
    sender = connections[0][0]
    for seq in range(m):
        sender.dataReceived(
            b"~M0:%d:0~ hello from the benchmark, a line of ordinary length\n" % seq
        )
        if (seq + 1) % k == 0:
            batcher.flush()
    batcher.flush()
    got = [transport.value().count(b"~M0:") for _, transport in connections]
    if got[0] != 0 or any(count != m for count in got[1:]):
        raise SystemExit(f"lost or duplicated deliveries: {got[:5]}...")
    print(f"n={n} m={m} k={k} deliveries={sum(got)}", file=sys.stderr)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
