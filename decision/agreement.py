"""Agreement between reviewers, and the label to train on when two verdicts disagree.

A share of first verdicts gets a blind second review (`decision.review_quality`), so each second-reviewed
item carries two verdicts from two reviewers; their 2x2 table (or q x q, the functions are general) gives:

- raw agreement p_a: the share of items judged alike, with an exact Clopper-Pearson interval (each item
  agrees or not: a binomial count, `decision.rule_stats.clopper_pearson`);
- Cohen's kappa (Cohen 1960, Educ. Psychol. Meas. 20:37-46): (p_a - p_e) / (1 - p_e) with chance agreement
  p_e = sum_k p_k+ p_+k, that of two independent raters keeping their own margins. At a low violation
  rate p_e is close to 1, so kappa is low and unstable even when nearly every item agrees (the "kappa
  paradox", Feinstein & Cicchetti 1990);
- Gwet's AC1 (Gwet 2008, Br. J. Math. Stat. Psychol. 61:29-48): the same form with p_e = 1/(q-1) sum_k
  pi_k (1 - pi_k), pi_k = (p_k+ + p_+k) / 2, chance agreement of raters who guess only on the items
  they find hard; it stays interpretable under a skewed prevalence.

Intervals (`coefficient_interval`): both coefficients are T = (p_a - p_e) / (1 - p_e), a smooth function
of the cell proportions p_kl of a multinomial table of n items. Proof sketch (delta method): with
g_kl = d p_e / d p_kl, the derivative is d T / d p_kl = (w_kl - (1 - T) g_kl) / (1 - p_e), w the identity
(agreement) weights; the multinomial covariance gives Var(T) ~ (1/n) [sum p_kl d_kl^2 - (sum p_kl d_kl)^2].
For kappa g_kl = p_+k + p_l+ and sum p_kl g_kl = 2 p_e; for AC1 g_kl = (1 - pi_k - pi_l) / (q - 1), and
any constant added to g leaves the variance unchanged, so Gwet's form 2 (1 - (pi_k + pi_l)/2) / (q - 1)
(for which sum p_kl g_kl = 2 p_e too) is used. Hence
Var(T) = [sum_kl p_kl (w_kl - (1 - T) g_kl)^2 - (p_a - 2 (1 - T) p_e)^2] / (n (1 - p_e)^2),
the variance of Fleiss, Cohen & Everitt (1969) for kappa and Gwet (2008, eq. 30) for AC1, as Gwet's
irrCAC package computes them. The interval is T +- t_{n-1, 1-alpha/2} sqrt(Var), cut to [-1, 1]. It is
asymptotic, so its coverage is measured by simulation (tests/decision/test_agreement.py): with 4%
violations and reviewers of sensitivity 0.85 and specificity 0.99, nominal 95% intervals covered the
true kappa and AC1 93-95% of the time on 600 items, and 90-94% on 200 items: read them as a little
short when second reviews are few.

Disagreements (`dawid_skene`): when the two verdicts differ, neither reviewer is the truth. The binary
Dawid-Skene model (Dawid & Skene 1979, J. R. Stat. Soc. C 28:20-28) gives each reviewer a confusion
matrix (sensitivity: P(reject | violating), specificity: P(approve | not violating)) and each item a latent
true class with prior prevalence; EM alternates the posterior of every item's class given its verdicts
(E step, verdicts independent given the class) and the maximum a posteriori confusion matrices and
prevalence (M step, with a Beta(1, 1) prior on each rate, so a reviewer with few items stays near 1/2 and
no rate reaches 0 or 1). Gold items (known answers) enter with their class fixed, which anchors the
confusion matrices. Each EM step does not decrease the penalised likelihood (Dempster, Laird & Rubin
1977); with two verdicts per item the model is weakly identified, so it starts from the share of reject
verdicts per item (the symmetric start Dawid and Skene used) and gold items carry the most weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from decision.rule_stats import clopper_pearson


@dataclass(frozen=True)
class Coefficient:
    """An agreement coefficient with its standard error and two-sided interval (None when undefined)."""

    value: float | None
    stderr: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Agreement:
    """Agreement of paired verdicts on `items` items."""

    items: int
    agreements: int
    raw: float | None
    raw_low: float
    raw_high: float
    kappa: Coefficient
    ac1: Coefficient


def contingency(pairs: Iterable[tuple[int, int]], categories: int = 2) -> np.ndarray:
    """The q x q table of counts: row = first verdict, column = second verdict (category codes 0..q-1)."""
    table = np.zeros((categories, categories), dtype=np.int64)
    for first, second in pairs:
        table[first, second] += 1
    return table


def cohen_kappa(table: np.ndarray, confidence: float = 0.95) -> Coefficient:
    """Cohen's kappa with the Fleiss-Cohen-Everitt variance; undefined (None) when p_e = 1 (every verdict
    in one category on both sides)."""
    p, n = _proportions(table)
    if n == 0:
        return Coefficient(None, None, None, None)
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    p_e = float(rows @ cols)
    if math.isclose(p_e, 1.0):
        return Coefficient(None, None, None, None)
    g = cols[:, None] + rows[None, :]  # g_kl = p_+k + p_l+
    return _coefficient(p, n, p_e, g, confidence)


def gwet_ac1(table: np.ndarray, confidence: float = 0.95) -> Coefficient:
    """Gwet's AC1 with Gwet's (2008) variance."""
    p, n = _proportions(table)
    if n == 0:
        return Coefficient(None, None, None, None)
    q = p.shape[0]
    pi = (p.sum(axis=1) + p.sum(axis=0)) / 2
    p_e = float(np.sum(pi * (1 - pi)) / (q - 1))
    g = 2 * (1 - (pi[:, None] + pi[None, :]) / 2) / (q - 1)
    return _coefficient(p, n, p_e, g, confidence)


def agreement(table: np.ndarray, confidence: float = 0.95) -> Agreement:
    """Raw agreement (Clopper-Pearson), kappa and AC1 (delta-method intervals) of one table."""
    n = int(table.sum())
    agreements = int(np.trace(table))
    low, high = clopper_pearson(agreements, n, confidence)
    return Agreement(
        items=n,
        agreements=agreements,
        raw=agreements / n if n else None,
        raw_low=low,
        raw_high=high,
        kappa=cohen_kappa(table, confidence),
        ac1=gwet_ac1(table, confidence),
    )


def _proportions(table: np.ndarray) -> tuple[np.ndarray, int]:
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 2:
        raise ValueError(f"table: expected a square table of at least 2 x 2 counts, got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("table: counts must be >= 0")
    n = int(counts.sum())
    return (counts / n if n else counts), n


def _coefficient(p: np.ndarray, n: int, p_e: float, g: np.ndarray, confidence: float) -> Coefficient:
    """T = (p_a - p_e) / (1 - p_e) with the delta-method variance of the module docstring."""
    p_a = float(np.trace(p))
    value = (p_a - p_e) / (1 - p_e)
    weights = np.eye(p.shape[0])
    spread = float(np.sum(p * (weights - (1 - value) * g) ** 2)) - (p_a - 2 * (1 - value) * p_e) ** 2
    variance = max(spread, 0.0) / (n * (1 - p_e) ** 2)
    stderr = math.sqrt(variance)
    if n < 2:
        return Coefficient(value, stderr, None, None)
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1)) * stderr
    return Coefficient(value, stderr, max(-1.0, value - half), min(1.0, value + half))


# --- Dawid-Skene --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DawidSkene:
    """The fitted binary model: prevalence of violations, each reviewer's sensitivity and specificity, and
    each item's posterior probability of being a violation."""

    prevalence: float
    sensitivity: dict[str, float]
    specificity: dict[str, float]
    posterior: dict[str, float]
    iterations: int
    converged: bool


