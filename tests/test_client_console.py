"""
Tests for L{chatsvc.console}: colours, the pipe console and the terminal
console.

The terminal console is driven through C{insults.ServerProtocol} as in
real use, and what it writes is played into conch's own terminal
emulator (C{insults.ClientProtocol} over C{helper.TerminalBuffer}), so
the tests look at the screen a user would see, not at escape sequences.
"""

from __future__ import annotations

import os

from twisted.conch.insults import helper, insults
from twisted.internet import defer, reactor
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc.console import (
    Colours,
    ErrorStream,
    PipeConsole,
    TerminalConsole,
    cellWidth,
    statusText,
    styleServerLine,
)
from tests.support import withDeadline

LEFT = b"\x1b[D"
RIGHT = b"\x1b[C"
UP = b"\x1b[A"
DOWN = b"\x1b[B"
HOME = b"\x1b[H"
BACKSPACE = b"\x7f"


def stripSGR(text: str) -> str:
    import re

    return re.sub("\x1b\\[[0-9;]*m", "", text)


class ColoursTests(SynchronousTestCase):
    """
    Colour only on a terminal, never with C{NO_COLOR}, as the user says.
    """

    def test_auto(self) -> None:
        colours = Colours.decide("auto", {}, isatty=lambda fd: fd == 1)
        self.assertEqual((colours.out, colours.err), (True, False))

    def test_noColor(self) -> None:
        colours = Colours.decide("auto", {"NO_COLOR": "1"}, isatty=lambda fd: True)
        self.assertEqual((colours.out, colours.err), (False, False))

    def test_emptyNoColorIgnored(self) -> None:
        colours = Colours.decide("auto", {"NO_COLOR": ""}, isatty=lambda fd: True)
        self.assertEqual((colours.out, colours.err), (True, True))

    def test_dumbTerminal(self) -> None:
        colours = Colours.decide("auto", {"TERM": "dumb"}, isatty=lambda fd: True)
        self.assertEqual((colours.out, colours.err), (False, False))

    def test_flagWins(self) -> None:
        always = Colours.decide("always", {"NO_COLOR": "1"}, isatty=lambda fd: False)
        never = Colours.decide("never", {}, isatty=lambda fd: True)
        self.assertEqual((always.out, always.err, never.out, never.err), (True, True, False, False))

    def test_styleKeepsText(self) -> None:
        """
        Styling only wraps text in SGR sequences.
        """
        for line in [
            "[Sat Nov 21 10:00:00 2026] #lobby alice: hello",
            "[Sat Nov 21 10:00:00 2026] (private) alice: psst",
            "error: no such room",
            "info: bye",
            "plain text",
            "",
        ]:
            with self.subTest(line=line):
                self.assertEqual(stripSGR(styleServerLine(line)), line)
        self.assertIn("\x1b[31m", styleServerLine("error: x"))
        self.assertEqual(styleServerLine("plain text"), "plain text")

    def test_statusText(self) -> None:
        self.assertEqual(statusText("hi", "error", False), "chatsvc-client: hi")
        self.assertEqual(statusText("hi", "error", True), "\x1b[31mchatsvc-client: hi\x1b[0m")

    def test_cellWidth(self) -> None:
        self.assertEqual(cellWidth(b"a"), 1)
        self.assertEqual(cellWidth("界".encode()), 2)
        self.assertEqual(cellWidth("\u0301".encode()), 0)


class FakeUser:
    """
    The session side of a console: records what the console reports.
    """

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.data: list[bytes] = []
        self.events: list[str] = []

    def lineTyped(self, line: bytes) -> None:
        self.lines.append(line)

    def dataTyped(self, data: bytes) -> None:
        self.data.append(data)

    def inputEnded(self) -> None:
        self.events.append("ended")

    def interrupted(self) -> None:
        self.events.append("interrupted")

    def outputLost(self) -> None:
        self.events.append("outputLost")


