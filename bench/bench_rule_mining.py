"""Rule suggestions mined from verdicts: `make bench-rules-mining` -> bench/RESULTS_RULE_MINING.md

    python bench/bench_rule_mining.py [--rows 200000] [--seeds 101 102 103] [--top 10] [--trials 4]
        [--no-realdata] [--timing-rows 1000000] [--workdir DIR] [--out MD]

Per seed (fresh seeds, not the ones the miner was written against): `triage generate`'s data, trained with
the pipeline (no MLflow), gives a bundle whose `history.parquet` holds its held-out rows (calibration +
test), scored. That history is split by time three ways: the oldest 40% is mined, the next 30% certifies
(`suggest_rules` on the older 70% with mine_share 4/7: K candidates, Clopper-Pearson at alpha/K), and
the newest 30%, which played no part in choosing or certifying anything, evaluates. On the evaluation
rows the policy in force (the baseline, same run) is compared with:
- + block rules: the policy plus the top-N suggestions certified as block rules (the bundle's thresholds,
  hence its certified recall, unchanged: a blocked listing is not passed);
- + review rules: the policy plus the top-N review suggestions that catch violations the policy passes.
Reported: queue share and reviewer-hours before/after, recall and block precision by labels and by the
oracle (expected values from `true_risk`), and, per added rule, its certified lower bound against its
precision on the evaluation rows and its expected precision by the oracle (the bound should hold).
With --realdata (default): the same on bench/realdata/sms_spam.csv (no oracle, labels only). Then the time
to mine a large history (--timing-rows, default 1M generated rows: 400k history rows).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, log, run_meta  # noqa: E402
from bundle.load import Bundle  # noqa: E402
from decision.backtest import backtest  # noqa: E402
from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW, Policy  # noqa: E402
from decision.rule_mining import MiningOptions, Suggestion, policy_codes, split_history, suggest_rules  # noqa: E402
from decision.rules import Rule  # noqa: E402
from decision.thresholds import default_rules  # noqa: E402
from features.config import DataConfig  # noqa: E402
from training.generate import generate, write_dataset  # noqa: E402
from training.pipeline import TrainOptions, train  # noqa: E402

RESULTS_MD = ROOT / "bench" / "RESULTS_RULE_MINING.md"
MINE, CERTIFY = 0.4, 0.3  # shares of the history, oldest first; the rest evaluates


def _train(data: Path, out: Path, seed: int, trials: int, config: Path | None = None) -> Bundle:
    options = TrainOptions(
        data=data, config=config, out=out, seed=seed, search_trials=trials, log_mlflow=False, show_progress=False
    )
    return Bundle.load(train(options).bundle_dir)


def _ordered(history: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    if config.timestamp and config.timestamp in history:
        return history.sort_values(config.timestamp, kind="stable").reset_index(drop=True)
    return history.reset_index(drop=True)


def _routing(codes: np.ndarray, frame: pd.DataFrame, expected: np.ndarray | None) -> dict[str, Any]:
    label = frame["label"].to_numpy(dtype=np.int64)
    seconds = (
        frame["review_seconds"].to_numpy(dtype=np.float64) if "review_seconds" in frame else np.full(len(frame), 60.0)
    )
    passed, blocked, queued = codes == CODE_PASS, codes == CODE_BLOCK, codes == CODE_REVIEW
    out = {
        "queue_share": float(queued.mean()),
        "reviewer_hours": float(seconds[queued].sum() / 3600),
        "block_share": float(blocked.mean()),
        "recall": 1 - float(label[passed].sum() / max(label.sum(), 1)),
        "block_precision": float(label[blocked].mean()) if blocked.any() else float("nan"),
    }
    if expected is not None:
        out["expected_recall"] = 1 - float(expected[passed].sum() / expected.sum())
        out["expected_block_precision"] = float(expected[blocked].mean()) if blocked.any() else float("nan")
    return out


def _with(policy: Policy, rules: list[Rule]) -> Policy:
    return replace(policy, rules=[*policy.rules, *rules])


def evaluate(
    name: str, bundle: Bundle, top: int, options: MiningOptions, oracle: pd.DataFrame | None, lower_target: float
) -> dict[str, Any]:
    config, policy = bundle.config, bundle.policy
    history = bundle.history()
    assert history is not None, f"bundle {bundle.version} has no history.parquet"
    history = _ordered(history, config)
    n = len(history)
    used, evaluation = history.iloc[: int(n * (MINE + CERTIFY))], history.iloc[int(n * (MINE + CERTIFY)) :]
    started = time.perf_counter()
    report = suggest_rules(
        used, policy, config, replace(options, mine_share=MINE / (MINE + CERTIFY)), limit=200, with_backtest=False
    )
    mining_seconds = time.perf_counter() - started
    _, certify = split_history(used, config, MINE / (MINE + CERTIFY))
    expected = certify_expected = None
    if oracle is not None:
        risk = oracle.set_index("listing_id")["true_risk"]
        expected = risk.reindex(evaluation[config.id].astype(str)).to_numpy(dtype=np.float64)
        certify_expected = risk.reindex(certify[config.id].astype(str)).to_numpy(dtype=np.float64)
    by_workload = report.view(200, sort="workload").suggestions
    blocks = [s for s in by_workload if s.certificate["certified"]][:top]
    # the same suggestions certified (same bounds) at a lower block-precision target than the bundle's
    relaxed = [_as_block(s) for s in by_workload if s.certificate["lower"] >= lower_target][:top]
    reviews = [
        s for s in report.suggestions if not s.certificate["certified"] and s.as_review["extra_violations_caught"]
    ]
    reviews = sorted(reviews, key=lambda s: -s.as_review["extra_violations_caught"])[:top]
    rows = {
        "policy in force": policy_codes(evaluation, policy),
        f"+ {len(blocks)} block rules": policy_codes(evaluation, _with(policy, [s.rule for s in blocks])),
        f"+ {len(reviews)} review rules": policy_codes(evaluation, _with(policy, [s.rule for s in reviews])),
        f"+ {len(relaxed)} block rules certified at {lower_target:g}": policy_codes(
            evaluation, _with(policy, [s.rule for s in relaxed])
        ),
    }
    return {
        "name": name,
        "bundle": bundle.version,
        "history_rows": n,
        "mining_rows": report.mining_rows,
        "certify_rows": report.holdout_rows,
        "evaluation_rows": len(evaluation),
        "candidates": report.candidates_certified,
        "alpha": report.alpha,
        "target": report.block_precision_target,
        "certified": sum(s.certificate["certified"] for s in report.suggestions),
        "mining_seconds": mining_seconds,
        "routing": {label: _routing(codes, evaluation, expected) for label, codes in rows.items()},
        "rules": [_rule_row(s, evaluation, expected) for s in [*blocks, *reviews, *relaxed]],
        "top": [_rule_row(s, evaluation, expected) for s in report.suggestions[:top]],
        "validity": _validity(report.suggestions, certify, certify_expected, evaluation, expected),
    }


def _validity(
    suggestions: list[Suggestion],
    certify: pd.DataFrame,
    certify_expected: np.ndarray | None,
    evaluation: pd.DataFrame,
    expected: np.ndarray | None,
) -> dict[str, int] | None:
    """How many certified bounds hold against the oracle: the rule's expected precision (mean true risk of
    its hits) on the rows it was certified on (what the Clopper-Pearson bound guarantees), and on the newer
    evaluation rows (whether it carries over to the future)."""
    if certify_expected is None or expected is None:
        return None
    held_certify = held_eval = with_eval_hits = 0
    for s in suggestions:
        held_certify += bool(certify_expected[s.rule.match(certify)].mean() >= s.certificate["lower"])
        hits = s.rule.match(evaluation)
        if hits.any():
            with_eval_hits += 1
            held_eval += bool(expected[hits].mean() >= s.certificate["lower"])
    return {
        "suggestions": len(suggestions),
        "held_certify": held_certify,
        "with_eval_hits": with_eval_hits,
        "held_eval": held_eval,
    }


def _as_block(s: Suggestion) -> Suggestion:
    return replace(s, rule=Rule.from_dict({**s.rule.to_dict(), "action": "block"}))


def _rule_row(s: Suggestion, evaluation: pd.DataFrame, expected: np.ndarray | None) -> dict[str, Any]:
    hits = s.rule.match(evaluation)
    label = evaluation["label"].to_numpy(dtype=np.int64)
    return {
        "name": s.rule.name,
        "action": s.rule.action,
        "family": s.family,
        "description": s.description,
        "certified_lower": s.certificate["lower"],
        "certify_hits": s.certificate["hits"],
        "eval_hits": int(hits.sum()),
        "eval_precision": float(label[hits].mean()) if hits.any() else float("nan"),
        "expected_precision": float(expected[hits].mean()) if expected is not None and hits.any() else float("nan"),
    }


def timing(rows: int, seed: int) -> dict[str, Any]:
    """Seconds to mine suggestions from a large history: generated rows, the newest 40% as the history
    (the generator's exact risk standing in for a model's), with the default policy rules; beside it, one
    backtest of one rule over the same rows (what a person runs per rule by hand)."""
    reviews, oracle = generate(rows, seed=seed)
    start = int(rows * 0.6)
    history = reviews.iloc[start:].reset_index(drop=True)
    history["risk"] = oracle["true_risk"].to_numpy()[start:]
    config = DataConfig()
    policy = Policy(version="timing", t_pass=0.02, t_block=0.9, rules=default_rules(config))
    started = time.perf_counter()
    report = suggest_rules(history, policy, config, limit=20, with_backtest=False)
    mining = time.perf_counter() - started
    started = time.perf_counter()
    suggest_rules(history, policy, config, limit=20, with_backtest=True)
    with_backtests = time.perf_counter() - started
    started = time.perf_counter()
    backtest(history, policy, report.suggestions[0].rule)
    one_backtest = time.perf_counter() - started
    return {
        "rows": len(history),
        "mining_rows": report.mining_rows,
        "candidates": report.candidates_certified,
        "mining": mining,
        "with_backtests": with_backtests,
        "one_backtest": one_backtest,
    }


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def render(results: list[dict[str, Any]], meta: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Rule suggestions mined from verdicts",
        "",
        f"`{meta['command']}` on {meta['machine']}, finished {meta['finished_at']} in {meta['seconds']} s.",
        "",
        f"Each bundle's labelled history (its held-out calibration + test rows) split by time: oldest {MINE:.0%} "
        f"mined, next {CERTIFY:.0%} certifies (Clopper-Pearson at alpha/K), newest {1 - MINE - CERTIFY:.0%} "
        "evaluates (played no part in choosing or certifying). Baseline: the bundle's policy in force, same run, "
        f"same rows. Top {args.top} certified block suggestions (by reviewer-hours removed) and top {args.top} "
        "review suggestions (by extra violations caught) added to it; the thresholds, hence the certified recall, "
        "are the bundle's. What-if: the same suggestions as block rules if the block-precision target were "
        f"{args.lower_target:g} (their bounds unchanged).",
        "",
    ]
    for result in results:
        lines += [
            f"## {result['name']} (bundle {result['bundle']})",
            "",
            f"History {result['history_rows']:,} rows: mined {result['mining_rows']:,}, certified "
            f"{result['certify_rows']:,}, evaluated {result['evaluation_rows']:,}. K = {result['candidates']} "
            f"candidates certified together at alpha = {result['alpha']:.3g} (each at alpha/K); "
            f"{result['certified']} reach the block-precision target {result['target']:g}. Mining took "
            f"{result['mining_seconds']:.1f} s.",
            "",
            "| policy | queue share | reviewer-hours | auto-block share | recall (labels) | block precision (labels) "
            "| recall (oracle) | block precision (oracle) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, r in result["routing"].items():
            lines.append(
                f"| {label} | {r['queue_share']:.2%} | {r['reviewer_hours']:.1f} | {r['block_share']:.2%} | "
                f"{_fmt(r['recall'], 4)} | {_fmt(r['block_precision'], 4)} | "
                f"{_fmt(r.get('expected_recall', math.nan), 4)} | "
                f"{_fmt(r.get('expected_block_precision', math.nan), 4)} |"
            )
        validity = result["validity"]
        if validity:
            lines += [
                "",
                f"Certified bounds against the oracle: {validity['held_certify']} of {validity['suggestions']} hold on "
                "the rows they were certified on (expected precision = mean true risk of the hits >= the bound); "
                f"{validity['held_eval']} of {validity['with_eval_hits']} on the newer evaluation rows.",
            ]
        lines += ["", f"Top {len(result['top'])} suggestions by certified precision:", ""]
        lines += _rule_table(result["top"])
        lines += ["", "Rules added in the routing table above:", ""]
        lines += _rule_table(result["rules"])
        lines.append("")
    lines += _summary(results)
    if "timing" in meta:
        t = meta["timing"]
        lines += [
            "## Time on a large history",
            "",
            f"{t['rows']:,} history rows (the newest 40% of {args.timing_rows:,} generated; mining on "
            f"{t['mining_rows']:,}, certifying {t['candidates']} candidates on the rest): {t['mining']:.1f} s to mine "
            f"and certify, {t['with_backtests']:.1f} s with the top 20 suggestions' backtests; baseline, one backtest "
            f"of one rule over the same rows: {t['one_backtest']:.1f} s.",
            "",
        ]
    return "\n".join(lines) + "\n"


def _rule_table(rules: list[dict[str, Any]]) -> list[str]:
    if not rules:
        return ["(none)"]
    lines = [
        "| rule | action | certified lower bound | hits (certify) | hits (eval) | precision (eval) "
        "| expected precision (oracle, eval) | condition |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule in rules:
        lines.append(
            f"| {rule['name']} | {rule['action']} | {_fmt(rule['certified_lower'])} | {rule['certify_hits']} "
            f"| {rule['eval_hits']} | {_fmt(rule['eval_precision'])} | {_fmt(rule['expected_precision'])} "
            f"| {rule['description']} |"
        )
    return lines


def _summary(results: list[dict[str, Any]]) -> list[str]:
    generated = [r for r in results if r["name"].startswith("generated")]
    if not generated:
        return []
    before = [r["routing"]["policy in force"] for r in generated]
    after = [next(v for k, v in r["routing"].items() if k.endswith("block rules")) for r in generated]
    relaxed = [next(v for k, v in r["routing"].items() if "certified at" in k) for r in generated]
    validity = [r["validity"] for r in generated if r["validity"]]
    return [
        "## Summary over the generated seeds",
        "",
        f"- queue share {np.mean([b['queue_share'] for b in before]):.2%} -> "
        f"{np.mean([a['queue_share'] for a in after]):.2%}, reviewer-hours "
        f"{np.mean([b['reviewer_hours'] for b in before]):.1f} -> {np.mean([a['reviewer_hours'] for a in after]):.1f} "
        "per evaluation split (mean over seeds), with the certified block suggestions added;",
        f"- what-if, block suggestions certified at the lower target: queue share "
        f"{np.mean([a['queue_share'] for a in relaxed]):.2%}, "
        f"reviewer-hours {np.mean([a['reviewer_hours'] for a in relaxed]):.1f}, block precision (oracle) "
        f"{np.nanmean([a.get('expected_block_precision', np.nan) for a in relaxed]):.4f};",
        f"- recall (oracle) {np.mean([b.get('expected_recall', np.nan) for b in before]):.4f} -> "
        f"{np.mean([a.get('expected_recall', np.nan) for a in after]):.4f}; block precision (oracle) "
        f"{np.nanmean([b.get('expected_block_precision', np.nan) for b in before]):.4f} -> "
        f"{np.nanmean([a.get('expected_block_precision', np.nan) for a in after]):.4f};",
        f"- certified lower bounds against the oracle: {sum(v['held_certify'] for v in validity)} of "
        f"{sum(v['suggestions'] for v in validity)} suggestions hold on the rows they were certified on, "
        f"{sum(v['held_eval'] for v in validity)} of {sum(v['with_eval_hits'] for v in validity)} on the newer "
        "evaluation rows.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument(
        "--lower-target", type=float, default=0.75, help="what-if: a lower block-precision target than the bundle's"
    )
    parser.add_argument("--trials", type=int, default=4, help="LightGBM search trials per training")
    parser.add_argument("--no-realdata", dest="realdata", action="store_false")
    parser.add_argument("--timing-rows", type=int, default=1_000_000, help="0: no timing on a large history")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_MD)
    args = parser.parse_args()
    start = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_rule_mining_"))
    results = []
    for seed in args.seeds:
        data_dir, models = workdir / f"data_{seed}", workdir / f"models_{seed}"
        if (models / "latest").exists():  # a workdir of an earlier run: its data and bundle
            log(f"seed {seed}: the bundle in {models}")
            bundle = Bundle.load(models / "latest")
        else:
            log(f"seed {seed}: generate {args.rows:,} rows and train")
            write_dataset(data_dir, rows=args.rows, seed=seed)
            bundle = _train(data_dir / "reviews.parquet", models, seed, args.trials)
        oracle = pd.read_parquet(data_dir / "oracle.parquet", columns=["listing_id", "true_risk"])
        results.append(
            evaluate(
                f"generated, seed {seed}, {args.rows:,} rows",
                bundle,
                args.top,
                MiningOptions(),
                oracle,
                args.lower_target,
            )
        )
        log(f"seed {seed}: {results[-1]['validity']}")
    if args.realdata:
        log("SMS spam (bench/realdata/sms_spam.csv): train and mine")
        models = workdir / "models_sms"
        sms = (
            Bundle.load(models / "latest")
            if (models / "latest").exists()
            else _train(ROOT / "bench/realdata/sms_spam.csv", models, 0, args.trials, ROOT / "configs/sms_spam.yaml")
        )
        results.append(
            evaluate(
                "real data: SMS spam collection", sms, args.top, MiningOptions(min_support=10), None, args.lower_target
            )
        )
    timed = None
    if args.timing_rows:
        log(f"time mining on the newest 40% of {args.timing_rows:,} generated rows")
        timed = timing(args.timing_rows, args.seeds[0])
    meta = run_meta("bench/bench_rule_mining.py", start)
    if timed is not None:
        meta["timing"] = timed
    args.out.write_text(render(results, meta, args))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
