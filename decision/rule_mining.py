"""Rule suggestions mined from verdicts: candidate conditions found on one part of the labelled history,
certified on another, ranked by certified precision and by the review workload they would remove.

Candidate families (all mined on the older part of the history, the *mining rows*):

* term: a word or two-word phrase of the text columns (lower-cased whole words, as a term rule matches
  them) over-represented among rejects, with at least `min_support` listings;
* brand_price: a brand word (from the brand column) with a price under a fraction of that brand's median
  price in the category: `all[term brand, category, range price < x]` (the counterfeit pattern: a luxury
  brand far under its norm). The relative price is no listing column, so each band is an absolute
  price, computed per brand and category from the mining rows;
* merchant: a merchant with many rejects (a category-kind rule on the merchant column);
* category: a category, or a category in one market;
* tree: a root-to-leaf path of a shallow decision tree (depth <= 3) over the numeric listing columns and
  the categoricals (target-encoded, so a split is a set of values), as an "all" rule;
* refined: the best term, brand and merchant conditions narrowed by the leaves of a depth-2 tree fitted
  on their own hits (e.g. a term on listings with few images), as "all" rules;
* term_set: one term rule listing every mined term of high precision (a term list learnt from verdicts).

Hold-out discipline. Choosing the best of many candidates on some rows and quoting their precision on
the same rows overstates it (the winner's curse: the maximum of many noisy estimates is biased upwards,
and a confidence bound computed after the selection is not a confidence bound). So the history is split
by time: candidates are found and chosen on the older `mine_share` of the rows, and only the chosen K are
evaluated, once each, on the newer rows, which took no part in the choice. Time order also matches use:
a rule mined from the past acts on future listings.

Multiplicity (Bonferroni). For each of the K candidates the certified precision is the Clopper-Pearson
lower bound at level alpha/K on the held-out rows: L_k = Beta^{-1}(alpha/K; v_k, h_k - v_k + 1) with h_k
hits and v_k violations among them (Clopper & Pearson 1934; Bonferroni 1936, e.g. Lehmann & Romano,
*Testing Statistical Hypotheses*, 3rd ed., sec. 9.1). Sketch: given the mining rows, the K rules are
fixed, and the held-out rows are independent of them (exchangeable with the future). Conditional on h_k,
v_k ~ Binomial(h_k, p_k) with p_k the rule's precision, so P(L_k > p_k) <= alpha/K for each k (the exact
Clopper-Pearson guarantee), and by the union bound P(some L_k > p_k) <= K * alpha/K = alpha. Hence with
probability >= 1 - alpha every reported certified precision holds at once, whichever suggestions a reader
then picks from the list. tests/decision/test_rule_mining.py checks this coverage by simulation. alpha
defaults to the level the policy's block rules are certified at ((1 - confidence) / 2,
`decision.backtest.block_target`), the level the block-rule gate tests a rule at when a person adds it
(once, on the whole history: a separate test, which a suggestion certified here usually passes).

Effects are measured on the held-out rows against the policy in force (`route`, rules and thresholds,
as the service decides): as a block rule, the hits the policy would otherwise send to human review
(items and reviewer-hours removed from the queue; recall is unchanged, since a blocked listing is not
passed) and the passed hits it would block; as a review rule, the extra violations it catches among the
listings the policy passes and the review workload it adds. Each suggestion can carry its backtest
(`decision.backtest.backtest`) on the same held-out rows.

Nothing here changes a policy: a suggestion is a rule a person reads, backtests and then adds (PUT
/v1/policy/rules/{name} with a reason); it is reported with `enabled: false`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.tree import DecisionTreeClassifier

from decision.backtest import (
    LABEL,
    REVIEW_SECONDS,
    RISK,
    SCORED_TIER_PREFIX,
    TIER_RISK_PREFIX,
    RuleCertificate,
    backtest,
    block_target,
    certify_rule_precision,
)
from decision.guarantees import DEFAULT_REVIEW_SECONDS
from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW, Policy, route
from decision.rules import Rule, match_rule_masks
from features.config import DataConfig
from features.lexicon import normalize_category

# A suggestion is written disabled: only a person enables a rule.
_DISABLED = {"enabled": False}
FAMILIES = ("term", "term_set", "brand_price", "merchant", "category", "tree", "refined")
SORTS = ("precision", "workload")
PRICE_BANDS = (0.15, 0.25, 0.4, 0.6)  # price under this fraction of the brand's median price in a category
TREE_DEPTH = 3
# A whole word as a term rule sees it: word characters, with inner punctuation kept ("c.u.r.e.s", "sw!tch").
TOKEN = re.compile(r"\b\w[\w.!@'+-]*\w\b")  # two characters or more


@dataclass(frozen=True)
class MiningOptions:
    """How much to mine and how strictly to certify (defaults suit tens of thousands of labelled rows)."""

    min_support: int = 20  # least hits on the mining rows for a candidate
    merchant_support: int = 10  # least listings of a merchant on the mining rows for a merchant candidate
    term_set_precision: float = 0.9  # a term joins the "term set" candidate at this precision on the mining rows
    term_set_support: int = 5  # ... and this many hits
    min_mined_precision: float = 0.5  # least precision on the mining rows to be worth certifying
    max_candidates: int = 60  # K: candidates certified on the held-out rows (the Bonferroni divisor)
    per_family: int = 25  # candidates kept per family before de-duplication
    refine: int = 10  # the best term, brand and merchant candidates narrowed by a depth-2 tree ("refined")
    mine_share: float = 0.5  # the older share of the history mined on; the rest certifies
    max_mining_rows: int = 200_000  # mine on at most this many of those rows, the newest (bounds the time)
    alpha: float | None = None  # all bounds hold together at 1 - alpha (default: the policy's block-rule level)
    block_precision: float | None = None  # target to certify a block rule at (default: the policy's)
    max_overlap: float = 0.9  # a candidate whose mining hits overlap a better one's this much is dropped
    brand_column: str = "brand"
    price_column: str = "price"

    def validate(self) -> MiningOptions:
        checks = {
            "min_support": self.min_support >= 1,
            "merchant_support": self.merchant_support >= 1,
            "term_set_precision": 0.0 < self.term_set_precision <= 1.0,
            "term_set_support": self.term_set_support >= 1,
            "min_mined_precision": 0.0 <= self.min_mined_precision <= 1.0,
            "max_candidates": self.max_candidates >= 1,
            "per_family": self.per_family >= 1,
            "refine": self.refine >= 0,
            "mine_share": 0.0 < self.mine_share < 1.0,
            "max_mining_rows": self.max_mining_rows >= 2,
            "alpha": self.alpha is None or 0.0 < self.alpha < 1.0,
            "block_precision": self.block_precision is None or 0.0 < self.block_precision <= 1.0,
            "max_overlap": 0.0 < self.max_overlap <= 1.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"{bad[0]}: {getattr(self, bad[0])!r} is out of range")
        return self


@dataclass
class Candidate:
    """A condition found on the mining rows, with its hits there."""

    rule: Rule
    family: str
    description: str
    mask: np.ndarray  # hits on the mining rows
    violations: int = 0

    @property
    def hits(self) -> int:
        return int(self.mask.sum())


@dataclass
class Suggestion:
    """A certified candidate rule and what it would do; never enabled by mining."""

    rule: Rule
    family: str
    description: str
    mined: dict[str, Any]
    certificate: dict[str, Any]
    as_block: dict[str, Any]
    as_review: dict[str, Any]
    backtest: dict[str, Any] | None = None
    enabled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.rule.name,
            "rule": self.rule.to_dict(),
            "family": self.family,
            "description": self.description,
            "enabled": self.enabled,
            "mined": self.mined,
            "certificate": self.certificate,
            "as_block": self.as_block,
            "as_review": self.as_review,
            "backtest": self.backtest,
        }


@dataclass
class SuggestionReport:
    mining_rows: int
    holdout_rows: int
    split: str
    candidates_certified: int  # K
    alpha: float
    alpha_each: float
    block_precision_target: float
    queue: dict[str, Any]  # the held-out rows' queue under the policy in force
    suggestions: list[Suggestion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mining_rows": self.mining_rows,
            "holdout_rows": self.holdout_rows,
            "split": self.split,
            "candidates_certified": self.candidates_certified,
            "alpha": self.alpha,
            "alpha_each": self.alpha_each,
            "confidence_all": 1.0 - self.alpha,
            "method": "Clopper-Pearson lower bound at alpha/K (Bonferroni) on held-out rows, K candidates",
            "block_precision_target": self.block_precision_target,
            "queue": self.queue,
            "enabled": False,
            "how_to_enable": "review a suggestion, backtest it, then PUT /v1/policy/rules/{name} with a reason",
            "notes": self.notes,
            "suggestions": [s.to_dict() for s in self.suggestions],
        }

    def view(self, limit: int, min_precision: float = 0.0, sort: str = "precision") -> SuggestionReport:
        """The same report with only the first `limit` suggestions certified at >= `min_precision`, by `sort`."""
        return replace(self, suggestions=ranked(self.suggestions, sort, min_precision, limit))


def certified_lower(violations: np.ndarray, hits: np.ndarray, alpha: float, k: int) -> np.ndarray:
    """Clopper-Pearson lower bounds at level alpha/k, one per candidate (NaN without hits, 0 without
    violations): with probability >= 1 - alpha all k bounds hold together (see the module docstring)."""
    violations = np.asarray(violations, dtype=np.float64)
    hits = np.asarray(hits, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = stats.beta.ppf(alpha / k, violations, hits - violations + 1)
    lower = np.where(violations == 0, 0.0, lower)
    return np.where(hits == 0, np.nan, lower)


def _time_column(history: pd.DataFrame, config: DataConfig) -> str | None:
    return config.timestamp if config.timestamp and config.timestamp in history else None


def split_history(history: pd.DataFrame, config: DataConfig, mine_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mining rows, held-out rows): the older `mine_share` and the rest, by timestamp (else row order)."""
    ordered = history
    time_column = _time_column(history, config)
    if time_column:
        ordered = history.sort_values(time_column, kind="stable")
    cut = int(round(len(ordered) * mine_share))
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def suggest_rules(
    history: pd.DataFrame,
    policy: Policy,
    config: DataConfig,
    options: MiningOptions | None = None,
    *,
    limit: int = 20,
    min_precision: float = 0.0,
    sort: str = "precision",
    with_backtest: bool = True,
) -> SuggestionReport:
    """Mine candidate rules on the older rows of `history` (the bundle's `history.parquet`: `label`, the
    listing columns, `risk`, `tier_risk_<tier>`, `review_seconds`), certify the K best on the newer rows
    at alpha/K each (`decision.backtest.certify_rule_precision`), and return up to `limit` suggestions
    whose certified precision is >= `min_precision`, sorted by certified precision ("precision") or by
    reviewer-hours removed as a block rule ("workload"), each with its backtest on the newer rows."""
    options = (options or MiningOptions()).validate()
    if sort not in SORTS:
        raise ValueError(f"sort: {sort!r} is not one of {list(SORTS)}")
    if limit < 1:
        raise ValueError(f"limit: {limit!r} must be at least 1")
    _check_history(history)
    policy_target, policy_alpha = block_target(policy)
    target = options.block_precision or policy_target
    alpha = options.alpha or policy_alpha
    mining, holdout = split_history(history, config, options.mine_share)
    mining = mining.iloc[-options.max_mining_rows :].reset_index(drop=True)
    labels = mining[LABEL].to_numpy(dtype=np.int64)
    candidates = _select(mine_candidates(mining, labels, config, options), options)
    k = max(len(candidates), 1)
    baseline = policy_codes(holdout, policy)
    seconds = _review_seconds(holdout)
    held_labels = holdout[LABEL].to_numpy(dtype=np.int64)
    suggestions = []
    as_text = _as_text(holdout, [c for candidate in candidates for c in candidate.rule.columns])
    certificates = certify_together(as_text, [c.rule for c in candidates], target, alpha)
    for candidate, certificate in zip(candidates, certificates, strict=True):
        if certificate.labelled_hits and certificate.lower >= min_precision:
            mask = candidate.rule.match(as_text)
            suggestions.append(_suggestion(candidate, mask, certificate, baseline, held_labels, seconds))
    # a suggestion repeating a rule in force (same condition, same action) would tell nobody anything
    in_force = {(json.dumps(r.condition_dict(), sort_keys=True), r.action) for r in policy.rules if r.acts}
    suggestions = [
        s for s in suggestions if (json.dumps(s.rule.condition_dict(), sort_keys=True), s.rule.action) not in in_force
    ]
    suggestions = ranked(suggestions, sort, min_precision, limit)
    if with_backtest:
        for suggestion in suggestions:
            suggestion.backtest = backtest(holdout, policy, suggestion.rule)
    return SuggestionReport(
        mining_rows=len(mining),
        holdout_rows=len(holdout),
        split=f"by {_time_column(history, config) or 'row order'}: older {options.mine_share:.0%} mined, newer rows "
        "certify",
        candidates_certified=len(candidates),
        alpha=alpha,
        alpha_each=alpha / k,
        block_precision_target=target,
        queue=_queue_summary(baseline, seconds),
        suggestions=suggestions,
        notes=_notes(len(mining), len(holdout), len(candidates)),
    )


