"""
Tests that the project's documentation points only at what the project
carries, and shows what the code does.

A docstring, comment or page that cites a document a clone does not have
sends its reader nowhere, and a map or an example that no test reads
rots without anyone noticing.  These tests read the working tree as it
is:

  - every C{.md} or C{.rst} document named in the code, the tests, the
    benchmarks, the docs, the README or setup.cfg exists in the
    repository, and nothing points outside it;
  - the README's module map names every module, and only modules that
    exist;
  - every test id in C{docs/HARDENING-TESTS.md} is a test of the suite;
  - the JSON and C{ls} examples of the README and C{docs/protocol.rst},
    and the JSON key table there, are what the servers write.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from twisted.trial import unittest

from chatsvc.chat.history import MemoryHistory
from chatsvc.chat.lines import ChatFactory
from chatsvc.chat.rooms import Hub
from chatsvc.listing import Listing
from chatsvc.testing import Clock, lineConnection

ROOT = Path(__file__).resolve().parent.parent

#: This file, left out of the scan: its own examples of bad references
#: are meant to be bad.
SELF = Path(__file__).resolve()

#: What is read for document references: directories (recursively) and
#: single files, relative to the project root.
SCANNED = (
    ".ci",
    "benchmarks",
    "chatsvc",
    "docs",
    "tests",
    "twisted",
    "MANIFEST.in",
    "README.rst",
    "pyproject.toml",
    "setup.cfg",
)

#: Directories never read: caches, and the benchmarks' own output
#: (written by every run, never committed).
SKIPPED_DIRECTORIES = {"__pycache__", ".hypothesis", ".ruff_cache", "_trial_temp", "results"}

#: Documents that are named on purpose although no clone has them: the
#: reports benchmark runs write (C{benchmarks/run_all.py},
#: C{benchmarks/cluster.py}).
GENERATED = {
    "latest.md",
    "benchmarks/results/latest.md",
    "cluster-latest.md",
    "benchmarks/results/cluster-latest.md",
    "results/cluster-latest.md",
}

#: A document name: an optional relative directory, a name, C{.md} or
#: C{.rst}.  Not preceded by a path character, so a URL's tail (a page
#: on another site) is not taken for one of ours.
DOCUMENT = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]*\w\.(?:md|rst))\b")

#: Pointers out of the repository, to the documents of whoever wrote it.
OUTSIDE = re.compile(r"(?:\.\.|/work)/shared\b")

#: A test id as pytest writes it: C{tests/test_x.py::Class::test_y}.
TEST_ID = re.compile(r"tests/(test_\w+)\.py::(\w+)::(test_\w+)")

#: The heading of the README section that maps the modules.
MAP_HEADING = "Module map"

#: A path of a module (or script) as the module map names it.
MAPPED_PATH = re.compile(r"(?:chatsvc|benchmarks|twisted)/[\w./]*\w\.(?:py|sh)\b")


def scannedFiles() -> list[Path]:
    """
    Every text file under L{SCANNED}, outside L{SKIPPED_DIRECTORIES}.
    """
    found = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            found.append(path)
            continue
        for child in sorted(path.rglob("*")):
            relative = child.relative_to(ROOT)
            if child.is_file() and not SKIPPED_DIRECTORIES.intersection(relative.parts):
                found.append(child)
    return found


def readText(path: Path) -> str | None:
    """
    The text of C{path}, or L{None} for a file that is not UTF-8 text.
    """
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def resolves(reference: str, source: Path) -> bool:
    """
    Whether the document C{reference}, named in C{source}, is one the
    repository has: relative to the project root, to C{source}'s own
    directory (C{README.md} in C{benchmarks/}) or to C{docs/}.
    """
    if reference in GENERATED:
        return True
    bases = (ROOT, source.parent, ROOT / "docs")
    return any((base / reference).is_file() for base in bases)


def danglingReferences() -> list[str]:
    """
    C{FILE:LINE: NAME} for every document named but not in the repository,
    and every pointer outside it.
    """
    problems = []
    for path in scannedFiles():
        if path == SELF:
            continue
        text = readText(path)
        if text is None:
            continue
        where = path.relative_to(ROOT)
        for number, line in enumerate(text.splitlines(), 1):
            for match in DOCUMENT.finditer(line):
                if not resolves(match.group(1), path):
                    problems.append(f"{where}:{number}: {match.group(1)}")
            for match in OUTSIDE.finditer(line):
                problems.append(f"{where}:{number}: {match.group()}")
    return problems


def moduleMap() -> str:
    """
    The text of the README section titled L{MAP_HEADING}, up to the next
    section heading; empty when the README has no such section.
    """
    lines = (ROOT / "README.rst").read_text(encoding="utf-8").splitlines()
    if MAP_HEADING not in lines:
        return ""
    start = lines.index(MAP_HEADING) + 2
    end = start
    while end + 1 < len(lines) and not _isUnderline(lines[end + 1], lines[end]):
        end += 1
    return "\n".join(lines[start:end])


def _isUnderline(line: str, title: str) -> bool:
    return bool(title.strip()) and len(line) >= len(title) and set(line) == {"-"}


def modules() -> set[str]:
    """
    Every module and script the map must name: the package's modules,
    the twistd plugin file and the benchmark files (package markers
    C{__init__.py} aside).
    """
    paths = [
        *ROOT.glob("chatsvc/**/*.py"),
        *ROOT.glob("twisted/plugins/*.py"),
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("benchmarks/*.sh"),
    ]
    return {
        path.relative_to(ROOT).as_posix()
        for path in paths
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }


class DocumentReferenceTests(unittest.SynchronousTestCase):
    """
    Documents named anywhere in the project are documents it has.
    """

    def test_everyNamedDocumentExists(self) -> None:
        """
        No file names a C{.md} or C{.rst} document that is not in the
        repository, and none points outside it.
        """
        problems = danglingReferences()
        self.assertFalse(problems, "not in the repository:\n" + "\n".join(problems))

    def test_danglingReferenceFound(self) -> None:
        """
        The scan does see a missing document and a pointer outside, so an
        empty result above means something.
        """
        here = ROOT / "tests" / "test_docs.py"
        self.assertFalse(resolves("NO-SUCH-DOCUMENT.md", here))
        self.assertTrue(resolves("README.rst", here))
        self.assertTrue(resolves("README.md", ROOT / "benchmarks" / "run_all.py"))
        self.assertEqual(
            [m.group(1) for m in DOCUMENT.finditer("see docs/x.rst, A-B.md or *.md")],
            ["docs/x.rst", "A-B.md"],
        )
        self.assertEqual(DOCUMENT.findall("https://example.org/a/NOTES.md"), [])
        self.assertIsNotNone(OUTSIDE.search("read ../" + "shared/NOTES"))


class ModuleMapTests(unittest.SynchronousTestCase):
    """
    The README's module map is complete and true.
    """

    def test_everyModuleNamed(self) -> None:
        """
        Every module of the package, the plugin file and every benchmark
        file is named in the map by its path.
        """
        text = moduleMap()
        self.assertTrue(text, f"README.rst has no {MAP_HEADING!r} section")
        missing = sorted(modules() - set(MAPPED_PATH.findall(text)))
        self.assertFalse(missing, "not in the module map: " + ", ".join(missing))

    def test_onlyExistingModulesNamed(self) -> None:
        """
        Every path the map names exists.
        """
        named = set(MAPPED_PATH.findall(moduleMap()))
        gone = sorted(path for path in named if not (ROOT / path).is_file())
        self.assertFalse(gone, "in the module map but not in the repository: " + ", ".join(gone))


def missingTests(text: str) -> list[str]:
    """
    The test ids in C{text} that name no test of the suite.
    """
    missing = []
    for match in TEST_ID.finditer(text):
        module, cls, method = match.groups()
        found = getattr(importlib.import_module(f"tests.{module}"), cls, None)
        if found is None or not callable(getattr(found, method, None)):
            missing.append(match.group())
    return missing


class HardeningMapTests(unittest.SynchronousTestCase):
    """
    C{docs/HARDENING-TESTS.md} maps hostile input to tests by their ids;
    a renamed or removed test must not leave the map pointing at nothing.
    """

    def test_everyMappedTestExists(self) -> None:
        """
        Every test id the map names is a test of the suite.
        """
        text = (ROOT / "docs" / "HARDENING-TESTS.md").read_text(encoding="utf-8")
        self.assertTrue(TEST_ID.search(text), "no test ids found in docs/HARDENING-TESTS.md")
        missing = missingTests(text)
        self.assertFalse(missing, "mapped but not in the suite: " + ", ".join(missing))

    def test_missingTestFound(self) -> None:
        """
        A test id that names no test is reported.
        """
        self.assertEqual(
            missingTests(
                "tests/test_docs.py::HardeningMapTests::test_missingTestFound, "
                "tests/test_docs.py::HardeningMapTests::test_noSuchTest"
            ),
            ["tests/test_docs.py::HardeningMapTests::test_noSuchTest"],
        )


#: Pages whose examples show what the servers write.
EXAMPLE_PAGES = ("README.rst", "docs/protocol.rst")

#: One line of a chat session in JSON that makes the server write an
#: object of every type (alice, in text mode, is there to be written to).
JSON_SESSION = (
    b"/format json\nbot\nhello\n/me waves\n/who\n/rooms\n/msg alice psst\n"
    b"/nick robot\n/history\n/bogus\n/topic tea at four\n/join games\n/join lobby\n"
)


def keyOrders() -> dict[str, list[str]]:
    """
    The keys of each type of JSON object the chat writes, in the order it
    writes them (the optional C{history} key left out), from a session on
    a C{StringTransport}.
    """
    clock = Clock()
    factory = ChatFactory(Hub(clock, MemoryHistory()), clock=clock)
    alice, _ = lineConnection(factory, port=40001)
    alice.dataReceived(b"alice\n")
    bot, transport = lineConnection(factory, port=40002)
    bot.dataReceived(JSON_SESSION)
    alice.dataReceived(b"/quit\n")
    clock.advance(0)
    orders: dict[str, list[str]] = {}
    for line in transport.value().decode("utf-8").splitlines():
        kind, keys = typeAndKeys(line)
        orders.setdefault(kind, keys)
    return orders


def typeAndKeys(line: str) -> tuple[str, list[str]]:
    """
    The type of a JSON object on one line, and its keys in order, the
    optional C{history} key left out.
    """
    pairs = json.loads(line, object_pairs_hook=list)
    return dict(pairs)["type"], [key for key, _ in pairs if key != "history"]


def jsonExamples(text: str) -> list[tuple[str, list[str]]]:
    """
    L{typeAndKeys} of every example JSON object in C{text}: the lines
    that start with C{{"type"}.
    """
    lines = (line.strip() for line in text.splitlines())
    return [typeAndKeys(line) for line in lines if line.startswith('{"type"')]


def keyTable(text: str) -> dict[str, list[str]]:
    """
    The table of JSON keys in C{docs/protocol.rst}: type to keys in order
    (what follows a C{;} in a row, and the optional C{history}, left out).
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "keys, in the order" in line)
    rows: list[str] = []
    for line in lines[start + 2 :]:
        if line.startswith("="):
            break
        if line.startswith("``"):
            rows.append(line)
        else:
            rows[-1] += " " + line.strip()
    table = {}
    for row in rows:
        row = row.split(";")[0].replace("[, ``history``]", "")
        kind, *keys = re.findall(r"``(\w+)``", row)
        table[kind] = keys
    return table


