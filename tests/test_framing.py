"""
Tests for L{chatsvc.net.framing.LineFramer} and L{chatsvc.net.text}: unit tests of
the framing rules, and hypothesis properties (docs/hardening.rst item 12): any
stream cut at any points gives exactly the events of one write, the
unfinished line never holds more than C{maxLength + 1} bytes, and every
line decodes to text with no raw controls.

The number of examples comes from the hypothesis profile
(L{tests.hypothesisprofiles}; C{HYPOTHESIS_PROFILE}, default C{ci}).
"""

from __future__ import annotations

import operator

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from chatsvc.net.framing import DEFAULT_MAX_LINE, TOO_LONG, LineFramer
from chatsvc.net.text import decodeLine, escapeName, isSafe, neutralise
from tests.hypothesisprofiles import examples


def unsafeCharacters(text: str) -> list[str]:
    """
    The characters of C{text} that must never reach another user raw: C0
    controls but TAB, DEL, C1 controls, bidi embeddings, overrides and
    isolates.  Written out here, independently of L{chatsvc.net.text}.
    """
    bad = []
    for c in text:
        code = ord(c)
        if (
            (code < 0x20 and c != "\t")
            or 0x7F <= code <= 0x9F
            or 0x202A <= code <= 0x202E
            or 0x2066 <= code <= 0x2069
        ):
            bad.append(c)
    return bad


def drain(framer: LineFramer) -> list:
    """
    Take every complete line the framer holds.
    """
    events = []
    while True:
        line = framer.next()
        if line is None:
            return events
        events.append(line)


def frame(chunks, maxLength: int, drainEach: bool = True, finish: bool = False) -> list:
    """
    Feed C{chunks} to a new framer and return its events, checking after
    every feed that the unfinished line is within its bound and that the
    byte count of queued lines is right.
    """
    framer = LineFramer(maxLength)
    events = []
    for chunk in chunks:
        framer.feed(chunk)
        if framer.tailLength > maxLength + 1:
            raise AssertionError(
                f"tail of {framer.tailLength} bytes over the bound {maxLength + 1}"
            )
        if drainEach:
            before = framer.pendingBytes
            taken = drain(framer)
            if before != sum(len(e) for e in taken if e is not TOO_LONG):
                raise AssertionError("pendingBytes does not match the queued lines")
            events.extend(taken)
    if finish:
        framer.finish()
    events.extend(drain(framer))
    if framer.pendingBytes != 0 or len(framer) != 0:
        raise AssertionError("lines left after draining")
    return events


def reference(stream: bytes, maxLength: int, finish: bool) -> list:
    """
    The framing rules written the slow, obvious way on the whole stream.
    """
    *complete, last = stream.split(b"\n")
    events = []

    def line(raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        events.append(TOO_LONG if len(raw) > maxLength else raw)

    for raw in complete:
        line(raw)
    if finish:
        if last:
            line(last)
    elif len(last) > maxLength + 1:
        # Refused as soon as it cannot fit, before its end arrives.
        events.append(TOO_LONG)
    return events


def chunked(stream: bytes, cuts) -> list[bytes]:
    """
    C{stream} cut at the offsets C{cuts}.
    """
    points = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in zip(points, points[1:], strict=False)]


# -- strategies ----------------------------------------------------------------

#: Pieces that stress framing and decoding: line ends, multi-byte UTF-8
#: (and a split one), invalid UTF-8, terminal escapes, C1, bidi, NUL, DEL.
SPECIAL = [
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\r",
    b"\r\r\n",
    "\u00e9".encode(),
    "\u20ac".encode(),
    "\U0001f600".encode(),
    "\U0001f600".encode()[:2],
    b"\xff",
    b"\xfe",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\x80",
    b"\xbf",
    b"\x00",
    b"\x07",
    b"\x1b[2J",
    b"\x1b]52;c;aGVsbG8=\x07",
    b"\x1b[6n",
    b"\xc2\x9b",
    b"\x9b",
    b"\x7f",
    b"\t",
    "\u202e".encode(),
    "\u2066".encode(),
    "\u200f".encode(),
    b"a",
    b" ",
]

pieces = st.one_of(
    st.sampled_from(SPECIAL),
    st.binary(max_size=12),
    # long runs: over-long lines, floods of line ends
    st.builds(
        operator.mul,
        st.sampled_from([b"a", b"\n", b"\r", b"\r\n", b"\xff", "\u00e9".encode()]),
        st.integers(1, 200),
    ),
)
streams = st.lists(pieces, max_size=40).map(b"".join)
maxLengths = st.integers(1, 80)


