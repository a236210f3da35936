"""
Turn the JSON lines of a session into the Markdown of RESULTS.md.

Every figure is the median of the runs with the range (min–max) beside
it; ratios are median over median, measured in the same session.  Hand
notes survive regeneration: whatever stands between the C{NOTES} markers
of an existing RESULTS.md is carried over.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

NOTES_START = "<!-- NOTES: kept when the report is regenerated -->"
NOTES_END = "<!-- /NOTES -->"
ORDER = [
    "chatsvc",
    "chatsvc-irc",
    "chatsvc-web",
    "ngircd",
    "miniircd",
    "words",
    "chatsvc-tls",
    "chatsvc-irc-tls",
    "ngircd-tls",
]
YARDSTICK = "ngircd"
#: chatsvc's IRC gateway: compared with the yardstick as well, since the
#: gateway is held to the ratios to ngircd that the line protocol reaches.
GATEWAY = "chatsvc-irc"

#: A server is taken to be "generator-bound" when it gets within this
#: share of what the generator takes from the blaster.
GEN_BOUND = 0.7


def isGenerator(server: str) -> bool:
    """
    Whether C{server} is our own blaster (a ceiling, not a contestant).
    """
    return server.startswith(("blaster", "relay"))


class Session:
    """
    The records of one JSON lines file.
    """

    def __init__(self, info: dict, records: list[dict]) -> None:
        self.info = info
        self.records = records
        self.by: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for r in records:
            self.by[(r["scenario"], r["server"])].append(r)

    def servers(self) -> list[str]:
        names = {r["server"] for r in self.records if not isGenerator(r["server"])}
        return [n for n in ORDER if n in names] + sorted(names - set(ORDER))

    def scenarios(self, family: str) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            if r["family"] == family:
                seen.setdefault(r["scenario"], None)
        return list(seen)

    def values(self, scenario: str, server: str, key) -> list[float]:
        out = []
        for r in self.by.get((scenario, server), []):
            if "error" in r:
                continue
            v = key(r) if callable(key) else r.get(key)
            if v is not None:
                out.append(v)
        return out

    def median(self, scenario: str, server: str, key) -> float | None:
        v = self.values(scenario, server, key)
        return statistics.median(v) if v else None

    def errors(self, scenario: str, server: str) -> list[str]:
        return [r["error"] for r in self.by.get((scenario, server), []) if "error" in r]


def load(path: Path) -> Session:
    info: dict = {}
    records = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if "session" in obj and isinstance(obj["session"], dict):
            info = obj["session"]
        else:
            records.append(obj)
    return Session(info, records)


# -- formatting ------------------------------------------------------------


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if unit == "%":
        return f"{v:.0%}"
    if unit == "frac":
        return "1" if v == 1 else f"{v:.4f}"
    if abs(v) >= 100_000:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 10_000:
        return f"{v / 1e3:.0f}k"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def cell(session: Session, scenario: str, server: str, key, unit: str = "") -> str:
    values = session.values(scenario, server, key)
    if not values:
        errors = session.errors(scenario, server)
        return "error" if errors else "—"
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return _num(med, unit)
    return f"{_num(med, unit)} ({_num(min(values), unit)}–{_num(max(values), unit)})"


def ratio(session: Session, scenario: str, a: str, b: str, key, lower: bool = False) -> str:
    x = session.median(scenario, a, key)
    y = session.median(scenario, b, key)
    if x is None or y is None or (y == 0 if not lower else x == 0):
        return "—"
    return f"{(y / x) if lower else (x / y):.2f}×"


def _lat(name: str):
    return lambda r: (r.get("latency_ms") or {}).get(name)


def _mib(key: str):
    return lambda r: r[key] / 1024 if r.get(key) is not None else None


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _metricTable(
    session: Session, family: str, key, unit: str = "", lower=False, ratios=True
) -> str:
    servers = session.servers()
    pairs = []
    if ratios and "chatsvc" in servers:
        pairs = [("chatsvc", o) for o in servers if o != "chatsvc"]
    if ratios and GATEWAY in servers and YARDSTICK in servers:
        pairs.append((GATEWAY, YARDSTICK))
    if ratios:
        # Each server over TCP against itself over TLS (chatsvc's is above),
        # and the TLS chatsvc against the TLS yardstick.
        pairs += [
            (s.removesuffix("-tls"), s)
            for s in servers
            if s.endswith("-tls") and s.removesuffix("-tls") in servers[1:]
        ]
        if "chatsvc-tls" in servers and f"{YARDSTICK}-tls" in servers:
            pairs.append(("chatsvc-tls", f"{YARDSTICK}-tls"))
    header = ["load", *servers] + [f"{a} vs {b}" for a, b in pairs]
    rows = []
    for scenario in session.scenarios(family):
        row = [scenario] + [cell(session, scenario, s, key, unit) for s in servers]
        row += [ratio(session, scenario, a, b, key, lower) for a, b in pairs]
        rows.append(row)
    return _table(header, rows)


# -- the sections ------------------------------------------------------------


def table(session: Session) -> str:
    """
    The headline table alone (printed after every run).
    """
    parts = []
    for family, key, title, lower in (
        ("fanout", "deliveries_per_s", "deliveries/s", False),
        ("latency", _lat("p99"), "latency p99 ms", True),
        ("idle", "kib_per_conn", "KiB RSS per idle connection", True),
    ):
        if session.scenarios(family):
            parts.append(f"{title}:\n" + _metricTable(session, family, key, lower=lower))
    if session.scenarios("ceiling"):
        parts.append("generator ceiling:\n" + ceilingTable(session))
    return "\n\n".join(parts)


def targets(session: Session) -> str:
    """
    The project's targets, met or not, as measured in this session.
    """
    rows = []

    def have(scenario: str, *servers: str) -> bool:
        return all(session.values(scenario, s, "server") for s in servers)

    def check(ok: bool | None) -> str:
        return "—" if ok is None else ("**met**" if ok else "not met")

    s = "fanout-one-200"
    if have(s, "chatsvc", YARDSTICK):
        c = session.median(s, "chatsvc", "deliveries_per_s")
        n = session.median(s, YARDSTICK, "deliveries_per_s")
        rows.append(
            [
                "one flat-out sender, room of 200: ≥ 3× ngircd deliveries/s",
                f"{_num(c)} vs {_num(n)} = {c / n:.2f}×",
                check(c >= 3 * n),
            ]
        )
    s = "fanout-all-200"
    if have(s, "chatsvc", YARDSTICK):
        c = session.median(s, "chatsvc", "deliveries_per_s")
        n = session.median(s, YARDSTICK, "deliveries_per_s")
        growth = session.median(s, "chatsvc", "rss_growth_kib") or 0
        start = session.median(s, "chatsvc", "rss_start_kib") or 1
        flat = growth <= max(5 * 1024, 0.1 * start)
        rows.append(
            [
                "all 200 senders flat out: ≥ 1.5× ngircd, RSS flat",
                f"{_num(c)} vs {_num(n)} = {c / n:.2f}×; RSS grew {growth / 1024:.1f} MiB "
                "over the window",
                check(c >= 1.5 * n and flat),
            ]
        )
    s = "fanout-paced-200"
    if have(s, "chatsvc", YARDSTICK):
        frac = min(session.values(s, "chatsvc", "delivered_fraction") or [0])
        c = session.median(s, "chatsvc", "server_cpu")
        n = session.median(s, YARDSTICK, "server_cpu")
        rows.append(
            [
                "200 senders paced at 500 msg/s: all delivered, CPU ≤ ngircd's",
                f"delivered {frac:.4%} (worst run); CPU {c:.0%} vs {n:.0%}",
                check(frac >= 1.0 and c <= n),
            ]
        )
    s = "latency-100"
    if have(s, "chatsvc"):
        p99 = session.median(s, "chatsvc", _lat("p99"))
        rows.append(
            ["100 clients, 10 senders, 500 msg/s: p99 ≤ 3 ms", f"p99 {p99} ms", check(p99 <= 3)]
        )
    s = "idle-10000"
    if have(s, "chatsvc"):
        k = session.median(s, "chatsvc", "kib_per_conn")
        rows.append(
            ["10,000 idle clients: ≤ 3 KiB RSS per connection", f"{k:.2f} KiB", check(k <= 3)]
        )
    rows += gatewayTargets(session)
    if not rows:
        return "_(not measured in this session)_"
    return _table(["target", "chatsvc (median of runs)", "status"], rows)


#: How close the gateway's ratio to ngircd must come to the line
#: protocol's to count as "the same": run-to-run noise on a shared
#: machine is about this size.
GATEWAY_TOLERANCE = 0.9


def gatewayTargets(session: Session) -> list[list[str]]:
    """
    The IRC gateway's target: the same ratios to ngircd as the line
    protocol reaches in the same session (within L{GATEWAY_TOLERANCE}).
    """
    rows = []
    for scenario, key, what, lower in (
        ("fanout-one-200", "deliveries_per_s", "one flat-out sender, room of 200", False),
        ("fanout-all-200", "deliveries_per_s", "all 200 flat out", False),
        ("fanout-paced-200", "server_cpu", "paced 500 msg/s, server CPU", True),
        ("latency-100", _lat("p99"), "latency p99", True),
        ("idle-10000", "kib_per_conn", "10,000 idle clients, RSS per connection", True),
    ):
        line = session.median(scenario, "chatsvc", key)
        irc = session.median(scenario, GATEWAY, key)
        peer = session.median(scenario, YARDSTICK, key)
        if not (line and irc and peer):
            continue
        lineRatio = peer / line if lower else line / peer
        ircRatio = peer / irc if lower else irc / peer
        rows.append(
            [
                f"IRC gateway, {what}: the line protocol's ratio to ngircd",
                f"{_num(irc)}: {ircRatio:.2f}× ngircd vs line {lineRatio:.2f}×",
                "**met**" if ircRatio >= GATEWAY_TOLERANCE * lineRatio else "not met",
            ]
        )
    return rows


def generatorBound(session: Session) -> str:
    """
    Where the generator, not the server, may be the limit.
    """
    lines = []
    ceilings: dict[tuple[str, int], float] = {}
    for scenario, server in session.by:
        if scenario.startswith("ceiling-recv-"):
            n = int(scenario.rsplit("-", 1)[1])
            proto = server.split("-", 1)[1]
            v = session.median(scenario, server, "deliveries_per_s")
            if v:
                ceilings[(proto, n)] = v
    protocols = {"chatsvc": "line", "chatsvc-web": "ws"}
    for scenario in session.scenarios("fanout") + session.scenarios("latency"):
        n = int(scenario.rsplit("-", 1)[1])
        for server in session.servers():
            recs = [r for r in session.by.get((scenario, server), []) if "error" not in r]
            if not recs:
                continue
            med = session.median(scenario, server, "deliveries_per_s") or 0
            ceiling = ceilings.get((protocols.get(server, "irc"), n))
            why = []
            if ceiling and med >= GEN_BOUND * ceiling:
                why.append(f"{med / ceiling:.0%} of the generator's ceiling ({_num(ceiling)}/s)")
            gen = session.median(scenario, server, "gen_cpu") or 0
            cpu = session.median(scenario, server, "server_cpu") or 0
            machine = session.median(scenario, server, "machine_cores") or 0
            cores = session.info.get("cpus") or 2
            if machine >= 0.92 * cores and cpu < 0.9:
                why.append(
                    f"machine busy ({machine:.2f} of {cores} cores) while the server "
                    f"used {cpu:.0%}: generator {gen:.0%}, others "
                    f"{session.median(scenario, server, 'others_cpu') or 0:.0%}"
                )
            if why:
                lines.append(f"- {scenario} / {server}: " + "; ".join(why))
    if not lines:
        return "No run came near the generator's ceiling or a saturated machine."
    return "\n".join(lines)


def ceilingTable(session: Session) -> str:
    rows = []
    for scenario in session.scenarios("ceiling"):
        for server in sorted({r["server"] for r in session.records}):
            if not isGenerator(server) or not session.by.get((scenario, server)):
                continue
            rows.append(
                [
                    scenario,
                    server,
                    cell(session, scenario, server, "deliveries_per_s"),
                    cell(session, scenario, server, "sent_per_s"),
                    cell(session, scenario, server, "gen_cpu"),
                    cell(session, scenario, server, "others_cpu"),
                    cell(session, scenario, server, _lat("p50")),
                    cell(session, scenario, server, _lat("p99")),
                ]
            )
    header = ["load", "blaster", "deliveries/s", "sent/s", "generator CPU", "others' CPU"]
    header += ["p50 ms", "p99 ms"]
    return _table(header, rows)


def render(session: Session) -> str:
    info = session.info
    out = ["# Benchmark results", ""]
    out.append(
        "Generated by `python -m benchmarks.run_all` (see README.md); every figure is the "
        "median of the runs with (min–max); ratios are medians over medians from the same "
        "session on the same machine, oriented so that above 1× means chatsvc does better "
        "(chatsvc/peer for rates, peer/chatsvc for CPU, memory, time and latency)."
    )
    out.append("")
    if info:
        la = info.get("loadavg_start") or (0, 0, 0)
        out.append(
            f"- Date: {info.get('date')}; session `{info.get('session')}`; "
            f"{info.get('runs')} run(s) of each{' (quick mode)' if info.get('quick') else ''}"
        )
        out.append(
            f"- Machine: {info.get('cpus')} cores ({info.get('cpu', '?')}), "
            f"{info.get('mem_gib', '?')} GiB, Linux {info.get('kernel')}, "
            f"Python {info.get('python')}; load average at start "
            f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}"
        )
        out.append(
            f"- Generator: {info.get('workers')} worker processes; timing "
            f"{json.dumps(info.get('timing'))}"
        )
        out.append(f"- Command: `{info.get('argv')}`")
        out.append("")
    seen = sorted({r["version"] for r in session.records if r.get("version")})
    if len(seen) > 1:
        out.append(
            "**chatsvc changed during this session** (the work tree is shared): "
            + "; ".join(f"`{v}`" for v in seen)
            + ". Pin it with `--chatsvc-rev`."
        )
        out.append("")
    elif seen:
        out += [f"chatsvc measured: `{seen[0]}`.", ""]
    out += ["## Against the targets", "", targets(session), ""]
    if session.scenarios("fanout"):
        out += [
            "## Fan-out: deliveries per second (one room)",
            "",
            "`one`: one sender flat out; `all`: every member flat out; `paced`: every member "
            "sends, 500 msg/s in all. A delivery is one message arriving at one member.",
            "",
            _metricTable(session, "fanout", "deliveries_per_s"),
            "",
            "Delivered fraction by the end of the drain (1 = every message reached every "
            "member; below 1 with no cut-off clients means the server had not caught up "
            "when the drain stopped, see README.md):",
            "",
            _metricTable(session, "fanout", "delivered_fraction", "frac", ratios=False),
            "",
            "Server CPU over the window (1.00 = one core; lower is better, ratio is peer/chatsvc):",
            "",
            _metricTable(session, "fanout", "server_cpu", lower=True),
            "",
            "Server RSS at the end of the window, MiB (growth over the window in the next table):",
            "",
            _metricTable(session, "fanout", _mib("rss_end_kib"), lower=True),
            "",
            "RSS growth over the window, MiB (flat is what matters under flat-out load):",
            "",
            _metricTable(session, "fanout", _mib("rss_growth_kib"), lower=True),
            "",
            "Generator CPU (both workers together, 1.00 = one core) and the rest of the "
            "machine (other people's runs) during the window:",
            "",
            _metricTable(session, "fanout", "gen_cpu", ratios=False),
            "",
            _metricTable(session, "fanout", "others_cpu", ratios=False),
            "",
        ]
    if session.scenarios("latency"):
        out += ["## Latency: 100 clients, 10 senders, 500 msg/s in all", ""]
        for name in ("p50", "p99", "max"):
            out += [
                f"{name}, ms:",
                "",
                _metricTable(session, "latency", _lat(name), lower=True),
                "",
            ]
        out += ["Server CPU:", "", _metricTable(session, "latency", "server_cpu", lower=True), ""]
    if session.scenarios("idle"):
        out += [
            "## Idle capacity: logged-in clients in rooms of 100",
            "",
            "KiB of server RSS per connection ((RSS held − RSS before) / clients):",
            "",
            _metricTable(session, "idle", "kib_per_conn", lower=True),
            "",
            "Seconds to connect and log in all (8 handshakes in flight per worker):",
            "",
            _metricTable(session, "idle", "connect_s", lower=True),
            "",
            "Clients that failed to connect or log in:",
            "",
            _metricTable(session, "idle", "failed", ratios=False),
            "",
        ]
    if session.scenarios("ceiling"):
        out += [
            "## The generator's own ceiling (against benchmarks/blaster.py)",
            "",
            "`recv`: the blaster floods every client with pre-encoded lines: the deliveries "
            "per second the generator can take. `send`: every client flat out into a sink: "
            "the messages per second it can send. `latency`: the latency load against the "
            "blaster's relay mode (each message sent on at once to every other client): "
            "the floor the generator and the machine leave for any server's latency.",
            "",
        ]
        out += [ceilingTable(session), ""]
    out += ["## Where the generator (or the shared machine) may be the bound", ""]
    out += [generatorBound(session), ""]
    errors = [
        f"- {r['scenario']} / {r['server']} run {r['run']}: {r['error']}"
        for r in session.records
        if "error" in r
    ]
    cut = [
        f"- {r['scenario']} / {r['server']} run {r['run']}: {r['closed']} clients cut off, "
        f"e.g. {r.get('close_reasons', [''])[0]}"
        for r in session.records
        if r.get("closed") and "error" not in r
    ]
    logged = [
        f"- {r['scenario']} / {r['server']} run {r['run']}: the server logged "
        f"{r['server_tracebacks']} traceback(s), the last ending `{r['server_traceback_last']}`"
        for r in session.records
        if r.get("server_tracebacks")
    ]
    if errors or cut or logged:
        out += ["## Errors and cut-off clients", "", *errors, *cut, *logged, ""]
    if info.get("commands"):
        out += ["## Servers: versions and exact commands", ""]
        out.append(
            "PORT is a free port on 127.0.0.1, DIR a fresh temporary directory per run, "
            "TREE-REV chatsvc and its twistd plugin at commit REV (`git archive`, "
            "`--chatsvc-rev`)."
        )
        out.append("")
        for name, cmd in info["commands"].items():
            out.append(f"- **{name}** ({info['versions'].get(name, '?')}):")
            out.append(f"  `{cmd}`")
        out.append("")
    return "\n".join(out)


def write(jsonl: Path, target: Path) -> None:
    """
    Render C{jsonl} into C{target}, keeping C{target}'s hand notes.
    """
    notes = f"{NOTES_START}\n\n{NOTES_END}"
    if target.exists():
        old = target.read_text()
        if NOTES_START in old and NOTES_END in old:
            notes = old[old.index(NOTES_START) : old.index(NOTES_END) + len(NOTES_END)]
    text = render(load(jsonl))
    marker = "## Against the targets"
    text = text.replace(marker, f"## Notes\n\n{notes}\n\n{marker}", 1)
    target.write_text(text)


def profileTop(path: Path, count: int = 20) -> list[tuple[str, float, float]]:
    """
    From py-spy's raw (collapsed) output: the functions with the most
    samples on top of the stack (self) and anywhere in it (total), as
    shares of all samples; lines of one function are added up.
    """
    own: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        samples += n
        frames = [_function(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    ranked = sorted(own, key=own.get, reverse=True)[:count]
    return [(f, own[f] / samples, total[f] / samples) for f in ranked] if samples else []


def _function(frame: str) -> str:
    """
    C{"name (path/file.py:123)"} without the line number and the path
    up to the package.
    """
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for root in ("site-packages/", "/main/"):
        if root in where:
            where = where.split(root, 1)[1]
    return f"{name} ({where})" if where else name


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    p.add_argument("jsonl", nargs="?", help="a session's JSON lines: print its tables")
    p.add_argument("--write", help="write the full report (with notes kept) to this file")
    p.add_argument("--profile", help="a py-spy raw profile: print the top functions")
    args = p.parse_args(argv)
    if args.profile:
        print(f"{'self':>6} {'total':>6}  function")
        for name, own, tot in profileTop(Path(args.profile), 30):
            print(f"{own:6.1%} {tot:6.1%}  {name}")
    if args.jsonl:
        if args.write:
            write(Path(args.jsonl), Path(args.write))
            print(f"wrote {args.write}")
        else:
            print(table(load(Path(args.jsonl))))


if __name__ == "__main__":
    main()
