"""
Tests for L{chatsvc.listing}: resolution inside the root and bounded,
sorted, escaped listings, on real temporary directories.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import stat
import tempfile

from twisted.trial import unittest

from chatsvc import listing

#: Every request that must be refused, in every form of escape we could
#: think of (the tree is built by L{makeTree}).  Missing paths and files
#: inside the root are refused the same way.
TRAVERSALS = [
    "..",
    "../",
    "../x",
    "../secret",
    "../secret/",
    "../../..",
    "beta/../..",
    "beta/../../secret",
    "sub/../..",
    "./..",
    "beta/./../..",
    "/",
    "/etc",
    "//etc",
    "///etc",
    "/tmp",
    "beta/../../etc",
    "sub/../../etc",
    "../root",
    "../root/beta",
    "../secret/../root",
    "../guess/../root",
    "out",
    "out/",
    "out/passwd",
    "outrel",
    "outrel/secret",
    "chainout1",
    "chainout1/etc",
    "backin",
    "loop1",
    "loop1/x",
    "selfloop",
    "\0",
    "beta\0",
    "beta/\0..",
    "\u2400",
    "~",
    "~/",
    "~root",
    "%2e%2e",
    "%2e%2e/%2e%2e/etc",
    "%2E%2E%2F",
    "..%2f..%2fetc",
    "..\\..",
    "..\\..\\etc",
    "\\etc",
    "C:\\",
    "....",
    ".../...",
    "file.txt",
    "file.txt/",
    "file.txt/..",
    "nonexistent",
    "nonexistent/..",
    "beta/inner",
    "dangling",
    "\ufffd",
]


def makeTree(base: str) -> str:
    """
    Build, under C{base}::

        secret/            a sibling of the root nobody may list
          hidden
        root/              the served root
          .dot
          alpha/
          beta/
            inner          a file
            gamma/
          file.txt
          zeta
          chain1 -> chain2 -> beta       (a chain inside)
          absin -> BASE/root/beta        (absolute, inside)
          out -> /etc                    (absolute, outside)
          outrel -> ..                   (relative, outside)
          chainout1 -> chainout2 -> /
          backin -> ../root/beta         (leaves the root, comes back)
          loop1 -> loop2 -> loop1
          selfloop -> selfloop
          dangling -> nowhere
          up -> beta/..                  (the root itself)

    @return: the root's path.
    """
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(base, "secret"))
    open(os.path.join(base, "secret", "hidden"), "w").close()
    for directory in ("alpha", "beta", "beta/gamma"):
        os.makedirs(os.path.join(root, directory))
    for name in (".dot", "file.txt", "zeta", "beta/inner"):
        open(os.path.join(root, name), "w").close()
    links = {
        "chain1": "chain2",
        "chain2": "beta",
        "absin": os.path.join(os.path.realpath(root), "beta"),
        "out": "/etc",
        "outrel": "..",
        "chainout1": "chainout2",
        "chainout2": "/",
        "backin": "../root/beta",
        "loop1": "loop2",
        "loop2": "loop1",
        "selfloop": "selfloop",
        "dangling": "nowhere",
        "up": "beta/..",
    }
    for name, target in links.items():
        os.symlink(target, os.path.join(root, name))
    return root


#: The listing of the root built by L{makeTree}.
TREE_LISTING = [
    ".dot",
    "absin/",
    "alpha/",
    "backin",
    "beta/",
    "chain1/",
    "chain2/",
    "chainout1",
    "chainout2",
    "dangling",
    "file.txt",
    "loop1",
    "loop2",
    "out",
    "outrel",
    "selfloop",
    "up/",
    "zeta",
]

_bigDirectory: dict[int, bytes] = {}


def tempDir(case: unittest.SynchronousTestCase) -> str:
    """
    A fresh absolute temporary directory, removed after the test (trial's
    C{mktemp} is relative to the working directory, which under pytest is
    the source tree).
    """
    path = tempfile.mkdtemp(prefix="chatsvc-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return os.path.realpath(path)


def bigDirectory(count: int = 100_000) -> bytes:
    """
    A directory holding C{count} empty files C{f000000}...; made once per
    process and removed at exit.  It goes to C{/dev/shm} when there is
    one: making 100,000 files takes well under a second on tmpfs, and up
    to twenty on a busy disk.
    """
    if count not in _bigDirectory:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
        base = tempfile.mkdtemp(prefix="chatsvc-big-", dir=shm)
        atexit.register(shutil.rmtree, base, True)
        path = os.path.join(os.fsencode(base), b"big")
        os.mkdir(path)
        for i in range(count):
            os.mknod(b"%s/f%06d" % (path, i), 0o600 | stat.S_IFREG)
        _bigDirectory[count] = path
    return _bigDirectory[count]


class TreeMixin:
    def setUp(self) -> None:
        self.base = tempDir(self)
        self.rootPath = makeTree(self.base)
        self.root = listing.resolveRoot(self.rootPath)

    def under(self, *parts: str) -> bytes:
        return os.path.join(self.root, *(os.fsencode(p) for p in parts))


class ResolveRootTests(unittest.SynchronousTestCase):
    def test_realpath(self) -> None:
        """
        The root is resolved to an absolute path without symlinks.
        """
        base = tempDir(self)
        os.makedirs(os.path.join(base, "real"))
        os.symlink("real", os.path.join(base, "link"))
        self.assertEqual(
            listing.resolveRoot(os.path.join(base, "link")),
            os.fsencode(os.path.realpath(os.path.join(base, "real"))),
        )

    def test_missing(self) -> None:
        self.assertRaises(OSError, listing.resolveRoot, os.path.join(tempDir(self), "none"))

    def test_file(self) -> None:
        path = os.path.join(tempDir(self), "file")
        open(path, "w").close()
        self.assertRaises(NotADirectoryError, listing.resolveRoot, path)


class ResolveInsideTests(TreeMixin, unittest.SynchronousTestCase):
    def test_root(self) -> None:
        """
        An empty request, C{.} and the like name the root itself.
        """
        for request in ("", ".", "./", ".//.", "beta/..", "up", "alpha/../beta/.."):
            self.assertEqual(listing.resolveInside(self.root, request), self.root, request)

    def test_subdirectories(self) -> None:
        """
        Relative paths inside the root resolve with symlinks, C{..}
        included, as long as they never leave the root.
        """
        beta = self.under("beta")
        for request in (
            "beta",
            "beta/",
            "./beta",
            "beta//",
            "beta/../beta",
            "alpha/../beta",
            "beta/gamma/../../beta",
            "chain1",
            "chain2",
            "absin",
            "chain1/gamma/..",
            "up/beta",
        ):
            self.assertEqual(listing.resolveInside(self.root, request), beta, request)
        self.assertEqual(
            listing.resolveInside(self.root, "chain1/gamma"), self.under("beta", "gamma")
        )
        self.assertEqual(listing.resolveInside(self.root, b"beta"), beta)

    def test_traversalRefused(self) -> None:
        """
        Every escape, missing path and file is refused, with no detail.
        """
        for request in TRAVERSALS:
            with self.assertRaises(listing.Refused, msg=repr(request)) as caught:
                listing.resolveInside(self.root, request)
            self.assertEqual(str(caught.exception), "")

    def test_nothingOutsideTouched(self) -> None:
        """
        Resolution never looks at a path outside the root, so a refusal
        cannot depend on what exists there.
        """
        touched = []
        realLstat, realReadlink = os.lstat, os.readlink

        def lstat(path, *a, **kw):
            touched.append(os.fsencode(path))
            return realLstat(path, *a, **kw)

        def readlink(path, *a, **kw):
            touched.append(os.fsencode(path))
            return realReadlink(path, *a, **kw)

        self.patch(listing.os, "lstat", lstat)
        self.patch(listing.os, "readlink", readlink)
        for request in TRAVERSALS:
            try:
                listing.resolveInside(self.root, request)
            except listing.Refused:
                pass
        self.assertTrue(touched)
        for path in touched:
            self.assertTrue(path == self.root or path.startswith(self.root + b"/"), path)

    def test_rootThroughSymlink(self) -> None:
        """
        A root given as a symlink is resolved once; paths under it and
        absolute links into its real path work, escapes do not.
        """
        os.symlink(self.rootPath, os.path.join(self.base, "rootlink"))
        root = listing.resolveRoot(os.path.join(self.base, "rootlink"))
        self.assertEqual(root, self.root)
        self.assertEqual(listing.resolveInside(root, "absin"), self.under("beta"))
        for request in ("../rootlink", "../rootlink/beta", "..", "../secret"):
            self.assertRaises(listing.Refused, listing.resolveInside, root, request)

    def test_symlinkLimit(self) -> None:
        """
        More than L{listing.MAX_SYMLINKS} links in one resolution is refused.
        """
        names = [f"l{i}" for i in range(listing.MAX_SYMLINKS + 1)]
        for name, target in zip(names, names[1:] + ["beta"], strict=True):
            os.symlink(target, os.path.join(self.rootPath, name))
        self.assertRaises(listing.Refused, listing.resolveInside, self.root, names[0])
        self.assertEqual(listing.resolveInside(self.root, names[1]), self.under("beta"))

    def test_servingFilesystemRoot(self) -> None:
        """
        A root of C{/} works: nothing can climb above it.
        """
        self.assertEqual(listing.resolveInside(b"/", ""), b"/")
        self.assertRaises(listing.Refused, listing.resolveInside, b"/", "..")
        self.assertEqual(
            listing.resolveInside(b"/", self.under("beta")[1:]),
            self.under("beta"),
        )


class ListDirectoryTests(TreeMixin, unittest.SynchronousTestCase):
    def listing(self, request: str = "", maxEntries: int = 1000, maxScan: int = 10**6):
        return json.loads(listing.listRequest(self.root, request, maxEntries, maxScan))

    def test_sortedDotfilesSlashes(self) -> None:
        """
        Every entry, dotfiles included, sorted by name; a slash on
        directories and on symlinks to directories inside the root, none
        on symlinks that leave the root, loop or dangle.
        """
        self.assertEqual(self.listing(), TREE_LISTING)

    def test_subdirectory(self) -> None:
        self.assertEqual(self.listing("beta"), ["gamma/", "inner"])
        self.assertEqual(self.listing("beta/../beta"), ["gamma/", "inner"])
        self.assertEqual(self.listing("chain1/gamma"), [])

    def test_empty(self) -> None:
        self.assertEqual(listing.listRequest(self.root, "alpha", 10, 10), "[]")

    def test_sortedByBytes(self) -> None:
        """
        Names sort by their bytes: upper case before lower case, UTF-8
        after ASCII, the sort happening before the slash is added.
        """
        directory = self.under("alpha")
        for name in (b"b", b"B", b"a", b"\xc3\xa9", b"a-", b"\xff"):
            open(os.path.join(directory, name), "w").close()
        os.mkdir(os.path.join(directory, b"a.d"))
        self.assertEqual(self.listing("alpha"), ["B", "a", "a-", "a.d/", "b", "\u00e9", "\\xff"])

    def test_unsafeNamesEscaped(self) -> None:
        """
        Names that are not UTF-8 or that hold CR, LF, ESC, other controls,
        backslashes or bidi overrides are shown with escapes, never
        dropped and never raw.
        """
        directory = self.under("alpha")
        names = {
            b"bad\xff\xfe": "bad\\xff\\xfe",
            b"cr\rx": "cr\\x0dx",
            b"lf\nx": "lf\\x0ax",
            b"esc\x1b[2Jx": "esc\\x1b[2Jx",
            b"bell\x07": "bell\\x07",
            b"back\\slash": "back\\\\slash",
            b"csi\xc2\x9b": "csi\\u009b",
            b"rlo\xe2\x80\xae": "rlo\\u202e",
            b"ok\xc3\xa9": "ok\u00e9",
        }
        for name in names:
            open(os.path.join(directory, name), "w").close()
        os.mkdir(os.path.join(directory, b"dir\nname"))
        line = listing.listRequest(self.root, "alpha", 100, 100)
        for raw in (b"\r", b"\n", b"\x1b", b"\x07", b"\xc2\x9b", b"\xe2\x80\xae"):
            self.assertNotIn(raw, line.encode("utf-8"))
        shown = json.loads(line)
        self.assertEqual(sorted(shown), sorted([*names.values(), "dir\\x0aname/"]))
        self.assertEqual(len(shown), len(names) + 1)

    def test_capped(self) -> None:
        """
        Past C{maxEntries} the first names are shown and the last element
        counts the rest.
        """
        directory = self.under("alpha")
        for i in range(10):
            open(os.path.join(directory, b"n%d" % i), "w").close()
        self.assertEqual(self.listing("alpha", 3), ["n0", "n1", "n2", "... 7 more"])
        self.assertEqual(self.listing("alpha", 10), [f"n{i}" for i in range(10)])
        self.assertEqual(self.listing("alpha", 9)[-1], "... 1 more")

    def test_scanCap(self) -> None:
        """
        Reading stops after C{maxScan} entries; the count then says there
        are more than it counted.
        """
        directory = self.under("alpha")
        for i in range(10):
            open(os.path.join(directory, b"n%d" % i), "w").close()
        shown = self.listing("alpha", 3, 5)
        self.assertEqual(len(shown), 4)
        self.assertEqual(shown[-1], "... 2+ more")
        self.assertEqual(shown[:3], sorted(shown[:3]))
        self.assertEqual(self.listing("alpha", 3, 10)[-1], "... 7 more")

    def test_hugeDirectory(self) -> None:
        """
        100,000 entries: the reply holds the first C{maxEntries} names in
        order and counts the rest.
        """
        big = bigDirectory()
        shown = json.loads(listing.listRequest(os.path.dirname(big), "big", 1000, 10**6))
        self.assertEqual(len(shown), 1001)
        self.assertEqual(shown[:1000], [f"f{i:06d}" for i in range(1000)])
        self.assertEqual(shown[-1], "... 99000 more")

    def test_cancelled(self) -> None:
        """
        A listing polls C{cancelled} while reading and stops when told.
        """
        self.patch(listing, "CANCEL_CHECK_EVERY", 2)
        directory = self.under("alpha")
        for i in range(10):
            open(os.path.join(directory, b"n%d" % i), "w").close()
        polls = []

        def cancelled():
            polls.append(True)
            return len(polls) >= 2

        self.assertRaises(
            listing.Cancelled, listing.listRequest, self.root, "alpha", 5, 100, cancelled
        )
        self.assertRaises(
            listing.Cancelled, listing.listRequest, self.root, "alpha", 5, 100, lambda: True
        )

    def test_unreadable(self) -> None:
        """
        A directory that cannot be read is refused like everything else.
        """
        self.assertRaises(
            listing.Refused, listing.listDirectory, self.root, self.under("nonexistent"), 5, 5
        )
        if os.geteuid() == 0:
            return
        os.chmod(self.under("alpha"), 0)
        self.addCleanup(os.chmod, self.under("alpha"), 0o755)
        self.assertRaises(listing.Refused, listing.listRequest, self.root, "alpha", 5, 5)

    def test_render(self) -> None:
        self.assertEqual(listing.Listing(["a", "b/"]).render(), '["a", "b/"]')
        self.assertEqual(listing.Listing(["a"], 2).render(), '["a", "... 2 more"]')
        self.assertEqual(listing.Listing([], 0, True).render(), '["... 0+ more"]')
        self.assertEqual(listing.Listing(["\u00e9"]).render(), '["\u00e9"]')
