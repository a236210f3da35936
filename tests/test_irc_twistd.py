"""
C{twistd -n chat --irc PORT} as a user runs it: a real subprocess with
the line protocol and the IRC gateway on loopback ports, plain and TLS.
"""

from __future__ import annotations

import re
import subprocess
import sys

from twisted.internet import reactor, ssl
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import TwistdProcess, connect, runProcess, waitFor, withDeadline
from tests.test_chat_twistd import TWISTD
from tests.test_client_process import temporaryDirectory
from tests.test_irc_loopback import IRCLineClient
from tests.test_tls import Certificates

LOOPBACK = "tcp:0:interface=127.0.0.1"
_HINT = re.compile(rb"irc: connect with: (.+?)\r?\n")


class IRCGatewayProcessTests(TestCase):
    async def start(self, irc: str, cwd: str | None = None) -> TwistdProcess:
        cwd = cwd or temporaryDirectory(self)
        process = await TwistdProcess.start(
            "chat", "--port", LOOPBACK, "--irc", irc, "--history", ":memory:", cwd=cwd, listeners=2
        )
        self.addCleanup(process.stop)
        return process

    async def test_lineAndIRC(self) -> None:
        """
        Both listeners come up and say how to connect; an IRC client
        talks with a line user; an IRC client on the line port is told
        where IRC is served; on SIGTERM the IRC client gets ERROR and the
        server exits 0.
        """
        process = await self.start(LOOPBACK)
        (_, line), (kind, irc) = process.listening
        self.assertEqual(kind, "tcp")
        ircPort = process.port(1)
        await waitFor(lambda: _HINT.search(process.output), "the IRC connect line")
        self.assertEqual(
            _HINT.search(process.output).group(1).decode(),
            f"an IRC client, e.g. irssi: /connect 127.0.0.1 {ircPort}",
        )

        wrong = await connect(process.port(0))
        wrong.sendLine("NICK alice")
        self.assertIn(f"IRC is served at tcp {irc}", await wrong.readText())

        alice = await connect(ircPort, factory=IRCLineClient)
        alice.sendLine("NICK alice")
        alice.sendLine("USER alice 0 * :Alice")
        alice.sendLine("JOIN #lobby")
        await alice.until(b" 366 ")
        bob = await connect(process.port(0))
        bob.sendLine("bob")
        self.assertIn("with: alice", await bob.readText())
        bob.sendLine("hi from the line")
        self.assertEqual(
            await alice.until(b"PRIVMSG"), b":bob!bob@chatsvc PRIVMSG #lobby :hi from the line"
        )
        alice.sendLine("PRIVMSG #lobby :hi from IRC")
        self.assertTrue((await bob.readText()).endswith("#lobby alice: hi from IRC"))
        process.signal("TERM")
        self.assertEqual(
            await alice.until(b"ERROR"),
            b"ERROR :Closing Link: 127.0.0.1:%d (server shutting down)"
            % alice.transport.getHost().port,
        )
        self.assertEqual(await process.wait(), 0)

    async def test_tls(self) -> None:
        """
        C{--irc ssl:...}: the log gives irssi's /connect -tls; a TLS client
        that checks the certificate registers.
        """
        cwd = temporaryDirectory(self)
        certificates = Certificates(cwd)
        process = await self.start(certificates.description, cwd)
        self.assertEqual(process.listening[1][0], "tls")
        port = process.port(1)
        await waitFor(lambda: _HINT.search(process.output), "the IRC connect line")
        self.assertEqual(
            _HINT.search(process.output).group(1).decode(),
            f"an IRC client, e.g. irssi: /connect -tls 127.0.0.1 {port}",
        )
        with open(f"{certificates.roots}/server.pem", "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
        options = ssl.optionsForClientTLS("localhost", trustRoot=trust)
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, options, timeout=10)
        alice = await withDeadline(connectProtocol(endpoint, IRCLineClient()), "TLS connect")
        self.addCleanup(alice.close)
        alice.sendLine("NICK alice")
        alice.sendLine("USER alice 0 * :Alice")
        self.assertTrue((await alice.until(b" 001 ")).startswith(b":chatsvc 001 alice :Welcome"))

    async def test_badIRCFlag(self) -> None:
        """
        A bad --irc value is one line naming the flag, exit status 2.
        """
        code, out, err = await runProcess(
            [*TWISTD, "chat", "--irc", "tcp:notaport"], b"", cwd=temporaryDirectory(self)
        )
        self.assertEqual(code, 2)
        lines = (out + err).decode().strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(
            lines[0].startswith("twistd chat: error: --irc: cannot use 'tcp:notaport'"), lines
        )

    async def test_badIRCName(self) -> None:
        code, out, err = await runProcess(
            [*TWISTD, "chat", "--irc-name", "my server"], b"", cwd=temporaryDirectory(self)
        )
        self.assertEqual(code, 2)
        lines = (out + err).decode().strip().splitlines()
        self.assertEqual(
            lines,
            [
                "twistd chat: error: --irc-name: 'my server' is not a server name "
                "(letters, digits, '.', '-') (see twistd chat --help)"
            ],
        )

    async def test_help(self) -> None:
        code, out, err = await runProcess(
            [*TWISTD, "chat", "--help"], b"", cwd=temporaryDirectory(self)
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"--irc=", out)


class LazyImportTests(SynchronousTestCase):
    def test_notImportedWithoutIRC(self) -> None:
        """
        A chat server without --irc loads none of the gateway, nor
        Twisted's IRC module.
        """
        code = (
            "import sys\n"
            "from chatsvc.chat.service import Options, makeService\n"
            "o = Options(); o.parseOptions(['--history', ':memory:'])\n"
            "makeService(o)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('chatsvc.irc', 'twisted.words'))))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)