def listingExamples(text: str) -> list[str]:
    """
    Every line of C{text} that shows an C{ls} reply: a JSON array of
    strings on one line.
    """
    return [line.strip() for line in text.splitlines() if line.strip().startswith('["')]


class ExampleTests(unittest.SynchronousTestCase):
    """
    The examples in the README and in C{docs/protocol.rst} show what the
    servers really write.
    """

    def test_jsonKeyOrder(self) -> None:
        """
        Every example JSON object has the keys the chat writes for its
        type, in the chat's order.
        """
        orders = keyOrders()
        for page in EXAMPLE_PAGES:
            examples = jsonExamples((ROOT / page).read_text(encoding="utf-8"))
            self.assertTrue(examples, f"no JSON example in {page}")
            for kind, keys in examples:
                self.assertEqual(keys, orders[kind], f"{page}: {kind}")

    def test_jsonKeyTable(self) -> None:
        """
        The table of keys in C{docs/protocol.rst} names every type the
        chat writes, with its keys in the chat's order.
        """
        table = keyTable((ROOT / "docs" / "protocol.rst").read_text(encoding="utf-8"))
        self.assertEqual(table, keyOrders())

    def test_listingSpacing(self) -> None:
        """
        Every C{ls} example is written as cmdserv writes a listing.
        """
        for page in EXAMPLE_PAGES:
            examples = listingExamples((ROOT / page).read_text(encoding="utf-8"))
            self.assertTrue(examples, f"no ls example in {page}")
            for line in examples:
                self.assertEqual(line, Listing(json.loads(line)).render(), page)
