"""Sign-in and password-reset limits that slow an attacker without locking the owner out.

Sign-in failures are counted three ways over ``WINDOW_SECONDS``:

- per (client, address): ``PER_CLIENT_AND_ADDRESS`` failures and that client may not try that address
  again for a while — the owner, from any other client, is not concerned;
- per client: ``PER_CLIENT`` failures over any addresses and the client waits (guessing across members);
- per address, from any client: never a lock, only a delay. From the ``SLOW_AFTER``-th recent failure on
  an address, every attempt on it is answered after ``FIRST_DELAY`` seconds, doubling with each further
  failure, capped at ``MAX_DELAY``. The right password waits too: if only failures waited, an attacker
  would read "wrong" from a slow answer and move on at once, and the delay would cost them nothing.

The numbers: five failures is where the old lock began, so an owner who mistypes a few times never waits.
The cap, ten seconds, is about the longest a person waits for a page before thinking it broken; an owner
pays it at most once per sign-in while under attack (a session lasts ``web.session_days``), whereas each
guess costs an attacker that long, and each of their clients gets only five guesses per address (twenty
in all) per quarter of an hour.

Password-reset requests have counters of their own (per address and per client, per hour): they limit
the mail a stranger can send to a mailbox, and never block signing in.

Clients are IP addresses; an IPv6 client counts as its /64 network, which one host can roam freely.
Counts are kept in memory: a restart forgives, and several ``serve`` processes each count their own.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

WINDOW_SECONDS = 15 * 60
PER_CLIENT_AND_ADDRESS = 5
PER_CLIENT = 20
SLOW_AFTER = 5
FIRST_DELAY = 1.0
MAX_DELAY = 10.0

RESET_WINDOW_SECONDS = 60 * 60
RESETS_PER_ADDRESS = 3  # a lost mail, a second try, and one to spare
RESETS_PER_CLIENT = 20

PRUNE_ABOVE = 10_000  # keys kept before expired ones are swept (addresses are chosen by strangers)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SlidingWindow:
    """Event times per key over the last ``seconds``; thread-safe (handlers run in a thread pool)."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds, self.clock = seconds, clock
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def count(self, key: str) -> int:
        with self._lock:
            return len(self._recent(key, self.clock()))

    def wait_minutes(self, key: str, limit: int) -> int:
        """0 if fewer than ``limit`` recent events, else the minutes until the oldest one expires."""
        now = self.clock()
        with self._lock:
            recent = self._recent(key, now)
            if len(recent) < limit:
                return 0
            return max(1, math.ceil((recent[0] + self.seconds - now) / 60))

    def add(self, keys: Iterable[str]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                self._events[key].append(now)
            if len(self._events) > PRUNE_ABOVE:
                for key in list(self._events):
                    self._recent(key, now)

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and events[0] <= now - self.seconds:
            events.popleft()
        if not events:
            del self._events[key]
        return events


class LoginLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = SlidingWindow(WINDOW_SECONDS, clock)
        self.resets = SlidingWindow(RESET_WINDOW_SECONDS, clock)

    def wait_minutes(self, address: str, client: str) -> int:
        """0 if this client may try this address now, else how many minutes until it may."""
        return max(
            self.failures.wait_minutes(f"ca:{client} {address}", PER_CLIENT_AND_ADDRESS),
            self.failures.wait_minutes(f"c:{client}", PER_CLIENT),
        )

    def delay_seconds(self, address: str) -> float:
        """How long an attempt on ``address`` is held before its answer (0 while not under attack)."""
        failures = self.failures.count(f"a:{address}")
        if failures < SLOW_AFTER:
            return 0.0
        return min(MAX_DELAY, FIRST_DELAY * 2.0 ** (failures - SLOW_AFTER))

    def failed(self, address: str, client: str) -> None:
        self.failures.add((f"ca:{client} {address}", f"c:{client}", f"a:{address}"))

    def succeeded(self, address: str, client: str) -> None:
        # The address's own count stays: it measures an attack, which the owner's success does not end.
        self.failures.clear(f"ca:{client} {address}")

    def reset_wait_minutes(self, address: str, client: str) -> int:
        return max(
            self.resets.wait_minutes(f"a:{address}", RESETS_PER_ADDRESS),
            self.resets.wait_minutes(f"c:{client}", RESETS_PER_CLIENT),
        )

    def reset_requested(self, address: str, client: str) -> None:
        self.resets.add((f"a:{address}", f"c:{client}"))


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``web.trusted_proxies`` as networks (the config has already checked each value)."""
    return tuple(ipaddress.ip_network(value) for value in values)


def client_address(peer: str | None, forwarded_for: list[str], proxies: tuple[Network, ...]) -> str:
    """The client the limits count. ``X-Forwarded-For`` is believed only when the peer is a trusted
    proxy; then the client is the right-most address in it that is not itself a trusted proxy (anything
    left of that was written by the client and proves nothing)."""
    if peer is None:
        return "-"
    if not _is_trusted(peer, proxies):
        return client_key(peer)
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, proxies):
            return client_key(hop)
    return client_key(hops[0] if hops else peer)  # every hop is ours: the first one is the client


def client_key(host: str) -> str:
    """One counter per IPv4 address, per IPv6 /64; anything that is not an IP counts as itself."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _is_trusted(host: str, proxies: tuple[Network, ...]) -> bool:
    if not proxies:
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in proxies)
