"""
TLS end to end on every TCP listener: each service started as a real
C{twistd -n SERVICE --port ssl:0:privateKey=KEY:certKey=CERT} on loopback,
with a certificate made on the fly, and the real C{chatsvc-client}
verifying it.  The start-up log names C{tls} and says how to connect; the
tests run the very command it gives (L{chatsvc.net.listening.connectHint}),
so the log cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import shlex

from cryptography.hazmat.primitives import serialization
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc.net.listening import connectHint
from tests.support import TwistdProcess, runProcess, waitFor
from tests.test_client import makeCertificate
from tests.test_client_process import (
    CLIENT,
    assertMessages,
    clientEnv,
    connectedTo,
    temporaryDirectory,
)

CTIME = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"

_HINT = re.compile(rb"(\w+): connect with: (.+?)\r?\n")


def writePEM(path: str, certificate=None, key=None) -> str:
    """
    Write a certificate or a key to C{path} as PEM, as C{openssl req}
    would; return C{path}.
    """
    if certificate is not None:
        data = certificate.public_bytes(serialization.Encoding.PEM)
    else:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with open(path, "wb") as f:
        f.write(data)
    return path


class Certificates:
    """
    A server certificate for C{localhost} and its key, in separate files
    as the README makes them: self-signed, or issued by a CA of its own
    (a private CA, standing in for a real one).

    @ivar roots: a directory holding only what the client should trust
        (the self-signed certificate, or the CA's), for C{trustRoots=}.
    @ivar description: the C{ssl:} server endpoint on loopback, port 0.
    """

    def __init__(self, directory: str, withCA: bool = False) -> None:
        self.roots = os.path.join(directory, "roots")
        os.makedirs(self.roots)
        if withCA:
            ca = makeCertificate("chatsvc test CA")
            writePEM(os.path.join(self.roots, "ca.pem"), ca[0])
            certificate, key = makeCertificate("localhost", "127.0.0.1", issuer=ca)
            cert = writePEM(os.path.join(directory, "server.pem"), certificate)
        else:
            certificate, key = makeCertificate("localhost", "127.0.0.1")
            cert = writePEM(os.path.join(self.roots, "server.pem"), certificate)
        keyFile = writePEM(os.path.join(directory, "server.key"), key=key)
        self.description = f"ssl:0:privateKey={keyFile}:certKey={cert}:interface=127.0.0.1"


class ServicesOverTLSTests(TestCase):
    """
    Every service on an C{ssl:} port, reached the way its log says.
    """

    async def startTLS(self, name: str, *args: str, withCA: bool = False):
        """
        Start C{twistd -n NAME} on a fresh certificate; return the process,
        the certificates and the C{connect with} command it logged.
        """
        cwd = temporaryDirectory(self)
        certificates = Certificates(cwd, withCA)
        process = await TwistdProcess.start(
            name, "--port", certificates.description, *args, cwd=cwd
        )
        self.addCleanup(process.stop)
        self.assertEqual(process.listening[0], ("tls", f"127.0.0.1:{process.port()}"))
        await waitFor(lambda: _HINT.search(process.output), f"{name}'s connect with line")
        label, command = _HINT.search(process.output).groups()
        self.assertEqual(label.decode(), name)
        return process, certificates, command.decode()

    def runnable(self, command: str, certificates: Certificates, name: str = "alice") -> list[str]:
        """
        The logged command with its placeholders filled in (C{DIR}: the
        directory of trusted certificates, C{NAME}: a user name), as the
        client run from source.
        """
        words = shlex.split(command.replace("=DIR", f"={certificates.roots}"))
        self.assertEqual(words[0], "chatsvc-client")
        return [*CLIENT, *("alice" if word == "NAME" else word for word in words[1:])]

    async def test_tsserv(self) -> None:
        process, certificates, command = await self.startTLS("tsserv", "--udp", "off")
        port = process.port()
        self.assertEqual(command, f"chatsvc-client -p tls:localhost:{port}:trustRoots=DIR")
        code, out, err = await runProcess(
            self.runnable(command, certificates), b"hello\n", env=clientEnv()
        )
        self.assertEqual(code, 0, err)
        assertMessages(self, err, connectedTo(port, tls=True))
        self.assertRegex(out.decode(), rf"^\[{CTIME}\] hello\n$")

    async def test_cmdserv(self) -> None:
        process, certificates, command = await self.startTLS("cmdserv")
        port = process.port()
        self.assertEqual(command, f"chatsvc-client -p tls:localhost:{port}:trustRoots=DIR")
        code, out, err = await runProcess(
            self.runnable(command, certificates), b"os\n", env=clientEnv()
        )
        self.assertEqual((code, out), (0, f"{os.name}\n".encode()), err)
        assertMessages(self, err, connectedTo(port, tls=True))

    async def test_chat(self) -> None:
        """
        The chat's line adds C{-u NAME}; the client logs in and leaves.
        """
        process, certificates, command = await self.startTLS("chat", "--history", ":memory:")
        port = process.port()
        self.assertEqual(command, f"chatsvc-client -p tls:localhost:{port}:trustRoots=DIR -u NAME")
        code, out, err = await runProcess(
            self.runnable(command, certificates), b"/quit\n", env=clientEnv()
        )
        self.assertEqual(code, 0, err)
        assertMessages(self, err, "login success: logged in as alice, in #lobby with: nobody")

    async def test_untrusted(self) -> None:
        """
        Without C{trustRoots} a self-signed certificate is refused in one
        line, so the hint's C{trustRoots=DIR} is needed, not decoration.
        """
        process, certificates, command = await self.startTLS("cmdserv")
        code, out, err = await runProcess(
            [*CLIENT, "-p", f"tls:localhost:{process.port()}"], b"os\n", env=clientEnv()
        )
        self.assertEqual((code, out), (1, b""))
        assertMessages(
            self,
            err,
            "TLS: the server's certificate for localhost could not be verified "
            "(self-signed certificate)",
        )

    async def test_issuedByCA(self) -> None:
        """
        A certificate a CA issued: the log asks for no C{trustRoots} (a
        real CA is in the system's store); a private CA is trusted by
        giving its certificate's directory.
        """
        process, certificates, command = await self.startTLS(
            "chat", "--history", ":memory:", withCA=True
        )
        port = process.port()
        self.assertEqual(command, f"chatsvc-client -p tls:localhost:{port} -u NAME")
        code, out, err = await runProcess(
            [*CLIENT, "-p", f"tls:localhost:{port}:trustRoots={certificates.roots}", "-u", "bob"],
            b"/quit\n",
            env=clientEnv(),
        )
        self.assertEqual(code, 0, err)
        assertMessages(self, err, "login success: logged in as bob, in #lobby with: nobody")


class ConnectHintTests(SynchronousTestCase):
    """
    L{connectHint}: the C{connect with} command for each kind of port.
    """

    def test_tcpEveryInterface(self) -> None:
        """
        A port on every interface is reached from this host by the
        client's default host.
        """
        for address in (IPv4Address("TCP", "0.0.0.0", 21567), IPv6Address("TCP", "::", 21567)):
            self.assertEqual(connectHint("tcp:21567", address, "tsserv"), "chatsvc-client -p 21567")

    def test_tcpOneInterface(self) -> None:
        self.assertEqual(
            connectHint(
                "tcp:2000:interface=127.0.0.1", IPv4Address("TCP", "127.0.0.1", 2000), "chat"
            ),
            "chatsvc-client --host 127.0.0.1 -p 2000 -u NAME",
        )

    def test_unix(self) -> None:
        self.assertEqual(
            connectHint("unix:/tmp/c.sock", UNIXAddress(b"/tmp/c.sock"), "cmdserv"),
            "chatsvc-client -p unix:/tmp/c.sock",
        )

    def test_tlsWithoutReadableCertificate(self) -> None:
        """
        When the certificate cannot be read, the bound address stands in
        for its name (an IPv6 one escaped as a description needs).
        """
        self.assertEqual(
            connectHint(
                "ssl:443:privateKey=/nonexistent.pem", IPv6Address("TCP", "::1", 443), "tsserv"
            ),
            "chatsvc-client -p tls:\\:\\:1:443",
        )
        self.assertEqual(
            connectHint(
                "ssl:443:privateKey=/nonexistent.pem", IPv4Address("TCP", "0.0.0.0", 443), "tsserv"
            ),
            "chatsvc-client -p tls:localhost:443",
        )

    def test_notForTheClient(self) -> None:
        """
        RFC 868 time is binary, and a UDP port is no stream: no line.
        """
        self.assertIsNone(connectHint("tcp:37", IPv4Address("TCP", "0.0.0.0", 37), "time"))
        self.assertIsNone(connectHint("udp:37", IPv4Address("UDP", "0.0.0.0", 37), "tsserv"))
