"""Rule analytics from the decision log and its verdicts: per rule (enforce and shadow) and per period.

Pure functions over a frame of logged decisions joined with their verdicts (one row per decision; the
columns of `LOG_COLUMNS`), so every figure can be checked by hand on a small log:

- hits, and share of traffic (hits / decisions logged in the period);
- reviewed hits (a verdict is in), rejects among them, and precision = rejects / reviewed hits with an
  exact Clopper-Pearson interval (`clopper_pearson`);
- what the model alone would have done with the hits (`model_decision`: the thresholds without rules);
- the review workload the rule adds: hits of a review rule that the model alone would have decided
  automatically (auto-pass, or auto-block: a review rule overrides the block threshold), with their
  reviewer-hours (a hit's own `review_seconds` where it has a verdict, else the period's mean);
- the co-occurrence matrix: how many decisions each pair of rules hit together.

Each rule is measured alone (as if no other rule fired): two rules hitting one listing both count it.

Selective labels. A hit gets a verdict only where a person looked: every human_review decision, and
automated decisions drawn for audit with their logged inclusion probability. An enforced review rule
sends all its hits to review, so its reviewed hits are all its hits (once reviewed). A shadow rule's
hits are reviewed only where the model (or the audit draw) sent them, which is not a random sample of its
hits: the plain precision then describes the hits the model found doubtful, and the output says so
(`representative` false). Beside it, `precision_weighted` is the Hajek estimate of the precision over
all hits, weighting each reviewed hit by 1 / inclusion_prob (Hajek 1971; Sarndal, Swensson & Wretman,
"Model Assisted Survey Sampling", 1992, sec. 5.7): with a known, non-zero inclusion probability for
every hit, sum(w * reject) / n_hits and sum(w) / n_hits are Horvitz-Thompson estimates of the reject
share and of 1, so their ratio is consistent for the precision over all hits. Hits whose review is still
pending are left out of both, as if missing at random within their decision stratum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

Period = Literal["day", "week", "all"]
PERIODS: tuple[str, ...] = ("day", "week", "all")
LOG_COLUMNS = (
    "decision_id",
    "decided_at",
    "decision",
    "model_decision",
    "rules_matched",
    "rules_shadow",
    "inclusion_prob",
    "verdict",
    "review_seconds",
)
MODES = ("enforce", "shadow")
NOT_REPRESENTATIVE = (
    "some hits could only be reviewed where the model or the audit draw sent them: the precision is over "
    "those hits, not all; precision_weighted re-weights them by 1 / inclusion_prob (Hajek)"
)


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion (Clopper & Pearson 1934, Biometrika 26:404-413).

    Proof sketch: for k successes in n trials, P(Bin(n, p) >= k) = P(Beta(k, n-k+1) <= p), so the lower
    end, the alpha/2 quantile of Beta(k, n-k+1), is the smallest p that a one-sided level-alpha/2 test of
    "p is this small" does not reject; the upper end likewise with Beta(k+1, n-k). The interval inverts
    two exact tests, so it covers the true p with probability >= 1 - alpha for every p (more, because
    the binomial is discrete). With no trials it is [0, 1].
    """
    if trials == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def period_labels(decided_at: pd.Series, period: str) -> pd.Series:
    """Each decision's period: its UTC day ('2026-12-01'), the Monday its week starts on, or 'all'."""
    if period not in PERIODS:
        raise ValueError(f"period: {period!r} is not one of {list(PERIODS)}")
    if period == "all":
        return pd.Series("all", index=decided_at.index, dtype=object)
    days = pd.to_datetime(decided_at, utc=True).dt.floor("D")
    if period == "week":
        days = days - pd.to_timedelta(days.dt.weekday, unit="D")
    codes, starts = pd.factorize(days)  # a label per distinct period, not per decision
    names = np.asarray(pd.DatetimeIndex(starts).strftime("%Y-%m-%d"), dtype=object)
    return pd.Series(names[codes] if len(codes) else [], index=decided_at.index, dtype=object)


def rule_hits(log: pd.DataFrame) -> pd.DataFrame:
    """One row per (decision, rule hit): the log row's index as `row`, the rule `name` and its `mode`."""
    parts = []
    for mode, column in (("enforce", "rules_matched"), ("shadow", "rules_shadow")):
        exploded = log[column].explode().dropna()  # a list per decision ([] or None: no hit)
        parts.append(pd.DataFrame({"row": exploded.index, "name": exploded.to_numpy(dtype=object), "mode": mode}))
    hits = pd.concat(parts, ignore_index=True)
    return hits.drop_duplicates(["row", "name", "mode"]).reset_index(drop=True)


