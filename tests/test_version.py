"""
C{twistd -n SERVICE --version}: chatsvc's version, which an operator's
bug report needs (twistd's own C{--version} names only Twisted's), for
every service, from a real twistd.
"""

from __future__ import annotations

import platform
import sys

from twisted.trial.unittest import TestCase

import chatsvc
import twisted
from tests.support import runProcess
from tests.test_client_process import temporaryDirectory

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class VersionTests(TestCase):
    """
    Each service answers C{--version} with one line and exit status 0,
    before anything starts (no port, no history file).
    """

    async def version(self, service: str) -> None:
        cwd = temporaryDirectory(self)
        code, out, err = await runProcess(
            [*TWISTD, "-n", "--pidfile=", service, "--version"], cwd=cwd
        )
        self.assertEqual((code, err), (0, b""), out)
        self.assertEqual(
            out.decode(),
            f"twistd {service} (chatsvc) {chatsvc.__version__}, "
            f"Twisted {twisted.__version__}, Python {platform.python_version()}\n",
        )

    async def test_chat(self) -> None:
        await self.version("chat")

    async def test_tsserv(self) -> None:
        await self.version("tsserv")

    async def test_cmdserv(self) -> None:
        await self.version("cmdserv")

    async def test_help(self) -> None:
        """
        C{--help} lists it, so it tells the truth.
        """
        code, out, err = await runProcess(
            [*TWISTD, "-n", "--pidfile=", "chat", "--help"], cwd=temporaryDirectory(self)
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"--version", out)
        self.assertIn(b"Show chatsvc's version", out)
