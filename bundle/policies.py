"""Policies kept in a bundle directory: `policies/<version>.json` for every version, `policy.json` for
the current one, and the bundle manifest re-signed after each change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bundle.manifest import MANIFEST, durable_replace, verify_manifest, write_manifest
from decision.policy import Policy

POLICY_FILE = "policy.json"
POLICY_HISTORY_DIR = "policies"


def next_policy_version(bundle_dir: str | Path, now: datetime | None = None, taken: int = 0) -> str:
    """'policy-YYYYMMDDTHHMMSS-<n>': n counts on from the highest version kept in the bundle, past the
    `taken` versions made since outside it (those a service's store holds), so it increases."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    history = Path(bundle_dir) / POLICY_HISTORY_DIR
    counters = (
        [int(p.stem.rsplit("-", 1)[1]) for p in history.glob("policy-*-*.json") if p.stem.rsplit("-", 1)[1].isdigit()]
        if history.is_dir()
        else []
    )
    return f"policy-{stamp}-{max(counters, default=0) + taken + 1}"


def save_policy(bundle_dir: str | Path, policy: Policy, signing_key: bytes | None = None) -> Path:
    """Write `policies/<version>.json` (never overwriting another policy) and `policy.json`, then the
    bundle manifest. Returns the path of the versioned file.

    A bundle that already has a manifest must still match it: re-signing would bless files that were
    tampered with since the bundle was written.
    """
    bundle_dir = Path(bundle_dir)
    policy.validate()
    if (bundle_dir / MANIFEST).exists():
        verify_manifest(bundle_dir, signing_key)
    text = json.dumps(policy.to_dict(), indent=2, sort_keys=True)
    history = bundle_dir / POLICY_HISTORY_DIR
    history.mkdir(parents=True, exist_ok=True)
    versioned = history / f"{policy.version}.json"
    if versioned.exists() and versioned.read_text() != text:
        raise ValueError(f"version: policy {policy.version} already exists in {bundle_dir} with other content")
    durable_replace(versioned, text)
    durable_replace(bundle_dir / POLICY_FILE, text)
    write_manifest(bundle_dir, signing_key=signing_key)
    return versioned


def load_policy(bundle_dir: str | Path) -> Policy:
    path = Path(bundle_dir) / POLICY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"bundle {bundle_dir}: no {POLICY_FILE}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    return Policy.from_dict(raw)


def policy_versions(bundle_dir: str | Path) -> list[str]:
    """Every policy version kept in the bundle, oldest first."""
    history = Path(bundle_dir) / POLICY_HISTORY_DIR
    files = history.glob("*.json") if history.is_dir() else []
    return [p.stem for p in sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))]
