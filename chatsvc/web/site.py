"""
The web gateway's HTTP side: the page, its files, and C{/ws}.

  - C{GET /}: the chat page; C{GET /static/NAME}: its script, style and
    images, read from the package once, at start; nothing else is
    served, and the page fetches nothing from anywhere else (its
    Content-Security-Policy says so to the browser too);
  - C{/ws}: the chat over a WebSocket (L{chatsvc.web.socket.WebChat}),
    for a page of the same origin (C{--web-origin} allows more); a plain
    GET there is 426, a foreign Origin 403;
  - an unknown path is 404, another method 405, a request body over
    16 KiB 413; the request line and headers are held to 4 KiB per
    line, 8 KiB and 40 headers in all (Twisted allows 16 KiB and 500).

Connections count in the same L{ConnectionPolicy} as the line protocol
and the IRC gateway (C{--max-clients}, the per-address cap): a refused
one gets a 503.
"""

from __future__ import annotations

from importlib import resources

from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.web import http, pages, resource, server
from twisted.web.websocket import WebSocketResource
from zope.interface import implementer_only

from chatsvc.chat.lines import ChatLimits
from chatsvc.chat.session import Population
from chatsvc.net.lineproto import ConnectionPolicy
from chatsvc.net.oplog import peerName
from chatsvc.web.socket import WebChat, registerFrames

log = Logger()

#: Largest request body accepted (the chat has no use for one).
MAX_BODY = 16 * 1024

#: Headers on every response: no script, style or connection but our
#: own, no framing, no sniffing, no referrer.
SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        b"style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
}

_TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
    "png": b"image/png",
    "ico": b"image/x-icon",
    "json": b"application/json",
}


def _secure(request) -> None:
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


_NOT_FOUND = pages.notFound("Not Found", "There is nothing here: the chat is at /.")


class _Readable(resource.Resource):
    """
    A resource that answers GET and HEAD, and 405 to anything else
    (Twisted's own 405 page is deprecated for not escaping).
    """

    def render(self, request):
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            return pages.errorPage(
                http.NOT_ALLOWED, "Method Not Allowed", "Only GET and HEAD are served here."
            ).render(request)
        return super().render(request)


class StaticFile(_Readable):
    """
    One file of the page, held in memory.
    """

    isLeaf = True

    def __init__(self, data: bytes, contentType: bytes) -> None:
        super().__init__()
        self.data = data
        self.contentType = contentType

    def render_GET(self, request) -> bytes:
        _secure(request)
        request.setHeader(b"Content-Type", self.contentType)
        request.setHeader(b"Cache-Control", b"no-cache")
        return self.data


def loadStatic() -> dict[str, StaticFile]:
    """
    The files of C{chatsvc/web/static/}, by name.
    """
    files = {}
    for entry in resources.files("chatsvc.web").joinpath("static").iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        kind = _TYPES.get(entry.name.rpartition(".")[2], b"application/octet-stream")
        files[entry.name] = StaticFile(entry.read_bytes(), kind)
    return files


class StaticDirectory(_Readable):
    """
    C{/static/NAME}: the page's files, no listing.
    """

    def __init__(self, files: dict[str, StaticFile]) -> None:
        super().__init__()
        self.files = files

    def getChild(self, path: bytes, request):
        found = self.files.get(path.decode("utf-8", "replace"))
        return found if found is not None else _NOT_FOUND

    def render_GET(self, request):
        return _NOT_FOUND.render(request)


class _ChatSockets:
    """
    The C{WebSocketServerFactory} of C{/ws}: one L{WebChat} per upgrade.
    """

    def __init__(self, gateway) -> None:
        self.gateway = gateway

    def buildProtocol(self, request) -> WebChat:
        return WebChat(self.gateway, request)


class ChatSocket(_Readable, WebSocketResource):
    """
    C{/ws}: the chat, for WebSocket upgrades from the page's origin.
    """

    isLeaf = True

    def __init__(self, gateway) -> None:
        super().__init__(_ChatSockets(gateway))
        self.gateway = gateway

    def render_GET(self, request):
        _secure(request)
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade != b"websocket":
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"Upgrade", b"websocket")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"this is the chat's WebSocket: open the page at / instead\n"
        origin = request.getHeader(b"origin")
        if origin is not None and not self.gateway.originAllowed(request, origin):
            log.info(
                "web: refused {peer}: Origin {origin} is not allowed",
                peer=peerName(request.getClientAddress()),
                origin=origin.decode("latin-1"),
                event="refused",
                reason="origin",
            )
            request.setResponseCode(http.FORBIDDEN)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"this page's origin may not use this chat (see --web-origin)\n"
        if self.gateway.population.shuttingDown:
            request.setResponseCode(http.SERVICE_UNAVAILABLE)
            return b"the server is shutting down\n"
        return super().render_GET(request)


class Root(_Readable):
    """
    C{/}: the page; C{/static/}: its files; C{/ws}: the chat.
    """

    def __init__(self, gateway, files: dict[str, StaticFile]) -> None:
        super().__init__()
        self.page = files["index.html"]
        self.putChild(b"static", StaticDirectory(files))
        self.putChild(b"ws", ChatSocket(gateway))

    def getChild(self, path: bytes, request):
        if path == b"":
            return self.page
        return _NOT_FOUND

    def render_GET(self, request):
        return self.page.render_GET(request)


class _Discard:
    """
    Where a refused request body goes.
    """

    def write(self, data: bytes) -> None:
        pass

    def seek(self, *args) -> int:
        return 0

    def read(self, *args) -> bytes:
        return b""

    def close(self) -> None:
        pass


