"""
The chat's shared state: names, membership, message ids and topics.

L{LocalState} keeps it in this process's memory, which is all a single
server needs.  A cluster replaces it (through L{IChatState}) with a store
all nodes share (L{ReplicaState<chatsvc.cluster.replica.ReplicaState>}
on Redis), so its shape is chosen for that:

  - everything is keyed by strings and holds plain data: a member is its
    id (C{Member.id}) and its shown name, never an object, so every call
    maps to a few Redis commands on keys like C{name:KEY -> memberId},
    C{member:ID}, C{room:KEY:members} (ordered by entry) and C{room:KEY};
  - every call is atomic on its own: a claim of several keys, and a
    rename (claim the new keys, then release the old ones), are one Lua
    script each there (L{chatsvc.cluster.scripts}), so no other node
    sees half of either.

The calls answer at once here.  The cluster's C{claim} and C{rename}
answer later, with a Deferred (the Hub's C{login} and C{rename} then
return one, and the sessions wait on it); its other calls answer at once
from a copy of the shared state that the bus keeps fresh.  The fan-out
itself never asks the state anything.
"""

from __future__ import annotations

from zope.interface import implementer

from chatsvc.chat.interfaces import IChatState

__all__ = ["LocalState"]


class _Room:
    """
    What the state knows of one room.

    @ivar name: the room's name as shown.
    @ivar members: member ids, in order of entry.
    @ivar lastId: the last message id given out (0: none yet).
    @ivar topic: C{(text, setter, ts)} or L{None}.
    """

    __slots__ = ("name", "members", "lastId", "topic")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[str, None] = {}
        self.lastId = 0
        self.topic: tuple[str, str, float] | None = None

    def idle(self) -> bool:
        return not self.members and self.lastId == 0 and self.topic is None


@implementer(IChatState)
class LocalState:
    """
    L{IChatState} in the memory of one process.
    """

    def __init__(self) -> None:
        #: name key -> the member id holding it.
        self._holders: dict[str, str] = {}
        #: member id -> (shown name, the keys it holds).
        self._members: dict[str, tuple[str, tuple[str, ...]]] = {}
        #: room key -> the room.
        self._rooms: dict[str, _Room] = {}

    # -- names -----------------------------------------------------------

    def _conflict(self, memberId: str, keys) -> str | None:
        holders = self._holders
        for key in keys:
            holder = holders.get(key)
            if holder is not None and holder != memberId:
                return self._members[holder][0]
        return None

    def claim(self, memberId: str, name: str, keys) -> str | None:
        conflict = self._conflict(memberId, keys)
        if conflict is not None:
            return conflict
        keys = tuple(keys)
        held = self._members.get(memberId)
        if held is not None:
            keys = held[1] + tuple(k for k in keys if k not in held[1])
        for key in keys:
            self._holders[key] = memberId
        self._members[memberId] = (name, keys)
        return None

    def rename(self, memberId: str, name: str, keys) -> str | None:
        conflict = self._conflict(memberId, keys)
        if conflict is not None:
            return conflict
        keys = tuple(keys)
        _, oldKeys = self._members.get(memberId, ("", ()))
        for key in keys:
            self._holders[key] = memberId
        for key in oldKeys:
            if key not in keys and self._holders.get(key) == memberId:
                del self._holders[key]
        self._members[memberId] = (name, keys)
        return None

    def release(self, memberId: str) -> None:
        held = self._members.pop(memberId, None)
        if held is None:
            return
        for key in held[1]:
            if self._holders.get(key) == memberId:
                del self._holders[key]

    def holder(self, key: str) -> tuple[str, str] | None:
        memberId = self._holders.get(key)
        if memberId is None:
            return None
        return memberId, self._members[memberId][0]

    # -- rooms -----------------------------------------------------------

    def _room(self, roomKey: str, roomName: str) -> _Room:
        room = self._rooms.get(roomKey)
        if room is None:
            room = self._rooms[roomKey] = _Room(roomName)
        return room

    def enter(self, roomKey: str, roomName: str, memberId: str) -> str:
        if memberId not in self._members:
            raise KeyError(f"member {memberId!r} holds no name")
        room = self._room(roomKey, roomName)
        room.members[memberId] = None
        return room.name

    def leave(self, roomKey: str, memberId: str) -> bool:
        room = self._rooms.get(roomKey)
        if room is None or memberId not in room.members:
            return False
        del room.members[memberId]
        if room.idle():
            del self._rooms[roomKey]
        return True

    def roomName(self, roomKey: str) -> str | None:
        room = self._rooms.get(roomKey)
        return None if room is None else room.name

    def who(self, roomKey: str) -> tuple[str, list[str]] | None:
        room = self._rooms.get(roomKey)
        if room is None or not room.members:
            return None
        members = self._members
        return room.name, [members[m][0] for m in room.members]

    def roomList(self) -> list[tuple[str, int]]:
        return [
            (room.name, len(room.members))
            for _, room in sorted(self._rooms.items())
            if room.members
        ]

    # -- ids -------------------------------------------------------------

    def nextId(self, roomKey: str) -> int:
        room = self._room(roomKey, roomKey)
        room.lastId += 1
        return room.lastId

    def seedRoom(self, roomKey: str, roomName: str, lastId: int) -> None:
        room = self._room(roomKey, roomName)
        room.lastId = max(room.lastId, lastId)

    # -- topics ----------------------------------------------------------

    def topic(self, roomKey: str) -> tuple[str, str, float] | None:
        room = self._rooms.get(roomKey)
        return None if room is None else room.topic

    def setTopic(self, roomKey: str, roomName: str, text: str, setter: str, ts: float) -> None:
        room = self._room(roomKey, roomName)
        room.topic = (text, setter, ts) if text else None
        if room.idle():
            del self._rooms[roomKey]
