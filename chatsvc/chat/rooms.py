"""
The chat domain: names, rooms, membership, message ids and events.

Pure Python: no sockets, no reactor, no formatting.  Time comes from the
C{clock} passed in (anything with C{seconds()}), history goes to the
store passed in, and every event leaves through one seam, the bus
(L{LocalBus} here; a cluster bus later), which hands it back to
L{Hub.deliver} on every node.

A member may be in many rooms at once (IRC and web clients are); the
line protocol's "current room" is the line adapter's notion, not ours.
Adapters give each member a listener: any object with
C{deliver(event)}.
"""

from __future__ import annotations

from collections import deque

from chatsvc.chat import events
from chatsvc.chat.events import Event
from chatsvc.chat.names import InvalidName, checkName, checkRoom, nameKey, nameKeys, roomKey
from chatsvc.text import neutralise

__all__ = [
    "Hub",
    "Member",
    "Room",
    "LocalBus",
    "ChatError",
    "NameTaken",
    "InvalidName",
    "harmless",
]


#: How ESC is shown to other users: U+238B, the keyboard symbol for
#: Escape, as L{chatsvc.text.neutralise} shows it.  Not its control
#: picture U+241B: that is E2 90 9B in UTF-8, and a terminal that reads
#: C1 controls from raw bytes takes 0x9B for CSI.  A U+241B typed as such
#: is shown as U+238B too, so relayed text has one picture of ESC and
#: never the bytes E2 90 9B.
SHOWN_ESC = "\u238b"


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


class Member:
    """
    One logged-in user.

    @ivar name: the name as shown.
    @ivar keys: the keys the name is taken under (L{nameKeys}).
    @ivar rooms: the rooms this member is in, by key.
    @ivar listener: the adapter's object that takes events.
    """

    __slots__ = ("name", "keys", "rooms", "listener", "deliver", "__weakref__")

    def __init__(self, name: str, listener) -> None:
        self.name = name
        self.keys = nameKeys(name)
        self.rooms: dict[str, Room] = {}
        self.listener = listener
        # Bound once: the fan-out calls it for every recipient of every event.
        self.deliver = listener.deliver

    def __repr__(self) -> str:
        return f"<Member {self.name!r}>"


