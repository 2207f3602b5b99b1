"""Agreement statistics against published values, the coverage of their intervals at a low violation rate,
and Dawid-Skene labels for disagreements."""

from __future__ import annotations

import numpy as np
import pytest

from decision.agreement import agreement, cohen_kappa, contingency, dawid_skene, gwet_ac1

# Gwet's irrCAC package (vignette "overview"), dataset cont3x3abstractors: two abstractors, 100 pregnancies
ABSTRACTORS = np.array([[13, 0, 0], [0, 20, 7], [0, 4, 56]])


def test_kappa_and_ac1_match_the_published_values() -> None:
    kappa, ac1 = cohen_kappa(ABSTRACTORS), gwet_ac1(ABSTRACTORS)
    result = agreement(ABSTRACTORS)

    assert kappa.value == pytest.approx(0.7964094, abs=1e-7) and kappa.stderr == pytest.approx(0.05891072, abs=1e-7)
    assert (round(kappa.low, 3), round(kappa.high, 3)) == (0.68, 0.913)  # type: ignore[arg-type]
    assert ac1.value == pytest.approx(0.8493305, abs=1e-7) and ac1.stderr == pytest.approx(0.04321747, abs=1e-7)
    assert (round(ac1.low, 3), round(ac1.high, 3)) == (0.764, 0.935)  # type: ignore[arg-type]
    assert result.raw == pytest.approx(0.89) and result.items == 100


def test_kappa_of_the_textbook_two_by_two_example() -> None:
    # 50 grant proposals, two readers: both yes 20, both no 15, the first only 5, the second only 10
    table = contingency([(1, 1)] * 20 + [(1, 0)] * 5 + [(0, 1)] * 10 + [(0, 0)] * 15)

    assert cohen_kappa(table).value == pytest.approx(0.4)
    assert gwet_ac1(table).value == pytest.approx((0.7 - 0.495) / 0.505)


def test_kappa_is_undefined_when_both_reviewers_see_one_class_only() -> None:
    table = contingency([(0, 0)] * 30)

    assert cohen_kappa(table).value is None
    assert gwet_ac1(table).value == pytest.approx(1.0)
    assert agreement(table).raw == 1.0


def _population(prevalence: float, sensitivity: float, specificity: float) -> np.ndarray:
    """Cell probabilities of two independent reviewers with the same accuracy."""
    s, c, p = sensitivity, specificity, prevalence
    both_reject = p * s * s + (1 - p) * (1 - c) ** 2
    one_each = p * s * (1 - s) + (1 - p) * (1 - c) * c
    both_approve = p * (1 - s) ** 2 + (1 - p) * c * c
    return np.array([[both_approve, one_each], [one_each, both_reject]])


def test_intervals_cover_the_true_agreement_at_a_low_violation_rate() -> None:
    rng = np.random.default_rng(7)
    cells = _population(prevalence=0.04, sensitivity=0.85, specificity=0.99)
    truth = (cohen_kappa(cells * 1e9), gwet_ac1(cells * 1e9), float(np.trace(cells)))
    tables = rng.multinomial(600, cells.ravel(), size=600).reshape(-1, 2, 2)

    covered = np.zeros(3)
    for table in tables:
        result = agreement(table)
        kappa, ac1 = result.kappa, result.ac1
        covered += [
            kappa.low is not None and kappa.low <= truth[0].value <= kappa.high,  # type: ignore[operator]
            ac1.low is not None and ac1.low <= truth[1].value <= ac1.high,  # type: ignore[operator]
            result.raw_low <= truth[2] <= result.raw_high,
        ]
    coverage = covered / len(tables)

    assert coverage[2] >= 0.95  # exact (Clopper-Pearson)
    assert coverage[0] >= 0.92 and coverage[1] >= 0.92, coverage  # asymptotic, nominal 0.95


def test_dawid_skene_trusts_the_careful_reviewer_where_two_disagree() -> None:
    rng = np.random.default_rng(3)
    accuracy = {"careful": (0.95, 0.99), "sloppy": (0.6, 0.85), "fair": (0.85, 0.97)}
    truth = rng.random(3000) < 0.1
    verdicts, pairs = [], []
    names = list(accuracy)
    for i, violating in enumerate(truth):
        first, second = rng.choice(names, size=2, replace=False)
        labels = []
        for reviewer in (first, second):
            sensitivity, specificity = accuracy[reviewer]
            label = int(rng.random() < (sensitivity if violating else 1 - specificity))
            verdicts.append((str(i), str(reviewer), label))
            labels.append(label)
        pairs.append(labels)
    gold = {str(i): int(truth[i]) for i in range(100)}

    model = dawid_skene(verdicts, gold)

    assert model.converged
    for reviewer, (sensitivity, specificity) in accuracy.items():
        assert model.sensitivity[reviewer] == pytest.approx(sensitivity, abs=0.08)
        assert model.specificity[reviewer] == pytest.approx(specificity, abs=0.02)
    disagreements = [i for i, (a, b) in enumerate(pairs) if a != b and i >= 100]
    resolved = np.array([model.posterior[str(i)] > 0.5 for i in disagreements])
    first_verdict = np.array([pairs[i][0] == 1 for i in disagreements])
    actual = truth[disagreements]
    assert (resolved == actual).mean() >= 0.8
    assert (resolved == actual).mean() > (first_verdict == actual).mean() + 0.2
    assert all(model.posterior[item] == label for item, label in gold.items())


def test_dawid_skene_refuses_labels_other_than_zero_and_one() -> None:
    with pytest.raises(ValueError, match="labels"):
        dawid_skene([("a", "r", 2)])