class FakeErrors:
    """
    Standard error: collects what is written.
    """

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self):
        self.closed = True
        return defer.succeed(None)


class PipeConsoleTests(SynchronousTestCase):
    """
    L{PipeConsole}: lines in from standard input, lines out to standard
    output, messages to standard error.
    """

    def setUp(self) -> None:
        self.user = FakeUser()
        self.errors = FakeErrors()
        self.console = PipeConsole(self.user, self.errors, Colours())
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)

    def test_startsPaused(self) -> None:
        """
        Nothing is delivered until the session resumes input; then the
        lines already read come, CRs before LFs dropped.
        """
        self.assertEqual(self.transport.producerState, "paused")
        self.console.dataReceived(b"date\r\nos\npart")
        self.assertEqual(self.user.lines, [])
        self.console.resumeInput("start")
        self.assertEqual(self.user.lines, [b"date", b"os"])
        self.assertEqual(self.transport.producerState, "producing")

    def test_pauseReasons(self) -> None:
        """
        Input flows only when every reason to pause has been resumed.
        """
        self.console.resumeInput("start")
        self.console.pauseInput("socket")
        self.console.pauseInput("leaving")
        self.console.resumeInput("socket")
        self.console.dataReceived(b"x\n")
        self.assertEqual(self.user.lines, [])
        self.assertEqual(self.transport.producerState, "paused")
        self.console.resumeInput("leaving")
        self.assertEqual(self.user.lines, [b"x"])

    def test_endOfInput(self) -> None:
        """
        A last line without LF still counts; then the session hears of
        the end.
        """
        self.console.resumeInput("start")
        self.console.dataReceived(b"one\nlast")
        self.console.readConnectionLost()
        self.assertEqual(self.user.lines, [b"one", b"last"])
        self.assertEqual(self.user.events, ["ended"])

    def test_overlongInput(self) -> None:
        self.console.resumeInput("start")
        self.console.dataReceived(b"x" * (PipeConsole.MAX_LENGTH + 10))
        self.assertEqual(b"".join(self.user.data), b"x" * (PipeConsole.MAX_LENGTH + 10))

    def test_showLine(self) -> None:
        self.console.showLine("caf\u00e9 \u241b[31m")
        self.assertEqual(self.transport.value(), "caf\u00e9 \u241b[31m\n".encode())

    def test_showLineColour(self) -> None:
        self.console.colours = Colours(out=True)
        self.console.showLine("error: x")
        self.assertEqual(self.transport.value(), b"\x1b[31merror: x\x1b[0m\n")

    def test_status(self) -> None:
        self.console.showStatus("connection refused", "error")
        self.assertEqual(self.errors.written, b"chatsvc-client: connection refused\n")
        self.assertEqual(self.transport.value(), b"")

    def test_outputLost(self) -> None:
        self.console.writeConnectionLost()
        self.assertEqual(self.user.events, ["outputLost"])
        self.console.showLine("dropped")
        self.assertEqual(self.transport.value(), b"")

    def test_close(self) -> None:
        """
        Closing flushes standard output (the transport) and standard
        error; it is done when both are.
        """
        d = self.console.close()
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(d)
        self.console.connectionLost(Failure(Exception("closed")))
        self.successResultOf(d)
        self.assertTrue(self.errors.closed)

    def test_backPressure(self) -> None:
        """
        The socket pauses input when full; standard output pauses the
        socket when it is.
        """
        socket = StringTransport()
        self.console.resumeInput("start")
        self.console.attach(socket)
        self.assertIs(self.transport.producer, socket)
        socket.producer.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        socket.producer.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
        self.console.detach()
        self.assertIsNone(self.transport.producer)


class Screen:
    """
    A terminal emulator fed with what the console writes.
    """

    def __init__(self, width: int, height: int) -> None:
        self.buffer = helper.TerminalBuffer()
        self.buffer.width = width
        self.buffer.height = height
        self.client = insults.ClientProtocol(lambda: self.buffer)
        self.client.makeConnection(StringTransport())

    def feed(self, data: bytes) -> None:
        self.client.dataReceived(data)

    def rows(self) -> list[str]:
        return [row.rstrip() for row in bytes(self.buffer).decode("utf-8", "replace").split("\n")]

    def cursor(self) -> tuple[int, int]:
        return self.buffer.x, self.buffer.y