class LineFramerTests(unittest.SynchronousTestCase):
    """
    The framing rules, one by one.
    """

    def test_lfEndsLine(self) -> None:
        """
        LF ends a line; the line comes without it.
        """
        self.assertEqual(frame([b"one\ntwo\n"], 100), [b"one", b"two"])

    def test_crlfEndsLine(self) -> None:
        """
        A CR just before the LF is dropped, so CRLF clients work.
        """
        self.assertEqual(frame([b"one\r\ntwo\n"], 100), [b"one", b"two"])

    def test_onlyOneCrDropped(self) -> None:
        """
        Only one CR before the LF is part of the line ending.
        """
        self.assertEqual(frame([b"one\r\r\n"], 100), [b"one\r"])

    def test_loneCrDoesNotEndLine(self) -> None:
        """
        A lone CR does not end a line, and decoding shows it as a visible
        character, never as a raw CR.
        """
        events = frame([b"abc\rdef\n"], 100)
        self.assertEqual(events, [b"abc\rdef"])
        self.assertEqual(decodeLine(events[0]), "abc\u240ddef")

    def test_crlfSplitAcrossReads(self) -> None:
        """
        CR and LF in different reads still make one line ending.
        """
        self.assertEqual(frame([b"one\r", b"\ntwo\r", b"\n"], 100), [b"one", b"two"])

    def test_unfinishedLineWaits(self) -> None:
        """
        Nothing is emitted until the LF arrives.
        """
        framer = LineFramer(100)
        framer.feed(b"hel")
        framer.feed(b"lo")
        self.assertIsNone(framer.next())
        self.assertEqual(len(framer), 0)
        self.assertEqual(framer.tailLength, 5)
        framer.feed(b"\n")
        self.assertEqual(framer.next(), b"hello")
        self.assertEqual(framer.tailLength, 0)

    def test_emptyFeed(self) -> None:
        """
        Feeding no bytes changes nothing.
        """
        self.assertEqual(frame([b"", b"a", b"", b"\n", b""], 100), [b"a"])

    def test_emptyLines(self) -> None:
        """
        Empty lines are lines (they count, for flood control).
        """
        self.assertEqual(frame([b"\n\r\n\n"], 100), [b"", b"", b""])

    def test_finishEmitsUnfinishedLine(self) -> None:
        """
        At the end of the stream an unfinished last line counts as a line.
        """
        self.assertEqual(frame([b"one\ntwo"], 100, finish=True), [b"one", b"two"])
        self.assertEqual(frame([b"one\n"], 100, finish=True), [b"one"])

    def test_exactlyAtLimit(self) -> None:
        """
        A line of C{maxLength} bytes is accepted, with LF or CRLF; one more
        byte is refused.
        """
        self.assertEqual(frame([b"x" * 10 + b"\n"], 10), [b"x" * 10])
        self.assertEqual(frame([b"x" * 10 + b"\r\n"], 10), [b"x" * 10])
        self.assertEqual(frame([b"x" * 11 + b"\n"], 10), [TOO_LONG])
        self.assertEqual(frame([b"x" * 11 + b"\r\n"], 10), [TOO_LONG])

    def test_exactlyAtLimitByteByByte(self) -> None:
        """
        The limit holds the same way when the line comes a byte at a time.
        """
        for line, expected in [
            (b"x" * 10 + b"\r\n", [b"x" * 10]),
            (b"x" * 11 + b"\n", [TOO_LONG]),
            (b"x" * 11 + b"\r\n", [TOO_LONG]),
        ]:
            self.assertEqual(frame([bytes([b]) for b in line], 10), expected)

    def test_overLongIsOneMarker(self) -> None:
        """
        An over-long line becomes one L{TOO_LONG} marker, the rest of it is
        discarded up to the next LF, and the next line is intact.
        """
        self.assertEqual(frame([b"x" * 100 + b"\nok\n"], 10), [TOO_LONG, b"ok"])

    def test_overLongAcrossReads(self) -> None:
        """
        An over-long line spread over many reads is refused once, as soon as
        it cannot fit, and nothing of it is kept.
        """
        framer = LineFramer(10)
        framer.feed(b"x" * 8)
        self.assertEqual(len(framer), 0)
        framer.feed(b"x" * 8)
        self.assertEqual(drain(framer), [TOO_LONG])
        self.assertEqual(framer.tailLength, 0)
        framer.feed(b"y" * 100)
        self.assertEqual(drain(framer), [])
        self.assertEqual(framer.tailLength, 0)
        framer.feed(b"yyy\nnext\n")
        self.assertEqual(drain(framer), [b"next"])

    def test_megabyteWithoutNewline(self) -> None:
        """
        1 MiB without a newline (docs/hardening.rst item 1): one marker, nothing
        held beyond the bound at any time, the next line intact.
        """
        framer = LineFramer(DEFAULT_MAX_LINE)
        events = []
        chunk = b"A" * 4096
        for _ in range(256):
            framer.feed(chunk)
            self.assertLessEqual(framer.tailLength, DEFAULT_MAX_LINE + 1)
            events.extend(drain(framer))
        framer.feed(b"\nok\n")
        events.extend(drain(framer))
        self.assertEqual(events, [TOO_LONG, b"ok"])

    def test_finishAfterOverLong(self) -> None:
        """
        An over-long unfinished last line is refused once, not again at the
        end of the stream.
        """
        self.assertEqual(frame([b"x" * 100], 10, finish=True), [TOO_LONG])
        self.assertEqual(frame([b"x" * 11], 10, finish=True), [TOO_LONG])

    def test_pendingBytes(self) -> None:
        """
        C{pendingBytes} counts the bytes of queued lines; markers count
        nothing; taking a line and L{LineFramer.clear} bring it down.
        """
        framer = LineFramer(5)
        framer.feed(b"abc\nxxxxxxxxxx\nde\nfg")
        self.assertEqual(len(framer), 3)
        self.assertEqual(framer.pendingBytes, 5)
        self.assertEqual(framer.next(), b"abc")
        self.assertEqual(framer.pendingBytes, 2)
        self.assertIs(framer.next(), TOO_LONG)
        self.assertEqual(framer.pendingBytes, 2)
        framer.clear()
        self.assertEqual((len(framer), framer.pendingBytes, framer.tailLength), (0, 0, 0))
        self.assertIsNone(framer.next())
        framer.feed(b"\n")
        self.assertEqual(framer.next(), b"")

    def test_maxLengthAtLeastOne(self) -> None:
        """
        A framer that could accept no line at all is an error.
        """
        self.assertRaises(ValueError, LineFramer, 0)
        self.assertEqual(frame([b"x\nxx\n"], 1), [b"x", TOO_LONG])

    def test_markerRepr(self) -> None:
        """
        The marker says what it is in test output.
        """
        self.assertEqual(repr(TOO_LONG), "TOO_LONG")

    def test_tenMegabytesOfNewlines(self) -> None:
        """
        10 MB of bare LF in 64 KiB reads (docs/hardening.rst item 3): every LF is
        one empty line, nothing is ever held as an unfinished line, and the
        framer looks at each byte a bounded number of times.
        """
        framer = LineFramer(DEFAULT_MAX_LINE)
        counter = ScanCounter()
        chunk = counter.wrap(b"\n" * 65536)
        lines = 0
        for _ in range(160):
            framer.feed(chunk)
            self.assertEqual(len(framer), 65536)
            self.assertEqual(framer.pendingBytes, 0)
            self.assertEqual(framer.tailLength, 0)
            lines += len(framer)
            self.assertEqual(framer.next(), b"")
            framer.clear()
        self.assertEqual(lines, 160 * 65536)
        self.assertLessEqual(counter.examined, 2 * 160 * 65536)

    def test_longLineInSmallReadsScannedOnce(self) -> None:
        """
        A long line arriving in small reads is not rescanned on every read
        (the quadratic trap of C{LineReceiver}): the bytes looked at stay
        proportional to the bytes fed.
        """
        size = 1024 * 1024
        framer = LineFramer(size)
        counter = ScanCounter()
        piece = counter.wrap(b"z" * 1024)
        for _ in range(size // 1024):
            framer.feed(piece)
        framer.feed(counter.wrap(b"\n"))
        line = framer.next()
        self.assertEqual(len(line), size)
        self.assertLessEqual(counter.examined, 2 * (size + 1))


class ScanCounter:
    """
    Counts the bytes that C{find} and C{split} look at in the data handed
    to a framer (the framer scans its input only with these), so linear
    time is checked as a count, not as a duration.
    """

    def __init__(self) -> None:
        self.examined = 0

    def wrap(self, data: bytes) -> bytes:
        counter = self

        class Scanned(bytes):
            def find(self, sub, start=0, end=None):
                stop = len(self) if end is None else end
                found = bytes.find(self, sub, start, stop)
                counter.examined += (found + len(sub) if found >= 0 else stop) - start
                return found

            def split(self, sep=None, maxsplit=-1):
                counter.examined += len(self)
                return bytes.split(self, sep, maxsplit)

            def __getitem__(self, key):
                value = bytes.__getitem__(self, key)
                return Scanned(value) if isinstance(key, slice) else value

        return Scanned(data)


class FramingPropertyTests(unittest.SynchronousTestCase):
    """
    Hypothesis properties of the framer (docs/hardening.rst item 12).
    """

    @settings(max_examples=examples(1500))
    @given(
        stream=streams,
        maxLength=maxLengths,
        finish=st.booleans(),
        drainEach=st.booleans(),
        data=st.data(),
    )
    def test_chunkingGivesSameEvents(self, stream, maxLength, finish, drainEach, data) -> None:
        """
        The stream cut at random points gives exactly the events of one
        write, and both are what the rules say; the unfinished line stays
        within C{maxLength + 1} bytes throughout (checked in L{frame}).
        """
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="cuts")
        whole = frame([stream], maxLength, finish=finish)
        pieces = frame(chunked(stream, cuts), maxLength, drainEach, finish)
        self.assertEqual(pieces, whole)
        self.assertEqual(whole, reference(stream, maxLength, finish))

    @settings(max_examples=examples(300))
    @given(stream=streams, maxLength=maxLengths)
    def test_byteByByteGivesSameEvents(self, stream, maxLength) -> None:
        """
        One byte at a time (UTF-8 split mid-character, CR and LF apart)
        gives exactly the events of one write (docs/hardening.rst item 6).
        """
        single = [stream[i : i + 1] for i in range(len(stream))]
        self.assertEqual(frame(single, maxLength), frame([stream], maxLength))

    @settings(max_examples=examples(500))
    @given(stream=streams, maxLength=maxLengths, finish=st.booleans())
    def test_linesDecodeToSafeText(self, stream, maxLength, finish) -> None:
        """
        Every emitted line is within the limit, holds no LF, and decodes to
        valid text with no raw control: no C0 but TAB (so no lone CR), no
        DEL, no C1, no bidi embedding, override or isolate.
        """
        for event in frame([stream], maxLength, finish=finish):
            if event is TOO_LONG:
                continue
            self.assertLessEqual(len(event), maxLength)
            self.assertNotIn(b"\n", event)
            text = decodeLine(event)
            text.encode("utf-8")  # no lone surrogates: valid text
            self.assertEqual(unsafeCharacters(text), [])
            self.assertNotIn("\r", text)