def rule_stats(
    log: pd.DataFrame,
    period: str = "all",
    confidence: float = 0.95,
    actions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Per rule and period figures (see the module docstring) and the co-occurrence over the whole log.

    `log` has the columns of `LOG_COLUMNS`; `actions` maps rule names to "block" or "review" (the policy
    in force): the workload a rule adds is counted for review rules only (a block rule's hits are
    decided automatically; None for a rule the policy no longer names).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: {confidence!r} is not in (0, 1)")
    missing = [c for c in LOG_COLUMNS if c not in log]
    if missing:
        raise ValueError(f"log: missing columns {missing}")
    log = log.reset_index(drop=True)
    labels = period_labels(log["decided_at"], period)
    decisions_per_period = labels.value_counts().sort_index()
    mean_seconds = _mean_review_seconds(log, labels)
    hits = rule_hits(log)
    counts = _hit_counts(log, hits, labels.to_numpy())
    actions = actions or {}
    rows = []
    for (label, name, mode), c in zip(counts.index, counts.to_dict("records"), strict=True):
        decisions = int(decisions_per_period[label])
        rows.append(
            {"period": label, "rule": name, "mode": mode, "action": actions.get(name)}
            | {"hits": int(c["hit"]), "decisions": decisions, "share": c["hit"] / decisions}
            | _precision(c, confidence)
            | {key: int(c[key]) for key in ("model_review", "model_block", "model_pass", "model_unscored")}
            | _workload(c, actions.get(name), mean_seconds[label])
        )
    return {
        "period": period,
        "confidence": confidence,
        "interval": "Clopper-Pearson exact, two-sided",
        "decisions": int(len(log)),
        "decisions_per_period": {str(k): int(v) for k, v in decisions_per_period.items()},
        "rules": rows,
        "co_occurrence": co_occurrence(hits),
    }


def _hit_counts(log: pd.DataFrame, hits: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per (period, rule, mode), the sums every figure is made of, in one grouped pass over the hits."""
    row = hits["row"].to_numpy()
    verdict = log["verdict"].to_numpy(dtype=object)[row]
    reviewed = pd.notna(verdict)
    reject = verdict == "reject"
    pi = pd.to_numeric(log["inclusion_prob"], errors="coerce").to_numpy(dtype=np.float64)[row]
    weighted = reviewed & np.isfinite(pi) & (pi > 0)
    weight = np.where(weighted, 1.0 / np.where(weighted, pi, 1.0), 0.0)
    model = log["model_decision"].to_numpy(dtype=object)[row]
    automated = (model == "auto_pass") | (model == "auto_block")  # what a review rule turns into a review
    seconds = pd.to_numeric(log["review_seconds"], errors="coerce").to_numpy(dtype=np.float64)[row]
    own = automated & reviewed & np.isfinite(seconds)
    table = pd.DataFrame(
        {
            "period": labels[row],
            "name": hits["name"].to_numpy(),
            "mode": hits["mode"].to_numpy(),
            "hit": 1,
            "reviewed": reviewed,
            "rejects": reject,
            "pi_one": pi == 1.0,  # NaN (logged before it was kept) is not known to be 1
            "weighted": weighted,
            "weight": weight,
            "weight_reject": weight * reject,
            "model_review": model == "human_review",
            "model_block": model == "auto_block",
            "model_pass": model == "auto_pass",
            "model_unscored": pd.isna(model),
            "automated": automated,
            "own": own,
            "own_seconds": np.where(own, seconds, 0.0),
        }
    )
    return table.groupby(["period", "name", "mode"], sort=True).sum()


def _mean_review_seconds(log: pd.DataFrame, labels: pd.Series) -> dict[str, float | None]:
    """Per period, the mean review_seconds of its verdicts (the whole log's where the period has none)."""
    seconds = pd.to_numeric(log["review_seconds"], errors="coerce").where(log["verdict"].notna())
    overall = _finite_or_none(float(seconds.mean())) if seconds.notna().any() else None
    per_period = seconds.groupby(labels).mean()
    means = {str(k): _finite_or_none(float(per_period.get(k, np.nan))) for k in labels.unique()}
    return {k: overall if v is None else v for k, v in means.items()}


def _precision(c: Mapping[str, Any], confidence: float) -> dict[str, Any]:
    """Rejects among the reviewed hits, with the exact interval, and the Hajek estimate over all hits:
    sum(reject / pi) / sum(1 / pi) over the reviewed hits with a logged inclusion probability."""
    n_reviewed, n_rejects = int(c["reviewed"]), int(c["rejects"])
    low, high = clopper_pearson(n_rejects, n_reviewed, confidence)
    representative = bool(c["pi_one"] == c["hit"])
    return {
        "reviewed": n_reviewed,
        "rejects": n_rejects,
        "precision": n_rejects / n_reviewed if n_reviewed else None,
        "precision_low": low if n_reviewed else None,
        "precision_high": high if n_reviewed else None,
        "representative": representative,
        "note": None if representative else NOT_REPRESENTATIVE,
        "precision_weighted": float(c["weight_reject"] / c["weight"]) if c["weighted"] else None,
    }


def _workload(c: Mapping[str, Any], action: str | None, mean_seconds: float | None) -> dict[str, Any]:
    """Reviews a review rule adds over the model alone (hits the model alone would have decided
    automatically) and their reviewer-hours (a hit's own review_seconds, else the period's mean);
    None for a block rule or one the policy does not name."""
    if action != "review":
        return {"added_reviews": None, "added_reviewer_hours": None, "added_hours_from_mean": None}
    added, from_mean = int(c["automated"]), int(c["automated"] - c["own"])
    if from_mean and mean_seconds is None:
        hours = None  # no verdict in the log tells how long a review takes
    else:
        hours = (float(c["own_seconds"]) + from_mean * (mean_seconds or 0.0)) / 3600.0
    return {"added_reviews": added, "added_reviewer_hours": hours, "added_hours_from_mean": from_mean}


def co_occurrence(hits: pd.DataFrame) -> dict[str, Any]:
    """How many decisions each pair of rules hit together (the diagonal: each rule's hits), over every
    period. Rules are labelled 'name' (enforce) or 'name (shadow)'."""
    if hits.empty:
        return {"rules": [], "counts": []}
    label = hits["name"].astype(str) + np.where(hits["mode"] == "shadow", " (shadow)", "")
    names = sorted(label.unique())
    column = pd.Categorical(label, categories=names).codes
    rows = pd.factorize(hits["row"])[0]
    indicator = np.zeros((rows.max() + 1, len(names)), dtype=np.int64)
    indicator[rows, column] = 1
    counts = indicator.T @ indicator
    return {"rules": names, "counts": counts.tolist()}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
