"""
One chat process's place in a cluster: its bus (L{IBus}) and its link to
Redis.

Every event any node publishes goes into one Redis stream, the bus, by a
script that also gives a room message its id and keeps it in the room's
history (L{chatsvc.cluster.scripts}).  Every node reads that stream in
order, from where it last read (C{XREAD BLOCK} on a connection of its
own), applies each entry to its copy of the shared state
(L{ReplicaState}) and hands each event to its Hub, which delivers it to
the members connected here.  So every member of a room, on any node,
gets the room's events once each and in the same order, the order Redis
put them on the stream, and ids rise in that order.  A node's own events
come back to it the same way: what its users see has made the round
trip, and is what everyone sees.

When Redis is out of reach (refused, reset, or no answer within the
reply timeout) the node goes on alone: its own events are delivered here
at once (room messages with provisional ids), its writes wait in a queue
of bounded length (what does not fit is dropped and counted), and it
reconnects with a capped exponential back-off.  Once back it:

 1. says it is alive (its heartbeat; the reaper, L{scripts.HEARTBEAT},
    may have released its members if the outage outlasted the timeout);
 2. reads on from the last entry it applied if the stream still holds
    it (so its users get what was said elsewhere meanwhile), or else
    starts over from a snapshot;
 3. claims again every name held here, and puts every member back into
    its rooms: a name that someone elsewhere took in the meantime stays
    theirs, and the member here is told so and disconnected (never two
    users with one name);
 4. sends the queue, in order (messages said meanwhile reach the others
    now, with the ids Redis gives them; this node does not deliver them
    twice);
 5. and only then reads the bus again, on a single new read: nothing is
    read twice.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import uuid
from collections import deque
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, UNIXClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.chat import events
from chatsvc.chat.events import Event
from chatsvc.chat.interfaces import IBus, IHistory
from chatsvc.chat.names import roomKey
from chatsvc.cluster.replica import ReplicaState
from chatsvc.cluster.scripts import PREFIX, SCRIPTS

__all__ = ["ClusterHistory", "ClusterNode", "RedisAddress", "parseRedisURL"]

log = Logger()

BUS = PREFIX + "bus"

#: What the others see when a node is lost with its members.
LOST_REASON = "quit: connection to its server lost"

#: What this node's users are told when it loses Redis, and when it is back.
DOWN_NOTICE = (
    "this server lost touch with the rest of the chat network: until it is back, you "
    "talk with the users of this server only, and what you say reaches the others then"
)
BACK_NOTICE = "this server is back in touch with the rest of the chat network"

#: The most events one publish call carries.
BATCH_MAX = 256

#: Operations a node replays after an outage; claims and entries are not
#: among them: the node claims and enters again for every member it holds.
_REPLAYED = frozenset({"publish", "leave", "release", "topic"})


class RedisAddress:
    """
    Where Redis is: C{redis://[:PASSWORD@]HOST[:PORT][/DB]} or
    C{unix:///PATH[?db=N]}.
    """

    def __init__(self, host=None, port=6379, db=0, password=None, path=None) -> None:
        self.host, self.port, self.db, self.password, self.path = host, port, db, password, path

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"

    def endpoint(self, reactor, timeout: float):
        if self.path is not None:
            return UNIXClientEndpoint(reactor, self.path, timeout=timeout)
        if ":" in self.host:
            return TCP6ClientEndpoint(reactor, self.host, self.port, timeout=timeout)
        return TCP4ClientEndpoint(reactor, self.host, self.port, timeout=timeout)


def parseRedisURL(url: str) -> RedisAddress:
    """
    The L{RedisAddress} a URL names.

    @raise ValueError: it names none (the message says why).
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{url!r} names no socket (unix:///PATH[?db=N])")
        db = parts.query.partition("db=")[2] or "0"
        if not db.isdigit():
            raise ValueError(f"{url!r}: db must be a number")
        return RedisAddress(path=parts.path, db=int(db))
    if parts.scheme != "redis":
        raise ValueError(f"{url!r} is not a redis:// URL (redis://HOST:PORT/DB)")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"{url!r} names no host (redis://HOST:PORT/DB)")
    path = parts.path.strip("/") or "0"
    if not path.isdigit():
        raise ValueError(f"{url!r}: the database must be a number (redis://HOST:PORT/DB)")
    password = unquote(parts.password) if parts.password else None
    return RedisAddress(host, port, int(path), password)


@implementer(IHistory)
class ClusterHistory:
    """
    The history of a cluster is in Redis (a stream per room, written by
    the publish script): this store only hands the Hub, at start, what
    the node read from there.
    """

    def __init__(self) -> None:
        self.rooms: list = []

    def open(self) -> None:
        pass

    def load(self, limit: int):
        return [(name, lastId, recent[-limit:]) for name, lastId, recent in self.rooms]

    def append(self, roomKey: str, event: Event) -> None:
        pass

    def topics(self):
        return []

    def setTopic(self, roomKey: str, event: Event) -> None:
        pass

    def stop(self):
        return defer.succeed(None)


class _Watchdog:
    """
    Abort a Redis connection whose oldest command has had no answer for
    C{timeout} seconds.  One timer per connection, looking at
    txredisapi's queue of awaited replies, instead of txredisapi's timer
    per command, which costs a C{callLater} and its cancel on every
    message a node publishes.  It runs from the moment the connection is
    made, so a Redis that accepts connections but never answers (stopped
    with SIGSTOP) is caught during AUTH and SELECT too.
    """

    def __init__(self, connection, timeout: float, clock) -> None:
        self.connection, self.timeout, self.clock = connection, timeout, clock
        self._oldest = None
        self._since = 0.0
        self._loop = LoopingCall(self._check)
        self._loop.clock = clock
        self._loop.start(timeout / 4, now=False)
        connection.whenDisconnected().addCallback(lambda _: self._loop.stop())

    def _check(self) -> None:
        waiting = self.connection.replyQueue.waiting
        if not waiting:
            self._oldest = None
            return
        now = self.clock.seconds()
        if waiting[0] is not self._oldest:
            self._oldest, self._since = waiting[0], now
        elif now - self._since >= self.timeout:
            # Once more after the reactor's next look at the sockets: if
            # this process itself stalled, the answer may be there, unread.
            self.clock.callLater(0, self._confirm, self._oldest)

    def _confirm(self, oldest) -> None:
        waiting = self.connection.replyQueue.waiting
        if waiting and waiting[0] is oldest and self.connection.transport is not None:
            self.connection.transport.abortConnection()


class _Factory(protocol.Factory):
    """
    txredisapi connections with a L{_Watchdog}; and what txredisapi's
    protocol asks of its factory when AUTH or SELECT fails at connect.
    """

    isLazy = False
    noisy = False

    def __init__(self, address: RedisAddress, replyTimeout: float, clock) -> None:
        self.address, self.replyTimeout, self.clock = address, replyTimeout, clock
        self.refused: str | None = None

    def buildProtocol(self, addr):
        proto = txredisapi.RedisProtocol(
            charset="utf-8",
            errors="replace",
            password=self.address.password,
            dbid=self.address.db,
            convertNumbers=False,
        )
        proto.factory = self
        proto.watchdog = _Watchdog(proto, self.replyTimeout, self.clock)
        return proto

    def stopTrying(self) -> None:
        pass

    def connectionError(self, why: str) -> None:
        self.refused = why


class RedisRefused(Exception):
    """
    Redis answered, but not as a cluster needs (authentication, database).
    """


def preflight(address: RedisAddress, timeout: float) -> None:
    """
    Check, before the reactor runs, that Redis answers at C{address}: a
    server that cannot reach its cluster at start says so in one line and
    exits, as one whose history file cannot be used does.  Blocking, for
    at most C{timeout} seconds: it runs before anything listens.

    @raise RedisRefused: it does not (the message says how).
    """
    family = socket.AF_UNIX if address.path is not None else socket.AF_INET6
    target = address.path
    if address.path is None:
        try:
            family, _, _, _, target = socket.getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM
            )[0]
        except OSError as e:
            raise RedisRefused(f"cannot resolve {address.host}: {e.strerror or e}") from None
    commands = []
    if address.password is not None:
        commands.append(("AUTH", address.password))
    commands += [("SELECT", str(address.db)), ("PING",)]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(target)
            for command in commands:
                sock.sendall(
                    b"".join(
                        [f"*{len(command)}\r\n".encode()]
                        + [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in command]
                    )
                )
                answer = b""
                while not answer.endswith(b"\r\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise RedisRefused("it closed the connection (is it Redis?)")
                    answer += chunk
                if answer.startswith(b"-"):
                    text = answer[1:].decode("utf-8", "replace").strip()
                    raise RedisRefused(f"{command[0]} was refused: {text}")
                if not answer.startswith((b"+", b":")):
                    raise RedisRefused("it does not answer as Redis does")
    except TimeoutError:
        raise RedisRefused(f"no answer within {timeout:g} s") from None
    except OSError as e:
        raise RedisRefused((e.strerror or str(e)).lower()) from None


def _ready(connection, factory):
    """
    A Deferred of a txredisapi connection being usable (AUTH and SELECT
    done), or failing if it is closed first: txredisapi's own
    C{whenConnected} would wait forever then.
    """
    d = defer.Deferred()

    def ready(_):
        if not d.called:
            d.callback(connection)

    def closed(_):
        if not d.called:
            d.errback(RedisRefused(factory.refused or "Redis closed the connection"))

    connection.whenConnected().addCallback(ready)
    connection.whenDisconnected().addCallback(closed)
    return d


@implementer(IBus)
class ClusterNode:
    """
    This process in the cluster: L{IBus} for the Hub, keeper of its
    L{ReplicaState}, and the only thing that talks to Redis.

    @ivar up: whether the bus runs through Redis now (else this node is
        on its own, queueing).
    @ivar dropped: operations that did not fit in the queue, in all.
    @ivar queueLimit: the most operations kept while Redis is away.
    """

    sequenced = True

    def __init__(
        self,
        address: RedisAddress,
        reactor,
        nodeId: str,
        timeout: float = 10.0,
        queueLimit: int = 10000,
        busLength: int = 100000,
        historyLimit: int = 200,
    ) -> None:
        self.address = address
        self.reactor = reactor
        self.nodeId = nodeId
        self.timeout = timeout
        self.queueLimit = queueLimit
        self.busLength = busLength
        self.historyLimit = historyLimit
        self.state = ReplicaState(self)
        self.history = ClusterHistory()
        self.hub = None
        self.up = False
        self.dropped = 0
        self._queue: deque = deque()
        #: This turn's events to publish, four values each (L{publish}).
        self._batch: list = []
        self._batchEvents: list[Event] = []
        self._queuedJoins: set[tuple[str, str]] = set()
        self._inflight: dict[int, tuple] = {}
        self._opSeq = 0
        self._command = None
        self._reader = None
        self._lastSeen: str | None = None
        self._epoch: str | None = None
        self._stopping = False
        self._synced = False
        self._started = defer.Deferred()
        self._attempt = 0
        self._retry = None
        self._downSince: float | None = None
        self._droppedAtDown = 0
        self._shas = {
            name: hashlib.sha1(source.encode()).hexdigest() for name, source in SCRIPTS.items()
        }
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor

    @property
    def queued(self) -> int:
        """
        Operations waiting for Redis.
        """
        return len(self._queue)

    # -- IBus -----------------------------------------------------------------

    def attach(self, hub) -> None:
        self.hub = hub

    def publish(self, event: Event) -> None:
        """
        Put C{event} on the bus: with the other events this node publishes
        in the same reactor turn, as one script call and one bus entry
        (L{scripts.PUBLISH_MANY}), so that a busy node pays Redis's round
        trip, and every reader its parsing, once per turn, not once per
        message.  Cut off from Redis, deliver it here now (a room message
        with the next id this node knows of) and queue it.
        """
        data = event.toDict()
        del data["id"]
        historic = "1" if event.kind in events.HISTORIC else ""
        key = roomKey(event.room) if event.room is not None else ""
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if self.up:
            batch = self._batch
            batch += (encoded, key, historic, event.origin or "")
            self._batchEvents.append(event)
            if len(batch) == 4:
                self.reactor.callLater(0, self._flushBatch)
            elif len(batch) >= 4 * BATCH_MAX:
                self._flushBatch()
            return
        if historic:
            event.id = self.state.nextId(key)
        elif event.kind == events.JOIN:
            self._queuedJoins.add((event.origin, key))
        self._enqueue(
            ("publish", (encoded, key, historic, self.nodeId, event.origin or "", self.busLength))
        )
        self.hub.deliver(event)

    def _flushBatch(self) -> None:
        """
        Send the events published so far in this turn, if any: at the end
        of the turn, and before any other operation, so that Redis sees
        this node's operations in the order they were made.
        """
        batch, published = self._batch, self._batchEvents
        if not batch:
            return
        self._batch, self._batchEvents = [], []
        if not self.up:
            # Lost meanwhile: delivered here and queued, as when cut off.
            for event in published:
                self.publish(event)
            return
        self.send("publishMany", "", self.busLength, *batch)

    # -- operations -------------------------------------------------------------

    def _eval(self, connection, op: str, *args):
        return connection.execute_command("EVALSHA", self._shas[op], 0, *args)

    def send(self, op: str, *args) -> None:
        """
        An operation whose answer nobody waits for: sent now, in order, or
        queued while Redis is away.  One that was sent but not answered
        when the connection went is queued again.
        """
        if self._batch and op != "publishMany":
            self._flushBatch()
        if not self.up:
            self._enqueue((op, args))
            return
        self._opSeq += 1
        seq = self._opSeq
        self._inflight[seq] = (op, args)
        d = self._eval(self._command, op, *args)
        d.addCallbacks(self._answered, self._unanswered, (seq,), None, (seq,))

    def _answered(self, result, seq: int) -> None:
        self._inflight.pop(seq, None)

    def _unanswered(self, failure: Failure, seq: int) -> None:
        entry = self._inflight.pop(seq, None)
        if failure.check(txredisapi.ConnectionError, error.ConnectionDone, error.ConnectionLost):
            if entry is not None:
                self._enqueue(entry)
            return
        log.warn(
            "cluster: Redis refused {op}: {why}",
            op=entry[0] if entry else "?",
            why=failure.getErrorMessage(),
        )

    def _enqueue(self, entry: tuple) -> None:
        op, args = entry
        if op == "publishMany":
            # Sent, unanswered: each event waits as published (not delivered).
            done, maxlen, batch = args[0], args[1], args[2:]
            for i in range(0, len(batch), 4):
                encoded, key, historic, origin = batch[i : i + 4]
                self._enqueue(("publish", (encoded, key, historic, done, origin, maxlen)))
            return
        if op not in _REPLAYED:
            return
        if len(self._queue) >= self.queueLimit:
            self.dropped += 1
            return
        self._queue.append(entry)

    def claim(self, memberId: str, name: str, keys):
        """
        Claim C{keys} for C{memberId} in Redis.

        @return: a Deferred: L{None} (taken), or the shown name of who
            holds one of them.
        """
        if self._batch:
            self._flushBatch()
        d = self._eval(
            self._command,
            "claim",
            memberId,
            name,
            int(self.timeout * 1000),
            self.busLength,
            *keys,
        )
        return d.addCallback(lambda reply: None if reply[0] == "ok" else reply[1])

    # -- lifecycle ------------------------------------------------------------

    def start(self):
        """
        Connect, read the snapshot and the history, start the heartbeat.

        @return: a Deferred that fires once that is done (retrying with
            the back-off until it is): the server listens only then.
        """
        self._connect()
        return self._started

    @defer.inlineCallbacks
    def _connect(self):
        self._retry = None
        first = not self._synced
        connectTimeout = max(1.0, self.timeout / 2)
        replyTimeout = max(1.0, self.timeout / 4)
        blockMs = int(replyTimeout * 1000)
        endpoint = self.address.endpoint(self.reactor, connectTimeout)
        factory = _Factory(self.address, replyTimeout, self.reactor)
        readerFactory = _Factory(self.address, replyTimeout + blockMs / 1000, self.reactor)
        command = reader = None
        try:
            command = yield endpoint.connect(factory)
            yield _ready(command, factory)
            reader = yield endpoint.connect(readerFactory)
            yield _ready(reader, readerFactory)
            for _op, source in SCRIPTS.items():
                yield command.execute_command("SCRIPT", "LOAD", source)
            self._command, self._reader = command, reader
            yield self._synchronise(first)
        except Exception as e:
            for connection in (command, reader):
                if connection is not None and getattr(connection, "transport", None):
                    connection.transport.abortConnection()
            self._command = self._reader = None
            if self._stopping:
                return
            if self._attempt == 0 and first:
                log.warn(
                    "cluster: cannot use Redis at {address} now ({why}); retrying",
                    address=str(self.address),
                    why=str(e) or e.__class__.__name__,
                    event="cluster-down",
                )
            self._attempt += 1
            self._scheduleRetry(e)
            return
        self._attempt = 0
        if self._stopping:
            # Stopped while connecting: the stop found nothing to close.
            self.up = False
            self._command = self._reader = None
            command.transport.loseConnection()
            reader.transport.abortConnection()
            return
        self._watch(command)
        self._watch(reader)
        self._read(reader, blockMs)
        if not self._heartbeat.running:
            self._heartbeat.start(self.timeout / 4, now=False)
        if first:
            self._synced = True
            self._started.callback(None)

    @defer.inlineCallbacks
    def _synchronise(self, first: bool):
        """
        Steps 1 to 4 of the module's account, on a fresh connection.
        """
        command = self._command
        beat = yield self._eval(
            command, "heartbeat", self.nodeId, int(self.timeout * 1000), self.busLength, LOST_REASON
        )
        self._reaped(beat)
        # Whose data is this?  A Redis that lost it (restarted without
        # persistence) has another epoch, and a bus that starts afresh.
        epoch = yield command.execute_command(
            "EVAL",
            "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])",
            1,
            f"{PREFIX}epoch",
            uuid.uuid4().hex,
        )
        lost = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        if first:
            yield self._snapshot(command, first)
        elif lost:
            log.warn(
                "cluster: Redis at {address} lost the cluster's data (restarted without "
                "persistence?): this node puts its own members back, and message ids go on "
                "from the highest it knows; the history kept in Redis before is gone",
                address=str(self.address),
                event="cluster-data-lost",
            )
            # The others' members, as this node knew them, until their
            # own nodes answer for them, or the reaper finds them gone.
            for node, members in self.state.othersByNode(self.nodeId).items():
                args = []
                for memberId, name, keys, rooms in members:
                    args += [
                        memberId,
                        name,
                        "\n".join(keys),
                        "\n".join(f"{key}\t{shown}" for key, shown in rooms),
                    ]
                yield self._eval(command, "restore", node, *args)
            self._lastSeen = "0-0"
        else:
            kept = yield command.execute_command("XRANGE", BUS, self._lastSeen, self._lastSeen)
            if not kept:
                log.warn(
                    "cluster: the bus no longer holds what this node last read (it keeps "
                    "about {length} entries, fewer than went by during the outage): starting "
                    "over from a snapshot; its users miss what was said meanwhile elsewhere",
                    length=self.busLength,
                    event="cluster-gap",
                )
                yield self._snapshot(command, first)
        # What Redis must not give out or forget, should it have lost its
        # data: sent together, answered in order.
        seeds = [
            command.execute_command(
                "EVAL",
                "local v = tonumber(redis.call('HGET', KEYS[1], 'last') or '0') "
                "if v < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], 'last', ARGV[2]) "
                "redis.call('HSETNX', KEYS[1], 'name', ARGV[1]) "
                "redis.call('SADD', KEYS[2], ARGV[3]) end return 1",
                2,
                f"{PREFIX}room:{key}",
                f"{PREFIX}rooms",
                name,
                lastId,
                key,
            )
            for key, name, lastId in self.state.lastIds()
        ]
        if lost:
            seeds += [
                self._eval(command, "topic", key, name, text, setter, repr(ts))
                for key, name, (text, setter, ts) in self.state.topics()
            ]
        yield defer.gatherResults(seeds, consumeErrors=True)
        if not first:
            yield self._rejoin(command, silent=lost)
        # The queue, in order; what is queued while it is sent goes after.
        while self._queue:
            batch = list(self._queue)
            self._queue.clear()
            replies = [self._eval(command, op, *args) for op, args in batch]
            results = yield defer.DeferredList(replies, consumeErrors=True)
            unsent = [
                entry
                for entry, (ok, result) in zip(batch, results, strict=False)
                if not ok and result.check(txredisapi.ConnectionError)
            ]
            if unsent:
                self._queue.extendleft(reversed(unsent))
                raise txredisapi.ConnectionError("lost while sending the queue")
        self._queuedJoins.clear()
        if not first:
            log.info(
                "cluster: Redis at {address} is back after {seconds:.1f} s; "
                "{dropped} operations did not fit in the queue",
                address=str(self.address),
                seconds=self.reactor.seconds() - (self._downSince or self.reactor.seconds()),
                dropped=self.dropped - self._droppedAtDown,
                event="cluster-up",
            )
            self.hub.notice(BACK_NOTICE)
        self._downSince = None
        self.up = True

    @defer.inlineCallbacks
    def _snapshot(self, command, first: bool):
        lastId, flatMembers, rooms = yield self._eval(command, "snapshot")
        members = list(zip(flatMembers[0::2], flatMembers[1::2], strict=False))
        parsed = []
        for entry in rooms:
            key, name, last, topic, setter, ts = entry[:6]
            parsed.append(
                (key, name, int(last or 0), topic, setter, float(ts) if ts else 0.0, entry[6:])
            )
        if not first:
            # Ids this node gave out while cut off must stay below the next.
            known = {key: lastId for key, _, lastId in self.state.lastIds()}
            parsed = [
                (key, name, max(last, known.get(key, 0)), *rest)
                for key, name, last, *rest in parsed
            ]
        self.state.load(members, parsed)
        self._lastSeen = lastId
        if first:
            recent = []
            for key, name, last, *_ in parsed:
                if not last:
                    continue
                entries = yield command.execute_command(
                    "XREVRANGE", f"{PREFIX}history:{key}", "+", "-", "COUNT", self.historyLimit
                )
                recent.append((name, last, [self._historyEvent(e) for e in reversed(entries)]))
            self.history.rooms = recent

    @staticmethod
    def _historyEvent(entry) -> Event:
        entryId, fields = entry
        event = Event.fromDict(json.loads(fields[1]))
        event.id = int(entryId.partition("-")[2])
        return event

    @defer.inlineCallbacks
    def _rejoin(self, command, silent: bool):
        """
        Step 3: every member of this node claims its name again and is put
        back in its rooms; one whose name went to someone else meanwhile
        is disconnected.  A member the cluster had taken for gone (it saw
        it leave) is seen to join again; after Redis lost its data
        (C{silent}) it never left in anyone's eyes, and the other nodes
        only note where it is.
        """
        hub = self.hub
        for member in list(hub.members.values()):
            taken = yield self.claim(member.id, member.name, member.keys)
            if taken is not None:
                log.warn(
                    "cluster: {name} was taken elsewhere while Redis was away; "
                    "disconnecting the one here",
                    name=member.name,
                    event="cluster-conflict",
                )
                hub.evict(
                    member,
                    f"the name {member.name} was taken elsewhere in the cluster while this "
                    "server was cut off from it; log in again with another name",
                )
                continue
            self.state.applyClaim(member.id, member.name, member.keys)
            for key, room in list(member.rooms.items()):
                shown, added = yield self._eval(command, "enter", member.id, key, room.name)
                if not int(added) or (member.id, key) in self._queuedJoins:
                    continue
                if silent:
                    yield command.execute_command(
                        "XADD",
                        BUS,
                        "MAXLEN",
                        "~",
                        self.busLength,
                        "*",
                        "t",
                        "en",
                        "m",
                        member.id,
                        "r",
                        key,
                        "n",
                        room.name,
                    )
                else:
                    event = Event(
                        events.JOIN,
                        room.name,
                        member.name,
                        ts=self.reactor.seconds(),
                        origin=member.id,
                    )
                    data = event.toDict()
                    del data["id"]
                    yield self._eval(
                        command,
                        "publish",
                        json.dumps(data),
                        key,
                        "",
                        self.nodeId,
                        member.id,
                        self.busLength,
                    )

    def _reaped(self, beat) -> None:
        fresh, reaped = int(beat[0]), beat[1:]
        if reaped:
            log.info(
                "cluster: released {count} members of nodes that stopped answering",
                count=len(reaped),
                event="cluster-reaped",
            )
        if fresh and self.up and self.hub.members:
            # We were taken for dead (a stall longer than the timeout).
            log.warn("cluster: this node was taken for dead; claiming its names again")
            self._goDown("taken for dead by the cluster")

    def _beat(self):
        if not self.up:
            return None
        d = self._eval(
            self._command,
            "heartbeat",
            self.nodeId,
            int(self.timeout * 1000),
            self.busLength,
            LOST_REASON,
        )
        return d.addCallbacks(self._reaped, lambda f: None)

    # -- the bus, read --------------------------------------------------------

    def _read(self, reader, blockMs: int) -> None:
        if reader is not self._reader:
            return
        d = reader.execute_command(
            "XREAD", "COUNT", 1000, "BLOCK", blockMs, "STREAMS", BUS, self._lastSeen
        )
        d.addCallbacks(self._entries, self._readFailed, (reader,), None, (reader,))
        d.addCallback(lambda _: self._read(reader, blockMs))

    def _readFailed(self, failure: Failure, reader) -> None:
        if reader is self._reader:
            self._goDown(f"reading the bus failed: {failure.getErrorMessage()}")

    def _entries(self, reply, reader) -> None:
        if reply is None or reader is not self._reader:
            return
        for entryId, fields in reply[0][1]:
            self._lastSeen = entryId
            try:
                self._apply(dict(zip(fields[0::2], fields[1::2], strict=False)))
            except Exception:
                # Not ours to read (another program wrote to the bus, or a
                # newer node): skipped, and the bus goes on.
                log.failure(
                    "cluster: skipped bus entry {entry} that this node cannot read",
                    entry=entryId,
                )

    def _apply(self, entry: dict) -> None:
        """
        One entry of the bus: applied to the replica, and delivered here
        unless this node delivered it already.
        """
        hub, state = self.hub, self.state
        kind = entry.get("t")
        if kind == "eb":
            delivered = entry.get("d") == self.nodeId
            for item in json.loads(entry["b"]):
                event = Event.fromDict(item["e"])
                event.id = item["i"]
                state.applyEvent(event)
                if not delivered:
                    hub.deliver(event)
        elif kind == "ev":
            event = Event.fromDict(json.loads(entry["e"]))
            if entry.get("i"):
                event.id = int(entry["i"])
            if entry.get("x") and event.origin in hub.members:
                return  # reaped while alive here: it claims again
            state.applyEvent(event)
            if entry.get("d") != self.nodeId:
                hub.deliver(event)
        elif kind == "cl":
            state.applyClaim(entry["m"], entry["n"])
        elif kind == "en":
            state.applyEnter(entry["m"], entry["r"], entry["n"])
        elif kind == "rl":
            if entry["m"] not in hub.members:
                state.applyRelease(entry["m"])

    # -- losing Redis, and coming back ------------------------------------------

    def _watch(self, connection) -> None:
        connection.whenDisconnected().addCallback(lambda _: self._lost(connection))

    def _lost(self, connection) -> None:
        if connection is self._command or connection is self._reader:
            self._goDown("connection lost or no answer within the reply timeout")

    def _goDown(self, why: str) -> None:
        if not self.up and self._command is None:
            return
        wasUp, self.up = self.up, False
        command, reader = self._command, self._reader
        self._command = self._reader = None
        for connection in (command, reader):
            if connection is not None and connection.transport is not None:
                connection.transport.abortConnection()
        if self._stopping:
            return
        if wasUp:
            self._downSince = self.reactor.seconds()
            self._droppedAtDown = self.dropped
            log.warn(
                "cluster: lost Redis at {address} ({why}); delivering on this node only, "
                "queueing up to {limit} operations, reconnecting",
                address=str(self.address),
                why=why,
                limit=self.queueLimit,
                event="cluster-down",
            )
            self.hub.notice(DOWN_NOTICE)
        self._scheduleRetry(None)

    def _scheduleRetry(self, why) -> None:
        if self._stopping or self._retry is not None:
            return
        # Capped at half the timeout, so that a node that was written
        # back for (RESTORE) is back before the reaper would take it.
        cap = min(10.0, self.timeout / 2)
        delay = min(cap, 0.25 * 2 ** min(self._attempt, 10)) * random.uniform(0.8, 1.2)
        self._retry = self.reactor.callLater(delay, self._connect)

    def stop(self):
        """
        Send what is pending, say this node is gone, close.
        """
        self._stopping = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._heartbeat.running:
            self._heartbeat.stop()
        command, reader = self._command, self._reader
        self._reader = None
        if reader is not None and reader.transport is not None:
            reader.transport.abortConnection()
        if not self.up or command is None:
            if self._queue:
                log.warn(
                    "cluster: stopping without Redis: {count} operations were not sent",
                    count=len(self._queue),
                )
            return defer.succeed(None)
        self.up = False
        d = self._eval(command, "retire", self.nodeId)
        d.addBoth(lambda _: command.transport.loseConnection())
        return d
