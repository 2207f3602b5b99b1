"""The what-if simulator behind `/v1/simulate`: the bundle's reference set replayed through a policy.

The numbers are `decision.simulate`'s, the very functions `triage simulate` runs, so the API, the web
page, the CLI and the notebook agree. What is slow and does not change between calls is computed once
per bundle (path + manifest version) and kept: the reference frame, the rule masks of each rule set
(regex matching dominates a replay), the per-segment slices and the thresholds chosen for targets.

Tiered bundles: the reference carries `tier` and `risk_<tier>`, and the policy's per-tier thresholds
route it (see `decision.simulate`). A what-if keeps the tier thresholds in force unless it names some
(`tier_pass`), and its t_pass / t_block replace the overall pair only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bundle.load import REFERENCE_FILE, Bundle, read_reference
from decision.policy import Policy
from decision.rules import Rule, match_rule_masks
from decision.simulate import (
    SimulationResult,
    has_block_rule,
    policy_tier_targets,
    reference_tiers,
    rules_not_applied,
    simulate,
    sweep,
    target_mode_policy,
    target_mode_targets,
    with_thresholds,
)
from decision.thresholds import ThresholdResult, choose_policy_thresholds

_MAX_CACHED_RULE_SETS = 16
_MAX_CACHED_TARGETS = 256


class ScenarioError(ValueError):
    """A scenario that cannot be simulated; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Slice:
    """Reference rows to replay (all, or one segment) with their rule masks and share of all rows."""

    frame: pd.DataFrame
    rule_block: np.ndarray
    rule_review: np.ndarray
    share: float


class ReferenceSet:
    """One bundle's reference frame plus the derived arrays worth keeping between calls."""

    def __init__(self, path: Path, version: str, frame: pd.DataFrame, segment_columns: tuple[str, ...]):
        self.path, self.version, self.frame = path, version, frame
        self.segment_columns = tuple(c for c in segment_columns if c in frame)
        self.prevalence = float(frame["label"].mean()) if len(frame) else 0.0
        self.tiers = reference_tiers(frame)  # [] for an untiered bundle
        self.routed_tiers = reference_tiers(frame, scored_only=True)
        self._lock = threading.Lock()
        self._masks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._segment_rows: dict[tuple[str, str], np.ndarray] = {}
        self._chosen: dict[tuple[float, float], ThresholdResult] = {}

    def tier_violations(self) -> dict[str, int]:
        """Violating reference rows per tier."""
        if not self.tiers:
            return {}
        violating = self.frame.loc[self.frame["label"].astype(bool), "tier"].astype(str)
        return {name: int((violating == name).sum()) for name in self.tiers}

    def segment_values(self) -> dict[str, list[str]]:
        return {c: sorted(self.frame[c].dropna().astype(str).unique().tolist()) for c in self.segment_columns}

    def rule_masks(self, rules: list[Rule]) -> tuple[np.ndarray, np.ndarray]:
        key = json.dumps([r.to_dict() for r in rules], sort_keys=True)
        with self._lock:
            cached = self._masks.get(key)
        if cached is None:
            block, review = match_rule_masks(self.frame, rules)
            cached = (block, review)
            with self._lock:
                if len(self._masks) >= _MAX_CACHED_RULE_SETS:
                    self._masks.clear()
                self._masks[key] = cached
        return cached

    def slice(self, rules: list[Rule], segment_by: str | None = None, segment: str | None = None) -> Slice:
        """All rows, or the rows whose `segment_by` is `segment`."""
        block, review = self.rule_masks(rules)
        if segment is None:
            return Slice(self.frame, block, review, 1.0)
        column = self._segment_column(segment_by)
        rows = self._rows_of(column, segment)
        return Slice(self.frame.iloc[rows], block[rows], review[rows], len(rows) / len(self.frame))

    def _segment_column(self, segment_by: str | None) -> str:
        if segment_by is None:
            raise ScenarioError("segment_by", "give the column that `segment` is a value of")
        if segment_by not in self.segment_columns:
            raise ScenarioError("segment_by", f"{segment_by!r} is not one of {list(self.segment_columns)}")
        return segment_by

    def _rows_of(self, column: str, value: str) -> np.ndarray:
        with self._lock:
            rows = self._segment_rows.get((column, value))
        if rows is None:
            rows = np.flatnonzero(self.frame[column].astype(str).to_numpy() == value)
            if len(rows) == 0:
                raise ScenarioError("segment", f"no reference listing has {column} = {value!r}")
            with self._lock:
                self._segment_rows[(column, value)] = rows
        return rows

    def choose(self, recall: float, block_precision: float) -> ThresholdResult:
        """`choose_policy_thresholds` for these targets (the CLI's call), computed once per pair."""
        key = (recall, block_precision)
        with self._lock:
            chosen = self._chosen.get(key)
        if chosen is None:
            chosen = choose_policy_thresholds(self.frame, recall=recall, block_precision=block_precision)
            with self._lock:
                if len(self._chosen) >= _MAX_CACHED_TARGETS:
                    self._chosen.clear()
                self._chosen[key] = chosen
        return chosen


