"""
Tests for the IRC gateway (L{chatsvc.irc.session}, L{chatsvc.irc.protocol})
on C{StringTransport}s with a L{Clock}, beside line-protocol users on the
same Hub: registration, every command and its refusals, what crosses
between the sides, IRCv3 capabilities, and the limits.
"""

from __future__ import annotations

import time

from twisted.trial import unittest

from chatsvc.chat.lines import ChatFactory, ChatLimits
from chatsvc.chat.rooms import Hub
from chatsvc.irc.protocol import IRCFactory
from chatsvc.testing import Clock, MemoryHistory, lineConnection

#: Sat Nov 21 10:00:00 2026 UTC.
START = 1795255200.0


class Peer:
    """
    One connection seen from the client: what we send, what we got.
    """

    def __init__(self, factory, host: str = "10.0.0.1", port: int = 40000) -> None:
        self.proto, self.transport = lineConnection(factory, host, port)
        self.factory = factory

    def send(self, *lines: str | bytes, ending: bytes = b"\r\n") -> None:
        data = b"".join((x if isinstance(x, bytes) else x.encode("utf-8")) + ending for x in lines)
        self.proto.dataReceived(data)

    def raw(self) -> bytes:
        batcher = getattr(self.factory, "batcher", None)
        if batcher is not None:
            batcher.flush()
        data = self.transport.value()
        self.transport.clear()
        return data

    def lines(self) -> list[str]:
        data = self.raw()
        return data.decode("utf-8").splitlines() if data else []

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)


def numerics(lines: list[str]) -> list[str]:
    """
    The numeric of every numeric reply among C{lines}.
    """
    found = []
    for line in lines:
        words = line.split(" ")
        if len(words) > 1 and words[1].isdigit():
            found.append(words[1])
    return found


class GatewayTestCase(unittest.SynchronousTestCase):
    """
    A Hub with a line-protocol factory and an IRC factory on it, sharing
    one population and one connection policy, as C{twistd chat --irc} has.
    """

    limits = ChatLimits()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.history = MemoryHistory()
        self.hub = Hub(self.clock, self.history)
        self.chat = ChatFactory(self.hub, self.limits, self.clock)
        self.irc = IRCFactory(
            self.hub, self.limits, self.clock, self.chat.population, policy=self.chat.policy
        )
        self._port = 40000

    def ircPeer(self, host: str = "10.0.0.1") -> Peer:
        self._port += 1
        return Peer(self.irc, host, self._port)

    def register(self, nick: str, *caps: str) -> Peer:
        peer = self.ircPeer()
        if caps:
            peer.send("CAP LS 302", f"NICK {nick}", "USER u 0 * :Real Name")
            peer.send(f"CAP REQ :{' '.join(caps)}", "CAP END")
        else:
            peer.send(f"NICK {nick}", "USER u 0 * :Real Name")
        lines = peer.lines()
        self.assertIn("001", numerics(lines), lines)
        return peer

    def linePeer(self, name: str, room: str = "lobby") -> Peer:
        self._port += 1
        peer = Peer(self.chat, f"10.0.1.{self._port % 250}", self._port)
        peer.send(f"{name} {room}", ending=b"\n")
        self.assertTrue(peer.lines()[0].startswith("success:"))
        return peer


