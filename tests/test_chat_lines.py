"""
Tests for L{chatsvc.chat.lines}: the native line protocol of the chat,
on C{StringTransport}s with a L{Clock}, no reactor.

Everything the contract says about a line client is here: the login
replies, every command, both renderings as the recipient sees them,
harmless relayed text, flood pacing, the receive and send queues, the
login and idle timeouts, the connection caps and the shutdown notice.
"""

from __future__ import annotations

import json
import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial import unittest

from chatsvc.chat import lines
from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.testing import Clock, FakeListener, MemoryHistory, lineConnection
from tests.hypothesisprofiles import examples

#: Sat Nov 21 10:00:00 2026 UTC, the contract's example time.
START = 1795255200.0


def stamp(ts: float = START) -> str:
    return f"[{time.ctime(ts)}]"


class Peer:
    """
    One connection seen from the client's side: what we send, what we got.
    """

    def __init__(self, factory, host: str = "10.0.0.1", port: int = 40000) -> None:
        self.proto, self.transport = lineConnection(factory, host, port)

    def send(self, *lines: str | bytes) -> None:
        """
        Send lines, all in one read.
        """
        data = b"".join((x if isinstance(x, bytes) else x.encode("utf-8")) + b"\n" for x in lines)
        self.proto.dataReceived(data)

    def raw(self) -> bytes:
        """
        Everything received since the last call (the factory's write
        batcher is flushed first, as the next reactor turn would).
        """
        batcher = getattr(self.proto.factory, "batcher", None)
        if batcher is not None:
            batcher.flush()
        data = self.transport.value()
        self.transport.clear()
        return data

    def lines(self) -> list[str]:
        data = self.raw()
        if data:
            self.assertEndsWithNewline(data)
        # Lines end with LF only: U+2028 and friends are text.
        return data.decode("utf-8").split("\n")[:-1] if data else []

    def objects(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]

    @staticmethod
    def assertEndsWithNewline(data: bytes) -> None:
        assert data.endswith(b"\n"), data

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    @property
    def aborted(self) -> bool:
        return bool(getattr(self.transport, "disconnected", False))

    def lost(self) -> None:
        """
        The connection is gone (the peer closed, or our close completed).
        """
        self.proto.connectionLost(Failure(ConnectionDone()))


class ChatTestCase(unittest.SynchronousTestCase):
    limits = ChatLimits()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.history = MemoryHistory()
        self.hub = Hub(self.clock, self.history)
        self.factory = ChatFactory(self.hub, self.limits, self.clock)
        self._port = 40000

    def connect(self, host: str = "10.0.0.1") -> Peer:
        self._port += 1
        return Peer(self.factory, host, self._port)

    def login(self, name: str, room: str | None = None) -> Peer:
        """
        Connect and log in; earlier peers forget what they heard of it.
        """
        peer = self.connect()
        peer.send(name if room is None else f"{name} {room}")
        [reply] = peer.lines()
        self.assertTrue(reply.startswith("success: "), reply)
        for proto in self.factory.connections:
            proto.transport.clear()
        return peer


