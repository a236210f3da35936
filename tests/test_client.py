"""
Tests for L{chatsvc.client}: the command line and the session logic.

The session is driven here without sockets or processes: a fake console
records what the user would see, a C{StringTransport} stands for the
server connection.  The real thing, in subprocesses against real servers,
is in C{test_client_process} and C{test_client_e2e}.
"""

from __future__ import annotations

import datetime
import io
import sys

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import address, defer, error, interfaces
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import classImplements

from chatsvc import client
from chatsvc.client import (
    CONNECT_TIMEOUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Options,
    Session,
    Target,
)

#: Now, for certificates made on the fly: the real time, since OpenSSL
#: checks their dates against it.
NOW = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 (3.10 has no datetime.UTC)
DAY = datetime.timedelta(days=1)


def makeCertificate(*names: str, issuer=None, notBefore=None, notAfter=None):
    """
    A certificate for C{names} (host names or IP addresses), and its key.

    @param issuer: C{(certificate, key)} of the issuing CA; without it the
        certificate is self-signed (and may itself sign: it is a CA).
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    issuerName, signingKey = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuerName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore or NOW - DAY)
        .not_valid_after(notAfter or NOW + DAY)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .sign(signingKey, hashes.SHA256())
    )
    return cert, key


class OptionsTests(SynchronousTestCase):
    """
    The command line: defaults, ports and endpoint descriptions, and
    one-line errors with exit status 2.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """
        With no flags: plain mode to localhost port 21567, colour on auto.
        """
        options = self.parse()
        self.assertEqual(options["target"], Target("localhost", 21567))
        self.assertIsNone(options["username"])
        self.assertIsNone(options["room"])
        self.assertEqual(options["color"], "auto")

    def test_hostPortUserRoom(self) -> None:
        options = self.parse("--host", "example.test", "-p", "4000", "-u", "alice", "-r", "#games")
        self.assertEqual(options["target"], Target("example.test", 4000))
        self.assertEqual(options["username"], "alice")
        self.assertEqual(options["room"], "#games")
        self.assertEqual(str(options["target"]), "example.test:4000")

    def test_endpointDescription(self) -> None:
        """
        C{--port} also takes a client endpoint description.
        """
        options = self.parse("--port", "tcp:127.0.0.1:4000")
        self.assertEqual(options["target"].description, "tcp:127.0.0.1:4000")
        self.assertEqual(str(options["target"]), "127.0.0.1:4000")

    def test_where(self) -> None:
        """
        Messages name the host and port (or socket) the user meant, however
        the description spells them.
        """
        cases = [
            (Target("::1", 4000), "[::1]:4000", "::1"),
            (Target("", None, "tls:localhost:4000:trustRoots=/x"), "localhost:4000", "localhost"),
            (
                Target("", None, "tls:host=example.test:port=443"),
                "example.test:443",
                "example.test",
            ),
            (Target("", None, r"tcp:\:\:1:4000"), "[::1]:4000", "::1"),
            (Target("", None, "unix:/run/chat.sock"), "unix socket /run/chat.sock", None),
            (Target("", None, "unix:path=/run/chat.sock"), "unix socket /run/chat.sock", None),
            (Target("", None, "odd:thing"), "odd:thing", None),
        ]
        for target, where, serverName in cases:
            with self.subTest(target=target):
                self.assertEqual(str(target), where)
                if serverName is not None:
                    self.assertEqual(target.serverName, serverName)

    def test_errors(self) -> None:
        """
        Each mistake is a L{usage.UsageError} naming the flag.
        """
        cases = [
            (["--port", "0"], "--port"),
            (["--port", "70000"], "--port"),
            (["--port", "nonsense:1"], "--port"),
            (["--host", "h", "--port", "tcp:h:1"], "--host"),
            (["--room", "lobby"], "--room"),
            (["-u", "two words"], "--username"),
            (["-u", ""], "--username"),
            (["--color", "sometimes"], "--color"),
            (["extra"], "unexpected argument"),
        ]
        for argv, expected in cases:
            with self.subTest(argv=argv):
                e = self.assertRaises(usage.UsageError, self.parse, *argv)
                self.assertIn(expected, str(e))

    def test_parseOptionsOneLine(self) -> None:
        """
        L{client.parseOptions} turns an error into one line on standard
        error and exit status 2.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, client.parseOptions, ["--bogus"])
        self.assertEqual(e.code, 2)
        self.assertEqual(stderr.getvalue().count("\n"), 1)
        self.assertIn("chatsvc-client: error:", stderr.getvalue())
        self.assertIn("--bogus", stderr.getvalue())

    def test_helpNamesEveryOption(self) -> None:
        text = str(Options())
        for flag in ("--host", "--port", "--username", "--room", "--color", "-u", "-r", "-p"):
            self.assertIn(flag, text)
        self.assertIn("NO_COLOR", text)

    def test_helpListsEveryExitStatus(self) -> None:
        """
        C{--help} ends with the exit statuses, one per line: exactly the
        ones the client uses.
        """
        text = str(Options())
        self.assertIn("\nExit status:\n", text)
        listed = text.split("\nExit status:\n", 1)[1].splitlines()
        codes = [int(line.split()[0]) for line in listed if line[:3].strip().isdigit()]
        self.assertEqual(
            codes,
            [EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_INTERRUPTED, EXIT_TERMINATED],
        )
        self.assertEqual((EXIT_INTERRUPTED, EXIT_TERMINATED), (130, 143))


class DescribeFailureTests(SynchronousTestCase):
    """
    Connection failures are said in a few words.
    """

    def test_kinds(self) -> None:
        cases = [
            (error.ConnectionRefusedError(), "connection refused"),
            (error.DNSLookupError("nosuch.invalid"), "host not found"),
            (error.TimeoutError(), "timed out"),
            (error.ConnectError(2, "No such file or directory"), "no such file or directory"),
            (error.ConnectError(string="odd"), "odd"),
            (error.ConnectionLost(), "connection reset"),
            (error.ConnectionAborted(), "aborted"),
            (error.ConnectionLost("Connection reset by peer"), "connection reset by peer"),
            (OSError("odd\nsecond line"), "odd"),
        ]
        for value, expected in cases:
            with self.subTest(value=value):
                self.assertEqual(client.describeFailure(Failure(value)), expected)

    def test_notTwistedsWording(self) -> None:
        """
        A connect error is never Twisted's C{An error occurred while
        connecting: 2: ...}.
        """
        reason = Failure(error.ConnectError(2, "No such file or directory"))
        self.assertNotIn("An error occurred", client.describeFailure(reason))

    def test_isQuit(self) -> None:
        self.assertTrue(client.isQuit(b"/quit"))
        self.assertTrue(client.isQuit(b"  /QUIT gone fishing"))
        self.assertFalse(client.isQuit(b"/quitter"))
        self.assertFalse(client.isQuit(b"//quit"))
        self.assertFalse(client.isQuit(b""))


class FakeTLSTransport(StringTransportWithDisconnection):
    """
    A string transport that looks like Twisted's TLS wrapper; its handle
    has the certificate chain the server presented.
    """

    def __init__(self, chain=()) -> None:
        super().__init__()
        self.chain = list(chain)

    def getHandle(self):
        chain = self.chain

        class Handle:
            def get_peer_cert_chain(self, as_cryptography=False):
                if as_cryptography:
                    return chain
                from OpenSSL import crypto

                return [crypto.X509.from_cryptography(cert) for cert in chain]

        return Handle()


classImplements(FakeTLSTransport, interfaces.INegotiated)


def sslError(*reasons: str) -> Failure:
    return Failure(SSL.Error([("SSL routines", "", reason) for reason in reasons]))


class DescribeTLSFailureTests(SynchronousTestCase):
    """
    A failed TLS handshake is one plain line: whose certificate was
    refused and why, or that the server does not speak TLS.
    """

    target = Target("", None, "tls:127.0.0.1:4000")

    def describe(self, reason, *chain) -> str:
        return client.describeTLSFailure(reason, FakeTLSTransport(chain), self.target)

    def test_selfSigned(self) -> None:
        cert, _ = makeCertificate("127.0.0.1")
        self.assertEqual(
            self.describe(sslError("certificate verify failed"), cert),
            "TLS: the server's certificate for 127.0.0.1 could not be verified "
            "(self-signed certificate)",
        )

    def test_otherHost(self) -> None:
        """
        A certificate for another name (Twisted's C{service_identity}
        check) says whom it is for.
        """
        cert, _ = makeCertificate("localhost", "chat.example")
        self.assertEqual(
            self.describe(Failure(VerificationError(errors=[])), cert),
            "TLS: the server's certificate for 127.0.0.1 could not be verified "
            "(it is for localhost, chat.example)",
        )

    def test_untrustedIssuer(self) -> None:
        ca = makeCertificate("Chat Test CA")
        cert, _ = makeCertificate("127.0.0.1", issuer=ca)
        self.assertEqual(
            self.describe(sslError("certificate verify failed"), cert, ca[0]),
            "TLS: the server's certificate for 127.0.0.1 could not be verified "
            "(issuer not trusted: CN=Chat Test CA)",
        )

    def test_outOfDate(self) -> None:
        old, _ = makeCertificate("127.0.0.1", notBefore=NOW - 3 * DAY, notAfter=NOW - 2 * DAY)
        early, _ = makeCertificate("127.0.0.1", notBefore=NOW + 2 * DAY, notAfter=NOW + 3 * DAY)
        self.assertIn(
            f"(expired on {NOW - 2 * DAY:%Y-%m-%d})",
            self.describe(sslError("certificate verify failed"), old),
        )
        self.assertIn(
            f"(not valid before {NOW + 2 * DAY:%Y-%m-%d})",
            self.describe(sslError("certificate verify failed"), early),
        )

    def test_noChain(self) -> None:
        self.assertIn("(no certificate)", self.describe(sslError("certificate verify failed")))

    def test_notTLS(self) -> None:
        """
        Bytes that are not TLS (a plain server's greeting or reply) are
        said so, never as OpenSSL's error list.
        """
        self.assertEqual(
            self.describe(sslError("wrong version number")),
            "TLS handshake failed: the server at 127.0.0.1:4000 does not speak TLS",
        )

    def test_closedDuringHandshake(self) -> None:
        for reason in [sslError("unexpected eof while reading"), Failure(error.ConnectionDone())]:
            with self.subTest(reason=reason):
                self.assertEqual(
                    self.describe(reason),
                    "TLS handshake failed: the server at 127.0.0.1:4000 closed the connection",
                )

    def test_otherFailure(self) -> None:
        self.assertEqual(
            self.describe(sslError("tlsv1 alert protocol version")),
            "TLS handshake failed with 127.0.0.1:4000: tlsv1 alert protocol version",
        )


class FakeConsole:
    """
    Records what a console would show; input pauses are a set of reasons.
    """

    def __init__(self, interactive: bool = False) -> None:
        self.interactive = interactive
        self.lines: list[str] = []
        self.statuses: list[tuple[str, str]] = []
        self.prompt = ""
        self.pauses = {"start"}
        self.attached = None
        self.closed = False

    def showLine(self, text: str) -> None:
        self.lines.append(text)

    def showStatus(self, text: str, level: str = "info") -> None:
        self.statuses.append((level, text))

    def setPrompt(self, text: str) -> None:
        self.prompt = text

    def pauseInput(self, reason: str) -> None:
        self.pauses.add(reason)

    def resumeInput(self, reason: str) -> None:
        self.pauses.discard(reason)

    def attach(self, transport) -> None:
        self.attached = transport

    def detach(self) -> None:
        self.attached = None

    def close(self):
        self.closed = True
        return defer.succeed(None)

    def statusText(self) -> str:
        return "\n".join(text for level, text in self.statuses)


class FakeEndpoint:
    """
    An endpoint whose connection the test makes by hand.
    """

    def __init__(self, failure=None) -> None:
        self.failure = failure
        self.protocol = None

    def connect(self, factory):
        if self.failure is not None:
            return defer.fail(self.failure)
        self.protocol = factory.buildProtocol(None)
        self.deferred = defer.Deferred()
        return self.deferred


class HalfCloseableTransport(StringTransportWithDisconnection):
    """
    A string transport that can shut down its sending side, like TCP.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


classImplements(HalfCloseableTransport, interfaces.IHalfCloseableDescriptor)


class SessionTests(SynchronousTestCase):
    """
    L{Session}: logging in, sending, leaving, and the exit status.
    """

    def makeSession(
        self, username=None, room=None, interactive=False, transportClass=HalfCloseableTransport
    ):
        self.clock = Clock()
        self.console = FakeConsole(interactive)
        self.session = Session(Target(), self.clock, username, room)
        self.endpoint = FakeEndpoint()
        self.session.start(self.console, self.endpoint)
        self.transport = transportClass()
        self.codes: list[int] = []
        self.session.finished.addCallback(self.codes.append)
        return self.session

    def connect(self, peer=None) -> None:
        proto = self.endpoint.protocol
        self.transport.protocol = proto
        self.transport.peerAddr = peer or address.IPv4Address("TCP", "127.0.0.1", 21567)
        proto.makeConnection(self.transport)

    def serverSends(self, data: bytes) -> None:
        self.endpoint.protocol.dataReceived(data)

    def serverCloses(self, reason=None) -> None:
        self.endpoint.protocol.connectionLost(Failure(reason or error.ConnectionDone()))

    def sent(self) -> bytes:
        return self.transport.value()

    # Plain mode

    def test_plainQueuesUntilConnected(self) -> None:
        """
        Lines typed while connecting go out, in order, once connected;
        then input flows.
        """
        session = self.makeSession()
        session.lineTyped(b"date")
        session.lineTyped(b"os")
        self.assertEqual(self.console.pauses, {"start"})
        self.connect()
        self.assertEqual(self.sent(), b"date\nos\n")
        self.assertEqual(self.console.pauses, set())
        self.assertIs(self.console.attached, self.transport)
        self.assertEqual(self.console.prompt, "> ")

    def test_plainRepliesShownNeutralised(self) -> None:
        """
        Server lines are decoded with replacement, CRs before the LF
        dropped, and control characters made visible.
        """
        self.makeSession()
        self.connect()
        self.serverSends(b"one\r\n\x1b[31mred\xff\ntwo")
        self.assertEqual(self.console.lines, ["one", "\u238b[31mred\ufffd"])

    def test_plainEndOfInputHalfCloses(self) -> None:
        """
        End of input half-closes; the server's answer and close then end
        the session cleanly.
        """
        session = self.makeSession()
        self.connect()
        session.lineTyped(b"date")
        session.inputEnded()
        self.assertTrue(self.transport.writeClosed)
        self.serverSends(b"Sat Nov 21 10:00:00 2026\n")
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_OK])
        self.assertEqual(self.console.lines, ["Sat Nov 21 10:00:00 2026"])
        self.assertEqual(self.console.statuses, [("info", "connected to 127.0.0.1:21567")])
        self.assertTrue(self.console.closed)

    def test_plainSaysWhereItConnected(self) -> None:
        """
        Plain mode says, as its one status line, the address it reached:
        what the host name resolved to, or the socket.
        """
        cases = [
            (address.IPv4Address("TCP", "127.0.0.1", 21567), "connected to 127.0.0.1:21567"),
            (address.IPv6Address("TCP", "::1", 21567), "connected to [::1]:21567"),
            (address.UNIXAddress(b"/run/chat.sock"), "connected to unix socket /run/chat.sock"),
        ]
        for peer, expected in cases:
            with self.subTest(peer=peer):
                self.makeSession()
                self.connect(peer)
                self.assertEqual(self.console.statuses, [("info", expected)])

    def test_plainEndOfInputBeforeConnect(self) -> None:
        """
        Input that ends before the connection is made is still sent, and
        then the connection half-closed.
        """
        session = self.makeSession()
        session.lineTyped(b"os")
        session.inputEnded()
        self.connect()
        self.assertEqual(self.sent(), b"os\n")
        self.assertTrue(self.transport.writeClosed)

    def test_plainWithoutHalfClose(self) -> None:
        """
        Where the transport cannot half-close (TLS), the client closes once
        every line sent has had its reply.
        """
        session = self.makeSession(transportClass=StringTransportWithDisconnection)
        self.connect()
        session.lineTyped(b"a")
        session.lineTyped(b"b")
        session.inputEnded()
        self.serverSends(b"A\n")
        self.assertEqual(self.codes, [])
        self.serverSends(b"B\n")
        self.assertEqual(self.codes, [EXIT_OK])
        self.assertEqual(self.console.lines, ["A", "B"])

    def test_overlongInputPassedOn(self) -> None:
        session = self.makeSession()
        session.dataTyped(b"x" * 10)
        self.connect()
        session.dataTyped(b"y")
        self.assertEqual(self.sent(), b"x" * 10 + b"y")

    def test_unexpectedClose(self) -> None:
        """
        The server closing on its own is a one-line message and status 1.
        """
        self.makeSession()
        self.connect()
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertEqual(self.console.statuses[1:], [("error", "the server closed the connection")])

    def test_connectionLost(self) -> None:
        self.makeSession()
        self.connect()
        self.serverCloses(error.ConnectionLost("Connection reset by peer"))
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertIn("lost the connection to the server", self.console.statusText())

    def test_closedMidLine(self) -> None:
        """
        A connection that ends in the middle of a line: the partial line is
        shown, then the message.
        """
        self.makeSession()
        self.connect()
        self.serverSends(b"whole\npart")
        self.serverCloses()
        self.assertEqual(self.console.lines, ["whole", "part"])
        self.assertEqual(
            self.console.statuses[1:],
            [("error", "the server closed the connection in the middle of a line")],
        )
        self.assertEqual(self.codes, [EXIT_FAILED])

    def test_connectFailed(self) -> None:
        self.clock = Clock()
        console = FakeConsole()
        session = Session(Target("localhost", 4000), self.clock)
        codes: list[int] = []
        session.finished.addCallback(codes.append)
        session.start(console, FakeEndpoint(error.ConnectionRefusedError()))
        self.assertEqual(
            console.statuses, [("error", "cannot connect to localhost:4000: connection refused")]
        )
        self.assertEqual(codes, [EXIT_FAILED])
        self.assertTrue(console.closed)

    def test_interruptedWhileConnecting(self) -> None:
        """
        Ctrl-C before the connection is made cancels the attempt.
        """
        session = self.makeSession()
        session.interrupted()
        self.assertEqual(self.codes, [EXIT_INTERRUPTED])
        self.assertTrue(self.endpoint.deferred.called)
        self.assertEqual(self.console.statuses, [])

    def test_outputLost(self) -> None:
        session = self.makeSession()
        self.connect()
        session.outputLost()
        self.assertEqual(self.codes, [EXIT_OK])

    def test_terminated(self) -> None:
        """
        SIGTERM ends the session with status 143.
        """
        session = self.makeSession()
        self.connect()
        session.interrupted(EXIT_TERMINATED)
        self.assertEqual(self.codes, [143])

    # TLS

    def test_tlsWaitsForHandshake(self) -> None:
        """
        Over TLS the connection is up only once the handshake is done:
        until then typed lines wait and nothing is said.
        """
        session = self.makeSession(transportClass=FakeTLSTransport)
        session.lineTyped(b"date")
        self.connect()
        self.assertEqual((self.sent(), self.console.statuses), (b"", []))
        self.assertEqual(self.console.pauses, {"start"})
        self.endpoint.protocol.handshakeCompleted()
        self.assertEqual(self.sent(), b"date\n")
        self.assertEqual(self.console.statuses, [("info", "connected to 127.0.0.1:21567 (TLS)")])
        self.assertEqual(self.console.pauses, set())

    def test_tlsLoginAfterHandshake(self) -> None:
        self.makeSession("alice", transportClass=FakeTLSTransport)
        self.connect()
        self.assertEqual(self.sent(), b"")
        self.endpoint.protocol.handshakeCompleted()
        self.assertEqual(self.sent(), b"alice\n")

    def test_tlsRefusedAsHandshakeEnds(self) -> None:
        """
        Twisted before 25 refuses a certificate's name as the handshake
        ends, begins aborting, and still reports the handshake completed:
        that is no connection, and the refusal that follows is said alone.
        """
        self.makeSession("alice", transportClass=FakeTLSTransport)
        self.connect()
        self.endpoint.protocol.transport.disconnecting = True
        self.endpoint.protocol.handshakeCompleted()
        self.assertEqual((self.sent(), self.console.statuses), (b"", []))
        self.serverCloses(VerificationError(errors=[]))
        self.assertEqual(
            self.console.statuses,
            [
                (
                    "error",
                    "TLS: the server's certificate for localhost could not be verified "
                    "(no certificate)",
                )
            ],
        )

    def test_tlsCertificateRefused(self) -> None:
        """
        A certificate the client refuses is a failed connection, said as
        such (not as a server that closed before the login), status 1.
        """
        self.makeSession("alice", transportClass=FakeTLSTransport)
        self.connect()
        self.serverCloses(VerificationError(errors=[]))
        self.assertEqual(
            self.console.statuses,
            [
                (
                    "error",
                    "TLS: the server's certificate for localhost could not be verified "
                    "(no certificate)",
                )
            ],
        )
        self.assertEqual(self.codes, [EXIT_FAILED])

    def test_tlsHandshakeTimeout(self) -> None:
        """
        A server that never answers the handshake (it waits for a line
        that never comes) is given up on after the connect timeout.
        """
        self.makeSession(transportClass=FakeTLSTransport)
        self.connect()
        self.clock.advance(CONNECT_TIMEOUT - 1)
        self.assertEqual(self.codes, [])
        self.clock.advance(1)
        self.assertEqual(
            self.console.statuses,
            [
                (
                    "error",
                    f"TLS handshake failed: no answer from the server at localhost:21567 "
                    f"in {CONNECT_TIMEOUT} seconds",
                )
            ],
        )
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertFalse(self.transport.connected)

    def test_tlsHandshakeDoneStopsTheTimer(self) -> None:
        self.makeSession(transportClass=FakeTLSTransport)
        self.connect()
        self.endpoint.protocol.handshakeCompleted()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    # Chat mode

    def login(self, username="alice", room=None, interactive=False):
        session = self.makeSession(username, room, interactive)
        self.connect()
        return session

    def test_loginLine(self) -> None:
        self.login("alice", "#games")
        self.assertEqual(self.sent(), b"alice #games\n")

    def test_loginSuccess(self) -> None:
        """
        C{success} is reported on the status channel; lines typed while
        waiting then go out, and input flows.
        """
        session = self.login()
        session.lineTyped(b"hello")
        self.assertEqual(self.sent(), b"alice\n")
        self.serverSends(b"success: logged in as alice, in #lobby\n")
        self.assertEqual(
            self.console.statuses, [("ok", "login success: logged in as alice, in #lobby")]
        )
        self.assertEqual(self.sent(), b"alice\nhello\n")
        self.assertEqual(self.console.pauses, set())
        self.assertEqual(self.console.lines, [])

    def test_reuseOnPipe(self) -> None:
        """
        A taken name on a pipe: said clearly, and status 3.
        """
        self.login()
        self.serverSends(b"reuse: the name alice is taken\n")
        self.assertEqual(
            self.console.statuses[0], ("error", "login reuse: the name alice is taken")
        )
        self.assertEqual(self.codes, [EXIT_REFUSED])
        self.assertTrue(self.transport.disconnecting or not self.transport.connected)

    def test_errorOnPipe(self) -> None:
        self.login()
        self.serverSends(b"error: a name holds only letters\n")
        self.assertEqual(
            self.console.statuses[0], ("error", "login error: a name holds only letters")
        )
        self.assertEqual(self.codes, [EXIT_REFUSED])

    def test_full(self) -> None:
        self.login(interactive=True)
        self.serverSends(b"full: the server holds 10 users\n")
        self.assertEqual(
            self.console.statuses, [("error", "login full: the server holds 10 users")]
        )
        self.assertEqual(self.codes, [EXIT_REFUSED])

    def test_reuseOnTerminalAsksAgain(self) -> None:
        """
        On a terminal a refused name is asked for again; the next line is
        the new name (the room kept), and lines typed before the refusal
        are dropped rather than taken for a name.
        """
        session = self.login("alice", "games", interactive=True)
        session.lineTyped(b"early")
        self.serverSends(b"reuse: the name alice is taken\n")
        self.assertEqual(self.console.prompt, "name: ")
        self.assertIn("type another name", self.console.statusText())
        session.lineTyped(b"   ")
        session.lineTyped(b"alice2")
        self.assertEqual(self.sent(), b"alice games\nalice2 games\n")
        self.serverSends(b"success: logged in as alice2\n")
        self.assertEqual(self.console.prompt, "> ")
        session.lineTyped(b"hi")
        self.assertEqual(self.sent(), b"alice games\nalice2 games\nhi\n")
        self.assertEqual(self.codes, [])

    def test_endOfInputWhileNaming(self) -> None:
        session = self.login(interactive=True)
        self.serverSends(b"reuse: taken\n")
        session.inputEnded()
        self.assertEqual(self.codes, [EXIT_REFUSED])

    def test_unexpectedLoginAnswer(self) -> None:
        """
        Something that is not a login answer (not the chat service): shown,
        with a warning, and the session goes on.
        """
        self.login()
        self.serverSends(b"[Sat Nov 21 10:00:00 2026] alice\n")
        self.assertEqual(self.console.lines, ["[Sat Nov 21 10:00:00 2026] alice"])
        self.assertEqual(self.console.statuses[0][0], "warn")
        self.assertEqual(self.codes, [])

    def test_chatEndOfInputSendsQuit(self) -> None:
        """
        End of input in chat mode sends C{/quit}; the server's close is
        then a clean end.
        """
        session = self.login()
        self.serverSends(b"success: hi\n")
        session.inputEnded()
        self.assertEqual(self.sent(), b"alice\n/quit\n")
        self.assertFalse(self.transport.writeClosed)
        self.assertIn("leaving", self.console.pauses)
        self.serverSends(b"info: bye\n")
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_OK])
        self.assertEqual(self.console.statuses[1:], [])

    def test_endOfInputDuringLogin(self) -> None:
        """
        Input that ends before the login is answered: its lines and the
        C{/quit} go out after C{success}.
        """
        session = self.login()
        session.lineTyped(b"hello")
        session.inputEnded()
        self.serverSends(b"success: hi\n")
        self.assertEqual(self.sent(), b"alice\nhello\n/quit\n")

    def test_typedQuit(self) -> None:
        """
        A typed C{/quit} is sent as typed; the client stops sending and
        waits for the server to close.
        """
        session = self.login()
        self.serverSends(b"success: hi\n")
        session.lineTyped(b"/quit gone fishing")
        session.lineTyped(b"after")
        self.assertEqual(self.sent(), b"alice\n/quit gone fishing\n")
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_OK])

    def test_quitNotAnswered(self) -> None:
        """
        A server that does not close after C{/quit} is cut off after a
        grace period.
        """
        session = self.login()
        self.serverSends(b"success: hi\n")
        session.inputEnded()
        aborted = []
        self.transport.abortConnection = lambda: aborted.append(True)
        self.clock.advance(client.CLOSE_GRACE)
        self.assertEqual(aborted, [True])

    def test_interruptedInChat(self) -> None:
        session = self.login()
        self.serverSends(b"success: hi\n")
        session.interrupted()
        self.assertEqual(self.sent(), b"alice\n/quit\n")
        self.assertEqual(self.codes, [EXIT_INTERRUPTED])

    def test_closedDuringLogin(self) -> None:
        self.login()
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertIn("before login", self.console.statusText())

    def test_chatUnexpectedClose(self) -> None:
        self.login()
        self.serverSends(b"success: hi\n[Sat Nov 21 10:00:00 2026] #lobby bob: hey\n")
        self.serverSends(b"info: the server is shutting down\n")
        self.serverCloses()
        self.assertEqual(self.codes, [EXIT_FAILED])
        self.assertEqual(
            self.console.lines,
            ["[Sat Nov 21 10:00:00 2026] #lobby bob: hey", "info: the server is shutting down"],
        )
