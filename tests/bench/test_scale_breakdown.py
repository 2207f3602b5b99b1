"""`bench/scale_breakdown.py`'s stage profile runs against the service's current scoring API."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale_breakdown import STAGES, stage_shares


def test_stage_shares_profile_the_served_scoring_path(bundle_dir: Path, tmp_path: Path) -> None:
    shares = stage_shares(bundle_dir, f"sqlite:///{tmp_path / 'log.db'}", batch=4, repeats=3)
    assert set(shares) == set(STAGES)
    assert all(share > 0 for share in shares.values())  # every stage ran, nested ones counted once
    assert sum(shares.values()) == pytest.approx(1.0)
