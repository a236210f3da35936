"""
Tests for L{chatsvc.irc.wire} and L{chatsvc.irc.render}: parsing and
quoting IRC lines, decoding, formatting codes, and events as IRC lines
(cut to fit, never truncated, never able to inject a command).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from chatsvc.chat import events
from chatsvc.chat.events import Event
from chatsvc.chat.rooms import harmless
from chatsvc.irc import render, wire
from chatsvc.irc.wire import BadLine, Message, parse
from tests.hypothesisprofiles import examples


class ParseTests(unittest.SynchronousTestCase):
    def test_command_and_params(self) -> None:
        self.assertEqual(
            parse("privmsg #lobby :hello  there"),
            Message({}, "", "PRIVMSG", ["#lobby", "hello  there"]),
        )

    def test_spacesBetweenParams(self) -> None:
        """
        Several spaces count as one between parameters; only a space
        separates them (a no-break space is part of a parameter).
        """
        self.assertEqual(parse("NICK   bob\u00a0x ").params, ["bob\u00a0x"])

    def test_sourceAndTags(self) -> None:
        message = parse("@time=1;+draft/x=a\\sb\\:c;flag :me!u@h PRIVMSG #x :hi")
        self.assertEqual(message.tags, {"time": "1", "+draft/x": "a b;c", "flag": ""})
        self.assertEqual(message.source, "me!u@h")
        self.assertEqual(message.params, ["#x", "hi"])

    def test_emptyTrailing(self) -> None:
        self.assertEqual(parse("TOPIC #x :").params, ["#x", ""])

    def test_noCommand(self) -> None:
        for line in ("", "   ", ":source", "@a=b", "@a=b :src"):
            self.assertRaises(BadLine, parse, line)

    def test_tagEscapesRoundTrip(self) -> None:
        value = "a; b\\c\r\nd"
        self.assertEqual(wire.unescapeTag(wire.escapeTag(value)), value)
        self.assertEqual(wire.unescapeTag("x\\"), "x")
        self.assertEqual(wire.unescapeTag("\\q"), "q")

    @given(st.text(max_size=200))
    @settings(max_examples=examples(200))
    def test_anyLineParsesOrIsRefused(self, line: str) -> None:
        """
        Whatever a client sends, parsing either gives a command or says
        there is none: never another exception.
        """
        try:
            message = parse(line)
        except BadLine:
            return
        self.assertTrue(message.command)


class FormatTests(unittest.SynchronousTestCase):
    def test_trailingColon(self) -> None:
        self.assertEqual(wire.formatLine("s", "PRIVMSG", "#x", "hi"), ":s PRIVMSG #x :hi")
        self.assertEqual(wire.formatLine("s", "JOIN", "#x"), ":s JOIN #x")
        self.assertEqual(wire.formatLine(None, "ERROR", "a b"), "ERROR :a b")
        self.assertEqual(wire.formatLine("s", "NICK", ":odd"), ":s NICK ::odd")

    def test_numerics(self) -> None:
        self.assertEqual(wire.numeric("ERR_NICKNAMEINUSE"), "433")
        self.assertEqual(wire.numeric("ERR_INPUTTOOLONG"), "417")
        self.assertEqual(wire.numeric("RPL_ISUPPORT"), "005")


class TextTests(unittest.SynchronousTestCase):
    def test_decodeUTF8ElseLatin1(self) -> None:
        self.assertEqual(wire.decodeIRC("héllo".encode()), "héllo")
        self.assertEqual(wire.decodeIRC("héllo".encode("latin-1")), "héllo")
        self.assertEqual(wire.decodeIRC(b"\xff\xfe"), "\xff\xfe")

    def test_stripFormatting(self) -> None:
        self.assertEqual(
            wire.stripFormatting("\x02bold\x02 \x0304,12red\x03 \x1ditalic\x0f \x04ff0000x"),
            "bold red italic x",
        )
        self.assertEqual(wire.stripFormatting("plain"), "plain")

    def test_fitTextShort(self) -> None:
        self.assertEqual(wire.fitText("hello", 100), ["hello"])

    def test_fitTextAtSpaces(self) -> None:
        pieces = wire.fitText("aaaa bbbb cccc", 9)
        self.assertEqual(pieces, ["aaaa bbbb", "cccc"])

    @given(st.text(min_size=1, max_size=400), st.integers(min_value=4, max_value=120))
    @settings(max_examples=examples(300))
    def test_fitTextLosesNothing(self, text: str, room: int) -> None:
        """
        Every piece fits; joined again (with the spaces cut at) the text
        is whole: no character is cut or lost.
        """
        pieces = wire.fitText(text, room)
        for piece in pieces:
            self.assertLessEqual(len(piece.encode("utf-8")), room)
        rejoined = "".join(pieces)
        self.assertEqual(rejoined.replace(" ", ""), text.replace(" ", ""))


def event(kind: str, text: str = "", **fields) -> Event:
    defaults = {"room": "lobby", "name": "bob", "ts": 1795255200.25}
    defaults.update(fields)
    return Event(kind, defaults.pop("room"), defaults.pop("name"), text, **defaults)


class RenderTests(unittest.SynchronousTestCase):
    def test_kinds(self) -> None:
        cases = [
            (event(events.MESSAGE, "hi", id=3), ":bob!bob@chatsvc PRIVMSG #lobby :hi"),
            (
                event(events.ACTION, "waves", id=4),
                ":bob!bob@chatsvc PRIVMSG #lobby :\x01ACTION waves\x01",
            ),
            (
                event(events.PRIVATE, "psst", room=None, target="al"),
                ":bob!bob@chatsvc PRIVMSG al :psst",
            ),
            (event(events.JOIN), ":bob!bob@chatsvc JOIN #lobby"),
            (event(events.LEAVE, "part"), ":bob!bob@chatsvc PART #lobby"),
            (event(events.LEAVE, "part: later"), ":bob!bob@chatsvc PART #lobby :later"),
            (event(events.LEAVE, "quit"), ":bob!bob@chatsvc QUIT :Quit"),
            (event(events.LEAVE, "quit: gone"), ":bob!bob@chatsvc QUIT :Quit: gone"),
            (event(events.LEAVE, "too slow"), ":bob!bob@chatsvc QUIT :too slow"),
            (event(events.RENAME, target="robert"), ":bob!bob@chatsvc NICK robert"),
            (event(events.TOPIC, "news"), ":bob!bob@chatsvc TOPIC #lobby :news"),
        ]
        for each, expected in cases:
            self.assertEqual(each.encoded("irc"), expected.encode() + b"\r\n")

    def test_tags(self) -> None:
        message = event(events.MESSAGE, "hi", id=3)
        self.assertEqual(
            message.encoded("irc+tm"),
            b"@time=2026-11-21T10:00:00.250Z;msgid=lobby-3 :bob!bob@chatsvc PRIVMSG #lobby :hi\r\n",
        )
        self.assertTrue(message.encoded("irc+t").startswith(b"@time=2026-11-21T10:00:00.250Z :"))

    def test_longMessageIsSplitNotCut(self) -> None:
        """
        A message longer than an IRC line (one from the line protocol may
        be 2 KiB) becomes several PRIVMSGs of at most 512 bytes, on
        character boundaries; together they hold the whole text.
        """
        text = " ".join(["ééééé"] * 300) + " fin"
        lines = event(events.MESSAGE, text, id=1).encoded("irc+tm").split(b"\r\n")[:-1]
        self.assertGreater(len(lines), 1)
        head = b":bob!bob@chatsvc PRIVMSG #lobby :"
        parts = []
        for n, line in enumerate(lines):
            tags, _, body = line.partition(b" ")
            self.assertLessEqual(len(body) + 2, 512)
            self.assertTrue(body.startswith(head))
            self.assertEqual(b"msgid=" in tags, n == 0)
            parts.append(body[len(head) :].decode("utf-8"))
        self.assertEqual(" ".join(parts), text)

    def test_longActionKeepsCTCP(self) -> None:
        lines = event(events.ACTION, "x" * 1500, id=1).encoded("irc").split(b"\r\n")[:-1]
        self.assertGreater(len(lines), 2)
        for line in lines:
            self.assertLessEqual(len(line) + 2, 512)
            self.assertIn(b" :\x01ACTION ", line)
            self.assertTrue(line.endswith(b"\x01"))

    def test_noInjection(self) -> None:
        """
        Text from another side with CR, LF or NUL in it (the core makes it
        harmless first) stays one PRIVMSG: no second command.
        """
        text = harmless("hi\r\nQUIT :pwned\x00\rJOIN #x")
        data = event(events.MESSAGE, text, id=1).encoded("irc")
        self.assertEqual(data.count(b"\r\n"), 1)
        self.assertNotIn(b"\n", data[:-2])
        self.assertNotIn(b"\r", data[:-2])
        self.assertNotIn(b"\x00", data)

    def test_sharedBytes(self) -> None:
        """
        One rendering per capability set: every recipient gets the same
        bytes object.
        """
        message = event(events.MESSAGE, "hi", id=3)
        self.assertIs(message.encoded("irc"), message.encoded("irc"))

    def test_partOrQuit(self) -> None:
        self.assertTrue(render.isPart(event(events.LEAVE, "part")))
        self.assertTrue(render.isPart(event(events.LEAVE, "part: x")))
        self.assertFalse(render.isPart(event(events.LEAVE, "party")))
        self.assertFalse(render.isPart(event(events.LEAVE, "closed")))
