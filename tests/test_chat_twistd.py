"""
C{twistd -n chat} as a user runs it: real subprocesses on loopback ports.

A restart keeps the history (ids go on, /history shows the messages);
SIGTERM in the middle of traffic gives every client a last line, exits 0
without a traceback, and leaves every delivered message in the history;
a port in use, bad flags, an unusable history path and a history file
another server uses are one-line errors with the right exit status.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import sys
import tempfile

from twisted.internet import defer, error, protocol, reactor
from twisted.trial.unittest import TestCase

from tests.support import LineClient, TwistdProcess, connect, runProcess, waitFor, withDeadline

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
LOOPBACK = ["--port", "tcp:0:interface=127.0.0.1"]


class TwistdTestCase(TestCase):
    def setUp(self) -> None:
        # Not mktemp(): under pytest it creates directories in the working
        # directory named like test modules, which then confuse trial.
        self.cwd = tempfile.mkdtemp(prefix="chatsvc-twistd-")
        self.addCleanup(shutil.rmtree, self.cwd, True)
        self.clients: list[LineClient] = []

    async def start(self, *args: str) -> TwistdProcess:
        server = await TwistdProcess.start("chat", *LOOPBACK, *args, cwd=self.cwd)
        self.addCleanup(server.stop)
        return server

    async def client(self, server: TwistdProcess, name: str | None = None) -> LineClient:
        client = await connect(server.port())
        self.clients.append(client)
        self.addCleanup(client.close)
        if name is not None:
            client.sendLine(name)
            line = await client.readText()
            self.assertTrue(line.startswith(f"success: logged in as {name},"), line)
        return client

    async def jsonMembers(self, server: TwistdProcess, count: int) -> list:
        """
        Log in C{count} members u00, u01, ... in JSON mode, each a
        L{Collector} of the room's messages from then on.
        """
        clients = []
        for i in range(count):
            client = await connect(server.port(), factory=Collector)
            self.addCleanup(client.close)
            client.sendLine("/format json")
            client.name = f"u{i:02}"
            client.sendLine(client.name)
            await client.readLine()  # format is now json
            self.assertEqual(json.loads(await client.readLine())["type"], "success")
            client.collecting = True
            clients.append(client)
        return clients

    def assertHistoryHolds(self, clients: list, senders: list, path: str) -> None:
        """
        The shutdown came in the middle of the traffic (every sender still
        had messages in flight when its notice came), yet every message
        any client was delivered is in the history, whose ids have no
        holes: nothing said was lost.
        """
        for sender in senders:
            self.assertGreater(sender.inFlightAtNotice, 0, sender.name)
        received = set()
        for client in clients:
            received.update(client.messages)
        stored = set(messages(path))
        self.assertLessEqual(received, stored)
        ids = sorted(r[1] for r in stored)
        self.assertEqual(ids, list(range(1, len(ids) + 1)))

    def assertClean(self, server: TwistdProcess) -> None:
        self.assertNotIn(b"Traceback", bytes(server.output))
        self.assertNotIn(b"Unhandled", bytes(server.output))

    def assertOneErrorLine(self, out: bytes, err: bytes, *words: bytes) -> None:
        """
        Standard error holds exactly one line, with C{words}; no traceback
        anywhere (the log on standard output may repeat the line).
        """
        self.assertNotIn(b"Traceback", out + err)
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        for word in words:
            self.assertIn(word, lines[0])


class RestartTests(TwistdTestCase):
    async def test_restart(self) -> None:
        """
        Messages said before a stop are in /history after the restart, and
        message ids go on from where they were.
        """
        server = await self.start("--history", "history.sqlite3")
        alice = await self.client(server, "alice")
        bob = await self.client(server, "bob")
        await alice.readLine()  # bob joined
        for text in ("one", "two", "three"):
            alice.sendLine(text)
        said = [await bob.readText() for _ in range(3)]
        self.assertTrue(said[2].endswith("#lobby alice: three"), said)
        await alice.close()
        await bob.close()
        self.assertEqual(await server.stop(), 0)
        self.assertClean(server)

        server = await self.start("--history", "history.sqlite3", "--replay", "2")
        carol = await self.client(server, "carol")
        replay = [await carol.readText() for _ in range(2)]
        self.assertEqual(replay, said[1:])
        carol.sendLine("/history")
        history = [await carol.readText() for _ in range(4)]
        self.assertEqual(history, [*said, "info: end of history of #lobby (3 messages)"])
        carol.sendLine("/format json")
        await carol.readLine()
        carol.sendLine("four")
        ack = json.loads(await carol.readLine())
        self.assertEqual((ack["type"], ack["text"], ack["id"]), ("message", "four", 4))
        await carol.close()
        self.assertEqual(await server.stop(), 0)
        self.assertClean(server)

    async def test_defaultHistoryFile(self) -> None:
        """
        Without --history the history goes to chatsvc-history.sqlite3 in
        the working directory; with :memory: nothing is written.
        """
        server = await self.start()
        alice = await self.client(server, "alice")
        alice.sendLine("kept")
        alice.sendLine("/history 1")
        self.assertTrue((await alice.readText()).endswith("#lobby alice: kept"))
        await alice.close()
        self.assertEqual(await server.stop(), 0)
        path = os.path.join(self.cwd, "chatsvc-history.sqlite3")
        self.assertEqual(messages(path), [("lobby", 1, "alice", "kept")])
        os.remove(path)
        server = await self.start("--history", ":memory:")
        alice = await self.client(server, "alice")
        alice.sendLine("gone")
        alice.sendLine("/history 1")
        self.assertTrue((await alice.readText()).endswith("#lobby alice: gone"))
        await alice.close()
        self.assertEqual(await server.stop(), 0)
        self.assertFalse(os.path.exists(path))


def messages(path: str) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(
            "SELECT room, id, sender, text FROM messages ORDER BY room, id"
        ).fetchall()
    finally:
        connection.close()


class Collector(LineClient):
    """
    A JSON-mode client that records every message it is delivered and,
    once told to L{keepSending}, keeps sending: each of its own messages
    that comes back (the acknowledgement) sends the next one, so that the
    traffic goes on until the server shuts down, however fast it runs.

    @ivar inFlightAtNotice: messages it had sent and not yet seen come
        back when the shutdown notice came.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self.messages: list[tuple] = []
        self.notice = defer.Deferred()
        self._tail = b""
        self.collecting = False
        self.sending = False
        self.sent = 0
        self.inFlightAtNotice: int | None = None

    def keepSending(self, inFlight: int) -> None:
        """
        Send C{inFlight} messages, and one more each time one comes back,
        until the shutdown notice.
        """
        self.sending = True
        for _ in range(inFlight):
            self._sendNext()

    def _sendNext(self) -> None:
        self.sendLine(f"{self.name} says {self.sent}")
        self.sent += 1

    def dataReceived(self, data: bytes) -> None:
        if not self.collecting:
            return super().dataReceived(data)
        self.received += data
        *complete, self._tail = (self._tail + data).split(b"\n")
        for line in complete:
            obj = json.loads(line)
            if obj["type"] == "message":
                self._message(obj)
            elif "shutting down" in obj.get("text", "") and not self.notice.called:
                self.inFlightAtNotice = self.sent - self._acked()
                self.sending = False
                self.notice.callback(obj)

    def _message(self, obj: dict) -> None:
        self.messages.append((obj["room"], obj["id"], obj["from"], obj["text"]))
        if self.sending and obj["from"] == self.name:
            self._sendNext()

    def _acked(self) -> int:
        return sum(1 for m in self.messages if m[2] == self.name)


