"""
C{twistd chat}: the options and the service tree of the chat server.

The tree is a L{ChatService} (a C{MultiService}) that owns the history
store and the hub, with one listener per protocol (the native line
protocol now; gateways later).  Starting opens and locks the history
before anything listens, so a store that cannot be used, or that another
chat server uses, is a one-line error and exit status 1; stopping stops
listening, says goodbye to everyone, waits a short grace, then writes out
the history (and releases its lock), and a stop on SIGTERM exits with
status 0 (L{ExitCleanly}).
"""

from __future__ import annotations

import re
import uuid

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from chatsvc.chat.history import HistoryError, HistoryInUse, MemoryHistory, SQLiteHistory
from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.net.listening import (
    ExitCleanly,
    ListenService,
    certificateName,
    certificateOf,
    raiseFileLimit,
    startupError,
    transportOf,
)
from chatsvc.net.options import ServiceOptions, integer, portDescription, seconds
from chatsvc.net.twistedcompat import holdBackTLS

log = Logger()

DEFAULT_HISTORY = "chatsvc-history.sqlite3"
MEMORY = ":memory:"

#: Seconds clients get to take their last lines at shutdown before abort.
SHUTDOWN_GRACE = 2.0


class Options(ServiceOptions):
    """
    twistd chat [options]
    """

    command = "chat"
    synopsis = "[options]"
    longdesc = (
        "Multi-room chat over a line protocol (try: nc 127.0.0.1 21567, then "
        "send NAME [ROOM]). History is kept in a SQLite file; use "
        "--history :memory: to keep it in memory only."
    )

    optParameters = [
        [
            "history",
            None,
            DEFAULT_HISTORY,
            "History file (SQLite), created if missing; one server per file (it is "
            "locked through PATH.lock while the server runs). ':memory:' keeps history "
            "in memory only (lost on restart).",
        ],
        [
            "replay",
            None,
            str(ChatLimits.replay),
            "Messages of the room's history replayed to a member who joins (0: none).",
        ],
        [
            "irc",
            None,
            None,
            "Also serve IRC clients (irssi, WeeChat, ...) on this port or endpoint "
            "description (6667, ssl:6697:privateKey=KEY:certKey=CERT) in the same rooms: "
            "rooms are #channels, names are nicks. Off unless given.",
        ],
        [
            "irc-name",
            None,
            "chatsvc",
            "The server name IRC clients see (in numerics, PING and PONG).",
        ],
        [
            "web",
            None,
            None,
            "Also serve the chat page in the browser on this port or endpoint description "
            "(8080, ssl:8443:privateKey=KEY:certKey=CERT): the page at /, the chat over a "
            "WebSocket at /ws, in the same rooms. Off unless given.",
        ],
        [
            "web-origin",
            None,
            None,
            "Origins besides the page's own whose pages may use the chat's WebSocket "
            "(comma-separated, e.g. https://example.org; '*' allows any).",
        ],
        [
            "redis",
            None,
            None,
            "Join a cluster through Redis at this URL (redis://[:PASSWORD@]HOST[:PORT][/DB] "
            "or unix:///PATH[?db=N]): every process given the same URL serves one chat "
            "network (names, rooms, /who, /msg and history are shared; the history is kept "
            "in Redis, not in --history). Processes on one machine may share --port "
            "(SO_REUSEPORT). Off unless given: one process needs nothing else.",
        ],
        [
            "cluster-timeout",
            None,
            "10",
            "With --redis: seconds after which a node that stopped answering is taken for "
            "dead and its users are released (its heartbeat is every quarter of this; Redis "
            "not answering within a quarter of this, or 1 second if more, counts as Redis "
            "lost).",
        ],
        [
            "cluster-queue",
            None,
            "10000",
            "With --redis: operations kept while Redis is out of reach (messages, leaves, "
            "topics), sent when it is back; more are dropped and counted.",
        ],
        [
            "login-timeout",
            None,
            str(ChatLimits.loginTimeout),
            "Seconds a new connection has to log in.",
        ],
        [
            "flood-burst",
            None,
            str(ChatLimits.floodBurst),
            "Lines a client may send at once before pacing starts.",
        ],
        [
            "flood-rate",
            None,
            str(ChatLimits.floodRate),
            "Lines per second a client may send after the burst (more are delayed, not lost).",
        ],
        [
            "recv-queue",
            None,
            str(ChatLimits.recvQueue),
            "Complete lines that may wait for the flood rate before the client is disconnected.",
        ],
    ]

    def postOptions(self) -> None:
        # First, before the endpoint checks import the reactor: a server that
        # listens on plain TCP only starts without pyOpenSSL (13 MB); the web
        # gateway's Twisted modules would load it as well.
        holdBackTLS(
            (self[name] for name in ("port", "irc", "web", "metrics") if self[name] is not None),
            ("twisted.web.client",) if self["web"] is not None else (),
        )
        super().postOptions()
        base = self["limits"]
        self["limits"] = ChatLimits(
            **vars(base),
            loginTimeout=seconds("--login-timeout", self["login-timeout"], 0.001),
            floodBurst=integer("--flood-burst", self["flood-burst"], 1),
            floodRate=seconds(
                "--flood-rate", self["flood-rate"], 0.001, what="a number of lines per second"
            ),
            recvQueue=integer("--recv-queue", self["recv-queue"], 1),
            replay=integer("--replay", self["replay"], 0, 200),
        )
        if self["irc"] is not None:
            self["irc"] = portDescription("--irc", self["irc"])
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$", self["irc-name"]):
            raise usage.UsageError(
                f"--irc-name: {self['irc-name']!r} is not a server name (letters, digits, '.', '-')"
            )
        if self["web"] is not None:
            self["web"] = portDescription("--web", self["web"])
        origins = self["web-origin"]
        self["web-origin"] = tuple(o.strip() for o in (origins or "").split(",") if o.strip())
        for origin in self["web-origin"]:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise usage.UsageError(
                    f"--web-origin: {origin!r} is not an origin (scheme://host[:port], or *)"
                )
        if not self["history"].strip():
            raise usage.UsageError("--history: needs a file name or :memory:")
        self["cluster-timeout"] = seconds("--cluster-timeout", self["cluster-timeout"], 1)
        self["cluster-queue"] = integer("--cluster-queue", self["cluster-queue"], 0)
        if self["redis"] is not None:
            from chatsvc.cluster.node import parseRedisURL  # only with --redis

            try:
                self["redis"] = parseRedisURL(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
            if self["history"] != DEFAULT_HISTORY:
                raise usage.UsageError(
                    "--history and --redis: a cluster keeps its history in Redis; "
                    "leave --history out"
                )


class ChatService(service.MultiService):
    """
    The chat server: history store, hub and listeners.
    """

    def __init__(self, hub: Hub, history, cluster=None) -> None:
        super().__init__()
        self.hub = hub
        self.history = history
        #: The L{ClusterNode<chatsvc.cluster.node.ClusterNode>} with
        #: C{--redis}: the listeners start once it has joined.
        self.cluster = cluster
        self._joined = False

    def privilegedStartService(self) -> None:
        if self.cluster is not None:
            from chatsvc.cluster.node import RedisRefused, preflight

            address = self.cluster.address
            try:
                preflight(address, max(1.0, self.cluster.timeout / 2))
            except RedisRefused as e:
                startupError(f"twistd chat: cannot use Redis at {address}: {e}")
                raise SystemExit(1) from None
            # The listeners bind once this node is in the cluster (startService).
            service.Service.privilegedStartService(self)
            return
        try:
            if hasattr(self.history, "open"):
                self.history.open()
            self.hub.restore()
        except HistoryInUse as e:
            startupError(f"twistd chat: {e}; give each chat server its own --history file")
            raise SystemExit(1) from None
        except HistoryError as e:
            startupError(f"twistd chat: {e}")
            raise SystemExit(1) from None
        super().privilegedStartService()

    def startService(self) -> None:
        if self.cluster is None:
            super().startService()
            return
        service.Service.startService(self)
        self.cluster.start().addCallback(self._clusterJoined)

    def _clusterJoined(self, _) -> None:
        if not self.running:
            return
        self.hub.restore()
        self._joined = True
        log.info(
            "chat: node {node} is in the cluster at {address}",
            node=self.hub.nodeId,
            address=str(self.cluster.address),
        )
        for child in self:
            child.privilegedStartService()
            child.startService()

    @defer.inlineCallbacks
    def stopService(self):
        log.info("chat: shutting down")
        if self.cluster is not None and not self._joined:
            service.Service.stopService(self)
            yield self.cluster.stop()
            return
        yield super().stopService()
        if self.cluster is not None:
            yield self.cluster.stop()
        yield self.history.stop()
        log.info("chat: history written, stopped")


class GatewayService(ListenService):
    """
    The listener of a gateway (IRC): once bound, the line protocol knows
    where it is, to tell a client of that protocol that came to the line
    port by mistake.
    """

    lineFactory = None

    def hint(self) -> str | None:
        """
        For IRC: the IRC client command (irssi's) that connects here.
        """
        address = self.port.getHost()
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        transport = transportOf(self.description)
        if not isinstance(host, str) or transport not in ("tcp", "tls"):
            return None
        if host in ("0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        if self.label == "web":
            if transport == "tls":
                # The name the browser will check: the certificate's.
                certificate = certificateOf(self.description)
                name = certificateName(certificate) if certificate is not None else None
                return f"a browser: https://{name or host}:{port}/"
            return f"a browser: http://{host}:{port}/"
        tls = "-tls " if transport == "tls" else ""
        return f"an IRC client, e.g. irssi: /connect {tls}{host} {port}"

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.lineFactory is not None:
            if self.label == "web":
                # A browser or curl on the line port speaks HTTP: say where the page is.
                hint = self.hint()
                self.lineFactory.gateways["http"] = (
                    hint[len("a browser: ") :] if hint else self.where()
                )
            else:
                self.lineFactory.gateways[self.label] = self.where()


def makeService(options: Options) -> ChatService:
    from twisted.internet import reactor

    raiseFileLimit()
    cluster = None
    if options["redis"] is not None:
        from chatsvc.cluster.node import ClusterNode  # txredisapi only with --redis

        nodeId = uuid.uuid4().hex[:12]
        cluster = ClusterNode(
            options["redis"],
            reactor,
            nodeId,
            timeout=options["cluster-timeout"],
            queueLimit=options["cluster-queue"],
        )
        history = cluster.history
        hub = Hub(reactor, history, bus=cluster, state=cluster.state, nodeId=nodeId)
    else:
        path = options["history"]
        history = MemoryHistory() if path == MEMORY else SQLiteHistory(path, reactor)
        hub = Hub(reactor, history)
    limits = options["limits"]
    factory = ChatFactory(hub, limits, reactor)
    top = ChatService(hub, history, cluster)
    # Several nodes of a cluster on one machine may share the ports.
    reusePort = cluster is not None
    listener = ListenService(
        options["port"], factory, "chat", reactor, notice="server shutting down"
    )
    listener.reusePort = reusePort
    listener.grace = SHUTDOWN_GRACE
    listener.setServiceParent(top)
    factories = {"chat": factory}
    if options["irc"] is not None:
        from chatsvc.irc.protocol import IRCFactory  # only when asked for

        irc = IRCFactory(
            hub,
            limits,
            reactor,
            factory.population,
            policy=factory.policy,
            serverName=options["irc-name"],
        )
        gateway = GatewayService(options["irc"], irc, "irc", reactor, notice="server shutting down")
        gateway.reusePort = reusePort
        gateway.grace = SHUTDOWN_GRACE
        gateway.lineFactory = factory
        gateway.setServiceParent(top)
        factories["irc"] = irc
    if options["web"] is not None:
        from chatsvc.web.site import WebGateway  # only when asked for

        web = WebGateway(
            hub,
            limits,
            reactor,
            factory.population,
            policy=factory.policy,
            origins=options["web-origin"],
        )
        web.gateways = factory.gateways
        gateway = GatewayService(options["web"], web, "web", reactor, notice="server shutting down")
        gateway.reusePort = reusePort
        gateway.grace = SHUTDOWN_GRACE
        gateway.lineFactory = factory
        gateway.setServiceParent(top)
        factories["web"] = web
    if options["metrics"] is not None:
        from chatsvc.metrics import serveMetrics  # prometheus_client only when asked for

        metrics = serveMetrics(options["metrics"], factories, reactor, hub, history)
        metrics.setServiceParent(top)
    ExitCleanly(reactor).setServiceParent(top)
    return top
