"""
Token buckets: the rate limits of chatsvc (chat flood control, UDP replies).

A bucket holds up to C{burst} tokens and gains C{rate} tokens a second.
Time is passed in (a C{seconds()} callable: the reactor or a
C{task.Clock}), so the arithmetic is tested without waiting.
"""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    """
    A burst, then a steady rate.

    @ivar rate: tokens gained per second.
    @ivar burst: most tokens held.
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp", "_seconds")

    def __init__(self, rate: float, burst: float, seconds) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._seconds = seconds
        self._tokens = float(burst)
        self._stamp = seconds()

    def _refill(self) -> float:
        now = self._seconds()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now
        return self._tokens

    def take(self, tokens: float = 1.0) -> bool:
        """
        Spend C{tokens} if there are enough.

        @return: whether they were spent.
        """
        if self._refill() >= tokens:
            self._tokens -= tokens
            return True
        return False

    def delay(self, tokens: float = 1.0) -> float:
        """
        Seconds until C{tokens} can be spent (C{0} when they can now).
        """
        missing = tokens - self._refill()
        return 0.0 if missing <= 0 else missing / self.rate


class BucketTable:
    """
    One L{TokenBucket} per key (a source address), bounded in size: the
    least recently used bucket is forgotten first, so a spoofed flood of
    source addresses cannot grow memory without bound.  A forgotten key
    starts again with a full bucket, which only ever errs toward
    answering.
    """

    def __init__(self, rate: float, burst: float, seconds, maxKeys: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.maxKeys = maxKeys
        self._seconds = seconds
        self._buckets: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key, tokens: float = 1.0) -> bool:
        """
        Spend from C{key}'s bucket; see L{TokenBucket.take}.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._seconds)
            if len(self._buckets) > self.maxKeys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(tokens)
