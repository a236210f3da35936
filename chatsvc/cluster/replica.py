"""
The cluster's shared state as one node sees it.

L{ReplicaState} is an L{IChatState}: the Hub asks it what it asks a
L{LocalState}, and gets its answers at once, from a copy of the shared
state that this node keeps (the replica).  The copy starts from a
snapshot of Redis and follows the bus (L{chatsvc.cluster.node}): every
claim, release, join, leave, topic and message id anywhere in the cluster
is an entry there, applied here in the bus's order.

Writes go to Redis as well as to the copy.  Only the name claims wait for
Redis's answer (L{claim} and L{rename} return a Deferred): uniqueness
across the cluster is decided there, in one script.  Membership and
topics are written behind (the node sends them in order on one
connection), and message ids are given by Redis as the message is put
on the bus, not here.

While Redis is out of reach, the copy is all there is: claims are
checked against it, and the node reconciles them once Redis is back
(L{ClusterNode<chatsvc.cluster.node.ClusterNode>}).
"""

from __future__ import annotations

from txredisapi import ConnectionError as RedisConnectionError
from zope.interface import implementer

from chatsvc.chat import events
from chatsvc.chat.interfaces import IChatState
from chatsvc.chat.names import nameKeys, roomKey
from chatsvc.chat.state import LocalState

__all__ = ["ReplicaState"]


@implementer(IChatState)
class ReplicaState(LocalState):
    """
    L{IChatState} of a cluster node: reads from the replica, claims from
    Redis, other writes to both.

    @ivar node: the L{ClusterNode<chatsvc.cluster.node.ClusterNode>} that
        talks to Redis.
    """

    def __init__(self, node) -> None:
        super().__init__()
        self.node = node

    # -- writes -----------------------------------------------------------

    def claim(self, memberId: str, name: str, keys):
        return self._claim(memberId, name, tuple(keys), LocalState.claim)

    def rename(self, memberId: str, name: str, keys):
        return self._claim(memberId, name, tuple(keys), LocalState.rename)

    def _claim(self, memberId: str, name: str, keys: tuple, local):
        """
        With Redis: a Deferred of its answer (the copy follows a claim
        that succeeded).  Cut off from it: the copy's answer, now; the
        node claims again when it is back.
        """
        if not self.node.up:
            return local(self, memberId, name, keys)

        def answered(taken):
            if taken is None:
                self.applyClaim(memberId, name, keys)
            return taken

        def unanswered(failure):
            # Redis went away under the claim: as if it had been away before.
            if failure.check(ConnectionError, RedisConnectionError):
                return local(self, memberId, name, keys)
            return failure

        return self.node.claim(memberId, name, keys).addCallbacks(answered, unanswered)

    def release(self, memberId: str) -> None:
        self.applyRelease(memberId)
        self.node.send("release", memberId, self.node.busLength)

    def enter(self, roomKey: str, roomName: str, memberId: str) -> str:
        shown = LocalState.enter(self, roomKey, roomName, memberId)
        self.node.send("enter", memberId, roomKey, roomName)
        return shown

    def leave(self, roomKey: str, memberId: str) -> bool:
        was = LocalState.leave(self, roomKey, memberId)
        self.node.send("leave", memberId, roomKey)
        return was

    def setTopic(self, roomKey: str, roomName: str, text: str, setter: str, ts: float) -> None:
        LocalState.setTopic(self, roomKey, roomName, text, setter, ts)
        self.node.send("topic", roomKey, roomName, text, setter, repr(ts))

    # -- the bus, applied ---------------------------------------------------

    def applyClaim(self, memberId: str, name: str, keys=None) -> None:
        """
        C{memberId} holds C{name} (and no other name): Redis decided, so
        whoever the copy thought held those keys does not any more.
        """
        keys = tuple(keys) if keys is not None else nameKeys(name)
        for key in keys:
            holder = self._holders.get(key)
            if holder is not None and holder != memberId:
                self.applyRelease(holder)
        LocalState.rename(self, memberId, name, keys)

    def applyRelease(self, memberId: str) -> None:
        """
        C{memberId} is gone: its names, and its place in every room.
        """
        LocalState.release(self, memberId)
        for key in [k for k, room in self._rooms.items() if memberId in room.members]:
            LocalState.leave(self, key, memberId)

    def applyEnter(self, memberId: str, key: str, roomName: str) -> None:
        """
        C{memberId} is in room C{key}, though nobody saw it join (a node
        putting its members back after Redis lost its data).
        """
        if memberId in self._members:
            LocalState.enter(self, key, roomName, memberId)

    def othersByNode(self, nodeId: str) -> dict[str, list[tuple[str, str, tuple, list]]]:
        """
        What this copy knows of the other nodes' members, by node:
        C{[(memberId, name, keys, [(roomKey, roomName)])]}, for writing
        back into a Redis that lost its data.
        """
        rooms: dict[str, list[tuple[str, str]]] = {}
        for key, room in self._rooms.items():
            for memberId in room.members:
                rooms.setdefault(memberId, []).append((key, room.name))
        nodes: dict[str, list] = {}
        for memberId, (name, keys) in self._members.items():
            node = memberId.partition(":")[0]
            if node != nodeId:
                nodes.setdefault(node, []).append((memberId, name, keys, rooms.get(memberId, [])))
        return nodes

    def topics(self) -> list[tuple[str, str, tuple[str, str, float]]]:
        """
        C{(key, name, (text, setter, ts))} of every room with a topic.
        """
        return [(key, room.name, room.topic) for key, room in self._rooms.items() if room.topic]

    def applyEvent(self, event: events.Event) -> None:
        """
        What an event from the bus changes in the shared state.
        """
        kind = event.kind
        if kind in events.HISTORIC:
            if event.id is not None:
                LocalState.seedRoom(self, roomKey(event.room), event.room, event.id)
        elif kind == events.JOIN:
            origin = event.origin
            if origin not in self._members:
                LocalState.rename(self, origin, event.name, ())
            LocalState.enter(self, roomKey(event.room), event.room, origin)
        elif kind == events.LEAVE:
            LocalState.leave(self, roomKey(event.room), event.origin)
        elif kind == events.TOPIC:
            LocalState.setTopic(
                self, roomKey(event.room), event.room, event.text, event.name, event.ts
            )

    def load(self, members, rooms) -> None:
        """
        Start over from a snapshot: C{members} as C{[(id, name)]}, C{rooms}
        as C{[(key, name, lastId, topic, setter, ts, [member ids])]}.
        """
        self._holders.clear()
        self._members.clear()
        self._rooms.clear()
        for memberId, name in members:
            self.applyClaim(memberId, name)
        for key, name, lastId, topic, setter, ts, memberIds in rooms:
            LocalState.seedRoom(self, key, name, lastId)
            if topic:
                LocalState.setTopic(self, key, name, topic, setter, ts)
            for memberId in memberIds:
                if memberId in self._members:
                    LocalState.enter(self, key, name, memberId)

    def lastIds(self) -> list[tuple[str, str, int]]:
        """
        C{(key, name, lastId)} of every room with ids given out: what Redis
        must not give out again, should it have lost its data.
        """
        return [(key, room.name, room.lastId) for key, room in self._rooms.items() if room.lastId]
