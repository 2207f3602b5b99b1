"""Routing policy: rules, then thresholds on calibrated risk -> auto_pass / human_review / auto_block.

One pure function (`route`) that the service, the simulator and the evaluation all call, so a
simulation can never disagree with what the service would do. A `Policy` is data (thresholds, optional
per-segment thresholds, rules, audit sampling plan, review-quality plan); `bundle.policies` keeps every
version in the bundle.
Which automated decisions are audited, and with what probability, is `decision.audit`'s.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from decision.audit import MIN_AUDIT_RATE, AuditPlan
from decision.review_quality import QualityPlan
from decision.rules import DERIVED_COLUMNS, Rule

AUTO_PASS, HUMAN_REVIEW, AUTO_BLOCK = "auto_pass", "human_review", "auto_block"
# A tiered policy's overall t_pass sits just below 1 (it passes nothing on its own): the tiers' thresholds
# decide. A policy with tier thresholds but a real overall t_pass (one target over every violation, set on
# a tiered bundle; a hand-set pair) passes only below both.
TIERED_T_PASS = 1.0 - 1e-9
DECISIONS: tuple[str, str, str] = (AUTO_PASS, HUMAN_REVIEW, AUTO_BLOCK)  # index = int8 code
CODE_PASS, CODE_REVIEW, CODE_BLOCK = np.int8(0), np.int8(1), np.int8(2)


def route(
    risk: np.ndarray,
    t_pass: float | np.ndarray,
    t_block: float | np.ndarray,
    rule_block: np.ndarray | None = None,
    rule_review: np.ndarray | None = None,
    tier_risk: np.ndarray | None = None,
    tier_pass: np.ndarray | None = None,
) -> np.ndarray:
    """Decision codes (int8: 0 auto_pass, 1 human_review, 2 auto_block) for each listing.

    Rules first (a block rule wins over a review rule), then thresholds: risk < t_pass passes,
    risk >= t_block blocks, the rest is queued. With tiers (`tier_risk` (n, K), `tier_pass` (K,)), a
    listing passes only when, besides, every tier's risk is below that tier's t_pass, so each tier's
    recall guarantee holds whatever the other tiers do. A risk that is NaN or infinite is queued, block
    rule or not (fail safe: nothing that could not be scored is ever decided automatically).
    """
    risk = np.asarray(risk, dtype=np.float64)
    codes = np.full(risk.shape, CODE_REVIEW, dtype=np.int8)
    finite = np.isfinite(risk)
    passing = finite & (risk < t_pass)
    if tier_pass is not None and len(tier_pass):
        if tier_risk is None:
            passing[:] = False  # tier thresholds without tier risks: nothing can be shown to pass
        else:
            below = np.asarray(tier_risk, dtype=np.float64) < np.asarray(tier_pass, dtype=np.float64)
            passing &= below.all(axis=1)  # NaN compares False: an unscored tier never passes
    codes[passing] = CODE_PASS
    codes[finite & (risk >= t_block)] = CODE_BLOCK
    if rule_review is not None:
        codes[np.asarray(rule_review, dtype=bool)] = CODE_REVIEW
    if rule_block is not None:
        codes[np.asarray(rule_block, dtype=bool) & finite] = CODE_BLOCK
    return codes


def thresholds_in_words(
    t_pass: float | None, t_block: float | None, tier_pass: Mapping[str, float] | None = None
) -> str:
    """The thresholds that decide, as people read them: "t_pass 0.05  t_block 0.98"; on a tiered policy
    (overall t_pass from TIERED_T_PASS up, or unknown) t_block and each tier's own pass threshold,
    "t_block 0.98  pass thresholds per tier: 'minor' 0.0129, 'severe' 0.00129"; tier thresholds beside a
    real overall t_pass follow the pair (a pass needs both)."""
    pair = f"t_pass {threshold_in_words(t_pass)}  t_block {threshold_in_words(t_block)}"
    if not tier_pass:
        return pair
    each = ", ".join(f"'{name}' {threshold_in_words(value)}" for name, value in tier_pass.items())
    if t_pass is None or t_pass >= TIERED_T_PASS:
        return f"t_block {threshold_in_words(t_block)}  pass thresholds per tier: {each}"
    return f"{pair}  pass thresholds per tier: {each}"


def threshold_in_words(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def driving_tier(codes: np.ndarray, tier_risk: np.ndarray | None, tier_pass: np.ndarray | None) -> np.ndarray:
    """Index of the tier behind each decision (-1: none): for a block, the likeliest violation type (the
    highest tier risk); for a review, the tier furthest above its t_pass (risk / t_pass); none for a pass."""
    codes = np.asarray(codes)
    driver = np.full(codes.shape, -1, dtype=np.int64)
    if tier_risk is None or tier_pass is None or not len(tier_pass):
        return driver
    tier_risk = np.nan_to_num(np.asarray(tier_risk, dtype=np.float64), nan=1.0)
    ratio = tier_risk / np.maximum(np.asarray(tier_pass, dtype=np.float64), 1e-12)
    driver = np.where(codes == CODE_BLOCK, tier_risk.argmax(axis=1), ratio.argmax(axis=1))
    return np.where(codes == CODE_PASS, -1, driver)


def decision_names(codes: np.ndarray) -> np.ndarray:
    """int8 codes -> decision strings."""
    return np.asarray(DECISIONS, dtype=object)[np.asarray(codes, dtype=np.int64)]


HAND_SET = "hand_set"  # the guarantee `mode` of thresholds a person set


@dataclass
class Policy:
    """Thresholds (global, per segment, per tier), rules and audit sampling, versioned.

    `qa_sample_rate` is the audit floor: the inclusion probability of an automated decision far from
    its threshold, and the least any automated decision gets; `audit` sets the higher rates where errors
    are likelier and the audit lane's age limit (`decision.audit.AuditPlan`); `quality` the rates of blind
    second review and gold items (`decision.review_quality.QualityPlan`).
    """

    version: str
    t_pass: float
    t_block: float
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    segment_by: str | None = None
    segments: dict[str, tuple[float, float]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    qa_sample_rate: float = 0.02
    # per-tier auto-pass thresholds on each tier's risk (empty: the overall risk alone decides)
    tier_pass: dict[str, float] = field(default_factory=dict)
    targets: dict[str, Any] = field(default_factory=dict)
    provisional: bool = False
    guarantee: dict[str, Any] = field(default_factory=dict)
    audit: AuditPlan = field(default_factory=AuditPlan)
    quality: QualityPlan = field(default_factory=QualityPlan)

    @property
    def guarantee_state(self) -> str:
        """What the thresholds promise: 'certified' (targets held with the stated confidence on the
        calibration split), 'provisional, not certified' (targets could not be met), 'hand_set, not
        certified' (set by a person: no statistical guarantee), or 'none' (no record)."""
        if self.guarantee.get("mode") == HAND_SET:
            return f"{HAND_SET}, not certified"
        if not self.guarantee:
            return "none"
        if self.provisional or not self.guarantee.get("feasible", True):
            return "provisional, not certified"
        return "certified"

    def validate(self, columns: Collection[str] | None = None) -> Policy:
        """Check the policy; with `columns` (what every listing carries), also that each rule reads
        only those columns."""
        if not isinstance(self.version, str) or not self.version:
            raise ValueError("version: must be a non-empty string")
        _check_pair(self.t_pass, self.t_block, "t_pass", "t_block")
        if self.segments and not self.segment_by:
            raise ValueError("segment_by: per-segment thresholds need the column they are keyed by")
        for name, pair in self.segments.items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"segments[{name!r}]: expected (t_pass, t_block)")
            _check_pair(pair[0], pair[1], f"segments[{name!r}].t_pass", f"segments[{name!r}].t_block")
        for i, rule in enumerate(self.rules):
            if not isinstance(rule, Rule):
                raise ValueError(f"rules[{i}]: expected a Rule")
            rule.validate(f"rules[{i}]")
            missing = [c for c in rule.columns if columns is not None and c not in columns and c not in DERIVED_COLUMNS]
            if missing:
                raise ValueError(
                    f"rules[{i}]: rule {rule.name!r} reads columns {missing} that listings do not carry "
                    f"(they carry {sorted(columns or [])}); a rule never falls back to another column"
                )
        for name, value in self.tier_pass.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"tier_pass[{name!r}]: {value!r} is not in [0, 1)")
        rate = self.qa_sample_rate
        if not isinstance(rate, (int, float)) or not math.isfinite(rate) or not MIN_AUDIT_RATE <= rate <= 1.0:
            raise ValueError(
                f"qa_sample_rate: {rate!r} is not in [{MIN_AUDIT_RATE}, 1] (every automated decision keeps a "
                "known, non-zero chance of audit)"
            )
        if not isinstance(self.audit, AuditPlan):
            raise ValueError("audit: expected an AuditPlan")
        self.audit.validate()
        if not isinstance(self.quality, QualityPlan):
            raise ValueError("quality: expected a QualityPlan")
        self.quality.validate()
        return self

    def tier_pass_vector(self, tier_names: list[str]) -> np.ndarray | None:
        """The tier thresholds in the bundle's tier order (None: the policy has none). A tier the policy
        does not name gets 0: nothing passes on it (fail safe)."""
        if not self.tier_pass or not tier_names:
            return None
        return np.array([self.tier_pass.get(name, 0.0) for name in tier_names], dtype=np.float64)

    def thresholds_for(self, segment_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-listing (t_pass, t_block) arrays; a segment without its own pair gets the global pair."""
        values = np.asarray(segment_values).astype(str)
        t_pass = np.full(values.shape, self.t_pass, dtype=np.float64)
        t_block = np.full(values.shape, self.t_block, dtype=np.float64)
        if not self.segments or values.size == 0:
            return t_pass, t_block
        uniques, inverse = np.unique(values, return_inverse=True)
        pairs = np.array([self.segments.get(u, (self.t_pass, self.t_block)) for u in uniques], dtype=np.float64)
        inverse = inverse.reshape(-1)
        return pairs[inverse, 0].reshape(values.shape), pairs[inverse, 1].reshape(values.shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "t_pass": float(self.t_pass),
            "t_block": float(self.t_block),
            "segment_by": self.segment_by,
            "segments": {k: [float(a), float(b)] for k, (a, b) in sorted(self.segments.items())},
            "rules": [r.to_dict() for r in self.rules],
            "qa_sample_rate": float(self.qa_sample_rate),
            "tier_pass": {k: float(v) for k, v in self.tier_pass.items()},
            "targets": dict(self.targets),
            "provisional": bool(self.provisional),
            "guarantee": dict(self.guarantee),
            "audit": self.audit.to_dict(),
            "quality": self.quality.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Policy:
        if not isinstance(raw, dict):
            raise ValueError(f"policy: expected a mapping, got {type(raw).__name__}")
        for key in ("version", "t_pass", "t_block"):
            if key not in raw:
                raise ValueError(f"{key}: missing")
        segments = raw.get("segments") or {}
        if not isinstance(segments, dict):
            raise ValueError("segments: expected a mapping of segment -> [t_pass, t_block]")
        policy = cls(
            version=raw["version"],
            t_pass=_as_float(raw["t_pass"], "t_pass"),
            t_block=_as_float(raw["t_block"], "t_block"),
            created_at=raw.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
            segment_by=raw.get("segment_by"),
            segments={str(k): _as_pair(v, f"segments[{k!r}]") for k, v in segments.items()},
            rules=[Rule.from_dict(r, f"rules[{i}]") for i, r in enumerate(raw.get("rules") or [])],
            qa_sample_rate=_as_float(raw.get("qa_sample_rate", 0.02), "qa_sample_rate"),
            tier_pass={str(k): _as_float(v, f"tier_pass[{k!r}]") for k, v in _mapping(raw, "tier_pass").items()},
            targets=dict(raw.get("targets") or {}),
            provisional=bool(raw.get("provisional", False)),
            guarantee=dict(raw.get("guarantee") or {}),
            audit=AuditPlan.from_dict(raw.get("audit")),
            quality=QualityPlan.from_dict(raw.get("quality")),
        )
        return policy.validate()


def versioned_rules(current: Sequence[Rule], rules: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rules` (dicts, any version they carry ignored) with each rule's version set: a rule named as one
    in `current` keeps its version when nothing else changed and gets the next one when anything did;
    a rule with a new name starts at 1. The version of a rule is the server's, never the client's."""
    before = {rule.name: rule.to_dict() for rule in current}
    versioned = []
    for raw in rules:
        content = {k: v for k, v in raw.items() if k != "version"}
        old = before.get(raw.get("name", ""))
        if old is None:
            versioned.append({**content, "version": 1})
        else:
            same = _without_version(old) == _canonical(content)
            versioned.append({**content, "version": old["version"] if same else old["version"] + 1})
    return versioned


def _without_version(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k != "version"}


def _canonical(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A rule dict as the policy stores it (defaults filled in), without its version; None if invalid
    (`Policy.from_dict` then refuses it, naming the field)."""
    try:
        return _without_version(Rule.from_dict(raw).to_dict())
    except (ValueError, TypeError):
        return None


def _mapping(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{key}: expected a mapping, got {value!r}")
    return value


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _as_pair(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name}: expected [t_pass, t_block]")
    return _as_float(value[0], f"{name}.t_pass"), _as_float(value[1], f"{name}.t_block")


def _check_pair(t_pass: Any, t_block: Any, pass_name: str, block_name: str) -> None:
    for value, name in ((t_pass, pass_name), (t_block, block_name)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: {value!r} is not a finite number")
    if not 0.0 <= t_pass < 1.0:
        raise ValueError(f"{pass_name}: {t_pass!r} is not in [0, 1)")
    if not 0.0 < t_block <= 1.0:
        raise ValueError(f"{block_name}: {t_block!r} is not in (0, 1]")
    if not t_pass < t_block:
        raise ValueError(f"{block_name}: {t_block!r} must be greater than {pass_name} {t_pass!r}")
