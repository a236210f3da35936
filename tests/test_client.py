"""
Tests for L{chatsvc.client}: the command line and the session logic.

The session is driven here without sockets or processes: a fake console
records what the user would see, a C{StringTransport} stands for the
server connection.  The real thing, in subprocesses against real servers,
is in C{test_client_process} and C{test_client_e2e}.
"""

from __future__ import annotations

import io
import sys

from twisted.internet import defer, error, interfaces
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import classImplements

from chatsvc import client
from chatsvc.client import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    Options,
    Session,
    Target,
)


class OptionsTests(SynchronousTestCase):
    """
    The command line: defaults, ports and endpoint descriptions, and
    one-line errors with exit status 2.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """
        With no flags: plain mode to localhost port 21567, colour on auto.
        """
        options = self.parse()
        self.assertEqual(options["target"], Target("localhost", 21567))
        self.assertIsNone(options["username"])
        self.assertIsNone(options["room"])
        self.assertEqual(options["color"], "auto")

    def test_hostPortUserRoom(self) -> None:
        options = self.parse("--host", "example.test", "-p", "4000", "-u", "alice", "-r", "#games")
        self.assertEqual(options["target"], Target("example.test", 4000))
        self.assertEqual(options["username"], "alice")
        self.assertEqual(options["room"], "#games")
        self.assertEqual(str(options["target"]), "example.test port 4000")

    def test_endpointDescription(self) -> None:
        """
        C{--port} also takes a client endpoint description.
        """
        options = self.parse("--port", "tcp:127.0.0.1:4000")
        self.assertEqual(options["target"].description, "tcp:127.0.0.1:4000")
        self.assertEqual(str(options["target"]), "tcp:127.0.0.1:4000")

    def test_errors(self) -> None:
        """
        Each mistake is a L{usage.UsageError} naming the flag.
        """
        cases = [
            (["--port", "0"], "--port"),
            (["--port", "70000"], "--port"),
            (["--port", "nonsense:1"], "--port"),
            (["--host", "h", "--port", "tcp:h:1"], "--host"),
            (["--room", "lobby"], "--room"),
            (["-u", "two words"], "--username"),
            (["-u", ""], "--username"),
            (["--color", "sometimes"], "--color"),
            (["extra"], "unexpected argument"),
        ]
        for argv, expected in cases:
            with self.subTest(argv=argv):
                e = self.assertRaises(usage.UsageError, self.parse, *argv)
                self.assertIn(expected, str(e))

    def test_parseOptionsOneLine(self) -> None:
        """
        L{client.parseOptions} turns an error into one line on standard
        error and exit status 2.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, client.parseOptions, ["--bogus"])
        self.assertEqual(e.code, 2)
        self.assertEqual(stderr.getvalue().count("\n"), 1)
        self.assertIn("chatsvc-client: error:", stderr.getvalue())
        self.assertIn("--bogus", stderr.getvalue())

    def test_helpNamesEveryOption(self) -> None:
        text = str(Options())
        for flag in ("--host", "--port", "--username", "--room", "--color", "-u", "-r", "-p"):
            self.assertIn(flag, text)
        self.assertIn("NO_COLOR", text)


class DescribeFailureTests(SynchronousTestCase):
    """
    Connection failures are said in a few words.
    """

    def test_kinds(self) -> None:
        cases = [
            (error.ConnectionRefusedError(), "connection refused"),
            (error.DNSLookupError("nosuch.invalid"), "host not found"),
            (error.TimeoutError(), "timed out"),
            (OSError("odd\nsecond line"), "odd"),
        ]
        for value, expected in cases:
            with self.subTest(value=value):
                self.assertEqual(client.describeFailure(Failure(value)), expected)

    def test_isQuit(self) -> None:
        self.assertTrue(client.isQuit(b"/quit"))
        self.assertTrue(client.isQuit(b"  /QUIT gone fishing"))
        self.assertFalse(client.isQuit(b"/quitter"))
        self.assertFalse(client.isQuit(b"//quit"))
        self.assertFalse(client.isQuit(b""))


