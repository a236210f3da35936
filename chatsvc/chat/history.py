"""
The history store: every room message and every room's topic, kept
across restarts.

Two stores share one small interface (L{IHistory}):

  - C{open()}: at start, make sure the store can be used;
  - C{load(limit)}: at start, for every room with history, its name, its
    last message id and its last C{limit} messages (so ids keep
    increasing across restarts and C{/history} is answered from memory);
  - C{topics()}: at start, every room's topic, as TOPIC events;
  - C{append(roomKey, event)}: keep a message; never blocks;
  - C{setTopic(roomKey, event)}: keep (or clear) a topic; never blocks;
  - C{stop()}: write everything still pending; a Deferred.

L{SQLiteHistory} is the default.  SQLite called on the reactor thread
froze a server for 5 s on a locked database (docs/hardening.rst), so writes go
to one writer thread of its own, in batches: the fan-out only appends to
a list, and one transaction a batch keeps the disk cost per message
small.  A failing disk (locked, read-only, full) is logged once per
outage and the batch is tried again later; what waits is bounded.

One server owns a history file: message ids are given out from what it
loaded at start, so a second server on the same file would store other
messages under the same ids.  The store therefore holds an exclusive
lock on C{PATH.lock} from start to stop (L{HistoryInUse} for a second
one), and a stored message is never overwritten: a row whose id is taken
is not written, and that is logged.
"""

from __future__ import annotations

import fcntl
import os
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from chatsvc.chat.events import HISTORIC, TOPIC, Event
from chatsvc.chat.interfaces import IHistory

if TYPE_CHECKING:
    import sqlite3

log = Logger()

#: Rooms whose recent messages are loaded at start (most recently active).
MAX_ROOMS_LOADED = 10000


class HistoryError(Exception):
    """
    The history store cannot be used; the message says why, in one line.
    """


class HistoryInUse(HistoryError):
    """
    Another store (another server) holds the history file.
    """


def _lockPath(path: str) -> str:
    """
    The lock file of a history file: beside the file itself, with links
    resolved, so that every name of one file (relative, absolute, through
    a symbolic link) has the same lock.
    """
    return os.path.realpath(path) + ".lock"


