"""
Tests for L{chatsvc.chat.events} and L{chatsvc.chat.replies}: the text
rendering exactly as the contract's examples, the JSON rendering's keys,
one rendering per format shared by every recipient, formats registered
by adapters with their own endings, and events as plain data.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

from twisted.trial import unittest

from chatsvc.chat import events, replies
from chatsvc.chat.events import JSON, TEXT, Event, isoTime

#: A time with a fraction of a second, and one without.
TS = 1795255200.123456
WHOLE = 1795255200.0

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)$")


def stamp(ts: float = TS) -> str:
    return f"[{time.ctime(ts)}]"


def parsedTime(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def message(text: str = "hello", id: int = 7, ts: float = TS) -> Event:
    return Event(events.MESSAGE, "lobby", "alice", text, id=id, ts=ts)


ALL = [
    message(),
    Event(events.ACTION, "lobby", "alice", "waves", id=8, ts=TS),
    Event(events.JOIN, "lobby", "bob", ts=TS),
    Event(events.LEAVE, "lobby", "bob", "quit: gone fishing", ts=TS),
    Event(events.RENAME, "lobby", "bob", target="robert", ts=TS),
    Event(events.PRIVATE, None, "alice", "psst", target="bob", ts=TS),
    Event(events.TOPIC, "lobby", "alice", "release on Friday", ts=TS),
]


class TextRenderingTests(unittest.SynchronousTestCase):
    """
    The contract's examples, line for line.
    """

    def test_examples(self) -> None:
        expected = [
            f"{stamp()} #lobby alice: hello",
            f"{stamp()} #lobby * alice waves",
            f"{stamp()} #lobby bob joined",
            f"{stamp()} #lobby bob left (quit: gone fishing)",
            f"{stamp()} #lobby bob is now robert",
            f"{stamp()} (private) alice: psst",
            f"{stamp()} #lobby alice set the topic: release on Friday",
        ]
        for event, line in zip(ALL, expected, strict=True):
            self.assertEqual(event.encoded(TEXT), line.encode("utf-8") + b"\n")

    def test_ctime(self) -> None:
        """
        The stamp is C{time.ctime()} in square brackets, as in
        C{[Sat Nov 21 10:00:00 2026]}.
        """
        line = message().encoded(TEXT).decode()
        self.assertRegex(line, r"^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] #lobby ")

    def test_leaveReasons(self) -> None:
        for reason in ["quit", "quit: bye", "closed", "too slow", "part"]:
            line = Event(events.LEAVE, "dev", "bob", reason, ts=TS).encoded(TEXT)
            self.assertEqual(line, f"{stamp()} #dev bob left ({reason})\n".encode())

    def test_unicode(self) -> None:
        line = Event(events.MESSAGE, "café", "Zoë", "ça va ☕", id=1, ts=TS).encoded(TEXT)
        self.assertEqual(line.decode("utf-8"), f"{stamp()} #café Zoë: ça va ☕\n")

    def test_topicCleared(self) -> None:
        line = Event(events.TOPIC, "lobby", "alice", "", ts=TS).encoded(TEXT)
        self.assertEqual(line, f"{stamp()} #lobby alice cleared the topic\n".encode())

    def test_unknownKind(self) -> None:
        self.assertRaises(ValueError, events.renderText, Event("bogus", "lobby", "a", ts=TS))


class JSONRenderingTests(unittest.SynchronousTestCase):
    """
    The keys of the contract's table, and nothing missing.
    """

    def decoded(self, event: Event, history: bool = False) -> dict:
        data = event.encoded(JSON, history)
        self.assertTrue(data.endswith(b"\n"))
        self.assertEqual(data.count(b"\n"), 1)
        return json.loads(data)

    def test_keys(self) -> None:
        expected = {
            "message": {"type", "ts", "room", "from", "text", "id"},
            "action": {"type", "ts", "room", "from", "text", "id"},
            "join": {"type", "ts", "room", "name"},
            "leave": {"type", "ts", "room", "name", "reason"},
            "rename": {"type", "ts", "room", "from", "to"},
            "private": {"type", "ts", "from", "to", "text"},
            "topic": {"type", "ts", "room", "from", "text"},
        }
        for event in ALL:
            obj = self.decoded(event)
            self.assertEqual(set(obj), expected[obj["type"]], obj)
            self.assertEqual(obj["type"], event.kind)

    def test_values(self) -> None:
        objects = [self.decoded(e) for e in ALL]
        self.assertEqual(
            objects[0],
            {
                "type": "message",
                "ts": isoTime(TS),
                "room": "lobby",
                "from": "alice",
                "text": "hello",
                "id": 7,
            },
        )
        self.assertEqual(objects[1]["text"], "waves")
        self.assertEqual(objects[1]["id"], 8)
        self.assertEqual(objects[2]["name"], "bob")
        self.assertEqual(objects[3]["reason"], "quit: gone fishing")
        self.assertEqual((objects[4]["from"], objects[4]["to"]), ("bob", "robert"))
        self.assertEqual(
            (objects[5]["from"], objects[5]["to"], objects[5]["text"]), ("alice", "bob", "psst")
        )
        self.assertEqual(
            objects[6],
            {
                "type": "topic",
                "ts": isoTime(TS),
                "room": "lobby",
                "from": "alice",
                "text": "release on Friday",
            },
        )

    def test_roomWithoutHash(self) -> None:
        for event in ALL[:5] + ALL[6:]:
            self.assertEqual(self.decoded(event)["room"], "lobby")

    def test_timestamp(self) -> None:
        """
        ISO 8601, UTC, with microseconds, also on a whole second.
        """
        for ts in [TS, WHOLE, 0.5]:
            text = self.decoded(message(ts=ts))["ts"]
            self.assertRegex(text, ISO)
            self.assertAlmostEqual(parsedTime(text), ts, places=5)
        self.assertTrue(isoTime(WHOLE).endswith(".000000Z"))

    def test_history(self) -> None:
        """
        History replays are ordinary messages with C{"history": true}; the
        live rendering has no such key.
        """
        event = message()
        self.assertNotIn("history", self.decoded(event))
        replayed = self.decoded(event, history=True)
        self.assertIs(replayed["history"], True)
        del replayed["history"]
        self.assertEqual(replayed, self.decoded(event))
        self.assertEqual(event.encoded(TEXT, history=True), event.encoded(TEXT))

    def test_oneLine(self) -> None:
        """
        Whatever the text holds, one event is one line for every reader:
        U+2028 and U+2029, which C{str.splitlines} takes for line ends,
        are escaped too.
        """
        text = "a\nb\rc\x00d\x1be\u2028f\u2029g\x85h"
        data = message(text).encoded(JSON)
        self.assertEqual(len(data.decode("utf-8").splitlines()), 1)
        for raw in [b"\n", b"\r", b"\x00", b"\x1b", "\u2028".encode(), "\u2029".encode()]:
            self.assertNotIn(raw, data[:-1])
        self.assertEqual(json.loads(data)["text"], text)

    def test_unicodeNotEscaped(self) -> None:
        data = message("ça va ☕").encoded(JSON)
        self.assertIn("ça va ☕".encode(), data)


class EncodedOnceTests(unittest.SynchronousTestCase):
    def test_sameBytes(self) -> None:
        """
        An event is rendered once per format: every call gives the very
        same bytes object, so the fan-out shares it.
        """
        event = message()
        self.assertIs(event.encoded(TEXT), event.encoded(TEXT))
        self.assertIs(event.encoded(JSON), event.encoded(JSON))
        self.assertIs(event.encoded(JSON, True), event.encoded(JSON, True))
        self.assertIsNot(event.encoded(JSON), event.encoded(JSON, True))
        self.assertNotEqual(event.encoded(TEXT), event.encoded(JSON))

    def test_renderedOnce(self) -> None:
        calls = []
        original = events.renderText

        def counting(event):
            calls.append(event)
            return original(event)

        self.patch(events, "renderText", counting)
        event = message()
        for _ in range(100):
            event.encoded(TEXT)
        self.assertEqual(len(calls), 1)

    def test_repr(self) -> None:
        self.assertIn("message", repr(message()))


class RegistryTests(unittest.SynchronousTestCase):
    """
    Formats are open: an adapter registers its rendering and the ending
    its transport wants.
    """

    def register(self, name: str, render, ending: bytes = b"\n") -> None:
        events.register(name, render, ending)
        self.addCleanup(events.unregister, name)

    def test_builtIn(self) -> None:
        """
        The line formats are registered, each with a newline.
        """
        self.assertLessEqual({TEXT, JSON, events.SENT}, set(events.formats()))
        event = Event(events.PRIVATE, None, "alice", "psst", target="bob", ts=TS)
        self.assertEqual(event.encoded(events.SENT), f"{stamp()} (private) -> bob: psst\n".encode())

    def test_ending(self) -> None:
        """
        A registered format's bytes are its rendering plus its ending:
        none for a transport that frames by itself, CRLF for IRC.
        """
        self.register("frame", lambda event, history: f"{event.name}:{event.text}", b"")
        self.register("crlf", lambda event, history: f"<{event.text}>", b"\r\n")
        event = message()
        self.assertEqual(event.encoded("frame"), b"alice:hello")
        self.assertEqual(event.encoded("crlf"), b"<hello>\r\n")

    def test_reuseRendering(self) -> None:
        """
        An adapter may register a known rendering with another ending (a
        WebSocket's JSON frames).
        """
        self.assertEqual(events.RENDERINGS[JSON].ending, b"\n")
        self.register("json-frame", events.RENDERINGS[JSON].render, b"")
        event = message()
        self.assertEqual(event.encoded("json-frame") + b"\n", event.encoded(JSON))

    def test_renderedOncePerFormat(self) -> None:
        """
        A registered format is rendered once per event (and once more for
        a history replay, told to the rendering); the live rendering is
        kept under the bare name, which the fan-out reads directly.
        """
        calls = []

        def render(event, history):
            calls.append(history)
            return "replay" if history else "live"

        self.register("counted", render, b"")
        event = message()
        for _ in range(10):
            live = event.rendered.get("counted") or event.encoded("counted")
            self.assertEqual(live, b"live")
            self.assertEqual(event.encoded("counted", history=True), b"replay")
        self.assertEqual(calls, [False, True])
        self.assertIs(event.rendered["counted"], event.encoded("counted"))

    def test_unknown(self) -> None:
        """
        An unknown format is an error, not silently JSON.
        """
        self.assertRaises(KeyError, message().encoded, "nonesuch")
        self.assertRaises(KeyError, message().encoded, "nonesuch", True)

    def test_registeredTwice(self) -> None:
        """
        Registering the same rendering again is harmless; another one
        under a taken name is refused.
        """

        def render(event, history):
            return "x"

        self.register("twice", render)
        events.register("twice", render)
        self.assertRaises(ValueError, events.register, "twice", lambda e, h: "y")
        self.assertRaises(ValueError, events.register, "twice", render, b"")
        self.assertRaises(ValueError, events.register, TEXT, render)
        self.assertEqual(message().encoded("twice"), b"x\n")


class SerialisedTests(unittest.SynchronousTestCase):
    """
    Events are plain data: they can cross a process boundary.
    """

    def test_roundTrip(self) -> None:
        """
        Every kind of event survives C{json.dumps} and C{json.loads} of
        its dict, its origin (a member id) included, and renders the same
        afterwards.
        """
        kinds = set()
        for original in ALL + [Event(events.LEAVE, "dev", "bob", "part", ts=WHOLE)]:
            original.origin = "node1:42"
            original.encoded(TEXT)
            data = original.toDict()
            self.assertEqual(set(data), set(events.FIELDS))
            copy = Event.fromDict(json.loads(json.dumps(data)))
            kinds.add(copy.kind)
            for field in events.FIELDS:
                self.assertEqual(getattr(copy, field), getattr(original, field), field)
            self.assertEqual(copy.rendered, {})
            for fmt in (TEXT, JSON):
                self.assertEqual(copy.encoded(fmt), original.encoded(fmt))
        self.assertEqual(kinds, set(events.KINDS))

    def test_renderingsNotSerialised(self) -> None:
        event = message()
        event.encoded(TEXT)
        event.encoded(JSON, history=True)
        self.assertNotIn("rendered", event.toDict())
        self.assertEqual(event.toDict()["origin"], None)

    def test_unknownKeysIgnored(self) -> None:
        """
        A newer node may send more keys: they are ignored.
        """
        data = dict(message().toDict(), colour="blue")
        self.assertEqual(Event.fromDict(data).text, "hello")


class ReplyTests(unittest.SynchronousTestCase):
    """
    Replies to one connection: C{KIND: text} in text, objects with
    C{type} and C{ts} in JSON.
    """

    def test_text(self) -> None:
        self.assertEqual(replies.info(TEXT, TS, "bye"), b"info: bye\n")
        self.assertEqual(
            replies.error(TEXT, TS, "usage", "usage: /me TEXT"), b"error: usage: /me TEXT\n"
        )
        for kind in ["success", "reuse", "full", "error"]:
            self.assertEqual(replies.reply(TEXT, TS, kind, "x"), f"{kind}: x\n".encode())
        self.assertEqual(
            replies.reply(TEXT, TS, "who", "#lobby: a", names=["a"]), b"info: #lobby: a\n"
        )
        self.assertEqual(
            replies.reply(TEXT, TS, "rooms", "rooms: none", rooms=[]), b"info: rooms: none\n"
        )

    def decoded(self, data: bytes) -> dict:
        self.assertEqual(data.count(b"\n"), 1)
        obj = json.loads(data)
        self.assertRegex(obj["ts"], ISO)
        return obj

    def test_json(self) -> None:
        self.assertEqual(
            self.decoded(replies.info(JSON, TS, "bye")),
            {"type": "info", "ts": isoTime(TS), "text": "bye"},
        )
        error = self.decoded(replies.error(JSON, TS, "unknown-command", "no /x"))
        self.assertEqual(
            (error["type"], error["code"], error["text"]), ("error", "unknown-command", "no /x")
        )

    def test_reuseAndFull(self) -> None:
        """
        In JSON, C{reuse} and C{full} are errors with that code.
        """
        for kind in ["reuse", "full"]:
            obj = self.decoded(replies.reply(JSON, TS, kind, "taken"))
            self.assertEqual((obj["type"], obj["code"], obj["text"]), ("error", kind, "taken"))

    def test_success(self) -> None:
        obj = self.decoded(
            replies.reply(
                JSON, TS, "success", "logged in", name="alice", room="lobby", names=["bob"]
            )
        )
        self.assertEqual(obj["type"], "success")
        self.assertEqual((obj["name"], obj["room"], obj["names"]), ("alice", "lobby", ["bob"]))

    def listing(self, fmt, names, limit=2048):
        first = replies.ListLine("success", "logged in as alice, in #lobby with", {"name": "alice"})
        then = replies.ListLine("who", "#lobby", {"room": "lobby"})
        return replies.listing(fmt, TS, limit, first, then, "names", names, names)

    def test_listingFits(self) -> None:
        """
        A list that fits is one line, C{nobody} when empty.
        """
        self.assertEqual(
            self.listing(TEXT, []), [b"success: logged in as alice, in #lobby with: nobody\n"]
        )
        self.assertEqual(
            self.listing(TEXT, ["a", "b"]), [b"success: logged in as alice, in #lobby with: a, b\n"]
        )
        [line] = self.listing(JSON, ["a", "b"])
        obj = self.decoded(line)
        self.assertEqual((obj["names"], "part" in obj), (["a", "b"], False))

    def test_listingSplit(self) -> None:
        """
        A list longer than the line limit is split: every line within the
        limit, every name once and in order, parts numbered, the first
        line of the first kind and the rest of the second.
        """
        names = [f"u{i:03d}" + "\u00e9" * 19 for i in range(1000)]  # 24 characters, 43 bytes
        for limit in (2048, 512, 256):
            text = self.listing(TEXT, names, limit)
            self.assertGreater(len(text), 1)
            for line in text:
                self.assertLessEqual(len(line) - 1, limit)
            n = len(text)
            self.assertTrue(
                text[0].startswith(
                    f"success: logged in as alice, in #lobby with (1/{n}): ".encode()
                )
            )
            self.assertTrue(text[1].startswith(f"info: #lobby (2/{n}): ".encode()))
            shown = [x for line in text for x in line.decode()[:-1].split("): ", 1)[1].split(", ")]
            self.assertEqual(shown, names)
            objects = [self.decoded(line) for line in self.listing(JSON, names, limit)]
            for line in self.listing(JSON, names, limit):
                self.assertLessEqual(len(line) - 1, limit)
            self.assertEqual([o["type"] for o in objects[:2]], ["success", "who"])
            self.assertEqual([o["part"] for o in objects], list(range(1, len(objects) + 1)))
            self.assertEqual({o["parts"] for o in objects}, {len(objects)})
            self.assertEqual([x for o in objects for x in o["names"]], names)
            self.assertEqual(objects[0]["name"], "alice")
            self.assertEqual(objects[1]["room"], "lobby")