class FakeConsole:
    """
    Records what a console would show; input pauses are a set of reasons.
    """

    def __init__(self, interactive: bool = False) -> None:
        self.interactive = interactive
        self.lines: list[str] = []
        self.statuses: list[tuple[str, str]] = []
        self.prompt = ""
        self.pauses = {"start"}
        self.attached = None
        self.closed = False

    def showLine(self, text: str) -> None:
        self.lines.append(text)

    def showStatus(self, text: str, level: str = "info") -> None:
        self.statuses.append((level, text))

    def setPrompt(self, text: str) -> None:
        self.prompt = text

    def pauseInput(self, reason: str) -> None:
        self.pauses.add(reason)

    def resumeInput(self, reason: str) -> None:
        self.pauses.discard(reason)

    def attach(self, transport) -> None:
        self.attached = transport

    def detach(self) -> None:
        self.attached = None

    def close(self):
        self.closed = True
        return defer.succeed(None)

    def statusText(self) -> str:
        return "\n".join(text for level, text in self.statuses)


class FakeEndpoint:
    """
    An endpoint whose connection the test makes by hand.
    """

    def __init__(self, failure=None) -> None:
        self.failure = failure
        self.protocol = None

    def connect(self, factory):
        if self.failure is not None:
            return defer.fail(self.failure)
        self.protocol = factory.buildProtocol(None)
        self.deferred = defer.Deferred()
        return self.deferred


