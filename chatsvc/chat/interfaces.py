"""
The seams of the chat core, as C{zope.interface} interfaces.

The L{Hub<chatsvc.chat.rooms.Hub>} is the domain; everything it does not
decide alone goes through one of these:

  - L{IListener}: an adapter's object for one member, which takes the
    events that member should see (L{IBatchedListener}: one that also
    lets the room fan-out append to its output without a call per
    message);
  - L{IBus}: the fan-out, which carries every event to every node (one
    node: a direct call);
  - L{IChatState}: what a cluster must agree on: names, who is in which
    room, message ids, topics (one node: L{LocalState
    <chatsvc.chat.state.LocalState>});
  - L{IHistory}: the store of what was said, kept across restarts.

Each has an in-memory implementation in the package and a double in
L{chatsvc.testing}; C{tests/test_chat_interfaces.py} checks them all
with C{verifyObject}.
"""

from __future__ import annotations

from zope.interface import Interface

__all__ = ["IBatchedListener", "IBus", "IChatState", "IHistory", "IListener"]


class IListener(Interface):
    """
    An adapter's end of one member: the Hub hands it every event that
    member should see (its rooms' events, its private messages, its own
    events too: the adapter decides about echoes, by C{event.origin}).
    """

    def deliver(event):
        """
        Take one event.  Called once per recipient of every event: the
        hot path of the server, so do little (write the event's shared
        rendering, C{event.rendered.get(name) or event.encoded(name)}).
        Must not raise.
        """


class IBatchedListener(IListener):
    """
    A listener whose output goes through a write batcher
    (L{chatsvc.net.output.WriteBatcher}): the Hub may then hand it the
    room messages of others (C{message}, C{action}) by appending their
    rendering to its buffer of this turn, grouped with every member
    reading the same bytes (L{chatsvc.chat.fanout}), instead of calling
    L{deliver}.  Its own messages and every other event still come
    through L{deliver}.  When what C{fanout} returns would change (a
    format or capability changes), the adapter calls
    L{Hub.renderingChanged<chatsvc.chat.rooms.Hub.renderingChanged>}.
    """

    def fanout():
        """
        How room messages reach this listener, asked when a room's
        members change: C{(batcher, key, buffer, render)}: the batcher
        whose flush calls C{flushOutput()}; a key equal for every member
        reading the same bytes; the list this turn's output is appended
        to (the very list the listener's own writes go to, so that the
        order of events holds); and C{render(event) -> bytes}.  Or
        L{None}: deliver to this one by L{deliver}.
        """

    def flushOutput():
        """
        Send this turn's buffer (called by the batcher), through
        L{sendOutput}.
        """

    def sendOutput(data):
        """
        Send a turn's bytes, already taken from the buffer.  Counts what
        the peer is not taking (send queue, backlog), and drops what was
        appended once the listener decided to close.
        """


class IBus(Interface):
    """
    The fan-out seam: every event the Hub emits is published here, and
    the bus hands it to L{Hub.deliver<chatsvc.chat.rooms.Hub.deliver>}
    on every node (this one included).
    """

    def attach(hub):
        """
        Deliver what is published to C{hub}; called once by the Hub.
        """

    def publish(event):
        """
        Carry C{event} to every node.  A local bus delivers before it
        returns; a remote one may deliver later, so the event must then
        travel as L{Event.toDict<chatsvc.chat.events.Event.toDict>}.
        """


class IHistory(Interface):
    """
    The store of room messages and topics, kept across restarts.  It
    never blocks the reactor: writes are queued and return at once.
    """

    def open():
        """
        Make the store usable, at start and before anything listens, so
        that one that cannot be used is a clear error then.

        @raise chatsvc.chat.history.HistoryError: it cannot be used.
        """

    def load(limit):
        """
        For every room with history: C{(roomName, lastId, recent)}, with
        C{recent} its last C{limit} messages (events), oldest first.
        Synchronous; at start only.
        """

    def append(roomKey, event):
        """
        Keep a message or an action of room C{roomKey}; returns at once.
        """

    def topics():
        """
        Every room's topic as a L{TOPIC<chatsvc.chat.events.TOPIC>} event
        (its room, setter, text and time).  Synchronous; at start only.
        """

    def setTopic(roomKey, event):
        """
        Keep the topic that the TOPIC C{event} sets for room C{roomKey}
        (an empty text clears it); returns at once.
        """

    def stop():
        """
        Write out whatever is pending and let go of the store.

        @return: a Deferred that fires when done.
        """


class IChatState(Interface):
    """
    What every node of a chat must agree on: which names are taken and by
    whom, who is in which room, each room's message ids and its topic.

    Every call could be one round trip to a shared store (Redis) with the
    same meaning: arguments and results are strings, numbers and lists
    or tuples of them; members are named by their id (C{Member.id}),
    never by an object; and each call is atomic on its own (a claim of
    several keys is all or nothing).  Room and name keys are the
    L{roomKey<chatsvc.chat.names.roomKey>} and
    L{nameKeys<chatsvc.chat.names.nameKeys>} of the names: the caller
    computes them, the state only compares them.
    """

    def claim(memberId, name, keys):
        """
        Take every key in C{keys} for member C{memberId}, shown as C{name};
        all of them or none.  Keys the member holds already are no
        conflict.

        @return: L{None} when taken; else the shown name of a member that
            holds one of them (and nothing was taken).
        """

    def rename(memberId, name, keys):
        """
        Take C{keys} for C{memberId} as L{claim} does, then give up the
        member's old keys that are not among them, and show it as C{name}
        in every room: one atomic step, so that nobody can take the old
        name while the new one is refused, nor see both.

        @return: as for L{claim} (on a conflict nothing changed).
        """

    def release(memberId):
        """
        Give up every key of C{memberId} and forget it.  Unknown members
        are ignored.
        """

    def holder(key):
        """
        Who holds name key C{key}.

        @return: C{(memberId, shownName)}, or L{None}.
        """

    def enter(roomKey, roomName, memberId):
        """
        Put claimed member C{memberId} into room C{roomKey}, which is
        created, shown as C{roomName}, if it does not exist.  Entering a
        room one is in changes nothing.

        @return: the room's name as shown (its first spelling).
        """

    def leave(roomKey, memberId):
        """
        Take C{memberId} out of room C{roomKey}.  A room left empty, with
        no message id given out and no topic, is forgotten.

        @return: whether it was in the room.
        """

    def roomName(roomKey):
        """
        The shown name of room C{roomKey}, or L{None} if no such room is
        known.
        """

    def who(roomKey):
        """
        C{(roomName, names)}: the members of room C{roomKey} by their
        shown names, in the order they entered; L{None} if nobody is in.
        """

    def roomList():
        """
        C{[(roomName, count)]}: every room with members and how many, in
        the order of their keys.
        """

    def nextId(roomKey):
        """
        Give out the next message id of room C{roomKey} (1, 2, ...): never
        the same one twice, whichever node asks.
        """

    def seedRoom(roomKey, roomName, lastId):
        """
        A room known from the history (at start): it exists, shown as
        C{roomName} unless it already is, and L{nextId} gives out ids
        above C{lastId}.  Seeding twice, or lower, changes nothing.
        """

    def topic(roomKey):
        """
        The topic of room C{roomKey}: C{(text, setterName, ts)}, or
        L{None} if it has none.
        """

    def setTopic(roomKey, roomName, text, setter, ts):
        """
        Set the topic of room C{roomKey} (created as in L{seedRoom} if
        unknown); an empty C{text} clears it.
        """
