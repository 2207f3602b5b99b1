"""Shadow scoring: a candidate model scores the same listings as the champion, and only the champion acts.

After the champion's decisions are logged (and whether or not the answer has gone out), the listings
and their decision ids are handed to the `ShadowScorer`, which batches them, scores and routes them with
the shadow engine on its own thread (the candidate's bundle and the policy in force for it, routed by
`decision.policy.route` like every decision) and logs one `shadow_decisions` row per champion decision.
Nothing of this can reach a response or a champion decision: the work starts after the champion's
records are final, and every failure (scoring, routing, logging) is logged and counted, never raised.
A full backlog drops new work (counted) rather than grow without bound; `TRIAGE_SHADOW_FRACTION` scores a
uniform random share of listings only, which caps the shadow's CPU and leaves its report unbiased.

`shadow_report` compares the two: agreement, the confusion of decisions, the review share of each, and
where a reviewer's verdict exists, each model's errors on those listings.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decision.policy import decision_names, route
from serving.engine import DecisionEngine, Scores
from serving.store import DecisionRecord, Store
from serving.store.records import utcnow
from serving.store.shadow import ShadowDecision

log = logging.getLogger(__name__)

SHADOW_BATCH = 512  # most listings scored by the shadow in one call
SHADOW_BACKLOG = 20_000  # listings waiting beyond this are dropped (counted), never queued without bound


@dataclass
class ShadowCounts:
    """What the shadow did since it was set: listings scored and logged, failures, and listings dropped."""

    scored: int = 0
    errors: int = 0
    dropped: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"scored": self.scored, "errors": self.errors, "dropped": self.dropped}


@dataclass(eq=False)
class ShadowScorer:
    """Scores listings with a shadow engine, after the champion, and logs its decisions."""

    engine: DecisionEngine
    store: Store
    fraction: float = 1.0  # share of listings shadow-scored: a uniform random sample
    counts: ShadowCounts = field(default_factory=ShadowCounts)
    _pending: list[tuple[dict[str, Any], str]] = field(default_factory=list, repr=False)
    _draining: bool = field(default=False, repr=False)
    _executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="triage-shadow"), repr=False
    )
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _closed: bool = field(default=False, repr=False)
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    @property
    def model_version(self) -> str | None:
        return self.engine.model_version

    @property
    def idle(self) -> bool:
        """Nothing waiting or being scored."""
        return not self._pending and not self._draining

    def submit(self, listings: Sequence[dict[str, Any]], records: Sequence[DecisionRecord]) -> None:
        """Queue the champion's listings for shadow scoring; returns at once and never raises."""
        if self._closed:
            return
        try:
            room = SHADOW_BACKLOG - len(self._pending)
            pairs = [(listing, r.decision_id) for listing, r in zip(listings, records, strict=True)]
            if self.fraction < 1.0:
                sampled = (self._rng.random(len(pairs)) < self.fraction).tolist()
                pairs = [pair for pair, kept in zip(pairs, sampled, strict=True) if kept]
            if len(pairs) > room:
                self.counts.dropped += len(pairs) - max(room, 0)
                pairs = pairs[: max(room, 0)]
            self._pending.extend(pairs)
            if self._pending and not self._draining:
                self._draining = True
                task = asyncio.get_running_loop().create_task(self._drain())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception:
            self.counts.errors += len(records)
            log.exception("shadow scoring: could not queue %d listings", len(records))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending and not self._closed:
                batch, self._pending = self._pending[:SHADOW_BATCH], self._pending[SHADOW_BATCH:]
                try:
                    await loop.run_in_executor(self._executor, self._score_and_log, batch)
                    self.counts.scored += len(batch)
                except Exception:
                    self.counts.errors += len(batch)
                    log.exception("shadow scoring of %d listings failed (the champion's decisions stand)", len(batch))
        finally:
            self._draining = False

    def _score_and_log(self, batch: list[tuple[dict[str, Any], str]]) -> None:
        listings = [listing for listing, _ in batch]
        rows = shadow_decisions(self.engine, listings, [decision_id for _, decision_id in batch])
        self.store.record_shadow_decisions(rows)

    async def drained(self) -> None:
        """Wait until everything queued so far is scored and logged (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Stop: what is still waiting is dropped (counted); a batch being scored finishes."""
        self._closed = True
        self.counts.dropped += len(self._pending)
        self._pending = []
        self._executor.shutdown(wait=False, cancel_futures=True)