def _as_text(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The frame with `columns` already as the text rules read ("" where missing), so that matching
    many rules converts each column once: the same texts, hence the same matches."""
    converted = {c: frame[c].astype("string").fillna("") for c in dict.fromkeys(columns) if c in frame}
    return frame.assign(**converted)


def certify_together(
    holdout: pd.DataFrame, rules: Sequence[Rule], target: float, alpha: float
) -> list[RuleCertificate]:
    """Each rule's precision certificate on `holdout` at alpha / K (K = len(rules)): with probability at
    least 1 - alpha every lower bound holds at once (Bonferroni; see the module docstring). The rules must
    have been chosen without looking at `holdout`'s labels."""
    k = max(len(rules), 1)
    return [certify_rule_precision(holdout, rule, target, alpha / k) for rule in rules]


def _check_history(history: pd.DataFrame) -> None:
    missing = [c for c in (LABEL, RISK) if c not in history]
    if missing:
        raise ValueError(f"history: missing columns {missing} (labelled rows with the bundle's calibrated risk)")
    if len(history) < 4:
        raise ValueError(f"history: {len(history)} rows are too few to mine on one part and certify on another")


def ranked(suggestions: Sequence[Suggestion], sort: str, min_precision: float, limit: int) -> list[Suggestion]:
    """The first `limit` suggestions whose certified precision is >= `min_precision`: by certified
    precision ("precision"), or certified block rules first by reviewer-hours removed, then review rules by
    the violations they would catch among auto-passes and the hours they add ("workload")."""
    if sort not in SORTS:
        raise ValueError(f"sort: {sort!r} is not one of {list(SORTS)}")
    kept = [s for s in suggestions if s.certificate["lower"] is not None and s.certificate["lower"] >= min_precision]
    return sorted(kept, key=_sort_key(sort))[:limit]


def _sort_key(sort: str) -> Callable[[Suggestion], tuple[float, ...]]:
    def by_precision(s: Suggestion) -> tuple[float, ...]:
        return (-s.certificate["lower"], -s.as_block["reviewer_hours_removed"])

    def by_workload(s: Suggestion) -> tuple[float, ...]:
        if s.rule.action == "block":
            return (
                -float(s.certificate["certified"]),
                0.0,
                -s.as_block["reviewer_hours_removed"],
                -s.certificate["lower"],
            )
        # a review rule removes no work: after the block rules, the most violations it would catch among
        # the auto-passes first, then the fewest reviewer-hours it adds
        review = s.as_review
        return (0.0, 1.0, -review["extra_violations_caught"], review["reviewer_hours_added"], -s.certificate["lower"])

    return by_precision if sort == "precision" else by_workload


def _notes(mining: int, holdout: int, k: int) -> list[str]:
    notes = [
        f"candidates were chosen on {mining:,} older rows and certified once each on {holdout:,} newer rows: "
        "the bounds are not biased by the choice",
        f"each bound is at alpha/K with K = {k}: all certified precisions hold together",
    ]
    if holdout < 1000:
        notes.append(f"only {holdout:,} held-out rows: bounds are wide, few rules can be certified")
    return notes


# --- the policy in force on the held-out rows ---------------------------------------------------------


def policy_codes(frame: pd.DataFrame, policy: Policy) -> np.ndarray:
    """Decision codes of the policy (rules, per-segment and per-tier thresholds) on scored rows, as the
    service routes them (`route`); a tier risk the rows lack counts as unscored (nothing passes on it)."""
    risk = frame["risk"].to_numpy(dtype=np.float64)
    if policy.segment_by and policy.segment_by in frame:
        t_pass, t_block = policy.thresholds_for(frame[policy.segment_by].astype(str).to_numpy())
    else:
        t_pass, t_block = np.full(len(frame), policy.t_pass), np.full(len(frame), policy.t_block)
    tier_names = list(policy.tier_pass)
    tier_risk = None
    if tier_names:
        tier_risk = np.column_stack([_tier_risk(frame, name) for name in tier_names])
    rule_block, rule_review = match_rule_masks(frame, policy.rules)  # only the rules that act match
    return route(risk, t_pass, t_block, rule_block, rule_review, tier_risk, policy.tier_pass_vector(tier_names))


def _tier_risk(frame: pd.DataFrame, tier: str) -> np.ndarray:
    for column in (TIER_RISK_PREFIX + tier, SCORED_TIER_PREFIX + tier):
        if column in frame:
            return frame[column].to_numpy(dtype=np.float64)
    return np.full(len(frame), np.nan)


def _review_seconds(frame: pd.DataFrame) -> np.ndarray:
    if REVIEW_SECONDS in frame:
        seconds = pd.to_numeric(frame[REVIEW_SECONDS], errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(seconds).any():
            return np.where(np.isfinite(seconds), seconds, np.nanmedian(seconds))
    return np.full(len(frame), DEFAULT_REVIEW_SECONDS)


def _queue_summary(codes: np.ndarray, seconds: np.ndarray) -> dict[str, Any]:
    queue = codes == CODE_REVIEW
    return {
        "rows": int(len(codes)),
        "queue_items": int(queue.sum()),
        "queue_share": float(queue.mean()) if len(codes) else 0.0,
        "reviewer_hours": float(seconds[queue].sum() / 3600.0),
        "auto_pass_share": float((codes == CODE_PASS).mean()) if len(codes) else 0.0,
        "auto_block_share": float((codes == CODE_BLOCK).mean()) if len(codes) else 0.0,
    }


def _suggestion(
    candidate: Candidate,
    mask: np.ndarray,
    certificate: RuleCertificate,
    baseline: np.ndarray,
    labels: np.ndarray,
    seconds: np.ndarray,
) -> Suggestion:
    certified = certificate.certified
    queued, passed = mask & (baseline == CODE_REVIEW), mask & (baseline == CODE_PASS)
    queue = baseline == CODE_REVIEW
    queue_hours = float(seconds[queue].sum() / 3600.0)
    removed_hours = float(seconds[queued].sum() / 3600.0)
    rule = Rule.from_dict({**candidate.rule.to_dict(), "action": "block" if certified else "review", **_DISABLED})
    return Suggestion(
        rule=rule,
        family=candidate.family,
        description=candidate.description,
        mined={
            "hits": candidate.hits,
            "violations": candidate.violations,
            "precision": candidate.violations / candidate.hits,
        },
        certificate=certificate.to_dict(),
        as_block={
            "hits_in_queue": int(queued.sum()),
            "queue_share_removed": float(queued.sum() / max(int(queue.sum()), 1)),
            "reviewer_hours_removed": removed_hours,
            "reviewer_hours_share_removed": removed_hours / queue_hours if queue_hours else 0.0,
            "wrongful_blocks_among_queued": int((queued & (labels == 0)).sum()),
            "passed_hits_blocked": int(passed.sum()),
            "hits_already_blocked": int((mask & (baseline == CODE_BLOCK)).sum()),
        },
        as_review={
            "extra_violations_caught": int((passed & (labels == 1)).sum()),
            "workload_added_items": int(passed.sum()),
            "reviewer_hours_added": float(seconds[passed].sum() / 3600.0),
        },
    )


# --- mining ------------------------------------------------------------------------------------------


def mine_candidates(
    mining: pd.DataFrame, labels: np.ndarray, config: DataConfig, options: MiningOptions
) -> list[Candidate]:
    """Every family's candidates on the mining rows, each family's best `per_family` (by the mining
    rows' Clopper-Pearson lower bound at `alpha`, a ranking that weighs purity against support)."""
    terms = _term_candidates(mining, labels, config, options)
    brands = _brand_price_candidates(mining, labels, config, options)
    merchants = _merchant_candidates(mining, labels, config, options)
    families = [
        terms,
        _term_set(terms, labels, options),
        brands,
        merchants,
        _category_candidates(mining, labels, config, options),
        _tree_candidates(mining, labels, config, options),
    ]
    out: list[Candidate] = []
    alpha = options.alpha or 0.05  # ranking only: the bounds that count are computed on the held-out rows
    for family in families:
        out.extend(_best(family, options, alpha, options.per_family))
    parents = _best([*terms, *brands, *merchants], options, alpha, options.refine)
    out.extend(
        _best(
            _refined_candidates(_TreeInputs(mining, labels, config), labels, parents, options),
            options,
            alpha,
            options.per_family,
        )
    )
    return out


def _best(family: list[Candidate], options: MiningOptions, alpha: float, n: int) -> list[Candidate]:
    """The family's `n` best by the mining rows' lower bound, among those with the support and precision."""
    kept = [
        c for c in family if c.hits >= _support(c, options) and c.violations >= options.min_mined_precision * c.hits
    ]
    return sorted(kept, key=lambda c: -_mined_lower(c, alpha))[:n]


def _support(candidate: Candidate, options: MiningOptions) -> int:
    return options.merchant_support if candidate.family == "merchant" else options.min_support


def _mined_lower(candidate: Candidate, alpha: float) -> float:
    return float(certified_lower(np.array([candidate.violations]), np.array([candidate.hits]), alpha, 1)[0])


def _select(candidates: list[Candidate], options: MiningOptions) -> list[Candidate]:
    """The K best by the mining rows' lower bound, dropping one whose hits mostly repeat a better one's."""
    chosen: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: -_mined_lower(c, options.alpha or 0.05)):
        if len(chosen) == options.max_candidates:
            break
        if all(_overlap(candidate.mask, other.mask) < options.max_overlap for other in chosen):
            chosen.append(candidate)
    names: set[str] = set()
    for candidate in chosen:  # unique names: two conditions can slug alike ("sw!tch", "sw tch")
        name, n = candidate.rule.name, 2
        while name in names:
            name, n = f"{candidate.rule.name}_{n}", n + 1
        candidate.rule.name = name
        names.add(name)
    return chosen


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def _candidate(rule: Rule, family: str, description: str, mask: np.ndarray, labels: np.ndarray) -> Candidate:
    return Candidate(rule, family, description, mask, int(labels[mask].sum()))


def _slug(*parts: object) -> str:
    text = "_".join(str(p) for p in parts)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:80] or "rule"


