"""
The deployment files: the systemd units in C{contrib/systemd/} and the
C{Containerfile}, checked without systemd or a container engine running.

Each unit starts its own service with flags that service accepts, under
the sandbox the README promises (C{DynamicUser}, C{ProtectSystem=strict},
a C{StateDirectory}, C{LimitNOFILE}); C{systemd-analyze verify} accepts
each where it is installed.  The C{Containerfile} copies only files that
exist, runs the chat server as a user that is not root, with flags the
chat accepts.  A backup of the history taken while the server runs, as
the README says, is readable.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import TwistdProcess, connect, waitFor

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "contrib" / "systemd"
CONTAINERFILE = ROOT / "Containerfile"

#: The twistd plugin of each unit, and where its options are.
SERVICES = {
    "chatsvc-chat.service": ("chat", "chatsvc.chat.service"),
    "chatsvc-tsserv.service": ("tsserv", "chatsvc.tsserv"),
    "chatsvc-cmdserv.service": ("cmdserv", "chatsvc.cmdserv"),
}

#: Where the units expect chatsvc to be installed.
INSTALLED = "/opt/chatsvc/bin/twistd"


def logicalLines(text: str) -> list[str]:
    """
    Lines with comments and blanks dropped and backslash continuations
    joined, as systemd and container files both read them.
    """
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def unitSettings(path: Path) -> dict[str, list[str]]:
    """
    Every C{Key=value} of a unit file, by key (a key may repeat).
    """
    settings: dict[str, list[str]] = {}
    for line in logicalLines(path.read_text(encoding="utf-8")):
        if line.startswith("["):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def checkFlags(module: str, args: list[str]) -> None:
    """
    Parse C{args} with the service's own options (raising as a bad flag
    would: C{SystemExit(2)}).
    """
    options = importlib.import_module(module).Options()
    options.parseOptions(args)


class UnitTests(SynchronousTestCase):
    def test_onePerService(self) -> None:
        found = sorted(path.name for path in UNITS.glob("*.service"))
        self.assertEqual(found, sorted(SERVICES))

    def test_sandboxed(self) -> None:
        """
        A throwaway user, a read-only system, state in its own directory,
        the working directory there, and room for many connections.
        """
        for name in SERVICES:
            settings = unitSettings(UNITS / name)
            self.assertEqual(settings["DynamicUser"], ["yes"], name)
            self.assertEqual(settings["ProtectSystem"], ["strict"], name)
            self.assertEqual(settings["NoNewPrivileges"], ["yes"], name)
            [state] = settings["StateDirectory"]
            self.assertEqual(settings["WorkingDirectory"], [f"%S/{state}"], name)
            self.assertGreaterEqual(int(settings["LimitNOFILE"][0]), 4096, name)
            self.assertEqual(settings["WantedBy"], ["multi-user.target"], name)

    def test_execStartFlags(self) -> None:
        """
        Each unit runs twistd in the foreground, without a pid file, with
        flags its service accepts.
        """
        for name, (plugin, module) in SERVICES.items():
            [command] = unitSettings(UNITS / name)["ExecStart"]
            argv = shlex.split(command)
            self.assertEqual(argv[:4], [INSTALLED, "-n", "--pidfile=", plugin], name)
            checkFlags(module, argv[4:])

    def test_chatKeepsHistoryInState(self) -> None:
        """
        The chat's history is a relative path: in the state directory.
        """
        argv = shlex.split(unitSettings(UNITS / "chatsvc-chat.service")["ExecStart"][0])
        history = argv[argv.index("--history") + 1]
        self.assertFalse(history.startswith("/"), history)

    def test_systemdAnalyzeVerify(self) -> None:
        """
        C{systemd-analyze verify} accepts every unit (with twistd where
        this machine has it).
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise self.skipTest("systemd-analyze is not installed")
        twistd = Path(sys.executable).parent / "twistd"
        with tempfile.TemporaryDirectory() as where:
            for name in SERVICES:
                text = (UNITS / name).read_text(encoding="utf-8")
                (Path(where) / name).write_text(text.replace(INSTALLED, str(twistd)))
            result = subprocess.run(
                [analyze, "verify", "--man=no", *(str(Path(where) / n) for n in SERVICES)],
                capture_output=True,
                text=True,
                timeout=120,
            )
        self.assertEqual(result.returncode, 0, result.stderr)


