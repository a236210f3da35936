"""
twistd plugins of chatsvc.

Only names here: each ServiceMaker imports its module's C{Options} and
C{makeService} lazily, so C{twistd --help} stays fast and heavy imports
wait until a service is actually built.
"""

from twisted.application.service import ServiceMaker

tsserv = ServiceMaker(
    "chatsvc tsserv",
    "chatsvc.tsserv",
    "Timestamp echo over TCP and UDP, with optional RFC 867/868 services.",
    "tsserv",
)

cmdserv = ServiceMaker(
    "chatsvc cmdserv",
    "chatsvc.cmdserv",
    "Command service: date, os, ls, ip, help; anything else is echoed.",
    "cmdserv",
)

chat = ServiceMaker(
    "chatsvc chat",
    "chatsvc.chat.service",
    "Multi-room chat with history (line protocol, text and JSON).",
    "chat",
)