class ShutdownTests(TwistdTestCase):
    async def test_sigtermMidTraffic(self) -> None:
        """
        SIGTERM while ten members keep sending: every client gets a line
        saying the server is shutting down and is closed, the process
        exits 0 without a traceback, and every message any client received
        is in the history.
        """
        path = os.path.join(self.cwd, "history.sqlite3")
        server = await self.start("--history", path, "--flood-burst", "5", "--flood-rate", "20")
        clients = await self.jsonMembers(server, 20)
        senders = clients[:10]
        for client in senders:
            client.keepSending(5)
        await waitFor(lambda: len(clients[-1].messages) >= 100, "traffic to flow")
        server.signal("TERM")
        await withDeadline(defer.gatherResults([c.notice for c in clients]), "every notice")
        for client in clients:
            await client.waitClosed()
        self.assertEqual(await server.wait(), 0)
        self.assertClean(server)
        self.assertHistoryHolds(clients, senders, path)


class ShutdownLoadTests(TwistdTestCase):
    async def test_sigterm50ReadersAndNonReader(self) -> None:
        """
        SIGTERM with 50 reading members and one that never reads, while
        ten members keep sending: every reader gets the notice, a
        connection tried once shutdown began is refused or closed without
        a login, the process exits 0 without a traceback although one
        member never reads, and every message any client received is in
        the history.
        """
        path = os.path.join(self.cwd, "history.sqlite3")
        server = await self.start("--history", path, "--flood-burst", "5", "--flood-rate", "20")
        clients = await self.jsonMembers(server, 50)
        stuck = await self.client(server, "stuck")
        stuck.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.transport.pauseProducing()  # never reads again
        senders = clients[:10]
        for client in senders:
            client.keepSending(5)
        await waitFor(lambda: len(clients[-1].messages) >= 100, "traffic to flow")
        server.signal("TERM")
        # The notice goes out after the listener stopped: from then on a
        # newcomer is refused (or at worst closed without logging in).
        await withDeadline(
            defer.DeferredList([c.notice for c in clients], fireOnOneCallback=True), "a notice"
        )
        late = None
        try:
            late = await connect(server.port())
        except error.ConnectionRefusedError:
            pass
        if late is not None:
            self.clients.append(late)
            late.sendLine("latecomer")
            await late.waitClosed()
            self.assertNotIn(b"success", bytes(late.received))
        await withDeadline(defer.gatherResults([c.notice for c in clients]), "every notice")
        for client in clients:
            await client.waitClosed()
        self.assertEqual(await server.wait(), 0)
        self.assertClean(server)
        await stuck.close()
        self.assertHistoryHolds(clients, senders, path)


