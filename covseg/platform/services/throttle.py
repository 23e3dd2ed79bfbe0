"""Exponential back-off of failed log-ins, per account and per client address.

Each log-in attempt is counted as a failure *before* the password is checked and given back
when it succeeds, so that 32 concurrent guesses are counted as 32, not as none. After
``free`` failures a key waits ``base_s * 2**(failures - free)`` seconds (at most ``max_s``)
before its next attempt; during the wait every attempt is refused unchecked, right password
or not. The account key is the email as typed, whether or not such an account exists, so a
refusal says nothing about who has an account. A success forgets the account's failures (not
the address's: an attacker's own account must not reset its budget of guesses). A key quiet
for :data:`FORGET_S` is forgotten.

The counts live in the server process (``covseg serve`` runs one), bounded in number; a
restart forgets them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from covseg.platform.services.errors import TooManyAttempts

#: A key without a failure for this long (s) starts afresh.
FORGET_S = 24 * 3600.0


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0  # time of the latest failure (s, monotonic)
    until: float = 0.0  # no attempt before this time


class LoginThrottle:
    """Failed log-in counts and their back-off, per account and per client address.

    Parameters
    ----------
    free_per_account, free_per_client
        Failures allowed without waiting (the address's budget is larger: many people may
        share one address behind a NAT).
    base_s, max_s
        The first wait and the longest (s); each further failure doubles the wait.
    capacity
        Most keys remembered; the least recently failed are forgotten first.
    clock
        Monotonic time in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        free_per_account: int = 5,
        free_per_client: int = 20,
        base_s: float = 1.0,
        max_s: float = 900.0,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = {"account": free_per_account, "client": free_per_client}
        self.base_s, self.max_s = base_s, max_s
        self.capacity = capacity
        self.clock = clock
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._lock = threading.Lock()

    def _keys(self, email: str, client: str) -> list[tuple[str, str]]:
        return [("account", email.strip().lower()), ("client", client)]

    def _wait(self, kind: str, failures: int) -> float:
        over = failures - self.free[kind]
        return 0.0 if over < 0 else min(self.max_s, self.base_s * 2.0 ** min(over, 60))

    def attempt(self, email: str, client: str) -> None:
        """Count an attempt as failed in advance, or refuse it while either key must wait."""
        with self._lock:
            now = self.clock()
            keys = self._keys(email, client)
            wait = 0.0
            for key in keys:
                rec = self._records.get(key)
                if rec is not None and now - rec.last > FORGET_S:
                    del self._records[key]
                elif rec is not None:
                    wait = max(wait, rec.until - now)
            if wait > 0:
                seconds = math.ceil(wait)
                raise TooManyAttempts(
                    f"too many failed log-ins; try again in {seconds} s", retry_after_s=seconds
                )
            for key in keys:
                rec = self._records.pop(key, None) or _Record()
                rec.failures += 1
                rec.last = now
                rec.until = now + self._wait(key[0], rec.failures)
                self._records[key] = rec  # most recent last
            while len(self._records) > self.capacity:
                self._records.popitem(last=False)

    def succeeded(self, email: str, client: str) -> None:
        """The attempt was right: forget the account's failures, give the address its one back."""
        with self._lock:
            account, address = self._keys(email, client)
            self._records.pop(account, None)
            rec = self._records.get(address)
            if rec is not None:
                rec.failures = max(0, rec.failures - 1)
                rec.until = rec.last + self._wait("client", rec.failures)
