"""
The chat page in a real browser: headless Chromium driven by Playwright
against a real C{twistd -n chat --web --irc}, beside a line client and an
IRC client on plain sockets.

Playwright's synchronous API runs its own event loop, so each browser
scenario runs in a worker thread (L{threads.deferToThread}); the line and
IRC clients there are blocking sockets with timeouts, and what must happen
on the reactor (stopping and starting twistd) is called from the thread
with L{threads.blockingCallFromThread}.  Every wait is on something the
page or a socket shows (Playwright's C{expect} retries until its
deadline); nothing sleeps.

The browser is the Debian package C{chromium}; nothing is downloaded
(C{playwright install} is never run).  Without it, or without the
C{playwright} package, the tests are skipped and say why.

Screenshots of the page at desktop and phone sizes are written to the
test's temporary directory, and copied to C{$CHATSVC_SCREENSHOTS} when
that is set (the README's C{docs/web-chat.png} is one of them).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import tempfile

from twisted.internet import defer, reactor, threads
from twisted.protocols import portforward
from twisted.trial.unittest import SkipTest, TestCase

from tests.support import DEADLINE, TwistdProcess, waitFor

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    expect = sync_playwright = None

#: The Debian package's browser; Playwright drives it, never downloads one.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = "tcp:0:interface=127.0.0.1"
#: Playwright's deadline for any one wait, in milliseconds.
WAIT_MS = DEADLINE * 1000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
_LISTENING = re.compile(rb"(chat|irc|web) listening on tcp 127\.0\.0\.1:(\d+)")

if expect is not None:
    # Playwright's own default is 5 seconds: generous enough alone, not
    # on a loaded machine.  Only a hang ever waits this long.
    expect.set_options(timeout=WAIT_MS)


def needBrowser() -> None:
    """
    Skip, saying what is missing, without Chromium or Playwright.
    """
    if sync_playwright is None:
        raise SkipTest("playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        raise SkipTest(f"{CHROMIUM} is not installed (apt-get install chromium)")


def freePorts(count: int) -> list[int]:
    """
    C{count} loopback ports free a moment ago, for a server that must
    come back on the same ports after a restart.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def pngSize(path: str) -> tuple[int, int]:
    """
    The width and height of a PNG file, from its header.
    """
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


class Lines:
    """
    A blocking line client (for the worker thread): LF lines for the line
    protocol, CRLF for IRC.  Every read has a timeout.

    @ivar seen: every line read, for the failure message.
    """

    def __init__(self, port: int, ending: bytes = b"\n") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.ending = ending
        self.buffer = b""
        self.seen: list[str] = []

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + self.ending)

    def readLine(self) -> str:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed; read {self.seen[-10:]}")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        text = line.rstrip(b"\r").decode("utf-8")
        self.seen.append(text)
        return text

    def expect(self, part: str) -> str:
        """
        Read until a line holding C{part}, and return it.
        """
        try:
            while True:
                line = self.readLine()
                if part in line:
                    return line
        except TimeoutError:
            raise AssertionError(f"no line with {part!r}; read {self.seen[-10:]}") from None

    def close(self) -> None:
        self.sock.close()


class LineUser(Lines):
    """
    A line-protocol user, logged in (text format).
    """

    def __init__(self, port: int, name: str, room: str = "") -> None:
        super().__init__(port)
        self.send(f"{name} {room}".strip())
        self.expect(f"success: logged in as {name},")


class IRCUser(Lines):
    """
    An IRC client, registered, in C{#lobby}; it answers PINGs.
    """

    def __init__(self, port: int, nick: str) -> None:
        super().__init__(port, b"\r\n")
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick} on IRC")
        self.expect(" 001 ")
        self.send("JOIN #lobby")
        self.expect(" 366 ")

    def readLine(self) -> str:
        line = super().readLine()
        if line.startswith("PING "):
            self.send("PONG " + line[5:])
        return line


class _CutterClient(portforward.ProxyClient):
    """
    The server's side of a forwarded connection, counted.
    """

    def connectionMade(self) -> None:
        self.cutter = self.peer.factory
        self.cutter.opened += 1
        super().connectionMade()

    def connectionLost(self, reason) -> None:
        self.cutter.opened -= 1
        super().connectionLost(reason)


class _CutterClientFactory(portforward.ProxyClientFactory):
    protocol = _CutterClient


