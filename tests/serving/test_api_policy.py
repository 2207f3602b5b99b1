"""Policy admin over HTTP: validated, versioned, persisted, audited, swapped atomically; bundle reload."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from bundle.manifest import verify_manifest
from bundle.policies import load_policy
from tests.serving.conftest import Api, listing_json


def put_policy(
    api: Api, body: dict[str, Any], scope: str = "admin", reason: str | None = "test change"
) -> httpx.Response:
    return api.client.put("/v1/policy", json={**body, "reason": reason} if reason else body, headers=api.headers(scope))


def test_read_and_admin_keys_read_the_policy_a_score_key_does_not(serve) -> None:
    """The policy holds the rules' term lists: a leaked score key must not reveal what gets blocked."""
    with serve() as api:
        for scope in ("read", "admin"):
            response = api.client.get("/v1/policy", headers=api.headers(scope))
            assert response.status_code == 200
            assert response.json()["policy"]["version"] == api.app.state.engine.policy.version
        for scope in ("score", "review"):
            assert api.client.get("/v1/policy", headers=api.headers(scope)).status_code == 403
            assert api.client.get("/v1/policy/history", headers=api.headers(scope)).status_code == 403
        assert api.client.get("/v1/policy").status_code == 401


def test_a_policy_change_is_versioned_persisted_audited_and_applied(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        before = api.client.get("/v1/policy", headers=api.headers("read")).json()["policy"]
        response = put_policy(api, {"t_pass": 0.4, "t_block": 0.6, "qa_sample_rate": 0.001})
        after = response.json()["policy"]
        scored = api.batch([listing_json(i, price=float(i + 1)) for i in range(30)]).json()["items"]
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()

    assert response.status_code == 200, response.text
    assert after["version"] != before["version"] and after["version"].startswith("policy-")
    assert (after["t_pass"], after["t_block"]) == (0.4, 0.6)
    assert after["rules"] == before["rules"]  # fields left out keep their value
    assert api.store.policy_in_force(api.app.state.engine.bundle.version) == after  # the store holds it
    assert load_policy(own_bundle).to_dict() == before  # the bundle is not written: its policy is the default
    verify_manifest(own_bundle)
    assert {s["policy_version"] for s in scored} == {after["version"]}
    for item in scored:
        if not item["rules_matched"]:
            # a tiered policy passes a listing only when, besides, every tier's risk is under its t_pass
            tiers_pass = all(r < after["tier_pass"][name] for name, r in (item["tier_risk"] or {}).items())
            passes = item["risk"] < 0.4 and tiers_pass
            expected = "auto_pass" if passes else "auto_block" if item["risk"] >= 0.6 else "human_review"
            assert item["decision"] == expected
    assert history[0]["actor"] == "admin-key"
    assert (history[0]["old_version"], history[0]["new_version"]) == (before["version"], after["version"])
    assert history[0]["new"] == after and history[0]["reason"] == "test change"


def test_only_admins_change_the_policy(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        assert put_policy(api, {"t_pass": 0.1}, scope="score").status_code == 403
        assert put_policy(api, {"t_pass": 0.1}, scope="review").status_code == 403
        assert api.client.put("/v1/policy", json={"t_pass": 0.1}).status_code == 401
        assert api.client.post("/v1/admin/reload", headers=api.headers("score")).status_code == 403


INVALID_POLICIES = [
    ("t_block", {"t_pass": 0.5, "t_block": 0.5}),
    ("t_block", {"t_block": 0.0001}),  # below the current t_pass
    ("t_pass", {"t_pass": 1.5}),
    ("t_pass", {"t_pass": -0.1}),
    ("qa_sample_rate", {"qa_sample_rate": 2}),
    ("qa_sample_rate", {"qa_sample_rate": 0}),  # never zero: every automated decision can be audited
    ("audit.near_rate", {"audit": {"near_rate": 0}}),
    ("audit.block_rate", {"audit": {"block_rate": 1.5}}),
    ("audit.near_fraction", {"audit": {"near_fraction": 0}}),
    ("audit.max_age_hours", {"audit": {"max_age_hours": -2}}),
    ("audit.rate", {"audit": {"rate": 0.1}}),
    ("audit", {"audit": [0.1]}),
    ("segment_by", {"segment_by": "colour", "segments": {"red": [0.1, 0.9]}}),
    ("segments", {"segment_by": "category", "segments": {"no-such-category": [0.1, 0.9]}}),
    ("segments", {"segment_by": "category", "segments": {"books": [0.9, 0.1]}}),
    (
        "rules",
        {
            "rules": [{"name": "x", "action": "explode", "kind": "term", "terms": ["a"], "fields": ["title"]}],
            "replace_rules": True,
        },
    ),
    (
        "rules",
        {
            "rules": [{"name": "x", "action": "block", "kind": "term", "terms": [], "fields": ["title"]}],
            "replace_rules": True,
        },
    ),
    ("version", {"version": "mine"}),
    # targets are what certification proved: a client cannot lower the block-rule gate's or raise the claim
    ("targets", {"targets": {"block_precision": 0.1}}),
    ("targets", {"targets": {"recall": 0.999, "block_precision": 0.999}}),
    ("targets", {"targets": {"block_precision": [1, 2]}}),
]


@pytest.mark.parametrize(
    ("field", "body"), INVALID_POLICIES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(INVALID_POLICIES)]
)
def test_an_invalid_policy_is_a_422_naming_the_field_and_changes_nothing(
    serve, own_bundle: Path, field: str, body: dict
) -> None:
    before = load_policy(own_bundle).to_dict()
    with serve(bundle=str(own_bundle)) as api:
        response = put_policy(api, body)
        assert response.status_code == 422, response.text
        assert field in {e["field"] for e in response.json()["detail"]}
        assert api.app.state.engine.policy.to_dict() == before
        assert api.client.get("/v1/policy/history", headers=api.headers("read")).json() == []
    assert load_policy(own_bundle).to_dict() == before


def test_a_partial_audit_plan_keeps_the_other_fields_and_is_audited(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        before = api.client.get("/v1/policy", headers=api.headers("read")).json()["policy"]
        response = put_policy(api, {"audit": {"near_rate": 0.25, "max_age_hours": 6}})
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()
        engine_plan = api.app.state.engine.policy.audit

    assert response.status_code == 200, response.text
    audit = response.json()["policy"]["audit"]
    assert audit == {**before["audit"], "near_rate": 0.25, "max_age_hours": 6.0}
    assert (engine_plan.near_rate, engine_plan.max_age_hours) == (0.25, 6.0)
    assert response.json()["policy"]["guarantee"] == before["guarantee"]  # audit rates do not touch thresholds
    assert history[0]["old"]["audit"] == before["audit"] and history[0]["new"]["audit"] == audit


def open_tiers(api: Api) -> dict[str, float]:
    """Every tier of the served bundle passing nearly everything (a tiered policy passes a listing only
    under every tier's t_pass too); {} for an untiered bundle."""
    return dict.fromkeys(api.app.state.engine.tier_names, 0.999)


def test_per_segment_thresholds_apply_to_their_segment(serve, own_bundle: Path) -> None:
    categories = pd.read_parquet(own_bundle / "reference.parquet", columns=["category"])["category"].unique()
    strict, other = str(categories[0]), str(categories[1])
    body = {
        "t_pass": 0.999,
        "t_block": 1.0,
        "qa_sample_rate": 0.001,
        "rules": [],
        "replace_rules": True,
        "segment_by": "category",
        "segments": {strict: [0.0, 0.0001]},
    }
    with serve(bundle=str(own_bundle)) as api:
        assert put_policy(api, {**body, "tier_pass": open_tiers(api)}).status_code == 200
        blocked = api.score(listing_json(1, category=strict)).json()
        passed = api.score(listing_json(2, category=other)).json()

    assert blocked["decision"] == "auto_block" and (blocked["t_pass"], blocked["t_block"]) == (0.0, 0.0001)
    assert blocked["statement_of_reasons"]["automated_decision"] is True
    assert passed["decision"] == "auto_pass" and passed["t_pass"] == 0.999


def test_a_policy_swap_under_load_changes_decisions_without_a_failed_request(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        body = {
            "t_pass": 0.999,
            "t_block": 1.0,
            "tier_pass": open_tiers(api),
            "qa_sample_rate": 0.001,
            "rules": [],
            "replace_rules": True,
        }
        assert put_policy(api, body).status_code == 200
        old_version = api.app.state.engine.policy.version
        stop = threading.Event()
        results: list[tuple[int, dict]] = []

        def send(worker: int) -> None:
            n = 0
            while not stop.is_set() or n < 5:
                response = api.score(listing_json(worker * 10_000 + n))
                results.append((response.status_code, response.json()))
                n += 1

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(send, w) for w in range(6)]
            while len(results) < 40:
                threading.Event().wait(0.01)
            swapped = put_policy(api, {"t_pass": 0.0, "t_block": 0.000001})
            new_version = swapped.json()["policy"]["version"]
            count_at_swap = len(results)
            while len(results) < count_at_swap + 40:
                threading.Event().wait(0.01)
            stop.set()
            for future in futures:
                future.result()

    assert swapped.status_code == 200
    assert {status for status, _ in results} == {200}
    by_version: dict[str, set[str]] = {}
    for _, item in results:
        by_version.setdefault(item["policy_version"], set()).add(item["decision"])
    assert set(by_version) == {old_version, new_version}  # each request saw one whole policy
    assert by_version[old_version] == {"auto_pass"}
    assert by_version[new_version] == {"auto_block"}


def test_reloading_a_tampered_bundle_is_refused_and_the_old_one_keeps_serving(
    serve, own_bundle: Path, tmp_path: Path
) -> None:
    tampered = Path(shutil.copytree(own_bundle, tmp_path / "tampered"))
    with (tampered / "calibrator.json").open("a") as handle:
        handle.write(" ")
    with serve(bundle=str(own_bundle)) as api:
        version = api.app.state.engine.model_version
        refused = api.client.post("/v1/admin/reload", json={"bundle": str(tampered)}, headers=api.headers("admin"))
        missing = api.client.post(
            "/v1/admin/reload", json={"bundle": str(tmp_path / "nope")}, headers=api.headers("admin")
        )
        still = api.score(listing_json(1)).json()
        ready = api.client.get("/readyz")
        reloaded = api.client.post("/v1/admin/reload", headers=api.headers("admin"))

    assert refused.status_code == 409 and "checksum mismatch for calibrator.json" in refused.json()["detail"]
    assert missing.status_code == 409
    assert still["model_version"] == version and still["fallback_reason"] is None
    assert ready.status_code == 200
    assert reloaded.status_code == 200 and reloaded.json()["model_version"] == version


def test_reload_makes_a_not_ready_service_ready(serve, own_bundle: Path, tmp_path: Path) -> None:
    with serve(bundle=str(tmp_path / "not-yet")) as api:
        assert api.client.get("/readyz").status_code == 503
        assert put_policy(api, {"t_pass": 0.1}).status_code == 409  # no model: nothing to change
        body = {"bundle": str(own_bundle)}
        unpromoted = api.client.post("/v1/admin/reload", json=body, headers=api.headers("admin"))
        assert unpromoted.status_code == 409 and "not the promoted champion" in unpromoted.json()["detail"]
        forced = {**body, "force": True, "reason": "first model of a new deployment"}
        response = api.client.post("/v1/admin/reload", json=forced, headers=api.headers("admin"))
        assert response.status_code == 200 and response.json()["event"] == "forced_reload"
        assert api.client.get("/readyz").status_code == 200
        assert api.score(listing_json(1)).json()["fallback_reason"] is None


def test_a_restart_resumes_the_policy_in_force_from_the_store(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        changed = put_policy(api, {"t_pass": 0.2, "t_block": 0.8}).json()["policy"]
    with serve(bundle=str(own_bundle)) as api:
        resumed = api.client.get("/v1/policy", headers=api.headers("read")).json()
        reloaded = api.client.post("/v1/admin/reload", headers=api.headers("admin")).json()

    assert resumed["policy"] == changed
    assert reloaded["policy_version"] == changed["version"]
    assert load_policy(own_bundle).version != changed["version"]


def reload(api, bundle: Path | str):
    return api.client.post("/v1/admin/reload", json={"bundle": str(bundle)}, headers=api.headers("admin"))


def test_reload_loads_only_bundles_under_the_models_directory(
    serve, own_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = Path(shutil.copytree(own_bundle, tmp_path_factory.mktemp("elsewhere") / "bundle"))
    models = own_bundle.parent
    (models / "sneaky").symlink_to(elsewhere, target_is_directory=True)
    with serve(bundle=str(own_bundle)) as api:
        outside = reload(api, elsewhere)
        escape = reload(api, f"{models}/../{elsewhere.relative_to(models.parent)}")
        via_symlink = reload(api, models / "sneaky")
        inside = reload(api, own_bundle)

    for refused in (outside, escape, via_symlink):
        assert refused.status_code == 400, refused.text
        assert "outside the models directory" in refused.json()["detail"]
    assert inside.status_code == 200


def test_with_a_signing_key_only_signed_bundles_load(serve, own_bundle: Path, tmp_path: Path) -> None:
    from bundle.manifest import SIGNATURE, write_manifest

    key = "reload-test-signing-key"
    signed = Path(shutil.copytree(own_bundle, tmp_path / "signed"))
    write_manifest(signed, signing_key=key.encode())
    resummed = Path(shutil.copytree(signed, tmp_path / "resummed"))
    with (resummed / "calibrator.json").open("a") as handle:
        handle.write(" ")
    signature = (resummed / SIGNATURE).read_text()
    write_manifest(resummed)  # sums recomputed after the change...
    (resummed / SIGNATURE).write_text(signature)  # ...the old signature kept

    with serve(bundle=str(signed), bundle_signing_key=key) as api:
        ready = api.client.get("/readyz").status_code
        unsigned = reload(api, own_bundle)
        tampered = reload(api, resummed)
        good = reload(api, signed)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"  # on the first store, the reloaded signed model is in force
    with serve(bundle=str(own_bundle), bundle_signing_key=key, database_url=fresh) as api:
        unsigned_at_start = api.client.get("/readyz").status_code

    assert ready == 200
    assert unsigned.status_code == 409 and "unsigned" in unsigned.json()["detail"]
    assert tampered.status_code == 409 and "signature does not match" in tampered.json()["detail"]
    assert good.status_code == 200
    assert unsigned_at_start == 503  # refused at startup too: not ready, everything to human review


def test_reloaded_bundles_free_the_engines_they_replace(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five reloads keep no old engine alive, even one in a reference cycle (which a frozen engine kept)."""
    import gc
    import weakref

    from serving.engine import DecisionEngine

    from_bundle = DecisionEngine.from_bundle.__func__  # type: ignore[attr-defined]

    def in_a_cycle(cls: type[DecisionEngine], *args: object, **kwargs: object) -> DecisionEngine:
        engine = from_bundle(cls, *args, **kwargs)
        engine.__dict__["_self"] = engine  # as a callback or cache holding its engine would
        return engine

    monkeypatch.setattr(DecisionEngine, "from_bundle", classmethod(in_a_cycle))
    with serve() as api:
        replaced = []
        for _ in range(5):
            replaced.append(weakref.ref(api.app.state.engine))
            replaced.append(weakref.ref(api.app.state.engine.bundle))
            assert api.client.post("/v1/admin/reload", headers=api.headers("admin")).status_code == 200
        gc.collect()

        assert [ref() for ref in replaced] == [None] * len(replaced)
        assert all(obj is not api.app.state.engine for obj in gc.get_objects())  # the new one is frozen
        assert api.score(listing_json(1)).status_code == 200


def test_a_stopped_app_frees_its_engine_and_store(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app freezes what it holds at start; once stopped it must thaw it, or a process that starts apps
    again and again (this test session: 10 GB per test process) keeps every one's reference cycles."""
    import gc
    import weakref

    from serving.engine import DecisionEngine

    from_bundle = DecisionEngine.from_bundle.__func__  # type: ignore[attr-defined]

    def in_a_cycle(cls: type[DecisionEngine], *args: object, **kwargs: object) -> DecisionEngine:
        engine = from_bundle(cls, *args, **kwargs)
        engine.__dict__["_self"] = engine
        return engine

    monkeypatch.setattr(DecisionEngine, "from_bundle", classmethod(in_a_cycle))
    with serve() as api:
        engine, app = weakref.ref(api.app.state.engine), weakref.ref(api.app)
        assert api.score(listing_json(1)).status_code == 200
        api.app.state.__dict__["_self"] = api.app.state  # the state in a cycle too
    del api
    gc.collect()
    assert engine() is None and app() is None
