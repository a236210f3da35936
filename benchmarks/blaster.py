"""
A trivial server that measures the load generator itself.

It logs clients in the cheapest way that satisfies the generator's
drivers (native: C{success:}; IRC: 001, 381, MODE, 366; WebSocket: the
101 upgrade, then a C{success} object), then, in the default
C{--mode blast}, does nothing but:

  - read and discard what clients send (so senders run as fast as the
    generator can produce);
  - once the first benchmark message arrives, write pre-encoded message
    lines to every client as fast as each socket takes them, for
    C{--duration} seconds.

The lines are made once per block of C{--block} messages: block b is
"sender" b with sequence numbers 0 .. block-1, so receivers that verify
see well-formed, in-order streams.  One block's bytes go to every client,
so the blaster's cost per delivery is a share of one large C{send}: far
below the generator's cost per delivery.  Whatever rate the generator
reports against it is therefore the generator's own ceiling on this
machine, which the harness compares every server's figures with.

C{--mode relay} is the least a chat server can do instead: each message
line is sent on at once (one C{send} per recipient, no batching, no
parsing beyond finding the text) to every other client.  Its latency is
the floor that the generator, the kernel and the machine's load leave
for any server's latency figures.

For C{ws} the lines are JSON message objects as the web gateway writes
them, each in an unmasked text frame; the sender field of a block is
zero-padded so that every block's frames have the same lengths.  Like the
gateway's JSON, relay mode sends a message to its sender too.

Usage: python -m benchmarks.blaster --port PORT --protocol line|irc|ws [--mode relay]
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time

from benchmarks.wire import MARK, messageText, wsAccept, wsFrames, wsHeader

SEND_SIZE = 256 * 1024


#: A message object as the web gateway writes it (its JSON rendering).
WS_MESSAGE = (
    '{{"type":"message","ts":"2026-12-04T10:00:00.000000Z","room":"r0",'
    '"from":"{sender}","text":"{text}","id":{id}}}'
)


def wsMessage(sender: str, text: str, ident: int) -> bytes:
    """
    One message object in a server's (unmasked) text frame.
    """
    payload = WS_MESSAGE.format(sender=sender, text=text, id=ident).encode()
    return wsHeader(0x1, len(payload)) + payload


class Client:
    __slots__ = ("sock", "inbuf", "ready", "block", "offset", "nick", "pending", "upgraded")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.ready = False
        self.block = 0
        self.offset = 0
        self.nick = b"*"
        self.pending = b""
        self.upgraded = False


class Blaster:
    def __init__(self, protocol: str, duration: float, block: int, relay: bool = False) -> None:
        self.protocol = protocol
        self.relay = relay
        self.duration = duration
        self.blockSize = block
        self.sel = selectors.DefaultSelector()
        self.clients: dict[int, Client] = {}
        self.blocks: dict[int, bytes] = {}
        self.started = 0.0
        self.maxBlock = -1
        eol = "\r\n" if protocol == "irc" else "\n"
        prefix = ":c999999!c@127.0.0.1 PRIVMSG #r0 :" if protocol == "irc" else ""
        # One template block; each block differs only in its sender field.
        if protocol == "ws":
            self.template = b"".join(
                wsMessage("c999999", messageText(999999, k, 0), k) for k in range(block)
            )
        else:
            self.template = "".join(
                f"{prefix}{messageText(999999, k, 0)}{eol}" for k in range(block)
            ).encode()
        if protocol == "irc":
            self.relayPrefix = b":relay!r@127.0.0.1 PRIVMSG #r0 :"
        else:
            self.relayPrefix = b"[Sat Nov 21 10:00:00 2026] #r0 relay: "

    def block(self, b: int) -> bytes | None:
        """
        The bytes of block C{b}, made on first use; None past the end.
        """
        data = self.blocks.get(b)
        if data is None:
            if b > self.maxBlock:
                if time.monotonic() - self.started > self.duration:
                    return None
                self.maxBlock = b
                self.blocks.pop(b - 64, None)
            # Zero-padded: the same length for every block (frame lengths).
            data = self.template.replace(b"999999:", b"%06d:" % b)
            if b > self.maxBlock - 64:
                self.blocks[b] = data
        return data

    def wrap(self, sock: socket.socket) -> socket.socket | None:
        """
        An accepted socket as the blaster reads and writes it (made
        non-blocking); L{None} drops it.  The TLS blaster wraps it here.
        """
        sock.setblocking(False)
        return sock

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            # Relay mode sends each line on its own: without this, Nagle and
            # delayed ACKs (tens of ms) would be the "floor" it measures.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self.wrap(sock)
            if sock is None:
                continue
            client = Client(sock)
            self.clients[sock.fileno()] = client
            self.sel.register(sock, selectors.EVENT_READ, client)

    def read(self, client: Client) -> None:
        try:
            data = client.sock.recv(SEND_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(client)
            return
        if self.protocol == "ws":
            self.readWS(client, data)
            return
        if self.relay:
            self.forward(client, data)
            return
        if not self.started and MARK in data:
            self.start()
        if client.ready:
            return
        buf = client.inbuf + data
        lines = buf.split(b"\n")
        client.inbuf = lines.pop()[-4096:]
        for line in lines:
            reply = self.answer(client, line.rstrip(b"\r"))
            if reply:
                client.sock.sendall(reply)

    def readWS(self, client: Client, data: bytes) -> None:
        """
        WebSocket: answer the upgrade and the login; then, blasting, the
        first message starts the flood and the rest is discarded; in
        relay mode each message goes on to everyone, its sender too.
        """
        if client.ready and not self.relay:
            if not self.started:
                self.start()
            return
        buf = client.inbuf + data
        if not client.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                client.inbuf = buf[-65536:]
                return
            key = b""
            for line in buf[:end].split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            client.sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + wsAccept(key) + b"\r\n\r\n"
            )
            client.upgraded = True
            buf = buf[end + 4 :]
        frames, client.inbuf = wsFrames(buf)
        for opcode, payload in frames:
            if opcode != 0x1:
                continue
            if not client.ready:
                client.ready = True
                ok = b'{"type":"success","text":"logged in"}'
                client.sock.sendall(wsHeader(0x1, len(ok)) + ok)
            elif self.relay:
                text = json.dumps(payload.decode())[1:-1]
                out = wsMessage("relay", text, 0)
                for other in list(self.clients.values()):
                    if other.ready:
                        self.push(other, out)
            elif not self.started:
                self.start()

    def start(self) -> None:
        """
        Blasting: the first message has come; flood every client.
        """
        self.started = time.monotonic()
        for other in self.clients.values():
            if other.ready:
                self.sel.modify(other.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, other)

    def forward(self, client: Client, data: bytes) -> None:
        """
        Relay mode: log in as usual; send every message line on to every
        other ready client at once.
        """
        buf = client.inbuf + data
        lines = buf.split(b"\n")
        client.inbuf = lines.pop()[-65536:]
        for line in lines:
            line = line.rstrip(b"\r")
            at = line.find(MARK)
            if at < 0:
                reply = self.answer(client, line)
                if reply:
                    client.sock.sendall(reply)
                continue
            out = self.relayPrefix + line[at:] + (b"\r\n" if self.protocol == "irc" else b"\n")
            for other in list(self.clients.values()):
                if other is not client and other.ready:
                    self.push(other, out)

    def push(self, client: Client, data: bytes) -> None:
        if client.pending:
            client.pending += data
            return
        try:
            n = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.drop(client)
            return
        if n < len(data):
            client.pending = data[n:]
            self.sel.modify(client.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def answer(self, client: Client, line: bytes) -> bytes | None:
        if self.protocol == "line":
            client.ready = True
            return b"success: logged in\n"
        word, _, rest = line.partition(b" ")
        word = word.upper()
        if word == b"NICK":
            client.nick = rest.strip()
            return b":blaster 001 " + client.nick + b" :welcome\r\n"
        if word == b"OPER":
            return b":blaster 381 " + client.nick + b" :operator\r\n"
        if word == b"MODE":
            return b":" + client.nick + b" MODE " + rest + b"\r\n"
        if word == b"JOIN":
            client.ready = True
            return b":blaster 366 " + client.nick + b" " + rest + b" :End of NAMES\r\n"
        if word == b"PING":
            return b":blaster PONG blaster " + rest + b"\r\n"
        return None

    def write(self, client: Client) -> None:
        if self.relay:
            try:
                n = client.sock.send(client.pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.drop(client)
                return
            client.pending = client.pending[n:]
            if not client.pending:
                self.sel.modify(client.sock, selectors.EVENT_READ, client)
            return
        data = self.block(client.block)
        if data is None:
            self.sel.modify(client.sock, selectors.EVENT_READ, client)
            return
        try:
            n = client.sock.send(memoryview(data)[client.offset : client.offset + SEND_SIZE])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(client)
            return
        client.offset += n
        if client.offset >= len(data):
            client.block += 1
            client.offset = 0

    def drop(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        self.sel.unregister(client.sock)
        client.sock.close()

    def serve(self, port: int) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(4096)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, None)
        print(f"blaster listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
        while True:
            for key, mask in self.sel.select(1.0):
                client = key.data
                if client is None:
                    self.accept(listener)
                    continue
                if mask & selectors.EVENT_READ:
                    self.read(client)
                if mask & selectors.EVENT_WRITE and client.sock.fileno() in self.clients:
                    self.write(client)


def argumentParser(description: str) -> argparse.ArgumentParser:
    """
    The blaster's flags (the TLS blaster adds its own to them).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--protocol", choices=("line", "irc", "ws"), default="line")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of blasting")
    parser.add_argument("--block", type=int, default=1000, help="messages per pre-encoded block")
    parser.add_argument("--mode", choices=("blast", "relay"), default="blast")
    return parser


def serve(blaster: Blaster, port: int) -> None:
    """
    Run C{blaster} on C{port} until its duration is over (or Ctrl-C).
    """
    try:
        blaster.serve(port)
    except KeyboardInterrupt:
        sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    args = argumentParser(__doc__.split("\n\n")[0]).parse_args(argv)
    serve(Blaster(args.protocol, args.duration, args.block, args.mode == "relay"), args.port)


if __name__ == "__main__":
    main()
