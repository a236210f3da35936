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
clients do: NICK/USER registration, JOIN, PRIVMSG, PING/PONG;
C{WebSocketDriver} speaks the chat's web gateway as a browser does: the
WebSocket handshake on C{/ws}, one masked text frame per line (the
login, then each message), JSON objects back, one per frame.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct

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

    #: Whether the server sends a sender its own messages too (then a
    #: message to a room of N is N deliveries, not N - 1).
    echo = False

    #: One per message in what a client sends: counting it in a sender's
    #: unsent output counts the messages that have not left yet.
    boundary = b"\n"

    #: The end of a message in what the server sends: a verifying
    #: receiver parses up to the last one and keeps the rest for later.
    end = b"\n"

    #: In received data, a sign that a ping may need an answer.
    pingMark = b"PING"

    #: Most messages one flat-out sender may have in flight, if the
    #: server itself bounds it (L{None}: the harness's window).
    maxWindow: int | None = None

    def split(self, buf: bytes) -> tuple[list[bytes], bytes]:
        """
        During login: the complete items (lines) of C{buf}, and the rest.
        """
        lines = buf.split(b"\n")
        rest = lines.pop()
        if len(rest) > 65536:
            rest = rest[-4096:]
        return lines, rest

    def answers(self, tail: bytes, data: bytes) -> bytes:
        """
        Running: what to send for the pings in C{data} (C{tail}: the end
        of what came before it).
        """
        out = [self.pong(line) for line in (tail + data).split(b"\n")[:-1]]
        return b"".join(x for x in out if x)

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


#: The WebSocket key's answer is derived with this (RFC 6455 section 1.3).
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The JSON type of an object, as login steps and failures name it.
_JSON_TYPE = re.compile(rb'"type":\s*"(\w+)"')

#: Opcodes of the frames a login or a run meets (RFC 6455 section 5.2).
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


def wsAccept(key: bytes) -> bytes:
    """
    The C{Sec-WebSocket-Accept} value for the client's C{key}.
    """
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def wsHeader(opcode: int, length: int, mask: bytes = b"") -> bytes:
    """
    The header of a final frame of C{length} bytes, masked with C{mask}
    (a client's) or not (a server's).
    """
    bit = 0x80 if mask else 0
    if length < 126:
        head = bytes((0x80 | opcode, bit | length))
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, bit | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, bit | 127, length)
    return head + mask


def wsFrames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """
    The complete frames at the start of C{buf} as (opcode, payload),
    unmasked, and the rest of C{buf}.
    """
    frames = []
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        length = b1 & 0x7F
        at = 2
        if length == 126:
            if len(buf) < 4:
                break
            length = struct.unpack_from("!H", buf, 2)[0]
            at = 4
        elif length == 127:
            if len(buf) < 10:
                break
            length = struct.unpack_from("!Q", buf, 2)[0]
            at = 10
        mask = b""
        if b1 & 0x80:
            mask = buf[at : at + 4]
            at += 4
        if len(buf) < at + length:
            break
        payload = buf[at : at + length]
        if mask:
            payload = unmask(payload, mask)
        frames.append((b0 & 0x0F, payload))
        buf = buf[at + length :]
    return frames, buf