@lru_cache(maxsize=4)
def reference_set(
    path: Path, version: str, segment_columns: tuple[str, ...], id_column: str, listing_columns: tuple[str, ...]
) -> ReferenceSet:
    """The bundle's reference set with the columns its rules read (`bundle.load.read_reference`), read
    once per (bundle path, version)."""
    if not (path / REFERENCE_FILE).is_file():
        raise FileNotFoundError(f"bundle {path} has no {REFERENCE_FILE}")
    return ReferenceSet(path, version, read_reference(path, id_column, listing_columns), segment_columns)


def bundle_reference(bundle: Bundle) -> ReferenceSet:
    """`reference_set` of a loaded bundle: the one cached copy the simulator, the monitor and the start-up
    routing line share."""
    config = bundle.config
    return reference_set(bundle.path, bundle.version, tuple(config.segments), config.id, tuple(config.listing_columns))


def what_if_policy(
    current: Policy,
    reference: ReferenceSet,
    t_pass: float | None = None,
    t_block: float | None = None,
    recall: float | None = None,
    block_precision: float | None = None,
    tier_pass: Mapping[str, float] | None = None,
) -> tuple[Policy, ThresholdResult | None]:
    """The policy a scenario simulates, exactly as `triage simulate` builds it: the policy in force;
    or its rules with thresholds chosen for targets; or with thresholds in place of its own
    (`decision.simulate.with_thresholds`: in a tiered policy, t_pass / t_block are the overall pair and
    `tier_pass` replaces the named tiers' thresholds). Target mode chooses one overall pair (the
    untiered guarantee): each tier's recall under it is reported, not targeted."""
    if recall is not None or block_precision is not None:
        recall, block_precision, _ = target_mode_targets(current, recall, block_precision)
        chosen = reference.choose(recall, block_precision)
        return target_mode_policy(chosen, current), chosen
    if t_pass is None and t_block is None and not tier_pass:
        return current, None
    try:
        return with_thresholds(current, reference.routed_tiers, t_pass, t_block, tier_pass), None
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise ScenarioError(field, message) from exc


def run(
    reference: ReferenceSet,
    policy: Policy,
    *,
    daily_volume: float,
    productive_hours_per_fte: float,
    prevalence_multiplier: float,
    segment_by: str | None = None,
    segment: str | None = None,
    breakdown_by: str | None = None,
) -> SimulationResult:
    """`simulate_policy` on the cached reference (rule masks precomputed). With a segment, only its rows
    are replayed and `daily_volume` (the whole marketplace's) is scaled by the segment's share of rows."""
    if breakdown_by is not None and breakdown_by not in reference.segment_columns:
        raise ScenarioError("breakdown_by", f"{breakdown_by!r} is not one of {list(reference.segment_columns)}")
    part = reference.slice(policy.rules, segment_by, segment)
    t_pass: float | np.ndarray = policy.t_pass
    t_block: float | np.ndarray = policy.t_block
    if policy.segment_by and policy.segment_by in part.frame:
        t_pass, t_block = policy.thresholds_for(part.frame[policy.segment_by].astype(str).to_numpy())
    try:
        result = simulate(
            part.frame,
            t_pass,
            t_block,
            daily_volume * part.share,
            productive_hours_per_fte,
            prevalence_multiplier,
            qa_sample_rate=policy.qa_sample_rate,
            audit=policy.audit,
            rule_block=part.rule_block if has_block_rule(policy.rules) else None,
            rule_review=part.rule_review,
            breakdown_by=breakdown_by,
            tier_pass=policy.tier_pass,
            tier_targets=policy_tier_targets(policy),
        )
    except ValueError as exc:  # prevalence_weights: multiplier x prevalence must stay below 1
        raise ScenarioError("prevalence_multiplier", str(exc).partition(": ")[2] or str(exc)) from exc
    return replace(result, rules_not_applied=rules_not_applied(part.frame, policy.rules))


def curve(
    reference: ReferenceSet,
    policy: Policy,
    *,
    daily_volume: float,
    productive_hours_per_fte: float,
    prevalence_multiplier: float,
    segment_by: str | None = None,
    segment: str | None = None,
    n_points: int = 400,
) -> pd.DataFrame:
    """The workload-recall curve (`sweep`: t_pass swept at the policy's t_block, with its rules' masks, cached
    per rule set) on the same rows."""
    part = reference.slice(policy.rules, segment_by, segment)
    try:
        return sweep(
            part.frame,
            policy.t_block,
            daily_volume * part.share,
            productive_hours_per_fte,
            prevalence_multiplier,
            n_points=n_points,
            rule_block=part.rule_block,
            rule_review=part.rule_review,
        )
    except ValueError as exc:
        raise ScenarioError("prevalence_multiplier", str(exc).partition(": ")[2] or str(exc)) from exc


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN -> None)."""
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict(orient="records")
