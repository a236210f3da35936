"""
Test doubles for code built on the chat, shipped with the package (as
C{treq.testing} is with treq).  Each double of a seam implements its
interface (L{chatsvc.chat.interfaces}).

  - L{RecordingBus}: the single-process bus (L{IBus}), remembering every
    event it carried;
  - L{FakeListener}: a member's listener (L{IListener}) that keeps what
    it is given;
  - L{RecordingState}: the single-process state (L{IChatState}),
    remembering which of its calls were made, so that a test can see
    what the Hub asks of it (and that delivery asks nothing);
  - L{MemoryHistory} (L{IHistory}), L{LocalState} and L{Clock},
    re-exported, so that C{Hub(Clock(), MemoryHistory(), RecordingBus())}
    is a whole chat domain without a reactor;
  - L{lineConnection}: a line protocol of a factory on a
    C{StringTransport}, as if a peer had connected;
  - L{MemorySink}: the transport side of a chat session in memory, one
    item per write, for driving a L{chatsvc.chat.session.ChatSession}
    without any framing.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from chatsvc.chat.events import Event
from chatsvc.chat.history import MemoryHistory
from chatsvc.chat.interfaces import IChatState, IListener
from chatsvc.chat.rooms import LocalBus
from chatsvc.chat.session import IChatSink
from chatsvc.chat.state import LocalState

__all__ = [
    "Clock",
    "FakeListener",
    "LocalState",
    "MemoryHistory",
    "MemorySink",
    "RecordingBus",
    "RecordingState",
    "lineConnection",
]


class RecordingBus(LocalBus):
    """
    A L{LocalBus} that remembers what it published, in order.

    @ivar events: every event published.
    """

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)
        super().publish(event)

    def kinds(self) -> list[str]:
        """
        The kinds of the events published, in order.
        """
        return [e.kind for e in self.events]


@implementer(IListener)
class FakeListener:
    """
    A member's listener that keeps every event delivered to it.

    @ivar events: the events, in order of delivery.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def texts(self, kind: str | None = None) -> list[str]:
        """
        The texts of the events delivered (of one kind, if given).
        """
        return [e.text for e in self.events if kind is None or e.kind == kind]

    def clear(self) -> None:
        del self.events[:]


def _recorded(name: str):
    method = getattr(LocalState, name)

    def recorded(self, *args):
        self.calls.append(name)
        return method(self, *args)

    recorded.__name__ = name
    recorded.__doc__ = method.__doc__
    return recorded


@implementer(IChatState)
class RecordingState(LocalState):
    """
    A L{LocalState} that remembers the name of every call made to it
    (through L{IChatState}), in order.

    @ivar calls: the names of the methods called.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []


for _name in IChatState.names():
    setattr(RecordingState, _name, _recorded(_name))
del _name


def lineConnection(factory, host: str = "10.0.0.1", port: int = 40000):
    """
    Connect a protocol of C{factory} to a C{StringTransport}, as a peer at
    C{host:port} would, honouring the factory's connection policy.

    @return: C{(protocol, transport)}.  The protocol may be a refusal.
    """
    peer = IPv4Address("TCP", host, port)
    proto = factory.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    proto.makeConnection(transport)
    return proto, transport


@implementer(IChatSink)
class MemorySink:
    """
    The transport side of a L{ChatSession} in memory: every write kept as
    one item (a frame, not a stream: nothing is split on line endings),
    input holds tracked, a close recorded.

    @ivar writes: what the session wrote, one bytes object per write.
    @ivar holds: the reasons input is held for now.
    @ivar closed: whether the session asked to close.
    """

    def __init__(self, ending: bytes = b"\n", renderings=None, maxLine: int = 2048) -> None:
        self.ending = ending
        self.maxLine = maxLine
        self.renderings = (
            renderings
            if renderings is not None
            else {
                "text": "text",
                "json": "json",
                "sent": "sent",
            }
        )
        self.writes: list[bytes] = []
        self.holds: set[str] = set()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def holdInput(self, reason: str) -> None:
        self.holds.add(reason)

    def releaseInput(self, reason: str) -> None:
        self.holds.discard(reason)

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[bytes]:
        """
        The writes since the last call.
        """
        writes, self.writes = self.writes, []
        return writes
