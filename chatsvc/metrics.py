"""
Prometheus metrics for C{--metrics ENDPOINT}.

Most of what an operator watches is state the server keeps anyway
(connections, members, rooms, held senders, the fan-out backlog, the
history writer's queue), so L{ChatCollector} reads it when Prometheus
scrapes, and costs nothing in between.  What has no state of its own is
counted once per event, never per recipient: messages and deliveries once
per fan-out (L{Instruments.watchHub}), bytes out once per write batch
(L{Instruments.watchBatcher}), refusals once per refused connection
(L{Instruments.watchFactory}), history write time once per batch written
(L{Instruments.watchHistory}), cuts and refused lines once per event
of the operator log (L{Instruments.observe}).  These hooks wrap the instance they watch, so a
server started without C{--metrics} runs exactly the code it always did;
and C{prometheus_client} is imported only here, which only a server with
C{--metrics} imports.

The page is served by a small synchronous resource (L{MetricsPage}) on
the reactor thread, where the state it reads lives: no thread pool.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web import resource, server

from chatsvc.chat.events import PRIVATE
from chatsvc.chat.names import roomKey
from chatsvc.net.listening import ListenService

#: Upper bounds (seconds) of the history write time buckets.
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: Why a connection was refused, from the first word of its refusal line
#: (L{chatsvc.net.lineproto.ConnectionPolicy.admit}).
_REFUSALS = (("full", "full"), ("error: too many connections", "per-address"))

#: Input holds counted at scrape time: the transport's buffer is full
#: (output), the fan-out backlog is over its limit (backlog), flood pacing.
HOLDS = ("output", "backlog", "flood")


def refusalReason(line: str) -> str:
    """
    The reason label of a refusal line.
    """
    for prefix, reason in _REFUSALS:
        if line.startswith(prefix):
            return reason
    return "other"


class WriteTimes:
    """
    A histogram of history write times; observed on the writer thread,
    read on the reactor thread (a list of ints and a float: each update
    is one bytecode-level store, and a scrape that races one is off by
    one write at most).
    """

    def __init__(self, buckets=WRITE_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def family(self) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip((*map(repr, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return HistogramMetricFamily(
            "chatsvc_history_write_seconds",
            "Time to write one batch of history to SQLite (writer thread).",
            buckets=cumulative,
            sum_value=self.total,
        )


class Instruments:
    """
    The counters that have no state to read, and the hooks that feed them.

    @ivar messages: events fanned out, by kind (message, action, join...).
    @ivar deliveries: events handed to local members, summed per fan-out.
    @ivar bytesOut: bytes flushed by the shared write batcher.
    @ivar refusals: connections (full, per-address) and lines (too-long)
        refused, by reason.
    @ivar cuts: connections cut off by the server, by reason.
    """

    def __init__(self) -> None:
        self.messages: Counter = Counter()
        self.deliveries = 0
        self.bytesOut = 0
        self.refusals: Counter = Counter()
        self.cuts: Counter = Counter()
        self.writeTimes = WriteTimes()

    def watchHub(self, hub) -> None:
        """
        Count each event the hub delivers, and its recipients, once.
        """
        deliver = hub.deliver

        def counted(event):
            deliver(event)
            self.messages[event.kind] += 1
            self.deliveries += _recipients(hub, event)

        hub.deliver = counted

    def watchBatcher(self, batcher) -> None:
        """
        Count the bytes of each write batch as it is flushed.
        """
        flush = batcher.flush

        def counted():
            self.bytesOut += batcher.pendingBytes
            flush()

        batcher.flush = counted

    def watchFactory(self, factory) -> None:
        """
        Count the connections C{factory} refuses (full, per-address).
        """
        build = factory.buildProtocol

        def counted(addr):
            proto = build(addr)
            refused = getattr(proto, "refused", None)  # a Refusal, or a gateway's own
            if refused is not None:
                self.refusals[refusalReason(refused)] += 1
            return proto

        factory.buildProtocol = counted

    def watchHistory(self, history) -> None:
        """
        Time each batch the SQLite writer thread writes.
        """
        write = getattr(history, "_write", None)
        if write is None:  # in memory: nothing to time
            return

        def timed(*args):
            start = time.perf_counter()
            try:
                return write(*args)
            finally:
                self.writeTimes.observe(time.perf_counter() - start)

        history._write = timed

    def observe(self, event: dict) -> None:
        """
        A log observer: the operator log says once when the server cuts a
        connection off (C{event="cut"}) or refuses a line
        (C{event="line-refused"}), with a C{reason} field.
        """
        kind = event.get("event")
        if kind == "cut":
            self.cuts[str(event.get("reason"))] += 1
        elif kind == "line-refused":
            self.refusals[str(event.get("reason"))] += 1


def _recipients(hub, event) -> int:
    """
    How many local members an event just went to (L{Hub.deliver}): read
    once per event, from the room's member set.
    """
    if event.kind == PRIVATE:
        target = hub.find(event.target)
        sender = hub.members.get(event.origin)
        return (target is not None) + (sender is not None and sender is not target)
    found = hub.rooms.get(roomKey(event.room))
    return len(found.members) if found is not None else 0


class ServiceCollector:
    """
    A C{prometheus_client} collector reading a service's state at scrape
    time: every service's connections, holds, refusals and cuts; the
    chat's members, rooms, messages, output and history when given its
    hub and history.

    @ivar factories: the listening factories, by service label.
    """

    def __init__(self, factories: dict, instruments: Instruments, hub=None, history=None) -> None:
        self.factories = factories
        self.instruments = instruments
        self.hub = hub
        self.history = history

    def collect(self):
        yield from self._connections()
        yield from self._refusalsAndCuts()
        if self.hub is not None:
            yield from self._chat()
            yield from self._output()
        if self.history is not None:
            yield from self._history()

    def _connections(self):
        family = GaugeMetricFamily("chatsvc_connections", "Open connections.", labels=["service"])
        holds = GaugeMetricFamily(
            "chatsvc_held_connections",
            "Connections whose input is held, by service and why (output: its send "
            "queue is full; backlog: fan-out output is backed up; flood: paced).",
            labels=["service", "hold"],
        )
        for label, factory in self.factories.items():
            connections = getattr(factory, "connections", ())
            family.add_metric([label], len(connections))
            for hold in HOLDS:
                held = sum(1 for c in connections if c.isHeld(hold))
                holds.add_metric([label, hold], held)
        yield family
        yield holds

    def _refusalsAndCuts(self):
        instruments = self.instruments
        yield _byReason(
            "chatsvc_refusals", "Connections and lines refused, by reason.", instruments.refusals
        )
        yield _byReason(
            "chatsvc_cuts", "Connections cut off by the server, by reason.", instruments.cuts
        )

    def _chat(self):
        instruments = self.instruments
        hub = self.hub
        yield _gauge("chatsvc_members", "Members logged in.", len(hub.members))
        yield _gauge(
            "chatsvc_rooms", "Rooms known (with members or recent messages).", len(hub.rooms)
        )
        messages = CounterMetricFamily(
            "chatsvc_messages", "Chat events fanned out, by kind.", labels=["kind"]
        )
        for kind, count in sorted(instruments.messages.items()):
            messages.add_metric([kind], count)
        yield messages
        yield CounterMetricFamily(
            "chatsvc_deliveries", "Events handed to local members.", value=instruments.deliveries
        )
        cluster = hub.bus if getattr(hub.bus, "sequenced", False) else None
        if cluster is not None:
            yield _gauge(
                "chatsvc_cluster_up", "1 while the node's bus runs through Redis.", int(cluster.up)
            )
            yield _gauge(
                "chatsvc_cluster_queue",
                "Operations waiting for Redis to come back.",
                cluster.queued,
            )
            yield CounterMetricFamily(
                "chatsvc_cluster_dropped",
                "Operations dropped because the queue for Redis was full.",
                value=cluster.dropped,
            )

    def _output(self):
        yield CounterMetricFamily(
            "chatsvc_bytes_out", "Bytes written to clients.", value=self.instruments.bytesOut
        )
        backlog = None
        for factory in self.factories.values():
            backlog = getattr(factory, "backlog", None) or backlog
        if backlog is not None:
            yield _gauge(
                "chatsvc_backlog_bytes",
                "Fan-out output produced but not yet taken by peers whose send queue is full.",
                backlog.backedUp + backlog.batcher.pendingBytes,
            )
            yield _gauge(
                "chatsvc_backlog_limit_bytes",
                "Backlog over which senders are held.",
                backlog.limit,
            )

    def _history(self):
        waiting = getattr(self.history, "_waiting", None)
        pending = waiting() if waiting is not None else 0
        yield _gauge(
            "chatsvc_history_pending", "Messages and topics waiting for the writer.", pending
        )
        yield self.instruments.writeTimes.family()


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _byReason(name: str, doc: str, counts: Counter) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], count)
    return family


class MetricsPage(resource.Resource):
    """
    C{GET /metrics} (and C{/}): the registry in Prometheus text format,
    generated synchronously on the reactor thread.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request) -> bytes:
        if request.path not in (b"/", b"/metrics"):
            request.setResponseCode(404)
            return b"not found: try /metrics\n"
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