def dawid_skene(
    verdicts: Sequence[tuple[str, str, int]],
    known: Mapping[str, int] | None = None,
    max_iterations: int = 500,
    tolerance: float = 1e-8,
) -> DawidSkene:
    """Fit the binary Dawid-Skene model by EM to (item, reviewer, label) verdicts, label 1 = reject.

    `known` fixes the class of items whose answer is known (gold items). Items are any hashable names.
    """
    if not verdicts:
        raise ValueError("verdicts: nothing to fit")
    if any(label not in (0, 1) for _, _, label in verdicts):
        raise ValueError("verdicts: labels must be 0 (approve) or 1 (reject)")
    known = dict(known or {})
    items = sorted({item for item, _, _ in verdicts} | set(known))
    reviewers = sorted({reviewer for _, reviewer, _ in verdicts})
    item_index = {item: i for i, item in enumerate(items)}
    reviewer_index = {reviewer: j for j, reviewer in enumerate(reviewers)}
    rows = np.array([item_index[item] for item, _, _ in verdicts])
    cols = np.array([reviewer_index[reviewer] for _, reviewer, _ in verdicts])
    labels = np.array([label for _, _, label in verdicts], dtype=np.float64)
    fixed = np.array([item in known for item in items])
    truth = np.array([float(known.get(item, 0)) for item in items])

    posterior = _initial_posterior(rows, labels, len(items))
    posterior[fixed] = truth[fixed]
    converged, iterations = False, 0
    while iterations < max_iterations:
        iterations += 1
        prevalence, sensitivity, specificity = _m_step(posterior, rows, cols, labels, len(reviewers))
        updated = _e_step(prevalence, sensitivity, specificity, rows, cols, labels, len(items))
        updated[fixed] = truth[fixed]
        change = float(np.max(np.abs(updated - posterior)))
        posterior = updated
        if change < tolerance:
            converged = True
            break
    prevalence, sensitivity, specificity = _m_step(posterior, rows, cols, labels, len(reviewers))
    return DawidSkene(
        prevalence=float(prevalence),
        sensitivity={r: float(sensitivity[j]) for r, j in reviewer_index.items()},
        specificity={r: float(specificity[j]) for r, j in reviewer_index.items()},
        posterior={item: float(posterior[i]) for item, i in item_index.items()},
        iterations=iterations,
        converged=converged,
    )


