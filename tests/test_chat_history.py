"""
Tests for L{chatsvc.chat.history}: the SQLite store on a temporary
directory with the real reactor (its writer is a thread), and the memory
store.

Batching, ids and C{/history} across a restart, topics kept across a
restart, the schema upgraded in place, one store per file and no stored
message ever overwritten, and the faults: a path that cannot
be opened, a corrupt file, a database locked by another process, a store
that cannot keep up.  A fault is a L{HistoryError} at start or a log
line later; the reactor never waits for the disk.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from chatsvc.chat import events
from chatsvc.chat import history as historyModule
from chatsvc.chat.history import HistoryError, SQLiteHistory
from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.testing import Clock, FakeListener, MemoryHistory, lineConnection
from tests.support import waitFor, withDeadline

START = 1795255200.0


class LogCatcher:
    """
    The text of every log event while a test runs.
    """

    def __init__(self, test: unittest.TestCase) -> None:
        self.messages: list[str] = []
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event) -> None:
        if event.get("log_namespace", "").startswith("chatsvc.chat.history"):
            self.messages.append(formatEvent(event))

    def having(self, text: str) -> list[str]:
        return [m for m in self.messages if text in m]


def rows(path: str) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(
            "SELECT room, id, room_name, kind, sender, text, ts FROM messages ORDER BY room, id"
        ).fetchall()
    finally:
        connection.close()


class Locker:
    """
    Another process's connection holding the write lock.
    """

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.connection is not None:
            self.connection.execute("COMMIT")
            self.connection.close()
            self.connection = None


def temporaryDirectory(test: unittest.SynchronousTestCase) -> str:
    """
    A new directory, removed after the test.  (Not C{mktemp()}: under
    pytest that creates directories named after the test module in the
    working directory, which then confuse trial.)
    """
    directory = tempfile.mkdtemp(prefix="chatsvc-test-")
    test.addCleanup(shutil.rmtree, directory, True)
    return directory


class SQLiteTestCase(unittest.TestCase):
    def path(self) -> str:
        return os.path.join(temporaryDirectory(self), "history.sqlite3")

    def store(self, path: str, **kwargs) -> SQLiteHistory:
        history = SQLiteHistory(path, reactor, **kwargs)
        history.open()
        self.addCleanup(history.stop)
        return history

    def hub(self, history) -> tuple[Hub, object]:
        clock = Clock()
        clock.advance(START)
        hub = Hub(clock, history)
        hub.restore()
        member = hub.login("alice", FakeListener())
        return hub, member

    def say(self, hub: Hub, member, room: str, *texts: str) -> list[events.Event]:
        joined = hub.join(member, room)
        return [hub.say(member, joined, text) for text in texts]


class SQLiteTests(SQLiteTestCase):
    async def test_roundTrip(self) -> None:
        """
        Messages and actions are written with everything a rendering
        needs, and read back at the next start.
        """
        path = self.path()
        history = self.store(path)
        hub, alice = self.hub(history)
        self.say(hub, alice, "Lobby", "one", "two")
        hub.act(alice, hub.room("lobby"), "waves")
        self.say(hub, alice, "dev", "in dev")
        await history.stop()
        self.assertEqual(
            rows(path),
            [
                ("dev", 1, "dev", "message", "alice", "in dev", START),
                ("lobby", 1, "Lobby", "message", "alice", "one", START),
                ("lobby", 2, "Lobby", "message", "alice", "two", START),
                ("lobby", 3, "Lobby", "action", "alice", "waves", START),
            ],
        )
        loaded = {name: (lastId, recent) for name, lastId, recent in self.store(path).load(2)}
        self.assertEqual(set(loaded), {"Lobby", "dev"})
        lastId, recent = loaded["Lobby"]
        self.assertEqual(lastId, 3)
        self.assertEqual(
            [(e.kind, e.text, e.id) for e in recent],
            [("message", "two", 2), ("action", "waves", 3)],
        )
        self.assertEqual(recent[0].room, "Lobby")

    async def test_writtenWhileRunning(self) -> None:
        """
        Messages reach the disk soon, without a stop: another connection
        reads the whole message while the store still runs.
        """
        path = self.path()
        history = self.store(path, flushDelay=0.01)
        hub, alice = self.hub(history)
        self.say(hub, alice, "Lobby", "hello")
        await waitFor(lambda: rows(path), "the message to be written")
        self.assertEqual(rows(path), [("lobby", 1, "Lobby", "message", "alice", "hello", START)])
        self.assertFalse(history._stopped)
        self.say(hub, alice, "Lobby", "again")
        await waitFor(lambda: len(rows(path)) == 2, "the next message to be written")
        self.assertEqual(rows(path)[1][4:6], ("alice", "again"))

    async def test_batches(self) -> None:
        """
        Many messages go to the disk in few transactions.
        """
        path = self.path()
        batches = []

        class Counting(SQLiteHistory):
            def _write(self, batch, topics=()):
                batches.append(len(batch))
                return super()._write(batch, topics)

        history = Counting(path, reactor, batchSize=1000)
        history.open()
        self.addCleanup(history.stop)
        hub, alice = self.hub(history)
        self.say(hub, alice, "lobby", *[f"m{i}" for i in range(5000)])
        await history.stop()
        self.assertEqual(len(rows(path)), 5000)
        self.assertEqual(sum(batches), 5000)
        self.assertLessEqual(len(batches), 6)

    async def test_restart(self) -> None:
        """
        After a restart ids keep increasing and /history shows what was
        said before.
        """
        path = self.path()
        history = self.store(path)
        hub, alice = self.hub(history)
        self.say(hub, alice, "lobby", "before 1", "before 2")
        await history.stop()

        history = self.store(path)
        clock = Clock()
        clock.advance(START + 60)
        hub = Hub(clock, history)
        hub.restore()
        factory = ChatFactory(hub, ChatLimits(), clock)
        proto, transport = lineConnection(factory)
        proto.dataReceived(b"bob\n/history\n/format json\nafter\n")
        factory.batcher.flush()
        lines = transport.value().decode().splitlines()
        self.assertEqual(lines[0], "success: logged in as bob, in #lobby with: nobody")
        self.assertTrue(lines[1].endswith("#lobby alice: before 1"), lines)
        self.assertTrue(lines[2].endswith("#lobby alice: before 2"), lines)
        self.assertEqual(lines[3], "info: end of history of #lobby (2 messages)")
        self.assertIn('"id":3', lines[-1])
        proto.dataReceived(b"/quit\n")
        await history.stop()
        self.assertEqual([r[1] for r in rows(path)], [1, 2, 3])

    async def test_stopWithoutWrites(self) -> None:
        """
        A store that never wrote has no thread to stop.
        """
        history = self.store(self.path())
        self.assertIsNone(history._pool)
        await history.stop()
        self.assertIsNone(history._pool)

    def message(self, id: int, text: str, room: str = "Lobby") -> events.Event:
        return events.Event(events.MESSAGE, room, "alice", text, id=id, ts=START)

    async def test_neverOverwritten(self) -> None:
        """
        A message whose id is already stored is not written, and says so
        in one log line naming the room and the id; the stored message is
        intact, the rest of the batch is written, and the writer goes on.
        """
        path = self.path()
        logs = LogCatcher(self)
        history = self.store(path, flushDelay=0)
        history.append("lobby", self.message(1, "original"))
        await waitFor(lambda: rows(path), "the first message to be written")
        for id, text in [(2, "before"), (1, "impostor"), (3, "after"), (3, "twin")]:
            history.append("lobby", self.message(id, text))
        await waitFor(lambda: len(rows(path)) == 3, "the rest of the batch to be written")
        history.append("lobby", self.message(4, "later"))
        await history.stop()
        self.assertEqual(
            [(r[1], r[5]) for r in rows(path)],
            [(1, "original"), (2, "before"), (3, "after"), (4, "later")],
        )
        refused = logs.having("not stored")
        self.assertEqual(len(refused), 2, logs.messages)
        self.assertIn("message 1 of #Lobby", refused[0])
        self.assertIn("message 3 of #Lobby", refused[1])
        self.assertIn(path, refused[0])
        self.assertEqual(logs.having("cannot write"), [])
        self.assertEqual(logs.having("could not be written"), [])

    async def test_conflictOtherRoom(self) -> None:
        """
        Ids are per room: the same id in two rooms is two messages.
        """
        path = self.path()
        history = self.store(path, flushDelay=0)
        history.append("lobby", self.message(1, "in the lobby"))
        history.append("dev", self.message(1, "in dev", room="dev"))
        await history.stop()
        self.assertEqual([(r[0], r[1]) for r in rows(path)], [("dev", 1), ("lobby", 1)])


def topicRows(path: str) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(
            "SELECT room, room_name, text, setter, ts FROM topics ORDER BY room"
        ).fetchall()
    finally:
        connection.close()


def userVersion(path: str) -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA user_version").fetchone()[0]
    finally:
        connection.close()


class SQLiteTopicTests(SQLiteTestCase):
    async def test_restart(self) -> None:
        """
        Topics are written with the messages and come back after a
        restart: a new hub on the same file shows them, the last one set
        per room, and a cleared one is gone.
        """
        path = self.path()
        history = self.store(path, flushDelay=0)
        hub, alice = self.hub(history)
        lobby = hub.join(alice, "Lobby")
        hub.say(alice, lobby, "hi")
        hub.setTopic(alice, lobby, "first")
        hub.setTopic(alice, lobby, "welcome to the lobby")
        dev = hub.join(alice, "dev")
        hub.setTopic(alice, dev, "gone soon")
        quiet = hub.join(alice, "Quiet")
        hub.setTopic(alice, quiet, "shh")
        await waitFor(lambda: len(topicRows(path)) == 3, "the topics to be written")
        hub.setTopic(alice, dev, "")
        await history.stop()
        self.assertEqual(
            topicRows(path),
            [
                ("lobby", "Lobby", "welcome to the lobby", "alice", START),
                ("quiet", "Quiet", "shh", "alice", START),
            ],
        )

        history = self.store(path)
        hub = Hub(Clock(), history)
        hub.restore()
        self.assertEqual(hub.topic(hub.room("lobby")), ("welcome to the lobby", "alice", START))
        self.assertEqual(hub.room("quiet").name, "Quiet")
        self.assertEqual(hub.topic(hub.room("quiet"))[0], "shh")
        self.assertIsNone(hub.room("dev"))
        self.assertEqual([e.kind for e in history.topics()], [events.TOPIC] * 2)

    async def test_upgrade(self) -> None:
        """
        A history file written before topics (no topics table, no schema
        version) is upgraded in place when opened: its messages stay and
        go on, topics are kept from then on.
        """
        path = self.path()
        connection = sqlite3.connect(path)
        connection.executescript(
            """
            CREATE TABLE messages (
                room TEXT NOT NULL, id INTEGER NOT NULL, room_name TEXT NOT NULL,
                kind TEXT NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL,
                ts REAL NOT NULL, PRIMARY KEY (room, id)
            ) WITHOUT ROWID;
            INSERT INTO messages VALUES ('lobby', 1, 'lobby', 'message', 'old', 'before', 1.0);
            """
        )
        connection.close()
        self.assertEqual(userVersion(path), 0)
        history = self.store(path, flushDelay=0)
        self.assertEqual(userVersion(path), historyModule.SCHEMA_VERSION)
        self.assertEqual(history.topics(), [])
        hub, alice = self.hub(history)
        lobby = hub.join(alice, "lobby")
        self.assertEqual(hub.say(alice, lobby, "after").id, 2)
        hub.setTopic(alice, lobby, "new")
        await history.stop()
        self.assertEqual([r[5] for r in rows(path)], ["before", "after"])
        self.assertEqual([r[2] for r in topicRows(path)], ["new"])

    def test_newerRefused(self) -> None:
        """
        A file written by a newer chatsvc (a higher schema version) is a
        one-line start-up error, not misread; the file is left alone.
        """
        path = self.path()
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        error = self.assertRaises(HistoryError, SQLiteHistory(path, reactor).open)
        self.assertIn("newer chatsvc", str(error))
        self.assertIn(path, str(error))
        self.assertEqual(len(str(error).splitlines()), 1)
        self.assertEqual(userVersion(path), 99)
        # The lock is released: a fixed file opens.
        os.remove(path)
        self.store(path)

    async def test_retriedAfterFailure(self) -> None:
        """
        A topic whose write fails is written once the store works again;
        one set while that write was failing wins over it.
        """
        path = self.path()
        history = self.store(path, flushDelay=0)
        hub, alice = self.hub(history)
        lobby = hub.join(alice, "lobby")
        dev = hub.join(alice, "dev")
        state = {"fail": True}

        def meanwhile() -> None:
            hub.setTopic(alice, dev, "new dev topic")
            state["meanwhile"] = True

        realConnect = historyModule._connect
        self.patch(
            historyModule,
            "_connect",
            lambda path, timeout: TopicFailing(realConnect(path, timeout), state, meanwhile),
        )
        hub.setTopic(alice, lobby, "lobby topic")
        hub.setTopic(alice, dev, "old dev topic")
        await waitFor(lambda: history._failing and state.get("meanwhile"), "a failed write")
        await history.stop()
        self.assertEqual(
            [(r[0], r[2]) for r in topicRows(path)],
            [("dev", "new dev topic"), ("lobby", "lobby topic")],
        )


class TopicFailing:
    """
    A writer connection whose first topic write fails, after asking the
    reactor thread to run C{meanwhile} (which then runs before the
    failure is seen there); everything else is the real connection.
    """

    def __init__(self, connection: sqlite3.Connection, state: dict, meanwhile) -> None:
        self._connection = connection
        self._state = state
        self._meanwhile = meanwhile

    def execute(self, sql, *args):
        if sql == historyModule._SET_TOPIC and self._state["fail"]:
            self._state["fail"] = False
            reactor.callFromThread(self._meanwhile)
            raise sqlite3.OperationalError("database or disk is full")
        return self._connection.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._connection, name)


class SQLiteLockTests(SQLiteTestCase):
    """
    One store on a history file at a time: the ids are given out by the
    server that owns the file, so two would store different messages
    under the same ids.
    """

    def assertInUse(self, path: str, shown: str | None = None) -> None:
        error = self.assertRaises(HistoryError, SQLiteHistory(path, reactor).open)
        message = str(error)
        self.assertIn(shown or path, message)
        self.assertIn("in use by another chatsvc server", message)
        self.assertIn(f"pid {os.getpid()}", message)
        self.assertEqual(len(message.splitlines()), 1)

    async def test_secondStoreRefused(self) -> None:
        """
        A second store on a file in use refuses to open, naming the file
        and the process that holds it; the first goes on working, and
        once it has stopped the file can be opened again.
        """
        path = self.path()
        first = self.store(path, flushDelay=0)
        self.assertInUse(path)
        first.append("lobby", events.Event(events.MESSAGE, "lobby", "a", "kept", id=1, ts=START))
        await first.stop()
        self.assertEqual([r[5] for r in rows(path)], ["kept"])
        again = self.store(path)
        self.assertEqual([lastId for _, lastId, _ in again.load(1)], [1])

    def test_sameFileOtherName(self) -> None:
        """
        The file is the same whatever it is called: relative or absolute,
        through a symbolic link to it or to its directory.
        """
        path = self.path()
        directory, name = os.path.split(path)
        self.store(path)
        linked = os.path.join(temporaryDirectory(self), "link.sqlite3")
        os.symlink(path, linked)
        linkedDirectory = os.path.join(temporaryDirectory(self), "dir")
        os.symlink(directory, linkedDirectory)
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        for alias in [name, os.path.join(".", name), linked, os.path.join(linkedDirectory, name)]:
            self.assertInUse(alias)

    def test_otherFileSameDirectory(self) -> None:
        """
        Two files in one directory are two stores.
        """
        directory = temporaryDirectory(self)
        self.store(os.path.join(directory, "one.sqlite3"))
        self.store(os.path.join(directory, "two.sqlite3"))

    def test_lockFileUnusable(self) -> None:
        """
        A lock file that cannot be opened (here a directory in its place)
        is a one-line start-up error naming it.
        """
        path = self.path()
        os.mkdir(path + ".lock")
        error = self.assertRaises(HistoryError, SQLiteHistory(path, reactor).open)
        self.assertIn(path + ".lock", str(error))
        self.assertEqual(len(str(error).splitlines()), 1)

    def test_unusableReleasesLock(self) -> None:
        """
        A store that fails to open (a corrupt file) holds no lock: once
        the file is fixed, the next one opens.
        """
        path = self.path()
        with open(path, "wb") as f:
            f.write(b"this is not a database, " * 100)
        broken = SQLiteHistory(path, reactor)
        self.assertRaises(HistoryError, broken.open)
        os.remove(path)
        self.store(path)


class SQLiteFaultTests(SQLiteTestCase):
    def test_parentIsAFile(self) -> None:
        directory = temporaryDirectory(self)
        blocker = os.path.join(directory, "file")
        with open(blocker, "w") as f:
            f.write("x")
        path = os.path.join(blocker, "history.sqlite3")
        error = self.assertRaises(HistoryError, SQLiteHistory(path, reactor).open)
        self.assertIn(path, str(error))
        self.assertEqual(len(str(error).splitlines()), 1)

    def test_directory(self) -> None:
        directory = temporaryDirectory(self)
        self.assertRaises(HistoryError, SQLiteHistory(directory, reactor).open)

    def test_readOnlyDirectory(self) -> None:
        if os.geteuid() == 0:
            raise unittest.SkipTest("root writes to read-only directories")
        directory = temporaryDirectory(self)
        os.chmod(directory, 0o500)
        self.addCleanup(os.chmod, directory, 0o700)
        path = os.path.join(directory, "history.sqlite3")
        self.assertRaises(HistoryError, SQLiteHistory(path, reactor).open)

    def test_corrupt(self) -> None:
        path = self.path()
        with open(path, "wb") as f:
            f.write(b"this is not a database, " * 100)
        error = self.assertRaises(HistoryError, SQLiteHistory(path, reactor).open)
        self.assertIn(path, str(error))
        self.assertIn("not a database", str(error))
        self.assertRaises(HistoryError, SQLiteHistory(path, reactor).load, 10)

    def test_lockedAtStart(self) -> None:
        """
        A database another process holds locked (before it is in WAL
        mode) is a start-up error after a short wait.
        """
        path = self.path()
        sqlite3.connect(path).close()
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        self.addCleanup(locker.close)
        self.addCleanup(locker.execute, "ROLLBACK")
        error = self.assertRaises(HistoryError, SQLiteHistory(path, reactor, timeout=0.1).open)
        self.assertIn("locked", str(error))

    async def test_lockedWhileRunning(self) -> None:
        """
        While another process holds the database, the writer waits on its
        own thread: the reactor goes on, appends return at once, and once
        the lock is gone everything is written.
        """
        path = self.path()
        history = self.store(path, flushDelay=0, timeout=60)
        hub, alice = self.hub(history)
        locker = Locker(path)
        self.addCleanup(locker.release)
        self.say(hub, alice, "lobby", "one")
        await waitFor(lambda: history._writing is not None, "the writer to start")
        for i in range(10):
            await deferLater(reactor, 0, lambda: None)
            self.say(hub, alice, "lobby", f"while locked {i}")
        self.assertFalse(history._writing.called)
        locker.release()
        await history.stop()
        self.assertEqual(len(rows(path)), 11)

    async def test_writeFailsThenRecovers(self) -> None:
        """
        A write that fails (locked past the timeout) is one log line and
        is retried; nothing is lost once the store works again.
        """
        path = self.path()
        logs = LogCatcher(self)
        history = self.store(path, flushDelay=0, timeout=0.05)
        hub, alice = self.hub(history)
        locker = Locker(path)
        self.addCleanup(locker.release)
        self.say(hub, alice, "lobby", "one", "two")
        await waitFor(lambda: logs.having("cannot write"), "the failure to be logged")
        self.say(hub, alice, "lobby", "three")
        locker.release()
        await waitFor(lambda: logs.having("works again"), "the store to recover")
        await history.stop()
        self.assertEqual([r[5] for r in rows(path)], ["one", "two", "three"])
        self.assertEqual(len(logs.having("cannot write")), 1)
        self.assertIn(path, logs.having("cannot write")[0])

    async def test_stopWhileLocked(self) -> None:
        """
        Stopping while the store is locked ends anyway, saying how many
        messages could not be written.
        """
        path = self.path()
        logs = LogCatcher(self)
        history = self.store(path, flushDelay=0, timeout=0.05)
        hub, alice = self.hub(history)
        locker = Locker(path)
        self.addCleanup(locker.release)
        self.say(hub, alice, "lobby", "one", "two")
        await history.stop()
        self.assertEqual(logs.having("could not be written")[0].split()[1], "2")
        self.assertIsNone(history._pool)

    async def test_corruptWhileRunning(self) -> None:
        """
        A file that became garbage under a running server: a log line,
        no exception, and the stop still ends.
        """
        path = self.path()
        logs = LogCatcher(self)
        history = self.store(path, flushDelay=0, timeout=0.05)
        hub, alice = self.hub(history)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        with open(path, "wb") as f:
            f.write(b"garbage " * 1000)
        self.say(hub, alice, "lobby", "one")
        await waitFor(lambda: logs.having("cannot write"), "the failure to be logged")
        self.assertIn("not a database", logs.having("cannot write")[0])
        await history.stop()
        self.assertTrue(logs.having("could not be written"))

    async def test_bounded(self) -> None:
        """
        What waits for a dead store is bounded: past C{maxPending} the
        oldest messages are dropped, with a log line.
        """
        path = self.path()
        logs = LogCatcher(self)
        history = self.store(path, flushDelay=0, timeout=0.05, maxPending=10)
        hub, alice = self.hub(history)
        locker = Locker(path)
        self.addCleanup(locker.release)
        self.say(hub, alice, "lobby", *[f"m{i}" for i in range(25)])
        self.assertLessEqual(len(history._pending), 10)
        self.assertTrue(logs.having("dropped"))
        locker.release()
        await history.stop()
        written = [r[5] for r in rows(path)]
        self.assertLessEqual(len(written), 20)
        self.assertEqual(written[-10:], [f"m{i}" for i in range(15, 25)])


class FullConnection:
    """
    A writer connection whose inserts fail as on a full disk while
    C{state["full"]} is true; everything else is the real connection.
    """

    def __init__(self, connection: sqlite3.Connection, state: dict) -> None:
        self._connection = connection
        self._state = state

    def executemany(self, *args):
        if self._state["full"]:
            self._state["failures"] += 1
            raise sqlite3.OperationalError("database or disk is full")
        return self._connection.executemany(*args)

    def __getattr__(self, name: str):
        return getattr(self._connection, name)


class WhileRunningFaultTests(SQLiteTestCase):
    def listeners(self, hub: Hub, member) -> FakeListener:
        """
        A second member of #lobby, to see fan-out go on.
        """
        bob = FakeListener()
        hub.join(hub.login("bob", bob), "lobby")
        hub.join(member, "lobby")
        bob.clear()
        return bob

    async def test_diskFull(self) -> None:
        """
        A disk that fills up while the server runs: one log line for the
        whole outage (not one a batch), messages still fan out and the
        reactor turns, the queue stays bounded, recovery is logged, what
        waited is written, and stop() ends.
        """
        path = self.path()
        logs = LogCatcher(self)
        history = self.store(path, flushDelay=0, maxPending=10)
        state = {"full": True, "failures": 0}
        realConnect = historyModule._connect
        self.patch(
            historyModule,
            "_connect",
            lambda path, timeout: FullConnection(realConnect(path, timeout), state),
        )
        hub, alice = self.hub(history)
        bob = self.listeners(hub, alice)
        self.say(hub, alice, "lobby", "first")
        # Several batches fail (one retry a second): still one line.
        await waitFor(lambda: state["failures"] >= 3, "three failed batches")
        for i in range(25):
            await deferLater(reactor, 0, lambda: None)
            self.say(hub, alice, "lobby", f"while full {i}")
        self.assertEqual(bob.texts("message"), ["first"] + [f"while full {i}" for i in range(25)])
        self.assertLessEqual(len(history._pending), 10)
        failed = logs.having("cannot write")
        self.assertEqual(len(failed), 1, logs.messages)
        self.assertIn("database or disk is full", failed[0])
        self.assertIn(path, failed[0])
        state["full"] = False
        await waitFor(lambda: logs.having("works again"), "the store to recover")
        await withDeadline(history.stop(), "stop()")
        self.assertIsNone(history._pool)
        self.assertEqual(len(logs.having("cannot write")), 1)
        written = [r[5] for r in rows(path)]
        self.assertEqual(written[-10:], [f"while full {i}" for i in range(15, 25)])

    async def test_readOnlyWhileRunning(self) -> None:
        """
        A database that is read-only for the writer (opened C{mode=ro},
        which holds for root too; the file is also made 0444): a clear
        log line, appends return at once, fan-out goes on, and stop()
        ends saying what could not be written.
        """
        path = self.path()
        logs = LogCatcher(self)
        history = self.store(path, flushDelay=0)
        os.chmod(path, 0o444)
        self.addCleanup(os.chmod, path, 0o644)

        def readOnly(path: str, timeout: float) -> sqlite3.Connection:
            return sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=timeout, isolation_level=None
            )

        self.patch(historyModule, "_connect", readOnly)
        hub, alice = self.hub(history)
        bob = self.listeners(hub, alice)
        self.say(hub, alice, "lobby", "one", "two")
        await waitFor(lambda: logs.having("cannot write"), "the failure to be logged")
        [failed] = logs.having("cannot write")
        self.assertIn(path, failed)
        self.assertIn("readonly", failed)
        for i in range(5):
            await deferLater(reactor, 0, lambda: None)
            self.say(hub, alice, "lobby", f"more {i}")
        self.assertEqual(len(bob.texts("message")), 7)
        await withDeadline(history.stop(), "stop()", 10)
        self.assertIsNone(history._pool)
        self.assertEqual(logs.having("could not be written")[0].split()[1], "7")
        self.assertEqual(rows(path), [])


class MemoryHistoryTests(unittest.SynchronousTestCase):
    def test_keepsPerRoom(self) -> None:
        history = MemoryHistory(perRoom=3)
        clock = Clock()
        hub = Hub(clock, history)
        alice = hub.login("alice", FakeListener())
        lobby = hub.join(alice, "Lobby")
        for i in range(5):
            hub.say(alice, lobby, str(i))
        self.assertEqual([e.text for e in history.messages("lobby")], ["2", "3", "4"])
        [(name, lastId, recent)] = list(history.load(2))
        self.assertEqual((name, lastId, [e.text for e in recent]), ("Lobby", 5, ["3", "4"]))
        [(_, _, nothing)] = list(history.load(0))
        self.assertEqual(nothing, [])
        self.successResultOf(history.stop())

    def test_topics(self) -> None:
        """
        The last topic of each room is kept; a cleared one is gone.
        """
        history = MemoryHistory()
        history.open()
        hub = Hub(Clock(), history)
        alice = hub.login("alice", FakeListener())
        lobby = hub.join(alice, "Lobby")
        dev = hub.join(alice, "dev")
        hub.setTopic(alice, lobby, "one")
        hub.setTopic(alice, lobby, "two")
        hub.setTopic(alice, dev, "dev")
        hub.setTopic(alice, dev, "")
        [topic] = history.topics()
        self.assertEqual(
            (topic.kind, topic.room, topic.name, topic.text),
            (events.TOPIC, "Lobby", "alice", "two"),
        )