class StartErrorTests(TwistdTestCase):
    async def twistd(self, *args: str) -> tuple[int, bytes, bytes]:
        return await runProcess([*TWISTD, "chat", *args], cwd=self.cwd)

    async def test_portInUse(self) -> None:
        """
        A port in use: one line, non-zero exit, no traceback, and no hang
        (the default SQLite history is opened before the port).
        """
        taken = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        code, out, err = await self.twistd("--port", f"tcp:{port}:interface=127.0.0.1")
        self.assertNotEqual(code, 0)
        self.assertOneErrorLine(out, err, b"cannot listen", b"Address already in use")

    async def test_badFlags(self) -> None:
        """
        A bad flag or value: the first line of standard error names it,
        exit status 2, no traceback, nothing started.
        """
        for args, flag in [
            (["--bogus"], "--bogus"),
            (["--max-clients", "many"], "--max-clients"),
            (["--port", "99999"], "--port"),
            (["--flood-rate", "-1"], "--flood-rate"),
            (["--flood-burst", "0"], "--flood-burst"),
            (["--recv-queue", "x"], "--recv-queue"),
            (["--login-timeout", "nan"], "--login-timeout"),
            (["--replay", "100000"], "--replay"),
            (["--history", " "], "--history"),
            (["--send-queue", "1"], "--send-queue"),
        ]:
            code, out, err = await self.twistd(*LOOPBACK, *args)
            self.assertEqual(code, 2, (args, out, err))
            self.assertNotIn(b"Traceback", out + err)
            first = err.decode().splitlines()[0]
            self.assertTrue(first.startswith("twistd chat: error: "), first)
            self.assertIn(flag, first)
            self.assertEqual(out, b"")
        self.assertEqual(os.listdir(self.cwd), [])

    async def test_unusableHistory(self) -> None:
        """
        A history path that cannot be used: one line naming it, exit 1.
        """
        blocker = os.path.join(self.cwd, "file")
        with open(blocker, "w") as f:
            f.write("not a directory")
        corrupt = os.path.join(self.cwd, "corrupt.sqlite3")
        with open(corrupt, "wb") as f:
            f.write(b"garbage " * 1000)
        for path in [os.path.join(blocker, "history.sqlite3"), corrupt, self.cwd]:
            code, out, err = await self.twistd(*LOOPBACK, "--history", path)
            self.assertEqual(code, 1, (path, out, err))
            self.assertOneErrorLine(out, err, b"cannot use history file", path.encode())

    async def test_help(self) -> None:
        code, out, err = await self.twistd("--help")
        self.assertEqual(code, 0, err)
        for flag in [
            b"--port",
            b"--history",
            b"--replay",
            b"--max-clients",
            b"--max-per-address",
            b"--limit-loopback",
            b"--flood-burst",
            b"--flood-rate",
            b"--recv-queue",
            b"--send-queue",
            b"--login-timeout",
            b"--idle-timeout",
        ]:
            self.assertIn(flag, out)


