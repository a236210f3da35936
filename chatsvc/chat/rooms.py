"""
The chat domain: names, rooms, membership, message ids, topics and events.

Pure Python: no sockets, no reactor, no formatting.  Time comes from the
C{clock} passed in (anything with C{seconds()}), history goes to the
store passed in (L{IHistory}), and every event leaves through one seam,
the bus (L{IBus}: L{LocalBus} here; a cluster's goes through Redis,
L{chatsvc.cluster.node}), which hands it back to L{Hub.deliver} on every
node.

What all nodes must agree on (taken names, who is in which room, message
ids, topics) is asked of a second seam, the state (L{IChatState}:
L{LocalState} by default).  The Hub itself keeps only what serves
delivery on this node: its own L{Member}s, and per room the local members
to hand events to.

A member may be in many rooms at once (IRC and web clients are); the
line protocol's "current room" is the line adapter's notion, not ours.
Adapters give each member a listener: any object with
C{deliver(event)}.
"""

from __future__ import annotations

import itertools
import uuid
from collections import deque

from twisted.internet.defer import Deferred
from zope.interface import implementer

from chatsvc.chat import events
from chatsvc.chat.events import PRIVATE, Event
from chatsvc.chat.fanout import RoomFanout
from chatsvc.chat.interfaces import IBus
from chatsvc.chat.names import InvalidName, checkName, checkRoom, nameKey, nameKeys, roomKey
from chatsvc.chat.state import LocalState
from chatsvc.net.text import neutralise

__all__ = [
    "Hub",
    "Member",
    "Room",
    "LocalBus",
    "ChatError",
    "NameTaken",
    "NoSuchName",
    "NotInRoom",
    "TooLong",
    "InvalidName",
    "harmless",
    "TOPIC_MAX",
]

#: The longest topic, in characters (IRC servers commonly allow 300-390).
TOPIC_MAX = 300


#: How ESC is shown to other users: U+238B, the keyboard symbol for
#: Escape, as L{chatsvc.net.text.neutralise} shows it.  Not its control
#: picture U+241B: that is E2 90 9B in UTF-8, and a terminal that reads
#: C1 controls from raw bytes takes 0x9B for CSI.  A U+241B typed as such
#: is shown as U+238B too, so relayed text has one picture of ESC and
#: never the bytes E2 90 9B.
SHOWN_ESC = "\u238b"

#: Events every member of a room reads alike but for their sender: the
#: grouped fan-out's (L{RoomFanout}); the rest go member by member.
_ROOM_TALK = frozenset({events.MESSAGE, events.ACTION})


def harmless(text: str) -> str:
    """
    Text as it may be relayed to other users, whatever adapter it came
    from: controls and bidi overrides neutralised (L{neutralise}), ESC
    shown as L{SHOWN_ESC}.  Text with nothing to change is returned as is.
    """
    text = neutralise(text)
    if "\u241b" in text:
        text = text.replace("\u241b", SHOWN_ESC)
    return text


class ChatError(Exception):
    """
    A request the rules refuse.  C{code} is the JSON rendering's error
    code, the message is for people.
    """

    code = "invalid"


class NameTaken(ChatError):
    code = "reuse"


class NoSuchName(ChatError):
    code = "no-such-name"


class NotInRoom(ChatError):
    code = "not-in-room"


class TooLong(ChatError):
    code = "too-long"


class Member:
    """
    One logged-in user of this node.

    @ivar id: unique per process and connection (C{NODE:N}): how events,
        the state and other nodes name this member.
    @ivar name: the name as shown.
    @ivar keys: the keys the name is taken under (L{nameKeys}).
    @ivar rooms: the rooms this member is in, by key.
    @ivar listener: the adapter's object that takes events (L{IListener}).
    """

    __slots__ = ("id", "name", "keys", "rooms", "listener", "deliver", "__weakref__")

    def __init__(self, name: str, listener, id: str = "") -> None:
        self.id = id
        self.name = name
        self.keys = nameKeys(name)
        self.rooms: dict[str, Room] = {}
        self.listener = listener
        # Bound once: the fan-out calls it for every recipient of every event.
        self.deliver = listener.deliver

    def __repr__(self) -> str:
        return f"<Member {self.name!r} {self.id}>"


