"""The decision audit document: one decision's trail (`serving.store.decision_audit`) as plain data, led
by `why`, a paragraph in plain words, and closed by its timeline.

The same document is what `GET /v1/decisions/{id}` returns, what the /audit page shows and what
`triage decisions show` prints, so the three never disagree. Verdicts come in order: the review, then
its corrections, then blind second reviews; the verdict in force is the latest review or correction,
and an audit's `overturn` is recomputed for it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bundle.policies import POLICY_HISTORY_DIR
from decision.policy import TIERED_T_PASS, Policy
from serving.engine import FAILSAFE_POLICY_VERSION, in_words_apart
from serving.engine import in_words as _num
from serving.store.decision_audit import DecisionTrail, RuleInForce
from serving.store.records import DecisionRecord, overturns

DECISION_WORDS = {"auto_pass": "passed it", "auto_block": "blocked it", "human_review": "sent it to review"}
RULED = {"auto_pass": "Passed", "auto_block": "Blocked", "human_review": "Sent to review"}


def audit_document(trail: DecisionTrail) -> dict[str, Any]:
    """Everything about one decision, `why` first (see the module docstring)."""
    record = trail.record
    verdicts = verdict_list(trail)
    in_force = _in_force(verdicts)
    return {
        "decision_id": record.decision_id,
        "listing_id": record.listing_id,
        "why": why(trail),
        "received_at": record.received_at,
        "decided_at": record.decided_at,
        "decision": record.decision,
        "automated": record.automated,
        "model_decision": record.model_decision,
        "risk": record.risk,
        "tier_risk": record.tier_risk,
        "decision_tier": record.decision_tier,
        "model_version": record.model_version,
        "policy_version": record.policy_version,
        "thresholds": {
            "t_pass": record.t_pass,
            "t_block": record.t_block,
            "tiers_decide": tiers_decide(record),
            "tier_pass": _tier_pass(trail),
        },
        "policy_in_force": policy_in_force(trail),
        "reasons": record.reasons,
        "rules_matched": [_rule(trail, name) for name in record.rules_matched],
        "rules_shadow": [_rule(trail, name) for name in record.rules_shadow],
        "fallback_reason": record.fallback_reason,
        "inclusion_prob": record.inclusion_prob,
        "qa_sample": record.qa_sample,
        "would_have_been": record.would_have_been,
        "queue": None if trail.queue is None else _fields(trail.queue),
        "statements_of_reasons": statements(trail),
        "verdicts": verdicts,
        "verdict_in_force": in_force,
        "overturn": _overturn(trail, in_force),
        "shadow": None if trail.shadow is None else _fields(trail.shadow),
        "model_in_force": model_in_force(trail),
        "listing": record.listing,
        "timeline": timeline(trail),
    }


def verdict_list(trail: DecisionTrail) -> list[dict[str, Any]]:
    """The review, its corrections in order, then second reviews: who, when, what, and why if amended."""
    verdicts: list[dict[str, Any]] = []
    if trail.review is not None:
        review = trail.review
        verdicts.append(
            _verdict(
                "review", review.reviewer, review.reviewed_at, review.verdict, review.violation_reason, note=review.note
            )
        )
    for c in trail.corrections:
        verdicts.append(
            _verdict("correction", c.corrected_by, c.corrected_at, c.verdict, c.violation_reason, c.reason, c.note)
        )
    for s in trail.second_reviews:
        verdicts.append(
            _verdict("second_review", s.reviewer, s.reviewed_at, s.verdict, s.violation_reason, note=s.note)
        )
    return verdicts


def _verdict(
    kind: str,
    by: str,
    at: datetime,
    verdict: str,
    violation_reason: str | None,
    reason: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "by": by,
        "at": at,
        "verdict": verdict,
        "violation_reason": violation_reason,
        "reason": reason,
        "note": note,
    }


def _in_force(verdicts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest review or correction (a second review measures agreement; it never decides)."""
    deciding = [v for v in verdicts if v["kind"] in ("review", "correction")]
    return deciding[-1] if deciding else None


def _overturn(trail: DecisionTrail, in_force: dict[str, Any] | None) -> bool | None:
    """On an audit with a verdict: whether the verdict in force contradicts the automated decision."""
    if in_force is None or trail.queue is None or trail.queue.lane != "audit":
        return None
    return overturns(trail.record.decision, in_force["verdict"])


