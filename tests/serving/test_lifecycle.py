"""Model lifecycle in the service: only the promoted model is reloaded (unless forced, audited), the
policy in force survives restarts and reaches every instance, and a shadow model never changes a decision."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.store import Store
from tests.serving.conftest import listing_json


def _version(bundle: Path, root: Path, version: str) -> Path:
    """A copy of the bundle registered under another version (what a retrain produces)."""
    from bundle.manifest import write_manifest

    copy = Path(shutil.copytree(bundle, root / version))
    write_manifest(copy, version=version)
    return copy


def _promote(store: Store, bundle: Path, version: str) -> None:
    """What `triage promote` records in the service's store."""
    store.record_model_change("promote", "ds-team", new_model=version, bundle=str(bundle), reason="gate passed")


def _reload(api: Any, **body: object) -> Any:
    return api.client.post("/v1/admin/reload", json=body, headers=api.headers("admin"))


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_reload_refuses_an_unpromoted_bundle_unless_forced_with_a_reason_and_audits_each(
    serve, own_bundle: Path
) -> None:
    newer = _version(own_bundle, own_bundle.parent, "2099-01-01-newer")
    with serve(bundle=str(own_bundle)) as api:
        serving = api.app.state.engine.model_version
        refused = _reload(api, bundle=str(newer))
        still = api.score(listing_json(1)).json()["model_version"]
        no_reason = _reload(api, bundle=str(newer), force=True)
        forced = _reload(api, bundle=str(newer), force=True, reason="hotfix: rollback impossible")
        back = _reload(api, bundle=str(own_bundle))  # the original is not promoted either
        _promote(api.store, own_bundle, serving)
        promoted = _reload(api, bundle=str(own_bundle))
        same = _reload(api)  # re-reading the model serving changes nothing: allowed
        history = api.client.get("/v1/models/history", headers=api.headers("read")).json()

    assert refused.status_code == 409
    assert "2099-01-01-newer is not the promoted champion: no model was promoted yet" in refused.json()["detail"]
    assert still == serving
    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["field"] == "reason"
    assert forced.status_code == 200 and forced.json()["event"] == "forced_reload"
    assert forced.json()["model_version"] == "2099-01-01-newer"
    assert back.status_code == 409 and f"bundle {serving} is not the promoted champion" in back.json()["detail"]
    assert promoted.status_code == 200 and promoted.json()["event"] == "reload"
    assert same.status_code == 200 and same.json()["model_version"] == serving
    events = [(h["event"], h["old_model"], h["new_model"], h["actor"], h["reason"]) for h in reversed(history)]
    assert events[:2] == [
        ("forced_reload", serving, "2099-01-01-newer", "admin-key", "hotfix: rollback impossible"),
        ("promote", None, serving, "ds-team", "gate passed"),
    ]
    # the service follows promotions from the store on its own, so it may already serve the promoted model
    # when the reload arrives: the reload's old model is whichever it was serving then
    assert events[2][0] == "reload" and events[2][1] in ("2099-01-01-newer", serving)
    assert events[2][2:] == (serving, "admin-key", None)


def test_a_reload_that_brings_another_policy_puts_it_in_the_policy_history(serve, own_bundle: Path) -> None:
    """A bundle decides with its own policy.json (`triage thresholds` writes new versions there): a reload
    that changes the policy deciding is in GET /v1/policy/history beside the model change; one that
    does not adds nothing."""
    from dataclasses import replace

    from bundle.policies import load_policy, save_policy

    newer = _version(own_bundle, own_bundle.parent, "2099-03-01-thresholds")
    before = load_policy(newer)
    save_policy(newer, replace(before, version=f"{before.version}-pm", t_pass=before.t_pass / 2).validate())
    with serve(bundle=str(own_bundle)) as api:
        # forced (no promotion), so the service's own following of the store cannot load it first
        moved = _reload(api, bundle=str(newer), force=True, reason="new thresholds")
        again = _reload(api, bundle=str(newer), force=True, reason="same bundle again")
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()

    assert moved.status_code == 200 and moved.json()["policy_version"] == f"{before.version}-pm"
    assert again.status_code == 200
    assert len(history) == 1
    change = history[0]
    assert (change["old_version"], change["new_version"], change["actor"]) == (
        before.version,
        f"{before.version}-pm",
        "admin-key",
    )
    assert change["reason"] == (
        "forced_reload of model 2099-03-01-thresholds put the policy in force for its bundle: new thresholds"
    )
    assert change["new"]["t_pass"] == before.t_pass / 2


