"""Bundle directory integrity: the manifest of sha256 sums that serving checks before loading.

A bundle is a directory `models/<version>/`; `manifest.json` lists every other file in it with its
sha256. A bundle whose files do not match their manifest is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

MANIFEST = "manifest.json"


class BundleError(RuntimeError):
    """The bundle is missing, incomplete or does not match its manifest."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_files(bundle_dir: Path) -> list[Path]:
    return sorted(p for p in bundle_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(bundle_dir: str | Path, version: str | None = None) -> dict:
    """(Re)write manifest.json with the sha256 of every file in the bundle; atomic replace."""
    bundle_dir = Path(bundle_dir)
    previous = read_manifest(bundle_dir) if (bundle_dir / MANIFEST).exists() else {}
    manifest = {
        "version": version or previous.get("version") or bundle_dir.name,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {p.relative_to(bundle_dir).as_posix(): sha256_file(p) for p in _bundle_files(bundle_dir)},
    }
    durable_replace(bundle_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
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


def verify_manifest(bundle_dir: str | Path) -> dict:
    """Check every file listed in the manifest exists with the listed sha256; return the manifest."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle {bundle_dir}: not a directory")
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


def resolve_bundle(path: str | Path) -> Path:
    """Resolve a bundle path or the `models/latest` pointer to the real bundle directory."""
    path = Path(path)
    if path.is_symlink() or path.is_dir():
        return path.resolve()
    pointer = path.with_suffix(".txt") if path.suffix == "" else path
    if pointer.is_file():
        return (pointer.parent / pointer.read_text().strip()).resolve()
    raise BundleError(f"bundle {path}: not found")
