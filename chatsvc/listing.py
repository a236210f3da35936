"""
Directory listings that stay inside the served root, stay bounded and
stay on one safe line.

These are plain blocking functions, meant to run off the reactor thread
(L{chatsvc.cmdserv} runs them on a small thread pool of their own).

Resolution (L{resolveInside}) walks the requested path one component at
a time from the root, following symlinks itself, and never looks at
anything outside the root: a C{..} that would climb above the root, an
absolute path, or a symlink whose target leaves the root (or steps above
it on the way) is refused before any file outside is touched.  So the
answer to a request never depends on what exists outside the root, and
every refusal is the same L{Refused} with no detail.  (Resolving with
C{realpath} first and checking containment afterwards would stat outside
paths: C{../guess/../root} would then be listed exactly when C{guess}
exists next to the root.)

Listing (L{listDirectory}) reads names with C{scandir} and no C{stat},
keeps only the C{maxEntries} smallest names in a heap while counting the
rest, and stops reading after C{maxScan} entries, so neither time nor
memory grows without bound with the directory.  Names are sorted by
their bytes (as C{LC_ALL=C ls} does), shown with escapes when they are
not valid UTF-8 or hold controls (L{chatsvc.net.text.escapeName}), and
directories get a trailing C{/}.
"""

from __future__ import annotations

import heapq
import json
import os
import stat
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from chatsvc.net.text import escapeName

#: Most symlinks followed while resolving one path (Linux's own limit).
MAX_SYMLINKS = 40

#: How often (in entries read) a listing checks whether it was cancelled.
CANCEL_CHECK_EVERY = 4096


class Refused(Exception):
    """
    The request does not name a listable directory inside the root.

    Deliberately without detail: outside paths, missing paths, files and
    unreadable directories all look the same to the client.
    """


class Cancelled(Exception):
    """
    The listing was cancelled (client gone, server stopping).
    """


def resolveRoot(path: str | bytes) -> bytes:
    """
    Resolve the served root once, at start: every symlink on the way is
    followed, so a root that is itself a symlink is compared by what it
    points at.

    @raise OSError: the path does not exist or is not a directory.
    """
    real = os.path.realpath(os.fsencode(path), strict=True)
    if not os.path.isdir(real):
        raise NotADirectoryError(20, "not a directory", os.fsdecode(path))
    return real


def _split(path: bytes) -> list[bytes]:
    return [part for part in path.split(b"/") if part and part != b"."]


def _walk(root: bytes, stack: list[bytes], pending: deque) -> list[bytes]:
    """
    Resolve C{pending} components starting in directory C{root/stack}.

    @return: the components below C{root} of the resolved path, none of
        them a symlink.
    @raise Refused: the walk would leave the root, meets a missing
        component, a non-directory on the way, or too many symlinks.
    """
    stack = list(stack)
    followed = 0
    while pending:
        name = pending.popleft()
        if name == b"..":
            if not stack:
                raise Refused()
            stack.pop()
            continue
        path = os.path.join(root, *stack, name)
        try:
            mode = os.lstat(path).st_mode
        except (OSError, ValueError):
            raise Refused() from None
        if stat.S_ISLNK(mode):
            followed += 1
            if followed > MAX_SYMLINKS:
                raise Refused()
            try:
                target = os.readlink(path)
            except OSError:
                raise Refused() from None
            if target.startswith(b"/"):
                # Absolute targets are followed only when they name the
                # root (as resolved at start) or something under it.
                if target.rstrip(b"/") == root.rstrip(b"/"):
                    target = b""
                elif target.startswith(root.rstrip(b"/") + b"/"):
                    target = target[len(root.rstrip(b"/")) + 1 :]
                else:
                    raise Refused()
                stack = []
            pending.extendleft(reversed(_split(target)))
            continue
        if pending and not stat.S_ISDIR(mode):
            raise Refused()
        stack.append(name)
    return stack


