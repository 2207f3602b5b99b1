"""The history-reachable ceiling: its posterior of q learns from the evidence, and it sits between the
features-only scorer and the limit that knows q."""

from __future__ import annotations

import numpy as np

from bench import history_ceiling as hc
from training import generate as gen


def test_posterior_is_a_distribution_that_tracks_q() -> None:
    world = gen.simulate(20_000, seed=4)
    q = world.merchants.quality[world.rows.merchant]
    base = world.logits - (world.ambiguity + q)[:, None]
    post = hc.posteriors(world, hc.verdict_log_likelihood(world, base))
    assert np.allclose(post.sum(axis=1), 1.0)
    mean = post @ hc.GRID
    prior_mean = hc.prior() @ hc.GRID
    # with no evidence the posterior is the prior; with evidence it moves towards each merchant's q
    assert np.corrcoef(mean, q)[0, 1] > 0.3
    assert abs(np.mean(mean) - prior_mean) < 0.1
    offender = world.merchants.offender[world.rows.merchant]
    assert mean[offender].mean() > mean[~offender].mean() + 0.3


def test_offender_evidence_points_the_right_way() -> None:
    world = gen.simulate(20_000, seed=5)
    ratio = hc.offender_log_ratio(world)
    offender = world.merchants.offender[world.rows.merchant]
    assert ratio[offender].mean() > ratio[~offender].mean()
    # a counterfeit: its scheme says 7x, its certificate nothing (counterfeits' rate has no offender factor)
    counterfeit = world.rows.scheme == gen._COUNTERFEIT
    assert counterfeit.sum() > 10
    assert np.allclose(ratio[counterfeit], np.log(hc.SCHEME_BOOST))
    # a certified listing without a scheme: the certificate speaks for an ordinary merchant
    plain = (world.rows.scheme == gen._NO_SCHEME) & ~world.rows.genuine & (world.rows.certificate == 1)
    assert plain.sum() > 10 and (ratio[plain] < 0).all()


def test_ceiling_ranks_between_features_only_and_the_limit() -> None:
    run = hc.run_seed(30_000, seed=6)
    share = {
        name: run[name]["no_slack"]["auto_decided_share"] for name in ("limit", "history_ceiling", "features_only")
    }
    assert share["features_only"] <= share["history_ceiling"] + 0.02
    assert share["history_ceiling"] <= share["limit"] + 0.02
    assert run["posterior_corr_with_q"] > 0.3


def test_each_kind_of_evidence_adds_to_what_the_posterior_knows_of_q() -> None:
    """The ablation's posteriors (`--ablation`): counts of rejections alone track q less well than the
    verdicts with their reasons and review times, and those less well than all the evidence."""
    world = gen.simulate(20_000, seed=4)
    q = world.merchants.quality[world.rows.merchant]
    base = world.logits - (world.ambiguity + q)[:, None]
    full = hc.verdict_log_likelihood(world, base)
    posteriors = {
        "counts": hc.posteriors(world, hc.verdict_log_likelihood(world, base, detail=False), content_evidence=False),
        "verdicts": hc.posteriors(world, full, content_evidence=False),
        "all": hc.posteriors(world, full),
    }
    corr = {name: np.corrcoef(post @ hc.GRID, q)[0, 1] for name, post in posteriors.items()}
    assert all(np.allclose(post.sum(axis=1), 1.0) for post in posteriors.values())
    assert corr["counts"] < corr["verdicts"] < corr["all"]
