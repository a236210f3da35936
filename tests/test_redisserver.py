"""
Tests for the test helper L{tests.redisserver}: a real C{redis-server}
started, asked, frozen, killed, restarted and stopped, and the RESP
client that asks it.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import redisserver
from tests.redisserver import (
    RedisConnection,
    RedisError,
    RedisServer,
    encodeCommand,
    redisCommand,
    skipUnlessRedis,
    startRedis,
)


def gone(pid: int) -> bool:
    """
    Whether no process has id C{pid} (not even one not yet reaped).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class EncodeTests(SynchronousTestCase):
    """
    L{encodeCommand}: what is sent, without a server.
    """

    def test_arrayOfBulkStrings(self) -> None:
        self.assertEqual(
            encodeCommand("SET", b"k\r\n", 12, "\u00e9"),
            b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n",
        )


class RedisServerTests(TestCase):
    """
    L{RedisServer} and L{redisCommand} against a real C{redis-server}.
    """

    skip = skipUnlessRedis

    async def test_startAndPing(self) -> None:
        """
        Once started it answers at once on loopback; its URL names that port.
        """
        server = await startRedis(self)
        self.assertTrue(server.running)
        self.assertIsInstance(server.pid, int)
        self.assertEqual(server.url, f"redis://127.0.0.1:{server.port}/0")
        self.assertEqual(redisCommand(server.port, "PING"), "PONG")
        self.assertEqual(redisCommand(server.port, "CONFIG", "GET", "save"), [b"save", b""])
        self.assertEqual(
            redisCommand(server.port, "CONFIG", "GET", "appendonly"), [b"appendonly", b"no"]
        )
        self.assertEqual(
            redisCommand(server.port, "CONFIG", "GET", "dir")[1],
            os.path.realpath(server.directory).encode(),
        )

    async def test_replies(self) -> None:
        """
        Every RESP2 reply type: simple strings, bulk strings (binary
        included), integers, nil, arrays with nil in them, a nil array,
        errors (raised at the top, returned inside C{EXEC}'s array).
        """
        server = await startRedis(self)
        port = server.port
        self.assertEqual(redisCommand(port, "SET", "k", b"a\r\nb\x00"), "OK")
        self.assertEqual(redisCommand(port, "GET", "k"), b"a\r\nb\x00")
        self.assertIsNone(redisCommand(port, "GET", "missing"))
        self.assertEqual(redisCommand(port, "MGET", "k", "missing"), [b"a\r\nb\x00", None])
        self.assertEqual(redisCommand(port, "INCR", "n"), 1)
        self.assertEqual(redisCommand(port, "RPUSH", "l", "x", "", "z"), 3)
        self.assertEqual(redisCommand(port, "LRANGE", "l", 0, -1), [b"x", b"", b"z"])
        self.assertEqual(redisCommand(port, "LRANGE", "missing", 0, -1), [])
        self.assertIsNone(redisCommand(port, "BLPOP", "missing", "0.01"))
        e = self.assertRaises(RedisError, redisCommand, port, "INCR", "k")
        self.assertTrue(str(e).startswith("ERR value is not an integer"), str(e))
        with RedisConnection(port) as connection:
            self.assertEqual(connection.command("MULTI"), "OK")
            self.assertEqual(connection.command("SET", "s", "v"), "QUEUED")
            self.assertEqual(connection.command("INCR", "s"), "QUEUED")
            ok, error = connection.command("EXEC")
            self.assertEqual(ok, "OK")
            self.assertIsInstance(error, RedisError)
            # the connection is still in step after the error
            self.assertEqual(connection.command("GET", "s"), b"v")
        big = b"x" * 300_000
        self.assertEqual(redisCommand(port, "SET", "big", big), "OK")
        self.assertEqual(redisCommand(port, "GET", "big"), big)

    async def test_pauseResume(self) -> None:
        """
        A paused server answers nothing (the read times out); once
        resumed, it answers the command it was sent while paused.
        """
        server = await startRedis(self)
        with RedisConnection(server.port) as connection:
            self.assertEqual(connection.command("PING"), "PONG")
            server.pause()
            self.assertTrue(server.paused)
            connection.send("ECHO", "while paused")
            self.assertRaises(TimeoutError, connection.read, 0.3)
            server.resume()
            self.assertFalse(server.paused)
            self.assertEqual(connection.read(), b"while paused")

    async def test_killRestart(self) -> None:
        """
        Killed, it is gone (connections refused); restarted, it answers on
        the same port again, empty since nothing is persisted.
        """
        server = await startRedis(self)
        port, pid = server.port, server.pid
        self.assertEqual(redisCommand(port, "SET", "k", "v"), "OK")
        await server.kill()
        self.assertFalse(server.running)
        self.assertIsNone(server.exitCode)
        self.assertTrue(gone(pid))
        self.assertRaises(ConnectionRefusedError, redisCommand, port, "PING")
        await server.restart()
        self.assertEqual(server.port, port)
        self.assertNotEqual(server.pid, pid)
        self.assertEqual(redisCommand(port, "PING"), "PONG")
        self.assertIsNone(redisCommand(port, "GET", "k"))

    async def test_restartRunning(self) -> None:
        """
        L{RedisServer.restart} of a running server stops it first.
        """
        server = await startRedis(self)
        port, pid = server.port, server.pid
        await server.restart()
        self.assertTrue(gone(pid))
        self.assertEqual(server.port, port)
        self.assertEqual(redisCommand(port, "PING"), "PONG")

    async def test_stopLeavesNoProcess(self) -> None:
        """
        Stopped (SIGTERM), it exits cleanly and its PID is gone: nothing
        is left running.
        """
        server = await startRedis(self)
        pid = server.pid
        await server.stop()
        self.assertFalse(server.running)
        self.assertEqual(server.exitCode, 0)
        self.assertTrue(gone(pid))
        self.assertRaises(ConnectionRefusedError, redisCommand, server.port, "PING")

    async def test_stopPaused(self) -> None:
        """
        A paused server stops as promptly and as cleanly: it is resumed
        to receive the SIGTERM.
        """
        server = await startRedis(self)
        pid = server.pid
        server.pause()
        await server.stop()
        self.assertEqual(server.exitCode, 0)
        self.assertTrue(gone(pid))

    async def test_cleanup(self) -> None:
        """
        L{RedisServer.cleanup} stops it and removes the directory it made.
        """
        server = RedisServer()
        self.addCleanup(server.cleanup)
        await server.start()
        pid, directory = server.pid, server.directory
        self.assertTrue(os.path.isdir(directory))
        await server.cleanup()
        self.assertTrue(gone(pid))
        self.assertFalse(os.path.exists(directory))

    async def test_portTakenTriesAnother(self) -> None:
        """
        When the port chosen is taken before C{redis-server} binds it, the
        start tries another one.
        """
        import socket

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        ports = [taken.getsockname()[1]]
        choose = redisserver.freePort
        self.patch(redisserver, "freePort", lambda: ports.pop() if ports else choose())
        server = await startRedis(self)
        self.assertNotEqual(server.port, taken.getsockname()[1])
        self.assertEqual(redisCommand(server.port, "PING"), "PONG")

    async def test_restartOnTakenPort(self) -> None:
        """
        A restart keeps its port: when something else took it meanwhile,
        it fails saying why instead of moving.
        """
        import socket

        server = await startRedis(self)
        await server.stop()
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", server.port))
        taken.listen(1)
        e = await self.assertFailure(server.restart(), RuntimeError)
        self.assertIn(b"Address already in use", server.output)
        self.assertIn("exited before accepting connections", str(e))