def _initial_posterior(rows: np.ndarray, labels: np.ndarray, n_items: int) -> np.ndarray:
    rejects = np.bincount(rows, weights=labels, minlength=n_items)
    counts = np.bincount(rows, minlength=n_items)
    return np.divide(rejects, counts, out=np.full(n_items, 0.5), where=counts > 0)


def _m_step(
    posterior: np.ndarray, rows: np.ndarray, cols: np.ndarray, labels: np.ndarray, n_reviewers: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """MAP prevalence, sensitivities and specificities under Beta(1, 1) priors (add one to each count)."""
    violating = posterior[rows]
    true_rejects = np.bincount(cols, weights=violating * labels, minlength=n_reviewers)
    violating_seen = np.bincount(cols, weights=violating, minlength=n_reviewers)
    true_approves = np.bincount(cols, weights=(1 - violating) * (1 - labels), minlength=n_reviewers)
    clean_seen = np.bincount(cols, weights=1 - violating, minlength=n_reviewers)
    sensitivity = (true_rejects + 1) / (violating_seen + 2)
    specificity = (true_approves + 1) / (clean_seen + 2)
    prevalence = (float(posterior.sum()) + 1) / (len(posterior) + 2)
    return prevalence, sensitivity, specificity


def _e_step(
    prevalence: float,
    sensitivity: np.ndarray,
    specificity: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    labels: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """P(violation | verdicts) per item, from log-likelihoods summed over its verdicts."""
    log_violating = np.where(labels == 1, np.log(sensitivity[cols]), np.log1p(-sensitivity[cols]))
    log_clean = np.where(labels == 0, np.log(specificity[cols]), np.log1p(-specificity[cols]))
    prior = math.log(prevalence) - math.log1p(-prevalence)
    evidence = np.bincount(rows, weights=log_violating, minlength=n_items)
    odds = prior + evidence - np.bincount(rows, weights=log_clean, minlength=n_items)
    return 1.0 / (1.0 + np.exp(-odds))