def _term_candidates(
    mining: pd.DataFrame, labels: np.ndarray, config: DataConfig, options: MiningOptions
) -> list[Candidate]:
    """Words and two-word phrases of the text columns, counted once per listing over all of them."""
    fields = [c for c in config.text if c in mining]
    if not fields or not len(mining):
        return []
    texts = {c: mining[c].astype("string").fillna("").tolist() for c in fields}
    least = min(options.min_support, options.term_set_support)
    vectorizer = CountVectorizer(analyzer=_words_and_pairs, min_df=least, binary=True, dtype=np.int32)
    try:
        vectorizer.fit([t for c in fields for t in texts[c]])
    except ValueError:  # no term reaches the support
        return []
    present = sum(vectorizer.transform(texts[c]) for c in fields)
    present = (present > 0).tocsc()
    support = np.asarray(present.sum(axis=0)).ravel()
    rejects = np.asarray(present[labels == 1].sum(axis=0)).ravel()
    least_precision = min(options.min_mined_precision, options.term_set_precision)
    keep = np.flatnonzero((support >= least) & (rejects >= least_precision * np.maximum(support, 1)))
    vocabulary = vectorizer.get_feature_names_out()
    out = []
    for j in keep:
        term = str(vocabulary[j])
        mask = np.zeros(len(mining), dtype=bool)
        mask[present[:, j].indices] = True
        rule = Rule(name=_slug("mined_term", term), action="review", kind="term", terms=[term], fields=fields)
        out.append(_candidate(rule, "term", f"'{term}' in {', '.join(fields)}", mask, labels))
    return out


