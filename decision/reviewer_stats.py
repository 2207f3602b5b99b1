"""Reviewer quality, per reviewer and per team, from the verdicts of a window (pure functions over frames).

- volume: verdicts (reviews, audits, second reviews and gold answers), reject rate (gold answers left out:
  gold items are chosen, not drawn, so their reject share says nothing of the traffic);
- handling time: median and 90th percentile of `review_seconds`;
- throughput: verdicts per active hour (an active hour is a clock hour with at least one verdict);
- agreement on blind second reviews (`decision.agreement`): raw agreement, Cohen's kappa, Gwet's AC1, each
  with its interval; for a reviewer, the table is (their verdict, the other reviewer's);
- accuracy on gold items: the share answered right, with an exact Clopper-Pearson interval;
- verdicts amended by someone else: of a reviewer's first verdicts (reviews and audits), the share whose
  verdict in force is now another person's different verdict (a lead's correction: the re-review outcome
  QA teams track), with an exact interval. Only verdicts a lead looked at can be amended, so it is a
  floor on the error rate, not an accuracy;
- accuracy against second-review outcomes: on the second-reviewed items a reviewer judged, the share of
  their verdicts equal to the item's resolved label: the common verdict where the two agree, else the
  Dawid-Skene posterior (`resolved_labels`). Where they disagree the resolution leans on the reviewers'
  own estimated accuracy, so this figure is a model-based estimate, not an independent check; gold
  accuracy is the independent one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from decision.agreement import Agreement, agreement, contingency, dawid_skene
from decision.rule_stats import clopper_pearson

VERDICT_CODES = {"approve": 0, "reject": 1}


def resolved_labels(pairs: pd.DataFrame, gold: pd.DataFrame) -> dict[str, tuple[float, bool]]:
    """(P(violation), agreed) of every second-reviewed item: 0 or 1 where the two verdicts agree, the
    Dawid-Skene posterior where they disagree (fitted on every pair and gold answer given, gold items with
    their known answer)."""
    if pairs.empty:
        return {}
    agreed = pairs["first_verdict"] == pairs["second_verdict"]
    resolved = {
        str(row.decision_id): (float(VERDICT_CODES[row.first_verdict]), True) for row in pairs[agreed].itertuples()
    }
    if agreed.all():
        return resolved
    verdicts = [
        (f"decision:{row.decision_id}", reviewer, VERDICT_CODES[verdict])
        for row in pairs.itertuples()
        for reviewer, verdict in ((row.first_reviewer, row.first_verdict), (row.second_reviewer, row.second_verdict))
    ]
    verdicts += [(f"gold:{row.gold_id}", row.reviewer, VERDICT_CODES[row.verdict]) for row in gold.itertuples()]
    known = {f"gold:{row.gold_id}": VERDICT_CODES[row.expected_verdict] for row in gold.itertuples()}
    model = dawid_skene(verdicts, known)
    for row in pairs[~agreed].itertuples():
        resolved[str(row.decision_id)] = (model.posterior[f"decision:{row.decision_id}"], False)
    return resolved


def reviewer_quality(
    verdicts: pd.DataFrame,
    pairs: pd.DataFrame,
    gold: pd.DataFrame,
    teams: Mapping[str, str],
    confidence: float = 0.95,
    amended: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The quality report: one entry per reviewer with a verdict in the window, one per team of them, and
    the agreement over every pair. `amended`: the window's first verdicts that were later amended
    (reviewer, verdict, verdict_in_force, amended_by); None: no corrections."""
    if amended is None:
        amended = pd.DataFrame(columns=["reviewer", "verdict", "verdict_in_force", "amended_by"])
    overruled = amended[
        (amended["verdict_in_force"] != amended["verdict"]) & (amended["amended_by"] != amended["reviewer"])
    ]
    resolved = resolved_labels(pairs, gold)
    reviewers = sorted(set(verdicts["reviewer"]) | set(pairs["first_reviewer"]) | set(pairs["second_reviewer"]))
    rows = [
        {
            "reviewer": name,
            "team": teams.get(name),
            **_quality(verdicts, pairs, gold, {name}, resolved, confidence, overruled),
        }
        for name in reviewers
    ]
    team_rows = [
        {
            "team": team,
            "reviewers": len(members),
            **_quality(verdicts, pairs, gold, members, resolved, confidence, overruled),
        }
        for team, members in sorted(_members(teams, reviewers).items())
    ]
    all_pairs = _table(pairs, None)
    return {
        "confidence": confidence,
        "reviewers": rows,
        "teams": team_rows,
        "agreement": agreement_out(agreement(all_pairs, confidence)),
    }


