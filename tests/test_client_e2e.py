"""
C{chatsvc-client} end to end: the real client against the real services,
each started as C{twistd -n SERVICE} on a loopback port.
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import TestCase

from tests.support import TwistdProcess, runProcess
from tests.test_client_process import (
    CLIENT,
    SCRIPT,
    ClientProcess,
    assertMessages,
    clientEnv,
    connectedTo,
    serverCertificate,
    temporaryDirectory,
)

LOOPBACK = "tcp:0:interface=127.0.0.1"
CTIME = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"


class ServiceTests(TestCase):
    """
    Scripting tsserv and cmdserv through a pipe.
    """

    async def startService(self, name: str, *args: str) -> TwistdProcess:
        cwd = temporaryDirectory(self)
        service = await TwistdProcess.start(name, "--port", LOOPBACK, *args, cwd=cwd)
        self.addCleanup(service.stop)
        return service

    async def test_cmdservPiped(self) -> None:
        """
        C{printf 'date\\nos\\n' | chatsvc-client --port P} prints both
        replies and exits 0.
        """
        service = await self.startService("cmdserv")
        code, out, err = await runProcess(
            [SCRIPT, "--port", str(service.port())], b"date\nos\n", env=clientEnv()
        )
        self.assertEqual(code, 0)
        assertMessages(self, err, connectedTo(service.port()))
        lines = out.decode("utf-8").splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertRegex(lines[0], f"^{CTIME}$")
        self.assertEqual(lines[1], os.name)

    async def test_tsservPiped(self) -> None:
        service = await self.startService("tsserv", "--udp", "off")
        code, out, err = await runProcess(
            [*CLIENT, "--host", "127.0.0.1", "--port", str(service.port())],
            b"hello\nworld\n",
            env=clientEnv(),
        )
        self.assertEqual(code, 0)
        assertMessages(self, err, connectedTo(service.port()))
        lines = out.decode("utf-8").splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertRegex(lines[0], rf"^\[{CTIME}\] hello$")
        self.assertRegex(lines[1], rf"^\[{CTIME}\] world$")

    async def test_serverKilledMidSession(self) -> None:
        """
        The server process dies while the client is connected: one line,
        status 1.
        """
        service = await self.startService("tsserv", "--udp", "off")
        client = ClientProcess.start(self, "--port", str(service.port()))
        client.write(b"ping\n")
        await client.waitOutput(b"] ping\n")
        service.kill()
        await service.wait()
        self.assertEqual(await client.wait(), 1)
        assertMessages(
            self,
            bytes(client.err),
            connectedTo(service.port()),
            "the server closed the connection",
        )

    async def test_tlsAgainstPlainService(self) -> None:
        """
        C{tls:} against cmdserv's plain TCP port: cmdserv answers the TLS
        greeting as a line, and the client says the server does not
        speak TLS, in one line, status 1.
        """
        service = await self.startService("cmdserv")
        port = service.port()
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"tls:127.0.0.1:{port}"], b"date\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(
            self, err, f"TLS handshake failed: the server at 127.0.0.1:{port} does not speak TLS"
        )


class ChatTests(TestCase):
    """
    Two clients chatting through C{twistd chat}.
    """

    async def setUp(self) -> None:
        cwd = temporaryDirectory(self)
        self.service = await TwistdProcess.start("chat", "--port", LOOPBACK, cwd=cwd)
        self.addCleanup(self.service.stop)
        self.port = str(self.service.port())

    async def login(self, name: str, *args: str) -> ClientProcess:
        client = ClientProcess.start(self, "--port", self.port, "-u", name, *args)
        await client.waitError(b"login success")
        return client

    async def test_twoClientsChat(self) -> None:
        """
        alice and bob log in; each sees the other's messages and events;
        each leaves cleanly (end of input, C{/quit}) with status 0.
        """
        alice = await self.login("alice")
        bob = await self.login("bob")
        await alice.waitOutput(b"#lobby bob joined\n")
        bob.write(b"hi alice\n")
        line = await alice.waitOutput(b"bob: hi alice\n")
        self.assertRegex(line.decode("utf-8"), rf"\[{CTIME}\] #lobby bob: hi alice\n")
        alice.write(b"/msg bob psst\n")
        await bob.waitOutput(b"(private) alice: psst\n")
        alice.write("caf\u00e9 \x1b[31m\n".encode())
        await bob.waitOutput(b"alice: caf\xc3\xa9 ")
        alice.closeStdin()
        self.assertEqual(await alice.wait(), 0, alice.report())
        await bob.waitOutput(b"#lobby alice left")
        bob.write(b"/quit\n")
        self.assertEqual(await bob.wait(), 0, bob.report())
        self.assertNotIn(b"\x1b", bytes(bob.out))
        self.assertNotIn(b"bob: hi alice", bytes(bob.out))

    async def test_room(self) -> None:
        alice = await self.login("alice", "-r", "#games")
        self.assertIn(b"games", bytes(alice.err))
        alice.write(b"/who\n")
        await alice.waitOutput(b"alice")
        alice.closeStdin()
        self.assertEqual(await alice.wait(), 0)

    async def test_reuseOnPipe(self) -> None:
        """
        A name already taken (here by case): status 3 on a pipe, said on
        standard error.
        """
        alice = await self.login("alice")
        code, out, err = await runProcess(
            [*CLIENT, "--port", self.port, "-u", "ALICE"], b"hello\n", env=clientEnv()
        )
        self.assertEqual(code, 3, err)
        self.assertIn(b"login reuse:", err)
        self.assertNotIn(b"Traceback", err)
        self.assertNotIn(b"hello", bytes(alice.out))
        alice.closeStdin()
        self.assertEqual(await alice.wait(), 0)

    async def test_invalidName(self) -> None:
        code, out, err = await runProcess(
            [*CLIENT, "--port", self.port, "-u", "b@d"], b"", env=clientEnv()
        )
        self.assertEqual(code, 3, err)
        self.assertTrue(re.search(rb"login error: .+", err), err)


class ChatOverTLSTests(TestCase):
    """
    C{twistd chat} behind TLS.
    """

    async def test_selfSignedChat(self) -> None:
        """
        The chat service over TLS with a self-signed certificate: a client
        that does not trust it says so, in one line, rather than that the
        server closed the connection before login; one told to trust it
        (C{trustRoots}) logs in and leaves cleanly.
        """
        cwd = temporaryDirectory(self)
        roots, key = os.path.join(cwd, "roots"), os.path.join(cwd, "server.key")
        serverCertificate(roots, "127.0.0.1", keyFile=key)
        cert = os.path.join(roots, "server.pem")
        service = await TwistdProcess.start(
            "chat",
            "--port",
            f"ssl:0:privateKey={key}:certKey={cert}:interface=127.0.0.1",
            "--history",
            ":memory:",
            cwd=cwd,
        )
        self.addCleanup(service.stop)
        endpoint = f"tls:127.0.0.1:{service.port()}"
        code, out, err = await runProcess(
            [*CLIENT, "--port", endpoint, "-u", "alice"], b"hello\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(
            self,
            err,
            "TLS: the server's certificate for 127.0.0.1 could not be verified "
            "(self-signed certificate)",
        )
        code, out, err = await runProcess(
            [*CLIENT, "--port", f"{endpoint}:trustRoots={roots}", "-u", "alice"],
            b"/quit\n",
            env=clientEnv(),
        )
        self.assertEqual(code, 0, err)
        assertMessages(self, err, "login success: logged in as alice, in #lobby with: nobody")