def _words_and_pairs(text: str) -> list[str]:
    """A text's words and the pairs of adjacent words with only spaces between them (so "asked. Built"
    gives no pair: a term rule "asked built" would never match it)."""
    text = text.lower()
    tokens = list(TOKEN.finditer(text))
    pairs = [
        f"{a.group()} {b.group()}"
        for a, b in zip(tokens, tokens[1:], strict=False)
        if text[a.end() : b.start()].isspace()
    ]
    return [t.group() for t in tokens] + pairs


def _term_set(terms: list[Candidate], labels: np.ndarray, options: MiningOptions) -> list[Candidate]:
    """One term rule with every mined term of high precision (`term_set_precision`, at least
    `term_set_support` hits), leaving out phrases that contain a shorter term of the set: a prohibited-term
    list learnt from verdicts, which catches rare terms no single-term candidate has the support for."""
    chosen = [
        t for t in terms if t.hits >= options.term_set_support and t.violations >= options.term_set_precision * t.hits
    ]
    words = {t.rule.terms[0] for t in chosen}
    kept = [t for t in chosen if not any(w != t.rule.terms[0] and w in t.rule.terms[0].split() for w in words)]
    if len(kept) < 2:
        return []
    mask = np.logical_or.reduce([t.mask for t in kept])
    listed = sorted(t.rule.terms[0] for t in kept)
    rule = Rule(name="mined_term_set", action="review", kind="term", terms=listed, fields=kept[0].rule.fields)
    shown = ", ".join(listed[:8]) + (f" and {len(listed) - 8} more" if len(listed) > 8 else "")
    return [_candidate(rule, "term_set", f"any of {len(listed)} terms ({shown})", mask, labels)]


