"""A fixed-window rate limiter kept in memory: `allow(key, now)` says whether one more attempt fits.

Per process: with n replicas a client gets up to n times the limit, which still stops guessing and
mail bombing (the limits are small). Keys are hashed by the caller when they name a person.
"""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float, max_keys: int = 100_000):
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        started, count = self._windows.get(key, (now, 0))
        if now - started >= self.window:
            started, count = now, 0
        if count >= self.limit:
            return False
        self._windows[key] = (started, count + 1)
        self._windows.move_to_end(key)
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)  # the least recently seen: memory stays bounded
        return True