def resolveInside(root: bytes, request: str | bytes) -> bytes:
    """
    Resolve C{request}, a path relative to C{root}, following symlinks,
    to the directory it names.

    @param root: the served root, as returned by L{resolveRoot}.
    @return: the directory's full path.
    @raise Refused: for anything that is not a directory inside the root
        (absolute paths, NUL bytes, paths leaving the root, missing paths,
        files), always with the same (empty) message.
    """
    raw = os.fsencode(request) if isinstance(request, str) else request
    if b"\0" in raw or raw.startswith(b"/"):
        raise Refused()
    stack = _walk(root, [], deque(_split(raw)))
    path = os.path.join(root, *stack) if stack else root
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        raise Refused() from None
    if not stat.S_ISDIR(mode):
        raise Refused()
    return path


def _isInsideDirectory(root: bytes, directory: bytes, entry: os.DirEntry) -> bool:
    """
    Whether an entry is a directory a client could list: a real
    directory, or a symlink that resolves to one inside the root (a
    symlink out shows no slash, so a listing reveals nothing about what
    it points at).
    """
    try:
        if not entry.is_symlink():
            return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False
    relative = os.path.relpath(directory, root) if directory != root else b""
    stack = _split(relative)
    try:
        resolved = _walk(root, stack, deque([entry.name]))
        path = os.path.join(root, *resolved) if resolved else root
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except (Refused, OSError):
        return False


@dataclass
class Listing:
    """
    What L{listDirectory} found.

    @ivar names: the shown names, sorted, escaped, C{/} on directories.
    @ivar more: entries read but not shown.
    @ivar partial: reading stopped at C{maxScan}: there are more entries
        than C{more} counts.
    """

    names: list[str] = field(default_factory=list)
    more: int = 0
    partial: bool = False

    def render(self) -> str:
        """
        The listing as one line of JSON (no line ending).  When names
        were left out, the last element is C{"... N more"} (C{"... N+
        more"} when reading stopped at the scan cap).
        """
        items = list(self.names)
        if self.more or self.partial:
            items.append(f"... {self.more}{'+' if self.partial else ''} more")
        return json.dumps(items, ensure_ascii=False)


def listDirectory(
    root: bytes,
    directory: bytes,
    maxEntries: int,
    maxScan: int,
    cancelled: Callable[[], bool] | None = None,
) -> Listing:
    """
    List C{directory} (inside C{root}, already resolved).

    @param maxEntries: most names shown.
    @param maxScan: most entries read (at least C{maxEntries}).
    @param cancelled: polled while reading; when it returns true the
        listing stops with L{Cancelled}.
    @raise Refused: the directory cannot be read.
    """
    seen = 0
    partial = False

    def entries(iterator):
        nonlocal seen, partial
        for entry in iterator:
            if seen >= maxScan:
                partial = True
                return
            seen += 1
            if cancelled is not None and seen % CANCEL_CHECK_EVERY == 0 and cancelled():
                raise Cancelled()
            yield entry

    try:
        with os.scandir(directory) as iterator:
            kept = heapq.nsmallest(maxEntries, entries(iterator), key=_entryName)
            names = []
            for entry in kept:
                shown = escapeName(entry.name)
                if _isInsideDirectory(root, directory, entry):
                    shown += "/"
                names.append(shown)
    except OSError:
        raise Refused() from None
    return Listing(names, seen - len(kept), partial)


def _entryName(entry: os.DirEntry) -> bytes:
    return entry.name


def listRequest(
    root: bytes,
    request: str,
    maxEntries: int,
    maxScan: int,
    cancelled: Callable[[], bool] | None = None,
) -> str:
    """
    Answer an C{ls} request: resolve, list, render.  The whole job, meant
    for a worker thread.

    @param request: the path the client gave (C{""} for the root).
    @return: the JSON line.
    @raise Refused: see L{resolveInside} and L{listDirectory}.
    @raise Cancelled: C{cancelled()} became true.
    """
    if cancelled is not None and cancelled():
        raise Cancelled()
    directory = resolveInside(root, request)
    return listDirectory(root, directory, maxEntries, maxScan, cancelled).render()