class RegistrationTests(GatewayTestCase):
    def test_welcome(self) -> None:
        """
        NICK and USER register: 001 to 005 with ISUPPORT, then LUSERS and
        422 (no MOTD).
        """
        peer = self.ircPeer()
        peer.send("PASS ignored", "NICK alice", "USER al 0 * :Alice A")
        lines = peer.lines()
        self.assertEqual(
            numerics(lines)[:5] + numerics(lines)[-1:], ["001", "002", "003", "004", "005", "422"]
        )
        self.assertTrue(lines[0].startswith(":chatsvc 001 alice :Welcome"))
        tokens = " ".join(line for line in lines if " 005 " in line).split(" ")
        for token in ("CHANTYPES=#", "NICKLEN=24", "CHANNELLEN=33", "CASEMAPPING=rfc8265"):
            self.assertIn(token, tokens)
        for line in lines:
            self.assertLessEqual(len(line.encode()) + 2, 512)

    def test_userThenNick(self) -> None:
        peer = self.ircPeer()
        peer.send("USER al 0 * :Alice", "NICK alice")
        self.assertIn("001", numerics(peer.lines()))

    def test_notRegistered(self) -> None:
        peer = self.ircPeer()
        peer.send("JOIN #lobby", "PRIVMSG #lobby :hi")
        self.assertEqual(numerics(peer.lines()), ["451", "451"])
        peer.send("FROB")
        self.assertEqual(numerics(peer.lines()), ["421"])

    def test_reregister(self) -> None:
        peer = self.register("alice")
        peer.send("USER a 0 * :x", "PASS x")
        self.assertEqual(numerics(peer.lines()), ["462", "462"])

    def test_userNeedsParams(self) -> None:
        peer = self.ircPeer()
        peer.send("USER al")
        self.assertEqual(numerics(peer.lines()), ["461"])

    def test_nickTakenOnAnySide(self) -> None:
        """
        One name space: a line user's name, its capitals and a confusable
        spelling are all 433; another nick then registers.
        """
        self.linePeer("alice")
        peer = self.ircPeer()
        peer.send("NICK alice", "NICK ALICE", "NICK \u0430lice", "USER u 0 * :x")
        self.assertEqual(numerics(peer.lines()), ["433", "433", "433"])
        peer.send("NICK alicia")
        self.assertIn("001", numerics(peer.lines()))

    def test_nickTakenWhileRegistering(self) -> None:
        """
        A nick free at NICK but taken before USER completes the
        registration is 433 then; the client picks another.
        """
        peer = self.ircPeer()
        peer.send("NICK alice")
        self.linePeer("alice")
        peer.send("USER u 0 * :x")
        self.assertEqual(numerics(peer.lines()), ["433"])
        peer.send("NICK alice2")
        self.assertIn("001", numerics(peer.lines()))

    def test_erroneousNick(self) -> None:
        peer = self.ircPeer()
        peer.send("NICK 9lives", "NICK a[b]", "NICK " + "x" * 25, "NICK")
        self.assertEqual(numerics(peer.lines()), ["432", "432", "432", "431"])

    def test_registrationTimeout(self) -> None:
        peer = self.ircPeer()
        peer.send("NICK alice")
        peer.lines()
        self.clock.advance(self.limits.loginTimeout)
        self.assertEqual(
            peer.lines(), ["ERROR :Closing Link: 10.0.0.1:40001 (Registration timed out)"]
        )
        self.assertTrue(peer.closing)

    def test_capNegotiationHoldsRegistration(self) -> None:
        """
        After CAP LS, registration waits for CAP END; REQ is all or
        nothing.
        """
        peer = self.ircPeer()
        peer.send("CAP LS 302", "NICK alice", "USER u 0 * :x")
        lines = peer.lines()
        self.assertEqual(len(lines), 1)
        offered = lines[0].split(" :", 1)[1].split()
        for cap in ("server-time", "message-tags", "echo-message", "multi-prefix"):
            self.assertIn(cap, offered)
        peer.send("CAP REQ :server-time sasl")
        self.assertEqual(peer.lines(), [":chatsvc CAP * NAK :server-time sasl"])
        peer.send("CAP REQ :server-time echo-message", "CAP LIST")
        self.assertEqual(
            peer.lines(),
            [
                ":chatsvc CAP * ACK :server-time echo-message",
                ":chatsvc CAP * LIST :echo-message server-time",
            ],
        )
        peer.send("CAP END")
        self.assertIn("001", numerics(peer.lines()))
        peer.send("CAP FROB")
        self.assertEqual(numerics(peer.lines()), ["410"])

    def test_ping(self) -> None:
        peer = self.register("alice")
        peer.send("PING :abc", "PING")
        self.assertEqual(peer.lines()[0], ":chatsvc PONG chatsvc :abc")
        peer.send("PING")
        self.assertEqual(numerics(peer.lines()), ["409"])


