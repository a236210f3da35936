"""
The user's side of C{chatsvc-client}: the keyboard and the screen.

A console reads what the user types and shows what the server says, and
the client's own messages.  There are two, chosen by L{openConsole}:

  - L{PipeConsole}, a C{LineReceiver} on standard input: for pipes, files
    and dumb terminals.  Server lines go to standard output as they are,
    the client's messages to standard error.
  - L{TerminalConsole}, a C{HistoricRecvLine} under
    C{insults.ServerProtocol} with the terminal in raw mode: the line
    being typed is redrawn below each line that arrives, so incoming
    lines never break up what the user is typing.

Both talk to an L{IConsoleUser} (the client session) and offer the same
L{IConsole} methods to it.  Server text reaches them already decoded and
neutralised (L{chatsvc.net.text.decodeLine}): consoles add colour only where
it is wanted (L{Colours}) and never write a control character that came
from the network.

Standard input and output are driven by C{StandardIO}, which makes them
non-blocking; standard error is often the same terminal or pipe, so it
gets a non-blocking writer of its own (L{ErrorStream}) instead of
C{print}, which would lose output on C{EAGAIN}.
"""

from __future__ import annotations

import codecs
import os
import re
import unicodedata

from twisted.conch.insults import insults
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet import abstract, defer, fdesc, interfaces, main
from twisted.protocols.basic import LineReceiver
from zope.interface import Attribute, Interface, implementer

#: How the client names itself in its own messages.
PROGRAM = "chatsvc-client"


class IConsoleUser(Interface):
    """
    What a console tells the client session.
    """

    def lineTyped(line: bytes) -> None:
        """
        The user entered a line (without its line ending).
        """

    def dataTyped(data: bytes) -> None:
        """
        A piece of input too long to be a line: pass it on as it is.
        """

    def inputEnded() -> None:
        """
        End of input (end of the pipe, or Ctrl-D on an empty line).
        """

    def interrupted() -> None:
        """
        The user pressed Ctrl-C on the terminal.
        """

    def outputLost() -> None:
        """
        Standard output was closed by its reader: nobody sees us any more.
        """


class IConsole(Interface):
    """
    What the client session asks of a console.
    """

    interactive = Attribute("Whether a person types (a terminal), so refusals can be retried.")

    def showLine(text: str) -> None:
        """
        Show one line from the server (already neutralised).
        """

    def showStatus(text: str, level: str = "info") -> None:
        """
        Show one of the client's own messages; C{level} is C{"info"},
        C{"ok"}, C{"warn"} or C{"error"}.
        """

    def setPrompt(text: str) -> None:
        """
        Change the prompt (a terminal shows it; a pipe has none).
        """

    def pauseInput(reason: str) -> None:
        """
        Stop delivering typed lines until every reason is resumed.
        """

    def resumeInput(reason: str) -> None:
        """
        Undo one L{pauseInput}.
        """

    def attach(transport) -> None:
        """
        The server connection is up: apply back-pressure both ways.
        """

    def detach() -> None:
        """
        The server connection is gone.
        """

    def close() -> defer.Deferred:
        """
        Write out everything pending; fires when that is done.
        """


class Colours:
    """
    Whether, and how, to colour each stream.

    Colour is used only on a terminal, never when C{NO_COLOR} is set to a
    non-empty value (U{https://no-color.org}), unless the user asked for
    it with C{--color always}; C{--color never} switches it off.

    @ivar out: colour server lines on standard output.
    @ivar err: colour the client's messages on standard error.
    """

    def __init__(self, out: bool = False, err: bool = False) -> None:
        self.out = out
        self.err = err

    @classmethod
    def decide(cls, setting: str, environ=None, isatty=os.isatty) -> Colours:
        """
        Decide for standard output and standard error.

        @param setting: C{"auto"}, C{"always"} or C{"never"}.
        """
        if setting == "always":
            return cls(True, True)
        if setting == "never":
            return cls(False, False)
        environ = os.environ if environ is None else environ
        if environ.get("NO_COLOR"):
            return cls(False, False)
        if environ.get("TERM") == "dumb":
            return cls(False, False)
        return cls(_isatty(isatty, 1), _isatty(isatty, 2))


