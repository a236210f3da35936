"""
Run Twisted's own IRC server (C{twistd words}) as a benchmark peer.

Two things keep the stock C{twistd words} from hosting a benchmark room
on Python 3, and this launcher changes only those, then hands over to
twistd unchanged:

  - C{--group NAME} crashes on Python 3 (C{str.decode} in C{twisted/words/tap.py}), and the
    realm refuses to create a channel on JOIN by default.  We set the
    realm's own switch C{InMemoryWordsRealm.createGroupOnRequest = True},
    so the first JOIN creates the room, as on every other IRC server.
  - Every user needs credentials.  C{--auth memory:NAME:PASS:...} works
    but 10,000 users do not fit on a command line; C{--auth file:} reads
    the whole file at every login (quadratic).  With C{BENCH_WORDS_USERS}
    naming a file of C{name:password} lines, the same in-memory checker
    that C{--auth memory:} builds is filled from that file.

Usage (exactly like twistd)::

    BENCH_WORDS_USERS=users.txt python benchmarks/words_peer.py -n \\
        --pidfile= words --irc-port tcp:6667:interface=127.0.0.1
"""

from __future__ import annotations

import os
import sys


def _patch() -> None:
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
    from twisted.words import service, tap

    service.InMemoryWordsRealm.createGroupOnRequest = True
    path = os.environ.get("BENCH_WORDS_USERS")
    if not path:
        return
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, _, password = line.rstrip("\n").partition(":")
            if name:
                checker.addUser(name, password)  # str, as --auth memory: does
    original = tap.makeService

    def makeService(config):
        config.setdefault("credCheckers", []).append(checker)
        return original(config)

    tap.makeService = makeService


def main() -> None:
    _patch()
    from twisted.scripts.twistd import run

    sys.argv[0] = "twistd"
    run()


if __name__ == "__main__":
    main()
