"""
Redis alone, on this machine: the round trip a cluster node pays on every
message, and what one publish and one read of the bus cost Redis, without
chat nodes around it.  L{benchmarks.cluster} runs these before the loads;
the figures feed the paper estimate in RESULTS.md.

  - C{roundTrip}: a timed loop of PINGs (and of the publish script) from
    one blocking client over loopback: the floor a node's message adds
    to its latency.  Also C{redis-benchmark -t ping -c 1}, Redis's own
    client, for comparison.
  - C{publishCost}: the cluster's publish script (L{chatsvc.cluster.scripts})
    run by C{redis-benchmark} from 4 connections pipelining 32 each, as
    busy nodes would send it: Redis's CPU per publish from /proc (the
    script plus reading the request and writing the reply), its
    C{INFO commandstats} time per call (the script only), and the rate
    Redis reached (it is single-threaded: this is what one Redis
    carries, with no reader).
  - C{readCost}: the bus read back the way a node reads it (C{XREAD COUNT
    1000}, and C{COUNT 1} as a node reads at a low rate, one entry per
    wake-up): Redis's CPU per entry per reader.
  - C{batchCost}: the same two for the script a busy node runs once per
    reactor turn (C{publishMany}, when the measured chatsvc has it): K
    events per call and per bus entry, so Redis's CPU per event, to
    publish it and for each reader to read it, falls with K.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.cluster_nodes import REDIS_BENCHMARK, RedisClient, RedisServer
from benchmarks.procstat import cpuSeconds

#: A room message as a node hands it to the publish script (182 bytes of
#: JSON, the generator's text; the id is given by the script).
EVENT = json.dumps(
    {
        "kind": "message",
        "room": "r0",
        "name": "c0",
        "text": "~M0:12345:1234567890123~ hello from the load generator",
        "target": None,
        "ts": 1764921600.123456,
        "origin": "fa00b353f145:1",
    }
)
ORIGIN = "fa00b353f145:1"
BUS_LENGTH = 100000


#: Events per C{publishMany} call measured by L{batchCost}: a turn of a
#: few events, and a busy sender's turn (the node's cap is 256).
BATCHES = (16, 128)


def publishScript(name: str = "publish") -> str | None:
    """
    A cluster script the measured nodes run: the pinned chatsvc's
    (C{--chatsvc-rev}) if there is one, else the work tree's; C{None} if
    that chatsvc has no script of that name.
    """
    from benchmarks.servers import PINNED

    if not PINNED:
        from chatsvc.cluster.scripts import SCRIPTS

        return SCRIPTS.get(name)
    import importlib.util

    path = Path(PINNED["tree"]) / "chatsvc/cluster/scripts.py"
    spec = importlib.util.spec_from_file_location("_pinned_cluster_scripts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SCRIPTS.get(name)


def _publishSha(client: RedisClient, name: str = "publish") -> str:
    source = publishScript(name)
    sha = client.call("SCRIPT", "LOAD", source)
    assert sha == hashlib.sha1(source.encode()).hexdigest()
    # The sender holds a name: the script checks that first.
    client.call("HSET", f"chatsvc:member:{ORIGIN}", "name", "c0")
    return sha


def _publishArgs(sha: str) -> list[str]:
    return ["EVALSHA", sha, "0", EVENT, "r0", "1", "", ORIGIN, str(BUS_LENGTH)]


def _publishManyArgs(sha: str, events: int) -> list[str]:
    """
    C{publishMany} of C{events} room messages from one sender (as a node
    sends one flat-out sender's turn): ARGV done, maxlen, then four per
    event.
    """
    return ["EVALSHA", sha, "0", "", str(BUS_LENGTH), *[EVENT, "r0", "1", ORIGIN] * events]


def _percentiles(samples: list[int]) -> dict:
    samples.sort()
    n = len(samples)
    return {
        "p50_us": round(samples[n // 2] / 1000, 1),
        "p99_us": round(samples[min(n - 1, round(0.99 * (n - 1)))] / 1000, 1),
        "mean_us": round(sum(samples) / n / 1000, 1),
        "samples": n,
    }


def roundTrip(redis: RedisServer, count: int = 20000) -> dict:
    """
    PING and the publish script, one at a time from one client: the round
    trip's p50, p99 and mean in microseconds.
    """
    client = RedisClient(redis.port)
    out = {}
    try:
        sha = _publishSha(client)
        for name, args in (("ping", ["PING"]), ("publish", _publishArgs(sha))):
            request = client.encode(*args)
            sock = client.sock
            samples = []
            for _ in range(count):
                t = time.perf_counter_ns()
                sock.sendall(request)
                client.reply()
                samples.append(time.perf_counter_ns() - t)
            out[name] = _percentiles(samples)
    finally:
        client.close()
    out["redis_benchmark_ping"] = redisBenchmarkPing(redis.port)
    return out


def redisBenchmarkPing(port: int, count: int = 50000) -> dict:
    """
    C{redis-benchmark -t ping -c 1 --csv}: one client, one request at a
    time; its requests per second and latency percentiles (ms).
    """
    argv = [REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(port), "-c", "1", "-n", str(count)]
    argv += ["-t", "ping", "--csv"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    # Progress lines end in a carriage return; the CSV is what is left.
    lines = [x.rpartition("\r")[2] for x in out.stdout.splitlines()]
    rows = list(csv.reader(x for x in lines if x.startswith('"')))
    if len(rows) < 2 or rows[0][0] != "test":
        return {"error": (out.stderr or out.stdout).strip()[-300:]}
    return {row[0]: dict(zip(rows[0][1:], map(float, row[1:]), strict=True)) for row in rows[1:]}


def publishCost(redis: RedisServer, count: int = 200000, events: int = 0) -> dict:
    """
    The publish script pipelined as busy nodes send it: Redis's CPU per
    publish (µs, /proc), its own time in the script (µs per call, INFO
    commandstats), and publishes per second.  With C{events}, the
    C{publishMany} script instead, C{events} messages a call (C{count}
    messages in all): the figures are per message, not per call.
    """
    client = RedisClient(redis.port)
    try:
        if events:
            args = _publishManyArgs(_publishSha(client, "publishMany"), events)
            calls = max(1, count // events)
        else:
            args, calls = _publishArgs(_publishSha(client)), count
        client.call("CONFIG", "RESETSTAT")
        cpu0, t0 = cpuSeconds(redis.pid), time.monotonic()
        argv = [REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(redis.port)]
        pipeline = "32" if events < 32 else "4"
        argv += ["-c", "4", "-P", pipeline, "-n", str(calls), "-q", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        cpu1, t1 = cpuSeconds(redis.pid), time.monotonic()
        stats = client.commandStats()
    finally:
        client.close()
    calls = stats.get("evalsha", {}).get("calls", 0)
    published = calls * (events or 1)
    out = {
        "publishes": int(published),
        "seconds": round(t1 - t0, 3),
        "publishes_per_s": round(published / (t1 - t0)),
        "redis_cpu": round((cpu1 - cpu0) / (t1 - t0), 3),
        "cpu_us_per_publish": round((cpu1 - cpu0) / published * 1e6, 2) if calls else None,
        "script_us_per_call": round(stats["evalsha"]["usec"] / calls, 2) if calls else None,
        # Its line repeats the command (long for a batch): the figures only.
        "redis_benchmark": [x.rpartition(": ")[2] for x in done.stdout.strip().splitlines()[-1:]]
        or done.stderr[-200:],
    }
    if events:
        out["events_per_call"] = events
        if calls:
            out["script_us_per_publish"] = round(stats["evalsha"]["usec"] / published, 3)
    return out


def readCost(redis: RedisServer, batched: int = 400, single: int = 20000, events: int = 1) -> dict:
    """
    The bus (filled by L{publishCost}) read back as a node reads it:
    C{XREAD COUNT 1000} (a node under load gets up to 1000 entries a
    read), C{batched} times, pipelined; and C{XREAD COUNT 1}, C{single}
    times, one at a time (a node at a low rate wakes for each entry).
    Redis's CPU per entry read (µs, /proc) and its own time per call
    (commandstats).  One reader: N nodes cost N times this per entry.

    Every read starts at the bus's first entry (an entry costs the same to
    send whichever it is), so the replies are all as long as the first,
    and the pipelined ones are read back without being parsed.

    With C{events} (the bus filled by C{publishMany} calls of that many
    messages), only the pipelined read, about 4000 messages a call, and
    the figures also per message.
    """
    client = RedisClient(redis.port)
    out = {}
    reads = [(1000, batched, True), (1, single, False)]
    if events > 1:
        # Only under load are there batches, and under load reads are batched.
        reads = [(max(1, 4000 // events), batched, True)]
    try:
        for count, times, pipelined in reads:
            request = client.encode("XREAD", "COUNT", count, "STREAMS", "chatsvc:bus", "0-0")
            client.sock.sendall(request)
            entries = len(client.reply()[0][1])
            replyBytes = _replyLength(client, request) if pipelined else 0
            client.call("CONFIG", "RESETSTAT")
            cpu0, t0 = cpuSeconds(redis.pid), time.monotonic()
            if pipelined:
                client.sock.sendall(request * times)
                remaining = replyBytes * times
                while remaining:
                    remaining -= len(client.sock.recv(min(remaining, 1 << 20)))
            else:
                for _ in range(times):
                    client.sock.sendall(request)
                    client.reply()
            cpu1, t1 = cpuSeconds(redis.pid), time.monotonic()
            stats = client.commandStats().get("xread", {"calls": 0, "usec": 0})
            read = entries * times
            figures = out[f"count_{count}" if events == 1 else "batched"] = {
                "entries": read,
                "seconds": round(t1 - t0, 3),
                "cpu_us_per_entry": round((cpu1 - cpu0) / read * 1e6, 3),
                "xread_us_per_call": round(stats["usec"] / max(1, stats["calls"]), 2),
                "xread_us_per_entry": round(stats["usec"] / read, 3),
            }
            if events > 1:
                figures.update(
                    count=count,
                    events_per_entry=events,
                    cpu_us_per_event=round((cpu1 - cpu0) / (read * events) * 1e6, 3),
                    xread_us_per_event=round(stats["usec"] / (read * events), 3),
                )
    finally:
        client.close()
    return out


def _replyLength(client: RedisClient, request: bytes) -> int:
    """
    The length in bytes of the reply to C{request} (sent once more and
    read raw until it parses).
    """
    client.sock.sendall(request)
    raw = b""
    while True:
        raw += client.sock.recv(1 << 20)
        probe = RedisClient.__new__(RedisClient)
        probe.sock, probe.buf = _NoSocket(), raw
        try:
            probe.reply()
        except _Short:
            continue
        return len(raw) - len(probe.buf)


class _Short(Exception):
    pass


class _NoSocket:
    """
    A socket with nothing more to read: parsing a partial reply stops.
    """

    def recv(self, size: int) -> bytes:
        raise _Short()


def batchCost(redis: RedisServer, events: int) -> dict:
    """
    C{publishMany} of C{events} messages a call onto an emptied bus, and
    that bus read back: Redis's costs per message.
    """
    client = RedisClient(redis.port)
    try:
        client.call("DEL", "chatsvc:bus")
    finally:
        client.close()
    return {"publish": publishCost(redis, events=events), "read": readCost(redis, events=events)}


def measure() -> dict:
    """
    All of them against one fresh Redis of our own.
    """
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        redis = RedisServer(Path(directory))
        try:
            out = {
                "round_trip": roundTrip(redis),
                "publish": publishCost(redis),
                "read": readCost(redis),
            }
            if publishScript("publishMany") is not None:
                out["batched"] = {str(k): batchCost(redis, k) for k in BATCHES}
            return out
        finally:
            redis.stop()


if __name__ == "__main__":
    print(json.dumps(measure(), indent=1))