class _CutterServer(portforward.ProxyServer):
    """
    The browser's side of a forwarded connection, counted; once cut
    (C{held}), its closing no longer closes the server's side.
    """

    clientProtocolFactory = _CutterClientFactory
    held = False

    def connectionMade(self) -> None:
        self.factory.opened += 1
        self.factory.connections.append(self)
        super().connectionMade()

    def connectionLost(self, reason) -> None:
        self.factory.opened -= 1
        if self in self.factory.connections:
            self.factory.connections.remove(self)
        if not self.held:
            super().connectionLost(reason)


class Cutter(portforward.ProxyFactory):
    """
    A TCP forwarder between the browser and the web port that cuts
    connections as a network does: the browser sees them close, the
    server does not, until L{release}.

    @ivar opened: connections open on either side.
    """

    protocol = _CutterServer
    noisy = False

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.connections: list[_CutterServer] = []
        self.held: list[_CutterServer] = []
        self.opened = 0

    def cut(self) -> None:
        """
        Close the browser's side of every connection so far.
        """
        for connection in self.connections:
            connection.held = True
            self.held.append(connection)
            # Each side is the other's producer, and a transport that
            # closes stops its producer: that would close the other side.
            connection.transport.unregisterProducer()
            if connection.peer is not None:
                connection.peer.transport.unregisterProducer()
            connection.transport.loseConnection()

    def release(self) -> None:
        """
        Close the server's side of the connections cut.
        """
        held, self.held = self.held, []
        for connection in held:
            if connection.peer is not None:
                connection.peer.transport.loseConnection()

    async def closed(self) -> None:
        await waitFor(lambda: self.opened == 0, "the forwarded connections to close")


class Scene:
    """
    One browser and the clients of one scenario, all closed at the end:
    runs in the worker thread.

    @ivar dialogs: messages of any dialog a page opened (there must be none).
    @ivar errors: uncaught exceptions in any page (there must be none).
    """

    def __init__(self, playwright, ports: dict[str, int]) -> None:
        self.browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=WAIT_MS
        )
        self.ports = ports
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.closing: list = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}/"

    def page(self, viewport: dict = DESKTOP, clock: bool = False):
        """
        A page of the chat in a browser context of its own (its own
        cookies and storage: another user).
        """
        context = self.browser.new_context(viewport=viewport, locale="en-GB")
        context.set_default_timeout(WAIT_MS)
        if clock:
            context.clock.install()
        page = context.new_page()
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(self.url)
        return page

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def line(self, name: str, room: str = "") -> LineUser:
        user = LineUser(self.ports["chat"], name, room)
        self.closing.append(user)
        return user

    def irc(self, nick: str) -> IRCUser:
        user = IRCUser(self.ports["irc"], nick)
        self.closing.append(user)
        return user

    def close(self) -> None:
        for client in self.closing:
            client.close()
        self.browser.close()


def runScene(scenario, ports: dict[str, int]):
    """
    Run C{scenario(scene)} with a fresh browser (in the worker thread),
    then check that no page raised or opened a dialog.
    """
    with sync_playwright() as playwright:
        scene = Scene(playwright, ports)
        try:
            result = scenario(scene)
        finally:
            scene.close()
    assert not scene.errors, scene.errors
    assert not scene.dialogs, scene.dialogs
    return result


def onReactor(function, *args):
    """
    From the worker thread: run the coroutine function C{function} on
    the reactor and return its result.
    """
    return threads.blockingCallFromThread(reactor, lambda: defer.ensureDeferred(function(*args)))


# -- what a user does on the page (worker thread) ------------------------------


def login(page, name: str, room: str = "") -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Room", exact=True).fill(room)
    page.get_by_role("button", name="Enter the chat").click()
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#view-title")).to_have_text(re.compile("^#"))


def say(page, text: str) -> None:
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")


def shown(page):
    """
    The log of the view on screen.
    """
    return page.locator("#logs ol.log:not([hidden])")


def member(page, name: str):
    return page.locator(f'#members button[data-name="{name}"]')


def viewTab(page, view: str):
    return page.locator(f'#view-tabs button[data-view="{view}"]')


