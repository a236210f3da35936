"""
Every implementation of a seam of the chat core provides its interface
(L{chatsvc.chat.interfaces}), checked with C{verifyObject}: the ones the
server uses and the doubles of L{chatsvc.testing}.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial import unittest
from zope.interface.verify import verifyClass, verifyObject

from chatsvc.chat.history import SQLiteHistory
from chatsvc.chat.interfaces import IBatchedListener, IBus, IChatState, IHistory, IListener
from chatsvc.chat.rooms import LocalBus
from chatsvc.chat.state import LocalState
from chatsvc.testing import (
    FakeListener,
    MemoryHistory,
    RecordingBus,
    RecordingState,
)


class InterfaceTests(unittest.SynchronousTestCase):
    def check(self, interface, *objects) -> None:
        for obj in objects:
            self.assertTrue(verifyClass(interface, type(obj)))
            self.assertTrue(verifyObject(interface, obj))

    def test_state(self) -> None:
        self.check(IChatState, LocalState(), RecordingState())

    def test_bus(self) -> None:
        self.check(IBus, LocalBus(), RecordingBus())

    def test_history(self) -> None:
        directory = tempfile.mkdtemp(prefix="chatsvc-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        sqlite = SQLiteHistory(os.path.join(directory, "history.sqlite3"), reactor)
        self.check(IHistory, MemoryHistory(), sqlite)

    def test_listener(self) -> None:
        self.check(IListener, FakeListener())

    def test_batchedListeners(self) -> None:
        """
        The adapters whose output a write batcher sends let the room
        fan-out append to it (L{chatsvc.chat.fanout}).
        """
        from chatsvc.chat.lines import ChatLineProtocol
        from chatsvc.irc.protocol import IRCConnection
        from chatsvc.web.socket import WebChat

        for cls in (ChatLineProtocol, IRCConnection, WebChat):
            self.assertTrue(verifyClass(IBatchedListener, cls), cls)

    def test_recordingStateRecords(self) -> None:
        """
        The double records every call of the interface by name, and
        answers as L{LocalState} does.
        """
        state = RecordingState()
        self.assertIsNone(state.claim("n:1", "alice", ("alice",)))
        self.assertEqual(state.holder("alice"), ("n:1", "alice"))
        self.assertEqual(state.calls, ["claim", "holder"])