class HalfCloseableTransport(StringTransportWithDisconnection):
    """
    A string transport that can shut down its sending side, like TCP.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


classImplements(HalfCloseableTransport, interfaces.IHalfCloseableDescriptor)


class SessionTests(SynchronousTestCase):
    """
    L{Session}: logging in, sending, leaving, and the exit status.
    """

    def makeSession(
        self, username=None, room=None, interactive=False, transportClass=HalfCloseableTransport
    ):
        self.clock = Clock()
        self.console = FakeConsole(interactive)
        self.session = Session(Target(), self.clock, username, room)
        self.endpoint = FakeEndpoint()
        self.session.start(self.console, self.endpoint)
        self.transport = transportClass()
        self.codes: list[int] = []
        self.session.finished.addCallback(self.codes.append)
        return self.session

    def connect(self) -> None:
        proto = self.endpoint.protocol
        self.transport.protocol = proto
        proto.makeConnection(self.transport)

    def serverSends(self, data: bytes) -> None:
        self.endpoint.protocol.dataReceived(data)

    def serverCloses(self, reason=None) -> None:
        self.endpoint.protocol.connectionLost(Failure(reason or error.ConnectionDone()))

    def sent(self) -> bytes:
        return self.transport.value()

    # Plain mode

    def test_plainQueuesUntilConnected(self) -> None:
        """
        Lines typed while connecting go out, in order, once connected;
        then input flows.
        """
        session = self.makeSession()
        session.lineTyped(b"date")
        session.lineTyped(b"os")
        self.assertEqual(self.console.pauses, {"start"})
        self.connect()
        self.assertEqual(self.sent(), b"date\nos\n")
        self.assertEqual(self.console.pauses, set())
        self.assertIs(self.console.attached, self.transport)
        self.assertEqual(self.console.prompt, "> ")

    def test_plainRepliesShownNeutralised(self) -> None:
        """
        Server lines are decoded with replacement, CRs before the LF
        dropped, and control characters made visible.
        """
        self.makeSession()
        self.connect()
        self.serverSends(b"one\r\n\x1b[31mred\xff\ntwo")
        self.assertEqual(self.console.lines, ["one", "\u238b[31mred\ufffd"])

    def test_plainEndOfInputHalfCloses(self) -> None:
        """
        End of input half-closes; the server's answer and close then end
        the session cleanly.
        """
        session = self.makeSession()
        self.connect()
        session.lineTyped(b"date")
        session.inputEnded()
        self.assertTrue(self.transport.writeClosed)
        self.serverSends(b"Sat Nov 21 10:00:00 2026\n")
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_OK])
        self.assertEqual(self.console.lines, ["Sat Nov 21 10:00:00 2026"])
        self.assertEqual(self.console.statuses, [])
        self.assertTrue(self.console.closed)

    def test_plainEndOfInputBeforeConnect(self) -> None:
        """
        Input that ends before the connection is made is still sent, and
        then the connection half-closed.
        """
        session = self.makeSession()
        session.lineTyped(b"os")
        session.inputEnded()
        self.connect()
        self.assertEqual(self.sent(), b"os\n")
        self.assertTrue(self.transport.writeClosed)

    def test_plainWithoutHalfClose(self) -> None:
        """
        Where the transport cannot half-close (TLS), the client closes once
        every line sent has had its reply.
        """
        session = self.makeSession(transportClass=StringTransportWithDisconnection)
        self.connect()
        session.lineTyped(b"a")
        session.lineTyped(b"b")
        session.inputEnded()
        self.serverSends(b"A\n")
        self.assertEqual(self.codes, [])
        self.serverSends(b"B\n")
        self.assertEqual(self.codes, [EXIT_OK])
        self.assertEqual(self.console.lines, ["A", "B"])

    def test_overlongInputPassedOn(self) -> None:
        session = self.makeSession()
        session.dataTyped(b"x" * 10)
        self.connect()
        session.dataTyped(b"y")
        self.assertEqual(self.sent(), b"x" * 10 + b"y")

    def test_unexpectedClose(self) -> None:
        """
        The server closing on its own is a one-line message and status 1.
        """
        self.makeSession()
        self.connect()
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertEqual(self.console.statuses, [("error", "the server closed the connection")])

    def test_connectionLost(self) -> None:
        self.makeSession()
        self.connect()
        self.serverCloses(error.ConnectionLost("Connection reset by peer"))
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertIn("lost the connection to the server", self.console.statusText())

    def test_closedMidLine(self) -> None:
        """
        A connection that ends in the middle of a line: the partial line is
        shown, then the message.
        """
        self.makeSession()
        self.connect()
        self.serverSends(b"whole\npart")
        self.serverCloses()
        self.assertEqual(self.console.lines, ["whole", "part"])
        self.assertEqual(
            self.console.statuses,
            [("error", "the server closed the connection in the middle of a line")],
        )
        self.assertEqual(self.codes, [EXIT_FAILED])

    def test_connectFailed(self) -> None:
        self.clock = Clock()
        console = FakeConsole()
        session = Session(Target("localhost", 4000), self.clock)
        codes: list[int] = []
        session.finished.addCallback(codes.append)
        session.start(console, FakeEndpoint(error.ConnectionRefusedError()))
        self.assertEqual(
            console.statuses,
            [("error", "cannot connect to localhost port 4000: connection refused")],
        )
        self.assertEqual(codes, [EXIT_FAILED])
        self.assertTrue(console.closed)

    def test_interruptedWhileConnecting(self) -> None:
        """
        Ctrl-C before the connection is made cancels the attempt.
        """
        session = self.makeSession()
        session.interrupted()
        self.assertEqual(self.codes, [EXIT_INTERRUPTED])
        self.assertTrue(self.endpoint.deferred.called)
        self.assertEqual(self.console.statuses, [])

    def test_outputLost(self) -> None:
        session = self.makeSession()
        self.connect()
        session.outputLost()
        self.assertEqual(self.codes, [EXIT_OK])

    # Chat mode

    def login(self, username="alice", room=None, interactive=False):
        session = self.makeSession(username, room, interactive)
        self.connect()
        return session

    def test_loginLine(self) -> None:
        self.login("alice", "#games")
        self.assertEqual(self.sent(), b"alice #games\n")

    def test_loginSuccess(self) -> None:
        """
        C{success} is reported on the status channel; lines typed while
        waiting then go out, and input flows.
        """
        session = self.login()
        session.lineTyped(b"hello")
        self.assertEqual(self.sent(), b"alice\n")
        self.serverSends(b"success: logged in as alice, in #lobby\n")
        self.assertEqual(
            self.console.statuses, [("ok", "login success: logged in as alice, in #lobby")]
        )
        self.assertEqual(self.sent(), b"alice\nhello\n")
        self.assertEqual(self.console.pauses, set())
        self.assertEqual(self.console.lines, [])

    def test_reuseOnPipe(self) -> None:
        """
        A taken name on a pipe: said clearly, and status 3.
        """
        self.login()
        self.serverSends(b"reuse: the name alice is taken\n")
        self.assertEqual(
            self.console.statuses[0], ("error", "login reuse: the name alice is taken")
        )
        self.assertEqual(self.codes, [EXIT_REFUSED])
        self.assertTrue(self.transport.disconnecting or not self.transport.connected)

    def test_errorOnPipe(self) -> None:
        self.login()
        self.serverSends(b"error: a name holds only letters\n")
        self.assertEqual(
            self.console.statuses[0], ("error", "login error: a name holds only letters")
        )
        self.assertEqual(self.codes, [EXIT_REFUSED])

    def test_full(self) -> None:
        self.login(interactive=True)
        self.serverSends(b"full: the server holds 10 users\n")
        self.assertEqual(
            self.console.statuses, [("error", "login full: the server holds 10 users")]
        )
        self.assertEqual(self.codes, [EXIT_REFUSED])

    def test_reuseOnTerminalAsksAgain(self) -> None:
        """
        On a terminal a refused name is asked for again; the next line is
        the new name (the room kept), and lines typed before the refusal
        are dropped rather than taken for a name.
        """
        session = self.login("alice", "games", interactive=True)
        session.lineTyped(b"early")
        self.serverSends(b"reuse: the name alice is taken\n")
        self.assertEqual(self.console.prompt, "name: ")
        self.assertIn("type another name", self.console.statusText())
        session.lineTyped(b"   ")
        session.lineTyped(b"alice2")
        self.assertEqual(self.sent(), b"alice games\nalice2 games\n")
        self.serverSends(b"success: logged in as alice2\n")
        self.assertEqual(self.console.prompt, "> ")
        session.lineTyped(b"hi")
        self.assertEqual(self.sent(), b"alice games\nalice2 games\nhi\n")
        self.assertEqual(self.codes, [])

    def test_endOfInputWhileNaming(self) -> None:
        session = self.login(interactive=True)
        self.serverSends(b"reuse: taken\n")
        session.inputEnded()
        self.assertEqual(self.codes, [EXIT_REFUSED])

    def test_unexpectedLoginAnswer(self) -> None:
        """
        Something that is not a login answer (not the chat service): shown,
        with a warning, and the session goes on.
        """
        self.login()
        self.serverSends(b"[Sat Nov 21 10:00:00 2026] alice\n")
        self.assertEqual(self.console.lines, ["[Sat Nov 21 10:00:00 2026] alice"])
        self.assertEqual(self.console.statuses[0][0], "warn")
        self.assertEqual(self.codes, [])

    def test_chatEndOfInputSendsQuit(self) -> None:
        """
        End of input in chat mode sends C{/quit}; the server's close is
        then a clean end.
        """
        session = self.login()
        self.serverSends(b"success: hi\n")
        session.inputEnded()
        self.assertEqual(self.sent(), b"alice\n/quit\n")
        self.assertFalse(self.transport.writeClosed)
        self.assertIn("leaving", self.console.pauses)
        self.serverSends(b"info: bye\n")
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_OK])
        self.assertEqual(self.console.statuses[1:], [])

    def test_endOfInputDuringLogin(self) -> None:
        """
        Input that ends before the login is answered: its lines and the
        C{/quit} go out after C{success}.
        """
        session = self.login()
        session.lineTyped(b"hello")
        session.inputEnded()
        self.serverSends(b"success: hi\n")
        self.assertEqual(self.sent(), b"alice\nhello\n/quit\n")

    def test_typedQuit(self) -> None:
        """
        A typed C{/quit} is sent as typed; the client stops sending and
        waits for the server to close.
        """
        session = self.login()
        self.serverSends(b"success: hi\n")
        session.lineTyped(b"/quit gone fishing")
        session.lineTyped(b"after")
        self.assertEqual(self.sent(), b"alice\n/quit gone fishing\n")
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_OK])

    def test_quitNotAnswered(self) -> None:
        """
        A server that does not close after C{/quit} is cut off after a
        grace period.
        """
        session = self.login()
        self.serverSends(b"success: hi\n")
        session.inputEnded()
        aborted = []
        self.transport.abortConnection = lambda: aborted.append(True)
        self.clock.advance(client.CLOSE_GRACE)
        self.assertEqual(aborted, [True])

    def test_interruptedInChat(self) -> None:
        session = self.login()
        self.serverSends(b"success: hi\n")
        session.interrupted()
        self.assertEqual(self.sent(), b"alice\n/quit\n")
        self.assertEqual(self.codes, [EXIT_INTERRUPTED])

    def test_closedDuringLogin(self) -> None:
        self.login()
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertIn("before login", self.console.statusText())

    def test_chatUnexpectedClose(self) -> None:
        self.login()
        self.serverSends(b"success: hi\n[Sat Nov 21 10:00:00 2026] #lobby bob: hey\n")
        self.serverSends(b"info: the server is shutting down\n")
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertEqual(
            self.console.lines,
            ["[Sat Nov 21 10:00:00 2026] #lobby bob: hey", "info: the server is shutting down"],
        )
