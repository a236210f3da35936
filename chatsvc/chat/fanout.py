"""
Room fan-out without Python per recipient.

A room message goes to every member of the room.  Done member by member,
that is a Python call per recipient per message, and at chat loads it is
most of the server's time (benchmarks/RESULTS.md).  But most members of a
room read the very same bytes: every line client in text mode the same
line, every IRC client with the same capabilities the same PRIVMSG.  So
the Hub groups a room's members by what they read (L{FanoutGroup}) and,
per message, renders once per group and appends the one C{bytes} object
to every member's output buffer of this turn in a single C-level loop
(C{map(list.append, ...)}, consumed by a zero-length C{deque}).  The
write batcher then flushes each member once at the end of the turn, one
C{send} for all of that turn's messages.

What a member sees stays exactly what its adapter's C{deliver} would
have written: the member's buffer is the same list its own writes go to,
so the order of its output is the order of events; the sender of a
message, whose adapter may show it differently (not at all, as a
confirmation, with echo-message), is taken back out of the group's
append and handed the event through its C{deliver} as before; members
whose adapter does not batch are delivered to one by one.  What a member
must not have written once it decided to close is dropped at its flush,
and what piles up while its peer does not read is counted there too
(the adapters' C{flushOutput}).

An adapter takes part by giving its listener a C{fanout()} method (see
L{chatsvc.chat.interfaces.IBatchedListener}).
"""

from __future__ import annotations

from collections import deque
from itertools import repeat

__all__ = ["FanoutGroup", "RoomFanout"]

#: Runs an iterator to its end in C, keeping nothing.
_consume = deque(maxlen=0).extend


class FanoutGroup:
    """
    The members of one room who read the same bytes, and flush through the
    same batcher.

    @ivar render: makes (or finds) the bytes of an event for this group.
    @ivar buffers: each member's output buffer of this turn.
    @ivar members: the listeners to flush, in the order of C{buffers}.
    @ivar batcher: the write batcher that flushes them.
    @ivar marked: whether the batcher will flush this group this turn.
    """

    __slots__ = ("render", "buffers", "members", "batcher", "marked")

    def __init__(self, render, batcher) -> None:
        self.render = render
        self.batcher = batcher
        self.buffers: list[list] = []
        self.members: list = []
        self.marked = False

    def flushOutput(self) -> None:
        """
        The batcher's end of the turn: each member sends what it holds.
        """
        self.marked = False
        for member in self.members:
            member.flushOutput()


class RoomFanout:
    """
    One room's members as the fan-out sees them, made when the membership
    (or a member's rendering) changes and shared by every message until
    the next change.

    @ivar groups: the L{FanoutGroup}s.
    @ivar own: by member id, the buffer a member's own messages are taken
        back out of, its batcher, and its C{deliver} to hand them to.
    @ivar single: the C{deliver} of members whose adapter does not batch.
    """

    __slots__ = ("groups", "own", "single")

    def __init__(self, members) -> None:
        groups: dict = {}
        self.own: dict[str, tuple] = {}
        single = []
        for member in members:
            fanout = getattr(member.listener, "fanout", None)
            spec = fanout() if fanout is not None else None
            if spec is None:
                single.append(member.deliver)
                continue
            batcher, key, buffer, render = spec
            group = groups.get((id(batcher), key))
            if group is None:
                group = groups[(id(batcher), key)] = FanoutGroup(render, batcher)
            group.buffers.append(buffer)
            group.members.append(member.listener)
            self.own[member.id] = (buffer, batcher, member.deliver)
        self.groups = tuple(groups.values())
        self.single = tuple(single)

    def deliver(self, event) -> None:
        """
        Hand a room message to every local member of the room.
        """
        for group in self.groups:
            data = group.render(event)
            buffers = group.buffers
            _consume(map(list.append, buffers, repeat(data)))
            batcher = group.batcher
            batcher.pendingBytes += len(data) * len(buffers)
            if not group.marked:
                group.marked = True
                batcher.mark(group)
        origin = event.origin
        if origin is not None:
            own = self.own.get(origin)
            if own is not None:
                buffer, batcher, deliver = own
                batcher.pendingBytes -= len(buffer.pop())
                deliver(event)
        for deliver in self.single:
            deliver(event)