def _normalized(column: pd.Series) -> np.ndarray:
    """The column's values normalised as category rules compare them (once per distinct value)."""
    text = column.astype("string").fillna("")
    uniques, inverse = np.unique(text.to_numpy(dtype=str), return_inverse=True)
    return np.array([normalize_category(u) for u in uniques], dtype=object)[inverse.reshape(-1)]


def _brand_price_candidates(
    mining: pd.DataFrame, labels: np.ndarray, config: DataConfig, options: MiningOptions
) -> list[Candidate]:
    """all[brand word in brand/title, category, price < f x the brand's median price there]."""
    brand_col, price_col = options.brand_column, options.price_column
    if brand_col not in mining or price_col not in mining:
        return []
    fields = [c for c in (brand_col, "title") if c in mining and c in (*config.text, brand_col)]
    as_text = _as_text(mining, fields)
    brands = mining[brand_col].astype("string").fillna("").str.strip()
    counts = brands[brands != ""].value_counts()
    price = pd.to_numeric(mining[price_col], errors="coerce").to_numpy(dtype=np.float64)
    category = _normalized(mining["category"]) if "category" in mining else None
    out = []
    for brand in counts[counts >= options.min_support].index:
        term = Rule(name="b", action="review", kind="term", terms=[str(brand)], fields=fields)
        branded = term.match(as_text)
        for cat in np.unique(category[branded]) if category is not None else [None]:
            rows = branded & (category == cat) if cat is not None else branded
            if rows.sum() < options.min_support or not np.isfinite(price[rows]).any():
                continue
            median = float(np.nanmedian(price[rows]))
            bands = []
            for fraction in PRICE_BANDS:
                ceiling = float(f"{fraction * median:.3g}")
                mask = rows & (price < ceiling)
                conditions: list[dict[str, Any]] = [term.condition_dict()]
                if cat is not None:
                    conditions.append({"kind": "category", "column": "category", "values": [str(cat)]})
                conditions.append({"kind": "range", "column": price_col, "max": ceiling})
                rule = Rule.from_dict(
                    {
                        "name": _slug("mined_brand", brand, cat or "", "under", ceiling),
                        "action": "review",
                        "kind": "all",
                        "all": conditions,
                    }
                )
                where = f" in {cat}" if cat is not None else ""
                share = f"{fraction:.0%} of its median {median:.4g}"
                bands.append(
                    _candidate(rule, "brand_price", f"brand '{brand}'{where} under {ceiling:g} ({share})", mask, labels)
                )
            useful = [b for b in bands if b.hits >= options.min_support]
            if useful:  # the band of this brand and category with the best precision bound on the mining rows
                out.append(max(useful, key=lambda b: _mined_lower(b, options.alpha or 0.05)))
    return out


