"""
Room fan-out without Python per recipient.

A room message goes to every member of the room.  Done member by member,
that is a Python call per recipient per message, and at chat loads it was
most of the server's time (benchmarks/RESULTS.md).  But most members of a
room read the very same bytes: every line client in text mode the same
line, every IRC client with the same capabilities the same PRIVMSG.  So
the Hub groups a room's members by what they read (L{FanoutGroup}), and a
message costs Python once per group, not once per member:

  - per group, one buffer of this turn's rendered messages (C{turn});
  - at a group's first message of a turn, every member's output buffer
    gets a token, C{(group, 0, None)}: "this group's messages of this
    turn, from the first", appended in one C-level loop
    (C{map(list.append, ...)} consumed by a zero-length C{deque});
  - at the end of the turn the write batcher flushes each member once;
    its flush (L{takeOutput<chatsvc.net.output.takeOutput>}) turns the token into the group's bytes,
    joined once per group and sent as they are to every member whose
    view is the whole turn: one C{send} per member per turn, whatever
    the number of messages.

What a member sees stays exactly what its adapter's C{deliver} would
have written, in the order of events:

  - a member's own writes (replies, private messages, joins: anything
    but room messages) go to the same output buffer; before one is
    appended, the member's open tokens are cut where the group's turn
    stands (L{appendOwn}), and continue after it;
  - the sender of a message, whose adapter may show it differently (not
    at all, as a confirmation, with echo-message), does not see the
    group's bytes of it (its buffer's index set in C{group.own}) and is
    handed the event through its C{deliver} as before;
  - members whose adapter does not batch are delivered to one by one;
  - what was appended once a member decided to close is dropped at its
    flush, and what piles up while its peer does not read is counted
    there (the adapters' C{flushOutput}).

An adapter takes part by giving its listener a C{fanout()} method (see
L{chatsvc.chat.interfaces.IBatchedListener}) and by writing through
L{chatsvc.net.output.appendOwn} and flushing through
L{chatsvc.net.output.takeOutput}.
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
    @ivar buffers: each member's output buffer.
    @ivar members: the listeners to flush (C{flushOutput}) or to send a
        whole turn to (C{sendOutput}), in the order of C{buffers}.
    @ivar batcher: the write batcher that flushes them.
    @ivar marked: whether this turn's messages are not flushed yet.
    @ivar turn: this turn's messages, rendered.
    @ivar own: by C{id()} of a sender's output buffer, the indexes in
        C{turn} of its own messages, which it does not read from here,
        and the sender's listener.
    @ivar token: what a member's buffer holds for "all of C{turn}".
    """

    __slots__ = (
        "render",
        "buffers",
        "members",
        "batcher",
        "marked",
        "turn",
        "own",
        "token",
        "_joined",
    )

    def __init__(self, render, batcher) -> None:
        self.render = render
        self.batcher = batcher
        self.buffers: list[list] = []
        self.members: list = []
        self.marked = False
        self.turn: list[bytes] = []
        self.own: dict[int, tuple[set[int], object]] = {}
        self.token = (self, 0, None)
        self._joined: tuple[int, bytes] = (0, b"")

    def whole(self) -> bytes:
        """
        All of this turn's messages, joined once.
        """
        turn = self.turn
        size, joined = self._joined
        if size != len(turn):
            joined = turn[0] if len(turn) == 1 else b"".join(turn)
            self._joined = (len(turn), joined)
        return joined

    def view(self, buffer: list, start: int, end: int | None) -> bytes:
        """
        This turn's messages from C{start} to C{end} (L{None}: the last),
        as the member whose output buffer is C{buffer} reads them.
        """
        turn = self.turn
        own = self.own.get(id(buffer)) if self.own else None
        if own is not None:
            own = own[0]
        if start == 0 and end is None and own is None:
            return self.whole()
        if end is None:
            end = len(turn)
        if own is None:
            return b"".join(turn[start:end])
        return b"".join([turn[i] for i in range(start, end) if i not in own])

    def flushOutput(self) -> None:
        """
        The batcher's end of the turn: each member sends what it holds,
        then the turn starts empty.
        """
        self.marked = False
        # Senders first: their view leaves their own messages out.
        for _, sender in self.own.values():
            sender.flushOutput()
        token = self.token
        whole = self.whole()
        for member, buffer in zip(self.members, self.buffers, strict=True):
            if buffer:
                if len(buffer) == 1 and buffer[0] is token:
                    # Most members: all of this turn's messages and
                    # nothing else, the same bytes for each.
                    buffer.clear()
                    member.sendOutput(whole)
                else:
                    member.flushOutput()
        self.turn = []
        self.own = {}
        self._joined = (0, b"")


class RoomFanout:
    """
    One room's members as the fan-out sees them, made when the membership
    (or a member's rendering) changes and shared by every message until
    the next change.

    @ivar groups: the L{FanoutGroup}s.
    @ivar own: by member id, the group a member is in, its output buffer,
        its listener, and its C{deliver} to hand its own messages to.
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
            self.own[member.id] = (group, buffer, member.listener, member.deliver)
        self.groups = tuple(groups.values())
        self.single = tuple(single)

    def deliver(self, event) -> None:
        """
        Hand a room message to every local member of the room.
        """
        for group in self.groups:
            turn = group.turn
            if not turn:
                # The group's first message this turn: one token per
                # member, and the group flushes them at the end of it.
                _consume(map(list.append, group.buffers, repeat(group.token)))
                if not group.marked:
                    group.marked = True
                    group.batcher.mark(group)
            data = group.render(event)
            turn.append(data)
            group.batcher.pendingBytes += len(data) * len(group.buffers)
        origin = event.origin
        if origin is not None:
            own = self.own.get(origin)
            if own is not None:
                group, buffer, listener, deliver = own
                turn = group.turn
                group.own.setdefault(id(buffer), (set(), listener))[0].add(len(turn) - 1)
                group.batcher.pendingBytes -= len(turn[-1])
                deliver(event)
        for deliver in self.single:
            deliver(event)