def statements(trail: DecisionTrail) -> list[dict[str, Any]]:
    """Every statement of reasons in order: the decision's (an auto-block), the review's, each correction's."""
    found: list[dict[str, Any]] = []
    record = trail.record
    if record.statement_of_reasons:
        found.append({"source": "decision", "at": record.decided_at, "statement": record.statement_of_reasons})
    if trail.review is not None and trail.review.statement_of_reasons:
        found.append(
            {"source": "review", "at": trail.review.reviewed_at, "statement": trail.review.statement_of_reasons}
        )
    for c in trail.corrections:
        if c.statement_of_reasons:
            found.append({"source": "correction", "at": c.corrected_at, "statement": c.statement_of_reasons})
    return found


def policy_in_force(trail: DecisionTrail) -> dict[str, Any]:
    """The policy the decision was made under: as stored when put in force through the API (who, when,
    why, its thresholds and guarantee), else a statement that the bundle's own (or the fail-safe) policy was."""
    record, stored = trail.record, trail.policy
    if stored is not None:
        return {
            "version": stored.version,
            "source": "api",
            "put_in_force_at": stored.at,
            "put_in_force_by": stored.actor,
            "change_reason": stored.reason,
            "guarantee_state": _guarantee_state(stored.policy),
            "policy": stored.policy,
            "note": f"policy {stored.version} was put in force through the policy API (model {stored.bundle_version})",
        }
    if record.policy_version == FAILSAFE_POLICY_VERSION:
        note = "no model was loaded: the fail-safe policy sent every listing to human review"
        source = "failsafe"
    else:
        note = (
            f"policy {record.policy_version} was never changed through the policy API: the bundle's own policy "
            f"(policy.json of model {record.model_version}) was in force"
        )
        source = "bundle"
    return {
        "version": record.policy_version,
        "source": source,
        "put_in_force_at": None,
        "put_in_force_by": None,
        "change_reason": None,
        "guarantee_state": None,
        "policy": None,
        "note": note,
    }


def tiers_decide(record: DecisionRecord) -> bool:
    """Whether each tier's own pass threshold decided passing (a tiered policy), not the overall t_pass."""
    return bool(record.tier_risk) and (record.t_pass is None or record.t_pass >= TIERED_T_PASS)


def _tier_pass(trail: DecisionTrail) -> dict[str, float] | None:
    """The pass threshold of each tier of the policy that decided, for a decision with tier risks: routing
    applies them whether the overall t_pass is a real number (a pass then needs both) or sits at
    TIERED_T_PASS (they alone decide). A policy put in force through the API is stored whole; the bundle's
    own policy is logged by version only, and read from its bundle where that is kept
    (`with_bundle_policy`); None when neither holds it, or the policy has none."""
    policy = trail.policy.policy if trail.policy is not None else trail.bundle_policy
    if not trail.record.tier_risk or policy is None:
        return None
    tier_pass = policy.get("tier_pass")
    return dict(tier_pass) if isinstance(tier_pass, dict) and tier_pass else None


def _tier_risks_against(tier_risks: dict[str, float], tier_pass: dict[str, float]) -> str:
    """Each tier's risk, with its threshold where the policy is known: tier risks 'minor' 0.004 (threshold
    0.011), ..."""
    return "tier risks " + ", ".join(
        f"'{name}' {_num(value)}" + (f" (threshold {_num(tier_pass[name])})" if name in tier_pass else "")
        for name, value in tier_risks.items()
    )


def with_bundle_policy(trail: DecisionTrail, models_root: Path) -> DecisionTrail:
    """The trail with the bundle's own policy of the decision's version, when the log names that policy by
    version only: `<models_root>/<model_version>/policies/<policy_version>.json`, which the bundle keeps
    for every version it shipped (`bundle.policies`). Unchanged when the log holds the policy, or the
    bundle or that version is not there."""
    record = trail.record
    if trail.policy is not None or not record.model_version or not record.policy_version:
        return trail
    path = models_root / record.model_version / POLICY_HISTORY_DIR / f"{record.policy_version}.json"
    try:
        if not path.resolve().is_relative_to(models_root.resolve()):  # names from the log, not a path to follow
            return trail
        policy = json.loads(path.read_text())
    except (OSError, ValueError):
        return trail
    if not isinstance(policy, dict) or policy.get("version") != record.policy_version:
        return trail
    return replace(trail, bundle_policy=policy)


def _guarantee_state(policy: dict[str, Any]) -> str | None:
    try:
        return Policy.from_dict(policy).guarantee_state
    except (ValueError, TypeError, KeyError):  # a policy stored by an older release, not readable now
        return None