def _merchant_candidates(
    mining: pd.DataFrame, labels: np.ndarray, config: DataConfig, options: MiningOptions
) -> list[Candidate]:
    column = config.merchant
    if not column or column not in mining:
        return []
    merchants = _normalized(mining[column])
    codes, names = pd.factorize(merchants)
    support = np.bincount(codes, minlength=len(names))
    rejects = np.bincount(codes, weights=labels, minlength=len(names))
    out = []
    for j in np.flatnonzero((support >= options.merchant_support) & (rejects >= options.min_mined_precision * support)):
        raw = str(mining[column].iloc[int(np.argmax(codes == j))])
        rule = Rule(name=_slug("mined_merchant", raw), action="review", kind="category", column=column, values=[raw])
        out.append(_candidate(rule, "merchant", f"merchant {raw}", codes == j, labels))
    return out


def _category_candidates(
    mining: pd.DataFrame, labels: np.ndarray, config: DataConfig, options: MiningOptions
) -> list[Candidate]:
    """Each categorical value (category, market...), and each category within each market."""
    columns = [c for c in config.categorical if c in mining]
    normalised = {c: _normalized(mining[c]) for c in columns}
    out = []
    for column in columns:
        for value in np.unique(normalised[column]):
            mask = normalised[column] == value
            rule = Rule(
                name=_slug("mined", column, value), action="review", kind="category", column=column, values=[value]
            )
            out.append(_candidate(rule, "category", f"{column} {value}", mask, labels))
    if "category" in columns and "market" in columns:
        for cat in np.unique(normalised["category"]):
            for market in np.unique(normalised["market"]):
                mask = (normalised["category"] == cat) & (normalised["market"] == market)
                if mask.sum() < options.min_support:
                    continue
                rule = Rule.from_dict(
                    {
                        "name": _slug("mined", cat, "in", market),
                        "action": "review",
                        "kind": "all",
                        "all": [
                            {"kind": "category", "column": "category", "values": [cat]},
                            {"kind": "category", "column": "market", "values": [market]},
                        ],
                    }
                )
                out.append(_candidate(rule, "category", f"category {cat} in market {market}", mask, labels))
    return out


