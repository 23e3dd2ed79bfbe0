"""Password hashing (argon2) and random tokens stored only as hashes.

Argon2 is memory-hard on purpose: each hash takes ``memory_cost`` KiB (64 MiB by default) for
about a quarter of a second. Unbounded, 32 concurrent log-ins took a server to 1.1 GB, so every
hash and verification passes through one semaphore (:func:`set_hash_concurrency`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from covseg.platform.services.errors import Busy

_hasher = PasswordHasher()
_dummy_hash: str | None = None
_slots = threading.BoundedSemaphore(2)
#: A request waits at most this long for a hashing slot before it is refused with 503.
_WAIT_S = 30.0


def set_hash_cost(time_cost: int, memory_kib: int) -> None:
    """Change the argon2 cost of new hashes (tests and benchmarks lower it; old hashes verify)."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
    _dummy_hash = None


def set_hash_concurrency(slots: int) -> None:
    """Allow at most ``slots`` argon2 computations at once (memory: ``slots`` x memory cost)."""
    global _slots
    if slots < 1:
        raise ValueError("at least one hashing slot is needed")
    _slots = threading.BoundedSemaphore(slots)


class _Slot:
    """Hold one hashing slot for the duration of a ``with`` block."""

    def __enter__(self) -> None:
        self._held = _slots
        if not self._held.acquire(timeout=_WAIT_S):
            raise Busy("the server is busy; try again in a minute")

    def __exit__(self, *_exc: object) -> None:
        self._held.release()


def hash_password(password: str) -> str:
    """Argon2id hash of a password, with its own salt and parameters."""
    with _Slot():
        return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the stored hash (never raises on a mismatch)."""
    with _Slot():
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with other parameters than new hashes get.

    Rehashed at the next good log-in, so that every account costs the same to check (a cheaper
    old hash would tell an attacker, by its time, that the account exists).
    """
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def burn_verification(password: str) -> None:
    """Spend what :func:`verify_password` spends, against a hash nobody's password matches.

    Run for unknown emails so that "no such account" takes as long as "wrong password"
    (without it: 4 ms against 236 ms, which tells an attacker who has an account).
    """
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password(new_token())
    verify_password(_dummy_hash, password)


def new_token() -> str:
    """A URL-safe random token (256 bits)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """SHA-256 of a token: what the database keeps, so a leaked table opens no session."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string comparison (CSRF tokens)."""
    return hmac.compare_digest(a.encode(), b.encode())