class LimitedRequest(server.Request):
    """
    A request whose body, which nothing here reads, is refused past
    L{MAX_BODY} bytes instead of being spooled to memory or disk.
    """

    _bodySeen = 0
    _refused = False

    def gotLength(self, length) -> None:
        if length is not None and length > MAX_BODY:
            self._refuseBody()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._bodySeen += len(data)
        if self._bodySeen > MAX_BODY:
            self._refuseBody()
            return
        super().handleContentChunk(data)

    def _refuseBody(self) -> None:
        self._refused = True
        self.content = _Discard()
        transport = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 24\r\n\r\nrequest body too large.\n"
        )
        transport.loseConnection()


class LimitedChannel(http.HTTPChannel):
    """
    HTTP with tighter header limits, releasing its place in the
    connection policy when it goes (or, once it is a WebSocket, when the
    chat connection goes: L{WebChat.connectionLost}).
    """

    MAX_LENGTH = 4096
    totalHeadersSize = 8192
    maxHeaders = 40
    policy: ConnectionPolicy | None = None
    _policyKey = None
    _released = False

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A request line or a header over L{MAX_LENGTH}: say so, and close
        (Twisted closes without a word).
        """
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 33\r\n\r\n"
            b"request line or header too long.\n"
        )
        self.transport.loseConnection()

    def releasePolicy(self) -> None:
        if not self._released and self.policy is not None:
            self._released = True
            self.policy.release(self._policyKey)

    def connectionLost(self, reason) -> None:
        self.releasePolicy()
        super().connectionLost(reason)


class _Refusal(http.HTTPChannel):
    """
    A connection over the caps: a 503 with the reason, then closed.
    """

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = self.refused = line

    def connectionMade(self) -> None:
        body = (self.line + "\n").encode("utf-8")
        self.transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        pass


@implementer_only(IProtocolFactory)
class WebGateway(server.Site):
    """
    The web gateway: a C{Site} on the chat's Hub, whose C{/ws} makes one
    L{WebChat} per browser.

    @ivar origins: Origins allowed besides the page's own (C{--web-origin});
        C{"*"} among them allows any.
    @ivar pingInterval: seconds of silence before the server pings.
    @ivar pingTimeout: seconds after that ping before the browser is cut.
    @ivar maxPending: bytes of a message not yet complete past which the
        socket is closed (1009).

    It offers no ALPN (C{Site} would offer h2 and http/1.1, and a
    WebSocket needs HTTP/1.1): Twisted before 26 sets ALPN on the TLS
    context of every new connection, which pyOpenSSL 25 and later refuse
    once the context is in use, so C{--web ssl:} would fail there.
    """

    requestFactory = LimitedRequest
    protocol = LimitedChannel
    logName = "web"
    pingInterval = 30.0
    pingTimeout = 30.0
    noisy = False

    def __init__(
        self,
        hub,
        limits: ChatLimits | None = None,
        clock=None,
        population: Population | None = None,
        policy: ConnectionPolicy | None = None,
        origins: tuple[str, ...] = (),
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.hub = hub
        self.limits = limits if limits is not None else ChatLimits()
        self.clock = clock
        self.population = population if population is not None else Population(clock)
        self.policy = policy if policy is not None else ConnectionPolicy(self.limits)
        self.origins = {o.rstrip("/").lower() for o in origins}
        registerFrames()
        self.maxPending = 4 * self.limits.maxLine + 4096
        self.connections: set[WebChat] = set()
        self._gone: list = []
        self.gateways: dict[str, str] = {}
        super().__init__(Root(self, loadStatic()), timeout=60, reactor=clock)

    def log(self, request) -> None:
        pass  # one line per connection event, never per request (the operator log)

    def originAllowed(self, request, origin: bytes) -> bool:
        """
        The page's own origin (the Host it was asked for, on this scheme),
        or one of L{origins}.
        """
        text = origin.decode("latin-1").rstrip("/").lower()
        if "*" in self.origins or text in self.origins:
            return True
        host = (request.getHeader(b"host") or b"").decode("latin-1").lower()
        scheme = "https" if request.isSecure() else "http"
        return text == f"{scheme}://{host}"

    def buildProtocol(self, addr):
        refusal, key = self.policy.admit(addr)
        if refusal is not None:
            log.info(
                "web: refused {peer}: {line}",
                peer=peerName(addr),
                line=refusal,
                event="refused",
                reason="full" if refusal.startswith("full:") else "per-address",
            )
            proto = _Refusal(refusal)
            proto.factory = self
            return proto
        channel = super().buildProtocol(addr)
        channel.policy = self.policy
        channel._policyKey = key
        return channel

    def closeAll(self, notice: str | None = None, grace: float | None = None):
        """
        Stop: every user of every gateway gets C{notice} (its session
        closes its socket); fires once this gateway's chats are gone,
        aborting those still open after C{grace} seconds.
        """
        from twisted.internet import defer

        self.population.shutdown(notice or "server shutting down")
        if not self.connections:
            return defer.succeed(None)
        if grace is None:
            grace = self.limits.closeGrace
        d = defer.Deferred()
        self._gone.append(d)

        def abortRest():
            for chat in list(self.connections):
                chat.abort()

        timer = self.clock.callLater(grace, abortRest)

        def cancelTimer(result):
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(cancelTimer)

    def chatGone(self, chat: WebChat) -> None:
        """
        C{chat} is gone; wakes L{closeAll} when it was the last.
        """
        self.connections.discard(chat)
        if not self.connections:
            waiting, self._gone = self._gone, []
            for d in waiting:
                d.callback(None)