class TerminalConsoleTests(SynchronousTestCase):
    """
    L{TerminalConsole}: what is typed stays whole and below the lines that
    arrive.
    """

    def setUp(self) -> None:
        self.makeConsole()

    def makeConsole(self, width: int = 40, statusOnTerminal: bool = True, colours=None) -> None:
        self.user = FakeUser()
        self.errors = FakeErrors()
        self.console = TerminalConsole(
            self.user,
            self.errors,
            colours or Colours(),
            width=width,
            height=10,
            statusOnTerminal=statusOnTerminal,
        )
        self.server = insults.ServerProtocol(lambda: self.console)
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)
        self.screen = Screen(width, 10)
        self.console.setPrompt("> ")
        self.flush()

    def flush(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        self.screen.feed(data)
        return data

    def type(self, data) -> bytes:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.server.dataReceived(data)
        return self.flush()

    def show(self, text: str) -> bytes:
        self.console.showLine(text)
        return self.flush()

    def test_typing(self) -> None:
        self.type("hel")
        self.assertEqual(self.screen.rows()[0], "> hel")
        self.assertEqual(self.screen.cursor(), (5, 0))

    def test_lineArrivesWhileTyping(self) -> None:
        """
        A line that arrives while a line is being typed is written where
        the input was; the prompt and the input are drawn again below it,
        with the cursor where it was in the input.
        """
        self.type("hel" + "lo" + LEFT.decode() * 2)
        self.show("[Sat Nov 21 10:00:00 2026] #lobby bob: hi")
        rows = self.screen.rows()
        self.assertEqual(rows[0], "[Sat Nov 21 10:00:00 2026] #lobby bob: h")
        self.assertEqual(rows[1], "i")
        self.assertEqual(rows[2], "> hello")
        self.assertEqual(self.screen.cursor(), (5, 2))
        self.type("X\r")
        self.assertEqual(self.user.lines, [b"helXlo"])
        rows = self.screen.rows()
        self.assertEqual(rows[2:4], ["> helXlo", ">"])

    def test_neverWritesServerControls(self) -> None:
        """
        Without colour, a line shown writes no SGR sequence at all (server
        text reaches the console already neutralised).
        """
        import re

        data = self.show("error: \u241b[31mred")
        self.assertIsNone(re.search(rb"\x1b\[[0-9;]*m", data))
        self.assertEqual(self.screen.rows()[0], "error: [31mred")

    def test_colour(self) -> None:
        self.makeConsole(colours=Colours(out=True, err=True))
        data = self.show("error: boom")
        self.assertIn(b"\x1b[31merror: boom\x1b[0m", data)

    def test_editing(self) -> None:
        """
        Backspace, Delete, Home/End and the Ctrl keys edit the line.
        """
        self.type("abcdef" + "\x7f")
        self.type(LEFT * 2 + b"\x1b[3~")
        self.assertEqual(self.screen.rows()[0], "> abce")
        self.type(b"\x01X\x05Y\r")
        self.type(b"one two three\x17\x17\r")
        self.type(b"keep this\x01\x0b\r")
        self.type(b"drop\x15kept\r")
        self.assertEqual(self.user.lines, [b"XabceY", b"one ", b"", b"kept"])

    def test_utf8(self) -> None:
        """
        Multi-byte characters arrive a byte at a time and are put together;
        Backspace removes a whole character.
        """
        for byte in "é界".encode():
            self.type(bytes([byte]))
        self.type(b"x" + BACKSPACE + b"\r")
        self.assertEqual(self.user.lines, ["é界".encode()])

    def test_longInputScrolls(self) -> None:
        """
        Input longer than the screen is wide scrolls sideways on one row,
        so arriving lines can always erase and redraw it.
        """
        self.makeConsole(width=20)
        text = "".join(chr(ord("a") + i % 26) for i in range(50))
        self.type(text)
        rows = self.screen.rows()
        self.assertEqual(rows[1:], [""] * (len(rows) - 1))
        self.assertTrue(rows[0].startswith("> "))
        self.assertTrue(text.endswith(rows[0][2:]))
        self.assertLessEqual(len(rows[0]), 19)
        self.show("news")
        self.assertEqual(self.screen.rows()[0], "news")
        self.assertTrue(text.endswith(self.screen.rows()[1][2:]))
        self.type(HOME)
        self.assertTrue(text.startswith(self.screen.rows()[1][2:]))
        self.type("\r")
        self.assertEqual(self.user.lines, [text.encode()])

    def test_history(self) -> None:
        self.type("one\r")
        self.type("two\r")
        self.type(UP + UP)
        self.assertEqual(self.screen.rows()[2], "> one")
        self.type(DOWN + b"\r")
        self.assertEqual(self.user.lines, [b"one", b"two", b"two"])

    def test_ctrlD(self) -> None:
        """
        Ctrl-D deletes under the cursor; on an empty line it ends input.
        """
        self.type(b"ab" + LEFT + b"\x04")
        self.assertEqual(self.screen.rows()[0], "> a")
        self.assertEqual(self.user.events, [])
        self.type(b"\x15\x04")
        self.assertEqual(self.user.events, ["ended"])

    def test_ctrlC(self) -> None:
        self.type(b"\x03")
        self.assertEqual(self.user.events, ["interrupted"])

    def test_statusOnTerminal(self) -> None:
        self.type("hi")
        self.console.showStatus("login success: welcome", "ok")
        self.flush()
        self.assertEqual(
            self.screen.rows()[:3], ["chatsvc-client: login success: welcome", "> hi", ""]
        )
        self.assertEqual(self.errors.written, b"")

    def test_statusElsewhere(self) -> None:
        """
        When standard error is not the terminal, messages go there.
        """
        self.makeConsole(statusOnTerminal=False)
        self.console.showStatus("login success: welcome", "ok")
        self.assertEqual(self.errors.written, b"chatsvc-client: login success: welcome\n")
        self.assertEqual(self.flush(), b"")

    def test_closeErasesPrompt(self) -> None:
        self.type("draft")
        self.console.close()
        self.flush()
        self.assertEqual(self.screen.rows()[0], "")
        self.assertTrue(self.transport.disconnecting)

    def test_endOfTerminal(self) -> None:
        """
        Standard input closing under the terminal console ends input.
        """
        self.server.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.user.events, ["ended"])


class ErrorStreamTests(TestCase):
    """
    L{ErrorStream} writes through the reactor and flushes on close.
    """

    async def test_writeAndClose(self) -> None:
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        stream = ErrorStream(reactor, write)
        stream.write(b"one\n")
        stream.write(b"two\n")
        await withDeadline(stream.close(), "the error stream to flush")
        self.assertEqual(os.read(read, 100), b"one\ntwo\n")

    def test_closedDescriptor(self) -> None:
        """
        With no standard error at all, messages are dropped quietly: not
        written to whatever file later gets the same descriptor number,
        nothing logged, and closing is done at once.
        """
        read, write = os.pipe()
        os.close(read)
        os.close(write)
        stream = ErrorStream(reactor, write)
        # The lowest free numbers: most likely the same two again.
        newRead, newWrite = os.pipe()
        self.addCleanup(os.close, newRead)
        self.addCleanup(os.close, newWrite)
        os.set_blocking(newRead, False)
        stream.write(b"lost\n")
        self.assertFalse(stream.connected)
        self.successResultOf(stream.close())
        self.assertRaises(BlockingIOError, os.read, newRead, 100)
        self.assertEqual(self.flushLoggedErrors(), [])
