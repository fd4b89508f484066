"""Login attempts: failures counted per address and per client address over a sliding window.

Kept in memory: a restart forgives, and several ``serve`` processes each count their own — an
attacker spread over N processes gets N times the attempts, still far too few to guess an argon2
protected password of ten characters or more."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

WINDOW_SECONDS = 15 * 60
PER_ADDRESS = 5
PER_CLIENT = 20


class LoginLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait_minutes(self, address: str, client: str) -> int:
        """0 if another attempt may be made now, else how many minutes until one may."""
        now = self.clock()
        with self._lock:
            waits = [
                self._wait(key, limit, now)
                for key, limit in ((f"a:{address}", PER_ADDRESS), (f"c:{client}", PER_CLIENT))
            ]
        return max(waits)

    def _wait(self, key: str, limit: int, now: float) -> int:
        failures = self._failures.get(key)
        if failures is None:
            return 0
        while failures and failures[0] <= now - WINDOW_SECONDS:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0
        if len(failures) < limit:
            return 0
        return max(1, math.ceil((failures[0] + WINDOW_SECONDS - now) / 60))

    def failed(self, address: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            self._failures[f"a:{address}"].append(now)
            self._failures[f"c:{client}"].append(now)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(f"a:{address}", None)
