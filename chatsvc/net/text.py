"""
Turning received bytes into text that is safe to show to someone else.

Every line a chatsvc service reads is decoded here, once, per line: UTF-8
with replacement, so bad bytes never cost a connection.  Then anything a
terminal would obey rather than show is made visible instead:

  - C0 controls (but TAB) become their Unicode control pictures
    (NUL is shown as U+2400, BEL as U+2407), DEL as U+2421; ESC alone
    becomes U+238B, the keyboard's Escape symbol, because its control
    picture U+241B is E2 90 9B in UTF-8 and 0x9B is CSI to a terminal
    that takes C1 controls from raw bytes;
  - C1 controls (U+0080-U+009F, CSI U+009B among them) become U+FFFD;
  - bidi embeddings, overrides and isolates (U+202A-U+202E,
    U+2066-U+2069), which would reorder the text after them (the sender's
    name included), become U+FFFD.

Zero-width joiners and direction marks are left alone in text: emoji and
right-to-left writing need them, and they cannot reorder anything.  Names
are stricter (L{chatsvc.chat.names}).
"""

import re

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

_NEUTRAL = {c: 0x2400 + c for c in range(0x20) if c != 0x09}
_NEUTRAL[0x1B] = 0x238B
_NEUTRAL[0x7F] = 0x2421
_NEUTRAL.update((c, 0xFFFD) for c in range(0x80, 0xA0))
_NEUTRAL.update((c, 0xFFFD) for c in range(0x202A, 0x202F))
_NEUTRAL.update((c, 0xFFFD) for c in range(0x2066, 0x206A))


def neutralise(text: str) -> str:
    """
    Make control characters and bidi overrides in C{text} harmless.

    The common case, text with nothing to change, costs one regex scan and
    returns C{text} itself.
    """
    if _UNSAFE.search(text) is None:
        return text
    return text.translate(_NEUTRAL)


def decodeUTF8(raw: bytes) -> str:
    """
    Decode one received line: UTF-8 with replacement, nothing neutralised.

    For a protocol that checks what it reads before it shows it to
    anyone (the chat: names are refused with the offending character
    named, relayed text is made harmless by the core).
    """
    return raw.decode("utf-8", "replace")


def decodeLine(raw: bytes) -> str:
    """
    Decode one received line: UTF-8 with replacement, then L{neutralise}.
    """
    return neutralise(raw.decode("utf-8", "replace"))


def isSafe(text: str) -> bool:
    """
    Whether C{text} holds nothing that L{neutralise} would change.
    """
    return _UNSAFE.search(text) is None


def escapeName(raw: bytes) -> str:
    """
    Show a file name (or any byte string) in one line of text, losing
    nothing: valid UTF-8 passes through, everything else, controls and
    backslashes included, is written as a Python-style escape.

    C{escapeName(os.fsencode(name))} is unambiguous: two different names
    never look the same.
    """
    text = raw.decode("utf-8", "backslashreplace") if b"\\" not in raw else None
    if text is None:
        # A literal backslash must itself be escaped so that it cannot be
        # confused with an escape we added.
        parts = raw.split(b"\\")
        text = "\\\\".join(p.decode("utf-8", "backslashreplace") for p in parts)
    if _UNSAFE.search(text) is None:
        return text
    return "".join(_escapeChar(c) if _UNSAFE.match(c) else c for c in text)


def _escapeChar(c: str) -> str:
    # \xNN is kept for what is one byte in UTF-8 (C0, DEL), so that it
    # never looks like an invalid byte shown by backslashreplace.
    code = ord(c)
    if code < 0x80:
        return "\\x%02x" % code
    return "\\u%04x" % code
