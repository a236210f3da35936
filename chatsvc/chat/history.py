"""
The history store: every room message, kept across restarts.

Two stores share one small interface:

  - C{load(limit)}: at start, for every room with history, its name, its
    last message id and its last C{limit} messages (so ids keep
    increasing across restarts and C{/history} is answered from memory);
  - C{append(roomKey, event)}: keep a message; never blocks;
  - C{stop()}: write everything still pending; a Deferred.

L{SQLiteHistory} is the default.  SQLite called on the reactor thread
froze a server for 5 s on a locked database (docs/hardening.rst), so writes go
to one writer thread of its own, in batches: the fan-out only appends to
a list, and one transaction a batch keeps the disk cost per message
small.  A failing disk (locked, read-only, full) is logged once per
outage and the batch is tried again later; what waits is bounded.
"""

from __future__ import annotations

import sqlite3
from collections import deque

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from chatsvc.chat.events import HISTORIC, Event

log = Logger()

#: Rooms whose recent messages are loaded at start (most recently active).
MAX_ROOMS_LOADED = 10000


class HistoryError(Exception):
    """
    The history store cannot be used; the message says why, in one line.
    """


class MemoryHistory:
    """
    History kept in memory only: gone when the process ends.
    """

    def __init__(self, perRoom: int = 1000) -> None:
        self.perRoom = perRoom
        self.rooms: dict[str, deque] = {}
        self.lastIds: dict[str, tuple[str, int]] = {}

    def load(self, limit: int):
        for key, (name, lastId) in self.lastIds.items():
            yield name, lastId, list(self.rooms.get(key, ()))[-limit:] if limit else []

    def append(self, roomKey: str, event: Event) -> None:
        room = self.rooms.get(roomKey)
        if room is None:
            room = self.rooms[roomKey] = deque(maxlen=self.perRoom)
        room.append(event)
        self.lastIds[roomKey] = (event.room, event.id)

    def messages(self, roomKey: str) -> list[Event]:
        """
        Everything kept for a room (for tests).
        """
        return list(self.rooms.get(roomKey, ()))

    def stop(self):
        return defer.succeed(None)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    room_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
