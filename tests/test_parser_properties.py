"""
Hypothesis properties of the parsers that take untrusted input
(docs/hardening.rst item 12): cmdserv's command parser, C{ls} path resolution,
the chat name rules and the UDP guard.

The number of examples comes from the hypothesis profile
(L{tests.hypothesisprofiles}; C{HYPOTHESIS_PROFILE}, default C{ci}).
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.trial import unittest

from chatsvc import cmdserv, listing
from chatsvc.chat.names import InvalidName, checkName, nameKeys
from chatsvc.udpservices import (
    OVERSIZED,
    REPLY,
    DatagramGuard,
    DaytimeDatagramProtocol,
    StampDatagramProtocol,
    TimeDatagramProtocol,
    UDPLimits,
)
from tests.hypothesisprofiles import examples
from tests.test_listing import makeTree, tempDir
from tests.test_udp import NOW, FakeDatagramTransport


class ParseCommandProperties(unittest.SynchronousTestCase):
    @settings(max_examples=examples(1000))
    @given(
        line=st.one_of(
            st.text(),
            st.builds(
                lambda word, gap, rest: word + gap + rest,
                st.sampled_from(["ls", "LS", "date", "os", "ip", "help", "Help", ""]),
                st.text(alphabet=" \t\u00a0\u3000", max_size=3),
                st.text(max_size=20),
            ),
        )
    )
    def test_neverRaises(self, line: str) -> None:
        """
        Any text parses to C{(None, "")} or to a command of the table with
        an argument only if that command takes one.
        """
        command, argument = cmdserv.parseCommand(line)
        self.assertIsInstance(argument, str)
        if command is None:
            self.assertEqual(argument, "")
        else:
            self.assertIn(command, cmdserv.COMMANDS.values())
            if not command.takesArgument:
                self.assertEqual(argument, "")


#: Path segments for L{ResolveInsideProperties}: the tree's names (its
#: symlinks point inside, outside, in chains and loops), two of our own,
#: and the special ones.
SEGMENTS = [
    "..",
    ".",
    "",
    "a",
    "b",
    "alpha",
    "beta",
    "gamma",
    "inner",
    "file.txt",
    "chain1",
    "absin",
    "out",
    "outrel",
    "chainout1",
    "backin",
    "loop1",
    "selfloop",
    "dangling",
    "up",
    "upout",
    "nosuch",
    "\x00",
]


class ResolveInsideProperties(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        base = tempDir(self)
        root = makeTree(base)
        # Two more: "a" a relative symlink inside, "b" a directory whose
        # "upout" leaves the root by two levels.
        os.symlink("beta", os.path.join(root, "a"))
        os.mkdir(os.path.join(root, "b"))
        os.symlink("../..", os.path.join(root, "b", "upout"))
        self.root = listing.resolveRoot(root)

    @settings(max_examples=examples(1000))
    @given(
        segments=st.lists(
            st.one_of(
                # Names that resolve inside, so that many requests succeed.
                st.sampled_from(["a", "b", "alpha", "beta", "gamma", "chain1", "absin", "up"]),
                st.sampled_from(SEGMENTS),
            ),
            max_size=8,
        ),
        leading=st.sampled_from(["", "/", "./", "//"]),
        trailing=st.sampled_from(["", "/"]),
        asBytes=st.booleans(),
    )
    def test_insideOrRefused(self, segments, leading, trailing, asBytes) -> None:
        """
        Every request resolves to a directory under the root (the root
        included), checked after resolving every symlink again, or is
        L{listing.Refused}; nothing else is raised.
        """
        request = leading + "/".join(segments) + trailing
        if asBytes:
            request = request.encode()
        try:
            path = listing.resolveInside(self.root, request)
        except listing.Refused:
            return
        real = os.path.realpath(path)
        for candidate in (path, real):
            self.assertTrue(
                candidate == self.root or candidate.startswith(self.root + b"/"),
                (request, path, real),
            )
        self.assertTrue(os.path.isdir(real), (request, path))


class NameProperties(unittest.SynchronousTestCase):
    @settings(max_examples=examples(1000))
    @given(
        name=st.one_of(
            st.text(max_size=40),
            st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12),
            st.from_regex(r"[a-zA-Z\u0430-\u044f\u00c0-\u00ff_\-0-9]{1,20}", fullmatch=True),
        )
    )
    def test_checkNameAndKeys(self, name: str) -> None:
        """
        C{checkName} raises nothing but L{InvalidName}; C{nameKeys} raises
        nothing for any name it accepts (as given and as shown).
        """
        try:
            shown = checkName(name)
        except InvalidName:
            return
        self.assertIsInstance(shown, str)
        for accepted in (name, shown):
            keys = nameKeys(accepted)
            self.assertEqual(len(keys), 2)
            self.assertTrue(all(isinstance(key, str) for key in keys))


class GuardProperties(unittest.SynchronousTestCase):
    @settings(max_examples=examples(1000))
    @given(
        kind=st.sampled_from(
            [StampDatagramProtocol, DaytimeDatagramProtocol, TimeDatagramProtocol]
        ),
        datagram=st.one_of(
            st.binary(max_size=600),
            st.text(max_size=100).map(lambda t: t.encode("utf-8")),
        ),
        host=st.sampled_from(["127.0.0.1", "192.0.2.7", "::1", "2001:db8::1"]),
        port=st.integers(0, 65535),
    )
    def test_noReplyTheGuardWouldAnswer(self, kind, datagram, host, port) -> None:
        """
        A random datagram gets no reply, or replies that the guard drops
        as reply-like or oversized if they come back (to any of our UDP
        services, from anywhere): one packet can never start a loop.
        """
        clock = task.Clock()
        clock.advance(NOW)
        proto = kind(DatagramGuard(clock, UDPLimits()))
        proto.makeConnection(FakeDatagramTransport(21567))
        proto.datagramReceived(datagram, (host, port))
        for reply, to in proto.transport.sent:
            self.assertEqual(to, (host, port))
            for back in (StampDatagramProtocol, DaytimeDatagramProtocol, TimeDatagramProtocol):
                # A separate process: its own guard, its own rate budget.
                guard = DatagramGuard(clock, UDPLimits())
                reason = guard.refusal(
                    reply, ("192.0.2.99", 40000), back.allowEmpty, back.refuseFourBytes
                )
                self.assertIn(reason, (REPLY, OVERSIZED), (kind, datagram, reply, back))