class TextTests(unittest.SynchronousTestCase):
    """
    L{chatsvc.net.text}: decoding per line and neutralising controls.
    """

    def test_invalidUtf8Replaced(self) -> None:
        """
        Invalid UTF-8 (docs/hardening.rst item 7) becomes U+FFFD; the valid text
        around it is kept.
        """
        for raw in (b"\xff", b"\xc0\xaf", b"\x80", b"\xed\xa0\x80"):
            text = decodeLine(b"a" + raw + b"b")
            self.assertTrue(text.startswith("a") and text.endswith("b"), text)
            self.assertIn("\ufffd", text)
            self.assertEqual(unsafeCharacters(text), [])

    def test_validUtf8Kept(self) -> None:
        """
        Text in any script, emoji and combining sequences pass unchanged.
        """
        for text in ("h\u00e9llo", "\u0436\u0443\u043a", "\u05e9\u05dc\u05d5\u05dd", "a\U0001f600"):
            self.assertEqual(decodeLine(text.encode("utf-8")), text)

    def test_escapeSequencesShownNotObeyed(self) -> None:
        """
        ESC, BEL and CSI (docs/hardening.rst item 9) never come out raw.
        """
        self.assertEqual(decodeLine(b"\x1b[2J"), "\u238b[2J")
        self.assertEqual(decodeLine(b"\x1b]52;c;aGk=\x07"), "\u238b]52;c;aGk=\u2407")
        self.assertEqual(decodeLine(b"\x1b[6n"), "\u238b[6n")
        self.assertEqual(decodeLine(b"\xc2\x9b2J"), "\ufffd2J")

    def test_controlsNeutralised(self) -> None:
        """
        NUL, CR, DEL become control pictures; TAB is kept.
        """
        self.assertEqual(decodeLine(b"a\x00b\rc\x7fd\te"), "a\u2400b\u240dc\u2421d\te")

    def test_bidiNeutralisedJoinersKept(self) -> None:
        """
        Bidi embeddings, overrides and isolates are neutralised in text;
        zero-width joiners and direction marks are left alone.
        """
        for code in (0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069):
            self.assertEqual(neutralise(f"a{chr(code)}b"), "a\ufffdb")
        for kept in ("\u200d", "\u200e", "\u200f"):
            self.assertEqual(neutralise(f"a{kept}b"), f"a{kept}b")

    def test_safeTextIsReturnedAsIs(self) -> None:
        """
        The common case costs nothing: safe text is returned itself.
        """
        text = "nothing to change here \u00e9"
        self.assertIs(neutralise(text), text)
        self.assertTrue(isSafe(text))
        self.assertFalse(isSafe("a\x1bb"))

    def test_splitCharacterDecodedWhole(self) -> None:
        """
        A character split across two reads is decoded whole, because
        decoding is per line.
        """
        encoded = "d\u00e9j\u00e0 \U0001f600\n".encode()
        for cut in range(len(encoded)):
            lines = frame([encoded[:cut], encoded[cut:]], 100)
            self.assertEqual([decodeLine(line) for line in lines], ["d\u00e9j\u00e0 \U0001f600"])

    def test_escapeName(self) -> None:
        """
        File names: valid UTF-8 passes, other bytes, controls, backslashes
        and bidi overrides are escaped.
        """
        self.assertEqual(escapeName("caf\u00e9".encode()), "caf\u00e9")
        self.assertEqual(escapeName(b"bad\xff"), "bad\\xff")
        self.assertEqual(escapeName(b"a\\b"), "a\\\\b")
        self.assertEqual(escapeName(b"a\\\xff"), "a\\\\\\xff")
        self.assertEqual(escapeName(b"cr\rlf\n"), "cr\\x0dlf\\x0a")
        self.assertEqual(escapeName(b"esc\x1b"), "esc\\x1b")
        self.assertEqual(escapeName("rlo\u202e".encode()), "rlo\\u202e")

    def test_escapeNameC1DiffersFromInvalidByte(self) -> None:
        """
        U+009B written in UTF-8 and the lone byte 0x9B are different names
        and must not look the same.
        """
        self.assertNotEqual(escapeName(b"\xc2\x9b"), escapeName(b"\x9b"))


