"""
The IRC gateway: real IRC clients in the chat's rooms.

A thin adapter on the chat core (L{chatsvc.chat.rooms.Hub}): rooms are
C{#channels}, chatsvc names are nicks, and every IRC command maps to a
Hub call (L{chatsvc.irc.session}); events from every side are rendered
as IRC lines once per set of capabilities (L{chatsvc.irc.render}).  The
transport side (CRLF or LF framing, the 512-byte limit, decoding per line,
ping, flood and send-queue limits) is L{chatsvc.irc.protocol}; parsing and
quoting is L{chatsvc.irc.wire}.

Imported only when C{--irc} is given: C{twisted.words.protocols.irc},
whose numerics table it reads, imports the global reactor.
"""