def instructions(path: Path) -> list[tuple[str, str]]:
    """
    A container file's instructions: C{(KEYWORD, arguments)}.
    """
    found = []
    for line in logicalLines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def arguments(rest: str) -> list[str]:
    """
    An instruction's arguments in exec form (a JSON array) or shell form.
    """
    return json.loads(rest) if rest.startswith("[") else shlex.split(rest)


class ContainerfileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.steps = instructions(CONTAINERFILE)

    def last(self, keyword: str) -> str:
        found = [rest for key, rest in self.steps if key == keyword]
        self.assertTrue(found, f"no {keyword}")
        return found[-1]

    def test_startsFrom(self) -> None:
        self.assertEqual(self.steps[0][0], "FROM")

    def test_copySourcesExist(self) -> None:
        """
        Every file or directory a COPY names is in the repository.
        """
        copies = [arguments(rest) for key, rest in self.steps if key == "COPY"]
        self.assertTrue(copies)
        for args in copies:
            sources = [a for a in args[:-1] if not a.startswith("--")]
            self.assertTrue(sources, args)
            for source in sources:
                self.assertTrue((ROOT / source).exists(), f"COPY {source}: not in the repository")

    def test_notRoot(self) -> None:
        """
        The server runs as a user that is not root, set after the last
        RUN (which needs root to install).
        """
        keys = [key for key, _ in self.steps]
        user = self.last("USER").split(":")[0]
        self.assertNotIn(user, ("root", "0", ""))
        lastUser = len(keys) - 1 - keys[::-1].index("USER")
        lastRun = len(keys) - 1 - keys[::-1].index("RUN")
        self.assertGreater(lastUser, lastRun)

    def test_runsChat(self) -> None:
        """
        The entry point is twistd chat in the foreground, and the default
        arguments are flags the chat accepts, with the history in the
        volume.
        """
        entry = arguments(self.last("ENTRYPOINT"))
        self.assertEqual(entry, ["twistd", "-n", "--pidfile=", "chat"])
        args = arguments(self.last("CMD"))
        checkFlags("chatsvc.chat.service", args)
        history = args[args.index("--history") + 1]
        [volume] = arguments(self.last("VOLUME"))
        self.assertTrue(history.startswith(volume + "/"), history)
        self.assertEqual(self.last("STOPSIGNAL"), "SIGTERM")


class BackupTests(TestCase):
    """
    The README's backup, taken from a running chat server.
    """

    def setUp(self) -> None:
        self.cwd = tempfile.mkdtemp(prefix="chatsvc-backup-")
        self.addCleanup(shutil.rmtree, self.cwd, True)

    async def test_onlineBackupReadable(self) -> None:
        """
        A backup made with SQLite's online backup (python's
        C{Connection.backup}, and the C{sqlite3} shell's C{.backup} where
        installed) while the server runs is a sound database holding the
        messages written so far.
        """
        server = await TwistdProcess.start(
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--history",
            "history.sqlite3",
            cwd=self.cwd,
        )
        self.addCleanup(server.stop)
        client = await connect(server.port())
        self.addCleanup(client.close)
        client.sendLine("alice")
        await client.readLine()
        client.sendLine("kept in the backup")
        live = os.path.join(self.cwd, "history.sqlite3")
        copy = os.path.join(self.cwd, "backup.sqlite3")

        def backedUp() -> bool:
            backup(live, copy)
            return "kept in the backup" in storedTexts(copy)

        await waitFor(backedUp, "the message to reach the history")
        self.assertEqual(integrity(copy), "ok")
        shell = shutil.which("sqlite3")
        if shell is not None:
            other = os.path.join(self.cwd, "shell-backup.sqlite3")
            subprocess.run([shell, live, f".backup {other}"], check=True, timeout=60)
            self.assertIn("kept in the backup", storedTexts(other))
            self.assertEqual(integrity(other), "ok")
        self.assertIsNone(server.exitCode)


def backup(live: str, copy: str) -> None:
    source = sqlite3.connect(live)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def storedTexts(path: str) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [text for (text,) in connection.execute("SELECT text FROM messages")]
    finally:
        connection.close()


def integrity(path: str) -> str:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()