def serveMetrics(
    description: str, factories: dict, reactor=None, hub=None, history=None
) -> MetricsService:
    """
    Watch a service's listening C{factories} (by label), and for the chat
    its C{hub} and C{history}; return the service that serves the metrics
    on C{description}, to add to the server's service tree.
    """
    instruments = Instruments()
    if hub is not None:
        instruments.watchHub(hub)
    if history is not None:
        instruments.watchHistory(history)
    batchers = set()
    for factory in factories.values():
        instruments.watchFactory(factory)
        batcher = getattr(factory, "batcher", None)
        if batcher is not None and id(batcher) not in batchers:
            batchers.add(id(batcher))
            instruments.watchBatcher(batcher)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ServiceCollector(factories, instruments, hub, history))
    site = server.Site(MetricsPage(registry))
    site.noisy = False
    return MetricsService(description, site, reactor, instruments, registry)


class MetricsService(ListenService):
    """
    Serve the metrics page, and count cuts from the log while running.

    @ivar instruments: the L{Instruments} feeding the page.
    @ivar registry: the C{prometheus_client} registry the page shows.
    """

    def __init__(self, description, site, reactor, instruments, registry) -> None:
        super().__init__(description, site, "metrics", reactor)
        self.instruments = instruments
        self.registry = registry

    def startService(self) -> None:
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self.instruments.observe)
        super().startService()

    def stopService(self):
        from twisted.logger import globalLogPublisher

        globalLogPublisher.removeObserver(self.instruments.observe)
        return super().stopService()