"""

_INSERT = (
    "INSERT OR REPLACE INTO messages (room, id, room_name, kind, sender, text, ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
    return connection


class SQLiteHistory:
    """
    History in a SQLite file, written by one thread in batches.

    @ivar path: the database file.
    @ivar flushDelay: seconds a message may wait to be batched.
    @ivar timeout: seconds to wait for a lock held by another process:
        at start (then the store cannot be used), and for each batch
        (then it counts as failed and is retried).
    @ivar maxPending: most messages waiting for the disk; past it the
        oldest are dropped (with a log line), so a dead disk cannot grow
        the server without bound.
    """

    def __init__(
        self,
        path: str,
        reactor,
        flushDelay: float = 0.05,
        maxPending: int = 100000,
        batchSize: int = 2000,
        timeout: float = 2.0,
    ) -> None:
        self.path = path
        self.reactor = reactor
        self.flushDelay = flushDelay
        self.timeout = timeout
        self.maxPending = maxPending
        self.batchSize = batchSize
        self._pending: deque[tuple] = deque()
        self._timer = None
        self._writing: defer.Deferred | None = None
        self._failing = False
        self._dropped = 0
        self._stopped = False
        self._pool: ThreadPool | None = None
        self._writer: sqlite3.Connection | None = None

    # -- start ---------------------------------------------------------

    def open(self) -> None:
        """
        Open (or create) the database now, at start, so that a store that
        cannot be used is a clear error before the server listens.

        The writer thread is only started by the first write: a start that
        fails after this (the port is in use) must not leave a thread
        behind that keeps the process from exiting.

        @raise HistoryError: it cannot be used.
        """
        try:
            connection = _connect(self.path, timeout=self.timeout)
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.executescript(_SCHEMA)
                connection.execute("SELECT count(*) FROM messages LIMIT 1").fetchone()
            finally:
                connection.close()
        except sqlite3.Error as e:
            raise HistoryError(f"cannot use history file {self.path}: {e}") from e

    def load(self, limit: int):
        """
        See the module docstring; read synchronously, at start only.
        """
        try:
            connection = _connect(self.path, timeout=self.timeout)
            try:
                rooms = connection.execute(
                    "SELECT room, MAX(id), MAX(ts) FROM messages GROUP BY room "
                    "ORDER BY MAX(ts) DESC"
                ).fetchall()
                result = []
                for index, (key, lastId, _) in enumerate(rooms):
                    rows = []
                    if limit and index < MAX_ROOMS_LOADED:
                        rows = connection.execute(
                            "SELECT id, room_name, kind, sender, text, ts FROM messages "
                            "WHERE room = ? ORDER BY id DESC LIMIT ?",
                            (key, limit),
                        ).fetchall()
                    name = rows[0][1] if rows else self._roomName(connection, key)
                    recent = [
                        Event(kind, roomName, sender, text, id=id, ts=ts)
                        for id, roomName, kind, sender, text, ts in reversed(rows)
                        if kind in HISTORIC
                    ]
                    result.append((name, lastId, recent))
                return result
            finally:
                connection.close()
        except sqlite3.Error as e:
            raise HistoryError(f"cannot read history file {self.path}: {e}") from e

    @staticmethod
    def _roomName(connection, key: str) -> str:
        row = connection.execute(
            "SELECT room_name FROM messages WHERE room = ? ORDER BY id DESC LIMIT 1", (key,)
        ).fetchone()
        return row[0] if row else key

    # -- writing -------------------------------------------------------

    def append(self, roomKey: str, event: Event) -> None:
        """
        Queue a message for the writer; returns at once.
        """
        self._pending.append(
            (roomKey, event.id, event.room, event.kind, event.name, event.text, event.ts)
        )
        if len(self._pending) > self.maxPending:
            self._pending.popleft()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 10000 == 0:
                log.error(
                    "history: {count} messages dropped: the store is not keeping up",
                    count=self._dropped,
                )
        if self._timer is None and self._writing is None and not self._stopped:
            self._timer = self.reactor.callLater(self.flushDelay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._writing is not None or not self._pending:
            return
        batch = [self._pending.popleft() for _ in range(min(self.batchSize, len(self._pending)))]
        if self._pool is None:
            self._pool = ThreadPool(1, 1, name="chatsvc-history")
            self._pool.start()
        d = threads.deferToThreadPool(self.reactor, self._pool, self._write, batch)
        self._writing = d
        d.addCallbacks(self._written, self._writeFailed, errbackArgs=(batch,))

    def _write(self, batch: list[tuple]) -> None:
        # Runs on the writer thread only.
        if self._writer is None:
            self._writer = _connect(self.path, timeout=self.timeout)
        connection = self._writer
        try:
            connection.execute("BEGIN")
            connection.executemany(_INSERT, batch)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _written(self, _) -> None:
        self._writing = None
        if self._failing:
            self._failing = False
            log.info("history: writing to {path} works again", path=self.path)
        if self._pending:
            self._flush() if self._stopped else self._schedule(0)

    def _writeFailed(self, failure, batch) -> None:
        self._writing = None
        self._pending.extendleft(reversed(batch))
        while len(self._pending) > self.maxPending:
            self._pending.popleft()
            self._dropped += 1
        if not self._failing:
            self._failing = True
            log.error(
                "history: cannot write to {path}: {why}; retrying",
                path=self.path,
                why=failure.getErrorMessage(),
            )
        if not self._stopped:
            self._schedule(1.0)

    def _schedule(self, delay: float) -> None:
        if self._timer is None:
            self._timer = self.reactor.callLater(delay, self._flush)

    # -- stopping ------------------------------------------------------

    @defer.inlineCallbacks
    def stop(self, attempts: int = 2):
        """
        Write everything pending (a few attempts if the disk fails, one if
        it was failing already, so that a locked or broken store delays a
        stop by seconds, not minutes), then close the writer.
        """
        if self._failing:
            attempts = 1
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        failures = 0
        while True:
            if self._writing is not None:
                try:
                    yield self._writing
                except Exception:
                    pass
                continue
            if not self._pending or failures >= attempts:
                break
            before = len(self._pending)
            self._flush()
            if self._writing is not None:
                yield self._writing.addErrback(lambda f: None)
            if len(self._pending) >= before:
                failures += 1
        if self._pending:
            log.error(
                "history: {count} messages could not be written to {path}",
                count=len(self._pending),
                path=self.path,
            )
        if self._pool is not None:
            if self._writer is not None:
                yield threads.deferToThreadPool(self.reactor, self._pool, self._closeWriter)
            self._pool.stop()
            self._pool = None

    def _closeWriter(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
