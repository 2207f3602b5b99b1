"""API keys: stored hashed, verified exactly, scoped, revocable."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from serving.keys import create_key, parse_scopes, revoke_key, verify_key
from serving.store import ConflictError, Store
from serving.store.schema import api_keys


def stored_hashes(store: Store) -> list[str]:
    with store._read_engine.connect() as conn:  # noqa: SLF001 - looking at what is really on disk
        return [str(h) for h in conn.execute(select(api_keys.c.key_hash)).scalars()]


def test_only_a_salted_hash_of_the_key_is_stored(store: Store) -> None:
    token = create_key(store, "scorer", "score")
    secret = token.split("_", 2)[2]  # trg_<key_id>_<secret>; the secret itself may contain "_"

    (key_hash,) = stored_hashes(store)

    assert token not in key_hash and secret not in key_hash
    assert key_hash.startswith("hmac-sha256$")
    other = create_key(store, "scorer-2", "score")
    assert other != token and len(set(stored_hashes(store))) == 2


def test_the_right_token_verifies_with_its_scopes(store: Store) -> None:
    token = create_key(store, "review-tool", ["review", "score"])

    key = verify_key(store, token)

    assert key is not None
    assert key.name == "review-tool"
    assert key.scopes == frozenset({"review", "score"})
    assert key.allows("review") and not key.allows("admin")


def test_admin_allows_every_scope(store: Store) -> None:
    key = verify_key(store, create_key(store, "ops", "admin"))
    assert key is not None and all(key.allows(s) for s in ("score", "review", "admin"))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t + "x",
        lambda t: t.replace("trg_", "xyz_"),
        lambda t: "",
        lambda t: "trg_" + "0" * 12 + "_x",
    ],
)
def test_a_wrong_or_malformed_token_verifies_to_none(store: Store, mangle) -> None:
    token = create_key(store, "scorer", "score")
    assert verify_key(store, mangle(token)) is None


def test_a_revoked_key_stops_working_at_once(store: Store) -> None:
    token = create_key(store, "scorer", "score")
    key = verify_key(store, token)
    assert key is not None

    assert revoke_key(store, "scorer")

    assert verify_key(store, token) is None
    assert revoke_key(store, "nobody") is False


def test_verified_keys_are_served_from_memory(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    token = create_key(store, "scorer", "score")
    assert verify_key(store, token) is not None

    def no_database(key_id: str) -> None:
        raise AssertionError("verified key looked up again")

    monkeypatch.setattr(store, "api_key_with_hash", no_database)
    assert verify_key(store, token) is not None


def test_scopes_are_parsed_and_checked(store: Store) -> None:
    assert parse_scopes(" score, review ") == frozenset({"score", "review"})
    with pytest.raises(ValueError, match="scopes"):
        parse_scopes("score,root")
    with pytest.raises(ValueError, match="scopes"):
        create_key(store, "nothing", "")


def test_key_names_are_unique(store: Store) -> None:
    create_key(store, "scorer", "score")
    with pytest.raises(ConflictError):
        create_key(store, "scorer", "review")
