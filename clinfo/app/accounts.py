"""Who may use a shared app: per-user password hashes from the operator, and a throttle on guesses.

Accounts live in the operator's app config (``$CLINFO_APP_CONFIG``), never in the history
database, as scrypt hashes (the standard library's memory-hard KDF)::

    [accounts]
    ann = "scrypt$16384$8$1$<salt>$<hash>"     # made by: clinfo hash-password

A shared password (``$CLINFO_APP_PASSWORD``) only lets a visitor in anonymously: a name typed
beside it would be an identity anyone with the password could claim.

Failed sign-ins are throttled per browser session, per account name and for the whole process
(a guesser opens new sessions at will, so the session limit alone stops nobody): past a few
failures each further one locks that key for longer, up to ``MAX_LOCK`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from clinfo.app.config import read_config
from clinfo.errors import ConfigError

# scrypt cost: 16 MiB and ~50 ms per check on one core (OWASP's minimum is N=2^17 with r=8 for
# 128 MiB; 2^14 keeps a sign-in quick on a small app host while a guess still costs real work)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_DKLEN)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (an unreadable hash never matches)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        if len(expected) != _DKLEN:  # a cut hash would match a prefix of the real one
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=_DKLEN,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def normal_name(name: str) -> str:
    return " ".join(name.split()).casefold()


def load_accounts() -> dict[str, str]:
    """``{name: hash}`` from the operator's config file; empty when there is none."""
    path, data = read_config()
    accounts = data.get("accounts") or {}
    if not isinstance(accounts, dict):
        raise ConfigError(f'{path}: [accounts] must be a table of name = "scrypt$..."')
    out = {}
    for name, stored in accounts.items():
        if not isinstance(stored, str) or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise ConfigError(f"{path}: account {name!r} needs a hash made by 'clinfo hash-password'")
        out[normal_name(name)] = stored
    return out


# ------------------------------------------------------------------------------------ throttle
FREE_FAILURES = 3  # failures before any lock
BASE_LOCK = 2.0  # seconds of the first lock; doubles with each further failure
MAX_LOCK = 15 * 60
GLOBAL_FREE = 30  # failures across all sessions before the whole gate slows down
WINDOW = 15 * 60  # a key's failures are forgotten this long after its last one


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


@dataclass
class Throttle:
    """Failure counts per key (``("session", id)``, ``("name", n)``, ``("all",)``), thread-safe,
    on the monotonic clock (a wall clock set back must not lock anyone out for an hour)."""

    clock: object = time.monotonic
    _records: dict[tuple[str, ...], _Record] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator]

    def wait(self, *keys: tuple[str, ...]) -> float:
        """Seconds before any of ``keys`` may try again (0: now)."""
        now = self._now()
        with self._lock:
            waits = [r.locked_until - now for k in keys if (r := self._records.get(k)) is not None]
        return max([0.0, *waits])

    def failed(self, *keys: tuple[str, ...]) -> None:
        now = self._now()
        with self._lock:
            for key in keys:
                record = self._records.setdefault(key, _Record())
                if now - record.last > WINDOW:
                    record.failures = 0
                record.failures += 1
                record.last = now
                free = GLOBAL_FREE if key == ("all",) else FREE_FAILURES
                if record.failures > free:
                    lock = min(BASE_LOCK * 2 ** (record.failures - free - 1), MAX_LOCK)
                    record.locked_until = max(record.locked_until, now + lock)

    def succeeded(self, *keys: tuple[str, ...]) -> None:
        with self._lock:
            for key in keys:
                if key != ("all",):
                    self._records.pop(key, None)


THROTTLE = Throttle()  # one per app process: every session's failures count together
