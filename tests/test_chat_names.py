"""
Tests for L{chatsvc.chat.names}: what a valid name and room name is, and
when two names are the same (NFKC, case folding, UTS #39 skeletons).
"""

from __future__ import annotations

from twisted.trial import unittest

from chatsvc.chat.names import (
    NAME_MAX,
    ROOM_MAX,
    InvalidName,
    checkName,
    checkRoom,
    nameKey,
    nameKeys,
    roomKey,
    skeleton,
)


def collide(a: str, b: str) -> bool:
    """
    Whether two names are the same name for the server.
    """
    return bool(set(nameKeys(a)) & set(nameKeys(b)))


class CheckNameTests(unittest.SynchronousTestCase):
    def test_valid(self) -> None:
        for name in [
            "a",
            "alice",
            "Alice_2",
            "bob-the-builder",
            "x" * NAME_MAX,
            "Zoë",
            "Мария",
            "李雷",
            "नमस्ते",  # marks (Mn, Mc) after a letter
            "ﬁsh",  # a ligature is a letter
            "ａｌｉｃｅ",  # full-width letters are letters (and collide, below)
        ]:
            self.assertEqual(checkName(name), name)

    def test_normalisedToNFC(self) -> None:
        """
        A name given decomposed is shown composed.
        """
        self.assertEqual(checkName("Zoe\u0308"), "Zo\u00eb")

    def test_length(self) -> None:
        self.assertIn("at least one", str(self.assertRaises(InvalidName, checkName, "")))
        error = self.assertRaises(InvalidName, checkName, "x" * (NAME_MAX + 1))
        self.assertIn(f"at most {NAME_MAX}", str(error))

    def test_firstCharacter(self) -> None:
        for name in ["1alice", "_alice", "-alice", "\u0301alice", "#alice"]:
            error = self.assertRaises(InvalidName, checkName, name)
            self.assertIn("starts with a letter", str(error), name)

    def test_refusedCharacters(self) -> None:
        """
        Spaces, punctuation, symbols, controls, escape sequences (as they
        arrive, neutralised to control pictures, or raw), NUL, DEL, C1 and
        format characters are refused, and the reason names the culprit.
        """
        for name, shown in [
            ("al ice", "U+0020"),
            ("alice!", "'!'"),
            ("al.ice", "'.'"),
            ("al\tice", "U+0009"),
            ("ali\x1b[31mce", "U+001B"),
            ("ali\u238b[31mce", "'⎋'"),  # ESC as the line protocol neutralises it
            ("al\x00ice", "U+0000"),
            ("al\u2400ice", "'␀'"),  # NUL, neutralised
            ("alice\x7f", "U+007F"),
            ("al\x85ice", "U+0085"),
            ("al\u009bice", "U+009B"),
            ("alice\ufffd", "'�'"),
            ("al\u2028ice", "U+2028"),
            ("alice\u263a", "'☺'"),
        ]:
            error = self.assertRaises(InvalidName, checkName, name)
            self.assertIn(shown, str(error), name)

    def test_invisible(self) -> None:
        """
        Zero-width, bidi and other format characters, and the invisible
        letters and marks (Hangul fillers, variation selectors, the
        combining grapheme joiner) are refused: each would make a name
        that looks like another one.
        """
        for c in [
            "\u200b",  # zero width space
            "\u200c",  # zero width non-joiner
            "\u200d",  # zero width joiner
            "\u200e",  # left-to-right mark
            "\u202e",  # right-to-left override
            "\u2066",  # left-to-right isolate
            "\u2060",  # word joiner
            "\ufeff",  # zero width no-break space
            "\u00ad",  # soft hyphen
            "\u3164",  # Hangul filler (a letter!)
            "\uffa0",  # half-width Hangul filler (a letter)
            "\u115f",  # Hangul choseong filler (a letter)
            "\u034f",  # combining grapheme joiner (a mark)
            "\ufe0f",  # variation selector 16 (a mark)
            "\U000e0100",  # variation selector 17 (a mark)
            "\u180b",  # Mongolian free variation selector (a mark)
            "\u17b4",  # Khmer inherent vowel (a mark)
            "\U000e0041",  # tag letter A
        ]:
            for name in [f"ali{c}ce", f"alice{c}", f"{c}alice"]:
                error = self.assertRaises(InvalidName, checkName, name)
                self.assertIn(f"U+{ord(c):04X}", str(error), repr(name))
        self.assertRaises(InvalidName, checkName, "\u3164")


