"""
The IRC gateway with irssi, the IRC client people actually run: irssi in
a detached tmux session (on a private tmux server) against a real
C{twistd -n chat --irc}, beside a real C{chatsvc-client} line user.

The test reads irssi's screen, so it checks what a user sees, not only
what crosses the wire.  irssi runs from a throwaway home whose config
names no servers, loads no scripts and throttles nothing, so it talks to
the loopback gateway only.
"""

from __future__ import annotations

import os
import re
import shutil

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from tests.support import DEADLINE, DeadlineExceeded, TwistdProcess, runProcess, waitFor
from tests.test_client_process import ClientProcess, temporaryDirectory

LOOPBACK = "tcp:0:interface=127.0.0.1"

#: irssi's config: no networks, servers or channels to join on its own; no
#: timestamps (lines start with what is said); one window for everything,
#: kept after /part; no flood throttle (irssi queues its commands at one
#: per 2.2 seconds once five are out, which only slows the test); no
#: autolog, no autosave, no CTCP replies.
IRSSI_CONFIG = """\
servers = ( );
chatnets = { };
channels = ( );
settings = {
  core = {
    real_name = "irssi in a test";
    user_name = "ircuser";
    nick = "ircuser";
    settings_autosave = "no";
  };
  "irc/core" = {
    alternate_nick = "ircuser_";
    cmd_queue_speed = "0";
    cmds_max_at_once = "100";
    ctcp_version_reply = "";
    ctcp_userinfo_reply = "";
  };
  "fe-common/core" = {
    timestamps = "no";
    autocreate_windows = "no";
    autoclose_windows = "no";
    autolog = "no";
  };
  "fe-text" = { paste_detect_time = "0"; };
};
"""

#: The server's log line for the IRC user's quit.
QUIT_LOGGED = re.compile(rb"irc: ircuser \(127\.0\.0\.1:\d+\) left the chat: quit: bye")


def needed(program: str) -> str:
    """
    The path of C{program}, or skip the test saying what is missing.
    """
    path = shutil.which(program)
    if path is None:
        raise SkipTest(f"{program} is not installed (apt-get install {program})")
    return path


class TmuxPane:
    """
    One program in a detached session of a tmux server of our own (its
    socket in C{directory}, no config file), so the user's tmux is never
    touched; the test types into it and reads its screen.
    """

    session = "test"

    def __init__(self, directory: str, env: dict) -> None:
        self.tmux = needed("tmux")
        self.socket = os.path.join(directory, "tmux.sock")
        self.env = env

    async def tmuxCommand(self, *args: str) -> tuple[int, bytes, bytes]:
        """
        Run a tmux command against our server: C{(code, stdout, stderr)}.
        """
        return await runProcess(
            [self.tmux, "-S", self.socket, "-f", os.devnull, *args], env=self.env
        )

    async def start(self, *argv: str) -> None:
        """
        Start C{argv} (no shell) in a session wide enough that no line
        of the test wraps, and tall enough that none scrolls away.
        """
        size = ["-x", "250", "-y", "100"]
        code, _, err = await self.tmuxCommand(
            "new-session", "-d", "-s", self.session, *size, "--", *argv
        )
        if code != 0:
            raise RuntimeError(f"tmux new-session failed: {err!r}")

    async def type(self, line: str) -> None:
        """
        Type C{line} and Enter.
        """
        keys = ("send-keys", "-t", self.session)
        code, _, err = await self.tmuxCommand(*keys, "-l", line, ";", *keys, "Enter")
        if code != 0:
            raise RuntimeError(f"tmux send-keys failed: {err!r}")

    async def screen(self) -> list[str]:
        """
        The pane's lines, the wrapped ones joined, without trailing blanks.
        """
        _, out, _ = await self.tmuxCommand(
            "capture-pane", "-p", "-J", "-S", "-200", "-t", self.session
        )
        return [line.rstrip() for line in out.decode("utf-8", "replace").splitlines()]

    async def waitLine(self, line: str | re.Pattern, seconds: float = DEADLINE) -> None:
        """
        Wait until the screen shows C{line} as a whole line (or a line
        that the pattern C{line} matches in full).
        """
        pattern = line if isinstance(line, re.Pattern) else re.compile(re.escape(line))
        deadline = reactor.seconds() + seconds
        while True:
            screen = await self.screen()
            if any(pattern.fullmatch(each) for each in screen):
                return
            if reactor.seconds() > deadline:
                shown = "\n".join(screen)
                raise DeadlineExceeded(f"waited {seconds}s for {line!r} on the screen:\n{shown}")
            await deferLater(reactor, 0.05, lambda: None)

    async def running(self) -> bool:
        """
        Whether our session still exists (it ends with its program).
        """
        code, _, _ = await self.tmuxCommand("has-session", "-t", self.session)
        return code == 0

    async def waitEnded(self, seconds: float = DEADLINE) -> None:
        """
        Wait until our session has ended.
        """
        deadline = reactor.seconds() + seconds
        while await self.running():
            if reactor.seconds() > deadline:
                raise DeadlineExceeded(f"waited {seconds}s for the tmux session to end")
            await deferLater(reactor, 0.05, lambda: None)

    async def kill(self) -> None:
        """
        Stop our tmux server and whatever still runs in it.
        """
        await self.tmuxCommand("kill-server")


