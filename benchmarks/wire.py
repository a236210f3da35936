"""
What the load generator says on the wire, for each protocol it drives.

Every benchmark message carries its own identity in its text, so that a
receiver needs no shared state to tell latency, loss, duplicates and
order::

    ~M<sender>:<seq>:<send time, µs of CLOCK_MONOTONIC>~ <padding>

CLOCK_MONOTONIC is one clock for every process on the machine, so a
receiver in another worker process subtracts the send time directly.
The marker C{~M} appears in no server's framing (nicks and rooms here
are lower case), so counting C{~M} in a received chunk counts messages
at C speed; only the receivers chosen for verification parse each one.

A L{Driver} knows how to log a client in and into a room (a list of
steps: bytes to send, then a token to wait for), how a message is sent,
and how to answer a server PING.  C{LineDriver} speaks chatsvc's native
protocol (docs/protocol.rst); C{IRCDriver} speaks RFC 1459/2812 as real
clients do: NICK/USER registration, JOIN, PRIVMSG, PING/PONG.
"""

from __future__ import annotations

import re

MARK = b"~M"

#: A benchmark message in a received chunk: sender, seq, send time (µs).
MESSAGE_RE = re.compile(rb"~M(\d+):(\d+):(\d+)~")

#: Text after the identity, so a line has a realistic chat size (~70 B).
PADDING = "hello from the load generator"


def messageText(sender: int, seq: int, sentMicros: int) -> str:
    """
    The text of message C{seq} of client C{sender}, sent at C{sentMicros}.
    """
    return f"~M{sender}:{seq}:{sentMicros}~ {PADDING}"


def nick(index: int) -> str:
    """
    The name of client C{index}: short, ASCII, lower case, valid for every
    server (ngircd's default nick limit is 9 characters).
    """
    return f"c{index}"


class Step:
    """
    One step of logging in: send C{data}, then wait for a line whose
    command (L{Driver.command}) is C{until} (or, if C{until} is L{None},
    go on at once).
    """

    __slots__ = ("data", "until")

    def __init__(self, data: bytes, until: bytes | None) -> None:
        self.data = data
        self.until = until


class Driver:
    """
    A protocol as the load generator drives it.

    @cvar name: the protocol's name in plans and results.
    @cvar failures: commands that, seen during login, mean it failed.
    """

    name = "?"
    failures: frozenset[bytes] = frozenset()

    def command(self, line: bytes) -> bytes:
        """
        What kind of line this is, as login steps and failures name it.
        """
        raise NotImplementedError()

    def loginSteps(self, index: int, room: str) -> list[Step]:
        raise NotImplementedError()

    def messageLine(self, room: str, text: str) -> bytes:
        raise NotImplementedError()

    def pong(self, line: bytes) -> bytes | None:
        """
        The answer to a server line that needs one (PING), else L{None}.
        """
        return None


class LineDriver(Driver):
    """
    chatsvc's native line protocol: C{NAME ROOM} logs in and joins ROOM;
    any line not starting with C{/} is a message to the room.  Own
    messages are not echoed in text mode.
    """

    name = "line"
    failures = frozenset((b"error:", b"reuse:", b"full:"))

    def command(self, line: bytes) -> bytes:
        return line.split(b" ", 1)[0]

    def loginSteps(self, index: int, room: str) -> list[Step]:
        return [Step(f"{nick(index)} {room}\n".encode(), b"success:")]

    def messageLine(self, room: str, text: str) -> bytes:
        return f"{text}\n".encode()


class IRCDriver(Driver):
    """
    IRC as a real client speaks it: optional PASS, NICK and USER, wait for
    the 001 welcome; optionally OPER and the user mode that relaxes flood
    protection (ngircd's C{+F}); JOIN the room and wait for the end of
    NAMES (366), so that the client is known to be in the room.

    @ivar password: sent with PASS (twistd words checks it), or L{None}.
    @ivar oper: C{(name, password, modes)} to become an operator and set
        C{modes} on ourselves, or L{None}.
    """

    name = "irc"
    #: ERROR, and the numerics for a refused nick, channel, password or
    #: operator login.
    failures = frozenset(
        (b"ERROR", b"432", b"433", b"403", b"405", b"464", b"471", b"473", b"474", b"491")
    )

    def command(self, line: bytes) -> bytes:
        words = line.split(None, 2)
        if words and words[0].startswith(b":"):
            return words[1] if len(words) > 1 else b""
        return words[0] if words else b""

    def __init__(self, password: str | None = None, oper=None) -> None:
        self.password = password
        self.oper = oper

    def loginSteps(self, index: int, room: str) -> list[Step]:
        name = nick(index)
        hello = ""
        if self.password is not None:
            hello += f"PASS {self.password}\r\n"
        hello += f"NICK {name}\r\nUSER {name} 0 * :{name}\r\n"
        steps = [Step(hello.encode(), b"001")]
        if self.oper is not None:
            operName, operPassword, modes = self.oper
            steps.append(Step(f"OPER {operName} {operPassword}\r\n".encode(), b"381"))
            steps.append(Step(f"MODE {name} {modes}\r\n".encode(), b"MODE"))
        steps.append(Step(f"JOIN #{room}\r\n".encode(), b"366"))
        return steps

    def messageLine(self, room: str, text: str) -> bytes:
        return f"PRIVMSG #{room} :{text}\r\n".encode()

    def pong(self, line: bytes) -> bytes | None:
        if line.startswith(b"PING"):
            return b"PONG" + line[4:].rstrip(b"\r\n") + b"\r\n"
        return None


def makeDriver(protocol: str, password: str | None = None, oper=None) -> Driver:
    """
    The driver for C{protocol} (C{line} or C{irc}).
    """
    if protocol == "line":
        return LineDriver()
    if protocol == "irc":
        return IRCDriver(password, oper)
    raise ValueError(f"unknown protocol {protocol!r}")