class Room:
    """
    A room: its members (in order of joining), its next message id and its
    most recent messages.
    """

    __slots__ = ("name", "key", "members", "nextId", "recent")

    def __init__(self, name: str, historyLimit: int, nextId: int = 1) -> None:
        self.name = name
        self.key = roomKey(name)
        self.members: dict[Member, None] = {}
        self.nextId = nextId
        self.recent: deque[Event] = deque(maxlen=historyLimit)

    def names(self) -> list[str]:
        return [m.name for m in self.members]


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
    Everything the chat knows: who is logged in, which rooms exist, what
    was said.

    @ivar historyLimit: messages kept per room for C{/history} and replay.
    """

    def __init__(self, clock, history=None, bus=None, historyLimit: int = 200) -> None:
        from chatsvc.chat.history import MemoryHistory

        self.clock = clock
        self.history = history if history is not None else MemoryHistory()
        self.bus = bus if bus is not None else LocalBus()
        self.bus.attach(self)
        self.historyLimit = historyLimit
        self.members: dict[str, Member] = {}
        self._taken: dict[str, Member] = {}
        self.rooms: dict[str, Room] = {}

    def restore(self) -> None:
        """
        Take the rooms, their last message ids and recent messages from
        the history store (at start, before anyone connects).
        """
        for name, lastId, recent in self.history.load(self.historyLimit):
            room = self._room(name)
            room.nextId = max(room.nextId, lastId + 1)
            room.recent.extend(recent)

    # -- names ---------------------------------------------------------

    def login(self, name: str, listener) -> Member:
        """
        Take a name for a new member (in no room yet).

        @raise InvalidName: the name breaks the rules.
        @raise NameTaken: someone holds it, or a name too much like it.
        """
        name = checkName(name)
        member = Member(name, listener)
        self._claim(member, name, member.keys)
        self.members[member.keys[0]] = member
        return member

    def _claim(self, member: Member, name: str, keys: tuple[str, ...]) -> None:
        for key in keys:
            holder = self._taken.get(key)
            if holder is not None and holder is not member:
                raise NameTaken(f"the name {name} is taken (by {holder.name})")
        for key in keys:
            self._taken[key] = member

    def rename(self, member: Member, newName: str) -> None:
        """
        Change C{member}'s name; every room it is in hears of it.
        """
        newName = checkName(newName)
        newKeys = nameKeys(newName)
        self._claim(member, newName, newKeys)
        oldName, oldKeys = member.name, member.keys
        for key in oldKeys:
            if key not in newKeys and self._taken.get(key) is member:
                del self._taken[key]
        del self.members[oldKeys[0]]
        member.name, member.keys = newName, newKeys
        self.members[newKeys[0]] = member
        now = self.clock.seconds()
        for room in list(member.rooms.values()):
            self._publish(
                Event(events.RENAME, room.name, oldName, target=newName, ts=now, origin=member)
            )

    def find(self, name: str) -> Member | None:
        """
        The member called C{name} (by its key), or L{None}.
        """
        return self.members.get(nameKey(name))

    # -- rooms ---------------------------------------------------------

    def _room(self, name: str) -> Room:
        key = roomKey(name)
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name, self.historyLimit)
        return room

    def room(self, name: str) -> Room | None:
        """
        The room called C{name}, if it exists.
        """
        return self.rooms.get(roomKey(name))

    def join(self, member: Member, name: str) -> Room:
        """
        Put C{member} into room C{name} (created on first join).
        """
        name = checkRoom(name)
        room = self._room(name)
        if member in room.members:
            return room
        room.members[member] = None
        member.rooms[room.key] = room
        self._publish(
            Event(events.JOIN, room.name, member.name, ts=self.clock.seconds(), origin=member)
        )
        return room

    def part(self, member: Member, room: Room, reason: str) -> None:
        """
        Take C{member} out of C{room}; the others hear why.
        """
        if room.members.pop(member, False) is not False:
            reason = harmless(reason)
            del member.rooms[room.key]
            self._publish(
                Event(
                    events.LEAVE,
                    room.name,
                    member.name,
                    reason,
                    ts=self.clock.seconds(),
                    origin=member,
                )
            )
        self._forgetIfIdle(room)

    def _forgetIfIdle(self, room: Room) -> None:
        """
        An empty room with nothing said in it is forgotten: joining random
        rooms must not grow the server.
        """
        if not room.members and not room.recent and room.nextId == 1:
            self.rooms.pop(room.key, None)

    def quit(self, member: Member, reason: str = "quit", announce: bool = True) -> None:
        """
        C{member} leaves every room and gives up its name.
        """
        if self.members.get(member.keys[0]) is not member:
            return
        for room in list(member.rooms.values()):
            if announce:
                self.part(member, room, reason)
            else:
                room.members.pop(member, None)
                del member.rooms[room.key]
                self._forgetIfIdle(room)
        del self.members[member.keys[0]]
        for key in member.keys:
            if self._taken.get(key) is member:
                del self._taken[key]

    def who(self, name: str) -> tuple[str, list[str]]:
        """
        The room's name as shown and its members' names.
        """
        room = self.room(checkRoom(name))
        if room is None or not room.members:
            return checkRoom(name), []
        return room.name, room.names()

    def roomList(self) -> list[tuple[str, int]]:
        """
        Every room with members, and how many, by name.
        """
        rooms = [(r.name, len(r.members)) for r in self.rooms.values() if r.members]
        return sorted(rooms, key=lambda item: roomKey(item[0]))

    # -- talking -------------------------------------------------------

    def say(self, member: Member, room: Room, text: str, kind: str = events.MESSAGE) -> Event:
        """
        A message (or an action) to a room C{member} is in.
        """
        if member not in room.members:
            raise NotInRoom(f"you are not in #{room.name}")
        text = harmless(text)
        event = Event(
            kind,
            room.name,
            member.name,
            text,
            id=room.nextId,
            ts=self.clock.seconds(),
            origin=member,
        )
        room.nextId += 1
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
        target = self.find(name)
        if target is None:
            raise NoSuchName(f"no user called {harmless(name)}")
        text = harmless(text)
        event = Event(
            events.PRIVATE,
            None,
            member.name,
            text,
            target=target.name,
            ts=self.clock.seconds(),
            origin=member,
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
        Send an event through the bus.  Its C{origin} serves delivery on
        this node only: dropped afterwards, so that history never keeps a
        member (and through it a dead connection) alive.
        """
        self.bus.publish(event)
        event.origin = None

    def deliver(self, event: Event) -> None:
        """
        Hand an event to every local member it concerns (the bus calls
        this on every node).  Members leaving during delivery are seen
        next time: we iterate over a snapshot.
        """
        if event.kind == events.PRIVATE:
            target = self.members.get(nameKey(event.target))
            sender = self.members.get(nameKey(event.name))
            if target is not None:
                target.listener.deliver(event)
            if sender is not None and sender is not target:
                sender.listener.deliver(event)
            return
        room = self.rooms.get(roomKey(event.room))
        if room is None:
            return
        for member in tuple(room.members):
            member.deliver(event)
