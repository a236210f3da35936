"""
C{chatsvc-client} as a real program: subprocesses on pipes and on a
pseudo-terminal, against small servers that run inside the test process
and send exactly the bytes a test needs (crafted escapes, invalid UTF-8,
a line cut off, a refused login).

The end-to-end tests against the real services are in
C{test_client_e2e}.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tempfile
from collections import deque

from twisted.internet import defer, error, interfaces, protocol, reactor
from twisted.internet.threads import deferToThread
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.support import DEADLINE, runProcess, withDeadline
from tests.test_client import makeCertificate
from tests.test_client_console import Screen

#: The client, run as a module (C{python -m chatsvc.client}).
CLIENT = [sys.executable, "-m", "chatsvc.client"]

#: The installed console script.
SCRIPT = os.path.join(os.path.dirname(sys.executable), "chatsvc-client")

SGR = re.compile(rb"\x1b\[[0-9;]*m")


def temporaryDirectory(test: TestCase) -> str:
    """
    A fresh directory, removed after the test (C{TestCase.mktemp} would
    leave one in the working directory under pytest).
    """
    path = tempfile.mkdtemp(prefix="chatsvc-client-")
    test.addCleanup(shutil.rmtree, path, True)
    return path


def clientEnv(**extra: str) -> dict:
    """
    The environment for a client: no C{NO_COLOR} from the caller.
    """
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@implementer(interfaces.IHalfCloseableProtocol)
class ScriptedConnection(LineReceiver):
    """
    One connection of a L{ScriptedServer}: sends its greeting, records
    every line, answers with the factory's C{respond}; answers a
    half-close by closing, as the chatsvc services do.
    """

    delimiter = b"\n"

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        if self.factory.greeting:
            self.transport.write(self.factory.greeting)
        if self.factory.closeAfterGreeting:
            self.transport.loseConnection()

    def lineReceived(self, line: bytes) -> None:
        # Answer first: a test awaiting this line resumes at once.
        self.factory.respond(self, line)
        self.factory.received(line)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.factory.connections.remove(self)
        self.factory.closed += 1
        waiters, self.factory.closeWaiters = self.factory.closeWaiters, []
        for d in waiters:
            d.callback(None)


class ScriptedServer(protocol.ServerFactory):
    """
    A loopback line server whose behaviour each test writes.

    @ivar lines: lines received, not yet awaited with L{nextLine}.
    """

    protocol = ScriptedConnection

    def __init__(self, respond=None, greeting: bytes = b"", closeAfterGreeting=False) -> None:
        self.respond = respond or (lambda conn, line: conn.sendLine(b"echo " + line))
        self.greeting = greeting
        self.closeAfterGreeting = closeAfterGreeting
        self.connections: list[ScriptedConnection] = []
        self.closed = 0
        self.closeWaiters: list[defer.Deferred] = []
        self.lines: deque[bytes] = deque()
        self._lineWaiters: deque[defer.Deferred] = deque()

    async def listen(self, test: TestCase) -> int:
        self.port = reactor.listenTCP(0, self, interface="127.0.0.1")
        test.addCleanup(self.shutdown)
        return self.port.getHost().port

    async def shutdown(self) -> None:
        for conn in list(self.connections):
            conn.transport.abortConnection()
        while self.connections:
            d = defer.Deferred()
            self.closeWaiters.append(d)
            await withDeadline(d, "server connections to close")
        await self.port.stopListening()

    def received(self, line: bytes) -> None:
        if self._lineWaiters:
            self._lineWaiters.popleft().callback(line)
        else:
            self.lines.append(line)

    def nextLine(self) -> defer.Deferred:
        if self.lines:
            return defer.succeed(self.lines.popleft())
        d = defer.Deferred()
        self._lineWaiters.append(d)
        return withDeadline(d, "a line at the server")


def chatResponder(*loginReplies: bytes):
    """
    A chat service in miniature: the first line (or lines) of a
    connection get C{loginReplies} in turn; C{/quit} is answered and
    closed; anything else is only recorded.
    """
    replies = deque(loginReplies)

    def respond(conn, line):
        if replies:
            reply = replies.popleft()
            conn.sendLine(reply)
            if reply.startswith(b"full:"):
                conn.transport.loseConnection()
        elif line.startswith(b"/quit"):
            conn.sendLine(b"info: bye")
            conn.transport.loseConnection()

    return respond


class ClientProcess(protocol.ProcessProtocol):
    """
    A client on pipes whose standard input the test writes line by line.
    """

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: defer.Deferred = defer.Deferred()
        self.exitCode: int | None = None
        self._waiters: list[tuple[bytearray, bytes, defer.Deferred]] = []

    @classmethod
    def start(cls, test: TestCase, *args: str, env: dict | None = None) -> ClientProcess:
        self = cls()
        argv = [*CLIENT, *args]
        self.transport = reactor.spawnProcess(self, argv[0], argv, env=env or clientEnv())
        test.addCleanup(self.cleanup)
        return self

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err += data
        self._check()

    def _check(self) -> None:
        for item in list(self._waiters):
            stream, text, d = item
            if text in stream:
                self._waiters.remove(item)
                d.callback(bytes(stream))

    def processEnded(self, reason) -> None:
        self.exitCode = reason.value.exitCode
        waiters, self._waiters = self._waiters, []
        for _stream, text, d in waiters:
            d.errback(AssertionError(f"client exited without writing {text!r}: {self.report()}"))
        self.ended.callback(self.exitCode)

    def report(self) -> str:
        return f"exit {self.exitCode}, stdout {bytes(self.out)!r}, stderr {bytes(self.err)!r}"

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def closeStdin(self) -> None:
        self.transport.closeStdin()

    def waitOutput(self, text: bytes) -> defer.Deferred:
        """
        Fires once standard output holds C{text}.
        """
        return self._waitFor(self.out, text, "output")

    def waitError(self, text: bytes) -> defer.Deferred:
        """
        Fires once standard error holds C{text}.
        """
        return self._waitFor(self.err, text, "standard error")

    def _waitFor(self, stream: bytearray, text: bytes, name: str) -> defer.Deferred:
        if text in stream:
            return defer.succeed(bytes(stream))
        if self.exitCode is not None:
            return defer.fail(AssertionError(f"no {text!r}: {self.report()}"))
        d = defer.Deferred()
        self._waiters.append((stream, text, d))
        return withDeadline(d, f"{text!r} on the client's {name}")

    def wait(self) -> defer.Deferred:
        if self.ended.called:
            return defer.succeed(self.exitCode)
        d = defer.Deferred()
        self.ended.addBoth(lambda r: (d.callback(r), r)[1])
        return withDeadline(d, "the client to exit")

    async def cleanup(self) -> None:
        if self.exitCode is None:
            try:
                self.transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass
            await self.wait()


def assertOneLine(test: TestCase, stderr: bytes, *expected: str) -> None:
    """
    C{stderr} is exactly one line, with no traceback, containing each of
    C{expected}.
    """
    text = stderr.decode("utf-8", "replace")
    test.assertNotIn("Traceback", text)
    test.assertEqual(text.count("\n"), 1, text)
    test.assertTrue(text.startswith("chatsvc-client: "), text)
    for part in expected:
        test.assertIn(part, text)


def assertMessages(test: TestCase, stderr: bytes, *messages: str) -> None:
    """
    C{stderr} is exactly the client's C{messages}, one line each
    (C{chatsvc-client: MESSAGE}), and nothing else: no traceback.
    """
    text = stderr.decode("utf-8", "replace")
    test.assertNotIn("Traceback", text)
    test.assertEqual(text, "".join(f"chatsvc-client: {message}\n" for message in messages))


def connectedTo(port: int, tls: bool = False) -> str:
    """
    What plain mode says once connected to C{port} on 127.0.0.1 (the
    test servers listen there only, so C{localhost} resolves to it).
    """
    return f"connected to 127.0.0.1:{port}" + (" (TLS)" if tls else "")


class PipeTests(TestCase):
    """
    The client on pipes, as in scripts.
    """

    async def test_plainLinesThenExit(self) -> None:
        """
        C{printf 'date\\nos\\n' | chatsvc-client --port P}: both replies,
        then exit 0 once the server has answered the half-close.
        """
        server = ScriptedServer()
        port = await server.listen(self)
        code, out, err = await runProcess(
            [*CLIENT, "--port", str(port)], b"date\nos\n", env=clientEnv()
        )
        self.assertEqual((code, out), (0, b"echo date\necho os\n"))
        assertMessages(self, err, connectedTo(port))

    async def test_consoleScript(self) -> None:
        """
        The installed C{chatsvc-client} script is the same program, and a
        last line without a line ending is still sent.
        """
        server = ScriptedServer()
        port = await server.listen(self)
        code, out, err = await runProcess(
            [SCRIPT, "--host", "127.0.0.1", "--port", str(port)], b"one\r\ntwo", env=clientEnv()
        )
        self.assertEqual((code, out), (0, b"echo one\necho two\n"))
        assertMessages(self, err, connectedTo(port))

    async def test_endpointDescription(self) -> None:
        server = ScriptedServer()
        port = await server.listen(self)
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"tcp:127.0.0.1:{port}"], b"x\n", env=clientEnv()
        )
        self.assertEqual((code, out), (0, b"echo x\n"))
        assertMessages(self, err, connectedTo(port))

    async def test_help(self) -> None:
        """
        C{--help} names every option and lists the exit statuses; it and
        C{--version} exit 0.
        """
        code, out, err = await runProcess([SCRIPT, "--help"], env=clientEnv())
        self.assertEqual((code, err), (0, b""))
        for flag in (b"--host", b"--port", b"--username", b"--room", b"--color"):
            self.assertIn(flag, out)
        statuses = out.split(b"\nExit status:\n", 1)[1]
        for code in (b"0", b"1", b"2", b"3", b"130", b"143"):
            self.assertRegex(statuses, rb"(?m)^  " + code + rb" +\S")
        code, out, err = await runProcess([SCRIPT, "--version"], env=clientEnv())
        self.assertEqual((code, err), (0, b""))
        self.assertTrue(out.startswith(b"chatsvc-client "), out)

    async def test_badFlag(self) -> None:
        code, out, err = await runProcess([*CLIENT, "--bogus"], env=clientEnv())
        self.assertEqual((code, out), (2, b""))
        assertOneLine(self, err, "--bogus")

    async def test_refused(self) -> None:
        """
        Nothing listening: one line, status 1.
        """
        port = reactor.listenTCP(0, protocol.ServerFactory(), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        code, out, err = await runProcess(
            [*CLIENT, "--host", "127.0.0.1", "--port", str(number)], b"date\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(self, err, f"cannot connect to 127.0.0.1:{number}: connection refused")

    async def test_noSuchHost(self) -> None:
        """
        A host name that does not resolve (C{.invalid} never does, and
        fails without asking a DNS server): one line, status 1.
        """
        code, out, err = await runProcess(
            [*CLIENT, "--host", "nonexistent.invalid", "--port", "21567"], b"x\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(self, err, "cannot connect to nonexistent.invalid:21567: host not found")

    async def test_unixSocketMissing(self) -> None:
        """
        A C{unix:} socket that does not exist: one line in plain words,
        not Twisted's C{An error occurred while connecting: 2: ...}.
        """
        path = os.path.join(temporaryDirectory(self), "chat.sock")
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"unix:{path}"], b"x\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(
            self, err, f"cannot connect to unix socket {path}: no such file or directory"
        )

    async def test_terminated(self) -> None:
        """
        SIGTERM: exit status 143, nothing said beyond where it connected.
        """
        server = ScriptedServer()
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port))
        await client.waitError(b"connected to")
        client.transport.signalProcess("TERM")
        self.assertEqual(await client.wait(), 143)
        assertMessages(self, bytes(client.err), connectedTo(port))

    async def test_outputGone(self) -> None:
        """
        The reader of standard output goes away (C{chatsvc-client | head
        -1}): the client leaves quietly with status 0.
        """
        server = ScriptedServer()
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port))
        await client.waitError(b"connected to")
        client.transport.closeStdout()
        server.connections[0].sendLine(b"nobody reads this")
        self.assertEqual(await client.wait(), 0)
        assertMessages(self, bytes(client.err), connectedTo(port))

    async def test_escapesAndInvalidUTF8(self) -> None:
        """
        Escape sequences and other controls from the server are shown as
        visible symbols, never written raw; bytes that are not UTF-8
        become U+FFFD.
        """
        greeting = b"\x1b[31mred\x1b[0m \xff\xfe ok\x07\r\n\x1b]0;title\x07\x9b2J\n"
        server = ScriptedServer(greeting=greeting)
        port = await server.listen(self)
        code, out, err = await runProcess([*CLIENT, "--port", str(port)], env=clientEnv())
        self.assertEqual(code, 0, err)
        self.assertNotIn(b"\x1b", out)
        self.assertNotIn(b"\x07", out)
        self.assertEqual(
            out.decode("utf-8"),
            "\u238b[31mred\u238b[0m \ufffd\ufffd ok\u2407\n\u238b]0;title\u2407\ufffd2J\n",
        )

    async def test_closedMidLine(self) -> None:
        """
        The server going away in the middle of a line: the partial line is
        printed, then one line saying so, status 1.
        """
        server = ScriptedServer(greeting=b"whole\npart", closeAfterGreeting=True)
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port))
        code = await client.wait()
        self.assertEqual(code, 1)
        self.assertEqual(bytes(client.out), b"whole\npart\n")
        assertMessages(
            self,
            bytes(client.err),
            connectedTo(port),
            "the server closed the connection in the middle of a line",
        )

    async def test_serverClosesUnasked(self) -> None:
        server = ScriptedServer(greeting=b"bye\n", closeAfterGreeting=True)
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port))
        self.assertEqual(await client.wait(), 1)
        self.assertEqual(bytes(client.out), b"bye\n")
        assertMessages(
            self, bytes(client.err), connectedTo(port), "the server closed the connection"
        )

    async def test_connectionReset(self) -> None:
        """
        A connection reset mid-session is one line, status 1.
        """
        server = ScriptedServer()
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port))
        client.write(b"ping\n")
        await client.waitOutput(b"echo ping\n")
        server.connections[0].transport.abortConnection()
        self.assertEqual(await client.wait(), 1)
        assertMessages(
            self,
            bytes(client.err),
            connectedTo(port),
            "lost the connection to the server: connection reset",
        )

    async def test_fullDuplex(self) -> None:
        """
        Lines from the server are printed as they come, while standard
        input stays open.
        """
        server = ScriptedServer()
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port))
        client.write(b"one\n")
        await client.waitOutput(b"echo one\n")
        conn = server.connections[0]
        conn.sendLine(b"unprompted")
        await client.waitOutput(b"unprompted\n")
        client.write(b"two\n")
        client.closeStdin()
        self.assertEqual(await client.wait(), 0)
        self.assertEqual(bytes(client.out), b"echo one\nunprompted\necho two\n")

    async def test_colourOnlyWhenAsked(self) -> None:
        """
        A pipe gets no colour by default, and colour with C{--color always}.
        """
        server = ScriptedServer(greeting=b"error: boom\n")
        port = await server.listen(self)
        code, out, err = await runProcess([*CLIENT, "--port", str(port)], env=clientEnv())
        self.assertEqual(out, b"error: boom\n")
        code, out, err = await runProcess(
            [*CLIENT, "--port", str(port), "--color", "always"], env=clientEnv(NO_COLOR="1")
        )
        self.assertEqual(out, b"\x1b[31merror: boom\x1b[0m\n")


def serverCertificate(directory: str, *names: str, keyFile: str | None = None):
    """
    A self-signed certificate for C{names} (default C{localhost}), made
    on the fly: the certificate is written to C{directory}/server.pem
    (for the client's C{trustRoots}, which takes every file there for a
    certificate), its key to C{keyFile} if given (for a C{twistd}
    service); the server's TLS options are returned.
    """
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import ssl

    cert, key = makeCertificate(*(names or ("localhost",)))
    certPEM = cert.public_bytes(serialization.Encoding.PEM)
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    os.makedirs(directory)
    with open(os.path.join(directory, "server.pem"), "wb") as f:
        f.write(certPEM)
    if keyFile is not None:
        with open(keyFile, "wb") as f:
            f.write(keyPEM)
    return ssl.PrivateCertificate.loadPEM(certPEM + keyPEM).options()


class TLSTests(TestCase):
    """
    C{tls:} endpoint descriptions.  TLS cannot half-close, so on end of
    input the client closes once every line has had its reply.  A
    handshake that fails is one plain line and status 1.
    """

    async def tlsServer(self, *names: str, respond=None) -> tuple[ScriptedServer, int, str]:
        """
        A scripted server behind TLS with a fresh self-signed certificate;
        returns it, its port and the directory holding the certificate.
        """
        roots = os.path.join(temporaryDirectory(self), "roots")
        options = serverCertificate(roots, *names)
        server = ScriptedServer(respond)
        server.port = reactor.listenSSL(0, server, options, interface="127.0.0.1")
        self.addCleanup(server.shutdown)
        return server, server.port.getHost().port, roots

    async def test_plainOverTLS(self) -> None:
        server, port, roots = await self.tlsServer()
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"tls:localhost:{port}:trustRoots={roots}"],
            b"date\nos\n",
            env=clientEnv(),
        )
        self.assertEqual((code, out), (0, b"echo date\necho os\n"))
        assertMessages(self, err, connectedTo(port, tls=True))

    async def test_selfSignedCertificate(self) -> None:
        """
        A self-signed certificate the client was not told to trust: said
        so, nothing sent, status 1.
        """
        server, port, roots = await self.tlsServer("127.0.0.1")
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"tls:127.0.0.1:{port}"], b"date\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(
            self,
            err,
            "TLS: the server's certificate for 127.0.0.1 could not be verified "
            "(self-signed certificate)",
        )
        self.assertEqual(list(server.lines), [])

    async def test_selfSignedCertificateInChat(self) -> None:
        """
        In chat mode the refused certificate is said the same way, not as
        a server that closed the connection before the login.
        """
        server, port, roots = await self.tlsServer("localhost")
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"tls:localhost:{port}", "-u", "alice"], b"hi\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(
            self,
            err,
            "TLS: the server's certificate for localhost could not be verified "
            "(self-signed certificate)",
        )
        self.assertEqual(list(server.lines), [])

    async def test_certificateForAnotherHost(self) -> None:
        """
        A trusted certificate for another name says whom it is for.
        """
        server, port, roots = await self.tlsServer("localhost")
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"tls:127.0.0.1:{port}:trustRoots={roots}"],
            b"date\n",
            env=clientEnv(),
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(
            self,
            err,
            "TLS: the server's certificate for 127.0.0.1 could not be verified "
            "(it is for localhost)",
        )

    async def test_plainServer(self) -> None:
        """
        C{tls:} against a plain TCP server (which greets in plain text):
        one plain line, not OpenSSL's error list, status 1.
        """
        server = ScriptedServer(greeting=b"hello\n")
        port = await server.listen(self)
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"tls:127.0.0.1:{port}"], b"date\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(
            self, err, f"TLS handshake failed: the server at 127.0.0.1:{port} does not speak TLS"
        )


class ChatPipeTests(TestCase):
    """
    Chat mode on pipes, against a miniature chat service.
    """

    async def test_loginChatQuit(self) -> None:
        """
        The login line goes first; C{success} is reported on standard
        error; typed lines follow; end of input sends C{/quit}; the
        server's close is then a clean end.
        """
        server = ScriptedServer(chatResponder(b"success: logged in as alice, in #games"))
        port = await server.listen(self)
        code, out, err = await runProcess(
            [*CLIENT, "--port", str(port), "-u", "alice", "-r", "games"],
            b"hello\n",
            env=clientEnv(),
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(list(server.lines), [b"alice games", b"hello", b"/quit"])
        self.assertEqual(out, b"info: bye\n")
        self.assertEqual(err, b"chatsvc-client: login success: logged in as alice, in #games\n")

    async def test_typedQuit(self) -> None:
        server = ScriptedServer(chatResponder(b"success: hi"))
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port), "-u", "alice")
        client.write(b"/quit gone fishing\n")
        self.assertEqual(await client.wait(), 0)
        self.assertEqual(list(server.lines), [b"alice", b"/quit gone fishing"])

    async def test_reuseOnPipe(self) -> None:
        """
        A taken name on a pipe: said on standard error, status 3, nothing
        of the input sent.
        """
        server = ScriptedServer(chatResponder(b"reuse: the name alice is taken"))
        port = await server.listen(self)
        code, out, err = await runProcess(
            [*CLIENT, "--port", str(port), "-u", "alice"], b"hello\n", env=clientEnv()
        )
        self.assertEqual((code, out), (3, b""))
        self.assertIn(b"login reuse: the name alice is taken", err)
        self.assertNotIn(b"Traceback", err)
        self.assertEqual(list(server.lines), [b"alice"])

    async def test_full(self) -> None:
        server = ScriptedServer(chatResponder(b"full: the server holds 2 users"))
        port = await server.listen(self)
        code, out, err = await runProcess(
            [*CLIENT, "--port", str(port), "-u", "alice"], b"hello\n", env=clientEnv()
        )
        self.assertEqual(code, 3)
        assertOneLine(self, err, "login full: the server holds 2 users")

    async def test_interrupted(self) -> None:
        """
        SIGINT (Ctrl-C from the shell) leaves the chat with C{/quit} and
        status 130.
        """
        server = ScriptedServer(chatResponder(b"success: hi"))
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port), "-u", "alice")
        await client.waitError(b"login success")
        client.transport.signalProcess("INT")
        self.assertEqual(await server.nextLine(), b"alice")
        self.assertEqual(await server.nextLine(), b"/quit")
        self.assertEqual(await client.wait(), 130)
        self.assertNotIn(b"Traceback", bytes(client.err))

    async def test_terminated(self) -> None:
        """
        SIGTERM leaves the chat with C{/quit} too, and status 143.
        """
        server = ScriptedServer(chatResponder(b"success: hi"))
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port), "-u", "alice")
        await client.waitError(b"login success")
        client.transport.signalProcess("TERM")
        self.assertEqual(await server.nextLine(), b"alice")
        self.assertEqual(await server.nextLine(), b"/quit")
        self.assertEqual(await client.wait(), 143)
        assertMessages(self, bytes(client.err), "login success: hi")

    async def test_chatServerGoesAway(self) -> None:
        server = ScriptedServer(chatResponder(b"success: hi"))
        port = await server.listen(self)
        client = ClientProcess.start(self, "--port", str(port), "-u", "alice")
        await server.nextLine()
        conn = server.connections[0]
        conn.sendLine(b"info: the server is shutting down")
        conn.transport.loseConnection()
        self.assertEqual(await client.wait(), 1)
        self.assertEqual(bytes(client.out), b"info: the server is shutting down\n")
        self.assertIn(b"the server closed the connection\n", bytes(client.err))


class Terminal:
    """
    The client on a pseudo-terminal (pexpect), driven from a thread so
    that the servers in this process keep running; everything it writes
    is kept, to be replayed into a terminal emulator.
    """

    def __init__(self, argv: list[str], env: dict, width: int = 80, height: int = 24) -> None:
        self.argv = argv
        self.env = env
        self.width = width
        self.height = height
        self.log = io.BytesIO()
        self.child = None

    async def start(self, test: TestCase) -> None:
        import pexpect

        def spawn():
            child = pexpect.spawn(
                self.argv[0],
                self.argv[1:],
                env=self.env,
                dimensions=(self.height, self.width),
                timeout=DEADLINE,
            )
            child.logfile_read = self.log
            return child

        self.child = await deferToThread(spawn)
        test.addCleanup(self.cleanup)

    def expect(self, pattern: bytes) -> defer.Deferred:
        """
        Wait (in a thread) for C{pattern} (a regular expression).
        """
        return deferToThread(self.child.expect, pattern)

    def send(self, data: bytes) -> defer.Deferred:
        return deferToThread(self.child.send, data)

    async def exitStatus(self) -> int:
        import pexpect

        await deferToThread(self.child.expect, pexpect.EOF)
        await deferToThread(self.child.close)
        return self.child.exitstatus

    def output(self) -> bytes:
        return self.log.getvalue()

    def screen(self) -> Screen:
        screen = Screen(self.width, self.height)
        screen.feed(self.output())
        return screen

    async def cleanup(self) -> None:
        if self.child is not None and self.child.isalive():
            await deferToThread(self.child.close, True)


def terminalEnv(**extra: str) -> dict:
    return clientEnv(TERM="xterm", **extra)


class TerminalTests(TestCase):
    """
    The client on a terminal: the line being typed survives lines that
    arrive, colour follows C{NO_COLOR}.
    """

    async def test_typingWhileLinesArrive(self) -> None:
        """
        Half a line is typed; a message arrives; the message is on its own
        row and the half line is drawn again below it, so that finishing
        and sending it sends the whole line.  Ctrl-D then leaves with
        C{/quit} and status 0.
        """
        server = ScriptedServer(chatResponder(b"success: logged in as alice, in #lobby"))
        port = await server.listen(self)
        term = Terminal([*CLIENT, "--port", str(port), "-u", "alice"], terminalEnv())
        await term.start(self)
        self.assertEqual(await server.nextLine(), b"alice")
        await term.expect(rb"login success: logged in as alice")
        await term.expect(rb"> ")
        await term.send(b"hel")
        await term.expect(rb"hel")
        server.connections[0].sendLine(b"[Sat Nov 21 10:00:00 2026] #lobby bob: hi alice")
        await term.expect(rb"bob: hi alice")
        await term.expect(rb"> hel")
        rows = term.screen().rows()
        self.assertIn("[Sat Nov 21 10:00:00 2026] #lobby bob: hi alice", rows)
        self.assertEqual(
            rows[rows.index("[Sat Nov 21 10:00:00 2026] #lobby bob: hi alice") + 1], "> hel"
        )
        self.assertEqual([row for row in rows if "hel" in row], ["> hel"])
        await term.send(b"lo\r")
        self.assertEqual(await server.nextLine(), b"hello")
        await term.send(b"\x04")
        self.assertEqual(await server.nextLine(), b"/quit")
        self.assertEqual(await term.exitStatus(), 0)
        rows = term.screen().rows()
        self.assertIn("> hello", rows)
        self.assertIn("info: bye", rows)

    async def test_reuseAsksAgain(self) -> None:
        """
        On a terminal, a taken name is asked for again.
        """
        server = ScriptedServer(chatResponder(b"reuse: the name alice is taken", b"success: ok"))
        port = await server.listen(self)
        term = Terminal([*CLIENT, "--port", str(port), "-u", "alice", "-r", "games"], terminalEnv())
        await term.start(self)
        await term.expect(rb"login reuse: the name alice is taken")
        await term.expect(rb"name: ")
        await term.send(b"alice2\r")
        self.assertEqual(await server.nextLine(), b"alice games")
        self.assertEqual(await server.nextLine(), b"alice2 games")
        await term.expect(rb"login success: ok")
        await term.send(b"/quit\r")
        self.assertEqual(await server.nextLine(), b"/quit")
        self.assertEqual(await term.exitStatus(), 0)

    async def test_endOfInputAtNamePrompt(self) -> None:
        """
        Ctrl-D at the C{name:} prompt gives up the login: status 3.
        """
        server = ScriptedServer(chatResponder(b"reuse: the name alice is taken"))
        port = await server.listen(self)
        term = Terminal([*CLIENT, "--port", str(port), "-u", "alice"], terminalEnv())
        await term.start(self)
        await term.expect(rb"name: ")
        await term.send(b"\x04")
        self.assertEqual(await term.exitStatus(), 3)
        self.assertEqual(list(server.lines), [b"alice"])

    async def colouredOutput(self, **env: str) -> bytes:
        server = ScriptedServer(greeting=b"error: boom\n[Sat Nov 21 10:00:00 2026] hello\n")
        port = await server.listen(self)
        term = Terminal([*CLIENT, "--port", str(port)], terminalEnv(**env))
        await term.start(self)
        await term.expect(rb"hello")
        await term.send(b"\x04")
        self.assertEqual(await term.exitStatus(), 0)
        rows = term.screen().rows()
        self.assertEqual(
            rows[:3],
            [
                f"chatsvc-client: {connectedTo(port)}",
                "error: boom",
                "[Sat Nov 21 10:00:00 2026] hello",
            ],
        )
        return term.output()

    async def test_colourOnTerminal(self) -> None:
        output = await self.colouredOutput()
        self.assertIn(b"\x1b[31merror: boom\x1b[0m", output)

    async def test_noColor(self) -> None:
        """
        With C{NO_COLOR} set, no SGR sequence is written at all.
        """
        output = await self.colouredOutput(NO_COLOR="1")
        self.assertIsNone(SGR.search(output), output)
