"""Policies kept in a bundle: every version, the current one, and the manifest re-signed (never over tampering)."""

from __future__ import annotations

import json

import pytest

from bundle.manifest import verify_manifest
from bundle.policies import load_policy, next_policy_version, policy_versions, save_policy
from decision.policy import Policy


def test_save_keeps_every_version_and_manifest_verifies(tmp_path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"model")
    first = Policy(version=next_policy_version(tmp_path), t_pass=0.05, t_block=0.95)
    save_policy(tmp_path, first)
    second = Policy(version=next_policy_version(tmp_path), t_pass=0.02, t_block=0.9, qa_sample_rate=0.05)
    save_policy(tmp_path, second)
    assert second.version > first.version or second.version.rsplit("-", 1)[1] > first.version.rsplit("-", 1)[1]
    assert policy_versions(tmp_path) == [first.version, second.version]
    assert load_policy(tmp_path) == second
    assert json.loads((tmp_path / "policies" / f"{first.version}.json").read_text())["t_pass"] == 0.05
    manifest = verify_manifest(tmp_path)
    assert {"policy.json", f"policies/{first.version}.json", f"policies/{second.version}.json"} <= set(
        manifest["files"]
    )
    with pytest.raises(ValueError, match="^version"):
        save_policy(tmp_path, Policy(version=first.version, t_pass=0.3, t_block=0.9))
    with pytest.raises(ValueError, match="^t_block"):
        save_policy(tmp_path, Policy(version="policy-x-9", t_pass=0.3, t_block=0.2))
    assert load_policy(tmp_path) == second


def test_save_policy_refuses_a_tampered_bundle(tmp_path):
    from bundle.manifest import BundleError, write_manifest

    (tmp_path / "model.onnx").write_bytes(b"model")
    write_manifest(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="checksum mismatch for model.onnx"):
        save_policy(tmp_path, Policy(version="policy-1", t_pass=0.01, t_block=0.9))