def _isatty(isatty, fd: int) -> bool:
    try:
        return bool(isatty(fd))
    except OSError:
        return False


_RESET = "\x1b[0m"
_SGR = {
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "magenta": "\x1b[35m",
    "cyan": "\x1b[36m",
}
_LEVEL = {"info": "cyan", "ok": "green", "warn": "yellow", "error": "red"}
_REPLY = {"error:": "red", "info:": "cyan", "success:": "green", "reuse:": "red", "full:": "red"}
_STAMPED = re.compile(r"^(\[[^\]]*\])( #\S+)?( \(private\))?")


def _paint(colour: str, text: str) -> str:
    return f"{_SGR[colour]}{text}{_RESET}"


def styleServerLine(text: str) -> str:
    """
    Colour a (neutralised) server line: replies by their kind, the
    timestamp dim, the room and private marks in colour.  The text itself
    is never changed, only wrapped in SGR sequences.
    """
    kind = text.split(" ", 1)[0]
    if kind in _REPLY:
        return _paint(_REPLY[kind], text)
    match = _STAMPED.match(text)
    if match is None:
        return text
    stamp, room, private = match.groups()
    head = _paint("dim", stamp)
    if room:
        head += _paint("cyan", room)
    if private:
        head += _paint("magenta", private)
    return head + text[match.end() :]


def statusText(text: str, level: str, colour: bool) -> str:
    """
    One of the client's own messages, as shown: C{chatsvc-client: TEXT}.
    """
    line = f"{PROGRAM}: {text}"
    if colour:
        return _paint(_LEVEL.get(level, "cyan"), line)
    return line


def encode(text: str) -> bytes:
    """
    Text for a terminal or pipe: UTF-8, and nothing that cannot encode.
    """
    return text.encode("utf-8", "replace")


class ErrorStream(abstract.FileDescriptor):
    """
    A non-blocking writer for standard error.

    Standard error usually shares its open file with standard input or
    output, which C{StandardIO} has made non-blocking: a plain write
    could fail with C{EAGAIN} and lose the message.  This buffers and lets
    the reactor write when the descriptor is ready, like C{StandardIO}'s
    own writer.  If standard error is closed, messages are dropped.
    """

    connected = 1

    def __init__(self, reactor, fd: int = 2) -> None:
        super().__init__(reactor)
        self.fd = fd
        self._closed = defer.Deferred()
        try:
            os.fstat(fd)
        except OSError:
            self.connected = 0
            self.disconnected = 1
            self._closed.callback(None)

    def fileno(self) -> int:
        return self.fd

    def writeSomeData(self, data: bytes):
        return fdesc.writeToFD(self.fd, data)

    def doRead(self):
        # Only ever registered for writing.
        return None

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        if not self._closed.called:
            self._closed.callback(None)

    def close(self) -> defer.Deferred:
        """
        Write what is buffered, then stop; fires when done.
        """
        if self.connected and not self.disconnecting:
            self.loseConnection()
        return _whenFired(self._closed)


def _whenFired(d: defer.Deferred) -> defer.Deferred:
    """
    A new Deferred that fires (with None) when C{d} has.
    """
    if d.called:
        return defer.succeed(None)
    result: defer.Deferred = defer.Deferred()

    def fire(value):
        result.callback(None)
        return value

    d.addBoth(fire)
    return result


@implementer(interfaces.IPushProducer)
class _InputValve:
    """
    A producer for the socket's transport: when the socket cannot take
    more, it pauses the console's input under its own reason, so flow
    control and the session's own pauses never undo each other.
    """

    def __init__(self, console, reason: str) -> None:
        self.console = console
        self.reason = reason

    def pauseProducing(self) -> None:
        self.console.pauseInput(self.reason)

    def resumeProducing(self) -> None:
        self.console.resumeInput(self.reason)

    def stopProducing(self) -> None:
        self.console.pauseInput(self.reason)