class _TreeInputs:
    """The mining rows as a tree sees them: numeric columns (missing -> the median) and categoricals
    target-encoded by their reject rate, so a split on one is a set of values."""

    def __init__(self, mining: pd.DataFrame, labels: np.ndarray, config: DataConfig) -> None:
        self.numeric = [c for c in config.numeric if c in mining]
        self.categorical = [c for c in config.categorical if c in mining]
        columns: list[np.ndarray] = []
        for column in self.numeric:
            values = pd.to_numeric(mining[column], errors="coerce").to_numpy(dtype=np.float64)
            fill = np.nanmedian(values) if np.isfinite(values).any() else 0.0
            columns.append(np.where(np.isfinite(values), values, fill))
        self.encodings: list[dict[str, float]] = []
        for column in self.categorical:
            normalised = _normalized(mining[column])
            rates = pd.Series(labels).groupby(normalised).mean()
            self.encodings.append({str(k): float(v) for k, v in rates.items()})
            columns.append(np.array([self.encodings[-1][str(v)] for v in normalised]))
        self.X = np.column_stack(columns) if columns else np.zeros((len(mining), 0))

    def condition(self, feature: int, threshold: float, left: bool) -> tuple[dict[str, Any], str] | None:
        """The rule condition and words of one split side; None when it keeps no categorical value."""
        if feature < len(self.numeric):
            column, bound = self.numeric[feature], float(f"{threshold:.6g}")
            return {"kind": "range", "column": column, ("max" if left else "min"): bound}, (
                f"{column} {'<' if left else '>='} {bound:g}"
            )
        column = self.categorical[feature - len(self.numeric)]
        encoding = self.encodings[feature - len(self.numeric)]
        chosen = sorted(v for v, rate in encoding.items() if (rate <= threshold) == left)
        if not chosen:
            return None
        return {"kind": "category", "column": column, "values": chosen}, f"{column} in {chosen}"


