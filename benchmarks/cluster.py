"""
The cluster mode measured (issue 13): chatsvc as 1, 2 and 4 processes
through one Redis (C{twistd chat --redis}), beside the single process
without Redis, with the harness's generator and loads, interleaved in one
session.

    python -m benchmarks.cluster --chatsvc-rev HEAD          # ~12 min, 3 runs
    python -m benchmarks.cluster --runs 1 --scenario one     # one load, quick look
    python -m benchmarks.cluster --redis-only                # Redis alone, ~10 s

What it adds to L{benchmarks.run_all} (which can run the cluster kinds
too, C{--server chatsvc-cluster2}, but measures one process's CPU):

  - the CPU of every node and of redis-server, separately, over the
    measured window (a mark when the window opens, through the
    generator's C{onWindow}, and one when it closes);
  - Redis's C{INFO commandstats} over the window, and the room messages
    Redis numbered in it (the rooms' C{last} ids): Redis's CPU and its
    time in EVALSHA and XREAD per published message;
  - where the kernel put the clients (established connections per node);
  - a low-rate latency load (C{latency-low-100}: 100 clients, 10
    senders, 50 msg/s in all), where the p99 is the path and the Redis
    round trip rather than queueing;
  - Redis alone first (L{benchmarks.cluster_redis}): the round trip, the
    publish script's cost and rate, the bus read's cost per entry.

Every run is a JSON line in C{benchmarks/results/SESSION.jsonl} (the
harness's format: C{python -m benchmarks.report} reads it); the tables
and the paper estimate's inputs go to the terminal and to
C{benchmarks/results/cluster-latest.md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

from benchmarks import metrics
from benchmarks.cluster_nodes import Mark, mark
from benchmarks.loadgen import runLoad
from benchmarks.procstat import rssKiB
from benchmarks.run_all import RESULTS_DIR, machineInfo, noteHealth
from benchmarks.servers import CLUSTER, SERVERS, Running, commandLine, pinChatsvc

#: The servers of a session, in table order: the baseline first.
DEFAULT_SERVERS = ["chatsvc", *CLUSTER]

#: The low-rate latency load: the round trip, not queueing.
LOW_RATE = 50.0


def scenarios(clients: int = 200) -> list[metrics.Scenario]:
    """
    One sender flat out, all flat out and paced into a room of
    C{clients}; the harness's latency load and a low-rate one.
    """
    chosen = [s for s in metrics.scenarios([clients], []) if s.family in ("fanout", "latency")]
    chosen.append(metrics.Scenario("latency-low-100", "latency", 100, 10, "paced", LOW_RATE))
    return chosen


def _published(running) -> int:
    """
    Room messages Redis has numbered so far (the sum of the rooms' last
    ids): what the publish script stored, whichever node sent it.
    """
    client = running.redis.client
    total = 0
    for key in client.call("SMEMBERS", "chatsvc:rooms") or []:
        total += int(client.call("HGET", f"chatsvc:room:{key}", "last") or 0)
    return total


class Window:
    """
    The measured window of one run, from the cluster's side: marks when
    it opens (called from the generator's C{onWindow}) and when it
    closes (a timer of the window's length), and what the kernel did
    with the clients.
    """

    def __init__(self, running) -> None:
        self.running = running
        self.cluster = hasattr(running, "redis")
        self.marks: list[tuple[Mark, int]] = []
        self.clients: list[int] = []
        self.rss: list[int] = []
        self.timer: threading.Timer | None = None

    def _mark(self) -> None:
        if self.cluster:
            self.marks.append((self.running.mark(), _published(self.running)))
        else:
            self.marks.append((mark([self.running.pid]), 0))

    def open(self, seconds: float) -> None:
        self._mark()
        self.timer = threading.Timer(seconds, self.close)
        self.timer.start()

    def close(self) -> None:
        self._mark()
        if self.cluster:
            self.clients = self.running.clients()
            self.rss = self.running.rss()
        else:
            self.rss = [rssKiB(self.running.pid)]

    def wait(self) -> None:
        if self.timer is not None:
            self.timer.join(30)

    def summary(self, window: float, deliveries: int) -> dict:
        """
        CPU of the nodes and of Redis over the window (1.00 = a core), and
        the costs per delivery and per published message.
        """
        if len(self.marks) < 2:
            return {"error": "window not measured"}
        (a, pa), (b, pb) = self.marks[:2]
        elapsed = b.wall - a.wall
        each = [(y - x) / elapsed for x, y in zip(a.nodes, b.nodes, strict=True)]
        nodes = sum(each)
        out = {
            "nodes": len(each),
            "nodes_cpu": round(nodes, 3),
            "nodes_cpu_each": [round(x, 3) for x in each],
            "machine_cores": round((b.machine - a.machine) / elapsed, 3),
            "rss_kib_each": self.rss,
        }
        if deliveries:
            out["node_us_per_delivery"] = round(nodes * elapsed / deliveries * 1e6, 3)
        if not self.cluster:
            return out
        redisCpu = (b.redis - a.redis) / elapsed
        published = pb - pa
        out.update(redis_cpu=round(redisCpu, 3), published=published, clients_per_node=self.clients)
        out["published_per_s"] = round(published / elapsed)
        commands = {}
        for name in set(a.stats) | set(b.stats):
            calls = b.stats.get(name, {}).get("calls", 0) - a.stats.get(name, {}).get("calls", 0)
            usec = b.stats.get(name, {}).get("usec", 0) - a.stats.get(name, {}).get("usec", 0)
            if calls:
                commands[name] = {"calls": int(calls), "usec": int(usec)}
        out["redis_commands"] = commands
        if published:
            per = 1e6 / published
            out["redis_cpu_us_per_publish"] = round(redisCpu * elapsed * per, 2)
            for name in ("evalsha", "xread", "xadd"):
                if name in commands:
                    out[f"{name}_us_per_publish"] = round(commands[name]["usec"] / published, 3)
                    out[f"{name}_calls_per_publish"] = round(commands[name]["calls"] / published, 4)
            out["node_us_per_publish"] = round(nodes * elapsed * per, 2)
        return out


def runOne(server, scenario, timing, workers: int) -> dict:
    """
    Start C{server} (a cluster: Redis and its nodes), put C{scenario}'s
    load on it, stop it; the harness's summary plus the cluster's figures.
    """
    running = Running(server, scenario.clients)
    window = Window(running)
    try:
        plan = scenario.plan(server, running.port)
        raw = runLoad(plan, workers, timing, running.pid, True, window.open)
        window.wait()
        summary = metrics.summarize(scenario, raw, timing.window, True)
        delivered = round(summary["deliveries_per_s"] * timing.window)
        cluster = window.summary(timing.window, delivered)
        if "error" in cluster:
            summary["error"] = cluster["error"]
        summary["node0_cpu"] = summary.get("server_cpu")
        summary.update(cluster)
        # server_cpu is every node's; others are neither nodes, Redis nor generator.
        summary["server_cpu"] = cluster.get("nodes_cpu", summary.get("server_cpu"))
        summary["others_cpu"] = round(
            max(
                0.0,
                cluster.get("machine_cores", 0)
                - cluster.get("nodes_cpu", 0)
                - cluster.get("redis_cpu", 0)
                - summary.get("gen_cpu", 0),
            ),
            3,
        )
        noteHealth(server, running, summary)
        return summary
    finally:
        window.wait()
        code = running.stop()
        if code not in (0, None, -15):
            print(f"  ({server.name} exited with status {code})", file=sys.stderr)


def headline(scenario, summary: dict) -> str:
    text = metrics.headline(scenario.family, summary)
    if summary.get("error"):
        return text
    extra = [f"nodes CPU {summary.get('nodes_cpu', 0):.0%}"]
    if "redis_cpu" in summary:
        extra.append(f"Redis CPU {summary['redis_cpu']:.0%}")
        if "redis_cpu_us_per_publish" in summary:
            extra.append(f"Redis {summary['redis_cpu_us_per_publish']} µs/publish")
        extra.append(f"clients per node {summary.get('clients_per_node')}")
    if "node_us_per_delivery" in summary:
        extra.append(f"{summary['node_us_per_delivery']} node-µs/delivery")
    lat = summary.get("latency_ms")
    if lat and scenario.family != "latency":
        extra.append(f"p99 {lat['p99']} ms")
    return text + "  [" + "; ".join(extra) + "]"


# -- the tables ---------------------------------------------------------------


def _median(records: list[dict], key) -> float | None:
    values = []
    for r in records:
        if "error" in r:
            continue
        v = key(r) if callable(key) else r.get(key)
        if v is not None:
            values.append(v)
    return statistics.median(values) if values else None


def _per(record: dict, key: str) -> float | None:
    """
    The inverse of C{record[key]}: calls per publish as publishes per
    call (all scripts' calls count, but under load nearly all publish).
    """
    v = record.get(key)
    return 1 / v if v else None


def _fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:.{digits}f}"


def tables(records: list[dict], servers: list[str]) -> str:
    """
    One table per load: each figure the median of the runs, and every
    cluster's deliveries/s against the single process's of the session.
    """
    by: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        by.setdefault((r["scenario"], r["server"]), []).append(r)
    loads = list(dict.fromkeys(r["scenario"] for r in records if r.get("family") != "redis"))
    rows = [
        ("deliveries/s", "deliveries_per_s", 0),
        ("vs 1 process", None, 2),
        ("delivered", "delivered_fraction", 4),
        ("p99 ms", lambda r: (r.get("latency_ms") or {}).get("p99"), 2),
        ("p50 ms", lambda r: (r.get("latency_ms") or {}).get("p50"), 2),
        ("nodes CPU", "nodes_cpu", 2),
        ("Redis CPU", "redis_cpu", 2),
        ("generator CPU", "gen_cpu", 2),
        ("others CPU", "others_cpu", 2),
        ("node µs/delivery", "node_us_per_delivery", 2),
        ("published/s", "published_per_s", 0),
        ("Redis CPU µs/publish", "redis_cpu_us_per_publish", 2),
        ("EVALSHA µs/publish", "evalsha_us_per_publish", 2),
        ("publishes per EVALSHA", lambda r: _per(r, "evalsha_calls_per_publish"), 1),
        ("publishes per XREAD", lambda r: _per(r, "xread_calls_per_publish"), 1),
        ("XREAD µs/publish", "xread_us_per_publish", 2),
        ("node µs/publish", "node_us_per_publish", 1),
        ("runs", lambda r: 1, 0),
    ]
    out = []
    for load in loads:
        base = _median(by.get((load, "chatsvc"), []), "deliveries_per_s")
        lines = [f"**{load}**", "", "| | " + " | ".join(servers) + " |"]
        lines.append("|---|" + "---:|" * len(servers))
        for title, key, digits in rows:
            cells = []
            for s in servers:
                recs = by.get((load, s), [])
                if title == "runs":
                    ok = sum(1 for r in recs if "error" not in r)
                    cells.append(f"{ok}/{len(recs)}")
                    continue
                if key is None:
                    v = _median(recs, "deliveries_per_s")
                    cells.append(f"{v / base:.2f}×" if v and base else "—")
                    continue
                cells.append(_fmt(_median(recs, key), digits))
            if any(c != "—" for c in cells):
                lines.append(f"| {title} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def spread(records: list[dict]) -> str:
    """
    Where the kernel put the clients, run by run.
    """
    lines = []
    for r in records:
        if r.get("clients_per_node") and r.get("nodes", 1) > 1:
            lines.append(f"{r['scenario']} {r['server']} run {r['run']}: {r['clients_per_node']}")
    return "\n".join(lines)


def _fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """
    Least squares C{y = a + b x} through C{points}: C{(a, b)}.
    """
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


def inputs(records: list[dict]) -> str:
    """
    The paper estimate's measured inputs: per load, the costs per
    publish on the nodes and in Redis as a line in the number of nodes N
    (fitted over the medians for 1, 2 and 4 nodes: the intercept is what
    a publish costs once, the slope what every node adds, reading it),
    and the single process's cost per delivery.
    """
    by: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        by.setdefault((r["scenario"], r["server"]), []).append(r)
    lines = []
    for load in dict.fromkeys(r["scenario"] for r in records):
        single = _median(by.get((load, "chatsvc"), []), "node_us_per_delivery")
        text = [f"{load}:"]
        if single is not None:
            text.append(f"single process {single:.3f} µs/delivery")
        for key, what in (
            ("node_us_per_publish", "nodes µs/publish"),
            ("redis_cpu_us_per_publish", "Redis CPU µs/publish"),
            ("evalsha_us_per_publish", "EVALSHA µs/publish"),
            ("xread_us_per_publish", "XREAD µs/publish"),
        ):
            points = []
            for name, nodes in (("chatsvc-cluster1", 1), ("chatsvc-cluster2", 2),
                                ("chatsvc-cluster4", 4)):  # fmt: skip
                v = _median(by.get((load, name), []), key)
                if v is not None:
                    points.append((nodes, v))
            fit = _fit(points)
            if fit:
                text.append(f"{what} = {fit[0]:.2f} + {fit[1]:.2f}·N")
        if len(text) > 1:
            lines.append(" ".join(text[:1]) + " " + "; ".join(text[1:]))
    return "\n".join(lines)


def redisAlone(alone: dict) -> str:
    """
    The Redis-alone figures in a few lines.
    """
    rt, pub, read = alone["round_trip"], alone["publish"], alone["read"]
    bench = rt.get("redis_benchmark_ping", {}).get("PING_MBULK", {})
    return "\n".join(
        [
            f"round trip, Python client, one at a time: PING p50 {rt['ping']['p50_us']} µs, "
            f"p99 {rt['ping']['p99_us']} µs; publish script p50 {rt['publish']['p50_us']} µs, "
            f"p99 {rt['publish']['p99_us']} µs",
            f"redis-benchmark -t ping -c 1 (PING_MBULK): p50 {bench.get('p50_latency_ms')} ms, "
            f"p99 {bench.get('p99_latency_ms')} ms, {bench.get('rps')} requests/s",
            f"publish script pipelined (4 x 32): {pub['publishes_per_s']:,} publishes/s at "
            f"Redis CPU {pub['redis_cpu']:.2f}; {pub['cpu_us_per_publish']} µs CPU/publish, "
            f"{pub['script_us_per_call']} µs in the script (commandstats)",
            f"bus read, XREAD COUNT 1000 pipelined: {read['count_1000']['cpu_us_per_entry']} µs "
            f"CPU/entry ({read['count_1000']['xread_us_per_entry']} in XREAD); COUNT 1 one at a "
            f"time: {read['count_1']['cpu_us_per_entry']} µs CPU/entry "
            f"({read['count_1']['xread_us_per_entry']} in XREAD)",
            *(
                f"publishMany of {k} events pipelined: {b['publish']['publishes_per_s']:,} "
                f"messages/s at Redis CPU {b['publish']['redis_cpu']:.2f}; "
                f"{b['publish']['cpu_us_per_publish']} µs CPU/message, "
                f"{b['publish'].get('script_us_per_publish')} µs in the script; its bus read "
                f"(COUNT {b['read']['batched']['count']}): "
                f"{b['read']['batched']['cpu_us_per_event']} µs CPU/message "
                f"({b['read']['batched']['xread_us_per_event']} in XREAD)"
                for k, b in alone.get("batched", {}).items()
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    p.add_argument("--server", default=",".join(DEFAULT_SERVERS), help="comma-separated")
    p.add_argument("--scenario", help="only loads whose name contains this")
    p.add_argument("--clients", type=int, default=200, help="room size (default 200)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="generator processes (default 2)")
    p.add_argument("--quick", action="store_true", help="the harness's short windows")
    p.add_argument("--chatsvc-rev", help="measure chatsvc as committed at this revision")
    p.add_argument("--redis-only", action="store_true", help="only Redis alone")
    p.add_argument("--no-redis", action="store_true", help="skip Redis alone")
    p.add_argument("--out", help="JSON lines file (default benchmarks/results/SESSION.jsonl)")
    args = p.parse_args(argv)

    names = [s.strip() for s in args.server.split(",") if s.strip()]
    for name in names:
        if name not in SERVERS or SERVERS[name].isGenerator:
            sys.exit(f"unknown server {name!r}")
    if args.chatsvc_rev:
        print(f"chatsvc pinned at {pinChatsvc(args.chatsvc_rev)}")
    timing = metrics.timing(args.quick)
    chosen = [s for s in scenarios(args.clients) if not args.scenario or args.scenario in s.name]
    session = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS_DIR / f"{session}.jsonl"
    info = machineInfo()
    info.update(
        session=session,
        argv="python -m benchmarks.cluster " + " ".join(argv or sys.argv[1:]),
        workers=args.workers,
        timing=timing.__dict__,
        quick=args.quick,
        runs=args.runs,
        versions={n: SERVERS[n].version() for n in names},
        commands={n: commandLine(SERVERS[n]) for n in names},
    )
    if not args.no_redis:
        from benchmarks.cluster_redis import measure

        print("Redis alone ...", flush=True)
        alone = measure()
        alone["load_avg"] = round(os.getloadavg()[0], 2)
        print(json.dumps(alone, indent=1))
        info["redis_alone"] = alone
    if args.redis_only:
        return 0
    started = time.monotonic()
    records: list[dict] = []
    with out.open("a") as sink:
        sink.write(json.dumps({"session": info}) + "\n")
        for rep in range(1, args.runs + 1):
            for scenario in chosen:
                for name in names:
                    server = SERVERS[name]
                    label = f"[run {rep}/{args.runs}] {scenario.name:16} {name:17}"
                    print(label, end=" ", flush=True)
                    t = time.monotonic()
                    try:
                        summary = runOne(server, scenario, timing, args.workers)
                    except Exception as e:  # one broken run must not lose the others
                        summary = {"error": f"{type(e).__name__}: {e}"}
                        traceback.print_exc(limit=3)
                    summary["seconds"] = round(time.monotonic() - t, 1)
                    r = {
                        "session": session,
                        "run": rep,
                        "server": name,
                        "scenario": scenario.name,
                        "family": scenario.family,
                        **summary,
                        "version": server.version(),
                    }
                    records.append(r)
                    sink.write(json.dumps(r) + "\n")
                    sink.flush()
                    print(headline(scenario, summary), flush=True)
    info_end = {"loadavg_end": os.getloadavg(), "seconds": round(time.monotonic() - started)}
    text = tables(records, names)
    where = spread(records)
    loads = ", ".join(f"{x:.2f}" for x in info["loadavg_start"])
    loadsEnd = ", ".join(f"{x:.2f}" for x in info_end["loadavg_end"])
    report = (
        f"session {session} ({out.name}); load average at start {loads}, at end {loadsEnd}; "
        f"{info_end['seconds']} s\n\n{text}\n\n"
        f"clients per node (kernel's SO_REUSEPORT spread):\n{where}\n\n"
        f"inputs of the estimate (medians, fitted over N = 1, 2, 4):\n{inputs(records)}\n"
    )
    if "redis_alone" in info:
        report += f"\nRedis alone:\n{redisAlone(info['redis_alone'])}\n"
    (RESULTS_DIR / "cluster-latest.md").write_text(report)
    print("\n" + report)
    print(f"{len(records)} records in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