def test_a_reload_keeps_the_audited_policy_in_force_for_the_same_bundle(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        put = api.client.put(
            "/v1/policy", json={"t_pass": 0.03, "reason": "tighter pass"}, headers=api.headers("admin")
        ).json()
        reloaded = _reload(api).json()
        now = api.client.get("/v1/policy", headers=api.headers("read")).json()
        history = api.client.get("/v1/models/history", headers=api.headers("read")).json()

    assert reloaded["policy_version"] == put["policy"]["version"] == now["policy"]["version"]
    assert history[0]["event"] == "reload" and history[0]["policy_version"] == put["policy"]["version"]


def test_a_policy_change_on_one_instance_reaches_another_on_the_same_store(serve, own_bundle: Path) -> None:
    with (
        serve(bundle=str(own_bundle), follow_seconds=0.1) as first,
        serve(bundle=str(own_bundle), follow_seconds=0.1) as second,
    ):
        # the second instance's start rotated the keys both share: its tokens are the live ones
        put = first.client.put(
            "/v1/policy",
            json={"t_pass": 0.02, "t_block": 0.97, "reason": "fleet-wide change"},
            headers=second.headers("admin"),
        )
        version = put.json()["policy"]["version"]

        def second_serves_it() -> bool:
            return second.score(listing_json(2)).json()["policy_version"] == version

        assert put.status_code == 200
        assert _until(second_serves_it)
    with serve(bundle=str(own_bundle)) as restarted:  # and a restart resumes it
        assert (
            restarted.client.get("/v1/policy", headers=restarted.headers("read")).json()["policy"]["version"] == version
        )


def test_a_promotion_reaches_running_instances_and_survives_a_restart(serve, own_bundle: Path) -> None:
    newer = _version(own_bundle, own_bundle.parent, "2099-02-01-promoted")
    with serve(bundle=str(own_bundle), follow_seconds=0.1) as api:
        _promote(api.store, newer, "2099-02-01-promoted")
        assert _until(lambda: api.score(listing_json(3)).json()["model_version"] == "2099-02-01-promoted")
    with serve(bundle=str(own_bundle)) as restarted:  # configured with the old bundle: the model in force wins
        assert restarted.score(listing_json(4)).json()["model_version"] == "2099-02-01-promoted"


# -- shadow scoring ------------------------------------------------------------------------------------


def _weak(bundle: Path, root: Path) -> Path:
    """A shadow that disagrees a lot: the same model with its calibrators reversed and a loose policy."""
    import json
    from dataclasses import replace

    from bundle.manifest import write_manifest
    from bundle.policies import load_policy, save_policy

    weak = Path(shutil.copytree(bundle, root / "2099-03-01-weak"))
    for path in [weak / "calibrator.json", *sorted((weak / "tiers").glob("*.calibrator.json"))]:
        raw = json.loads(path.read_text())
        raw["y"] = raw["y"][::-1]
        path.write_text(json.dumps(raw))
    write_manifest(weak, version="2099-03-01-weak")
    policy = load_policy(weak)
    loose = {name: 0.9 for name in policy.tier_pass}
    save_policy(weak, replace(policy, version="weak-loose", t_pass=0.5, t_block=0.95, tier_pass=loose))
    return weak


LISTINGS = [
    listing_json(i, title=title, price=price)
    for i, (title, price) in enumerate(
        [("Leather wallet", 29.9), ("replica rolex watch", 19.0), ("Gucci bag original", 35.0), ("desk lamp", 12.0)] * 8
    )
]
STABLE_FIELDS = ("listing_id", "risk", "reasons", "rules_matched", "model_version", "policy_version", "t_pass")


def _decisions(api: Any) -> list[dict[str, Any]]:
    """Score LISTINGS as singles and one batch; the fields that must not depend on a shadow."""
    singles = [api.score(body).json() for body in LISTINGS[:8]]
    batch = api.batch(LISTINGS[8:])
    assert batch.status_code == 200
    items = singles + batch.json()["items"]
    return [
        {**{f: item.get(f) for f in STABLE_FIELDS}, "routed": item.get("would_have_been") or item["decision"]}
        for item in items
    ]


def test_shadow_scoring_never_changes_a_decision_and_logs_the_shadow_beside_it(serve, own_bundle: Path) -> None:
    weak = _weak(own_bundle, own_bundle.parent)
    with serve(bundle=str(own_bundle)) as api:
        without = _decisions(api)
    with serve(bundle=str(own_bundle), shadow_bundle=str(weak)) as api:
        with_shadow = _decisions(api)
        shadow = api.app.state.shadow
        assert _until(lambda: shadow.counts.scored == len(LISTINGS))
        report = api.client.get("/v1/shadow/report", headers=api.headers("read")).json()
        state = api.client.get("/v1/shadow", headers=api.headers("read")).json()

    assert with_shadow == without
    assert report["pairs"] == len(LISTINGS) and report["shadow_models"] == ["2099-03-01-weak"]
    assert report["agreement"] < 1.0  # the reversed model routes differently: pairs really were compared
    assert sum(sum(row.values()) for row in report["confusion"].values()) == len(LISTINGS)
    assert state == {
        "model_version": "2099-03-01-weak",
        "policy_version": state["policy_version"],
        "counts": {"scored": 32, "errors": 0, "dropped": 0},
    }


def test_a_shadow_that_raises_fails_nothing_and_is_counted(
    serve, own_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.shadow

    weak = _weak(own_bundle, own_bundle.parent)
    with serve(bundle=str(own_bundle)) as api:
        without = _decisions(api)

    def broken(*_args: object) -> list[Any]:
        raise RuntimeError("shadow model exploded")

    monkeypatch.setattr(serving.shadow, "shadow_decisions", broken)
    with serve(bundle=str(own_bundle), shadow_bundle=str(weak)) as api:
        with_broken = _decisions(api)
        shadow = api.app.state.shadow
        assert _until(lambda: shadow.counts.errors == len(LISTINGS))
        logged = api.store.shadow_pairs()

    assert with_broken == without
    assert logged == [] and shadow.counts.scored == 0


def test_the_shadow_is_set_and_cleared_through_the_api_audited_and_followed_by_other_instances(
    serve, own_bundle: Path
) -> None:
    weak = _weak(own_bundle, own_bundle.parent)
    with (
        serve(bundle=str(own_bundle), follow_seconds=0.1) as first,
        serve(bundle=str(own_bundle), follow_seconds=0.1) as second,
    ):
        no_reason = first.client.put("/v1/admin/shadow", json={"bundle": str(weak)}, headers=second.headers("admin"))
        outside = first.client.put(
            "/v1/admin/shadow", json={"bundle": "/etc", "reason": "try"}, headers=second.headers("admin")
        )
        set_ = first.client.put(
            "/v1/admin/shadow", json={"bundle": str(weak), "reason": "compare retrain"}, headers=second.headers("admin")
        )
        assert _until(lambda: getattr(second.app.state, "shadow", None) is not None)
        cleared = first.client.delete(
            "/v1/admin/shadow", params={"reason": "enough data"}, headers=second.headers("admin")
        )
        assert _until(lambda: second.app.state.shadow is None)
        history = first.client.get("/v1/models/history", headers=second.headers("read")).json()

    assert no_reason.status_code == 422 and outside.status_code == 400
    assert set_.status_code == 200 and set_.json()["model_version"] == "2099-03-01-weak"
    assert cleared.status_code == 200 and cleared.json()["model_version"] is None
    assert [(h["event"], h["reason"]) for h in history[:2]] == [
        ("shadow_clear", "enough data"),
        ("shadow_set", "compare retrain"),
    ]


def test_the_shadow_can_be_the_registry_candidate(
    serve, own_bundle: Path, bundle_dir: Path, trained: Any, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bundle.load import Bundle

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)  # the session run registered @candidate there
    with serve(bundle=str(own_bundle), shadow_bundle="models:/listing-risk@candidate") as api:
        state = api.client.get("/v1/shadow", headers=api.headers("read")).json()
        assert api.score(listing_json(5)).status_code == 200
        assert _until(lambda: api.app.state.shadow.counts.scored == 1)

    assert state["model_version"] == Bundle.load(bundle_dir).version


def test_a_registry_shadow_set_through_the_api_survives_a_restart(
    serve, own_bundle: Path, bundle_dir: Path, trained: Any, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was downloaded to a temporary directory outside the models directory, so a restart refused the
    audited path; an alias the registry does not hold was a 500."""
    from bundle.load import Bundle

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        unknown = [
            api.client.put("/v1/admin/shadow", json={"bundle": uri, "reason": "try"}, headers=headers)
            for uri in ("models:/listing-risk@nope", "models:/listing-risk/999", "models:/no-such-model/1")
        ]
        put, again = (
            api.client.put(
                "/v1/admin/shadow",
                json={"bundle": "models:/listing-risk@candidate", "reason": reason},
                headers=headers,
            )
            for reason in ("shadow week", "shadow week, again")
        )
        models_root = api.app.state.settings.models_root
    with serve(bundle=str(own_bundle)) as restarted:
        state = restarted.client.get("/v1/shadow", headers=restarted.headers("read")).json()

    for response in unknown:
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith("bundle: models:/") and "not in the model registry" in response.text
    assert put.status_code == 200 and again.status_code == 200, (put.text, again.text)
    assert state["model_version"] == Bundle.load(bundle_dir).version
    # one download of the registered version, however often the alias is set (each PUT made a copy)
    assert [p.name for p in models_root.iterdir() if "registry-" in p.name] == ["registry-listing-risk-v1"]


def test_a_shadow_fraction_scores_a_random_share_only(serve, own_bundle: Path) -> None:
    weak = _weak(own_bundle, own_bundle.parent)
    with serve(bundle=str(own_bundle), shadow_bundle=str(weak), shadow_fraction=0.5) as api:
        for start in range(0, 400, 100):
            assert api.batch([listing_json(i) for i in range(start, start + 100)]).status_code == 200
        shadow = api.app.state.shadow
        assert _until(lambda: shadow.idle)
        logged = len(api.store.shadow_pairs())

    assert logged == shadow.counts.scored and 140 <= logged <= 260  # Binomial(400, 0.5): 6 standard deviations
