"""
The metrics: which load each one puts on a server, and what is reported.

Three families (README.md says why each looks the way it does):

  - C{fanout-*}: one room of N clients (N = 50, 200).  C{one}: one
    sender flat out; C{all}: every member sends flat out; C{paced}:
    every member sends, 500 messages per second in all, on one schedule.
    Reported: deliveries per second over the window, delivered fraction,
    server CPU and RSS, the generator's own CPU.
  - C{latency}: 100 clients, 10 senders, 500 messages per second in all;
    every receiver verifies: send-to-receipt p50, p99, max.
  - C{idle-N}: N clients (1,000 and 10,000) log in and sit in rooms of
    100: time to connect and log in all, RSS per connection.

"Flat out" is as fast as the server takes messages, with a bounded
number in flight per sender (L{benchmarks.loadgen.Plan.window}): on
loopback the kernel would otherwise buffer megabytes per socket that the
server has not read, and "sent" would mean nothing.  The budget is
L{FLIGHT} messages for all senders together (at least L{MIN_WINDOW}
each): for one sender that is ~140 kB in flight, several times what a
server takes per read, so the window does not run dry while the server
works; and small enough that a slow server drains it in seconds.

Against the blaster (C{ceiling-*}) the same loads measure the generator
itself: the deliveries per second it can take, the messages per second
it can send, and (against the blaster's relay mode) the latency floor
that the generator and the machine leave for any server.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from benchmarks.loadgen import Plan, Timing
from benchmarks.wire import echoes, maxWindow

#: Messages in flight (sent, not yet seen by a receiver) for all flat-out
#: senders together.
FLIGHT = 2048
MIN_WINDOW = 16

#: Total rate of the paced and latency loads, messages per second.
PACED_RATE = 500.0

#: Clients per room in the idle metric (every client is in a room, as a
#: chatsvc login always is).
IDLE_ROOM = 100

#: From this many clients on, spread clients over several loopback source
#: addresses (ephemeral ports are per source address).
SPREAD_FROM = 5000
SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 10))

#: Handshakes in flight per worker.  ngircd listens with a backlog of 10
#: (hard-coded): many more simultaneous connects overflow it and cost
#: SYN retransmissions (1 s, 3 s, ...) or, with SYN cookies, resets, so
#: a burst measures the backlog rather than the server.  8 per worker
#: (16 in all) is a steady stream of logins, not a SYN flood.
CONNECTING = 8


@dataclass
class Scenario:
    """
    One load: its name, family and the plan parameters.
    """

    name: str
    family: str
    clients: int
    senders: int = 0
    mode: str = "idle"
    rate: float = 0.0

    def plan(self, server, port: int) -> Plan:
        window = max(MIN_WINDOW, FLIGHT // self.senders) if self.mode == "flat" else 0
        if self.family == "ceiling":
            window = 0  # the blaster relays nothing: no message is ever seen
        window = maxWindow(server.protocol, window)
        verify = 2 if self.mode == "flat" else -1
        if self.family == "idle":
            verify = 0
        return Plan(
            protocol=server.protocol,
            port=port,
            clients=self.clients,
            roomSize=IDLE_ROOM if self.family == "idle" else 0,
            senders=self.senders,
            mode=self.mode,
            rate=self.rate,
            window=window,
            verify=verify,
            password=server.password,
            oper=server.oper if self.mode != "idle" else None,
            sources=SOURCES if self.clients >= SPREAD_FROM else (),
            concurrency=CONNECTING,
            connectTimeout=180.0,
            echo=echoes(server.protocol),
        )


def scenarios(clients: list[int] | None = None, idle: list[int] | None = None) -> list[Scenario]:
    """
    Every scenario, for rooms of C{clients} and idle counts C{idle}.
    """
    out = []
    for n in clients or (50, 200):
        out.append(Scenario(f"fanout-one-{n}", "fanout", n, 1, "flat"))
        out.append(Scenario(f"fanout-all-{n}", "fanout", n, n, "flat"))
        out.append(Scenario(f"fanout-paced-{n}", "fanout", n, n, "paced", PACED_RATE))
    out.append(Scenario("latency-100", "latency", 100, 10, "paced", PACED_RATE))
    for n in idle or (1000, 10000):
        out.append(Scenario(f"idle-{n}", "idle", n))
    return out


def ceilings(clients: list[int] | None = None) -> list[Scenario]:
    """
    The generator's own limits, measured against the blaster: receiving
    (one sender triggers a flood to everyone) and sending (all flat out).
    """
    out = []
    sizes = clients or (50, 200)
    for n in sizes:
        out.append(Scenario(f"ceiling-recv-{n}", "ceiling", n, 1, "flat"))
    out.append(Scenario(f"ceiling-send-{max(sizes)}", "ceiling", max(sizes), max(sizes), "flat"))
    out.append(Scenario("ceiling-latency-100", "ceiling", 100, 10, "paced", PACED_RATE))
    return out


def timing(quick: bool) -> Timing:
    if quick:
        return Timing(settle=0.5, warmup=0.5, window=2.0, drainQuiet=1.5, drainMax=8.0, hold=1.0)
    return Timing(settle=0.5, warmup=1.0, window=3.0, drainQuiet=2.0, drainMax=8.0, hold=2.0)


def _pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def summarize(scenario: Scenario, raw: dict, window: float, relay: bool = True) -> dict:
    """
    The reported figures of one run, from L{benchmarks.loadgen.runLoad}'s
    raw output.
    """
    results = raw["results"]
    plan = raw["plan"]
    out: dict = {
        "clients": plan["clients"],
        "ready": raw["ready"],
        "failed": raw["failed"],
        "connect_s": round(raw["connectSeconds"], 3),
    }
    failures = [f for r in results for f in r.failures][:3]
    closes = [c for r in results for c in r.closeReasons][:3]
    if failures:
        out["failures"] = failures
    if scenario.family == "idle":
        before, held = raw.get("rssBefore"), raw.get("rssHeld", raw.get("rssReady"))
        if before is not None and held is not None:
            out["rss_before_kib"] = before
            out["rss_after_kib"] = held
            ready = max(1, raw["ready"])
            out["kib_per_conn"] = round((held - before) / ready, 2)
        if "cpuIdle" in raw:
            out["cpu_idle"] = round(raw["cpuIdle"], 3)
        out["closed"] = sum(r.closed for r in results)
        return out
    delivered = sum(r.delivered for r in results)
    sent = sum(r.sent for r in results)
    inWindow = sum(r.deliveredAt.get("end", 0) - r.deliveredAt.get("warm", 0) for r in results)
    sentWindow = sum(r.sentAt.get("end", 0) - r.sentAt.get("warm", 0) for r in results)
    genCpu = sum(r.cpuAt.get("end", 0) - r.cpuAt.get("warm", 0) for r in results) / window
    out.update(
        deliveries_per_s=round(inWindow / window),
        sent_per_s=round(sentWindow / window),
        sent=sent,
        delivered=delivered,
        gen_cpu=round(genCpu, 3),
        closed=sum(r.closed for r in results),
    )
    if closes:
        out["close_reasons"] = closes
    if relay:
        echo = plan.get("echo", False)
        members = plan["clients"]
        expected = sent * (members if echo else members - 1)
        out["expected"] = expected
        out["delivered_fraction"] = round(delivered / expected, 6) if expected else None
        out.update(_verified(results, echo))
    if "cpu" in raw:
        out["server_cpu"] = round(raw["cpu"], 3)
        out["machine_cores"] = round(raw["machineCores"], 3)
        out["others_cpu"] = round(max(0.0, raw["machineCores"] - raw["cpu"] - genCpu), 3)
    if raw.get("rssWindow"):
        first, last, peak = raw["rssWindow"]
        out.update(rss_start_kib=first, rss_end_kib=last, rss_peak_kib=raw["rssPeak"])
        out["rss_growth_kib"] = last - first
    out["drain_s"] = round(raw.get("drainSeconds", 0.0), 2)
    lat = sorted(x for r in results for x in r.latencies)
    if lat and relay:
        out["latency_ms"] = {
            "p50": round(_pct(lat, 50) / 1000, 3),
            "p99": round(_pct(lat, 99) / 1000, 3),
            "max": round(lat[-1] / 1000, 3),
            "samples": len(lat),
        }
    return out


def _verified(results, echo: bool = False) -> dict:
    """
    What the verifying receivers saw: messages missing from the middle of
    a stream (gaps), ones that came again or out of order (backwards),
    and how many of the expected messages they got (their own too if the
    server C{echo}es them).
    """
    sentBy: dict[int, int] = {}
    for r in results:
        sentBy.update(r.sentBySender)
    totalSent = sum(sentBy.values())
    expected = got = 0
    for r in results:
        for index, unique in r.verifiedReceivers:
            expected += totalSent - (0 if echo else sentBy.get(index, 0))
            got += unique
    return {
        "verified_receivers": sum(r.verified for r in results),
        "verified_missing": expected - got,
        "gaps": sum(r.gaps for r in results),
        "dup_or_reordered": sum(r.backwards for r in results),
    }


def headline(family: str, summary: dict) -> str:
    """
    One human line for a run.
    """
    if summary.get("error"):
        return f"ERROR {summary['error']}"
    if family == "idle":
        return (
            f"{summary['ready']}/{summary['clients']} logged in in {summary['connect_s']:.2f} s, "
            f"{summary.get('kib_per_conn', float('nan')):.2f} KiB RSS per connection"
            + (f", {summary['failed']} failed" if summary["failed"] else "")
        )
    text = f"{summary['deliveries_per_s']:,} deliveries/s"
    if "delivered_fraction" in summary:
        text += f", delivered {summary['delivered_fraction']:.4%}"
    if "server_cpu" in summary:
        text += f", server CPU {summary['server_cpu']:.0%}"
    if "rss_end_kib" in summary:
        text += f", RSS {summary['rss_end_kib'] / 1024:.1f} MiB"
    text += f", generator CPU {summary['gen_cpu']:.0%}, sent {summary['sent_per_s']:,}/s"
    if family == "latency" and "latency_ms" in summary:
        lat = summary["latency_ms"]
        text += f"; latency p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"
    if summary.get("closed"):
        text += f"; {summary['closed']} clients cut off"
    return text


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
