"""
The three ways tsserv tells the time, and how to recognise them again.

  - the timestamp echo: C{[ctime] X} (TCP lines and UDP datagrams);
  - RFC 867 daytime: C{ctime} and CRLF;
  - RFC 868 time: 4 bytes, big-endian seconds since 1900-01-01 00:00 UTC.

Recognising our own replies matters for UDP: a datagram service that
answers its own kind of reply loops forever between two instances (or
between it and another service) once one spoofed packet starts it
(docs/hardening.rst, item 21; the CVE-2024-2169 class).  The recognisers here are what
L{chatsvc.udpservices} drops on.

Time is always passed in as seconds since the epoch (a clock's
C{seconds()}), never read here, so every function is testable with
fixed numbers.
"""

from __future__ import annotations

import re
import time

#: Seconds from 1900-01-01 (the RFC 868 epoch) to 1970-01-01.
RFC868_OFFSET = 2208988800

#: How far from our own clock a 4-byte payload may be and still be taken
#: for an RFC 868 reply from a peer whose clock is about right.
TIME_REPLY_WINDOW = 86400

# time.ctime() is always English (C asctime), whatever the locale:
# "Sat Nov 21 10:00:00 2026"; the day of the month is space-padded.
_CTIME = (
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    rb"[ 0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] [0-9]{4,}"
)
_STAMP_REPLY = re.compile(rb"\s*\[" + _CTIME + rb"\]")
_DAYTIME_REPLY = re.compile(rb"\s*" + _CTIME + rb"\s*")


def stamp(seconds: float, text: str) -> str:
    """
    The timestamp echo of C{text}: C{[ctime] text}.
    """
    return f"[{time.ctime(seconds)}] {text}"


def daytime(seconds: float) -> bytes:
    """
    An RFC 867 daytime reply: one line, C{ctime} and CRLF.
    """
    return time.ctime(seconds).encode("ascii") + b"\r\n"


def rfc868(seconds: float) -> bytes:
    """
    An RFC 868 time reply: whole seconds since 1900, 4 bytes big-endian.

    The 32-bit count wraps in 2036; clients (rdate among them) read a
    small value as the next era, so the value is taken modulo 2**32.
    """
    return ((int(seconds) + RFC868_OFFSET) % 2**32).to_bytes(4, "big")


def looksLikeStamp(payload: bytes) -> bool:
    """
    Whether C{payload} starts like a timestamp echo: C{[ctime]}.
    """
    return _STAMP_REPLY.match(payload) is not None


def looksLikeDaytime(payload: bytes) -> bool:
    """
    Whether C{payload} is nothing but a C{ctime} (our daytime reply).
    """
    return _DAYTIME_REPLY.fullmatch(payload) is not None


def looksLikeTime(payload: bytes, seconds: float, window: float = TIME_REPLY_WINDOW) -> bool:
    """
    Whether C{payload} is an RFC 868 reply from a clock within C{window}
    seconds of C{seconds}.

    Printable ASCII text never matches: the first byte of any time from
    the year 2000 to the 2036 wrap is 0xBC or above.
    """
    if len(payload) != 4:
        return False
    ours = int.from_bytes(rfc868(seconds), "big")
    distance = (int.from_bytes(payload, "big") - ours) % 2**32
    return min(distance, 2**32 - distance) <= window


def looksLikeReply(payload: bytes, seconds: float) -> bool:
    """
    Whether C{payload} looks like a reply of any tsserv service: a
    timestamp echo, a daytime line, or an RFC 868 time near C{seconds}.
    """
    return looksLikeStamp(payload) or looksLikeDaytime(payload) or looksLikeTime(payload, seconds)