def _rule(trail: DecisionTrail, name: str) -> dict[str, Any]:
    rule = trail.policy.rules.get(name) if trail.policy is not None else None
    if rule is None:  # the bundle's own policy: the log keeps only the rule's name
        return {"name": name, "action": None, "mode": None, "version": None, "in_force_since": None}
    return {
        "name": rule.name,
        "action": rule.action,
        "mode": rule.mode,
        "version": rule.version,
        "in_force_since": rule.in_force_since,
    }


def model_in_force(trail: DecisionTrail) -> dict[str, Any]:
    """The audited change that put the decision's model in force, or a statement that none did."""
    change, model = trail.model_change, trail.record.model_version
    if change is None:
        note = (
            "no model was loaded"
            if model is None
            else f"no audited promotion or reload put model {model} in force before this decision: the service "
            "started on its configured bundle"
        )
        return {"model_version": model, "event": None, "at": None, "by": None, "reason": None, "note": note}
    return {
        "model_version": model,
        "event": change.event,
        "at": change.at,
        "by": change.actor,
        "reason": change.reason,
        "bundle": change.bundle,
        "registry_version": change.registry_version,
        "note": f"model {model} was put in force by {change.event} ({change.actor})",
    }


# --- why --------------------------------------------------------------------------------------------


def why(trail: DecisionTrail) -> str:
    """One paragraph in plain words: what decided, on which model and policy, then what people did."""
    record = trail.record
    parts = [_decided(trail)]
    if record.qa_sample and record.decision != "human_review":
        parts.append(
            f"It was drawn for audit (inclusion probability {_num(record.inclusion_prob)}): the decision stayed "
            "in force while a person checked it."
        )
    parts += _people(trail)
    return " ".join(parts)


def _versions(record: DecisionRecord) -> str:
    return f"(model {record.model_version or 'none'}, policy {record.policy_version})"


def _decided(trail: DecisionTrail) -> str:
    record = trail.record
    versions = _versions(record)
    if record.fallback_reason is not None or record.risk is None:
        reason = record.fallback_reason or "not scored"
        return f"Sent to review: fail-safe, the model could not score: {reason} {versions}."
    if record.would_have_been is not None:
        return (
            f"Sent to review as a quality sample: it would otherwise have been {record.would_have_been} "
            f"(risk {_num(record.risk)}) {versions}."
        )
    if record.rules_matched:
        rules = "; ".join(_rule_words(trail, name) for name in record.rules_matched)
        model_alone = DECISION_WORDS.get(record.model_decision or "", "decided otherwise")
        return (
            f"{RULED[record.decision]} by {rules} {versions}; the model alone would have {model_alone} "
            f"(risk {_num(record.risk)})."
        )
    return _by_thresholds(trail, versions)


def _by_thresholds(trail: DecisionTrail, versions: str) -> str:
    record = trail.record
    risk, t_pass, t_block = record.risk or 0.0, record.t_pass, record.t_block
    state = policy_in_force(trail)["guarantee_state"]
    qualified = f" ({state})" if state else ""
    tier = record.decision_tier
    tier_risk = (record.tier_risk or {}).get(tier or "")
    if record.decision == "auto_block":
        likeliest = f"; likeliest violation type '{tier}' (tier risk {_num(tier_risk)})" if tier and tier_risk else ""
        return (
            f"Blocked automatically: the model's risk {_num(risk)} reached the block threshold "
            f"{_num(t_block)}{qualified}"
            f"{likeliest} {versions}."
        )
    tier_risks = record.tier_risk or {}
    tier_pass = _tier_pass(trail) or {}
    if record.decision == "auto_pass" and tiers_decide(record):  # a tiered policy passes on each tier's threshold
        return (
            f"Passed automatically: every tier's risk was below its own pass threshold{qualified} "
            f"({_tier_risks_against(tier_risks, tier_pass)}; overall risk {_num(risk)}) {versions}."
        )
    if record.decision == "auto_pass":
        risk_words, pass_words = in_words_apart(risk, t_pass)
        also = (  # tier thresholds beside a real overall t_pass: a pass needed both
            f", and every tier's risk below its own pass threshold ({_tier_risks_against(tier_risks, tier_pass)})"
            if tier_risks and tier_pass
            else ""
        )
        return (
            f"Passed automatically: the model's risk {risk_words} was below the pass threshold "
            f"{pass_words}{qualified}{also}"
            f" {versions}."
        )
    own = f" {_num(tier_pass[tier])}" if tier and tier in tier_pass else ""
    driver = (
        f"; tier '{tier}' is furthest above its pass threshold{own} (tier risk {_num(tier_risk)})"
        if tier and tier_risk
        else ""
    )
    if record.tier_risk:  # a tiered policy passes on each tier's own threshold, not on the overall risk
        return (
            f"Sent to review: the model's risk {_num(risk)} is below the block threshold {_num(t_block)}, and not "
            f"every tier's risk is below its own pass threshold{driver} {versions}."
        )
    risk_words, pass_words = in_words_apart(risk, t_pass)
    if risk_words == _num(risk):  # told apart from t_pass with few digits: as many against t_block
        risk_words, block_words = in_words_apart(risk, t_block)
    else:
        block_words = _num(t_block)
    return (
        f"Sent to review: the model's risk {risk_words} lies between the pass threshold {pass_words} and the block "
        f"threshold {block_words}{driver} {versions}."
    )


