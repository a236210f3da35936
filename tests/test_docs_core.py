"""
Tests for C{docs/core.rst}, the page on the chat core and its adapters.

The page's example adapter is run here as it is printed (its code blocks
are read from the page and executed), on one Hub with the line protocol,
so that a newcomer who copies it copies something that works; and every
API name the page mentions must name something in the code.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import inspect
import json
import re
import textwrap
from pathlib import Path

from twisted.trial import unittest
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyObject

from chatsvc.chat import events
from chatsvc.chat.lines import ChatFactory
from chatsvc.chat.session import ChatLimits, IChatSink
from chatsvc.testing import lineConnection

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "core.rst"

#: The directive of a code block of the page.
CODE = ".. code:: python"

#: An API name the page mentions: a dotted name in double backquotes,
#: perhaps called (C{``Hub.say(member, room, text)``}).
MENTIONED = re.compile(r"``([A-Za-z_][\w.]*)(?:\([^`]*\))?``")

#: Where a name the page mentions without its module is looked for.
MODULES = (
    "chatsvc.chat.rooms",
    "chatsvc.chat.session",
    "chatsvc.chat.events",
    "chatsvc.chat.state",
    "chatsvc.chat.interfaces",
    "chatsvc.chat.history",
    "chatsvc.chat.lines",
    "chatsvc.chat.replies",
    "chatsvc.testing",
    "chatsvc.net.lineproto",
    "chatsvc.net.output",
    "chatsvc.net.ratelimit",
    "chatsvc.net.text",
    "chatsvc.web.socket",
    "chatsvc.irc.session",
    "chatsvc.irc.protocol",
    "chatsvc.cluster.node",
    "chatsvc.cluster.replica",
)


def pageText() -> str:
    return PAGE.read_text(encoding="utf-8")


def codeBlocks(text: str) -> list[str]:
    """
    The code of every C{.. code:: python} block of C{text}, dedented.
    """
    lines = text.splitlines()
    blocks = []
    for start, line in enumerate(lines):
        if line.strip() != CODE:
            continue
        body = []
        for following in lines[start + 1 :]:
            if following.strip() and not following.startswith(" "):
                break
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
    return blocks


def runExample(test: unittest.SynchronousTestCase) -> dict:
    """
    Execute the page's code blocks, in order, in one namespace; the
    renderings they register are forgotten after C{test}.
    """
    namespace: dict = {"__name__": "docs_core_example"}
    for block in codeBlocks(pageText()):
        exec(compile(block, str(PAGE), "exec"), namespace)
    for name in namespace["FRAMES"].values():
        test.addCleanup(events.unregister, name)
    return namespace


def _module(dotted: str):
    """
    The longest importable prefix of C{dotted} and the rest of its parts.
    """
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:cut])), parts[cut:]
        except ImportError:
            continue
    return None, parts


def _hasAttribute(obj, name: str) -> bool:
    """
    Whether C{obj} has C{name}: an attribute, a name of an interface, or
    an attribute its class's own code assigns (C{self.name = ...}).
    """
    if isinstance(obj, InterfaceClass):
        return name in obj.names(all=True)
    if hasattr(obj, name):
        return True
    if inspect.isclass(obj):
        assigned = re.compile(rf"self\.{re.escape(name)}\s*[:=]")
        return any(
            assigned.search(inspect.getsource(cls))
            for cls in obj.__mro__
            if cls.__module__.startswith("chatsvc.")
        )
    return False


def resolves(dotted: str) -> bool:
    """
    Whether C{dotted} names something: C{chatsvc.X.Y} from its module,
    any other name from a builtin or one of L{MODULES}, then attribute by
    attribute.
    """
    if dotted.startswith("chatsvc."):
        module, rest = _module(dotted)
        candidates = [] if module is None else [module]
    else:
        rest = dotted.split(".")
        candidates = []
        for name in MODULES:
            try:
                candidates.append(importlib.import_module(name))
            except ImportError:
                continue
        candidates.append(builtins)
    for obj in candidates:
        for part in rest:
            if not _hasAttribute(obj, part):
                break
            if not isinstance(obj, InterfaceClass):
                obj = getattr(obj, part, None)
        else:
            return True
    return False


def mentionedNames(text: str) -> list[str]:
    """
    The API names C{text} mentions: dotted names from C{chatsvc.}, and
    names that start with a capital (classes, interfaces, constants).
    """
    names = []
    for match in MENTIONED.finditer(text):
        name = match.group(1).rstrip(".")
        if name.startswith("chatsvc.") or name[0].isupper():
            names.append(name)
    return names


class NamesTests(unittest.SynchronousTestCase):
    """
    Every API name on the page names something in the code.
    """

    def test_everyNameExists(self) -> None:
        """
        Every name is the code's, or the page's own example's.
        """
        example = runExample(self)
        names = mentionedNames(pageText())
        self.assertGreater(len(names), 50)
        missing = sorted(
            {name for name in names if name.split(".")[0] not in example and not resolves(name)}
        )
        self.assertEqual(missing, [], "docs/core.rst names what the code does not have")

    def test_missingNameFound(self) -> None:
        """
        The check sees a name that does not exist, so that an empty
        result above means something.
        """
        self.assertTrue(resolves("Hub.say"))
        self.assertTrue(resolves("IChatSink.holdInput"))
        self.assertTrue(resolves("ChatSession.pacing"))
        self.assertTrue(resolves("chatsvc.chat.events.register"))
        self.assertFalse(resolves("Hub.shout"))
        self.assertFalse(resolves("IChatSink.holdOutput"))
        self.assertFalse(resolves("NoSuchClass"))
        self.assertFalse(resolves("chatsvc.chat.nosuchmodule"))
        self.assertTrue(resolves("chatsvc.net.output"))
        self.assertFalse(resolves("chatsvc.net.nosuchmodule"))
        self.assertEqual(
            mentionedNames("``Hub.say(member, room, text)``, ``text``, ``b'\\n'``"), ["Hub.say"]
        )

    def test_linked(self) -> None:
        """
        The README leads to the page.
        """
        self.assertIn("docs/core.rst", (ROOT / "README.rst").read_text(encoding="utf-8"))


class ExampleTests(unittest.SynchronousTestCase):
    """
    The page's example adapter, run as printed.
    """

    def setUp(self) -> None:
        self.ns = runExample(self)
        self.clock = self.ns["clock"]
        self.hub = self.ns["hub"]
        self.population = self.ns["population"]

    def connect(self, limits=None):
        ns = self.ns
        return ns["FrameChat"](self.hub, self.population, ns["KeptFrames"](), limits)

    def frames(self, conn) -> list[str]:
        """
        What C{conn}'s transport was sent since the last call, as text;
        no frame carries a line ending.
        """
        sent = [frame.decode("utf-8") for frame in conn.transport.frames]
        del conn.transport.frames[:]
        for frame in sent:
            self.assertNotIn("\n", frame)
        return sent

    def test_asPrinted(self) -> None:
        """
        The page's own session: alice in text, bob in JSON, a message
        from alice reaches bob as one JSON object in one frame.
        """
        alice, bob = self.ns["alice"], self.ns["bob"]
        self.assertTrue(verifyObject(IChatSink, alice))
        self.assertEqual(
            self.frames(alice),
            [
                "success: logged in as alice, in #lobby with: nobody",
                "[Thu Jan  1 00:00:00 1970] #lobby bob joined",
            ],
        )
        message = json.loads(self.frames(bob)[-1])
        self.assertEqual(
            list(message), ["type", "ts", "room", "from", "text", "id"], "as the page shows"
        )
        self.assertEqual(
            (message["type"], message["room"], message["from"], message["text"], message["id"]),
            ("message", "lobby", "alice", "hello bob", 1),
        )

    def test_besideTheLineProtocol(self) -> None:
        """
        On one Hub and one population with the line protocol: both sides
        hear each other, each in its framing, and every frame reader of
        a format gets the very same bytes object.
        """
        factory = ChatFactory(self.hub, ChatLimits(), self.clock, self.population)
        proto, transport = lineConnection(factory)
        proto.dataReceived(b"carol\n")
        dave = self.connect()
        dave.frameReceived(b"/format json")
        dave.frameReceived(b"dave")
        bob = self.ns["bob"]
        self.frames(bob)
        self.frames(dave)
        self.clock.advance(0)
        transport.clear()
        proto.dataReceived(b"hi frames\n")
        [toBob], [toDave] = bob.transport.frames, dave.transport.frames
        self.assertIs(toBob, toDave)
        self.assertEqual(json.loads(toBob)["text"], "hi frames")
        self.ns["alice"].frameReceived(b"hi lines")
        self.clock.advance(0)
        self.assertTrue(transport.value().endswith(b"#lobby alice: hi lines\n"))

    def test_pacing(self) -> None:
        """
        Past the burst the transport is paused and the line waits, not
        lost; when the rate allows it is handled and reading resumes.
        """
        erin = self.connect(ChatLimits(floodBurst=2, floodRate=1))
        erin.frameReceived(b"erin")
        erin.frameReceived(b"/help")
        erin.frameReceived(b"/rooms")
        self.assertTrue(erin.transport.paused)
        self.assertEqual(len(self.frames(erin)), 2)
        self.clock.advance(1)
        self.assertFalse(erin.transport.paused)
        self.assertEqual(self.frames(erin), ["info: rooms: #lobby (3)"])

    def test_backlog(self) -> None:
        """
        While the shared backlog is over its limit, a frame waits; it is
        handled once the backlog drains.
        """
        backlog = self.population.backlog
        slowReader = object()
        backlog.grew(slowReader, backlog.limit + 1)
        self.ns["alice"].frameReceived(b"/who")
        self.assertEqual(self.ns["alice"].holds, {"backlog"})
        self.assertTrue(self.ns["alice"].transport.paused)
        backlog.drained(slowReader)
        self.assertEqual(self.ns["alice"].holds, set())
        self.assertEqual(self.frames(self.ns["alice"])[-1], "info: #lobby: alice, bob")

    def test_tooLong(self) -> None:
        """
        An over-long frame is refused in its turn and the connection
        stays.
        """
        alice = self.ns["alice"]
        self.frames(alice)
        alice.frameReceived(b"x" * 2049)
        alice.frameReceived(b"/who")
        self.assertEqual(
            self.frames(alice),
            [
                "error: line too long (limit 2048 bytes), ignored",
                "info: #lobby: alice, bob",
            ],
        )
        self.assertFalse(alice.transport.closed)

    def test_flooded(self) -> None:
        """
        More frames waiting than the receive queue allows: one line, then
        closed, and the member is gone.
        """
        frank = self.connect(ChatLimits(floodBurst=1, floodRate=1, recvQueue=2))
        frank.frameReceived(b"frank")
        for _ in range(3):
            frank.frameReceived(b"spam")
        self.assertEqual(
            self.frames(frank)[-1], "error: flood: more than 2 lines waiting, disconnecting"
        )
        self.assertTrue(frank.transport.closed)
        self.assertIsNone(self.hub.find("frank"))

    def test_shutdown(self) -> None:
        """
        Closing the line listener's factory says goodbye on the frame
        side too; connectionLost takes the session out of the population.
        """
        factory = ChatFactory(self.hub, ChatLimits(), self.clock, self.population)
        alice, bob = self.ns["alice"], self.ns["bob"]
        self.frames(alice)
        self.frames(bob)
        factory.closeAll("server shutting down")
        self.assertEqual(self.frames(alice), ["info: server shutting down"])
        self.assertTrue(alice.transport.closed)
        alice.connectionLost()
        self.assertNotIn(alice.session, self.population.sessions)
        [notice] = [json.loads(frame) for frame in self.frames(bob)]
        self.assertEqual((notice["type"], notice["text"]), ("info", "server shutting down"))

    def test_connectionLost(self) -> None:
        """
        A transport gone: the member leaves, and the room hears it.
        """
        alice, bob = self.ns["alice"], self.ns["bob"]
        self.frames(bob)
        alice.connectionLost()
        [left] = [json.loads(frame) for frame in self.frames(bob)]
        self.assertEqual((left["type"], left["name"], left["reason"]), ("leave", "alice", "quit"))
        self.assertEqual(self.hub.who("lobby"), ("lobby", ["bob"]))