class IrssiTests(TestCase):
    async def test_irssiAndLineUser(self) -> None:
        """
        irssi registers and joins #lobby, and its queries of the channel
        are answered (it says the join is synced); it and a
        C{chatsvc-client} user see each other's messages; irssi shows the
        line user's C{/me} as an action and C{/nick} as a nick change;
        the line user sees irssi's part; irssi quits, its session ends
        and the server logs the quit.
        """
        irssi = needed("irssi")
        directory = temporaryDirectory(self)
        chat = await TwistdProcess.start(
            "chat",
            "--port",
            LOOPBACK,
            "--irc",
            LOOPBACK,
            "--history",
            ":memory:",
            cwd=directory,
            listeners=2,
        )
        self.addCleanup(chat.stop)
        linePort, ircPort = chat.port(0), chat.port(1)

        bob = ClientProcess.start(self, "--host", "127.0.0.1", "--port", str(linePort), "-u", "bob")
        await bob.waitError(b"login success")

        home = os.path.join(directory, "irssi")
        os.mkdir(home)
        with open(os.path.join(home, "config"), "w") as f:
            f.write(IRSSI_CONFIG)
        # Nothing from the caller's environment: irssi reads IRCNICK,
        # IRCHOST (an address to bind) and others.
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": home, "LANG": "C.UTF-8"}
        pane = TmuxPane(directory, env)
        self.addCleanup(pane.kill)
        await pane.start(
            irssi, "--home", home, "-c", "127.0.0.1", "-p", str(ircPort), "-n", "ircuser"
        )
        await pane.waitLine("-!- Welcome to the chatsvc IRC gateway ircuser!ircuser@chatsvc")

        await pane.type("/join #lobby")
        await bob.waitOutput(b"#lobby ircuser joined\n")
        await pane.waitLine("-!- ircuser [ircuser@chatsvc] has joined #lobby")
        await pane.waitLine("[ bob] [ ircuser]")
        # irssi asks MODE #lobby, WHO #lobby and MODE #lobby b, and says
        # this once every answer has ended.
        await pane.waitLine(re.compile(r"-!- Irssi: Join to #lobby was synced in \d+ secs"))

        await pane.type("hello from irssi")
        await bob.waitOutput(b"#lobby ircuser: hello from irssi\n")

        bob.write(b"hi irssi\n")
        await pane.waitLine("< bob> hi irssi")

        bob.write(b"/me waves\n")
        await pane.waitLine(" * bob waves")

        bob.write(b"/nick robert\n")
        await bob.waitOutput(b"#lobby bob is now robert\n")
        await pane.waitLine("-!- bob is now known as robert")

        await pane.type("/part #lobby")
        await bob.waitOutput(b"#lobby ircuser left")
        await pane.waitLine("-!- ircuser [ircuser@chatsvc] has left #lobby []")

        await pane.type("/quit bye")
        await pane.waitEnded()
        await waitFor(lambda: QUIT_LOGGED.search(chat.output), "the server to log the quit")

        bob.write(b"/quit\n")
        self.assertEqual(await bob.wait(), 0, bob.report())