def shadow_decisions(engine: DecisionEngine, listings: list[dict[str, Any]], decision_ids: list[str]) -> list[Any]:
    """The shadow engine's routing of the listings (its rules, per-segment and per-tier thresholds, the
    policy in force for its bundle) as rows for `shadow_decisions`. Unscored listings route to review.

    Risk only, without the reasons `DecisionEngine.score` also computes: no response shows the shadow's
    reasons, and they cost about as much as the model itself."""
    bundle = engine.bundle
    if bundle is None:
        raise ValueError("the shadow engine has no bundle")
    X = bundle.builder.transform_records(listings)
    risk, tier_risk = bundle.score_matrix(X)
    scores = Scores(risk, [], tier_risk=tier_risk)
    rule_block, rule_review, _ = engine.match_rules(listings)
    t_pass, t_block = engine.thresholds(listings)
    tier_pass = engine.policy.tier_pass_vector(engine.tier_names)
    codes = route(scores.risk, t_pass, t_block, rule_block, rule_review, scores.tier_risk, tier_pass)
    names = decision_names(codes).tolist()
    scored = np.isfinite(scores.risk).tolist()
    risks = np.clip(scores.risk, 0.0, 1.0).tolist()
    tier_rows: list[dict[str, float] | None] = [None] * len(listings)
    if scores.tier_risk is not None:
        tiers = engine.tier_names
        tier_rows = [
            dict(zip(tiers, row, strict=True)) if np.isfinite(row).all() else None
            for row in np.clip(scores.tier_risk, 0.0, 1.0).tolist()
        ]
    at = utcnow()
    model_version, policy_version = engine.model_version or "none", engine.policy.version
    return [
        ShadowDecision(
            decision_id=decision_id,
            decided_at=at,
            model_version=model_version,
            policy_version=policy_version,
            risk=risks[i] if scored[i] else None,
            decision=names[i],
            tier_risk=tier_rows[i],
        )
        for i, decision_id in enumerate(decision_ids)
    ]


DECISION_ORDER = ("auto_pass", "human_review", "auto_block")