class WebBrowserTests(TestCase):
    """
    The page as people use it, each test with a server of its own.
    """

    timeout = 240

    def setUp(self) -> None:
        needBrowser()
        self.cwd = tempfile.mkdtemp(prefix="chatsvc-web-")
        self.addCleanup(shutil.rmtree, self.cwd, True)
        self.history = os.path.join(self.cwd, "history.sqlite3")

    async def serve(self, chat: str = LOOPBACK, web: str = LOOPBACK, irc: str = LOOPBACK):
        """
        Start C{twistd -n chat --web --irc}; its ports by listener name.
        """
        server = await TwistdProcess.start(
            "chat",
            *("--port", chat, "--web", web, "--irc", irc, "--history", self.history),
            cwd=self.cwd,
            listeners=3,
        )
        self.addCleanup(server.stop)
        ports = {m.group(1).decode(): int(m.group(2)) for m in _LISTENING.finditer(server.output)}
        self.assertEqual(sorted(ports), ["chat", "irc", "web"], server.output)
        return server, ports

    async def scene(self, scenario, ports: dict[str, int]):
        return await threads.deferToThread(runScene, scenario, ports)

    def assertCleanLog(self, server: TwistdProcess) -> None:
        self.assertNotIn(b"Traceback", bytes(server.output))

    async def test_chatting(self) -> None:
        """
        Two browsers, a line client and an IRC client talk in #lobby:
        messages and actions reach every side once; a newcomer's page
        shows the room's history; the member list follows joins, leaves
        and renames.
        """
        server, ports = await self.serve()

        def scenario(scene: Scene) -> None:
            dave = scene.line("dave")
            carol = scene.irc("carol")
            alice = scene.page()
            login(alice, "alice")
            for name in ("dave", "carol"):
                expect(member(alice, name)).to_be_visible()
            expect(alice.locator("#members")).to_contain_text("alice (you)")

            dave.send("said before bob came")
            expect(shown(alice)).to_contain_text("dave: said before bob came")
            bob = scene.page()
            login(bob, "bob")
            expect(shown(bob).locator("li.history")).to_contain_text("dave: said before bob came")
            expect(member(alice, "bob")).to_be_visible()
            expect(shown(alice)).to_contain_text("bob joined")

            say(alice, "hello everyone")
            expect(shown(bob)).to_contain_text("alice: hello everyone")
            dave.expect("#lobby alice: hello everyone")
            self.assertTrue(carol.expect("PRIVMSG #lobby :hello everyone").startswith(":alice!"))
            expect(shown(alice).locator("li.message .from.own")).to_have_text(["alice"])

            say(bob, "/me waves")
            expect(shown(alice)).to_contain_text("* bob waves")
            dave.expect("#lobby * bob waves")
            carol.expect("\x01ACTION waves\x01")

            carol.send("PRIVMSG #lobby :hi from IRC")
            dave.send("hi from the line")
            for page in (alice, bob):
                expect(shown(page)).to_contain_text("carol: hi from IRC")
                expect(shown(page)).to_contain_text("dave: hi from the line")
            # Each message once, however often the history is asked for.
            say(bob, "/history 10")
            expect(shown(bob)).to_contain_text("end of history of #lobby")
            expect(shown(bob).locator("li", has_text="alice: hello everyone")).to_have_count(1)

            say(bob, "/nick robert")
            expect(member(alice, "robert")).to_be_visible()
            expect(member(alice, "bob")).to_have_count(0)
            expect(bob.locator("#members")).to_contain_text("robert (you)")
            dave.send("/quit off to lunch")
            expect(member(alice, "dave")).to_have_count(0)
            expect(shown(alice)).to_contain_text("dave left (quit: off to lunch)")

        await self.scene(scenario, ports)
        self.assertCleanLog(server)

    async def test_privateAndUnread(self) -> None:
        """
        A private conversation per correspondent, opened from the member
        list or by C{/msg}; a view not on screen is marked unread (a
        private one, and the room while a private view is shown), and
        the mark goes when it is shown.
        """
        server, ports = await self.serve()

        def scenario(scene: Scene) -> None:
            carol = scene.irc("carol")
            alice = scene.page()
            login(alice, "alice")
            bob = scene.page()
            login(bob, "bob")

            member(bob, "alice").click()
            expect(bob.locator("#view-title")).to_have_text("Private: alice")
            expect(bob.get_by_label("Message", exact=True)).to_be_focused()
            say(bob, "psst alice")
            expect(shown(bob)).to_contain_text("bob: psst alice")
            expect(viewTab(alice, "bob").locator(".badge")).to_have_text("1")
            expect(viewTab(alice, "bob")).to_have_attribute("aria-label", "@bob, 1 unread")
            expect(shown(alice)).not_to_contain_text("psst")

            viewTab(alice, "bob").click()
            expect(alice.locator("#view-title")).to_have_text("Private: bob")
            expect(shown(alice)).to_contain_text("bob: psst alice")
            expect(viewTab(alice, "bob").locator(".badge")).to_have_count(0)
            expect(shown(alice)).to_have_attribute("aria-live", "polite")

            carol.send("PRIVMSG #lobby :news in the room")
            expect(viewTab(alice, "room").locator(".badge")).to_have_text("1")
            say(alice, "hi bob")
            expect(shown(bob)).to_contain_text("alice: hi bob")
            expect(viewTab(bob, "alice").locator(".badge")).to_have_count(0)

            say(alice, "/msg carol hello IRC")
            carol.expect("PRIVMSG carol :hello IRC")
            expect(alice.locator("#view-title")).to_have_text("Private: carol")
            carol.send("PRIVMSG alice :hello browser")
            expect(shown(alice)).to_contain_text("carol: hello browser")

            viewTab(alice, "room").click()
            expect(viewTab(alice, "room").locator(".badge")).to_have_count(0)
            expect(shown(alice)).to_contain_text("carol: news in the room")
            carol.send("PRIVMSG alice :are you there?")
            expect(viewTab(alice, "carol").locator(".badge")).to_have_text("1")

        await self.scene(scenario, ports)
        self.assertCleanLog(server)

    async def test_rooms(self) -> None:
        """
        The rooms list (refreshable) and the join field move the page to
        another room (one at a time, as the line protocol): its members,
        its history on entering, its topic; the old room sees the leave.
        """
        server, ports = await self.serve()

        def scenario(scene: Scene) -> None:
            eve = scene.line("eve", "kitchen")
            eve.send("/topic cooking tonight")
            eve.send("soup first")
            eve.send("/history 1")
            eve.expect("#kitchen eve: soup first")
            alice = scene.page()
            login(alice, "alice")
            expect(alice.locator('#rooms button[data-room="kitchen"]')).to_be_visible()
            expect(alice.locator('#rooms button[aria-current="true"]')).to_have_attribute(
                "data-room", "lobby"
            )
            bob = scene.page()
            login(bob, "bob")

            alice.get_by_label("Join room", exact=True).fill("kitchen")
            alice.get_by_label("Join room", exact=True).press("Enter")
            expect(alice.locator("#view-title")).to_have_text("#kitchen")
            expect(alice.locator("#topic")).to_have_text("cooking tonight")
            expect(shown(alice).locator("li.history")).to_contain_text("eve: soup first")
            expect(member(alice, "eve")).to_be_visible()
            expect(member(alice, "bob")).to_have_count(0)
            expect(member(bob, "alice")).to_have_count(0)
            eve.expect("alice joined")

            bob.get_by_role("button", name="Refresh rooms").click()
            expect(bob.locator('#rooms button[data-room="kitchen"] .count')).to_have_text("2")
            bob.locator('#rooms button[data-room="kitchen"]').click()
            expect(bob.locator("#view-title")).to_have_text("#kitchen")
            expect(member(alice, "bob")).to_be_visible()
            say(bob, "hello kitchen")
            expect(shown(alice)).to_contain_text("bob: hello kitchen")
            eve.expect("#kitchen bob: hello kitchen")

            say(alice, "/join lobby")
            expect(alice.locator("#view-title")).to_have_text("#lobby")
            expect(member(alice, "bob")).to_have_count(0)
            expect(shown(bob)).to_contain_text("alice left (part)")

        await self.scene(scenario, ports)
        self.assertCleanLog(server)

    async def test_textStaysText(self) -> None:
        """
        Markup from the network is shown as written and never runs: in
        a message, an action, a topic and a private message; no dialog
        opens, no element is made from it.  Login refusals (an invalid
        name, a taken one) are shown in the form, and another name works.
        """
        server, ports = await self.serve()
        script = "<script>alert(1)</script>"
        image = '<img src="x" onerror="alert(2)">'

        def scenario(scene: Scene) -> None:
            dave = scene.line("dave")
            page = scene.page()
            page.get_by_label("Name", exact=True).fill(script)
            page.get_by_role("button", name="Enter the chat").click()
            expect(page.locator("#login-error")).to_contain_text("name")
            expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
            page.get_by_label("Name", exact=True).fill("dave")
            page.get_by_role("button", name="Enter the chat").click()
            expect(page.locator("#login-error")).to_contain_text("taken")
            login(page, "eve")

            dave.send(script)
            dave.send("/me " + image)
            dave.send("/topic " + script)
            dave.send(f"/msg eve {image} {script}")
            expect(shown(page)).to_contain_text("dave: " + script)
            expect(shown(page)).to_contain_text("* dave " + image)
            expect(page.locator("#topic")).to_have_text(script)
            viewTab(page, "dave").click()
            expect(shown(page)).to_contain_text(f"dave: {image} {script}")
            say(page, script)
            dave.expect(f"(private) eve: {script}")
            expect(shown(page)).to_contain_text(f"eve: {script}")

            self.assertEqual(page.locator("#chat-screen script, #chat-screen img").count(), 0)
            self.assertEqual(page.locator("script").count(), 1)

        await self.scene(scenario, ports)
        self.assertCleanLog(server)

    async def test_restart(self) -> None:
        """
        The server stops (SIGTERM) and comes back on the same ports with
        the same history file: the page shows "reconnecting…" while it
        retries, logs in again by itself, and shows what was said while
        it was away (from the history, once), then "connected".

        The page's timers are frozen (Playwright's clock) while the new
        server starts and a line user talks, so what is said is said
        while the page is away, however the scheduler runs.
        """
        chatPort, webPort, ircPort = freePorts(3)
        endpoints = [f"tcp:{port}:interface=127.0.0.1" for port in (chatPort, webPort, ircPort)]
        server, ports = await self.serve(*endpoints)
        self.assertEqual(ports, {"chat": chatPort, "web": webPort, "irc": ircPort})

        def scenario(scene: Scene) -> None:
            page = scene.page(clock=True)
            status = page.locator("#status")
            login(page, "alice")
            say(page, "before the restart")
            expect(shown(page)).to_contain_text("alice: before the restart")

            self.assertEqual(onReactor(server.stop), 0)
            expect(status).to_have_text("reconnecting…")
            expect(shown(page)).to_contain_text("server shutting down")
            # Retries against the dead port, with their backoff.
            expect(status).to_have_attribute("data-attempts", re.compile(r"^([3-9]|\d\d+)$"))
            page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)
            expect(status).to_have_attribute("data-socket", "closed")
            expect(status).to_have_text("reconnecting…")

            onReactor(self.serve, *endpoints)
            dave = scene.line("dave")
            dave.send("said while alice was away")
            dave.send("/me waves at the empty chair")
            dave.send("/history 2")
            dave.expect("end of history")
            page.clock.resume()

            expect(status).to_have_text("connected")
            away = shown(page).locator("li.history")
            expect(away).to_contain_text(["dave: said while alice was away", "* dave waves"])
            expect(shown(page).locator("li", has_text="before the restart")).to_have_count(1)
            expect(member(page, "dave")).to_be_visible()
            say(page, "back again")
            dave.expect("#lobby alice: back again")

        await self.scene(scenario, ports)

    async def test_nameStillHeld(self) -> None:
        """
        A connection cut as a network cuts it (the browser sees it close,
        the server not yet): the page comes back and finds its name still
        held by its old session (C{reuse}); it says so and tries the same
        name again until the server lets the old session go, then shows
        what was said in between.
        """
        server, ports = await self.serve()
        cutter = Cutter("127.0.0.1", ports["web"])
        listening = reactor.listenTCP(0, cutter, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.addCleanup(cutter.closed)
        self.addCleanup(cutter.release)
        through = dict(ports, web=listening.getHost().port)

        def scenario(scene: Scene) -> None:
            page = scene.page()
            status = page.locator("#status")
            login(page, "alice")
            dave = scene.line("dave")
            expect(member(page, "dave")).to_be_visible()

            threads.blockingCallFromThread(reactor, cutter.cut)
            expect(status).to_have_text("reconnecting…")
            expect(shown(page)).to_contain_text("waiting for the old session of alice to end…")
            expect(status).to_have_text("reconnecting…")
            dave.send("said during the cut")
            dave.send("/history 1")
            dave.expect("#lobby dave: said during the cut")

            threads.blockingCallFromThread(reactor, cutter.release)
            dave.expect("#lobby alice left (")
            expect(status).to_have_text("connected")
            dave.expect("alice joined")
            expect(shown(page).locator("li.history")).to_contain_text("dave: said during the cut")
            say(page, "back")
            dave.expect("#lobby alice: back")

        await self.scene(scenario, through)
        self.assertCleanLog(server)

    async def test_keyboard(self) -> None:
        """
        The keyboard alone: the name field has focus, Tab reaches the
        room, Enter logs in and puts the focus in the message field,
        Enter sends; Tab reaches the member list (after Send), with a
        visible focus ring, and Enter there opens a private conversation.
        """
        server, ports = await self.serve()

        def scenario(scene: Scene) -> None:
            bob = scene.line("bob")
            page = scene.page()
            keyboard = page.keyboard
            expect(page.get_by_label("Name", exact=True)).to_be_focused()
            keyboard.type("alice")
            keyboard.press("Tab")
            expect(page.get_by_label("Room", exact=True)).to_be_focused()
            keyboard.type("lobby")
            keyboard.press("Enter")
            expect(page.locator("#status")).to_have_text("connected")
            message = page.get_by_label("Message", exact=True)
            expect(message).to_be_focused()
            keyboard.type("typed, not clicked")
            keyboard.press("Enter")
            bob.expect("#lobby alice: typed, not clicked")
            expect(shown(page)).to_contain_text("alice: typed, not clicked")
            expect(message).to_have_value("")

            keyboard.press("Tab")
            expect(page.get_by_role("button", name="Send")).to_be_focused()
            keyboard.press("Tab")
            expect(member(page, "bob")).to_be_focused()
            self.assertTrue(page.evaluate("document.activeElement.matches(':focus-visible')"))
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            self.assertNotEqual(outline, "none")
            keyboard.press("Enter")
            expect(page.locator("#view-title")).to_have_text("Private: bob")
            expect(message).to_be_focused()
            keyboard.type("just between us")
            keyboard.press("Enter")
            bob.expect("(private) alice: just between us")
            bob.send("/msg alice understood")
            expect(shown(page)).to_contain_text("bob: understood")

        await self.scene(scenario, ports)
        self.assertCleanLog(server)

    async def test_screenshots(self) -> None:
        """
        A small conversation at desktop size (1280x800) and phone size
        (390x844): on a phone the member list is folded away behind a
        People button (aria-expanded) that shows it and Escape hides.
        The pictures go to the test's directory, and to
        C{$CHATSVC_SCREENSHOTS} if set.
        """
        server, ports = await self.serve()
        pictures = os.path.join(self.cwd, "screenshots")
        os.mkdir(pictures)

        def scenario(scene: Scene) -> None:
            carol = scene.irc("carol")
            dave = scene.line("dave")
            alice = scene.page()
            login(alice, "alice")
            bob = scene.page()
            login(bob, "bob")
            dave.send("/topic release day: 2.0 ships at noon")
            expect(alice.locator("#topic")).to_have_text("release day: 2.0 ships at noon")
            say(alice, "morning all, the build is green")
            expect(shown(bob)).to_contain_text("the build is green")
            carol.send("PRIVMSG #lobby :great, I'll write the announcement")
            expect(shown(alice)).to_contain_text("the announcement")
            say(bob, "/me brings coffee")
            expect(shown(alice)).to_contain_text("* bob brings coffee")
            dave.send("docs are up to date too")
            expect(shown(alice)).to_contain_text("docs are up to date")
            dave.send("/msg alice can you tag the release?")
            expect(viewTab(alice, "dave").locator(".badge")).to_have_text("1")
            alice.get_by_label("Message", exact=True).focus()

            desktop = os.path.join(pictures, "web-chat-desktop.png")
            alice.screenshot(path=desktop)
            expect(alice.locator("#sidebar")).to_be_visible()
            expect(alice.locator("#people-toggle")).to_be_hidden()

            alice.set_viewport_size(PHONE)
            expect(alice.locator("#sidebar")).to_be_hidden()
            toggle = alice.get_by_role("button", name="People")
            expect(toggle).to_have_attribute("aria-expanded", "false")
            phone = os.path.join(pictures, "web-chat-phone.png")
            alice.screenshot(path=phone)
            toggle.click()
            expect(alice.locator("#sidebar")).to_be_visible()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            alice.screenshot(path=os.path.join(pictures, "web-chat-phone-people.png"))
            alice.keyboard.press("Escape")
            expect(alice.locator("#sidebar")).to_be_hidden()
            expect(toggle).to_be_focused()

        await self.scene(scenario, ports)
        self.assertCleanLog(server)
        sizes = {
            name: pngSize(os.path.join(pictures, name)) for name in sorted(os.listdir(pictures))
        }
        self.assertEqual(
            sizes,
            {
                "web-chat-desktop.png": (1280, 800),
                "web-chat-phone-people.png": (390, 844),
                "web-chat-phone.png": (390, 844),
            },
        )
        wanted = os.environ.get("CHATSVC_SCREENSHOTS")
        if wanted:
            os.makedirs(wanted, exist_ok=True)
            for name in sizes:
                shutil.copy(os.path.join(pictures, name), wanted)
