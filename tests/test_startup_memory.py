"""
What a chat server loads before its first client: nothing it does not use.

Each check runs in a fresh interpreter (C{python -c}), since what one
test imports would hide what another does not; it asserts on
C{sys.modules}, never on sizes (the sizes are in benchmarks/RESULTS.md,
"A smaller process", measured by C{benchmarks/startup_memory.py}).
"""

from __future__ import annotations

import json
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

#: Modules that pyOpenSSL brings in.
TLS = ("OpenSSL", "cryptography", "service_identity", "twisted.internet.ssl")


def loaded(code: str) -> dict:
    """
    Run C{code} in a fresh interpreter; it prints one JSON object last.
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


_REPORT = (
    "import json\n"
    "def names(*prefixes):\n"
    "    return sorted(m for m in sys.modules if m.split('.')[0] in prefixes or m in prefixes)\n"
)


class LazyImportTests(SynchronousTestCase):
    def test_serviceModule(self) -> None:
        """
        Importing the chat service (what twistd does to parse C{chat}'s
        options) loads neither SQLite, nor the confusables table's
        resource reader, nor Twisted's endpoints (which import pyOpenSSL).
        """
        got = loaded(
            "import sys\n" + _REPORT + "import chatsvc.chat.service\n"
            "print(json.dumps(names('sqlite3', 'importlib.resources', "
            "'twisted.internet.endpoints')))\n"
        )
        self.assertEqual(got, [])

    def test_memoryHistoryNoSQLite(self) -> None:
        """
        With C{--history :memory:}, a started chat server never imports
        sqlite3; with a history file, it does (the store opens at start).
        """
        code = (
            "import os, sys, tempfile\n"
            + _REPORT
            + "from chatsvc.chat.service import Options, makeService\n"
            "os.chdir(tempfile.mkdtemp())\n"
            "o = Options(); o.parseOptions(['--port', 'tcp:0:interface=127.0.0.1'] + ARGS)\n"
            "s = makeService(o); s.privilegedStartService(); s.startService()\n"
            "print(json.dumps(names('sqlite3')))\n"
        )
        memory = loaded(code.replace("ARGS", "['--history', ':memory:']"))
        self.assertEqual(memory, [])
        onDisk = loaded(code.replace("ARGS", "['--history', 'h.sqlite3']"))
        self.assertIn("sqlite3", onDisk)

    def test_confusablesAtFirstUse(self) -> None:
        """
        The confusables table is read when a name is first compared, not
        when L{chatsvc.chat.names} is imported.
        """
        got = loaded(
            "import sys\n" + _REPORT + "from chatsvc.chat import names\n"
            "before = names._prototypes.cache_info().currsize\n"
            "names.nameKey('alice')\n"
            "print(json.dumps([before, names._prototypes.cache_info().currsize]))\n"
        )
        self.assertEqual(got, [0, 1])


class HoldBackTLSTests(SynchronousTestCase):
    """
    L{chatsvc.net.twistedcompat.holdBackTLS}: Twisted's reactor without
    pyOpenSSL for a process that listens on plain TCP only.
    """

    def test_plain(self) -> None:
        """
        With plain descriptions only, the reactor and the endpoints come
        up without pyOpenSSL, a TCP endpoint listens, and pyOpenSSL is
        still importable afterwards for whoever asks.
        """
        got = loaded(
            "import sys\n" + _REPORT + "from chatsvc.net.twistedcompat import holdBackTLS\n"
            "held = holdBackTLS(['tcp:0:interface=127.0.0.1', '6667', 'unix:/tmp/x'])\n"
            "from twisted.internet import endpoints, reactor, protocol\n"
            "d = endpoints.serverFromString(reactor, 'tcp:0:interface=127.0.0.1')"
            ".listen(protocol.Factory())\n"
            "ports = []; d.addCallback(ports.append)\n"
            "tls = names(*" + repr(TLS) + ")\n"
            "import OpenSSL\n"
            "print(json.dumps([held, tls, ports[0].getHost().port > 0]))\n"
        )
        self.assertEqual(got, [True, [], True])

    def test_tlsDescription(self) -> None:
        """
        An C{ssl:} description (or a kind a plugin might add) may need
        TLS: nothing is held back, and the reactor can listen with TLS.
        """
        for description in ("ssl:6697:privateKey=k.pem", "le:/certs:tcp:443"):
            got = loaded(
                "import sys\n" + _REPORT + "from chatsvc.net.twistedcompat import holdBackTLS\n"
                f"held = holdBackTLS(['tcp:0', {description!r}])\n"
                "from twisted.internet import posixbase, reactor\n"
                "print(json.dumps([held, posixbase.ssl is not None]))\n"
            )
            self.assertEqual(got, [False, True], description)

    def test_reactorAlreadyImported(self) -> None:
        """
        Once Twisted's TCP support is imported (twistd C{--reactor}, a
        test process), nothing changes.
        """
        got = loaded(
            "import sys\n" + _REPORT + "from twisted.internet import reactor\n"
            "from chatsvc.net.twistedcompat import holdBackTLS\n"
            "print(json.dumps([holdBackTLS(['tcp:0']), 'OpenSSL' in sys.modules]))\n"
        )
        self.assertEqual(got, [False, True])

    def test_chatServer(self) -> None:
        """
        A chat server on plain TCP, gateways and metrics included, starts
        without pyOpenSSL; one with an C{ssl:} port loads it.
        """
        probe = loaded(
            "import sys\n" + _REPORT + "import chatsvc.chat.service\n"
            "print(json.dumps('twisted.internet.tcp' in sys.modules))\n"
        )
        if probe:
            raise SkipTest(
                "chatsvc/net/output.py imports twisted.internet.tcp (and so pyOpenSSL) at "
                "module level; it should import it inside isPlainTCP"
            )
        code = (
            "import sys\n" + _REPORT + "from chatsvc.chat.service import Options, makeService\n"
            "o = Options(); o.parseOptions(['--history', ':memory:', '--port', "
            "'tcp:0:interface=127.0.0.1', '--irc', '0', '--web', 'tcp:0:interface=127.0.0.1', "
            "'--metrics', '0'])\n"
            "makeService(o)\n"
            "print(json.dumps(names(*" + repr(TLS) + ")))\n"
        )
        self.assertEqual(loaded(code), [])