class QueryTests(GatewayTestCase):
    def test_smallQueries(self) -> None:
        self.linePeer("bob")
        alice = self.register("alice")
        alice.send("ISON bob carol Alice", "USERHOST bob nobody", "TIME", "VERSION")
        alice.send("LUSERS", "MOTD")
        lines = alice.lines()
        self.assertEqual(lines[0], ":chatsvc 303 alice :bob alice")
        self.assertEqual(lines[1], ":chatsvc 302 alice :bob=+bob@chatsvc")
        self.assertEqual(
            numerics(lines), ["303", "302", "391", "351", "251", "254", "255", "265", "266", "422"]
        )
        self.assertIn("There are 2 users", lines[4])


class ConformanceTests(GatewayTestCase):
    """
    What the public IRC conformance suite (irctest) asked for.
    """

    def test_emptyRealname(self) -> None:
        peer = self.ircPeer()
        peer.send("NICK alice", "USER u 0 * :")
        self.assertEqual(numerics(peer.lines()), ["461"])

    def test_userhostInNames(self) -> None:
        self.linePeer("bob")
        alice = self.register("alice", "userhost-in-names")
        alice.send("JOIN #lobby")
        names = [line for line in alice.lines() if " 353 " in line]
        self.assertEqual(
            names, [":chatsvc 353 alice = #lobby :bob!bob@chatsvc alice!alice@chatsvc"]
        )

    def test_whoMask(self) -> None:
        self.linePeer("bobby")
        self.linePeer("robert")
        alice = self.register("alice")
        alice.send("WHO bob*", "WHO *")
        lines = alice.lines()
        self.assertEqual(
            [line.split(" ")[7] for line in lines if " 352 " in line],
            ["bobby", "bobby", "robert", "alice"],
        )

    def test_awayNotifyOnJoin(self) -> None:
        alice = self.register("alice", "away-notify")
        alice.send("JOIN #lobby")
        carol = self.register("carol")
        carol.send("AWAY :out")
        alice.lines()
        carol.send("JOIN #lobby")
        self.assertEqual(
            alice.lines(), [":carol!carol@chatsvc JOIN #lobby", ":carol!carol@chatsvc AWAY :out"]
        )

    def test_clientTagsLimit(self) -> None:
        """
        A client's tags are at most 4094 bytes: more is 417, not relayed.
        """
        alice = self.register("alice")
        alice.send("JOIN #lobby")
        bob = self.linePeer("bob")
        alice.lines()
        alice.send("@+x=" + "a" * 4096 + " PRIVMSG #lobby :hi")
        self.assertEqual(numerics(alice.lines()), ["417"])
        self.assertEqual(bob.lines(), [])

    def test_privateMsgid(self) -> None:
        self.register("bob")
        alice = self.register("alice", "message-tags", "echo-message")
        alice.send("PRIVMSG bob :hi")
        (line,) = alice.lines()
        self.assertRegex(line, r"^@msgid=p-[^ ]+ :alice!alice@chatsvc PRIVMSG bob :hi$")

    def test_operAndWhowas(self) -> None:
        alice = self.register("alice")
        alice.send("OPER a b", "OPER", "WHOWAS bob", "WHOWAS")
        self.assertEqual(numerics(alice.lines()), ["491", "461", "406", "369", "431"])

    def test_serverName(self) -> None:
        self.irc.serverName = "My.Little.Server"
        alice = self.register("alice")
        alice.send("PING :x")
        self.assertEqual(alice.lines(), [":My.Little.Server PONG My.Little.Server :x"])


