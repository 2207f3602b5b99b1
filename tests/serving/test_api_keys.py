"""API key administration over HTTP: list, create (409 on a taken name), revoke, rotate; the read scope."""

from __future__ import annotations

import time

import pytest

from serving import keys
from serving.keys import create_key, revoke_key, verify_key
from serving.store import Store


def admin_post(api, path: str, body: object = None):
    return api.client.post(path, json=body, headers=api.headers("admin"))


def test_admins_list_keys_without_secrets(serve) -> None:
    with serve() as api:
        response = api.client.get("/v1/admin/keys", headers=api.headers("admin"))
        for scope in ("score", "review", "read"):
            assert api.client.get("/v1/admin/keys", headers=api.headers(scope)).status_code == 403

    assert response.status_code == 200
    listed = {k["name"]: k for k in response.json()}
    assert listed["read-key"]["scopes"] == ["read"] and listed["read-key"]["revoked"] is False
    assert "token" not in response.text and "hmac-sha256" not in response.text


def test_a_created_key_works_once_shown_and_a_taken_name_is_409(serve) -> None:
    with serve() as api:
        created = admin_post(api, "/v1/admin/keys", {"name": "pm-anna", "scopes": ["read"]})
        token = created.json()["token"]
        reads = api.client.get("/v1/policy", headers={"Authorization": f"Bearer {token}"})
        again = admin_post(api, "/v1/admin/keys", {"name": "pm-anna", "scopes": ["score"]})
        unknown = admin_post(api, "/v1/admin/keys", {"name": "x", "scopes": ["superuser"]})

    assert created.status_code == 201 and created.json()["key"]["scopes"] == ["read"]
    assert reads.status_code == 200
    assert again.status_code == 409 and "pm-anna" in again.json()["detail"]
    assert unknown.status_code == 422


def test_a_revoked_key_is_refused_at_once(serve) -> None:
    with serve() as api:
        headers = api.key("upstream", "score")
        assert api.client.get("/readyz").status_code == 200
        assert api.client.post("/v1/score/batch", json={"items": []}, headers=headers).status_code != 401

        revoked = admin_post(api, "/v1/admin/keys/upstream/revoke")
        after = api.client.post("/v1/score/batch", json={"items": []}, headers=headers)
        missing = admin_post(api, "/v1/admin/keys/nobody/revoke")

    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert after.status_code == 401
    assert missing.status_code == 404


def test_rotation_gives_a_new_token_and_the_old_one_stops(serve) -> None:
    with serve() as api:
        old = api.key("auditor", "read")
        assert api.client.get("/v1/policy", headers=old).status_code == 200

        rotated = admin_post(api, "/v1/admin/keys/auditor/rotate")
        new = {"Authorization": f"Bearer {rotated.json()['token']}"}
        old_after = api.client.get("/v1/policy", headers=old)
        new_after = api.client.get("/v1/policy", headers=new)
        admin_post(api, "/v1/admin/keys/auditor/revoke")
        revoked_rotate = admin_post(api, "/v1/admin/keys/auditor/rotate")

    assert rotated.status_code == 200 and rotated.json()["key"]["scopes"] == ["read"]
    assert old_after.status_code == 401 and new_after.status_code == 200
    assert revoked_rotate.status_code == 404  # a revoked key stays revoked


def test_the_read_scope_reads_and_simulates_but_changes_nothing(serve, own_bundle) -> None:
    with serve(bundle=str(own_bundle)) as api:
        read = api.headers("read")
        assert api.client.get("/v1/policy", headers=read).status_code == 200
        assert api.client.get("/v1/policy/history", headers=read).status_code == 200
        assert api.client.get("/v1/simulate/context", headers=read).status_code == 200
        assert api.client.get("/v1/queue/stats", headers=read).status_code == 200
        assert api.client.post("/v1/score/batch", json={"items": []}, headers=read).status_code == 403
        assert api.client.get("/v1/queue/next", headers=read).status_code == 403
        assert api.client.put("/v1/policy", json={"t_pass": 0.1, "reason": "x"}, headers=read).status_code == 403
        assert api.client.post("/v1/admin/reload", headers=read).status_code == 403
        assert api.client.get("/v1/admin/keys", headers=read).status_code == 403


def test_another_process_sees_a_revocation_within_a_second(store_factory) -> None:
    """Two stores on one database stand for two service processes: each caches verified keys."""
    serving_process: Store = store_factory()
    admin_process: Store = store_factory()
    token = create_key(admin_process, "upstream", "score")
    assert verify_key(serving_process, token) is not None  # now cached in the serving process

    revoke_key(admin_process, "upstream")
    deadline = time.monotonic() + keys.CACHE_SECONDS + 0.2
    while verify_key(serving_process, token) is not None:
        assert time.monotonic() < deadline, "the revoked key was still accepted after a second"
        time.sleep(0.05)
    assert keys.CACHE_SECONDS <= 1.0


@pytest.mark.parametrize("scopes", ["score", "read,review"])
def test_rotation_keeps_name_and_scopes(store: Store, scopes: str) -> None:
    old = create_key(store, "tool", scopes)
    new = keys.rotate_key(store, "tool")
    assert new is not None and new != old
    assert verify_key(store, old) is None
    key = verify_key(store, new)
    assert key is not None and key.name == "tool" and key.scopes == set(scopes.split(","))
    assert keys.rotate_key(store, "nobody") is None


def test_every_key_change_is_in_the_audited_history_with_who_and_when(serve, tmp_path, monkeypatch) -> None:
    """Compliance reads who created, rotated and revoked which key, and when: the keys table keeps only the
    key as it is now (a revoked flag, the latest token's time)."""
    from typer.testing import CliRunner

    from serving import commands
    from triage.cli import app

    with serve() as api:
        admin = api.headers("admin")
        admin_name = next(
            k["name"] for k in api.client.get("/v1/admin/keys", headers=admin).json() if "admin" in k["scopes"]
        )
        admin_post(api, "/v1/admin/keys", {"name": "vendor-b-1", "scopes": ["review"], "team": "vendor-b"})
        admin_post(api, "/v1/admin/keys/vendor-b-1/rotate")
        admin_post(api, "/v1/admin/keys/vendor-b-1/revoke")
        admin_post(api, "/v1/admin/keys/vendor-b-1/revoke")  # already revoked: no second event
        mine = api.client.get("/v1/admin/keys/history", params={"name": "vendor-b-1"}, headers=admin)
        everything = api.client.get("/v1/admin/keys/history", headers=admin)
        refused = api.client.get("/v1/admin/keys/history", headers=api.headers("read"))
        revoke_key(api.store, "read-key", actor="ops on call")
        monkeypatch.setattr(commands, "get_settings", lambda: api.app.state.settings)
        printed = CliRunner().invoke(app, ["keys", "history", "read-key"])

    assert mine.status_code == 200, mine.text
    changes = mine.json()
    assert [(c["event"], c["actor"], c["scopes"], c["team"]) for c in changes] == [
        ("create", admin_name, ["review"], "vendor-b"),
        ("rotate", admin_name, ["review"], "vendor-b"),
        ("revoke", admin_name, ["review"], "vendor-b"),
    ]
    assert changes[0]["at"] <= changes[1]["at"] <= changes[2]["at"]
    assert {c["key"] for c in everything.json()} >= {"vendor-b-1", "read-key"}
    assert refused.status_code == 403
    assert printed.exit_code == 0, printed.output
    assert "\trevoke\tread-key\tread\tby ops on call" in printed.output