class SharedHistoryTests(TwistdTestCase):
    """
    One history file, one server: ids are given out by the server that
    owns the file, so a second one on the same file would store other
    messages under the same ids.
    """

    async def assertInUse(self, *args: str, path: str) -> None:
        """
        A server started with C{args} refuses: one line naming the history
        file, exit status 1, no traceback, never listening.
        """
        second = await TwistdProcess.startOrEnd("chat", *LOOPBACK, *args, cwd=self.cwd)
        if second.exitCode is None:
            await second.stop()
            self.fail(f"a second server started on {path}")
        out = bytes(second.output)
        self.assertEqual(second.exitCode, 1, out)
        self.assertOneErrorLine(
            out, bytes(second.stderr), b"history file", path.encode(), b"in use"
        )
        self.assertNotIn(b"listening on", out)

    async def test_secondServerRefused(self) -> None:
        """
        A second server on a history file in use refuses to start in one
        line; the first goes on serving, and the file holds exactly what
        was said to it.
        """
        path = os.path.join(self.cwd, "history.sqlite3")
        server = await self.start("--history", path)
        alice = await self.client(server, "alice")
        alice.sendLine("before")
        alice.sendLine("/history 1")
        self.assertTrue((await alice.readText()).endswith("#lobby alice: before"))
        await alice.readLine()  # end of history
        await self.assertInUse("--history", path, path=path)
        await self.assertInUse("--history", "history.sqlite3", path="history.sqlite3")
        bob = await self.client(server, "bob")
        self.assertTrue((await alice.readText()).endswith("#lobby bob joined"))
        bob.sendLine("after")
        self.assertTrue((await alice.readText()).endswith("#lobby bob: after"))
        await alice.close()
        await bob.close()
        self.assertEqual(await server.stop(), 0)
        self.assertClean(server)
        self.assertEqual(
            messages(path), [("lobby", 1, "alice", "before"), ("lobby", 2, "bob", "after")]
        )

    async def test_killedServerReleases(self) -> None:
        """
        The lock ends with the process, however it ends: after a server
        killed with SIGKILL (no stop; its lock file is left behind) the
        next one starts on the same file, with what was written before.
        """
        path = os.path.join(self.cwd, "history.sqlite3")
        server = await self.start("--history", path)
        alice = await self.client(server, "alice")
        alice.sendLine("kept")
        await waitFor(lambda: messages(path), "the message to be written")
        server.kill()
        await server.wait()
        self.assertTrue(os.path.exists(path + ".lock"))
        server = await self.start("--history", path)
        alice = await self.client(server, "alice")
        alice.sendLine("/history 1")
        self.assertTrue((await alice.readText()).endswith("#lobby alice: kept"))

    async def test_sameDirectoryTwice(self) -> None:
        """
        Two chat servers started in one directory need two history files:
        the second with the default file refuses; with its own
        C{--history} file, or C{:memory:}, it runs beside the first.
        """
        first = await self.start()
        await self.assertInUse(path="chatsvc-history.sqlite3")
        second = await self.start("--history", "other.sqlite3")
        third = await self.start("--history", ":memory:")
        fourth = await self.start("--history", ":memory:")
        for server in (first, second, third, fourth):
            await self.client(server, "alice")
        for server in (first, second, third, fourth):
            self.assertEqual(await server.stop(), 0)
            self.assertClean(server)


class LimitTests(TwistdTestCase):
    async def test_full(self) -> None:
        """
        With --max-clients reached a newcomer gets C{full:} and is closed;
        the members are not disturbed.
        """
        server = await self.start("--history", ":memory:", "--max-clients", "2")
        alice = await self.client(server, "alice")
        await self.client(server, "bob")
        await alice.readLine()
        third = await self.client(server)
        self.assertEqual(await third.readText(), "full: the server is full (2 connections)")
        await third.waitClosed()
        alice.sendLine("/who")
        self.assertEqual(await alice.readText(), "info: #lobby: alice, bob")
