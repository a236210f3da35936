"""
Why two generators can disagree on a server's CPU at the paced load
(200 members, every one sending, 500 messages per second in all): the
same load measured several ways in one session.

    python -m benchmarks.paced_cpu                          # chatsvc and ngircd
    python -m benchmarks.paced_cpu --server chatsvc --tick 0,0.01 --runs 2

For each server and each send schedule (C{--tick}, L{Plan.tick}: 0 is the
harness's own, one message every 2 ms; 0.01 sends what fell due in each
10 ms together, as a generator on a 10 ms timer would), one run of the
harness's C{fanout-paced-200} load, and the server's CPU

  - over the harness's window (3 s after 1 s of warm-up; 1.00 = a core),
  - the same as a share of the whole machine (÷ cores, as C{top}'s
    Solaris mode, C{psutil.cpu_percent()/ncpu} or a per-machine graph
    show it),
  - over the whole life of the load (from the server listening to the end
    of the drain: connecting, logging in, settling, warm-up and drain,
    mostly idle, count in it),

with the server's waits per second over the window (voluntary context
switches: each is a reactor turn that found nothing ready and slept in
C{epoll_wait}; at this load about one per message if messages come
alone, fewer if they come together), deliveries per
second, p99 latency, and the generator's and other processes' CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from benchmarks import metrics
from benchmarks.loadgen import runLoad
from benchmarks.procstat import CPUMark
from benchmarks.servers import SERVERS, Running, pinChatsvc


def switches(pid: int) -> int:
    """
    Voluntary context switches of C{pid} so far.
    """
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def runOnce(name: str, tick: float, workers: int, timing) -> dict:
    """
    One paced-200 run against a fresh C{name} with send tick C{tick}.
    """
    server = SERVERS[name]
    scenario = next(s for s in metrics.scenarios([200], []) if s.name == "fanout-paced-200")
    running = Running(server, scenario.clients)
    try:
        start = CPUMark(running.pid)
        plan = scenario.plan(server, running.port)
        plan.tls = server.tls
        plan.tick = tick
        ctx: dict = {}

        def mark(key: str) -> None:
            ctx[key] = (time.monotonic(), switches(running.pid))

        def onWindow(seconds: float) -> None:
            mark("open")
            timer = threading.Timer(seconds, mark, ("close",))
            timer.daemon = True
            timer.start()

        raw = runLoad(plan, workers, timing, running.pid, server.relay, onWindow)
        end = CPUMark(running.pid)
        (t0, n0), (t1, n1) = ctx["open"], ctx["close"]
        turns = (n1 - n0) / (t1 - t0)
    finally:
        running.stop()
    s = metrics.summarize(scenario, raw, timing.window, server.relay)
    cores = os.cpu_count() or 1
    return {
        "server": name,
        "tick_ms": round(tick * 1000, 1),
        "deliveries_per_s": s["deliveries_per_s"],
        "sent_per_s": s["sent_per_s"],
        "delivered_fraction": s.get("delivered_fraction"),
        "cpu_window": s.get("server_cpu"),
        "cpu_window_machine": round(s.get("server_cpu", 0) / cores, 3),
        "cpu_whole": round(start.share(end), 3),
        "whole_s": round(end.wall - start.wall, 1),
        "waits_per_s": round(turns),
        "p99_ms": s.get("latency_ms", {}).get("p99"),
        "gen_cpu": s.get("gen_cpu"),
        "others_cpu": s.get("others_cpu"),
        "us_per_delivery": round(1e6 * s.get("server_cpu", 0) / max(1, s["deliveries_per_s"]), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.paced_cpu", description=__doc__)
    p.add_argument("--server", default="chatsvc,ngircd", help="comma-separated (default both)")
    p.add_argument(
        "--tick", default="0,0.01,0.4", help="send ticks in seconds (default 0,0.01,0.4)"
    )
    p.add_argument("--runs", type=int, default=1, help="rounds (interleaved, default 1)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chatsvc-rev", help="measure chatsvc as committed at this revision")
    p.add_argument("--out", help="JSON lines file to append to")
    args = p.parse_args(argv)
    if args.chatsvc_rev:
        print(f"chatsvc pinned at {pinChatsvc(args.chatsvc_rev)}")
    timing = metrics.timing(False)
    ticks = [float(x) for x in args.tick.split(",")]
    names = [x.strip() for x in args.server.split(",") if x.strip()]
    rows = []
    sink = Path(args.out).open("a") if args.out else None
    for _ in range(args.runs):
        for tick in ticks:
            for name in names:
                row = runOnce(name, tick, args.workers, timing)
                row["load_avg"] = round(os.getloadavg()[0], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if sink is not None:
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
    keys = [
        "server",
        "tick_ms",
        "deliveries_per_s",
        "cpu_window",
        "cpu_window_machine",
        "cpu_whole",
        "whole_s",
        "waits_per_s",
        "us_per_delivery",
        "p99_ms",
        "gen_cpu",
        "others_cpu",
    ]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