def unmask(payload: bytes, mask: bytes) -> bytes:
    """
    C{payload} XOR C{mask} repeated (masking and unmasking are the same),
    at C speed: one XOR of two big integers.
    """
    n = len(payload)
    if not n:
        return payload
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class WebSocketDriver(Driver):
    """
    The chat's web gateway as a browser speaks it: an HTTP upgrade on
    C{/ws} (no Origin header: the gateway accepts clients that send none,
    as it must for non-browser clients), then each line of the line
    protocol as one masked text frame (C{NAME ROOM} logs in, plain text
    is a message), each answer one JSON object in one unmasked text frame.
    The gateway talks JSON, in which every member gets every message of
    its room, the sender too (L{echo}).

    Frames are written by hand, not by wsproto: the generator must not
    be what is measured.  One masking key per generator process, its four
    bytes below 0x80: every client frame is really masked (the server
    unmasks every byte, as for a browser), and since our text is ASCII the
    masked bytes stay below 0x80 too, so 0x81 (FIN + text) appears in a
    sender's output only at the start of a frame (L{boundary}).  Reading
    is what the other drivers do: C{~M} markers counted in the raw bytes,
    frame headers and all; a verifying receiver parses up to the last
    closing brace (the end of an object).

    A server's ping (opcode 9; the gateway pings a client after 30 s of
    silence from it) is answered with a pong; 0x89 is taken for a ping
    unless it is a byte of a 16-bit length (after C{0x81 0x7e}), the only
    other place it can appear in what the gateway sends ASCII text in.

    The gateway cuts a client (close 1009, "message over 12288 bytes")
    when one read from its socket brings more than 4 × the line limit +
    4 KiB (12,288 bytes by default) without ending its last message, and
    it counts every byte of the read, complete messages included: a
    client with more than 12 KiB of messages waiting in the server's
    socket buffer is cut.  So a flat-out sender here keeps at most
    L{maxWindow} frames (about 8 KiB) in flight, whatever the harness's
    window.

    @ivar host: C{HOST:PORT} for the request's Host header.
    """

    name = "ws"
    echo = True
    boundary = b"\x81"
    end = b"}"
    pingMark = b"\x89"
    maxWindow = 128
    #: A refused upgrade (any status but 101), a refused login, a close.
    failures = frozenset((b"refused", b"error", b"close"))

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.mask = bytes(b % 0x7F + 1 for b in os.urandom(4))
        self._keys: dict[int, int] = {}

    def command(self, item: bytes) -> bytes:
        if item.startswith(b"HTTP/"):
            status = item.split(None, 2)[1:2]
            return b"101" if status == [b"101"] else b"refused"
        if item[:1] == bytes((0x80 | _CLOSE,)):
            return b"close"
        found = _JSON_TYPE.search(item)
        return found.group(1) if found else b""

    def split(self, buf: bytes) -> tuple[list[bytes], bytes]:
        items = []
        if buf.startswith(b"HTTP/"):
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return [], buf
            items.append(buf[:end])
            buf = buf[end + 4 :]
        frames, rest = wsFrames(buf)
        for opcode, payload in frames:
            if opcode in (_PING, _CLOSE):
                items.append(bytes((0x80 | opcode,)) + payload)
            elif opcode == _TEXT:
                items.append(payload)
        return items, rest

    def pong(self, item: bytes) -> bytes | None:
        if item[:1] == bytes((0x80 | _PING,)):
            return self.frame(_PONG, item[1:])
        return None

    def answers(self, tail: bytes, data: bytes) -> bytes:
        buf = tail + data
        out = []
        at = buf.find(b"\x89", len(tail))
        while at >= 0:
            if b"\x81\x7e" not in (buf[max(0, at - 3) : at - 1], buf[max(0, at - 2) : at]):
                length = buf[at + 1] if at + 1 < len(buf) else 0x80
                if length < 126 and at + 2 + length <= len(buf):
                    out.append(self.frame(_PONG, buf[at + 2 : at + 2 + length]))
            at = buf.find(b"\x89", at + 1)
        return b"".join(out)

    def frame(self, opcode: int, payload: bytes) -> bytes:
        """
        One masked frame, as a client must send it.
        """
        return wsHeader(opcode, len(payload), self.mask) + unmask(payload, self.mask)

    def loginSteps(self, index: int, room: str) -> list[Step]:
        key = base64.b64encode(os.urandom(16)).decode()
        upgrade = (
            f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        login = self.frame(_TEXT, f"{nick(index)} {room}".encode())
        return [Step(upgrade.encode(), b"101"), Step(login, b"success")]

    def messageLine(self, room: str, text: str) -> bytes:
        payload = text.encode()
        n = len(payload)
        key = self._keys.get(n)
        if key is None:
            key = self._keys[n] = int.from_bytes((self.mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
        return wsHeader(_TEXT, n, self.mask) + masked


#: Every driver, by protocol name.
DRIVERS = {"line": LineDriver, "irc": IRCDriver, "ws": WebSocketDriver}


def echoes(protocol: str) -> bool:
    """
    Whether a server spoken to in C{protocol} sends senders their own
    messages (see L{Driver.echo}).
    """
    return DRIVERS[protocol].echo


def maxWindow(protocol: str, window: int) -> int:
    """
    C{window} (messages in flight per flat-out sender), within what a
    server spoken to in C{protocol} allows (L{Driver.maxWindow}).
    """
    bound = DRIVERS[protocol].maxWindow
    return min(window, bound) if bound and window else window


def makeDriver(
    protocol: str, password: str | None = None, oper=None, host: str = "127.0.0.1"
) -> Driver:
    """
    The driver for C{protocol} (C{line}, C{irc} or C{ws}); C{host}
    (C{HOST:PORT}) is the server's, for the WebSocket request.
    """
    if protocol == "line":
        return LineDriver()
    if protocol == "irc":
        return IRCDriver(password, oper)
    if protocol == "ws":
        return WebSocketDriver(host)
    raise ValueError(f"unknown protocol {protocol!r}")