class LoginTests(ChatTestCase):
    def test_success(self) -> None:
        """
        The success line says who is there; each newcomer is announced.
        """
        alice = self.connect()
        alice.send("alice")
        self.assertEqual(alice.lines(), ["success: logged in as alice, in #lobby with: nobody"])
        bob = self.connect()
        bob.send("bob")
        self.assertEqual(bob.lines(), ["success: logged in as bob, in #lobby with: alice"])
        self.assertEqual(alice.lines(), [f"{stamp()} #lobby bob joined"])
        carol = self.connect()
        carol.send("  carol   #lobby  ")
        self.assertEqual(carol.lines(), ["success: logged in as carol, in #lobby with: alice, bob"])

    def test_room(self) -> None:
        """
        ROOM defaults to lobby; the C{#} is optional.
        """
        for line, room in [("a1 dev", "dev"), ("a2 #dev", "dev"), ("a3 #Ops", "Ops")]:
            peer = self.connect()
            peer.send(line)
            self.assertTrue(
                peer.lines()[0].startswith(
                    f"success: logged in as {line.split()[0]}, in #{room} with: "
                )
            )
        self.assertEqual(self.hub.who("dev"), ("dev", ["a1", "a2"]))

    def test_json(self) -> None:
        peer = self.connect()
        peer.send("/format json", "alice dev")
        info, success, join = peer.objects()
        self.assertEqual((info["type"], info["text"]), ("info", "format is now json"))
        self.assertEqual(success["type"], "success")
        self.assertEqual((success["name"], success["room"], success["names"]), ("alice", "dev", []))
        self.assertIn("ts", success)
        # In JSON one's own join is shown.
        self.assertEqual((join["type"], join["room"], join["name"]), ("join", "dev", "alice"))

    def test_reuse(self) -> None:
        """
        A taken name, in any case, width or script that looks the same,
        is C{reuse:}; the connection stays open for another try, and the
        holder hears nothing of it.
        """
        alice = self.login("alice")
        peer = self.connect()
        for name in ["alice", "ALICE", "ａｌｉｃｅ", "\u0430lice"]:
            peer.send(name)
            [line] = peer.lines()
            self.assertTrue(line.startswith("reuse: "), line)
            self.assertIn("taken", line)
            self.assertFalse(peer.closing)
        peer.send("alice2")
        self.assertTrue(peer.lines()[0].startswith("success: logged in as alice2"))
        self.assertEqual(alice.lines(), [f"{stamp()} #lobby alice2 joined"])

    def test_reuseJSON(self) -> None:
        self.login("alice")
        peer = self.connect()
        peer.send("/format json", "Alice")
        _, reuse = peer.objects()
        self.assertEqual((reuse["type"], reuse["code"]), ("error", "reuse"))

    def test_invalid(self) -> None:
        """
        A name or room that breaks the rules is C{error:} with the reason;
        the connection stays open.  Escape sequences, zero-width
        characters, NUL and bidi controls never make a name.
        """
        peer = self.connect()
        for line, why in [
            (b"1alice", "starts with a letter"),
            (b"ali\x1b[31mce", "(not U+001B)"),
            ("ali\u200bce".encode(), "(U+200B found)"),
            ("\u202ealice".encode(), "(U+202E found)"),
            ("al\u202eice".encode(), "(U+202E found)"),
            ("al\u2066ice".encode(), "(U+2066 found)"),
            ("alice\u200e".encode(), "(U+200E found)"),
            (b"al\x00ice", "(not U+0000)"),
            (b"al\xffice", "'\ufffd'"),
            (b"x" * 25, "at most 24"),
            (b"alice #", "at least one"),
            (b"alice 1room", "starts with a letter"),
            (b"alice r" + b"x" * 32, "at most 32"),
            (b"alice lobby extra", "NAME [ROOM]"),
        ]:
            peer.send(line)
            [reply] = peer.lines()
            self.assertTrue(reply.startswith("error: "), reply)
            self.assertIn(why, reply, line)
            self.assertFalse(peer.closing)
        self.assertEqual(self.hub.members, {})
        peer.send("alice")
        self.assertTrue(peer.lines()[0].startswith("success: "))

    def test_wrongProtocol(self) -> None:
        """
        An IRC client's registration, an HTTP request or a TLS handshake
        is not a login: one line saying what this port speaks, then close;
        nobody was logged in.
        """
        for first in [
            b"CAP LS 302\r\nNICK alice\r\nUSER alice 0 * :Alice\r\n",
            b"NICK alice\r\nUSER alice 0 * :Alice\r\n",
            b"PASS secret\r\nNICK alice\r\n",
            b"USER alice 0 * :Alice\r\n",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"POST /ws HTTP/1.0\r\n",
        ]:
            peer = self.connect()
            peer.proto.dataReceived(first)
            [reply] = peer.lines()
            spoken = "HTTP" if b"HTTP/" in first else "IRC"
            self.assertEqual(
                reply,
                "error: this port speaks the chatsvc line protocol (send NAME [ROOM]), "
                f"not {spoken}; closing",
            )
            self.assertTrue(peer.closing)
            self.assertEqual(self.hub.members, {})
            peer.lost()
        peer = self.connect()
        peer.proto.dataReceived(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        [reply] = peer.lines()
        self.assertIn("not TLS; closing", reply)
        self.assertTrue(peer.closing)

    def test_wrongProtocolNamesGateway(self) -> None:
        """
        Where the other protocol is served, the line says so; in JSON
        the error's code is C{wrong-protocol}.
        """
        self.factory.gateways["irc"] = "port 6667"
        peer = self.connect()
        peer.send("/format json", "NICK alice")
        _, error = peer.objects()
        self.assertEqual((error["type"], error["code"]), ("error", "wrong-protocol"))
        self.assertTrue(error["text"].endswith("not IRC; IRC is served at port 6667; closing"))

    def test_namesLikeCommands(self) -> None:
        """
        Only an IRC client's capitals are taken for IRC: a user called
        nick or Cap logs in as usual.
        """
        for line in ["nick", "Pass lobby", "cap dev", "USER", "get"]:
            peer = self.connect()
            peer.send(line)
            [reply] = peer.lines()
            self.assertTrue(reply.startswith("success: "), reply)

    def test_emptyLine(self) -> None:
        peer = self.connect()
        peer.send("")
        [reply] = peer.lines()
        self.assertTrue(reply.startswith("error: "), reply)

    def test_beforeLogin(self) -> None:
        """
        Before login only /format, /help and /quit work.
        """
        peer = self.connect()
        peer.send("/who")
        self.assertEqual(peer.lines(), ["error: log in first: send NAME [ROOM]"])
        peer.send("/help")
        self.assertTrue(peer.lines()[0].startswith("info: commands: "))
        peer.send("/quit")
        self.assertEqual(peer.lines(), ["info: bye"])
        self.assertTrue(peer.closing)

    def test_full(self) -> None:
        """
        Past C{maxClients} a connection gets one C{full:} line and is
        closed; once someone leaves there is room again.
        """
        self.factory.limits = self.factory.policy.limits = ChatLimits(maxClients=2)
        first = self.login("alice")
        self.login("bob")
        third = self.connect()
        self.assertEqual(third.raw(), b"full: the server is full (2 connections)\n")
        self.assertTrue(third.closing)
        self.assertEqual(len(self.factory.connections), 2)
        first.lost()
        self.login("carol")

    def test_perAddress(self) -> None:
        self.factory.limits = self.factory.policy.limits = ChatLimits(maxPerAddress=2)
        a = self.connect("10.0.0.9")
        self.connect("10.0.0.9")
        refused = self.connect("10.0.0.9")
        self.assertEqual(
            refused.raw(), b"error: too many connections from your address (limit 2)\n"
        )
        self.assertTrue(refused.closing)
        other = self.connect("10.0.0.10")
        self.assertEqual(other.raw(), b"")
        a.lost()
        self.assertEqual(self.connect("10.0.0.9").raw(), b"")

    def test_loopbackExempt(self) -> None:
        self.factory.limits = self.factory.policy.limits = ChatLimits(maxPerAddress=1)
        for _ in range(3):
            self.assertEqual(self.connect("127.0.0.1").raw(), b"")
        self.factory.limits = self.factory.policy.limits = ChatLimits(
            maxPerAddress=1, limitLoopback=True
        )
        self.assertEqual(self.connect("127.0.0.2").raw(), b"")
        self.assertTrue(self.connect("127.0.0.2").raw().startswith(b"error: too many"))


class LoginTimeoutTests(ChatTestCase):
    limits = ChatLimits(loginTimeout=30)

    def test_timeout(self) -> None:
        """
        One byte every few seconds does not reset the login timeout.
        """
        peer = self.connect()
        for _ in range(5):
            self.clock.advance(5)
            peer.proto.dataReceived(b"a")
        self.clock.advance(4.9)
        self.assertFalse(peer.closing)
        self.assertEqual(peer.raw(), b"")
        self.clock.advance(0.1)
        self.assertEqual(peer.lines(), ["error: login timeout: no login within 30 seconds"])
        self.assertTrue(peer.closing)

    def test_json(self) -> None:
        peer = self.connect()
        peer.send("/format json")
        peer.raw()
        self.clock.advance(30)
        [error] = peer.objects()
        self.assertEqual((error["type"], error["code"]), ("error", "timeout"))

    def test_failedAttemptsDoNotReset(self) -> None:
        self.login("alice")
        peer = self.connect()
        for _ in range(3):
            self.clock.advance(10)
            peer.send("alice")
        self.assertTrue(peer.closing)
        self.assertIn("login timeout", peer.lines()[-1])

    def test_cancelledByLogin(self) -> None:
        peer = self.login("alice")
        self.clock.advance(3600)
        self.assertFalse(peer.closing)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class IdleTimeoutTests(ChatTestCase):
    limits = ChatLimits(idleTimeout=60)

    def test_idle(self) -> None:
        """
        A line resets the idle clock; a partial line does not; the room
        sees the idler leave.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        self.clock.advance(59)
        alice.send("still here")
        bob.send("me too")
        for _ in range(5):
            self.clock.advance(11)
            alice.proto.dataReceived(b"x")
        bob.send("and now")
        self.clock.advance(4)
        self.assertFalse(alice.closing)
        self.clock.advance(1)
        self.assertEqual(alice.lines()[-1], "error: idle for 60 seconds, closing")
        self.assertTrue(alice.closing)
        self.assertEqual(
            bob.lines(),
            [
                f"{stamp(START + 59)} #lobby alice: still here",
                f"{stamp(START + 119)} #lobby alice left (idle)",
            ],
        )
        self.assertFalse(bob.closing)

    def test_off(self) -> None:
        self.factory.limits = ChatLimits(idleTimeout=0)
        alice = self.login("alice")
        self.clock.advance(86400)
        self.assertFalse(alice.closing)


class MessageTests(ChatTestCase):
    limits = ChatLimits(floodBurst=1000)

    def test_message(self) -> None:
        """
        A message reaches every other member, not the sender (text mode).
        """
        alice = self.login("alice")
        bob = self.login("bob")
        carol = self.login("carol", "dev")
        alice.send("hello")
        self.assertEqual(alice.raw(), b"")
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice: hello"])
        self.assertEqual(carol.raw(), b"")

    def test_contractExample(self) -> None:
        """
        In the contract's time zone, the contract's very line.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("hello")
        line = bob.lines()[0]
        if time.ctime(START) == "Sat Nov 21 10:00:00 2026":
            self.assertEqual(line, "[Sat Nov 21 10:00:00 2026] #lobby alice: hello")
        self.assertRegex(
            line, r"^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] #lobby alice: hello$"
        )

    def test_jsonAck(self) -> None:
        """
        In JSON one's own message comes back with its id: the ack.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("/format json")
        alice.raw()
        alice.send("hello", "/me waves", "again")
        objects = alice.objects()
        self.assertEqual(
            [(o["type"], o["from"], o["text"], o["id"], o["room"]) for o in objects],
            [
                ("message", "alice", "hello", 1, "lobby"),
                ("action", "alice", "waves", 2, "lobby"),
                ("message", "alice", "again", 3, "lobby"),
            ],
        )
        self.assertEqual(
            bob.lines(),
            [
                f"{stamp()} #lobby alice: hello",
                f"{stamp()} #lobby * alice waves",
                f"{stamp()} #lobby alice: again",
            ],
        )

    def test_jsonEvents(self) -> None:
        bob = self.login("bob")
        bob.send("/format json")
        bob.raw()
        alice = self.connect()
        alice.send("alice", "hi", "/nick alicia", "/quit gone fishing")
        join, message, rename, leave = bob.objects()
        self.assertEqual(join, {"type": "join", "ts": join["ts"], "room": "lobby", "name": "alice"})
        self.assertEqual(
            {k: message[k] for k in ("type", "room", "from", "text", "id")},
            {"type": "message", "room": "lobby", "from": "alice", "text": "hi", "id": 1},
        )
        self.assertEqual(
            (rename["type"], rename["from"], rename["to"]), ("rename", "alice", "alicia")
        )
        self.assertEqual(
            (leave["type"], leave["name"], leave["reason"]),
            ("leave", "alicia", "quit: gone fishing"),
        )
        self.assertTrue(join["ts"].endswith("Z"))

    def test_slashEscape(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("//join is a command", "//", "/ /")
        self.assertEqual(
            bob.lines(),
            [f"{stamp()} #lobby alice: /join is a command", f"{stamp()} #lobby alice: /"],
        )
        self.assertEqual(alice.lines(), ["error: unknown command / (try /help)"])

    def test_unknownCommandQuotedHarmlessly(self) -> None:
        """
        A reply that quotes what the user typed shows its controls
        harmlessly, in both renderings.
        """
        alice = self.login("alice")
        alice.send(b"/\x1b[2J\x07\xc2\x9b\xe2\x80\xae")
        [line] = alice.lines()
        self.assertEqual(line, "error: unknown command /\u238b[2J\u2407\ufffd\ufffd (try /help)")
        alice.send("/format json", b"/\x1b]52;c;x\x07")
        raw = alice.raw()
        for byte in (b"\x1b", b"\x07", b"\xc2\x9b", b"\xe2\x80\xae"):
            self.assertNotIn(byte, raw)

    def test_blank(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("", "   ", "\t")
        self.assertEqual(bob.raw(), b"")
        self.assertEqual(alice.raw(), b"")
        self.assertEqual(self.history.messages("lobby"), [])

    def test_keptAsSent(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("  indented\ttab  ")
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice:   indented\ttab  "])

    def test_harmless(self) -> None:
        """
        Escape sequences (CSI, OSC 52, a cursor report request, C1 CSI),
        BEL, NUL, a lone CR, bidi overrides and invalid UTF-8 reach the
        other terminal harmless: no 0x1B, 0x07, 0x9B or NUL, valid UTF-8.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        carol = self.login("carol")
        carol.send("/format json")
        carol.raw()
        hostile = [
            b"\x1b[2J\x1b[H",
            b"\x1b]52;c;aGVsbG8=\x07",
            b"\x1b[6n",
            "\u009b31m".encode(),
            b"\x9b31m",
            b"bell\x07",
            b"nul\x00here",
            b"a\rb",
            "\u202etxt.exe".encode(),
            b"\xff\xfe",
            b"\xc0\xaf",
            b"\x80",
            b"\xed\xa0\x80",
            b"\x7f",
        ]
        alice.send(*hostile)
        alice.send(b"/me \x1b[31mred")
        alice.send(b"/msg bob \x1b[31mred")
        alice.send(b"/quit \x1b[2J")
        for peer in (bob, carol):
            data = peer.raw()
            for bad in (b"\x1b", b"\x07", b"\x9b", b"\x00", b"\r", b"\x7f"):
                self.assertNotIn(bad, data)
            text = data.decode("utf-8")  # strict: valid UTF-8
            self.assertNotIn("\u202e", text)
            self.assertNotIn("\u009b", text)
            self.assertEqual(len(text.splitlines()), len(hostile) + 3 - (peer is carol))
        history = [e.text for e in self.history.messages("lobby")]
        self.assertEqual(history[0], "\u238b[2J\u238b[H")
        self.assertEqual(history[2], "\u238b[6n")
        self.assertEqual(history[6], "nul\u2400here")
        self.assertEqual(history[9], "\ufffd\ufffd")

    def test_crlf(self) -> None:
        alice = self.connect()
        alice.proto.dataReceived(b"alice\r\n")
        self.assertEqual(alice.lines(), ["success: logged in as alice, in #lobby with: nobody"])
        bob = self.login("bob")
        alice.proto.dataReceived(b"one\r\ntwo\n")
        self.assertEqual(
            bob.lines(), [f"{stamp()} #lobby alice: one", f"{stamp()} #lobby alice: two"]
        )

    def test_byteByByte(self) -> None:
        """
        The same stream one byte at a time (UTF-8 split mid-character)
        gives exactly the same result as one write.
        """
        stream = "zoë\nça va? ☕ \U0001f600\n/me 走\n".encode()
        results = []
        for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
            self.setUp()
            bob = self.login("bob")
            zoe = self.connect()
            for chunk in chunks:
                zoe.proto.dataReceived(chunk)
            results.append((zoe.raw(), bob.raw()))
        self.assertEqual(results[0], results[1])
        self.assertIn("ça va? ☕ \U0001f600".encode(), results[0][1])

    def test_tooLong(self) -> None:
        """
        An over-long line is refused with one error line, never relayed in
        part, and the connection stays.
        """
        self.factory.limits = ChatLimits(maxLine=64)
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("x" * 65)
        alice.proto.dataReceived(b"y" * 10000)
        alice.proto.dataReceived(b"y" * 10000 + b"\nshort\n")
        self.assertEqual(
            alice.lines(),
            ["error: line too long (limit 64 bytes), ignored"] * 2,
        )
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice: short"])
        self.assertFalse(alice.closing)
        alice.send("/format json", "z" * 100)
        _, error = alice.objects()
        self.assertEqual(error["code"], "too-long")


class CommandTests(ChatTestCase):
    limits = ChatLimits(floodBurst=1000)

    def test_me(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("/me waves", "/ME   dances  ", "/me", "/me   ")
        self.assertEqual(
            bob.lines(), [f"{stamp()} #lobby * alice waves", f"{stamp()} #lobby * alice dances"]
        )
        self.assertEqual(alice.lines(), ["error: usage: /me TEXT"] * 2)

    def test_msg(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob", "dev")
        carol = self.login("carol")
        alice.send("/msg BOB psst,  secret ")
        self.assertEqual(bob.lines(), [f"{stamp()} (private) alice: psst,  secret"])
        self.assertEqual(alice.lines(), [f"{stamp()} (private) -> bob: psst,  secret"])
        self.assertEqual(carol.raw(), b"")
        alice.send("/msg alice note to self")
        self.assertEqual(
            alice.lines(),
            [
                f"{stamp()} (private) -> alice: note to self",
                f"{stamp()} (private) alice: note to self",
            ],
        )
        alice.send("/msg bob \x1b[2J\u202e")
        self.assertEqual(alice.lines(), [f"{stamp()} (private) -> bob: \u238b[2J\ufffd"])
        bob.raw()
        alice.send("/msg nobody hi", "/msg bob", "/msg")
        self.assertEqual(
            alice.lines(),
            [
                "error: no user called nobody",
                "error: usage: /msg NAME TEXT",
                "error: usage: /msg NAME TEXT",
            ],
        )
        alice.send("/format json", "/msg bob psst")
        _, private = alice.objects()
        self.assertEqual(
            (private["type"], private["from"], private["to"], private["text"]),
            ("private", "alice", "bob", "psst"),
        )
        self.assertNotIn("room", private)
        self.assertEqual(self.history.messages("lobby"), [])

    def test_join(self) -> None:
        """
        /join leaves the current room (reason C{part}) and joins the new
        one; the reply says who is there.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        carol = self.login("carol", "dev")
        alice.send("/join #dev")
        self.assertEqual(alice.lines(), ["info: you are now in #dev with: carol"])
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice left (part)"])
        self.assertEqual(carol.lines(), [f"{stamp()} #dev alice joined"])
        alice.send("in dev")
        self.assertEqual(carol.lines(), [f"{stamp()} #dev alice: in dev"])
        self.assertEqual(bob.raw(), b"")
        alice.send("/join DEV", "/join new", "/join", "/join a b", "/join no.room")
        self.assertEqual(
            alice.lines(),
            [
                "info: you are already in #dev",
                "info: you are now in #new with: nobody",
                "error: usage: /join ROOM",
                "error: usage: /join ROOM",
                "error: a room name holds only letters, digits, '_' and '-' (not '.')",
            ],
        )
        self.assertEqual(self.hub.who("new"), ("new", ["alice"]))

    def test_joinNul(self) -> None:
        """
        A room name with NUL is refused at login and by /join: C{error:},
        no such room, nobody hears of it, the connection stays.
        """
        bob = self.login("bob")
        peer = self.connect()
        peer.send(b"alice lo\x00bby")
        [reply] = peer.lines()
        self.assertTrue(reply.startswith("error: "), reply)
        self.assertIn("U+0000", reply)
        self.assertFalse(peer.closing)
        peer.send("alice")
        [reply] = peer.lines()
        self.assertTrue(reply.startswith("success: logged in as alice,"), reply)
        bob.raw()
        peer.send(b"/join lo\x00bby")
        [reply] = peer.lines()
        self.assertTrue(reply.startswith("error: "), reply)
        self.assertIn("U+0000", reply)
        self.assertFalse(peer.closing)
        self.assertEqual(bob.raw(), b"")
        peer.send("/who")
        self.assertEqual(peer.lines(), ["info: #lobby: bob, alice"])

    def test_joinJSON(self) -> None:
        alice = self.login("alice")
        alice.send("/format json", "/join dev")
        _, info, join = alice.objects()
        self.assertEqual((info["type"], info["text"]), ("info", "you are now in #dev with: nobody"))
        self.assertEqual((join["type"], join["room"], join["name"]), ("join", "dev", "alice"))

    def test_topic(self) -> None:
        """
        /topic TEXT sets the room's topic, shown to the room (the setter
        included); /topic shows it; a newcomer sees it on joining, in its
        own format; hostile text is made harmless; too long is refused.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("/topic")
        self.assertEqual(alice.lines(), ["info: no topic in #lobby"])
        alice.send("/topic release on \x1b[2JFriday")
        shown = f"{stamp()} #lobby alice set the topic: release on \u238b[2JFriday"
        self.assertEqual(alice.lines(), [shown])
        self.assertEqual(bob.lines(), [shown])
        self.clock.advance(60)
        bob.send("/topic")
        self.assertEqual(bob.lines(), [shown])
        carol = self.connect()
        carol.send("/format json", "carol")
        _, success, joined, topic = carol.objects()
        self.assertEqual(success["type"], "success")
        self.assertEqual(
            (topic["type"], topic["room"], topic["from"], topic["text"]),
            ("topic", "lobby", "alice", "release on \u238b[2JFriday"),
        )
        self.assertEqual(topic["ts"], "2026-11-21T10:00:00.000000Z")
        self.assertEqual(joined["type"], "join")
        alice.raw()
        bob.raw()
        alice.send("/topic " + "x" * 1000)
        [error] = alice.lines()
        self.assertTrue(error.startswith("error: "), error)
        self.assertEqual(bob.raw(), b"")
        dave = self.login("dave", "dev")
        dave.send("/topic")
        self.assertEqual(dave.lines(), ["info: no topic in #dev"])

    def test_who(self) -> None:
        alice = self.login("alice")
        self.login("bob")
        self.login("carol", "dev")
        alice.send("/who", "/who #dev", "/who empty", "/who bad!")
        self.assertEqual(
            alice.lines(),
            [
                "info: #lobby: alice, bob",
                "info: #dev: carol",
                "info: #empty: nobody",
                "error: a room name holds only letters, digits, '_' and '-' (not '!')",
            ],
        )
        alice.send("/format json", "/who")
        _, who = alice.objects()
        self.assertEqual(
            (who["type"], who["room"], who["names"]), ("who", "lobby", ["alice", "bob"])
        )

    def test_rooms(self) -> None:
        alice = self.login("alice")
        self.login("bob")
        self.login("carol", "dev")
        alice.send("/rooms")
        self.assertEqual(alice.lines(), ["info: rooms: #dev (1), #lobby (2)"])
        alice.send("/format json", "/rooms")
        _, rooms = alice.objects()
        self.assertEqual(rooms["type"], "rooms")
        self.assertEqual(
            rooms["rooms"], [{"name": "dev", "members": 1}, {"name": "lobby", "members": 2}]
        )

    def test_nick(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("/nick alicia")
        # The rename is the acknowledgement, in every format.
        self.assertEqual(alice.lines(), [f"{stamp()} #lobby alice is now alicia"])
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice is now alicia"])
        alice.send("/nick BOB", "/nick ｂｏｂ", "/nick b0b!", "/nick", "/nick a b")
        lines_ = alice.lines()
        self.assertTrue(lines_[0].startswith("error: the name BOB is taken"), lines_)
        self.assertTrue(lines_[1].startswith("error: the name ｂｏｂ is taken"), lines_)
        self.assertTrue(lines_[2].startswith("error: a name holds only"), lines_)
        self.assertEqual(lines_[3:], ["error: usage: /nick NAME"] * 2)
        self.assertEqual(bob.raw(), b"")
        alice.send("/format json", "/nick bob")
        _, reuse = alice.objects()
        self.assertEqual((reuse["type"], reuse["code"]), ("error", "reuse"))
        # The old name is free again.
        self.login("alice")

    def test_history(self) -> None:
        """
        /history [N] sends the last N messages (default 20, capped) then
        an end line; JSON replays carry C{"history": true}.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        for i in range(25):
            alice.send(f"m{i}")
        self.clock.advance(1)
        alice.send("/me waves")
        bob.raw()
        bob.send("/history 3")
        self.assertEqual(
            bob.lines(),
            [
                f"{stamp()} #lobby alice: m23",
                f"{stamp()} #lobby alice: m24",
                f"{stamp(START + 1)} #lobby * alice waves",
                "info: end of history of #lobby (3 messages)",
            ],
        )
        bob.send("/history")
        got = bob.lines()
        self.assertEqual(len(got), 21)
        self.assertEqual(got[0], f"{stamp()} #lobby alice: m6")
        self.assertEqual(got[-1], "info: end of history of #lobby (20 messages)")
        bob.send("/history 100000")
        self.assertEqual(bob.lines()[-1], "info: end of history of #lobby (26 messages)")
        bob.send("/history 0")
        self.assertEqual(bob.lines(), ["info: end of history of #lobby (0 messages)"])
        for bad in ["-1", "x", "²", "５", "1 2", "1.5"]:
            bob.send(f"/history {bad}")
            self.assertEqual(bob.lines(), ["error: usage: /history [N]"], bad)
        self.assertFalse(bob.closing)
        bob.send("/format json", "/history 2")
        _, first, second, end = bob.objects()
        self.assertEqual(
            (first["type"], first["text"], first["id"], first["history"]),
            ("message", "m24", 25, True),
        )
        self.assertEqual((second["type"], second["id"], second["history"]), ("action", 26, True))
        self.assertEqual(
            (end["type"], end["text"]), ("info", "end of history of #lobby (2 messages)")
        )

    def test_historyCap(self) -> None:
        self.hub.historyLimit = 5
        alice = self.login("alice", "big")
        for i in range(10):
            alice.send(str(i))
        alice.send("/history 50")
        self.assertEqual(alice.lines()[-1], "info: end of history of #big (5 messages)")

    def test_replay(self) -> None:
        self.factory.limits = ChatLimits(replay=2)
        alice = self.login("alice")
        alice.send("one", "two", "three")
        bob = self.connect()
        bob.send("bob")
        self.assertEqual(
            bob.lines(),
            [
                "success: logged in as bob, in #lobby with: alice",
                f"{stamp()} #lobby alice: two",
                f"{stamp()} #lobby alice: three",
            ],
        )

    def test_format(self) -> None:
        alice = self.login("alice")
        alice.send("/format JSON")
        self.assertEqual(json.loads(alice.lines()[0])["text"], "format is now json")
        alice.send("/format xml")
        [error] = alice.objects()
        self.assertEqual((error["code"], error["text"]), ("usage", "usage: /format text|json"))
        alice.send("/format text", "/format")
        self.assertEqual(
            alice.lines(), ["info: format is now text", "error: usage: /format text|json"]
        )

    def test_quit(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("/quit gone fishing", "never handled")
        self.assertEqual(alice.lines(), ["info: bye"])
        self.assertTrue(alice.closing)
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice left (quit: gone fishing)"])
        alice.lost()
        self.assertEqual(bob.raw(), b"")
        self.assertIsNone(self.hub.find("alice"))
        self.assertEqual(self.history.messages("lobby"), [])

    def test_quitNoReason(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("/quit")
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice left (quit)"])

    def test_closed(self) -> None:
        """
        Closing the socket is /quit without a reason.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        alice.lost()
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice left (quit)"])
        self.assertNotIn(alice.proto, self.factory.connections)

    def test_partialLineThenReset(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.proto.dataReceived(b"half a li")
        alice.lost()
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice left (quit)"])

    def test_help(self) -> None:
        alice = self.login("alice")
        alice.send("/help")
        [line] = alice.lines()
        self.assertTrue(line.startswith("info: "))
        for command in [
            "/join",
            "/who",
            "/rooms",
            "/msg",
            "/me",
            "/nick",
            "/history",
            "/format",
            "/quit",
            "/help",
            "//",
        ]:
            self.assertIn(command, line)

    def test_unknown(self) -> None:
        alice = self.login("alice")
        bob = self.login("bob")
        alice.send("/frobnicate now", "/")
        self.assertEqual(
            alice.lines(),
            [
                "error: unknown command /frobnicate (try /help)",
                "error: unknown command / (try /help)",
            ],
        )
        self.assertEqual(bob.raw(), b"")
        alice.send("/format json", "/x")
        _, error = alice.objects()
        self.assertEqual((error["type"], error["code"]), ("error", "unknown-command"))

    def test_commandsCaseInsensitive(self) -> None:
        alice = self.login("alice")
        alice.send("/WHO", "/Rooms")
        self.assertEqual(alice.lines(), ["info: #lobby: alice", "info: rooms: #lobby (1)"])

    def test_halfClose(self) -> None:
        """
        A client that half-closes gets every reply due, then the close.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        alice.proto.dataReceived(b"/who\nbye all")
        alice.proto.readConnectionLost()
        self.assertEqual(alice.lines(), ["info: #lobby: alice, bob"])
        self.assertEqual(bob.lines(), [f"{stamp()} #lobby alice: bye all"])
        self.assertTrue(alice.closing)


class LongListTests(ChatTestCase):
    """
    Lists longer than a line (a thousand users of long names, a thousand
    rooms) are split over several lines, each within the server's own
    line limit, in both renderings.
    """

    def setUp(self) -> None:
        super().setUp()
        self.names = [f"user{i:04d}" + "x" * 16 for i in range(1000)]
        for name in self.names:
            self.hub.join(self.hub.login(name, FakeListener()), "lobby")

    def assertWithinLimit(self, lines: list[str]) -> None:
        for line in lines:
            self.assertLessEqual(len(line.encode()), self.limits.maxLine)

    def test_loginAndWho(self) -> None:
        peer = self.connect()
        peer.send("alice")
        lines = peer.lines()
        self.assertWithinLimit(lines)
        self.assertGreater(len(lines), 10)
        self.assertTrue(
            lines[0].startswith(f"success: logged in as alice, in #lobby with (1/{len(lines)}): ")
        )
        self.assertTrue(lines[-1].startswith(f"info: #lobby ({len(lines)}/{len(lines)}): "))
        listed = [n for line in lines for n in line.split("): ", 1)[1].split(", ")]
        self.assertEqual(listed, self.names)
        peer.send("/format json", "/who")
        _, *objects = peer.objects()
        self.assertWithinLimit(
            [json.dumps(o, ensure_ascii=False, separators=(",", ":")) for o in objects]
        )
        self.assertEqual({o["type"] for o in objects}, {"who"})
        self.assertEqual([n for o in objects for n in o["names"]], [*self.names, "alice"])

    def test_rooms(self) -> None:
        for i, name in enumerate(self.names):
            self.hub.join(self.hub.find(name), f"room{i:04d}" + "y" * 20)
        peer = self.login("alice", "dev")
        peer.send("/rooms")
        lines = peer.lines()
        self.assertWithinLimit(lines)
        self.assertGreater(len(lines), 10)
        self.assertTrue(
            lines[0].startswith(f"info: rooms (1/{len(lines)}): #dev (1), #lobby (1000), ")
        )
        peer.send("/format json", "/rooms")
        _, *objects = peer.objects()
        self.assertEqual(len({o["parts"] for o in objects}), 1)
        self.assertEqual(len([r for o in objects for r in o["rooms"]]), 1002)

    def test_join(self) -> None:
        peer = self.login("alice", "dev")
        peer.send("/join lobby")
        lines = peer.lines()
        self.assertWithinLimit(lines)
        self.assertTrue(lines[0].startswith(f"info: you are now in #lobby with (1/{len(lines)}): "))


class FloodTests(ChatTestCase):
    limits = ChatLimits(floodBurst=5, floodRate=2, recvQueue=20)

    def flooder(self):
        alice = self.login("alice")
        bob = self.login("bob")
        self.clock.advance(60)  # the login took a token: fill up again
        return alice, bob

    def messages(self, peer: Peer) -> list[str]:
        return [line.split(": ", 1)[1] for line in peer.lines()]

    def test_paced(self) -> None:
        """
        Lines beyond the burst are delayed, not lost, and stay in order;
        meanwhile the socket is not read.
        """
        alice, bob = self.flooder()
        alice.send(*[f"m{i}" for i in range(15)])
        self.assertEqual(self.messages(bob), [f"m{i}" for i in range(5)])
        self.assertEqual(alice.transport.producerState, "paused")
        self.clock.advance(0.5)
        self.assertEqual(self.messages(bob), ["m5"])
        self.clock.advance(2)
        self.assertEqual(self.messages(bob), [f"m{i}" for i in range(6, 10)])
        self.clock.advance(60)
        self.assertEqual(self.messages(bob), [f"m{i}" for i in range(10, 15)])
        self.assertEqual(alice.transport.producerState, "producing")
        self.assertEqual([e.id for e in self.history.messages("lobby")], list(range(1, 16)))
        self.assertFalse(alice.closing)

    def test_commandsPacedInOrder(self) -> None:
        """
        Commands wait their turn like messages: replies stay in order.
        """
        alice, bob = self.flooder()
        alice.send(*[f"m{i}" for i in range(5)], "/who", "m5")
        self.assertEqual(alice.raw(), b"")
        self.clock.advance(0.5)
        self.assertEqual(alice.lines(), ["info: #lobby: alice, bob"])
        self.clock.advance(0.5)
        self.assertEqual(len(bob.lines()), 6)

    def test_othersUnaffected(self) -> None:
        alice, bob = self.flooder()
        carol = self.login("carol")
        alice.send(*[f"m{i}" for i in range(15)])
        bob.raw()
        carol.send("hello while alice floods")
        self.assertEqual(self.messages(bob), ["hello while alice floods"])

    def test_recvQueueOverflow(self) -> None:
        """
        Past the receive queue: one C{error:} line and the connection
        closes; the room sees the flooder leave.
        """
        alice, bob = self.flooder()
        alice.send(*[f"m{i}" for i in range(5 + 20)])
        self.assertFalse(alice.closing)  # exactly at the limit
        self.clock.advance(60)
        bob.raw()
        alice.send(*[f"m{i}" for i in range(5 + 21)])
        self.assertEqual(
            alice.lines()[-1], "error: flood: more than 20 lines waiting, disconnecting"
        )
        self.assertTrue(alice.closing)
        self.assertEqual(bob.lines()[-1], f"{stamp(START + 120)} #lobby alice left (flood)")
        self.assertIsNone(self.hub.find("alice"))

    def test_emptyLinesCount(self) -> None:
        alice, _ = self.flooder()
        alice.proto.dataReceived(b"\n" * 1000)
        self.assertTrue(alice.closing)

    def test_tooLongIsNotFlood(self) -> None:
        """
        An over-long line is refused, not paced: it takes no flood token
        and does not count toward the receive queue, so more refused lines
        than the burst and the queue together still leave the connection
        open and the next message goes out at once.
        """
        alice, bob = self.flooder()
        tooLong = "x" * (self.limits.maxLine + 1)
        alice.send(*[tooLong] * 30, "after")
        self.assertFalse(alice.closing)
        self.assertEqual(
            alice.lines(),
            [f"error: line too long (limit {self.limits.maxLine} bytes), ignored"] * 30,
        )
        self.assertEqual(self.messages(bob), ["after"])
        self.assertEqual(alice.transport.producerState, "producing")


class SendQueueTests(ChatTestCase):
    limits = ChatLimits(sendQueue=4096, floodBurst=10000, recvQueue=10000)

    def test_tooSlow(self) -> None:
        """
        A member whose unsent output passes the send-queue limit is cut
        off: nothing more is written for it, the room sees it leave
        C{(too slow)}, and neither the hub nor the factory keeps it.
        """
        alice = self.login("alice")
        slow = self.login("slow")
        bob = self.login("bob")
        slow.proto.pauseProducing()  # the transport's buffer is full
        self.assertEqual(slow.transport.producerState, "paused")  # not read meanwhile
        line = "x" * 100
        for _ in range(60):
            alice.send(line)
        # Output queued for this turn and not yet sent is dropped with the
        # connection: never more than the limit reaches the transport.
        written = len(slow.raw())
        self.assertLessEqual(written, 4096 + 200)
        self.assertTrue(slow.aborted)
        self.assertEqual(len(bob.lines()), 60)
        alice.send("after")
        self.assertEqual(slow.raw(), b"")
        slow.lost()
        self.assertEqual(
            bob.lines(),
            [f"{stamp()} #lobby alice: after", f"{stamp()} #lobby slow left (too slow)"],
        )
        self.assertNotIn(slow.proto, self.factory.connections)
        self.assertIsNone(self.hub.find("slow"))
        self.assertEqual(self.hub.who("lobby"), ("lobby", ["alice", "bob"]))

    def test_recovers(self) -> None:
        """
        A reader that catches up before the limit is not cut off, and its
        input is read again.
        """
        alice = self.login("alice")
        slow = self.login("slow")
        slow.proto.pauseProducing()
        for _ in range(10):
            alice.send("x" * 100)
        slow.proto.resumeProducing()
        self.assertEqual(slow.transport.producerState, "producing")
        for _ in range(60):
            alice.send("x" * 100)
        self.assertFalse(slow.closing)
        self.assertEqual(len(slow.lines()), 70)


class ShutdownTests(ChatTestCase):
    def test_notice(self) -> None:
        """
        Every connection gets a last line saying the server is shutting
        down, in its own format; nobody hears the others leave; the
        Deferred fires once all are gone.
        """
        alice = self.login("alice")
        bob = self.login("bob")
        bob.send("/format json")
        bob.raw()
        anonymous = self.connect()
        d = self.factory.closeAll()
        self.assertEqual(alice.lines(), ["info: server shutting down"])
        [notice] = bob.objects()
        self.assertEqual((notice["type"], notice["text"]), ("info", "server shutting down"))
        self.assertEqual(anonymous.lines(), ["info: server shutting down"])
        for peer in (alice, bob, anonymous):
            self.assertTrue(peer.closing)
        self.assertNoResult(d)
        alice.lost()
        bob.lost()
        self.assertEqual(alice.raw() + bob.raw(), b"")
        self.assertNoResult(d)
        anonymous.lost()
        self.successResultOf(d)

    def test_graceThenAbort(self) -> None:
        alice = self.login("alice")
        d = self.factory.closeAll(grace=2)
        self.clock.advance(2)
        self.assertTrue(alice.aborted)
        alice.lost()
        self.successResultOf(d)


class FuzzTests(ChatTestCase):
    limits = ChatLimits(floodBurst=10**6, floodRate=10**6, recvQueue=10**6)

    def test_everyOutcomeIsAReply(self) -> None:
        """
        Random command lines never raise, and every line but a room
        message (not echoed in text mode) or a blank one is answered: at
        least one well-formed line in the peer's format, nothing raw.
        """
        import random

        rng = random.Random(4)
        words = [
            "/", "//", "/join", "/who", "/rooms", "/msg", "/me", "/nick", "/history",
            "/format", "/quit", "/help", "#", "a", "bob", "json", "text", "²", "-1", "0",
            "\u200b", "\x1b", "é", "\u0430", "ALICE", "lobby", "\t", "\u2028", "\ufffd",
        ]  # fmt: skip
        textLine = re.compile(r"(success|reuse|error|info|full): |\[[^]]+\] ")
        peers = [self.connect() for _ in range(4)]
        answered = 0
        for _ in range(3000):
            index = rng.randrange(len(peers))
            peer = peers[index]
            if peer.closing:
                peer.lost()
                peers[index] = self.connect()
                continue
            line = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 4)))
            loggedIn = peer.proto.session.member is not None
            fmt = peer.proto.session.format
            peer.raw()  # what others caused so far
            peer.send(line)
            out = peer.lines()
            command = line.split()[0].lower() if line.split() else ""
            message = not line.startswith("/") or line.startswith("//") or command == "/me"
            mayBeSilent = loggedIn and (not line.strip() or (fmt == "text" and message))
            if not mayBeSilent:
                self.assertTrue(out, f"no reply to {line!r}")
                answered += 1
            for reply in out:
                self.assertNotIn("\x1b", reply)
                if fmt == "json" and (loggedIn or command != "/format"):
                    obj = json.loads(reply)
                    self.assertIn("type", obj)
                    self.assertIn("ts", obj)
                elif not reply.startswith("{"):
                    self.assertIsNotNone(textLine.match(reply), (line, out))
        self.assertGreater(answered, 1000)


_PIECES = [
    b"hello",
    b" ",
    b"/me ",
    b"/msg bob ",
    b"//",
    b"/who",
    b"/nick x",
    b"\x1b[2J",
    b"\x07",
    b"\x00",
    b"\r",
    b"\xff",
    b"\xc2\x9b",
    b"\xe2\x80\xae",
    "é☕\U0001f600".encode(),
    b"\xf0\x9f",
]


class ChunkingPropertyTests(unittest.SynchronousTestCase):
    """
    Whatever a client sends, cut anywhere: the same replies and the same
    relayed lines as one write, and nothing harmful reaches the others.
    """

    def exchange(self, stream: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
        clock = Clock()
        clock.advance(START)
        hub = Hub(clock, MemoryHistory())
        factory = ChatFactory(hub, ChatLimits(floodBurst=10**6, recvQueue=10**6), clock)
        bob = Peer(factory, port=1)
        bob.send("bob")
        bob.raw()
        alice = Peer(factory, port=2)
        alice.send("alice")
        bob.raw()
        start = 0
        for cut in sorted(set(cuts)) + [len(stream)]:
            alice.proto.dataReceived(stream[start:cut])
            start = cut
        return alice.raw(), bob.raw()

    @settings(max_examples=examples(300))
    @given(
        st.lists(st.lists(st.sampled_from(_PIECES), max_size=6), max_size=8),
        st.lists(st.integers(min_value=0, max_value=400), max_size=20),
    )
    def test_chunking(self, lines, cuts) -> None:
        stream = b"".join(b"".join(line) + b"\n" for line in lines)
        cuts = [c for c in cuts if c <= len(stream)]
        whole = self.exchange(stream, [])
        self.assertEqual(self.exchange(stream, cuts), whole)
        relayed = whole[1]
        for bad in (b"\x1b", b"\x07", b"\x00", b"\r", b"\x9b"):
            self.assertNotIn(bad, relayed)
        relayed.decode("utf-8")


class ModuleTests(unittest.SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        The documented defaults: burst 20 then 5 lines/s, receive queue
        200 lines, login timeout 30 s, 1 MiB send queue, history 20.
        """
        limits = ChatLimits()
        self.assertEqual(
            (limits.floodBurst, limits.floodRate, limits.recvQueue, limits.loginTimeout),
            (20, 5.0, 200, 30.0),
        )
        self.assertEqual((limits.sendQueue, limits.historyDefault, limits.replay), (2**20, 20, 0))
        self.assertEqual((limits.maxClients, limits.maxPerAddress), (1000, 16))
        self.assertEqual(lines.DEFAULT_ROOM, "lobby")