def shadow_report(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Champion vs shadow on the logged pairs (`Store.shadow_pairs`): agreement, confusion (champion
    decision -> shadow decision -> count), each model's routing shares and the review share difference
    (shadow minus champion), and on the listings with a verdict each model's errors: misses (a rejected
    listing auto-passed) and wrongful blocks (an approved listing auto-blocked): counted among the
    verdicts, and estimated over every pair. Only the listings the champion sent to review all get a
    verdict; its auto-passes and auto-blocks get one when drawn for audit, with the logged inclusion
    probability pi, so the counts favour whichever model reviews more. Each verdict counts 1 / pi pairs
    (Horvitz & Thompson 1952: unbiased for the errors among all pairs, as `decision.estimates` reads the
    log); a pair logged without a probability counts once.

    Pairs where the champion could not score (a timeout or an error sent the listing to review,
    `champion_fallback`) compare no model with the shadow, which scores later without a deadline: they
    are left out of every figure and counted in `champion_fallbacks`."""
    scored = [p for p in pairs if p.get("champion_fallback") is None]
    fallbacks, pairs = len(pairs) - len(scored), scored
    n = len(pairs)
    confusion = {c: dict.fromkeys(DECISION_ORDER, 0) for c in DECISION_ORDER}
    for pair in pairs:
        confusion[pair["champion_decision"]][pair["shadow_decision"]] += 1
    champion = Counter(p["champion_decision"] for p in pairs)
    shadow = Counter(p["shadow_decision"] for p in pairs)
    labelled = [p for p in pairs if p["verdict"] is not None]

    def shares(counts: Counter[str]) -> dict[str, float | None]:
        return {d: counts[d] / n if n else None for d in DECISION_ORDER}

    def weight(pair: dict[str, Any]) -> float:
        return 1.0 / pair["inclusion_prob"] if pair.get("inclusion_prob") else 1.0

    def errors(side: str) -> dict[str, float]:
        missed = [p for p in labelled if p[side] == "auto_pass" and p["verdict"] == "reject"]
        wrongful = [p for p in labelled if p[side] == "auto_block" and p["verdict"] == "approve"]
        return {
            "misses": len(missed),
            "wrongful_blocks": len(wrongful),
            "estimated_misses": round(sum(map(weight, missed)), 1),
            "estimated_wrongful_blocks": round(sum(map(weight, wrongful)), 1),
        }

    champion_shares, shadow_shares = shares(champion), shares(shadow)
    review_difference = (
        shadow_shares["human_review"] - champion_shares["human_review"]  # type: ignore[operator]
        if n
        else None
    )
    return {
        "pairs": n,
        "champion_fallbacks": fallbacks,
        "champion_models": sorted({p["champion_model"] or "none" for p in pairs}),
        "shadow_models": sorted({p["shadow_model"] for p in pairs}),
        "agreement": sum(p["champion_decision"] == p["shadow_decision"] for p in pairs) / n if n else None,
        "confusion": confusion,
        "champion": champion_shares,
        "shadow": shadow_shares,
        "review_share_difference": review_difference,
        "labelled": len(labelled),
        "errors": {"champion": errors("champion_decision"), "shadow": errors("shadow_decision")},
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as a table for a person."""
    n, fallbacks = report["pairs"], report.get("champion_fallbacks", 0)
    left_out = (
        f" ({fallbacks:,} more left out: the champion could not score them and sent them to review)"
        if fallbacks
        else ""
    )
    if not n:
        if fallbacks:
            return [f"no comparable shadow decisions{left_out}"]
        return ["no shadow decisions logged (set a shadow with PUT /v1/admin/shadow or TRIAGE_SHADOW_BUNDLE)"]
    lines = [
        f"{n:,} listings scored by champion {', '.join(report['champion_models'])} and shadow "
        f"{', '.join(report['shadow_models'])}; agreement {report['agreement']:.1%}{left_out}",
        "",
        "champion \\ shadow".ljust(18) + "".join(f"{d:>14}" for d in DECISION_ORDER),
    ]
    for champion in DECISION_ORDER:
        row = report["confusion"][champion]
        lines.append(f"{champion:18}" + "".join(f"{row[d]:>14,}" for d in DECISION_ORDER))
    lines.append("")
    for side in ("champion", "shadow"):
        share = report[side]
        lines.append(f"{side:9} " + "  ".join(f"{d} {share[d]:.1%}" for d in DECISION_ORDER))
    lines.append(f"review share difference (shadow - champion): {report['review_share_difference']:+.1%}")
    errors = report["errors"]
    lines.append(
        f"on {report['labelled']:,} listings with a verdict: champion {errors['champion']['misses']} misses, "
        f"{errors['champion']['wrongful_blocks']} wrongful blocks; shadow {errors['shadow']['misses']} misses, "
        f"{errors['shadow']['wrongful_blocks']} wrongful blocks"
    )
    lines.append(
        "estimated over all pairs (each verdict counts 1 / its audit inclusion probability): "
        + "; ".join(
            f"{side} {errors[side]['estimated_misses']:,.1f} misses, "
            f"{errors[side]['estimated_wrongful_blocks']:,.1f} wrongful blocks"
            for side in ("champion", "shadow")
        )
    )
    return lines