def _rule_words(trail: DecisionTrail, name: str) -> str:
    rule: RuleInForce | None = trail.policy.rules.get(name) if trail.policy is not None else None
    if rule is None:
        return f"rule {name} (of the bundle's own policy)"
    return (
        f"rule {name} ({rule.action} rule version {rule.version}, enforced since policy version {rule.in_force_since})"
    )


def _people(trail: DecisionTrail) -> list[str]:
    verdicts = verdict_list(trail)
    if not verdicts:
        waiting = trail.queue is not None and trail.queue.status != "done"
        return ["It is waiting for a person's verdict."] if waiting else []
    sentences = []
    for v in verdicts:
        reason = f" ({v['violation_reason']})" if v["violation_reason"] else ""
        if v["kind"] == "review":
            sentences.append(f"Reviewer {v['by']} {_verdict_verb(v['verdict'])} it{reason} on {_when(v['at'])}.")
        elif v["kind"] == "correction":
            sentences.append(
                f"{v['by']} amended the verdict to {v['verdict']}{reason} on {_when(v['at'])}: {v['reason']}."
            )
        else:
            sentences.append(f"A blind second review by {v['by']} {_verdict_verb(v['verdict'])} it{reason}.")
    overturn = _overturn(trail, _in_force(verdicts))
    if overturn is not None:
        sentences.append(
            "The verdict in force overturns the automated decision."
            if overturn
            else "The verdict in force upholds the automated decision."
        )
    return sentences


def _verdict_verb(verdict: str) -> str:
    return "approved" if verdict == "approve" else "rejected"


def timeline(trail: DecisionTrail) -> list[dict[str, Any]]:
    """What happened to the decision, in time order: received, decided, queued, verdicts, corrections."""
    record = trail.record
    events = [
        {"at": record.received_at, "event": "received", "text": f"listing {record.listing_id} received"},
        {"at": record.decided_at, "event": "decided", "text": f"{record.decision} {_versions(record)}"},
    ]
    second_lane = trail.queue is not None and trail.queue.lane == "second"
    if second_lane:
        # the item went back to the queue at its first verdict (the queue row keeps that second enqueue); the
        # decision was queued when it was logged
        events.append({"at": record.decided_at, "event": "queued", "text": "queued in the review queue"})
    elif trail.queue is not None:
        lane = "audit lane" if trail.queue.lane == "audit" else "review queue"
        events.append({"at": trail.queue.enqueued_at, "event": "queued", "text": f"queued in the {lane}"})
    for v in verdict_list(trail):
        reason = f" ({v['violation_reason']})" if v["violation_reason"] else ""
        because = f": {v['reason']}" if v["reason"] else ""
        note = f' (note: "{v["note"]}")' if v["note"] else ""
        text = f"{v['verdict']}{reason} by {v['by']}{because}{note}"
        events.append({"at": v["at"], "event": v["kind"], "text": text})
    if second_lane and trail.queue is not None:  # after the first verdict, whose instant it shares
        events.append(
            {"at": trail.queue.enqueued_at, "event": "second_queued", "text": "sent for a blind second review"}
        )
    if trail.shadow is not None:
        shadow = trail.shadow
        events.append(
            {
                "at": shadow.decided_at,
                "event": "shadow",
                "text": f"shadow model {shadow.model_version} would have decided {shadow.decision}",
            }
        )
    return sorted(events, key=lambda e: e["at"])


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")
