"""
Line framing shared by every chatsvc line service.

Twisted's C{LineReceiver} rescans its whole buffer on every read, treats
C{\\r\\n} as the only delimiter by default and closes the connection
without a word when a line is too long (docs/hardening.rst).  L{LineFramer} is
the small replacement the contract asks for:

  - C{LF} ends a line; one C{CR} just before it is dropped;
  - linear time: every byte is looked at a constant number of times,
    however the stream is cut into reads;
  - a hard limit: an unfinished line never holds more than
    C{maxLength + 1} bytes (the line and a possible trailing C{CR});
    a line over the limit becomes one L{TOO_LONG} marker and the rest of
    it is discarded up to the next C{LF};
  - pausable: complete lines wait in a queue until the protocol asks for
    them with L{LineFramer.next}, so a protocol can stop taking lines
    (flood control, slow work, back-pressure) without losing any.

The framer deals in bytes.  Decoding happens per line, never per read
(L{chatsvc.net.text.decodeLine}), so a character split across two reads is
never damaged.
"""

#: Default longest line, in bytes, not counting the line ending.
DEFAULT_MAX_LINE = 2048


class _TooLong:
    """
    The marker queued in place of a line that was over the limit.
    """

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = _TooLong()


class LineFramer:
    """
    Split a byte stream into lines.

    @ivar maxLength: the longest line accepted, in bytes, without its
        line ending.
    @ivar pendingBytes: bytes held in complete lines not yet taken.
    @ivar refused: L{TOO_LONG} markers among the waiting lines.  A refused
        line is not a request: flood control and the receive queue count
        only the others (C{len(framer) - framer.refused}).
    """

    def __init__(self, maxLength: int = DEFAULT_MAX_LINE) -> None:
        if maxLength < 1:
            raise ValueError("maxLength must be at least 1")
        self.maxLength = maxLength
        self._tail = bytearray()
        self._discarding = False
        # A list read from _head on: an empty deque costs 600 bytes, and
        # an idle connection holds one framer.
        self._lines: list = []
        self._head = 0
        self.pendingBytes = 0
        self.refused = 0

    def __len__(self) -> int:
        """
        The number of complete lines (and L{TOO_LONG} markers) waiting.
        """
        return len(self._lines) - self._head

    @property
    def tailLength(self) -> int:
        """
        Bytes of the unfinished line held now (never over C{maxLength + 1}).
        """
        return len(self._tail)

    def feed(self, data: bytes) -> None:
        """
        Take the next bytes of the stream.
        """
        start = 0
        if self._discarding:
            start = data.find(b"\n")
            if start < 0:
                return
            start += 1
            self._discarding = False
        end = data.find(b"\n", start)
        if end < 0:
            self._extendTail(data, start)
            return
        if len(self._tail) + end - start > self.maxLength + 1:
            self._tail.clear()
            self._refuse()
        elif self._tail:
            self._tail += data[start:end]
            self._queue(bytes(self._tail))
            self._tail.clear()
        else:
            self._queue(data[start:end])
        pieces = data[end + 1 :].split(b"\n")
        last = pieces.pop()
        for piece in pieces:
            self._queue(piece)
        if last:
            self._extendTail(last, 0)

    def finish(self) -> None:
        """
        The stream has ended: an unfinished last line counts as a line.
        """
        if self._discarding:
            self._discarding = False
        elif self._tail:
            line = bytes(self._tail)
            self._tail.clear()
            self._queue(line)

    def next(self):
        """
        Take the oldest complete line.

        @return: the line's bytes without its ending, L{TOO_LONG} for a line
            that was over the limit, or L{None} when no line is complete.
        """
        lines = self._lines
        head = self._head
        if head >= len(lines):
            return None
        line = lines[head]
        head += 1
        if head == len(lines):
            lines.clear()
            head = 0
        self._head = head
        if line is TOO_LONG:
            self.refused -= 1
        else:
            self.pendingBytes -= len(line)
        return line

    def nextIsRefused(self) -> bool:
        """
        Whether the oldest waiting line is a L{TOO_LONG} marker.
        """
        return self._head < len(self._lines) and self._lines[self._head] is TOO_LONG

    def clear(self) -> None:
        """
        Forget everything held: queued lines and the unfinished one.
        """
        self._lines.clear()
        self._head = 0
        self._tail.clear()
        self.pendingBytes = 0
        self.refused = 0

    def _refuse(self) -> None:
        self._lines.append(TOO_LONG)
        self.refused += 1

    def _queue(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.maxLength:
            self._refuse()
            return
        self._lines.append(line)
        self.pendingBytes += len(line)

    def _extendTail(self, data: bytes, start: int) -> None:
        room = self.maxLength + 1 - len(self._tail)
        if len(data) - start <= room:
            self._tail += data[start:] if start else data
            return
        # Over the limit without a line end: refuse now, keep nothing.
        self._tail.clear()
        self._discarding = True
        self._refuse()