class _ConsoleBase:
    """
    What both consoles share: pause reasons, back-pressure and closing.

    Input starts paused (reason C{"start"}): the session resumes it once
    lines can go somewhere.
    """

    def __init__(self, user, errors: ErrorStream, colours: Colours) -> None:
        self.user = user
        self.errors = errors
        self.colours = colours
        self._pauses = {"start"}
        self._socket = None
        self._closing = False
        self._outputGone = False
        self._closed: defer.Deferred = defer.Deferred()

    @property
    def _stdio(self):
        """
        The C{StandardIO} transport (set by the concrete console).
        """
        raise NotImplementedError()

    def pauseInput(self, reason: str) -> None:
        first = not self._pauses
        self._pauses.add(reason)
        if first:
            self._stopInput()

    def resumeInput(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        if not self._pauses and not self._closing:
            self._startInput()

    def _stopInput(self) -> None:
        """
        Stop taking input (subclasses say how).
        """

    def _startInput(self) -> None:
        """
        Start taking input again (subclasses say how).
        """

    def attach(self, transport) -> None:
        """
        Input waits while the socket's buffer is full, and the socket is
        not read while standard output cannot keep up.
        """
        self._socket = transport
        transport.registerProducer(_InputValve(self, "socket"), True)
        stdio = self._stdio
        if stdio is not None and not self._outputGone:
            stdio.registerProducer(transport, True)

    def detach(self) -> None:
        """
        Let go of the connection (it is closing or gone).  TLS will not
        close while a producer is registered with it.
        """
        socket, self._socket = self._socket, None
        if socket is None:
            return
        if getattr(socket, "connected", True):
            socket.unregisterProducer()
        self.resumeInput("socket")
        stdio = self._stdio
        if stdio is not None and not self._outputGone:
            stdio.unregisterProducer()

    def showStatus(self, text: str, level: str = "info") -> None:
        self.errors.write(encode(statusText(text, level, self.colours.err)) + b"\n")

    def close(self) -> defer.Deferred:
        """
        Stop reading, write out standard output and standard error.
        """
        if not self._closing:
            self._closing = True
            self.detach()
            self._finishScreen()
            stdio = self._stdio
            if stdio is None or self._outputGone:
                if not self._closed.called:
                    self._closed.callback(None)
            else:
                stdio.loseConnection()
        return defer.gatherResults([_whenFired(self._closed), self.errors.close()])

    def _finishScreen(self) -> None:
        """
        Leave the screen tidy before closing (a terminal removes its prompt).
        """

    def _lost(self) -> None:
        if not self._closed.called:
            self._closed.callback(None)


@implementer(IConsole, interfaces.IHalfCloseableProtocol)
class PipeConsole(_ConsoleBase, LineReceiver):
    """
    Plain lines: standard input is read as LF-terminated lines (a CR
    before the LF is dropped), server lines are written to standard output
    one per line, the client's messages to standard error.

    End of input is half-closeable: the session is told, and standard
    output stays open for the replies still to come.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1024 * 1024

    def __init__(
        self, user, errors: ErrorStream, colours: Colours, interactive: bool = False
    ) -> None:
        """
        @param interactive: standard input is a terminal (while standard
            output is not), so a person can still answer a question.
        """
        _ConsoleBase.__init__(self, user, errors, colours)
        self.interactive = interactive

    @property
    def _stdio(self):
        return self.transport

    def connectionMade(self) -> None:
        self.paused = True
        self.transport.pauseProducing()

    def _stopInput(self) -> None:
        if self.transport is not None:
            self.pauseProducing()

    def _startInput(self) -> None:
        if self.transport is not None:
            self.resumeProducing()

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        self.user.lineTyped(line)

    def lineLengthExceeded(self, data: bytes) -> None:
        """
        An input line over a megabyte: pass it on as it is, unbuffered;
        the server applies its own line limit.
        """
        self.user.dataTyped(data)

    def readConnectionLost(self) -> None:
        """
        End of input: a last line without a line ending still counts.
        """
        rest = self.clearLineBuffer()
        if rest:
            self.lineReceived(rest)
        self.user.inputEnded()

    def writeConnectionLost(self) -> None:
        self._outputGone = True
        if self._socket is not None:
            self._socket.resumeProducing()
        if not self._closing:
            self.user.outputLost()

    def connectionLost(self, reason=main.CONNECTION_DONE) -> None:
        self._lost()

    def showLine(self, text: str) -> None:
        if self.colours.out:
            text = styleServerLine(text)
        if self.transport is not None and not self._outputGone:
            self.transport.write(encode(text) + b"\n")

    def setPrompt(self, text: str) -> None:
        """
        A pipe has no prompt.
        """


CTRL_A = b"\x01"
CTRL_C = b"\x03"
CTRL_D = b"\x04"
CTRL_E = b"\x05"
CTRL_K = b"\x0b"
CTRL_L = b"\x0c"
CTRL_U = b"\x15"
CTRL_W = b"\x17"
CTRL_Z = b"\x1a"


def cellWidth(char: bytes) -> int:
    """
    Columns a character (its UTF-8 bytes) takes on a terminal: two for
    wide East Asian characters, none for combining marks, else one.
    """
    text = char.decode("utf-8", "replace")
    if not text:
        return 0
    c = text[0]
    if unicodedata.combining(c):
        return 0
    if unicodedata.east_asian_width(c) in ("W", "F"):
        return 2
    return 1


def textWidth(chars) -> int:
    return sum(cellWidth(c) for c in chars)


@implementer(IConsole)
class TerminalConsole(_ConsoleBase, HistoricRecvLine):
    """
    A line editor on a raw-mode terminal that redraws what is being typed
    whenever a line arrives.

    The input line is kept to one screen row (it scrolls sideways when
    longer), so it can always be erased with a carriage return and an
    erase-to-end-of-line, the arriving line written in its place, and the
    prompt and input drawn again below.  Lines the user enters stay on the
    screen after their prompt, as in a shell.

    C{lineBuffer} holds one entry per character (its UTF-8 bytes), as
    C{RecvLine} holds one per byte: multi-byte characters arrive one byte
    per keystroke and are put together with an incremental decoder.

    Keys: Enter sends; Left/Right/Home/End, Ctrl-A/Ctrl-E move;
    Backspace/Delete, Ctrl-U/Ctrl-K/Ctrl-W delete; Up/Down walk the
    history; Ctrl-L redraws; Ctrl-D on an empty line ends input; Ctrl-C
    interrupts; Ctrl-Z suspends (when the caller can).
    """

    interactive = True

    def __init__(
        self,
        user,
        errors: ErrorStream,
        colours: Colours,
        width: int = 80,
        height: int = 24,
        statusOnTerminal: bool = True,
        suspend=None,
    ) -> None:
        _ConsoleBase.__init__(self, user, errors, colours)
        self.width = width
        self.height = height
        self.prompt = ""
        self.statusOnTerminal = statusOnTerminal
        self.suspend = suspend
        self._first = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def _stdio(self):
        terminal = getattr(self, "terminal", None)
        return None if terminal is None else terminal.transport

    def connectionMade(self) -> None:
        HistoricRecvLine.connectionMade(self)
        self.keyHandlers.update(
            {
                CTRL_A: self.handle_HOME,
                CTRL_E: self.handle_END,
                CTRL_C: self.handle_INT,
                CTRL_D: self.handle_EOF,
                CTRL_K: self.handle_KILL_END,
                CTRL_L: self.handle_FF,
                CTRL_U: self.handle_KILL_START,
                CTRL_W: self.handle_KILL_WORD,
                CTRL_Z: self.handle_SUSPEND,
                b"\x08": self.handle_BACKSPACE,
            }
        )

    def initializeScreen(self) -> None:
        """
        Start on the current line; unlike C{RecvLine}, never reset the
        user's terminal (that would clear it).
        """
        self.mode = "insert"
        self.drawInputLine()

    def terminalSize(self, width: int, height: int) -> None:
        self.width = max(width, 1)
        self.height = height
        self.drawInputLine()

    def connectionLost(self, reason=main.CONNECTION_DONE) -> None:
        if not self._closing:
            self._closing = True
            self.user.inputEnded()
        self._lost()

    # Output

    def showLine(self, text: str) -> None:
        if self.colours.out:
            text = styleServerLine(text)
        self._above(encode(text))

    def showStatus(self, text: str, level: str = "info") -> None:
        if self.statusOnTerminal:
            self._above(encode(statusText(text, level, self.colours.err)))
        else:
            _ConsoleBase.showStatus(self, text, level)

    def setPrompt(self, text: str) -> None:
        self.prompt = text
        self.drawInputLine()

    def _above(self, data: bytes) -> None:
        """
        Write a line above the input line and draw the input again.
        """
        if self._stdio is None:
            return
        self.terminal.write(b"\r")
        self.terminal.eraseToLineEnd()
        # ServerProtocol.write turns LF into CRLF: raw mode has no OPOST.
        self.terminal.write(data + b"\n")
        if not self._closing:
            self.drawInputLine()

    def _finishScreen(self) -> None:
        if self._stdio is not None:
            self.terminal.write(b"\r")
            self.terminal.eraseToLineEnd()

    def drawInputLine(self) -> None:
        """
        Draw the prompt and the visible part of the input on the current
        row, with the cursor where it belongs.
        """
        if self._stdio is None or self._closing:
            return
        prompt = encode(self.prompt)
        room = max(self.width - 1 - textWidth(_chars(self.prompt)), 8)
        index = self.lineBufferIndex
        if index < self._first:
            self._first = index
        while textWidth(self.lineBuffer[self._first : index]) > room:
            self._first += 1
        while self._first > 0 and textWidth(self.lineBuffer[self._first - 1 :]) <= room:
            self._first -= 1
        shown = []
        used = 0
        for char in self.lineBuffer[self._first :]:
            used += cellWidth(char)
            if used > room:
                break
            shown.append(char)
        self.terminal.write(b"\r" + prompt + b"".join(shown))
        self.terminal.eraseToLineEnd()
        back = textWidth(shown[index - self._first :])
        if back:
            self.terminal.cursorBackward(back)

    # Input

    def keystrokeReceived(self, keyID, modifier) -> None:
        handler = self.keyHandlers.get(keyID)
        if handler is not None:
            handler()
            return
        if modifier is not None or not isinstance(keyID, bytes):
            return
        if b" " <= keyID <= b"~":
            self.characterReceived(keyID, False)
        elif keyID >= b"\x80":
            for char in self._decoder.decode(keyID):
                self.characterReceived(encode(char), False)

    def characterReceived(self, ch: bytes, moreCharactersComing) -> None:
        atEnd = self.lineBufferIndex == len(self.lineBuffer)
        if self.mode == "insert" or atEnd:
            self.lineBuffer.insert(self.lineBufferIndex, ch)
        else:
            self.lineBuffer[self.lineBufferIndex] = ch
        self.lineBufferIndex += 1
        if moreCharactersComing:
            return
        room = self.width - 1 - textWidth(_chars(self.prompt))
        if atEnd and self._first == 0 and textWidth(self.lineBuffer) <= room:
            self.terminal.write(ch)
        else:
            self.drawInputLine()

    def _deliverBuffer(self, buf: bytes) -> None:
        """
        Put a line from the history into the buffer, a character at a time.
        """
        for char in _chars(buf.decode("utf-8", "replace")):
            self.characterReceived(char, True)
        self.drawInputLine()

    def _setBuffer(self, chars, index: int) -> None:
        self.lineBuffer = list(chars)
        self.lineBufferIndex = index
        self.drawInputLine()

    def handle_TAB(self) -> None:
        self.characterReceived(b" ", False)

    def handle_LEFT(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            self.drawInputLine()

    def handle_RIGHT(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            self.lineBufferIndex += 1
            self.drawInputLine()

    def handle_HOME(self) -> None:
        self.lineBufferIndex = 0
        self.drawInputLine()

    def handle_END(self) -> None:
        self.lineBufferIndex = len(self.lineBuffer)
        self.drawInputLine()

    def handle_BACKSPACE(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            del self.lineBuffer[self.lineBufferIndex]
            self.drawInputLine()

    def handle_DELETE(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            del self.lineBuffer[self.lineBufferIndex]
            self.drawInputLine()

    def handle_KILL_START(self) -> None:
        self._setBuffer(self.lineBuffer[self.lineBufferIndex :], 0)

    def handle_KILL_END(self) -> None:
        index = self.lineBufferIndex
        self._setBuffer(self.lineBuffer[:index], index)

    def handle_KILL_WORD(self) -> None:
        index = self.lineBufferIndex
        start = index
        while start > 0 and self.lineBuffer[start - 1] == b" ":
            start -= 1
        while start > 0 and self.lineBuffer[start - 1] != b" ":
            start -= 1
        self._setBuffer(self.lineBuffer[:start] + self.lineBuffer[index:], start)

    def handle_UP(self) -> None:
        if self.lineBuffer and self.historyPosition == len(self.historyLines):
            self.historyLines.append(b"".join(self.lineBuffer))
        if self.historyPosition > 0:
            self.historyPosition -= 1
            self.lineBuffer = []
            self.lineBufferIndex = 0
            self._deliverBuffer(self.historyLines[self.historyPosition])

    def handle_DOWN(self) -> None:
        self.lineBuffer = []
        self.lineBufferIndex = 0
        if self.historyPosition < len(self.historyLines) - 1:
            self.historyPosition += 1
            self._deliverBuffer(self.historyLines[self.historyPosition])
        else:
            self.historyPosition = len(self.historyLines)
            self.drawInputLine()

    def handle_RETURN(self) -> None:
        """
        Leave the entered line on the screen after its prompt, start a new
        input line, and hand the line to the session.
        """
        line = b"".join(self.lineBuffer)
        if line:
            self.historyLines.append(line)
        self.historyPosition = len(self.historyLines)
        self.terminal.write(b"\r" + encode(self.prompt) + line)
        self.terminal.eraseToLineEnd()
        self.terminal.write(b"\n")
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self._first = 0
        self.drawInputLine()
        self.user.lineTyped(line)

    def handle_EOF(self) -> None:
        if self.lineBuffer:
            self.handle_DELETE()
        else:
            self.user.inputEnded()

    def handle_INT(self) -> None:
        self.user.interrupted()

    def handle_FF(self) -> None:
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        self.drawInputLine()

    def handle_SUSPEND(self) -> None:
        if self.suspend is None:
            return
        self._finishScreen()
        self.suspend()
        self.drawInputLine()

    def unhandledControlSequence(self, seq) -> None:
        pass


def _chars(text: str) -> list[bytes]:
    return [encode(c) for c in text]


def openConsole(reactor, user, colours: Colours, tty=None):
    """
    Connect the right console to standard input and output.

    The terminal console is used when standard input and output are both
    terminals (and C{TERM} is not C{dumb}); otherwise the pipe console.

    @param tty: a L{chatsvc.client}-side helper with C{enter()},
        C{suspend()}, C{size()} and C{statusOnTerminal}; L{None} for the
        pipe console.
    @return: the console (an L{IConsole}).
    """
    from twisted.internet import stdio

    errors = ErrorStream(reactor)
    if tty is None:
        console = PipeConsole(user, errors, colours, interactive=_isatty(os.isatty, 0))
        stdio.StandardIO(console, reactor=reactor)
        return console
    width, height = tty.size()
    console = TerminalConsole(
        user,
        errors,
        colours,
        width=width,
        height=height,
        statusOnTerminal=tty.statusOnTerminal,
        suspend=tty.suspend,
    )
    stdio.StandardIO(insults.ServerProtocol(lambda: console), reactor=reactor)
    return console
