"""Backtest a rule change on labelled history, and certify a block rule's precision before it acts.

History is a frame of held-out labelled listings already scored by the bundle (`history.parquet` in
every bundle: the listing columns, `label` 0/1, calibrated `risk` and `tier_risk_<tier>` per tier,
`review_seconds` and `inclusion_prob` when known). A backtest never rescores: it matches the rules
once per rule and routes the same risks twice, before and after the change, through
`decision.policy.route` with the inputs the service uses (the segment's threshold pair, every tier's
risk against its t_pass, enforced rules first), so what it reports is what the service would do.

Bounds (valid at every sample size):
* Unweighted rows: Clopper-Pearson (1934) intervals on a binomial proportion, the same Beta quantiles
  as the threshold guarantees (`decision.guarantees.precision_lower`).
* Rows with an inclusion probability below 1 (audit-sampled labels): each row counts for 1 / pi
  listings, and the bounds are those of the test by betting of `decision.weighted.share_lower` (one
  test on the weighted rows, inverted into a bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from dataclasses import replace as dataclass_replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from decision.guarantees import DEFAULT_REVIEW_SECONDS, precision_lower
from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW, DECISIONS, Policy, route
from decision.rules import Rule, TextColumn
from decision.weighted import Strata, share_lower, weighted_share
from features.config import INCLUSION_PROB

RISK, LABEL, REVIEW_SECONDS = "risk", "label", "review_seconds"
TIER_RISK_PREFIX = "tier_risk_"  # history.parquet's per-tier risk column: tier_risk_<tier>
SCORED_TIER_PREFIX = "risk_"  # the same in reference / `triage score` frames, read when the other is absent
# What the thresholds certify when a policy carries no targets (hand-set thresholds keep the replaced ones)
DEFAULT_BLOCK_PRECISION, DEFAULT_CONFIDENCE = 0.98, 0.95


@dataclass(frozen=True)
class RuleCertificate:
    """A rule's precision on labelled history and whether its one-sided lower bound reaches `target`.

    hits: history rows the rule matches; labelled_hits: those with a label; violations: labelled hits
    that are violations; precision: violations / labelled hits (Horvitz-Thompson when weighted);
    lower: the (1 - alpha) lower confidence bound; NaN precision and lower when no hit is labelled."""

    rule: str
    hits: int
    labelled_hits: int
    violations: int
    precision: float
    lower: float
    target: float
    alpha: float
    certified: bool
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}

    def summary(self) -> str:
        precision = "n/a" if math.isnan(self.precision) else f"{self.precision:.4f}"
        lower = "n/a" if math.isnan(self.lower) else f"{self.lower:.4f}"
        verdict = "certified" if self.certified else "NOT certified"
        return (
            f"rule {self.rule!r}: {self.hits} hits ({self.labelled_hits} labelled, {self.violations} violations), "
            f"precision {precision}, lower bound {lower} at {1 - self.alpha:.1%} vs target {self.target:g}: {verdict}"
        )


def certify_rule_precision(history: pd.DataFrame, rule: Rule, target: float, alpha: float) -> RuleCertificate:
    """One-sided exact lower confidence bound on `rule`'s precision (the share of the listings it matches
    that are violations) from labelled `history`; certified when the bound is at least `target`.

    Method (Clopper & Pearson 1934). Model: the history rows are independent draws from traffic and the
    rule is fixed before looking at their labels (a rule mined from the same rows needs other rows to
    certify it). Given m labelled hits, the violations among them are X ~ Binomial(m, p) with p the
    rule's precision on traffic. The bound is L(X) = Beta^-1(alpha; X, m - X + 1) (0 for X = 0), the p'
    that solves P_p'(X' >= X) = alpha. Proof sketch of coverage: L is increasing in X, so the event
    {L(X) > p} is {X >= k*} for the least k* with L(k*) > p; P_p'(X >= k*) increases with p', hence
    P_p(X >= k*) <= P_L(k*)(X >= k*) = alpha, i.e. P(L(X) <= p) >= 1 - alpha for every p and m.
    With inclusion probabilities below 1 each row counts 1 / pi times and the bound is the stratified
    betting bound of `decision.weighted.share_lower` (its module docstring has that proof).
    """
    _check_history(history, (LABEL,))
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: {alpha!r} must be strictly between 0 and 1")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target: {target!r} must be in (0, 1]")
    hits = rule.match_texts(_texts(history, rule.columns), len(history))
    return _certificate(rule.name, hits, _Labels.of(history), target, alpha)


def _certificate(name: str, hits: np.ndarray, labels: _Labels, target: float, alpha: float) -> RuleCertificate:
    labelled = hits & labels.known
    violations = labelled & labels.violating
    n, k = int(labelled.sum()), int(violations.sum())
    if labels.strata is None:
        precision = k / n if n else float("nan")
        lower = precision_lower(k, n, alpha)
        method = "Clopper-Pearson exact binomial (one-sided)"
    else:
        strata = labels.strata
        kept, lost = strata.counts(violations), strata.counts(labelled & ~labels.violating)
        precision = weighted_share(kept, lost, strata.pi) if n else float("nan")
        lower = float(share_lower(kept, lost, strata.pi, alpha)[0]) if n else float("nan")
        method = "test by betting, rows weighted by 1/inclusion_prob (one-sided)"
    return RuleCertificate(
        rule=name,
        hits=int(hits.sum()),
        labelled_hits=n,
        violations=k,
        precision=float(precision),
        lower=float(lower),
        target=float(target),
        alpha=float(alpha),
        certified=bool(n > 0 and lower >= target),
        method=method,
    )


def block_target(policy: Policy) -> tuple[float, float]:
    """(block-precision target, alpha) a block rule is certified at: the policy's own block target, at the
    one-sided level its block threshold is certified at ((1 - confidence) / 2: the thresholds split the
    error budget between recall and block precision). Hand-set thresholds keep the replaced targets."""
    targets = policy.targets or policy.guarantee.get("replaced_targets") or {}
    target = float(targets.get("block_precision", DEFAULT_BLOCK_PRECISION))
    confidence = float(targets.get("confidence", DEFAULT_CONFIDENCE))
    return target, (1.0 - confidence) / 2.0


def blocks(rule: Rule) -> bool:
    """Whether a rule would be in force as an auto-block."""
    return rule.action == "block" and rule.acts


def new_block_rules(old: Policy, new: Policy) -> list[Rule]:
    """Rules of `new` that would auto-block and do not already do so, identically, in `old`: the ones
    that must earn it (a change elsewhere in the policy never re-tests a rule already in force)."""
    before = {r.name: r for r in old.rules if blocks(r)}
    return [r for r in new.rules if blocks(r) and before.get(r.name) != r]


# --- backtest ------------------------------------------------------------------------------------------


def backtest(
    history: pd.DataFrame,
    policy: Policy,
    rule: Rule | None = None,
    replace: str | None = None,
    remove: str | None = None,
    segment_by: Sequence[str] = (),
    alpha: float = 0.05,
) -> dict[str, Any]:
    """What a rule change would have done on labelled history: routing before and after, the rule's hits,
    precision and recall with exact two-sided (1 - alpha) intervals, reviewer-hours, misses and wrongful
    blocks, overall and per value of each `segment_by` column.

    `rule` is added (or replaces the rule of the same name, or the rule named `replace`, in place);
    `remove` drops a rule. The tested rule acts as enabled and enforced, whatever its mode. Only rules
    that act (enabled, enforce) route. Raises ValueError("<field>: <problem>") for bad input.
    """
    _check_history(history, (RISK, LABEL))
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: {alpha!r} must be strictly between 0 and 1")
    before_rules = list(policy.rules)
    after_rules = changed_rules(before_rules, rule, replace, remove)
    columns = list(segment_by)
    for column in columns:
        if column not in history:
            raise ValueError(f"segment_by: history has no column {column!r}")
    if rule is not None:
        _check_rule_columns(rule, history)
    n = len(history)
    acting_before = [r for r in before_rules if r.acts]
    acting_after = [r for r in after_rules if r.acts or r is rule]
    unique = list({id(r): r for r in [*acting_before, *acting_after]}.values())
    texts = _texts(history, sorted({c for r in unique for c in r.columns}))
    masks = {id(r): r.match_texts(texts, n) for r in unique}
    inputs = _RoutingInputs.of(history, policy)
    codes_before = inputs.route(_rule_masks(acting_before, masks, n))
    codes_after = inputs.route(_rule_masks(acting_after, masks, n))
    labels = _Labels.of(history)
    seconds = _review_seconds(history)
    whole = _Groups.whole(n)
    target, cert_alpha = block_target(policy)
    result: dict[str, Any] = {
        "rows": n,
        "labelled_rows": int(labels.known.sum()),
        "violations": int((labels.known & labels.violating).sum()),
        "weighted": labels.strata is not None,
        "alpha": alpha,
        "interval": (
            "two-sided exact: Clopper-Pearson (1934)"
            if labels.strata is None
            else "two-sided: tests by betting, rows weighted by 1/inclusion_prob"
        ),
        "review_seconds": "from history" if REVIEW_SECONDS in history else f"{DEFAULT_REVIEW_SECONDS:g} s per review",
        "change": _describe(rule, replace, remove, before_rules),
        "rules_before": [r.name for r in acting_before],
        "rules_after": [r.name for r in acting_after],
        "before": _routing(codes_before, labels, seconds, whole)[0],
        "after": _routing(codes_after, labels, seconds, whole)[0],
        "moved": _moves(codes_before, codes_after),
        "warnings": [
            f"rule {r.name!r} reads {[c for c in r.columns if c not in history]}, which history lacks: it matches "
            "nothing here"
            for r in unique
            if any(c not in history for c in r.columns)
        ],
    }
    result["delta"] = _delta(result["before"], result["after"])
    if rule is not None:
        result["rule"] = _rule_stats(rule, masks[id(rule)], codes_before, labels, alpha, whole)[0]
        if rule.action == "block":
            result["certificate"] = _certificate(rule.name, masks[id(rule)], labels, target, cert_alpha).to_dict()
    removed = next((r for r in before_rules if r.name == remove), None) if remove else None
    if removed is not None and id(removed) in masks:
        result["removed"] = _rule_stats(removed, masks[id(removed)], codes_after, labels, alpha, whole)[0]
    result["segments"] = {
        column: _per_segment(history[column], codes_before, codes_after, labels, seconds, rule, masks, alpha)
        for column in columns
    }
    return result


def _check_rule_columns(rule: Rule, history: pd.DataFrame) -> None:
    """ValueError naming the rule's field that asks for a column history lacks: `rule.fields`,
    `rule.column`, `rule.kind` (a match rule reads the derived `product_match`), or the same inside
    `rule.all[i]`."""
    conditions = [(f"rule.all[{i}]", c) for i, c in enumerate(rule.all)] if rule.kind == "all" else [("rule", rule)]
    for where, condition in conditions:
        absent = [c for c in condition.columns if c not in history]
        if absent:
            field = {"term": "fields", "match": "kind"}.get(condition.kind, "column")
            raise ValueError(f"{where}.{field}: history has no column {absent} (it has {sorted(history.columns)})")


def changed_rules(rules: list[Rule], rule: Rule | None, replace: str | None, remove: str | None) -> list[Rule]:
    """`rules` with `remove` dropped and `rule` put in place of `replace` (or of its namesake), else appended."""
    names = [r.name for r in rules]
    if rule is None and remove is None:
        raise ValueError("rule: give a rule to test, or the name of one to remove")
    if remove is not None and remove not in names:
        raise ValueError(f"remove: the policy has no rule named {remove!r} (it has {names})")
    if replace is not None and replace not in names:
        raise ValueError(f"replace: the policy has no rule named {replace!r} (it has {names})")
    if replace is not None and rule is None:
        raise ValueError("rule: replace names the rule to replace; give the rule that replaces it")
    if rule is not None:
        rule.validate("rule")
    out = [r for r in rules if r.name != remove]
    if rule is None:
        return out
    slot = replace if replace is not None else rule.name
    out = [r for r in out if r.name != rule.name or r.name == slot]  # one rule of a name
    index = next((i for i, r in enumerate(out) if r.name == slot), None)
    if index is None:
        return [*out, rule]
    return [*out[:index], rule, *out[index + 1 :]]


def _describe(rule: Rule | None, replace: str | None, remove: str | None, rules: list[Rule]) -> dict[str, Any]:
    names = {r.name for r in rules}
    replaced = replace if replace is not None else (rule.name if rule is not None and rule.name in names else None)
    return {
        "rule": rule.to_dict() if rule is not None else None,
        "replaces": replaced,
        "removes": remove,
        "kind": "remove" if rule is None else ("replace" if replaced else "add"),
    }


@dataclass(frozen=True)
class _Labels:
    known: np.ndarray  # bool: the row has a label
    violating: np.ndarray  # bool: label == 1
    weight: np.ndarray  # 1 / inclusion_prob (1 without it)
    strata: Strata | None  # sampling strata, only when some row was sampled (pi < 1)

    @classmethod
    def of(cls, history: pd.DataFrame) -> _Labels:
        label = pd.to_numeric(history[LABEL], errors="coerce").to_numpy(dtype=np.float64)
        known = np.isfinite(label)
        if not np.isin(label[known], (0.0, 1.0)).all():
            raise ValueError("history: column 'label' must hold 0 (approved), 1 (rejected) or be empty")
        strata = None
        weight = np.ones(len(history))
        if INCLUSION_PROB in history:
            pi = history[INCLUSION_PROB].fillna(1.0).to_numpy(dtype=np.float64)
            found = Strata.of(pi)
            if found.weighted:
                strata, weight = found, 1.0 / pi
        return cls(known, known & (label == 1.0), weight, strata)


@dataclass(frozen=True)
class _RoutingInputs:
    """Everything `route` takes besides the rule masks, read from history as the service reads a listing."""

    risk: np.ndarray
    t_pass: np.ndarray
    t_block: np.ndarray
    tier_risk: np.ndarray | None
    tier_pass: np.ndarray | None

    @classmethod
    def of(cls, history: pd.DataFrame, policy: Policy) -> _RoutingInputs:
        n = len(history)
        if policy.segment_by and policy.segment_by in history:
            t_pass, t_block = policy.thresholds_for(history[policy.segment_by].astype(str).to_numpy())
        else:
            t_pass, t_block = np.full(n, policy.t_pass), np.full(n, policy.t_block)
        names = list(policy.tier_pass)
        tier_risk = None
        if names:
            columns = [_tier_risk_column(history, name) for name in names]
            tier_risk = np.column_stack([history[c].to_numpy(dtype=np.float64) for c in columns])
        risk = history[RISK].to_numpy(dtype=np.float64)
        return cls(risk, t_pass, t_block, tier_risk, policy.tier_pass_vector(names))

    def route(self, rule_masks: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return route(self.risk, self.t_pass, self.t_block, rule_masks[0], rule_masks[1], self.tier_risk, self.tier_pass)


def _tier_risk_column(history: pd.DataFrame, tier: str) -> str:
    for column in (TIER_RISK_PREFIX + tier, SCORED_TIER_PREFIX + tier):
        if column in history:
            return column
    raise ValueError(
        f"history: the policy sets a t_pass for tier {tier!r} but history has no {TIER_RISK_PREFIX}{tier} column"
    )


def _rule_masks(rules: list[Rule], masks: Mapping[int, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    block, review = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for rule in rules:
        (block if rule.action == "block" else review)[masks[id(rule)]] = True
    return block, review


def _routing(codes: np.ndarray, labels: _Labels, seconds: np.ndarray, groups: _Groups) -> list[dict[str, Any]]:
    """Per group of rows: routing split (rows and traffic shares), reviewer-hours, misses and wrongful
    blocks, recall and block precision (traffic-weighted), all from one pass of `np.bincount`s."""
    code = codes.astype(np.int64)
    w = labels.weight
    counts = groups.cells(code, 3)
    weighted = groups.cells(code, 3, w)
    passed, blocked = code == CODE_PASS, code == CODE_BLOCK
    bad, good = labels.known & labels.violating, labels.known & ~labels.violating
    hours = groups.sums(seconds * w * (code == CODE_REVIEW)) / 3600.0
    missed, wrongful = groups.sums(passed & bad), groups.sums(blocked & good)
    w_violations, w_missed = groups.sums(w * bad), groups.sums(w * (passed & bad))
    w_blocked, w_wrong = groups.sums(w * (blocked & labels.known)), groups.sums(w * (blocked & good))
    out = []
    for g in range(groups.count):
        total = float(weighted[g].sum())
        out.append(
            {
                "counts": {name: int(counts[g, i]) for i, name in enumerate(DECISIONS)},
                "shares": {name: float(weighted[g, i] / total) if total else 0.0 for i, name in enumerate(DECISIONS)},
                "reviewer_hours": float(hours[g]),
                "missed_violations": int(round(missed[g])),
                "wrongful_blocks": int(round(wrongful[g])),
                "recall": 1.0 - float(w_missed[g] / w_violations[g]) if w_violations[g] else None,
                "block_precision": 1.0 - float(w_wrong[g] / w_blocked[g]) if w_blocked[g] else None,
            }
        )
    return out


@dataclass(frozen=True)
class _Groups:
    """Rows split into groups (one group: the whole history; else the values of a segment column)."""

    index: np.ndarray  # (n,) int64 group of each row
    keys: list[str]

    @classmethod
    def whole(cls, n: int) -> _Groups:
        return cls(np.zeros(n, dtype=np.int64), ["all"])

    @classmethod
    def of(cls, values: pd.Series) -> _Groups:
        index, uniques = pd.factorize(values.astype("string").fillna(""), sort=True)
        return cls(np.asarray(index, dtype=np.int64), [str(u) for u in uniques])

    @property
    def count(self) -> int:
        return len(self.keys)

    def sums(self, values: np.ndarray) -> np.ndarray:
        """(G,) sum of `values` per group."""
        return np.bincount(self.index, weights=np.asarray(values, dtype=np.float64), minlength=self.count)

    def cells(self, code: np.ndarray, width: int, weights: np.ndarray | None = None) -> np.ndarray:
        """(G, width) count (or sum of `weights`) of rows per group and `code` in [0, width)."""
        flat = np.bincount(self.index * width + code, weights=weights, minlength=self.count * width)
        return flat.reshape(self.count, width)


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "counts": {k: after["counts"][k] - before["counts"][k] for k in DECISIONS},
        "shares": {k: after["shares"][k] - before["shares"][k] for k in DECISIONS},
        "reviewer_hours": after["reviewer_hours"] - before["reviewer_hours"],
        "missed_violations": after["missed_violations"] - before["missed_violations"],
        "wrongful_blocks": after["wrongful_blocks"] - before["wrongful_blocks"],
    }


def _moves(before: np.ndarray, after: np.ndarray) -> dict[str, int]:
    """Rows whose decision the change moves, by 'from->to'."""
    cells = np.bincount(before.astype(np.int64) * 3 + after.astype(np.int64), minlength=9)
    return {f"{DECISIONS[i // 3]}->{DECISIONS[i % 3]}": int(c) for i, c in enumerate(cells) if c and i // 3 != i % 3}


def _rule_stats(
    rule: Rule, hits: np.ndarray, codes_otherwise: np.ndarray, labels: _Labels, alpha: float, groups: _Groups
) -> list[dict[str, Any]]:
    """Per group: a rule's hits, precision and recall with exact intervals, and `hits_otherwise`: the
    decisions its hits get from the policy without it (before an added rule, after a removed one): how
    many the model and the other rules would review or block anyway."""
    bad = labels.known & labels.violating
    labelled_hits = hits & labels.known
    hit_bad, hit_good, missed_bad = hits & bad, labelled_hits & ~labels.violating, bad & ~hits
    precision = _shares(hit_bad, hit_good, labels, alpha, groups)
    recall = _shares(hit_bad, missed_bad, labels, alpha, groups)
    otherwise = groups.cells(codes_otherwise.astype(np.int64), 3, hits.astype(np.float64))
    n_hits, n_labelled, n_bad = groups.sums(hits), groups.sums(labelled_hits), groups.sums(hit_bad)
    w_hits, w_all = groups.sums(labels.weight * hits), groups.sums(labels.weight)
    return [
        {
            "name": rule.name,
            "action": rule.action,
            "hits": int(round(n_hits[g])),
            "hit_share": float(w_hits[g] / w_all[g]) if w_all[g] else 0.0,
            "labelled_hits": int(round(n_labelled[g])),
            "violations": int(round(n_bad[g])),
            "precision": precision[g],
            "recall": recall[g],
            "hits_otherwise": {name: int(round(otherwise[g, i])) for i, name in enumerate(DECISIONS)},
        }
        for g in range(groups.count)
    ]


def _shares(
    kept: np.ndarray, lost: np.ndarray, labels: _Labels, alpha: float, groups: _Groups
) -> list[dict[str, float | None]]:
    """Per group, kept / (kept + lost) with a two-sided (1 - alpha) exact interval (each side alpha / 2)."""
    none: dict[str, float | None] = {"value": None, "lower": None, "upper": None}
    if labels.strata is None:
        k_g = groups.sums(kept).round().astype(np.int64)
        m_g = groups.sums(lost).round().astype(np.int64)
        return [
            {
                "value": int(k) / int(k + m),
                "lower": precision_lower(int(k), int(k + m), alpha / 2),
                "upper": 1.0 - precision_lower(int(m), int(k + m), alpha / 2),
            }
            if k + m
            else dict(none)
            for k, m in zip(k_g.tolist(), m_g.tolist(), strict=True)
        ]
    strata = labels.strata
    h = len(strata.pi)
    k_gh = groups.cells(strata.index, h, kept.astype(np.float64)).round()
    m_gh = groups.cells(strata.index, h, lost.astype(np.float64)).round()
    lower = share_lower(k_gh, m_gh, strata.pi, alpha / 2)
    upper = 1.0 - share_lower(m_gh, k_gh, strata.pi, alpha / 2)
    return [
        {"value": weighted_share(k_gh[g], m_gh[g], strata.pi), "lower": float(lower[g]), "upper": float(upper[g])}
        if k_gh[g].sum() + m_gh[g].sum()
        else dict(none)
        for g in range(groups.count)
    ]


def _per_segment(
    values: pd.Series,
    codes_before: np.ndarray,
    codes_after: np.ndarray,
    labels: _Labels,
    seconds: np.ndarray,
    rule: Rule | None,
    masks: Mapping[int, np.ndarray],
    alpha: float,
) -> dict[str, Any]:
    groups = _Groups.of(values)
    rows = np.bincount(groups.index, minlength=groups.count)
    before = _routing(codes_before, labels, seconds, groups)
    after = _routing(codes_after, labels, seconds, groups)
    rule_stats = _rule_stats(rule, masks[id(rule)], codes_before, labels, alpha, groups) if rule is not None else None
    out = {}
    for g, key in enumerate(groups.keys):
        entry: dict[str, Any] = {
            "rows": int(rows[g]),
            "before": before[g],
            "after": after[g],
            "delta": _delta(before[g], after[g]),
        }
        if rule_stats is not None:
            entry["rule"] = rule_stats[g]
        out[key] = entry
    return out


def _review_seconds(history: pd.DataFrame) -> np.ndarray:
    """Each row's handling time: the history's, a missing one the median of the known (the default when none)."""
    if REVIEW_SECONDS not in history:
        return np.full(len(history), DEFAULT_REVIEW_SECONDS)
    seconds = pd.to_numeric(history[REVIEW_SECONDS], errors="coerce").to_numpy(dtype=np.float64)
    known = np.isfinite(seconds) & (seconds >= 0)
    if known.all():
        return seconds
    fill = float(np.median(seconds[known])) if known.any() else DEFAULT_REVIEW_SECONDS
    return np.where(known, seconds, fill)


def _texts(history: pd.DataFrame, columns: Sequence[str]) -> dict[str, TextColumn]:
    """The rule columns history has, as arrow text ("" where missing), the form the matcher takes."""
    return {
        c: pa.array(history[c].astype("string").fillna(""), type=pa.large_string()) for c in columns if c in history
    }


def _check_history(history: pd.DataFrame, needed: Sequence[str]) -> None:
    if not isinstance(history, pd.DataFrame):
        raise ValueError("history: expected a DataFrame")
    for column in needed:
        if column not in history:
            raise ValueError(f"history: missing column {column!r}")


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# --- the shipped rules ---------------------------------------------------------------------------------


def certify_shipped_rules(history: pd.DataFrame, policy: Policy) -> tuple[Policy, dict[str, Any]]:
    """Measure every rule of a policy about to ship on the held-out labelled rows, as a block rule is
    measured before it goes into force: a block rule whose precision is not certified at the policy's
    block-precision target ships as a review rule. Returns (the policy as shipped, the rules report):
    per rule its certificate, its precision and recall, and the workload it adds under the policy's
    thresholds (the difference between the shipped policy and the same without the rule)."""
    target, alpha = block_target(policy)
    shipped: list[Rule] = []
    warnings: list[str] = []
    certificates = []
    for rule in policy.rules:
        certificate = certify_rule_precision(history, rule, target, alpha)
        certificates.append(certificate)
        if blocks(rule) and not certificate.certified:
            rule = dataclass_replace(rule, action="review")
            warnings.append(
                f"shipped rule {rule.name!r} asked to auto-block but its precision is not certified "
                f"({certificate.summary()}): it ships as a review rule"
            )
        shipped.append(rule)
    final = dataclass_replace(policy, rules=shipped).validate()
    entries = []
    for requested, rule, certificate in zip(policy.rules, shipped, certificates, strict=True):
        without = backtest(history, final, remove=rule.name)
        adds = {
            # what removing the rule takes away, with the sign turned (0.0 - x: no "-0.0")
            "queue_share": 0.0 - without["delta"]["shares"]["human_review"],
            "auto_block_share": 0.0 - without["delta"]["shares"]["auto_block"],
            "reviewer_hours": 0.0 - without["delta"]["reviewer_hours"],
            "violations_caught": without["delta"]["missed_violations"],
            "wrongful_blocks": 0 - without["delta"]["wrongful_blocks"],
        }
        entries.append(
            {
                "name": rule.name,
                "action_requested": requested.action,
                "action_shipped": rule.action,
                "certificate": certificate.to_dict(),
                "precision": without["removed"]["precision"],
                "recall": without["removed"]["recall"],
                "hits_otherwise": without["removed"]["hits_otherwise"],
                "adds": adds,
            }
        )
    report = {
        "rows": len(history),
        "violations": int(pd.to_numeric(history[LABEL], errors="coerce").eq(1).sum()),
        "block_precision_target": target,
        "alpha": alpha,
        "thresholds": {"t_pass": final.t_pass, "t_block": final.t_block, "tier_pass": dict(final.tier_pass)},
        "rules": entries,
        "warnings": warnings,
    }
    return final, report


# --- sources -------------------------------------------------------------------------------------------

SOURCES = ("history", "log", "both")
SOURCE_COLUMN = "row_source"  # in a mixed frame: "history" or "log", a column segment_by can name


def mixed_history(history: pd.DataFrame | None, log: pd.DataFrame | None, id_column: str) -> pd.DataFrame:
    """The labelled rows of both sources in one frame, with `row_source` saying where each came from. A
    listing of the logged decisions that is also in history (rescored held-out rows) is kept once, from
    history: the bundle's own row, labelled by the original review."""
    parts = []
    if history is not None:
        parts.append(history.assign(**{SOURCE_COLUMN: "history"}))
    if log is not None:
        if history is not None and id_column in history and id_column in log:
            log = log[~log[id_column].astype(str).isin(history[id_column].astype(str))]
        parts.append(log.assign(**{SOURCE_COLUMN: "log"}))
    if not parts:
        raise ValueError("source: neither history nor the decision log has rows")
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
