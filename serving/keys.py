"""API keys: random tokens shown once, stored only as a salted HMAC-SHA256, checked in constant time.

A token reads `trg_<key_id>_<secret>`: the key id finds the stored row, the secret (32 random bytes) is
what proves possession. Keys are high-entropy, so a fast keyed hash is enough (no password stretching).
Verified keys are cached in memory for `CACHE_SECONDS` (half a second): a revocation or rotation is seen
at once by this process and within that half second by the others, while a busy client still verifies its
key against the database about twice a second per worker, not once a request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import weakref
from collections.abc import Iterable

from serving.store import SCOPES, ApiKey, Store

__all__ = [
    "CACHE_SECONDS",
    "SCOPES",
    "ApiKey",
    "cached_key",
    "create_key",
    "parse_scopes",
    "revoke_key",
    "rotate_key",
    "verify_key",
]

PREFIX = "trg"
CACHE_SECONDS = 0.5
_MAX_TOKEN_CHARS = 128
_MAX_CACHED = 10_000
_KEY_ID_HEX = 12

_Cache = dict[str, tuple[ApiKey, float]]
_caches: weakref.WeakKeyDictionary[Store, _Cache] = weakref.WeakKeyDictionary()


def parse_scopes(scopes: str | Iterable[str]) -> frozenset[str]:
    """Scopes from a comma list or an iterable; refuses unknown or empty ones."""
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    parsed = frozenset(s.strip() for s in items if s.strip())
    unknown = sorted(parsed - SCOPES)
    if unknown or not parsed:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(SCOPES)}, got {sorted(parsed)}")
    return parsed


def create_key(
    store: Store, name: str, scopes: str | Iterable[str], team: str | None = None, actor: str = "unknown"
) -> str:
    """Create a key and return its plaintext token: shown this once, never stored. `team` groups reviewers
    (e.g. a vendor) in reviewer quality statistics.

    `actor` (the admin key's name, or the operator of the CLI) is recorded in the key audit.
    Raises ConflictError if a key (live or revoked) already has this name."""
    if not name or len(name) > 128:
        raise ValueError("key name must have 1 to 128 characters")
    if team is not None and not 1 <= len(team) <= 128:
        raise ValueError("team must have 1 to 128 characters")
    key_id, token = _new_token()
    store.insert_api_key(
        key_id, name, parse_scopes(scopes), _hash_token(token, secrets.token_bytes(16)), team, actor=actor
    )
    return token


def rotate_key(store: Store, name: str, actor: str = "unknown") -> str | None:
    """Give the live key `name` a new token and return it (shown this once); the old token stops working
    (within CACHE_SECONDS in other processes). None if there is no such live key."""
    key_id, token = _new_token()
    rotated = store.replace_api_key(name, key_id, _hash_token(token, secrets.token_bytes(16)), actor=actor)
    _caches.pop(store, None)
    return token if rotated is not None else None


def verify_key(store: Store, token: str) -> ApiKey | None:
    """The key a token belongs to, or None if it is malformed, unknown, wrong or revoked."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    cache = _caches.setdefault(store, {})
    fingerprint = hashlib.sha256(token.encode()).hexdigest()
    cached = cache.get(fingerprint)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    key = _verify_stored(store, token)
    if key is not None:
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[fingerprint] = (key, time.monotonic() + CACHE_SECONDS)
    return key


def cached_key(store: Store, token: str) -> ApiKey | None:
    """The key of a token verified less than CACHE_SECONDS ago, without touching the database; else None
    (then call `verify_key`). Lets an event loop skip a thread hop on the hot path."""
    cache = _caches.get(store)
    if not cache or not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    cached = cache.get(hashlib.sha256(token.encode()).hexdigest())
    return cached[0] if cached is not None and cached[1] > time.monotonic() else None


def revoke_key(store: Store, name: str, actor: str = "unknown") -> bool:
    """Revoke the key named `name`; False if there is no such key."""
    revoked = store.revoke_api_key(name, actor=actor)
    _caches.pop(store, None)
    return revoked


def _new_token() -> tuple[str, str]:
    key_id = secrets.token_hex(_KEY_ID_HEX // 2)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def _verify_stored(store: Store, token: str) -> ApiKey | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != _KEY_ID_HEX:
        return None
    found = store.api_key_with_hash(parts[1])
    if found is None:
        return None
    key, stored_hash = found
    algorithm, _, rest = stored_hash.partition("$")
    salt_hex, _, _ = rest.partition("$")
    if algorithm != "hmac-sha256" or not salt_hex:
        return None
    matches = hmac.compare_digest(_hash_token(token, bytes.fromhex(salt_hex)), stored_hash)
    return key if matches and not key.revoked else None


def _hash_token(token: str, salt: bytes) -> str:
    digest = hmac.new(salt, token.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256${salt.hex()}${digest}"