class Room:
    """
    A room as this node sees it: its local members (in order of joining)
    and its most recent messages.  Its other members, its ids and its
    topic are the state's.

    @ivar targets: the bound C{deliver} of every local member, made on
        the first delivery after a change of members and shared by every
        delivery until the next (L{None}: to be made).
    @ivar fanout: the same members grouped by what they read, for room
        messages (L{RoomFanout}), made and shared likewise.
    """

    __slots__ = ("name", "key", "members", "targets", "fanout", "recent")

    def __init__(self, name: str, historyLimit: int) -> None:
        self.name = name
        self.key = roomKey(name)
        self.members: dict[Member, None] = {}
        self.targets: tuple | None = None
        self.fanout: RoomFanout | None = None
        self.recent: deque[Event] = deque(maxlen=historyLimit)

    def names(self) -> list[str]:
        """
        The names of the local members.
        """
        return [m.name for m in self.members]


@implementer(IBus)
class LocalBus:
    """
    The fan-out seam of a single process: publishing is delivering.
    """

    def __init__(self) -> None:
        self.hub: Hub | None = None

    def attach(self, hub: Hub) -> None:
        self.hub = hub

    def publish(self, event: Event) -> None:
        self.hub.deliver(event)


class Hub:
    """
    The chat's rules, over a state (L{IChatState}), a history
    (L{IHistory}) and a bus (L{IBus}).

    @ivar historyLimit: messages kept per room for C{/history} and replay.
    @ivar nodeId: this node's part of every member id.
    @ivar members: the members logged in on this node, by id.
    @ivar rooms: the rooms this node knows (has members of, or recent
        messages of), by key.
    """

    def __init__(
        self,
        clock,
        history=None,
        bus=None,
        historyLimit: int = 200,
        state=None,
        nodeId: str | None = None,
    ) -> None:
        from chatsvc.chat.history import MemoryHistory

        self.clock = clock
        self.history = history if history is not None else MemoryHistory()
        self.state = state if state is not None else LocalState()
        self.bus = bus if bus is not None else LocalBus()
        self.bus.attach(self)
        #: The bus gives room messages their ids and keeps them (a cluster
        #: bus, through Redis): they are recorded here as they are
        #: delivered, on every node, not as they are said.
        self.sequenced = getattr(self.bus, "sequenced", False)
        self.historyLimit = historyLimit
        self.nodeId = nodeId if nodeId is not None else uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self.members: dict[str, Member] = {}
        #: Local members by their first name key: private messages find
        #: their recipient here.
        self._byKey: dict[str, Member] = {}
        self.rooms: dict[str, Room] = {}

    def restore(self) -> None:
        """
        Take the rooms, their last message ids, recent messages and topics
        from the history store (at start, before anyone connects).
        """
        state = self.state
        for name, lastId, recent in self.history.load(self.historyLimit):
            key = roomKey(name)
            state.seedRoom(key, name, lastId)
            self._localRoom(key, state.roomName(key) or name).recent.extend(recent)
        for event in self.history.topics():
            state.setTopic(roomKey(event.room), event.room, event.text, event.name, event.ts)

    # -- names ---------------------------------------------------------

    def login(self, name: str, listener) -> Member | Deferred:
        """
        Take a name for a new member (in no room yet).

        With a shared state (a cluster) the claim is decided elsewhere:
        the result is then a Deferred that fires with the member or fails
        with L{NameTaken}.  The caller holds its user's input meanwhile,
        and calls L{quit} with the member if its user went away first.

        @raise InvalidName: the name breaks the rules.
        @raise NameTaken: someone holds it, or a name too much like it.
        """
        name = checkName(name)
        member = Member(name, listener, f"{self.nodeId}:{next(self._ids)}")
        holder = self.state.claim(member.id, name, member.keys)
        if isinstance(holder, Deferred):
            return holder.addCallback(self._claimed, member)
        return self._claimed(holder, member)

    def _claimed(self, holder: str | None, member: Member) -> Member:
        if holder is not None:
            raise NameTaken(f"the name {member.name} is taken (by {holder})")
        self.members[member.id] = member
        self._byKey[member.keys[0]] = member
        return member

    def rename(self, member: Member, newName: str) -> None | Deferred:
        """
        Change C{member}'s name; every room it is in hears of it.  A
        Deferred when the claim is decided elsewhere (see L{login}).
        """
        newName = checkName(newName)
        newKeys = nameKeys(newName)
        holder = self.state.rename(member.id, newName, newKeys)
        if isinstance(holder, Deferred):
            return holder.addCallback(self._renamed, member, newName, newKeys)
        return self._renamed(holder, member, newName, newKeys)

    def _renamed(self, holder: str | None, member: Member, newName: str, newKeys) -> None:
        if holder is not None:
            raise NameTaken(f"the name {newName} is taken (by {holder})")
        if self.members.get(member.id) is not member:
            return  # it left while the claim was decided; quit released it
        oldName = member.name
        if self._byKey.get(member.keys[0]) is member:
            del self._byKey[member.keys[0]]
        member.name, member.keys = newName, newKeys
        self._byKey[newKeys[0]] = member
        now = self.clock.seconds()
        for room in list(member.rooms.values()):
            self._publish(
                Event(events.RENAME, room.name, oldName, target=newName, ts=now, origin=member.id)
            )

    def renderingChanged(self, member: Member) -> None:
        """
        C{member} now reads other bytes (a format or capability changed):
        its rooms regroup their fan-out (L{RoomFanout}) at the next
        message.
        """
        for room in member.rooms.values():
            room.fanout = None

    def find(self, name: str) -> Member | None:
        """
        The member of this node called C{name} (by its key), or L{None}.
        """
        held = self.state.holder(nameKey(name))
        return None if held is None else self.members.get(held[0])

    # -- rooms ---------------------------------------------------------

    def _localRoom(self, key: str, name: str) -> Room:
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name, self.historyLimit)
        return room

    def room(self, name: str) -> Room | None:
        """
        The room called C{name}, if it exists.
        """
        key = roomKey(name)
        room = self.rooms.get(key)
        if room is None:
            shown = self.state.roomName(key)
            if shown is not None:
                room = self._localRoom(key, shown)
        return room

    def join(self, member: Member, name: str) -> Room:
        """
        Put C{member} into room C{name} (created on first join).
        """
        name = checkRoom(name)
        key = roomKey(name)
        room = self.rooms.get(key)
        if room is not None and member in room.members:
            return room
        shown = self.state.enter(key, name, member.id)
        room = self._localRoom(key, shown)
        room.members[member] = None
        room.targets = room.fanout = None
        member.rooms[key] = room
        self._publish(
            Event(events.JOIN, room.name, member.name, ts=self.clock.seconds(), origin=member.id)
        )
        return room

    def part(self, member: Member, room: Room, reason: str) -> None:
        """
        Take C{member} out of C{room}; the others hear why.
        """
        if self._leave(member, room):
            self._publish(
                Event(
                    events.LEAVE,
                    room.name,
                    member.name,
                    harmless(reason),
                    ts=self.clock.seconds(),
                    origin=member.id,
                )
            )
        self._forgetIfIdle(room)

    def _leave(self, member: Member, room: Room) -> bool:
        """
        Take C{member} out of C{room} here and in the state.

        @return: whether it was in.
        """
        if room.members.pop(member, False) is False:
            return False
        room.targets = room.fanout = None
        del member.rooms[room.key]
        self.state.leave(room.key, member.id)
        return True

    def _forgetIfIdle(self, room: Room) -> None:
        """
        A room without local members or recent messages is forgotten here
        (the state forgets it too if nobody anywhere is in it and nothing
        was ever said or set in it): joining random rooms must not grow
        the server.
        """
        if not room.members and not room.recent:
            self.rooms.pop(room.key, None)

    def quit(self, member: Member, reason: str = "quit", announce: bool = True) -> None:
        """
        C{member} leaves every room and gives up its name.
        """
        if self.members.get(member.id) is not member:
            return
        for room in list(member.rooms.values()):
            if announce:
                self.part(member, room, reason)
            else:
                self._leave(member, room)
                self._forgetIfIdle(room)
        del self.members[member.id]
        if self._byKey.get(member.keys[0]) is member:
            del self._byKey[member.keys[0]]
        self.state.release(member.id)

    def notice(self, text: str) -> None:
        """
        Tell every member of this node something about the server itself
        (a cluster node that lost Redis, and found it again): through its
        adapter's C{notice}, an C{info:} line or an IRC server NOTICE.
        """
        for member in list(self.members.values()):
            notice = getattr(member.listener, "notice", None)
            if notice is not None:
                notice(text)

    def evict(self, member: Member, why: str) -> None:
        """
        Disconnect C{member}: it lost its name (a cluster found someone
        else had taken it while this node was cut off).  Its adapter says
        why (C{evicted}) and closes.  The other nodes never knew it by
        that name, so only this node's rooms, which saw it join, see it
        leave.
        """
        evicted = getattr(member.listener, "evicted", None)
        if evicted is not None:
            evicted(why)
        rooms = list(member.rooms.values())
        self.quit(member, "evicted", announce=False)
        # Its rooms on this node saw it join: they see it go.
        now = self.clock.seconds()
        for room in rooms:
            self.deliver(
                Event(
                    events.LEAVE,
                    room.name,
                    member.name,
                    "quit: its name was taken elsewhere in the cluster",
                    ts=now,
                    origin=member.id,
                )
            )

    def who(self, name: str) -> tuple[str, list[str]]:
        """
        The room's name as shown and its members' names.
        """
        name = checkRoom(name)
        found = self.state.who(roomKey(name))
        return (name, []) if found is None else found

    def roomList(self) -> list[tuple[str, int]]:
        """
        Every room with members, and how many, by name.
        """
        return self.state.roomList()

    # -- topics --------------------------------------------------------

    def topic(self, room: Room) -> tuple[str, str, float] | None:
        """
        The topic of C{room}: C{(text, setter, ts)}, or L{None}.
        """
        return self.state.topic(room.key)

    def setTopic(self, member: Member, room: Room, text: str) -> Event:
        """
        Set the topic of a room C{member} is in (empty text: clear it);
        the room hears of it, and it is kept with the history.

        @raise NotInRoom: C{member} is not in C{room}.
        @raise TooLong: more than L{TOPIC_MAX} characters.
        """
        if member not in room.members:
            raise NotInRoom(f"you are not in #{room.name}")
        text = harmless(text.strip())
        if len(text) > TOPIC_MAX:
            raise TooLong(f"a topic is at most {TOPIC_MAX} characters (this one has {len(text)})")
        now = self.clock.seconds()
        self.state.setTopic(room.key, room.name, text, member.name, now)
        event = Event(events.TOPIC, room.name, member.name, text, ts=now, origin=member.id)
        self.history.setTopic(room.key, event)
        self._publish(event)
        return event

    # -- talking -------------------------------------------------------

    def say(self, member: Member, room: Room, text: str, kind: str = events.MESSAGE) -> Event:
        """
        A message (or an action) to a room C{member} is in.
        """
        if member not in room.members:
            raise NotInRoom(f"you are not in #{room.name}")
        text = harmless(text)
        if self.sequenced:
            # The bus gives the id, keeps it, and delivers it back here.
            event = Event(
                kind, room.name, member.name, text, ts=self.clock.seconds(), origin=member.id
            )
            self._publish(event)
            return event
        event = Event(
            kind,
            room.name,
            member.name,
            text,
            id=self.state.nextId(room.key),
            ts=self.clock.seconds(),
            origin=member.id,
        )
        room.recent.append(event)
        self.history.append(room.key, event)
        self._publish(event)
        return event

    def act(self, member: Member, room: Room, text: str) -> Event:
        """
        An action (C{/me}).
        """
        return self.say(member, room, text, events.ACTION)

    def private(self, member: Member, name: str, text: str) -> Event:
        """
        A private message to the member called C{name}.
        """
        target = self.state.holder(nameKey(name))
        if target is None:
            raise NoSuchName(f"no user called {harmless(name)}")
        text = harmless(text)
        event = Event(
            events.PRIVATE,
            None,
            member.name,
            text,
            target=target[1],
            ts=self.clock.seconds(),
            origin=member.id,
        )
        self._publish(event)
        return event

    def recent(self, room: Room, count: int) -> list[Event]:
        """
        The last C{count} messages of C{room}, oldest first.
        """
        if count <= 0:
            return []
        recent = room.recent
        if count >= len(recent):
            return list(recent)
        return list(recent)[-count:]

    # -- delivery ------------------------------------------------------

    def _publish(self, event: Event) -> None:
        """
        Send an event through the bus.  It keeps its C{origin} (an id,
        which keeps nothing alive): an event that comes back later, from
        another node, is still its sender's own.
        """
        self.bus.publish(event)

    def deliver(self, event: Event) -> None:
        """
        Hand an event to every local member it concerns (the bus calls
        this on every node).  Members leaving during delivery are seen
        next time: we iterate over a snapshot, made once per change of
        the room's members.
        """
        if event.kind == PRIVATE:
            target = self._byKey.get(nameKey(event.target))
            sender = self.members.get(event.origin)
            if target is not None:
                target.deliver(event)
            if sender is not None and sender is not target:
                sender.deliver(event)
            return
        room = self.rooms.get(roomKey(event.room))
        if event.kind in _ROOM_TALK:
            if self.sequenced:
                if room is None:
                    room = self._localRoom(roomKey(event.room), event.room)
                room.recent.append(event)
                if not room.members:
                    return
            elif room is None:
                return
            # No Python per recipient (chatsvc.chat.fanout).
            fanout = room.fanout
            if fanout is None:
                fanout = room.fanout = RoomFanout(room.members)
            fanout.deliver(event)
            return
        if room is None:
            return
        targets = room.targets
        if targets is None:
            targets = room.targets = tuple(m.deliver for m in room.members)
        for deliver in targets:
            deliver(event)
