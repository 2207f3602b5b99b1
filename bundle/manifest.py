"""Bundle directory integrity: the manifest of sha256 sums that serving checks before loading.

A bundle is a directory `models/<version>/`; `manifest.json` lists every other file in it with its
sha256. A bundle whose files do not match their manifest is refused.

Signing: with a key (`TRIAGE_BUNDLE_SIGNING_KEY`), `manifest.sig` holds the HMAC-SHA256 of the manifest's
bytes. The sums alone only catch accidents: whoever can change a file can recompute them. A verifier
given the key refuses a bundle without a signature or with a wrong one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from pathlib import Path

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNING_KEY_ENV = "TRIAGE_BUNDLE_SIGNING_KEY"


class BundleError(RuntimeError):
    """The bundle is missing, incomplete or does not match its manifest."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_files(bundle_dir: Path) -> list[Path]:
    return sorted(p for p in bundle_dir.rglob("*") if p.is_file() and p.name not in (MANIFEST, SIGNATURE))


def signing_key_from_env() -> bytes | None:
    """The bundle signing key from the environment (`TRIAGE_BUNDLE_SIGNING_KEY`), or None when unset."""
    key = os.environ.get(SIGNING_KEY_ENV, "")
    return key.encode() if key else None


def manifest_signature(manifest_bytes: bytes, signing_key: bytes) -> str:
    return "hmac-sha256:" + hmac.new(signing_key, manifest_bytes, hashlib.sha256).hexdigest()


def write_manifest(bundle_dir: str | Path, version: str | None = None, signing_key: bytes | None = None) -> dict:
    """(Re)write manifest.json with the sha256 of every file in the bundle; atomic replace. With a
    signing key, also write its signature; without one, remove a signature the new manifest would break."""
    bundle_dir = Path(bundle_dir)
    previous = read_manifest(bundle_dir) if (bundle_dir / MANIFEST).exists() else {}
    manifest = {
        "version": version or previous.get("version") or bundle_dir.name,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {p.relative_to(bundle_dir).as_posix(): sha256_file(p) for p in _bundle_files(bundle_dir)},
    }
    text = json.dumps(manifest, indent=2, sort_keys=True)
    durable_replace(bundle_dir / MANIFEST, text)
    if signing_key:
        durable_replace(bundle_dir / SIGNATURE, manifest_signature(text.encode(), signing_key) + "\n")
    else:
        (bundle_dir / SIGNATURE).unlink(missing_ok=True)
    return manifest


def durable_replace(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically and durably: the file is fsynced before the rename and the
    directory after it, so a crash leaves the old file or the new one, never an empty or torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_manifest(bundle_dir: str | Path) -> dict:
    path = Path(bundle_dir) / MANIFEST
    if not path.exists():
        raise BundleError(f"bundle {bundle_dir}: no {MANIFEST}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} is not valid JSON ({exc})") from exc


def verify_manifest(bundle_dir: str | Path, signing_key: bytes | None = None) -> dict:
    """Check every file listed in the manifest exists with the listed sha256, and with a signing key that
    the manifest carries a valid signature; return the manifest."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle {bundle_dir}: not a directory")
    if signing_key:
        verify_signature(bundle_dir, signing_key)
    manifest = read_manifest(bundle_dir)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"bundle {bundle_dir}: manifest lists no files")
    for name, expected in sorted(files.items()):
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"bundle {bundle_dir}: file {name} listed in the manifest is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle {bundle_dir}: checksum mismatch for {name} (manifest {expected[:12]}…, file {actual[:12]}…)"
            )
    return manifest


def verify_signature(bundle_dir: Path, signing_key: bytes) -> None:
    """Refuse a bundle whose manifest is unsigned or not signed with `signing_key`."""
    manifest_path, signature_path = bundle_dir / MANIFEST, bundle_dir / SIGNATURE
    if not manifest_path.is_file():
        raise BundleError(f"bundle {bundle_dir}: no {MANIFEST}")
    if not signature_path.is_file():
        raise BundleError(
            f"bundle {bundle_dir}: unsigned ({SIGNATURE} missing) while a signing key is configured; "
            f"sign it by training or re-writing its manifest with {SIGNING_KEY_ENV} set"
        )
    expected = manifest_signature(manifest_path.read_bytes(), signing_key)
    if not hmac.compare_digest(signature_path.read_text().strip(), expected):
        raise BundleError(
            f"bundle {bundle_dir}: manifest signature does not match (tampered, or signed with another key)"
        )


def resolve_bundle(path: str | Path) -> Path:
    """Resolve a bundle path or the `models/latest` pointer to the real bundle directory."""
    path = Path(path)
    if path.is_symlink() or path.is_dir():
        return path.resolve()
    pointer = path.with_suffix(".txt") if path.suffix == "" else path
    if pointer.is_file():
        return (pointer.parent / pointer.read_text().strip()).resolve()
    raise BundleError(f"bundle {path}: not found")