def _members(teams: Mapping[str, str], reviewers: Iterable[str]) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for reviewer in reviewers:
        if reviewer in teams:
            grouped.setdefault(teams[reviewer], set()).add(reviewer)
    return grouped


def _quality(
    verdicts: pd.DataFrame,
    pairs: pd.DataFrame,
    gold: pd.DataFrame,
    members: set[str],
    resolved: Mapping[str, tuple[float, bool]],
    confidence: float,
    overruled: pd.DataFrame,
) -> dict[str, Any]:
    own = verdicts[verdicts["reviewer"].isin(members)]
    first_verdicts = int(own["kind"].isin(["review", "audit"]).sum())
    amended = int(overruled["reviewer"].isin(members).sum())
    on_traffic = own[own["kind"] != "gold"]
    rejects = int((on_traffic["verdict"] == "reject").sum())
    seconds = own["review_seconds"].dropna().astype("float64")
    active_hours = int(pd.to_datetime(own["reviewed_at"], utc=True).dt.floor("h").nunique()) if len(own) else 0
    own_gold = gold[gold["reviewer"].isin(members)]
    return {
        "verdicts": len(own),  # every answer: listings, audits, second reviews and gold items
        "listing_verdicts": len(on_traffic),  # the reject rate's base: gold answers left out
        "rejects": rejects,
        "reject_rate": rejects / len(on_traffic) if len(on_traffic) else None,
        "handling_seconds_median": _quantile(seconds, 0.5),
        "handling_seconds_p90": _quantile(seconds, 0.9),
        "active_hours": active_hours,
        "verdicts_per_active_hour": len(own) / active_hours if active_hours else None,
        "agreement": agreement_out(agreement(_table(pairs, members), confidence)),
        "gold": proportion_out(int(own_gold["correct"].astype(bool).sum()), len(own_gold), confidence),
        "second_review_accuracy": _accuracy_on_pairs(pairs, members, resolved, confidence),
        "amended_by_others": _share(amended, first_verdicts, confidence),
    }


def _table(pairs: pd.DataFrame, members: set[str] | None) -> np.ndarray:
    """(member's verdict, other's verdict) per pair involving a member; every pair as (first, second)
    when `members` is None."""
    oriented = []
    for row in pairs.itertuples():
        first, second = VERDICT_CODES[row.first_verdict], VERDICT_CODES[row.second_verdict]
        if members is None or row.first_reviewer in members:
            oriented.append((first, second))
        elif row.second_reviewer in members:
            oriented.append((second, first))
    return contingency(oriented)


def _accuracy_on_pairs(
    pairs: pd.DataFrame, members: set[str], resolved: Mapping[str, tuple[float, bool]], confidence: float
) -> dict[str, Any]:
    """Verdicts of members on second-reviewed items equal to the resolved label (posterior > 1/2)."""
    right = total = 0
    for row in pairs.itertuples():
        label = int(resolved[str(row.decision_id)][0] > 0.5)
        for reviewer, verdict in ((row.first_reviewer, row.first_verdict), (row.second_reviewer, row.second_verdict)):
            if reviewer in members:
                total += 1
                right += int(VERDICT_CODES[verdict] == label)
    return proportion_out(right, total, confidence)


def _share(count: int, trials: int, confidence: float) -> dict[str, Any]:
    low, high = clopper_pearson(count, trials, confidence)
    return {"n": trials, "amended": count, "rate": count / trials if trials else None, "low": low, "high": high}


def proportion_out(successes: int, trials: int, confidence: float) -> dict[str, Any]:
    low, high = clopper_pearson(successes, trials, confidence)
    return {
        "n": trials,
        "correct": successes,
        "accuracy": successes / trials if trials else None,
        "low": low,
        "high": high,
    }


def agreement_out(result: Agreement) -> dict[str, Any]:
    return {
        "items": result.items,
        "agreements": result.agreements,
        "raw": result.raw,
        "raw_low": result.raw_low,
        "raw_high": result.raw_high,
        "kappa": result.kappa.value,
        "kappa_low": result.kappa.low,
        "kappa_high": result.kappa.high,
        "ac1": result.ac1.value,
        "ac1_low": result.ac1.low,
        "ac1_high": result.ac1.high,
    }


def _quantile(values: pd.Series, q: float) -> float | None:
    if values.empty:
        return None
    result = float(values.quantile(q))
    return result if math.isfinite(result) else None