class CheckRoomTests(unittest.SynchronousTestCase):
    def test_hashOptional(self) -> None:
        self.assertEqual(checkRoom("lobby"), "lobby")
        self.assertEqual(checkRoom("#lobby"), "lobby")
        self.assertEqual(checkRoom("#Café"), "Café")

    def test_length(self) -> None:
        self.assertEqual(checkRoom("r" * ROOM_MAX), "r" * ROOM_MAX)
        self.assertEqual(checkRoom("#" + "r" * ROOM_MAX), "r" * ROOM_MAX)
        self.assertIn(
            f"at most {ROOM_MAX}", str(self.assertRaises(InvalidName, checkRoom, "r" * 33))
        )
        self.assertRaises(InvalidName, checkRoom, "")
        self.assertRaises(InvalidName, checkRoom, "#")

    def test_rules(self) -> None:
        """
        A room name follows the name rules: only one leading C{#} is
        dropped.
        """
        for room in ["##lobby", "1room", "my room", "room\u200b", "r\x1bm", "room\u3164", "a/b"]:
            self.assertRaises(InvalidName, checkRoom, room)
        self.assertEqual(checkRoom("dev-ops_2"), "dev-ops_2")

    def test_nul(self) -> None:
        """
        A NUL in a room name, raw or as the U+2400 symbol that decoding a
        line turns it into, is refused, and the reason names it.
        """
        for room, why in [
            ("lo\x00bby", "U+0000"),
            ("#lo\x00bby", "U+0000"),
            ("lobby\x00", "U+0000"),
            ("lo\u2400bby", "'\u2400'"),
        ]:
            error = self.assertRaises(InvalidName, checkRoom, room)
            self.assertIn(why, str(error), room)

    def test_roomKey(self) -> None:
        self.assertEqual(roomKey("#Lobby"), roomKey("lobby"))
        self.assertEqual(roomKey("ＬＯＢＢＹ"), roomKey("lobby"))
        self.assertNotEqual(roomKey("lobby"), roomKey("lobby2"))


class NameKeyTests(unittest.SynchronousTestCase):
    def test_case(self) -> None:
        for other in ["ALICE", "Alice", "aLiCe"]:
            self.assertTrue(collide("alice", other), other)

    def test_nfkc(self) -> None:
        """
        Full-width letters (and other compatibility forms) are the same name.
        """
        self.assertTrue(collide("alice", "ａｌｉｃｅ"))
        self.assertTrue(collide("alice", "ＡＬＩＣＥ"))
        self.assertTrue(collide("fish", "ﬁsh"))

    def test_confusables(self) -> None:
        """
        Confusable letters of other scripts collide (UTS #39 skeletons).
        """
        for other in [
            "\u0430lice",  # Cyrillic a
            "alic\u0435",  # Cyrillic e
            "\u0410LICE",  # Cyrillic A
            "al\u0131ce",  # dotless i
            "aIice",  # capital I looks like l
            "\u0391LICE",  # Greek Alpha
        ]:
            self.assertTrue(collide("alice", other), other)
            self.assertTrue(collide(other, "alice"), other)

    def test_distinct(self) -> None:
        for a, b in [
            ("alice", "alice2"),
            ("alice", "alicia"),
            ("bob", "rob"),
            ("alice", "alicé"),
            ("Мария", "Марина"),
        ]:
            self.assertFalse(collide(a, b), (a, b))

    def test_nameKey(self) -> None:
        """
        L{nameKey} is the first key, the one members are found by.
        """
        self.assertEqual(nameKeys("Alice")[0], nameKey("Alice"))
        self.assertEqual(nameKey("ALICE"), nameKey("ａｌｉｃｅ"))

    def test_skeleton(self) -> None:
        self.assertEqual(skeleton("\u0430"), skeleton("a"))
        self.assertEqual(skeleton("paypal"), skeleton("\u0440\u0430ypal"))
