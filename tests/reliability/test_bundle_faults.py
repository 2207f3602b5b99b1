"""A broken model bundle is refused with a clear log line; the service stays up, not ready, and fails safe:
every listing goes to human review, none is auto-passed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import Service, listing

pytestmark = pytest.mark.reliability


def _missing_directory(bundle: Path) -> Path:
    shutil.rmtree(bundle)
    return bundle


def _missing_file(bundle: Path) -> Path:
    (bundle / "model.onnx").unlink()
    return bundle


def _truncated_model(bundle: Path) -> Path:
    model = bundle / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    return bundle


def _truncated_manifest(bundle: Path) -> Path:
    manifest = bundle / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])
    return bundle


def _checksum_mismatch(bundle: Path) -> Path:
    """Same size, one value changed: only the sha256 can tell."""
    policy = bundle / "policy.json"
    data = json.loads(policy.read_text())
    data["t_pass"] = 0.99  # would auto-pass nearly everything if it were believed
    text = json.dumps(data)
    original = policy.read_text()
    policy.write_text(text + " " * max(0, len(original) - len(text)))
    return bundle


FAULTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing bundle directory": (_missing_directory, "not found"),
    "file listed in the manifest missing": (_missing_file, "model.onnx listed in the manifest is missing"),
    "truncated model.onnx": (_truncated_model, "checksum mismatch for model.onnx"),
    "truncated manifest.json": (_truncated_manifest, "manifest.json is not valid JSON"),
    "checksum mismatch (policy.json edited)": (_checksum_mismatch, "checksum mismatch for policy.json"),
}


def _refusal_lines(service: Service) -> list[dict]:
    lines = []
    for raw in service.log_text().splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if entry.get("level") == "ERROR" and "NOT READY" in entry.get("msg", ""):
            lines.append(entry)
    return lines


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_a_broken_bundle_is_refused_and_the_service_fails_safe(
    make_service, private_bundle: Path, fault: str, report
) -> None:
    damage, reason = FAULTS[fault]
    service = make_service(bundle=damage(private_bundle), wait_ready=False)

    ready = httpx.get(service.url + "/readyz", timeout=5)
    with service.client("admin") as client:
        single = client.post("/v1/score", json=listing(1, title="cheap wallet", price=3.0))
        batch = client.post("/v1/score/batch", json={"items": [listing(i) for i in range(2, 102)]})
        reload = client.post("/v1/admin/reload")
    items = [single.json()] + batch.json()["items"]
    decisions = {d: sum(i["decision"] == d for i in items) for d in ("auto_pass", "auto_block", "human_review")}
    refusals = _refusal_lines(service)
    report(
        readyz=ready.status_code,
        scored_items=len(items),
        **decisions,
        fallback_reasons=sorted({i["fallback_reason"] for i in items}),
        reload=reload.status_code,
        log_line=refusals[0]["msg"][:160] if refusals else None,
    )

    assert service.alive() and httpx.get(service.url + "/healthz", timeout=5).status_code == 200
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert refusals and reason in refusals[0]["msg"], service.log_text()[-2000:]
    assert single.status_code == 200 and batch.status_code == 200
    assert decisions["auto_pass"] == 0 and decisions["auto_block"] == 0
    assert decisions["human_review"] == len(items) == 101
    assert all(i["fallback_reason"] == "model_unavailable" and i["risk"] is None for i in items)
    assert reload.status_code == 409 and reason in reload.json()["detail"]  # still broken: refused again


def test_a_bundle_broken_while_serving_is_refused_on_reload_and_the_old_one_keeps_serving(
    make_service, private_bundle: Path, report
) -> None:
    service = make_service()
    _truncated_model(private_bundle)
    with service.client("admin") as client:
        reload = client.post("/v1/admin/reload")
        after = client.post("/v1/score", json=listing(1))
    ready = httpx.get(service.url + "/readyz", timeout=5)
    report(reload=reload.status_code, readyz=ready.status_code, fallback_reason=after.json()["fallback_reason"])
    assert reload.status_code == 409 and "checksum mismatch for model.onnx" in reload.json()["detail"]
    assert ready.status_code == 200
    assert after.status_code == 200 and after.json()["fallback_reason"] is None


def test_a_service_started_without_a_bundle_becomes_ready_after_reloading_a_good_one(
    make_service, bundle_dir: Path, tmp_path: Path, report
) -> None:
    service = make_service(bundle=tmp_path / "no-such-bundle", wait_ready=False)
    good = shutil.copytree(bundle_dir, tmp_path / "good")
    with service.client("admin") as client:
        reload = client.post(  # no model was promoted yet: the first one is loaded by force, audited
            "/v1/admin/reload", json={"bundle": str(good), "force": True, "reason": "first model of this deployment"}
        )
        scored = client.post("/v1/score", json=listing(1))
    ready = httpx.get(service.url + "/readyz", timeout=5)
    report(reload=reload.status_code, readyz=ready.status_code)
    assert reload.status_code == 200 and ready.status_code == 200
    assert scored.json()["fallback_reason"] is None and scored.json()["risk"] is not None