class RoomTests(GatewayTestCase):
    def test_joinShowsTopicAndNames(self) -> None:
        line = self.linePeer("bob")
        line.send("/topic news of the day", ending=b"\n")
        alice = self.register("alice")
        alice.send("JOIN #lobby")
        lines = alice.lines()
        self.assertEqual(lines[0], ":alice!alice@chatsvc JOIN #lobby")
        self.assertEqual(lines[1], ":chatsvc 332 alice #lobby :news of the day")
        self.assertEqual(lines[2], f":chatsvc 333 alice #lobby bob {int(START)}")
        self.assertEqual(lines[3], ":chatsvc 353 alice = #lobby :bob alice")
        self.assertEqual(lines[4], ":chatsvc 366 alice #lobby :End of /NAMES list")
        self.assertIn("alice joined", line.lines()[-1])

    def test_joinSeveral(self) -> None:
        alice = self.register("alice")
        alice.send("JOIN #a,#b,nohash,#bad!name")
        lines = alice.lines()
        joins = [line for line in lines if " JOIN " in line]
        self.assertEqual(joins, [":alice!alice@chatsvc JOIN #a", ":alice!alice@chatsvc JOIN #b"])
        self.assertEqual([n for n in numerics(lines) if n == "403"], ["403", "403"])
        alice.send("JOIN #A")
        self.assertEqual(alice.lines(), [])  # already there: nothing

    def test_roomNameAsFirstSpelled(self) -> None:
        self.linePeer("bob", "Lobby")
        alice = self.register("alice")
        alice.send("JOIN #LOBBY")
        self.assertEqual(alice.lines()[0], ":alice!alice@chatsvc JOIN #Lobby")

    def test_part(self) -> None:
        line = self.linePeer("bob")
        alice = self.register("alice")
        alice.send("JOIN #lobby")
        alice.lines()
        line.lines()
        alice.send("PART #lobby :see you", "PART #lobby", "PART #nowhere")
        self.assertEqual(
            alice.lines(),
            [
                ":alice!alice@chatsvc PART #lobby :see you",
                ":chatsvc 442 alice #lobby :You're not on that channel",
                ":chatsvc 403 alice #nowhere :No such channel",
            ],
        )
        self.assertTrue(line.lines()[0].endswith("#lobby alice left (part: see you)"))

    def test_joinZero(self) -> None:
        alice = self.register("alice")
        alice.send("JOIN #a,#b")
        alice.lines()
        alice.send("JOIN 0")
        self.assertEqual(
            alice.lines(), [":alice!alice@chatsvc PART #a", ":alice!alice@chatsvc PART #b"]
        )

    def test_namesSplit(self) -> None:
        """
        NAMES of a room of 60 long names is several 353 lines, each
        within 512 bytes, naming everyone once.
        """
        names = [f"user{n:03d}" + "x" * 17 for n in range(60)]
        for name in names:
            self.linePeer(name)
        alice = self.register("alice")
        alice.send("NAMES #lobby")
        lines = alice.lines()
        replies = [line for line in lines if " 353 " in line]
        self.assertGreater(len(replies), 2)
        listed = []
        for line in replies:
            self.assertLessEqual(len(line.encode()) + 2, 512)
            listed.extend(line.split(" :", 1)[1].split())
        self.assertEqual(listed, names)
        self.assertEqual(numerics(lines)[-1], "366")

    def test_whoAndWhois(self) -> None:
        self.linePeer("bob")
        alice = self.register("alice")
        alice.send("JOIN #lobby")
        alice.lines()
        alice.send("WHO #lobby", "WHOIS alice", "WHOIS nobody")
        lines = alice.lines()
        self.assertEqual(
            lines[:3],
            [
                ":chatsvc 352 alice #lobby bob chatsvc chatsvc bob H :0 chatsvc user",
                ":chatsvc 352 alice #lobby alice chatsvc chatsvc alice H :0 Real Name",
                ":chatsvc 315 alice #lobby :End of /WHO list",
            ],
        )
        self.assertEqual(numerics(lines[3:]), ["311", "319", "312", "318", "401", "318"])

    def test_list(self) -> None:
        self.linePeer("bob", "kitchen")
        alice = self.register("alice")
        alice.send("JOIN #lobby", "TOPIC #lobby :hello")
        alice.lines()
        alice.send("LIST")
        self.assertEqual(
            alice.lines(),
            [
                ":chatsvc 321 alice Channel :Users  Name",
                ":chatsvc 322 alice #kitchen 1 :",
                ":chatsvc 322 alice #lobby 1 :hello",
                ":chatsvc 323 alice :End of /LIST",
            ],
        )

    def test_topic(self) -> None:
        line = self.linePeer("bob")
        alice = self.register("alice")
        alice.send("TOPIC #lobby", "JOIN #lobby")
        alice.lines()
        alice.send("TOPIC #lobby", "TOPIC #lobby :\x02fresh\x02 news")
        self.assertEqual(
            alice.lines(),
            [
                ":chatsvc 331 alice #lobby :No topic is set",
                ":alice!alice@chatsvc TOPIC #lobby :fresh news",
            ],
        )
        self.assertTrue(line.lines()[-1].endswith("alice set the topic: fresh news"))
        line.send("/topic from the line", ending=b"\n")
        self.assertEqual(alice.lines(), [":bob!bob@chatsvc TOPIC #lobby :from the line"])

    def test_modes(self) -> None:
        alice = self.register("alice")
        alice.send("JOIN #lobby")
        alice.lines()
        alice.send("MODE #lobby", "MODE #lobby b", "MODE #lobby +o alice", "MODE alice +i")
        alice.send("MODE alice", "MODE bob", "MODE alice +Z", "KICK #lobby bob")
        lines = alice.lines()
        self.assertEqual(lines[0], ":chatsvc 324 alice #lobby +n")
        self.assertEqual(numerics(lines), ["324", "368", "482", "221", "502", "501", "482"])


