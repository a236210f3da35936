"""
IRC lines: parsing, quoting, numerics and cutting text to fit.

A line is C{[@tags] [:source] COMMAND params... [:trailing]} (RFC 1459
section 2.3.1, IRCv3 message-tags).  Twisted's C{parsemsg} splits
middle parameters on every whitespace character (U+00A0 and U+3000
included) and knows no tags, so L{parse} is our own; the numerics are
Twisted's table (C{symbolic_to_numeric}) with the IRCv3 ones it lacks.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from twisted.words.protocols.irc import symbolic_to_numeric

#: Longest line without tags, CRLF included (RFC 1459).
LINE_MAX = 512
#: Longest tag section a line may carry, C{@} and the space included
#: (IRCv3 message-tags: 8191 in all) ...
TAGS_MAX = 8191
#: ... and a client's (4094 bytes of tags, with the C{@} and the space).
CLIENT_TAGS_MAX = 4096

_NUMERICS = dict(symbolic_to_numeric)
_NUMERICS.update(
    {
        "RPL_WHOISACTUALLY": "338",
        "RPL_LOCALUSERS": "265",
        "RPL_GLOBALUSERS": "266",
        "RPL_TOPICWHOTIME": "333",
        "RPL_CREATIONTIME": "329",
        "ERR_INPUTTOOLONG": "417",
        "ERR_INVALIDCAPCMD": "410",
        "RPL_ISUPPORT": "005",
    }
)


def numeric(symbol: str) -> str:
    """
    The three digits of a numeric reply, by its usual name
    (C{ERR_NICKNAMEINUSE} -> C{433}).
    """
    return _NUMERICS[symbol]


class Message(NamedTuple):
    """
    One parsed line: C{tags} (a dict, values unescaped), C{source}
    (without its colon, or empty), C{command} (upper case) and
    C{params} (the trailing one last, without its colon).
    """

    tags: dict
    source: str
    command: str
    params: list


class BadLine(ValueError):
    """
    A line with no command.
    """


_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_ESCAPES = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


def unescapeTag(value: str) -> str:
    """
    A tag value as sent, unescaped (IRCv3: C{\\:} is C{;}, C{\\s} a space,
    an unknown escape is the character itself, a lone trailing C{\\} is
    dropped).
    """
    if "\\" not in value:
        return value
    out, chars = [], iter(value)
    for c in chars:
        if c == "\\":
            following = next(chars, "")
            out.append(_TAG_UNESCAPES.get(following, following))
        else:
            out.append(c)
    return "".join(out)


def escapeTag(value: str) -> str:
    """
    A tag value as it must be sent.
    """
    return value.translate(_TAG_ESCAPES)


def parseTags(section: str) -> dict:
    """
    C{a=1;+b;c=x\\sy} -> C{{"a": "1", "+b": "", "c": "x y"}}; the last of
    a repeated key wins.
    """
    tags = {}
    for item in section.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        tags[key] = unescapeTag(value)
    return tags


def parse(line: str) -> Message:
    """
    Parse one line (without its line ending).  Spaces separate
    parameters (several in a row count as one); the trailing parameter,
    after C{" :"}, keeps its spaces.

    @raise BadLine: there is no command.
    """
    tags: dict = {}
    source = ""
    rest = line.lstrip(" ")
    if rest.startswith("@"):
        section, _, rest = rest[1:].partition(" ")
        tags = parseTags(section)
        rest = rest.lstrip(" ")
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    head, colon, trailing = rest.partition(" :")
    if not colon and head.startswith(":"):
        # Only a trailing parameter after the command is impossible; a
        # line that is nothing but ":x" has no command.
        head, trailing, colon = "", head[1:], ":"
    words = head.split(" ")
    words = [w for w in words if w]
    if not words:
        raise BadLine("no command")
    command, params = words[0].upper(), words[1:]
    if colon:
        params.append(trailing)
    return Message(tags, source, command, params)


#: Commands whose last parameter is free text: it gets a colon, as
#: clients expect (C{QUIT :Quit}), even when it has no space.
_TEXT = frozenset({"QUIT", "ERROR", "AWAY", "PING", "PONG"})
#: Commands whose last parameter, after the first, is free text.
_TEXT_AFTER_FIRST = frozenset({"PRIVMSG", "NOTICE", "PART", "TOPIC", "CAP", "KICK"})


def formatLine(
    source: str | None, command: str, *params: str, tags: str = "", trailing: bool | None = None
) -> str:
    """
    One line without its ending: C{[@tags ]:source COMMAND p1 p2 :last}.
    The last parameter gets a colon when it must have one (empty, has a
    space, starts with a colon), or when it is free text: C{trailing},
    by default for the commands whose last parameter is text.

    Parameters must not contain CR, LF or NUL: every caller passes names
    (checked by the core) or text the core made harmless.
    """
    parts = []
    if tags:
        parts.append("@" + tags)
    if source:
        parts.append(":" + source)
    parts.append(command)
    if params:
        *middle, last = params
        parts.extend(middle)
        if trailing is None:
            trailing = command in _TEXT or (command in _TEXT_AFTER_FIRST and len(params) > 1)
        if trailing or not last or " " in last or last[0] == ":":
            last = ":" + last
        parts.append(last)
    return " ".join(parts)


_FORMATTING = re.compile(
    "\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?"  # colour
    "|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"  # hex colour
    "|[\x02\x0f\x11\x16\x1d\x1e\x1f]"  # bold, reset, mono, reverse, italic, strike, underline
)


def stripFormatting(text: str) -> str:
    """
    IRC's formatting codes (bold, colours, italics, ...) removed: they
    mean nothing on the other sides, where they would show as control
    pictures.
    """
    if _FORMATTING.search(text) is None:
        return text
    return _FORMATTING.sub("", text)


def decodeIRC(raw: bytes) -> str:
    """
    Decode one line as IRC clients send it: UTF-8 if it is, else Latin-1
    (which every byte string is), so that an old client's bytes become
    the letters it meant and bad bytes never cost the connection.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def fitText(text: str, room: int) -> list[str]:
    """
    Cut C{text} into pieces of at most C{room} bytes of UTF-8 each, at
    character boundaries, at a space when there is one in the second
    half of a piece (the space then starts the next piece's cut and is
    dropped): a message from another side longer than an IRC line is
    sent as several lines, never cut short.
    """
    room = max(room, 4)  # one character of UTF-8 always fits
    data = text.encode("utf-8")
    if len(data) <= room:
        return [text]
    pieces = []
    while len(data) > room:
        cut = room
        # Back off to a character boundary: never split a UTF-8 sequence.
        while cut > 0 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        space = data.rfind(b" ", room // 2, cut + 1)
        if space > 0:
            pieces.append(data[:space].decode("utf-8"))
            data = data[space + 1 :]
        else:
            pieces.append(data[:cut].decode("utf-8"))
            data = data[cut:]
    if data:
        pieces.append(data.decode("utf-8"))
    return pieces