def _tree_candidates(
    mining: pd.DataFrame, labels: np.ndarray, config: DataConfig, options: MiningOptions
) -> list[Candidate]:
    """Root-to-leaf paths of a depth-3 tree over the simple listing columns, as "all" rules."""
    inputs = _TreeInputs(mining, labels, config)
    rows = np.ones(len(mining), dtype=bool)
    return _leaves(inputs, labels, rows, [], "", TREE_DEPTH, options, "tree")


def _refined_candidates(
    inputs: _TreeInputs, labels: np.ndarray, parents: list[Candidate], options: MiningOptions
) -> list[Candidate]:
    """Each parent (a term, brand or merchant condition) narrowed by the leaves of a depth-2 tree fitted on
    its hits alone: e.g. a term among listings with few images from new merchants, purer than the term."""
    out = []
    for parent in parents:
        base = parent.rule.all if parent.rule.kind == "all" else [parent.rule]
        conditions = [c.condition_dict() for c in base]
        out += _leaves(inputs, labels, parent.mask, conditions, parent.description, 2, options, "refined")
    return out


def _leaves(
    inputs: _TreeInputs,
    labels: np.ndarray,
    rows: np.ndarray,
    base: list[dict[str, Any]],
    base_words: str,
    depth: int,
    options: MiningOptions,
    family: str,
) -> list[Candidate]:
    """The leaves of a tree of `depth` fitted on `rows`, each as base conditions and its path."""
    if inputs.X.shape[1] == 0 or len(np.unique(labels[rows])) < 2 or rows.sum() < 2 * options.min_support:
        return []
    tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=options.min_support, random_state=0)
    tree.fit(inputs.X[rows], labels[rows])
    leaf_of = np.full(len(rows), -1)
    leaf_of[rows] = tree.apply(inputs.X[rows])
    out = []
    for leaf, path in _tree_paths(tree):
        sides = [inputs.condition(feature, threshold, left) for feature, threshold, left in path]
        if not path or any(side is None for side in sides):
            continue
        conditions = [side[0] for side in sides if side is not None]
        words = [side[1] for side in sides if side is not None]
        merged = _merged([*base, *conditions])
        name = _slug(f"mined_{family}", *([base_words] if base_words else []), *words)
        rule = Rule.from_dict({"name": name, "action": "review", "kind": "all", "all": merged})
        description = " and ".join([*([base_words] if base_words else []), *words])
        out.append(_candidate(rule, family, description, leaf_of == leaf, labels))
    return out


def _tree_paths(tree: DecisionTreeClassifier) -> list[tuple[int, list[tuple[int, float, bool]]]]:
    """(leaf id, [(feature, threshold, went left)]) for every leaf."""
    inner = tree.tree_
    paths: list[tuple[int, list[tuple[int, float, bool]]]] = []
    stack: list[tuple[int, list[tuple[int, float, bool]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        left, right = int(inner.children_left[node]), int(inner.children_right[node])
        if left == right:  # a leaf
            paths.append((node, path))
            continue
        feature, threshold = int(inner.feature[node]), float(inner.threshold[node])
        stack.append((left, [*path, (feature, threshold, True)]))
        stack.append((right, [*path, (feature, threshold, False)]))
    return paths


def _merged(conditions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One range or category condition per column: range bounds tightened, value sets intersected."""
    by_column: dict[tuple[str, str], dict[str, Any]] = {}
    for i, condition in enumerate(conditions):
        key = (condition["kind"], condition.get("column") or f"#{i}")  # term conditions stay as they are
        if key not in by_column:
            by_column[key] = dict(condition)
            continue
        merged = by_column[key]
        if condition["kind"] == "range":
            if "min" in condition:
                merged["min"] = max(merged.get("min", -math.inf), condition["min"])
            if "max" in condition:
                merged["max"] = min(merged.get("max", math.inf), condition["max"])
        else:
            merged["values"] = sorted(set(merged["values"]) & set(condition["values"]))
    return list(by_column.values())
