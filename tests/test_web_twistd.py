"""
C{twistd -n chat --web PORT} as a user runs it: a real subprocess with the
line protocol and the web gateway on loopback ports, plain and TLS.
"""

from __future__ import annotations

import re
import subprocess
import sys

from twisted.internet import defer, reactor, ssl
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.websocket import WebSocketClientEndpoint

from tests.support import LineClient, TwistdProcess, connect, runProcess, waitFor, withDeadline
from tests.test_chat_twistd import TWISTD
from tests.test_client_process import temporaryDirectory
from tests.test_tls import Certificates
from tests.test_web_socket import _Factory

LOOPBACK = "tcp:0:interface=127.0.0.1"
_HINT = re.compile(rb"web: connect with: (.+?)\r?\n")


class WebGatewayProcessTests(TestCase):
    async def start(self, web: str, cwd: str | None = None) -> TwistdProcess:
        cwd = cwd or temporaryDirectory(self)
        process = await TwistdProcess.start(
            "chat", "--port", LOOPBACK, "--web", web, "--history", ":memory:", cwd=cwd, listeners=2
        )
        self.addCleanup(process.stop)
        return process

    async def test_pageChatAndShutdown(self) -> None:
        """
        The log says where to point a browser; the page is served; a
        WebSocket client chats with a line user; an HTTP client on the
        line port is told where the page is; on SIGTERM the browser gets
        the notice and the server exits 0.
        """
        process = await self.start(LOOPBACK)
        port = process.port(1)
        url = f"http://127.0.0.1:{port}/"
        await waitFor(lambda: _HINT.search(process.output), "the web connect line")
        self.assertEqual(_HINT.search(process.output).group(1).decode(), f"a browser: {url}")
        response = await withDeadline(Agent(reactor).request(b"GET", url.encode()), "the page")
        self.assertEqual(response.code, 200)
        self.assertIn(b"<html", await withDeadline(readBody(response), "the page body"))

        wrong = await connect(process.port(0))
        wrong.sendLine("GET / HTTP/1.1")
        self.assertIn(f"HTTP is served at {url}", await wrong.readText())

        endpoint = WebSocketClientEndpoint.new(reactor, f"{url}ws")
        alice = await withDeadline(defer.ensureDeferred(endpoint.connect(_Factory())), "connect")
        alice.send("alice")
        await alice.expect(type="success")
        bob = await connect(process.port(0))
        self.addCleanup(bob.close)
        bob.sendLine("bob")
        self.assertIn("with: alice", await bob.readText())
        bob.sendLine("hi browser")
        self.assertEqual((await alice.expect(type="message"))["text"], "hi browser")
        process.signal("TERM")
        self.assertEqual((await alice.expect(type="info"))["text"], "server shutting down")
        await withDeadline(alice.closed, "the close")
        self.assertEqual(await process.wait(), 0)

    async def test_tls(self) -> None:
        """
        C{--web ssl:...}: the log names the certificate's host; the page
        comes over verified TLS.
        """
        cwd = temporaryDirectory(self)
        certificates = Certificates(cwd)
        process = await self.start(certificates.description, cwd)
        self.assertEqual(process.listening[1][0], "tls")
        port = process.port(1)
        await waitFor(lambda: _HINT.search(process.output), "the web connect line")
        self.assertEqual(
            _HINT.search(process.output).group(1).decode(), f"a browser: https://localhost:{port}/"
        )
        with open(f"{certificates.roots}/server.pem", "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
        options = ssl.optionsForClientTLS("localhost", trustRoot=trust)
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, options, timeout=10)
        client = await withDeadline(connectProtocol(endpoint, LineClient()), "TLS connect")
        client.transport.write(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await client.waitClosed()
        self.assertTrue(
            bytes(client.received).startswith(b"HTTP/1.0 200 OK"), bytes(client.received)[:200]
        )

    async def test_badFlags(self) -> None:
        for args, flag in (
            (["--web", "tcp:nope"], "--web"),
            (["--web", "0", "--web-origin", "example.org"], "--web-origin"),
        ):
            code, out, err = await runProcess(
                [*TWISTD, "chat", *args], b"", cwd=temporaryDirectory(self)
            )
            self.assertEqual(code, 2)
            lines = (out + err).decode().strip().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith(f"twistd chat: error: {flag}: "), lines)


class LazyImportTests(SynchronousTestCase):
    def test_notImportedWithoutWeb(self) -> None:
        """
        A chat server without --web loads none of the web gateway, nor
        twisted.web's WebSocket support.
        """
        code = (
            "import sys\n"
            "from chatsvc.chat.service import Options, makeService\n"
            "o = Options(); o.parseOptions(['--history', ':memory:'])\n"
            "makeService(o)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('chatsvc.web', 'wsproto'))))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)