class TextPropertyTests(unittest.SynchronousTestCase):
    """
    Hypothesis properties of L{chatsvc.net.text}.
    """

    @settings(max_examples=examples(500))
    @given(st.text())
    def test_neutraliseIsSafe(self, text) -> None:
        """
        Whatever the text, the result holds nothing unsafe, has one
        character for each one of the input, and neutralising twice
        changes nothing more.
        """
        shown = neutralise(text)
        self.assertEqual(unsafeCharacters(shown), [])
        self.assertTrue(isSafe(shown))
        self.assertEqual(len(shown), len(text))
        self.assertEqual(neutralise(shown), shown)
        self.assertEqual(isSafe(text), shown == text)

    @settings(max_examples=examples(500))
    @given(st.binary(max_size=64) | streams)
    def test_decodeLineAnyBytes(self, raw) -> None:
        """
        Any bytes decode, and the text is valid and safe.
        """
        text = decodeLine(raw)
        text.encode("utf-8")
        self.assertEqual(unsafeCharacters(text), [])

    @settings(max_examples=examples(1000))
    @given(
        st.lists(st.binary(max_size=12) | st.sampled_from(SPECIAL + [b"\\", b"\\x"]), max_size=6)
        .map(b"".join)
        .filter(lambda raw: b"\xc2" not in raw)
    )
    def test_escapeNameReversible(self, raw) -> None:
        """
        The shown name gives back the bytes of the name (so two different
        names never look the same), and shows nothing unsafe.  (UTF-8 C1
        characters are left out: see
        L{TextTests.test_escapeNameC1DiffersFromInvalidByte}.)
        """
        shown = escapeName(raw)
        self.assertEqual(unsafeCharacters(shown), [])
        self.assertEqual(unescapeName(shown), raw)


def unescapeName(shown: str) -> bytes:
    """
    Read back what L{escapeName} wrote: C{\\\\} is a backslash, C{\\xNN}
    a byte, C{\\uNNNN} a character; anything else is itself, in UTF-8.
    """
    out = bytearray()
    i = 0
    while i < len(shown):
        c = shown[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
        elif shown[i + 1] == "\\":
            out += b"\\"
            i += 2
        elif shown[i + 1] == "x":
            out.append(int(shown[i + 2 : i + 4], 16))
            i += 4
        elif shown[i + 1] == "u":
            out += chr(int(shown[i + 2 : i + 6], 16)).encode("utf-8")
            i += 6
        else:
            raise AssertionError(f"unknown escape in {shown!r}")
    return bytes(out)