def _lock(path: str) -> int:
    """
    Take the exclusive lock of history file C{path} and write our pid into
    the lock file (for the message a second server gives).

    C{flock} on a lock file of our own, not any lock on the database:
    SQLite takes POSIX locks on the database file, and a POSIX lock of
    ours there would merge with SQLite's, and closing a descriptor of
    ours would drop them.  A C{flock} lock belongs to its open file, so
    the kernel drops it however the process ends; the file is never
    removed (removing a lock file races with the next one to open it).

    @return: the descriptor that holds the lock (close it to release).
    @raise HistoryInUse: another process holds the lock.
    @raise HistoryError: the lock file cannot be opened.
    """
    lockPath = _lockPath(path)
    try:
        fd = os.open(lockPath, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise HistoryError(
            f"cannot use history file {path}: cannot open {lockPath}: {e.strerror}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _holder(fd)
        os.close(fd)
        raise HistoryInUse(
            f"the history file {path} is in use by another chatsvc server{holder}"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, b"%d\n" % os.getpid())
    return fd


def _holder(fd: int) -> str:
    """
    C{" (pid N)"} from a lock file its holder wrote, or nothing when it
    has not yet written it.
    """
    try:
        pid = int(os.pread(fd, 32, 0))
    except (OSError, ValueError):
        return ""
    return f" (pid {pid})"


def _unlock(fd: int) -> None:
    """
    Release a lock taken by L{_lock}, emptying the file first so that no
    stale pid is shown to whoever takes it next.
    """
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


@implementer(IHistory)
class MemoryHistory:
    """
    History kept in memory only: gone when the process ends.
    """

    def __init__(self, perRoom: int = 1000) -> None:
        self.perRoom = perRoom
        self.rooms: dict[str, deque] = {}
        self.lastIds: dict[str, tuple[str, int]] = {}
        self._topics: dict[str, Event] = {}

    def open(self) -> None:
        """
        Nothing to open.
        """

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

    def topics(self) -> list[Event]:
        return list(self._topics.values())

    def setTopic(self, roomKey: str, event: Event) -> None:
        if event.text:
            self._topics[roomKey] = _topicEvent(event.room, event.name, event.text, event.ts)
        else:
            self._topics.pop(roomKey, None)

    def stop(self):
        return defer.succeed(None)


#: The schema this code writes, kept in SQLite's C{user_version}: 0 (no
#: version: files written before topics), then 2 (messages and topics).
#: Each step only adds tables, created when missing, so an older file is
#: upgraded in place on open; a newer one is refused rather than misread.
SCHEMA_VERSION = 2

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
CREATE TABLE IF NOT EXISTS topics (
    room TEXT NOT NULL PRIMARY KEY,
    room_name TEXT NOT NULL,
    text TEXT NOT NULL,
    setter TEXT NOT NULL,
    ts REAL NOT NULL
) WITHOUT ROWID;
"""

#: A plain INSERT: a row whose (room, id) is taken is an error, never a
#: replacement of the stored message.
_INSERT = (
    "INSERT INTO messages (room, id, room_name, kind, sender, text, ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)

#: A topic replaces the room's topic before it.
_SET_TOPIC = (
    "INSERT OR REPLACE INTO topics (room, room_name, text, setter, ts) VALUES (?, ?, ?, ?, ?)"
)
_CLEAR_TOPIC = "DELETE FROM topics WHERE room = ?"


def _topicEvent(roomName: str, setter: str, text: str, ts: float) -> Event:
    return Event(TOPIC, roomName, setter, text, ts=ts)


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    import sqlite3  # here, so that --history :memory: never loads SQLite

    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
    return connection


@implementer(IHistory)
class SQLiteHistory:
    """
    History in a SQLite file, written by one thread in batches (topics
    in the same transactions as messages).

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
        #: Topics waiting for the writer, by room key: only the last of a
        #: room counts.
        self._topics: dict[str, tuple] = {}
        self._timer = None
        self._writing: defer.Deferred | None = None
        self._failing = False
        self._dropped = 0
        self._stopped = False
        self._pool: ThreadPool | None = None
        self._writer: sqlite3.Connection | None = None
        self._lock: int | None = None

    # -- start ---------------------------------------------------------

    def open(self) -> None:
        """
        Lock and open (or create) the database now, at start, so that a
        store that cannot be used, or is used by another server, is a
        clear error before the server listens.  The lock is held until
        L{stop}, or until the process ends.

        The writer thread is only started by the first write: a start that
        fails after this (the port is in use) must not leave a thread
        behind that keeps the process from exiting.

        @raise HistoryInUse: another server uses the file.
        @raise HistoryError: it cannot be used.
        """
        if os.path.isdir(self.path):
            # Checked first: its lock file would land beside the directory.
            raise HistoryError(f"cannot use history file {self.path}: it is a directory")
        self._lock = _lock(self.path)
        try:
            self._check()
        except BaseException:
            self._release()
            raise

    def _check(self) -> None:
        """
        Create or upgrade the schema if needed (L{SCHEMA_VERSION}) and read
        the tables once.
        """
        import sqlite3

        try:
            connection = _connect(self.path, timeout=self.timeout)
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                [version] = connection.execute("PRAGMA user_version").fetchone()
                if version > SCHEMA_VERSION:
                    raise HistoryError(
                        f"cannot use history file {self.path}: it was written by a newer "
                        f"chatsvc (schema {version}; this one knows up to {SCHEMA_VERSION})"
                    )
                connection.executescript(_SCHEMA)
                if version < SCHEMA_VERSION:
                    connection.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
                connection.execute("SELECT count(*) FROM messages LIMIT 1").fetchone()
                connection.execute("SELECT count(*) FROM topics LIMIT 1").fetchone()
            finally:
                connection.close()
        except sqlite3.Error as e:
            raise HistoryError(f"cannot use history file {self.path}: {e}") from e

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            _unlock(lock)

    @contextmanager
    def _reading(self):
        """
        A connection of its own for a read at start (synchronous, before
        anyone connects), closed after; a SQLite error is one clear
        L{HistoryError}.
        """
        import sqlite3

        try:
            connection = _connect(self.path, timeout=self.timeout)
            try:
                yield connection
            finally:
                connection.close()
        except sqlite3.Error as e:
            raise HistoryError(f"cannot read history file {self.path}: {e}") from e

    def load(self, limit: int):
        """
        See the module docstring; read synchronously, at start only.
        """
        with self._reading() as connection:
            rooms = connection.execute(
                "SELECT room, MAX(id), MAX(ts) FROM messages GROUP BY room ORDER BY MAX(ts) DESC"
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

    def topics(self) -> list[Event]:
        """
        See the module docstring; read synchronously, at start only.
        """
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT room_name, setter, text, ts FROM topics ORDER BY room"
            ).fetchall()
        return [_topicEvent(*row) for row in rows]

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
        self._wake()

    def setTopic(self, roomKey: str, event: Event) -> None:
        """
        Queue a room's topic (an event of kind TOPIC) for the writer;
        returns at once.
        """
        self._topics[roomKey] = (roomKey, event.room, event.text, event.name, event.ts)
        self._wake()

    def _wake(self) -> None:
        if self._timer is None and self._writing is None and not self._stopped:
            self._timer = self.reactor.callLater(self.flushDelay, self._flush)

    def _waiting(self) -> int:
        """
        How many messages and topics wait for the writer.
        """
        return len(self._pending) + len(self._topics)

    def _flush(self) -> None:
        self._timer = None
        if self._writing is not None or not self._waiting():
            return
        batch = [self._pending.popleft() for _ in range(min(self.batchSize, len(self._pending)))]
        topics, self._topics = list(self._topics.values()), {}
        if self._pool is None:
            self._pool = ThreadPool(1, 1, name="chatsvc-history")
            self._pool.start()
        d = threads.deferToThreadPool(self.reactor, self._pool, self._write, batch, topics)
        self._writing = d
        d.addCallbacks(self._written, self._writeFailed, errbackArgs=(batch, topics))

    def _write(self, batch: list[tuple], topics: list[tuple] = ()) -> list[tuple[tuple, str]]:
        """
        Write C{batch} and C{topics} in one transaction; runs on the writer
        thread only.

        A row whose id is taken makes the whole C{executemany} fail, so
        the batch is then written again row by row: every other row is
        stored, and the refused ones are returned, to be logged on the
        reactor thread (L{_written}).

        @return: the rows not stored, each with why.
        """
        import sqlite3

        if self._writer is None:
            self._writer = _connect(self.path, timeout=self.timeout)
        connection = self._writer
        try:
            connection.execute("BEGIN")
            try:
                connection.executemany(_INSERT, batch)
                refused = []
            except sqlite3.IntegrityError:
                connection.execute("ROLLBACK")
                connection.execute("BEGIN")
                refused = _insertEach(connection, batch)
            for row in topics:
                if row[2]:
                    connection.execute(_SET_TOPIC, row)
                else:
                    connection.execute(_CLEAR_TOPIC, row[:1])
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return refused

    def _written(self, refused: list[tuple[tuple, str]]) -> None:
        self._writing = None
        for row, why in refused:
            self._logRefused(row, why)
        if self._failing:
            self._failing = False
            log.info("history: writing to {path} works again", path=self.path)
        if self._waiting():
            self._flush() if self._stopped else self._schedule(0)

    def _logRefused(self, row: tuple, why: str) -> None:
        if "UNIQUE" in why:
            why = f"{self.path} already holds a message with that id, and keeps it"
        log.error(
            "history: message {id} of #{room} not stored: {why}",
            id=row[1],
            room=row[2],
            why=why,
        )

    def _writeFailed(self, failure, batch, topics=()) -> None:
        self._writing = None
        self._pending.extendleft(reversed(batch))
        for row in topics:
            # A topic set since is newer: it stays.
            self._topics.setdefault(row[0], row)
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
            if not self._waiting() or failures >= attempts:
                break
            before = self._waiting()
            self._flush()
            if self._writing is not None:
                yield self._writing.addErrback(lambda f: None)
            if self._waiting() >= before:
                failures += 1
        if self._pending:
            log.error(
                "history: {count} messages could not be written to {path}",
                count=len(self._pending),
                path=self.path,
            )
        if self._topics:
            log.error(
                "history: {count} topics could not be written to {path}",
                count=len(self._topics),
                path=self.path,
            )
        try:
            if self._pool is not None:
                if self._writer is not None:
                    yield threads.deferToThreadPool(self.reactor, self._pool, self._closeWriter)
                self._pool.stop()
                self._pool = None
        finally:
            self._release()

    def _closeWriter(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _insertEach(connection: sqlite3.Connection, batch: list[tuple]) -> list[tuple[tuple, str]]:
    """
    Insert the rows one by one in the open transaction: a failed INSERT
    undoes only itself, so every row that can be stored is.

    @return: the rows refused (their id is taken), each with SQLite's why.
    """
    import sqlite3

    refused = []
    for row in batch:
        try:
            connection.execute(_INSERT, row)
        except sqlite3.IntegrityError as e:
            refused.append((row, str(e)))
    return refused