class TalkTests(GatewayTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.bob = self.linePeer("bob")
        self.alice = self.register("alice")
        self.alice.send("JOIN #lobby")
        self.alice.lines()
        self.bob.lines()

    def test_bothWays(self) -> None:
        """
        A message from either side reaches the other once.
        """
        self.alice.send("PRIVMSG #lobby :hello bob")
        self.assertEqual(self.bob.lines(), [f"[{time.ctime(START)}] #lobby alice: hello bob"])
        self.assertEqual(self.alice.lines(), [])  # no echo without echo-message
        self.bob.send("hi alice", ending=b"\n")
        self.assertEqual(self.alice.lines(), [":bob!bob@chatsvc PRIVMSG #lobby :hi alice"])

    def test_actionsBothWays(self) -> None:
        self.alice.send("PRIVMSG #lobby :\x01ACTION waves\x01")
        self.assertEqual(self.bob.lines(), [f"[{time.ctime(START)}] #lobby * alice waves"])
        self.bob.send("/me bows", ending=b"\n")
        self.assertEqual(
            self.alice.lines(), [":bob!bob@chatsvc PRIVMSG #lobby :\x01ACTION bows\x01"]
        )
        self.alice.send("PRIVMSG #lobby :\x01VERSION\x01")
        self.assertEqual(self.bob.lines(), [])

    def test_private(self) -> None:
        self.alice.send("PRIVMSG bob :psst")
        self.assertEqual(self.bob.lines(), [f"[{time.ctime(START)}] (private) alice: psst"])
        self.bob.send("/msg alice back", ending=b"\n")
        self.assertEqual(self.alice.lines(), [":bob!bob@chatsvc PRIVMSG alice :back"])

    def test_notice(self) -> None:
        """
        NOTICE is relayed as a message, and never answered with an error.
        """
        self.alice.send("NOTICE #lobby :note", "NOTICE nobody :x", "NOTICE #nowhere :x")
        self.assertEqual(self.bob.lines(), [f"[{time.ctime(START)}] #lobby alice: note"])
        self.assertEqual(self.alice.lines(), [])

    def test_refusals(self) -> None:
        self.alice.send(
            "PRIVMSG nobody :x",
            "PRIVMSG #nowhere :x",
            "PRIVMSG",
            "PRIVMSG #lobby",
            "JOIN",
        )
        self.assertEqual(numerics(self.alice.lines()), ["401", "403", "411", "412", "461"])
        self.bob.send("/join kitchen", ending=b"\n")
        self.alice.send("PRIVMSG #kitchen :x")
        self.assertEqual(numerics(self.alice.lines()), ["404"])

    def test_formattingStripped(self) -> None:
        self.alice.send("PRIVMSG #lobby :\x0304red\x03 and \x02bold\x02")
        self.assertEqual(self.bob.lines(), [f"[{time.ctime(START)}] #lobby alice: red and bold"])

    def test_latin1(self) -> None:
        self.alice.send("PRIVMSG #lobby :h\xe9llo".encode("latin-1"))
        self.assertEqual(self.bob.lines(), [f"[{time.ctime(START)}] #lobby alice: héllo"])

    def test_splitUTF8AcrossReads(self) -> None:
        """
        Decoding is per line, never per read: a character cut between two
        reads arrives whole.
        """
        data = "PRIVMSG #lobby :naïve ☃\r\n".encode()
        for n in range(len(data)):
            self.alice.proto.dataReceived(data[n : n + 1])
        self.assertEqual(self.bob.lines(), [f"[{time.ctime(START)}] #lobby alice: naïve ☃"])

    def test_lfOnly(self) -> None:
        self.alice.send("PRIVMSG #lobby :lf", ending=b"\n")
        self.assertEqual(len(self.bob.lines()), 1)

    def test_tooLong(self) -> None:
        """
        A line over 512 bytes is 417 and skipped; 1 MiB without a line
        end too; the connection stays, and tags may add up to 8191 bytes.
        """
        self.alice.send("PRIVMSG #lobby :" + "x" * 600)
        self.assertEqual(numerics(self.alice.lines()), ["417"])
        self.alice.proto.dataReceived(b"y" * (1024 * 1024))
        self.alice.send("")
        self.assertEqual(numerics(self.alice.lines()), ["417"])
        self.alice.send("@+client/x=" + "t" * 4000 + " PRIVMSG #lobby :still here")
        self.assertEqual(self.alice.lines(), [])
        self.assertEqual(self.bob.lines(), [f"[{time.ctime(START)}] #lobby alice: still here"])
        self.assertFalse(self.alice.closing)

    def test_injectionFromLineSide(self) -> None:
        """
        What a line user types can never become an IRC command: controls
        are shown as pictures, so the line is one PRIVMSG.
        """
        self.bob.send(b"hi\rQUIT :x\x00 \x1b[2J", ending=b"\n")
        data = self.alice.raw()
        self.assertEqual(data.count(b"\r\n"), 1)
        self.assertEqual(data.count(b"\r"), 1)
        self.assertNotIn(b"\x00", data)
        self.assertNotIn(b"\x1b", data)

    def test_injectionFromIRCSide(self) -> None:
        """
        A lone CR (or NUL, or ESC) inside an IRC line is not a line end:
        one message on every side, with the controls shown harmlessly.
        """
        carol = self.register("carol")
        carol.send("JOIN #lobby")
        carol.lines()
        self.alice.lines()
        self.bob.lines()
        self.alice.send(b"PRIVMSG #lobby :a\rQUIT :x\x00\x1b[2J")
        self.assertEqual(
            self.bob.lines(),
            [f"[{time.ctime(START)}] #lobby alice: a\u240dQUIT :x\u2400\u238b[2J"],
        )
        data = carol.raw()
        self.assertEqual(data.count(b"\r\n"), 1)
        self.assertEqual(data.count(b"\r"), 1)
        for byte in (b"\x00", b"\x1b", b"\x9b"):
            self.assertNotIn(byte, data)
        self.alice.send(b"NICK al\x00ice")
        self.assertEqual(numerics(self.alice.lines()), ["432"])

    def test_longLineMessageSplit(self) -> None:
        text = " ".join(["word"] * 400)
        self.bob.send(text, ending=b"\n")
        lines = self.alice.lines()
        self.assertGreater(len(lines), 3)
        body = []
        for line in lines:
            self.assertLessEqual(len(line.encode()) + 2, 512)
            body.append(line.split(" :", 1)[1])
        self.assertEqual(" ".join(body), text)

    def test_nickBothWays(self) -> None:
        self.bob.send("/nick robert", ending=b"\n")
        self.assertEqual(self.alice.lines(), [":bob!bob@chatsvc NICK robert"])
        self.alice.send("NICK alicia")
        self.assertEqual(self.alice.lines(), [":alice!alice@chatsvc NICK alicia"])
        self.assertTrue(self.bob.lines()[-1].endswith("#lobby alice is now alicia"))
        self.alice.send("NICK robert", "NICK 1x")
        self.assertEqual(numerics(self.alice.lines()), ["433", "432"])

    def test_lineUserQuits(self) -> None:
        self.bob.send("/quit gone fishing", ending=b"\n")
        self.assertEqual(self.alice.lines(), [":bob!bob@chatsvc QUIT :Quit: gone fishing"])

    def test_lineUserSwitchesRoom(self) -> None:
        self.bob.send("/join kitchen", ending=b"\n")
        self.assertEqual(self.alice.lines(), [":bob!bob@chatsvc PART #lobby"])

    def test_ircQuit(self) -> None:
        self.alice.send("QUIT :bye all")
        self.assertEqual(
            self.alice.lines(), ["ERROR :Closing Link: 10.0.0.1:40002 (Quit: bye all)"]
        )
        self.assertTrue(self.alice.closing)
        self.assertTrue(self.bob.lines()[-1].endswith("#lobby alice left (quit: bye all)"))

    def test_closedConnection(self) -> None:
        self.alice.proto.connectionLost(None)
        self.assertTrue(self.bob.lines()[-1].endswith("#lobby alice left (closed)"))
        self.assertIsNone(self.hub.find("alice"))


class IRCv3Tests(GatewayTestCase):
    def test_echoAndTags(self) -> None:
        alice = self.register("alice", "echo-message", "server-time", "message-tags")
        alice.send("JOIN #lobby")
        alice.lines()
        alice.send("PRIVMSG #lobby :mine")
        self.assertEqual(
            alice.lines(),
            [
                "@time=2026-11-21T10:00:00.000Z;msgid=lobby-1 "
                ":alice!alice@chatsvc PRIVMSG #lobby :mine"
            ],
        )
        alice.send("PRIVMSG alice :to me")
        self.assertEqual(len(alice.lines()), 1)

    def test_privateToSelfWithoutEcho(self) -> None:
        alice = self.register("alice")
        alice.send("PRIVMSG alice :note to self")
        self.assertEqual(alice.lines(), [":alice!alice@chatsvc PRIVMSG alice :note to self"])

    def test_historyOnJoin(self) -> None:
        """
        A client with server-time gets the room's last messages on JOIN,
        with their original times, in a chathistory batch.
        """
        bob = self.linePeer("bob")
        bob.send("first", ending=b"\n")
        self.clock.advance(60)
        bob.send("second", ending=b"\n")
        self.clock.advance(60)
        alice = self.register("alice", "server-time", "batch")
        alice.send("JOIN #lobby")
        lines = alice.lines()
        start = next(n for n, line in enumerate(lines) if " BATCH +" in line)
        ref = lines[start].split(" BATCH +", 1)[1].split(" ")[0]
        self.assertTrue(lines[start].endswith("chathistory #lobby"))
        self.assertEqual(
            lines[start + 1 : start + 4],
            [
                f"@batch={ref};time=2026-11-21T10:00:00.000Z :bob!bob@chatsvc PRIVMSG #lobby :first",
                f"@batch={ref};time=2026-11-21T10:01:00.000Z :bob!bob@chatsvc PRIVMSG #lobby :second",
                f":chatsvc BATCH -{ref}",
            ],
        )

    def test_replayCount(self) -> None:
        """
        --replay N sets how many messages a joining IRC client gets.
        """
        self.limits = ChatLimits(replay=2)
        self.setUp()
        bob = self.linePeer("bob")
        for n in range(5):
            bob.send(f"m{n}", ending=b"\n")
        alice = self.register("alice", "server-time")
        alice.send("JOIN #lobby")
        replayed = [line for line in alice.lines() if " PRIVMSG " in line]
        self.assertEqual([line.rsplit(" :", 1)[1] for line in replayed], ["m3", "m4"])

    def test_noHistoryWithoutServerTime(self) -> None:
        bob = self.linePeer("bob")
        bob.send("old", ending=b"\n")
        alice = self.register("alice")
        alice.send("JOIN #lobby")
        self.assertNotIn("old", " ".join(alice.lines()))

    def test_quitAndNickShownOnce(self) -> None:
        """
        Someone sharing two rooms who renames, then quits, is one NICK and
        one QUIT, not one per room.
        """
        alice = self.register("alice")
        carol = self.register("carol")
        for peer in (alice, carol):
            peer.send("JOIN #a,#b")
        alice.lines()
        carol.send("NICK caroline")
        self.assertEqual(alice.lines(), [":carol!carol@chatsvc NICK caroline"])
        carol.send("QUIT :done")
        self.assertEqual(alice.lines(), [":caroline!caroline@chatsvc QUIT :Quit: done"])

    def test_away(self) -> None:
        alice = self.register("alice", "away-notify")
        carol = self.register("carol")
        alice.send("JOIN #lobby")
        carol.send("JOIN #lobby")
        alice.lines()
        carol.lines()
        carol.send("AWAY :\x02lunch\x02")
        self.assertEqual(numerics(carol.lines()), ["306"])
        self.assertEqual(alice.lines(), [":carol!carol@chatsvc AWAY :lunch"])
        alice.send("PRIVMSG carol :there?", "WHOIS carol", "WHO #lobby")
        lines = alice.lines()
        self.assertEqual(lines[0], ":chatsvc 301 alice carol :lunch")
        self.assertIn(":chatsvc 301 alice carol :lunch", lines[1:])
        self.assertIn(" carol G :0 ", [line for line in lines if " 352 " in line][1])
        carol.send("AWAY")
        self.assertEqual(numerics(carol.lines()), ["305"])
        self.assertEqual(alice.lines(), [":carol!carol@chatsvc AWAY"])


class LimitTests(GatewayTestCase):
    limits = ChatLimits(floodBurst=5, floodRate=1.0, recvQueue=20, maxClients=3)

    def test_floodPaced(self) -> None:
        """
        Lines over the rate wait (the socket is not read), none is lost.
        """
        bob = self.linePeer("bob")
        alice = self.register("alice")
        alice.send("JOIN #lobby")
        alice.lines()
        bob.lines()
        alice.send(*[f"PRIVMSG #lobby :{n}" for n in range(10)])
        self.assertLess(len(bob.lines()), 10)
        self.clock.advance(10)
        self.assertFalse(alice.closing)

    def test_excessFlood(self) -> None:
        alice = self.register("alice")
        alice.send(*[f"PRIVMSG alice :{n}" for n in range(40)])
        lines = alice.lines()
        self.assertEqual(lines[-1], "ERROR :Closing Link: 10.0.0.1:40001 (Excess Flood)")
        self.assertTrue(alice.closing)

    def test_capsShared(self) -> None:
        """
        --max-clients counts every gateway: the fourth connection, on the
        IRC port, is refused with an IRC ERROR line.
        """
        self.linePeer("bob")
        self.register("alice")
        self.register("carol")
        peer = self.ircPeer()
        self.assertTrue(peer.raw().startswith(b"ERROR :Closing Link: full: "))

    def test_pingTimeout(self) -> None:
        alice = self.register("alice")
        self.clock.advance(self.irc.pingInterval)
        self.assertEqual(alice.lines(), ["PING :chatsvc"])
        alice.send("PONG :chatsvc")
        self.clock.advance(self.irc.pingTimeout)
        self.assertFalse(alice.closing)
        # The next PING comes a whole interval after the PONG.
        self.clock.advance(self.irc.pingInterval - self.irc.pingTimeout)
        self.assertEqual(alice.lines(), ["PING :chatsvc"])
        self.clock.advance(self.irc.pingTimeout)
        self.assertTrue(alice.lines()[-1].endswith("(Ping timeout: 180 seconds)"))
        self.assertTrue(alice.closing)

    def test_tlsOnPlainPort(self) -> None:
        peer = self.ircPeer()
        peer.proto.dataReceived(b"\x16\x03\x01\x02\x00\x01")
        self.assertTrue(peer.transport.disconnecting)

    def test_shutdown(self) -> None:
        bob = self.linePeer("bob")
        alice = self.register("alice")
        alice.send("JOIN #lobby")
        alice.lines()
        bob.lines()
        self.chat.population.shutdown("server shutting down")
        self.assertEqual(
            alice.lines(), ["ERROR :Closing Link: 10.0.0.1:40002 (server shutting down)"]
        )
        self.assertEqual(bob.lines(), ["info: server shutting down"])
