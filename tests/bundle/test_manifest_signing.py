"""Manifest signatures: with a key, an unsigned bundle, one signed with another key, or one whose files
changed and whose sums were recomputed is refused; without a key, the sums alone are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle.manifest import SIGNATURE, BundleError, signing_key_from_env, verify_manifest, write_manifest

KEY = b"a long random signing key"


def bundle(tmp_path: Path, signing_key: bytes | None = KEY) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"model")
    (tmp_path / "policy.json").write_text('{"t_pass": 0.1}')
    write_manifest(tmp_path, version="v1", signing_key=signing_key)
    return tmp_path


def test_a_signed_bundle_verifies_with_its_key(tmp_path: Path) -> None:
    signed = bundle(tmp_path)
    assert verify_manifest(signed, KEY)["version"] == "v1"
    assert verify_manifest(signed)["version"] == "v1"  # without a key: sums only, as before


def test_an_unsigned_bundle_is_refused_when_a_key_is_configured(tmp_path: Path) -> None:
    unsigned = bundle(tmp_path, signing_key=None)
    assert not (unsigned / SIGNATURE).exists()
    verify_manifest(unsigned)
    with pytest.raises(BundleError, match="unsigned"):
        verify_manifest(unsigned, KEY)


def test_another_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="signature does not match"):
        verify_manifest(bundle(tmp_path), b"someone else's key")


def test_a_tampered_file_with_recomputed_sums_is_refused(tmp_path: Path) -> None:
    signed = bundle(tmp_path)
    signature = (signed / SIGNATURE).read_text()
    (signed / "policy.json").write_text('{"t_pass": 0.9}')  # the attacker's change
    write_manifest(signed)  # ...with the sums recomputed (no key: the old signature is dropped)
    verify_manifest(signed)  # sums alone cannot tell
    with pytest.raises(BundleError, match="unsigned"):
        verify_manifest(signed, KEY)
    (signed / SIGNATURE).write_text(signature)  # ...or the old signature put back
    with pytest.raises(BundleError, match="signature does not match"):
        verify_manifest(signed, KEY)


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIAGE_BUNDLE_SIGNING_KEY", raising=False)
    assert signing_key_from_env() is None
    monkeypatch.setenv("TRIAGE_BUNDLE_SIGNING_KEY", "k")
    assert signing_key_from_env() == b"k"
