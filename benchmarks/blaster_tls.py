"""
The trivial server of L{benchmarks.blaster} behind TLS: what the load
generator can take and send when it decrypts and encrypts too.

    python -m benchmarks.blaster_tls --tls CERT,KEY --port PORT --protocol line|irc|ws [--mode relay]

The blaster is unchanged: its sockets are the standard library's TLS
sockets, whose C{recv} and C{send} say "would block" the way plain
non-blocking sockets do (L{BlockingIOError}) instead of with
L{ssl.SSLWantReadError} or L{ssl.SSLWantWriteError}.  Each client's
handshake is done, blocking, when it is accepted: before any load, so
outside every measured window.  A C{send} that would block is retried by
the blaster with the same bytes (it keeps its offset or its pending
buffer), which is what OpenSSL asks of a retried write.
"""

from __future__ import annotations

import errno
import socket
import ssl

from benchmarks.blaster import Blaster, argumentParser, serve


class NonBlockingTLSSocket(ssl.SSLSocket):
    """
    A TLS socket whose C{recv} and C{send} raise L{BlockingIOError} when
    they would block, as a plain non-blocking socket does.
    """

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            return super().recv(buflen, flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError(errno.EAGAIN, "TLS record incomplete") from None

    def send(self, data, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError(errno.EAGAIN, "TLS send would block") from None


class TLSBlaster(Blaster):
    """
    L{Blaster} whose clients are accepted over TLS.
    """

    def __init__(self, context: ssl.SSLContext, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.context = context

    def wrap(self, sock: socket.socket) -> socket.socket | None:
        """
        The handshake, blocking (before any load), then non-blocking.
        """
        sock.settimeout(10)
        try:
            sock = self.context.wrap_socket(sock, server_side=True)
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        return sock


def main(argv: list[str] | None = None) -> None:
    parser = argumentParser(__doc__.split("\n\n")[0])
    parser.add_argument("--tls", required=True, help="CERT,KEY: the certificate and its key")
    args = parser.parse_args(argv)
    if args.tls.count(",") != 1:
        parser.error("--tls: expected CERT,KEY")
    cert, key = args.tls.split(",")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sslsocket_class = NonBlockingTLSSocket
    blaster = TLSBlaster(context, args.protocol, args.duration, args.block, args.mode == "relay")
    serve(blaster, args.port)


if __name__ == "__main__":
    main()
