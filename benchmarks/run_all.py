"""
Run the benchmarks: every metric against chatsvc and each peer, N runs
each, on this machine in this session; write every run as a JSON line
and the medians as a Markdown report.

    python -m benchmarks.run_all                 # everything, 3 runs: RESULTS.md
    python -m benchmarks.run_all --quick         # 1 short run of each
    python -m benchmarks.run_all --server chatsvc --metric fanout --clients 200

Runs are interleaved (run 1 of every scenario on every server, then run
2, ...), so that a burst of someone else's load on a shared machine hits
every server alike rather than all runs of one.  Each run starts its
server afresh.  A partial run (some servers or metrics) prints its table
and writes C{benchmarks/results/latest.md}; only a full run, or
C{--report PATH}, writes RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchmarks import metrics, report
from benchmarks.loadgen import runLoad
from benchmarks.servers import CHATSVC, PEERS, SERVERS, TLS, Running, commandLine, pinChatsvc

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
FAMILIES = ("fanout", "latency", "idle", "ceiling")


def parseArgs(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run_all",
        description="Measure chatsvc and its peers with one load generator.",
    )
    p.add_argument(
        "--server",
        default=",".join(CHATSVC + PEERS),
        help="comma-separated: chatsvc (line protocol), chatsvc-irc (its IRC gateway), "
        "chatsvc-web (its web gateway, over a WebSocket), ngircd, miniircd, words "
        "(default: all of these); over TLS: chatsvc-tls, chatsvc-irc-tls, ngircd-tls",
    )
    p.add_argument(
        "--metric",
        default=",".join(FAMILIES),
        help="comma-separated: fanout, latency, idle, ceiling (default: all)",
    )
    p.add_argument("--clients", help="room sizes for fanout, e.g. 200 (default: 50,200)")
    p.add_argument("--idle", help="idle client counts, e.g. 1000 (default: 1000,10000)")
    p.add_argument("--scenario", help="run only scenarios whose name contains this")
    p.add_argument("--runs", type=int, help="runs of each (default: 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="short windows, one run, idle 1000")
    p.add_argument("--workers", type=int, default=2, help="generator processes (default: 2)")
    p.add_argument("--report", help="write the Markdown report here (default: see above)")
    p.add_argument("--out", help="JSON lines file (default: benchmarks/results/SESSION.jsonl)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the (Python) server during each window; stacks in benchmarks/results/",
    )
    p.add_argument(
        "--chatsvc-rev",
        help="measure chatsvc as committed at this git revision (e.g. HEAD), exported to a "
        "temporary directory, instead of the shared work tree as it is during the run",
    )
    p.add_argument("--from-jsonl", help="only rebuild the report from this JSON lines file")
    return p.parse_args(argv)


def _ints(text: str | None) -> list[int] | None:
    return [int(x) for x in text.split(",")] if text else None


def machineInfo() -> dict:
    """
    What the report says about the machine and the software.
    """
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def noteHealth(server, running, summary: dict) -> None:
    """
    Record in a run's C{summary} the load average, and what went wrong
    with the server: the tracebacks it logged, or its death.
    """
    summary["load_avg"] = round(os.getloadavg()[0], 2)
    tracebacks, last = running.logErrors()
    if tracebacks:
        summary["server_tracebacks"] = tracebacks
        summary["server_traceback_last"] = last
        print(f"  ({server.name} logged {tracebacks} traceback(s): {last})", file=sys.stderr)
    if not running.alive():
        last = running.logTail(300).strip().splitlines() or ["?"]
        summary["error"] = f"server died: {last[-1]}"


def runOne(server, scenario, timing, workers: int, profile: bool) -> dict:
    """
    Start C{server}, put C{scenario}'s load on it, stop it; the summary.
    """
    extra = []
    if not server.relay:
        extra = ["--duration", str(timing.warmup + timing.window + 0.5)]
    running = Running(server, scenario.clients, extra)
    spies = []
    onWindow = None
    if profile and (server.isChatsvc or server.name in ("words", "miniircd")):

        def onWindow(seconds: float) -> None:
            spies.append(_startProfile(server, scenario, running.pid, seconds))

    try:
        plan = scenario.plan(server, running.port)
        plan.tls = server.tls
        raw = runLoad(plan, workers, timing, running.pid, server.relay, onWindow)
        summary = metrics.summarize(scenario, raw, timing.window, server.relay)
        if server.tls:
            summary["tls"] = next((r.tls for r in raw["results"] if r.tls), "")
        noteHealth(server, running, summary)
        return summary
    finally:
        for spy in spies:
            spy.wait(30)
        code = running.stop()
        if code not in (0, None, -15):
            print(f"  ({server.name} exited with status {code})", file=sys.stderr)


#: The generator's receive ceiling measured so far this session, by
#: (protocol, TLS or not, clients): deliveries per second against the blaster.
_CEILINGS: dict[tuple[str, bool, int], float] = {}


def _bound(server, scenario, summary: dict) -> str:
    """
    A warning for the human line when the generator or the shared machine,
    rather than the server, may have set the figure.
    """
    rate = summary.get("deliveries_per_s")
    if rate is None:
        return ""
    if scenario.name.startswith("ceiling-recv-"):
        _CEILINGS[(server.protocol, server.tls, scenario.clients)] = rate
        return ""
    notes = []
    ceiling = _CEILINGS.get((server.protocol, server.tls, scenario.clients))
    if ceiling and server.relay and rate >= report.GEN_BOUND * ceiling:
        notes.append(f"{rate / ceiling:.0%} of the generator's ceiling")
    machine, cpu = summary.get("machine_cores", 0), summary.get("server_cpu", 1)
    if server.relay and machine >= 0.92 * (os.cpu_count() or 2) and cpu < 0.9:
        notes.append(
            f"machine saturated: generator {summary.get('gen_cpu', 0):.0%}, "
            f"others {summary.get('others_cpu', 0):.0%}"
        )
    return f"  [{'; '.join(notes)}]" if notes else ""


def _startProfile(server, scenario, pid: int, seconds: float) -> subprocess.Popen:
    """
    py-spy record over the measured window, as collapsed stacks (one
    line per stack and its sample count; L{report.profileTop} sums them).
    """
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"profile-{server.name}-{scenario.name}.txt"
    spy = os.environ.get("PY_SPY", str(Path(sys.executable).parent / "py-spy"))
    cmd = [spy, "record", "-p", str(pid), "-d", f"{max(1, int(seconds))}", "-r", "250"]
    cmd += ["-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    args = parseArgs(argv)
    if args.from_jsonl:
        target = Path(args.report or HERE / "RESULTS.md")
        report.write(Path(args.from_jsonl), target)
        print(f"wrote {target}")
        return 0
    names = [s.strip() for s in args.server.split(",") if s.strip()]
    families = [m.strip() for m in args.metric.split(",") if m.strip()]
    for name in names:
        if name not in SERVERS or SERVERS[name].isGenerator:
            sys.exit(f"unknown server {name!r} ({', '.join(CHATSVC + PEERS + TLS)})")
    for family in families:
        if family not in FAMILIES:
            sys.exit(f"unknown metric {family!r} ({', '.join(FAMILIES)})")
    if args.chatsvc_rev:
        print(f"chatsvc pinned at {pinChatsvc(args.chatsvc_rev)}")
    runs = args.runs or (1 if args.quick else 3)
    timing = metrics.timing(args.quick)
    idle = _ints(args.idle) or ([1000] if args.quick else None)
    chosen = [
        s
        for s in metrics.scenarios(_ints(args.clients), idle)
        if s.family in families and (not args.scenario or args.scenario in s.name)
    ]
    ceil = []
    if "ceiling" in families:
        ceil = metrics.ceilings(_ints(args.clients))
        if args.scenario:
            ceil = [s for s in ceil if args.scenario in s.name]
    protocols = sorted({SERVERS[n].protocol for n in names})
    kinds = sorted({(SERVERS[n].protocol, SERVERS[n].tls) for n in names})
    blasters = [
        SERVERS[f"{kind}-{p}" + ("-tls" if tls else "")]
        for kind in ("blaster", "relay")
        for p, tls in kinds
    ]

    session = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS_DIR / f"{session}.jsonl"
    info = machineInfo()
    info["session"] = session
    info["argv"] = "python -m benchmarks.run_all " + " ".join(argv or sys.argv[1:])
    info["workers"] = args.workers
    info["timing"] = timing.__dict__
    info["quick"] = args.quick
    info["runs"] = runs
    used = [SERVERS[n] for n in names] + blasters
    info["versions"] = {s.name: s.version() for s in used}
    info["commands"] = {s.name: commandLine(s) for s in used}
    started = time.monotonic()
    count = 0
    _CEILINGS.clear()
    with out.open("a") as sink:
        sink.write(json.dumps({"session": info}) + "\n")
        for rep in range(1, runs + 1):
            work = [
                (b, s)
                for s in ceil
                for b in blasters
                if b.name.startswith("relay") == (s.mode == "paced")
            ]
            work += [(SERVERS[n], s) for s in chosen for n in names]
            for server, scenario in work:
                if scenario.family == "ceiling" and server.protocol not in protocols:
                    continue
                label = f"[run {rep}/{runs}] {scenario.name:18} {server.name:12}"
                print(label, end=" ", flush=True)
                t = time.monotonic()
                try:
                    summary = runOne(server, scenario, timing, args.workers, args.profile)
                except Exception as e:  # one broken run must not lose the others
                    summary = {"error": f"{type(e).__name__}: {e}"}
                    traceback.print_exc(limit=3)
                summary["seconds"] = round(time.monotonic() - t, 1)
                record = {
                    "session": session,
                    "run": rep,
                    "server": server.name,
                    "scenario": scenario.name,
                    "family": scenario.family,
                    **summary,
                }
                if server.isChatsvc:
                    record["version"] = server.version()
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                count += 1
                print(
                    metrics.headline(scenario.family, summary) + _bound(server, scenario, summary)
                )
                print(json.dumps(record), flush=True)
    print(f"\n{count} runs in {time.monotonic() - started:.0f} s; {out}")
    full = set(names) >= {*CHATSVC, *PEERS} and set(families) == set(FAMILIES)
    full = full and not args.quick and not args.scenario
    target = Path(args.report) if args.report else (HERE / "RESULTS.md" if full else None)
    text = report.render(report.load(out))
    (RESULTS_DIR / "latest.md").write_text(text)
    if target is not None:
        report.write(out, target)
        print(f"wrote {target}")
    else:
        print(f"report: {RESULTS_DIR / 'latest.md'} (RESULTS.md is written by full runs only)")
    print(report.table(report.load(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
