"""Writes the notebooks from plain Python cell sources, so they stay reviewable in diffs.

Run: .venv/bin/python notebooks/build_notebooks.py   (the test suite executes the result)
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
# The project's venv as a Jupyter kernel: `make notebooks` registers it under this name.
KERNELSPEC = {"name": "listing-triage", "display_name": "Python (listing triage)", "language": "python"}

MODEL_REPORT = [
    (
        "md",
        "# Model report\n\nA data scientist's look at one bundle: test metrics beside the baseline, "
        "calibration, score distributions by segment and the features the model leans on. Everything "
        "here reads the exported bundle through the package's own functions.\n\n"
        "Set `TRIAGE_BUNDLE` to look at another bundle (default `models/latest`).",
    ),
    (
        "code",
        "import json, os\nfrom pathlib import Path\n\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
        "import pandas as pd\n\nfrom bundle.load import Bundle\nfrom training.evaluate import "
        "expected_calibration_error\n\nbundle = Bundle.load(os.environ.get('TRIAGE_BUNDLE', '../models/latest'))\n"
        "metrics = bundle.metrics\nreference = pd.read_parquet(bundle.path / 'reference.parquet')\n"
        "print(bundle.version, bundle.policy.version)",
    ),
    ("md", "## Model selection: every candidate on the validation part of the training period"),
    (
        "code",
        "selection = metrics['selection']\nprint(selection['criterion'])\nprint('chosen:', selection['winner']['name'], "
        "'-', selection['reason'])\npd.DataFrame(selection['candidates']).T.drop(columns=['kind'])",
    ),
    ("md", "## Test split: the chosen model against the logistic-regression baseline"),
    (
        "code",
        "rows = ['roc_auc', 'pr_auc', 'prevalence']\npd.DataFrame({\n"
        "    metrics['model']['name']: [metrics['test'].get(k) for k in rows],\n"
        "    'logistic baseline': [metrics['baseline_test'].get(k) for k in rows],\n}, index=rows)",
    ),
    (
        "code",
        "pd.Series(metrics['test']['routing'], name='at the bundle thresholds (test split)').to_frame()",
    ),
    ("md", "## Calibration on the reference (calibration) split"),
    (
        "code",
        "bins = pd.qcut(reference['risk'], 15, duplicates='drop')\n"
        "rel = reference.groupby(bins, observed=True).agg(mean_risk=('risk', 'mean'), observed=('label', 'mean'))\n"
        "fig, ax = plt.subplots(figsize=(5, 5))\nax.plot([0, 1], [0, 1], '--', color='grey')\n"
        "ax.plot(rel['mean_risk'], rel['observed'], 'o-')\nax.set(xlabel='calibrated risk', "
        "ylabel='observed rejection rate', title='Reliability')\nplt.show()\n"
        "print('ECE on reference:', round(expected_calibration_error(reference['label'].to_numpy(), "
        "reference['risk'].to_numpy()), 4))",
    ),
    ("md", "## Score distributions and per-segment AUC"),
    (
        "code",
        "fig, ax = plt.subplots(figsize=(10, 4))\nfor label, part in reference.groupby('label'):\n"
        "    ax.hist(np.log10(part['risk'].clip(1e-4)), bins=60, alpha=0.6, density=True, "
        "label=f'label={label}')\nax.set(xlabel='log10 risk', title='Risk by review outcome')\nax.legend()\n"
        "plt.show()\npd.DataFrame(metrics['test']['segments']['category']).T.sort_values('roc_auc')",
    ),
    ("code", "reference.groupby('category')['risk'].describe(percentiles=[0.5, 0.9, 0.99])"),
    ("md", "## What the model leans on"),
    (
        "code",
        "pd.Series(metrics['feature_importance']).head(15).plot.barh(figsize=(7, 5)).invert_yaxis()\n"
        "plt.title(metrics['feature_importance_kind'])\nplt.show()",
    ),
]

THRESHOLD_SIMULATION = [
    (
        "md",
        "# Threshold simulation: what moving the thresholds does to workload and misses\n\n"
        "For PMs and policy owners. Everything below replays the bundle's reference set (the calibration "
        "split: calibrated risk, review outcome, handling time, segments) through the same routing "
        "function the scoring service uses, so these numbers are what the service would do.\n\n"
        "- **recall**: share of violating listings that are *not* auto-passed (a miss = a violation auto-passed)\n"
        "- **block precision**: share of auto-blocked listings that really violate\n"
        "- **workload**: listings sent to the human queue per day, reviewer-hours and FTE\n"
        "- **headline**: the share of listings decided automatically (auto-pass + auto-block) and the reviewer "
        "FTE that saves against reviewing every listing, net of the audits of automated decisions (an audit "
        "is a review too)\n"
        "- **tiers** (tiered bundles): each violation tier's recall target, recall and missed violations per day",
    ),
    (
        "code",
        "import os\n\nimport matplotlib.pyplot as plt\nimport pandas as pd\n\n"
        "from bundle.load import read_reference\nfrom bundle.manifest import resolve_bundle\n"
        "from bundle.policies import load_policy\n"
        "from decision.simulate import simulate_policy, sweep_policy, target_mode_policy\n"
        "from decision.thresholds import choose_policy_thresholds\nfrom features.config import load_config\n\n"
        "bundle = resolve_bundle(os.environ.get('TRIAGE_BUNDLE', '../models/latest'))\n"
        "config = load_config(bundle / 'data_config.yaml')\n"
        "# the reference rows with the columns the rules read (text, product matches), from the bundle's history\n"
        "reference = read_reference(bundle, config.id, config.listing_columns)\npolicy = load_policy(bundle)\n"
        "DAILY_VOLUME = 100_000\n"
        "print(f'{len(reference):,} reference listings, prevalence {reference.label.mean():.2%}; '\n"
        "      f'production policy {policy.version}: t_pass={policy.t_pass:.4f}, t_block={policy.t_block:.4f}')",
    ),
    ("md", "## The production policy at 100,000 listings a day\n\nThe headline first, then every number."),
    (
        "code",
        "def table(result):\n    d = result.to_dict()\n    rows = {k: v for k, v in d.items() if isinstance(v, dict) and 'value' in v}\n"
        "    return pd.DataFrame(rows).T[['value', 'low', 'high']]\n\n"
        "production = simulate_policy(reference, policy, daily_volume=DAILY_VOLUME)\n"
        "auto, saved = production.headline.auto_decided_share, production.headline.fte_saved\n"
        "print(f'Decided automatically: {auto.value:.1%} (95%: {auto.low:.1%} to {auto.high:.1%})')\n"
        "print(f'Reviewer FTE saved against reviewing every listing, net of audits: {saved.value:,.1f} '\n"
        "      f'(95%: {saved.low:,.1f} to {saved.high:,.1f}; {production.headline.fte_saved_gross.value:,.1f} '\n"
        "      f'before audits, {production.headline.audit_fte.value:,.1f} on audits; reviewing everything takes '\n"
        "      f'{production.headline.fte_review_all.value:,.1f} FTE, the queue with this policy {production.fte.value:,.1f})')\n"
        "table(production)",
    ),
    (
        "md",
        "## Missed violations per day by tier\n\nA tiered bundle has one recall target per violation tier "
        "(severe violations held to a stricter one). A miss is a violation of that tier auto-passed.",
    ),
    (
        "code",
        "if production.tiers:\n"
        "    tiers = pd.DataFrame([{'tier': t.name, 'recall target': t.recall_target, 'tier t_pass': t.t_pass,\n"
        "                           'recall': t.recall.value, 'recall low': t.recall.low,\n"
        "                           'missed/day': t.missed_violations_per_day.value,\n"
        "                           'missed/day high': t.missed_violations_per_day.high,\n"
        "                           'violations in reference': t.n_violations} for t in production.tiers])\n"
        "    display(tiers.set_index('tier').round(4))\n"
        "else:\n"
        "    print('This bundle is not tiered: every violation counts toward one recall target.')",
    ),
    (
        "md",
        "## The whole workload-recall curve\n\nEach point is a t_pass at the policy's t_block, with its rules: "
        "how much review work buys how much recall. The production policy is marked (on a tiered or segmented "
        "policy it lies off the curve: the curve sweeps one global t_pass).",
    ),
    (
        "code",
        "curve = sweep_policy(reference, policy, daily_volume=DAILY_VOLUME)\nfig, ax = plt.subplots(figsize=(7, 4.5))\n"
        "ax.plot(curve['queue_share'], curve['recall'])\n"
        "current = production\n"
        "ax.plot([current.queue_share.value], [current.recall.value], 'ro', label='production policy')\n"
        "ax.set(xlabel='share of listings sent to review', ylabel='recall', ylim=(0.8, 1.001))\nax.legend()\nplt.show()",
    ),
    (
        "md",
        "## Three scenarios\n\n1. tighter recall target (99.5%)\n2. a looser one (98%)\n"
        "3. the production thresholds if violations double next quarter",
    ),
    (
        "code",
        "scenarios = {}\nfor target in (0.995, 0.98):\n"
        "    choice = choose_policy_thresholds(reference, recall=target, block_precision=0.98)\n"
        "    print(choice.message if hasattr(choice, 'message') else '')\n"
        "    scenarios[f'recall {target:.1%}'] = simulate_policy(reference, target_mode_policy(choice, policy),\n"
        "                                                        daily_volume=DAILY_VOLUME)\n"
        "scenarios['violations double'] = simulate_policy(reference, policy, daily_volume=DAILY_VOLUME,\n"
        "                                                 prevalence_multiplier=2.0)\n"
        "pd.DataFrame({name: {'auto-decided': r.headline.auto_decided_share.value, 'FTE saved (net)': r.headline.fte_saved.value,\n"
        "                     'audit FTE': r.headline.audit_fte.value,\n"
        "                     'queue/day': r.queue_per_day.value, 'reviewer-hours/day': r.reviewer_hours_per_day.value,\n"
        "                     'FTE': r.fte.value, 'missed/day': r.missed_violations_per_day.value,\n"
        "                     'wrongful blocks/day': r.wrongful_blocks_per_day.value, 'recall': r.recall.value}\n"
        "              for name, r in scenarios.items()}).round(2)",
    ),
    ("md", "## Per-segment view: where does the work come from?"),
    (
        "code",
        "by_category = simulate_policy(reference, policy, daily_volume=DAILY_VOLUME, breakdown_by='category')\n"
        "pd.DataFrame([{'category': s['category'], 'listings/day': s['daily_volume'],\n"
        "               'queue/day': s['queue_per_day']['value'], 'missed/day': s['missed_violations_per_day']['value']}\n"
        "              for s in by_category.segments]).set_index('category').round(1).sort_values('queue/day', ascending=False)",
    ),
]


def build(cells: list[tuple[str, str]], path: Path) -> None:
    notebook = new_notebook(
        cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells],
        metadata={"kernelspec": KERNELSPEC},
    )
    nbformat.write(notebook, path)


if __name__ == "__main__":
    build(MODEL_REPORT, HERE / "model_report.ipynb")
    build(THRESHOLD_SIMULATION, HERE / "threshold_simulation.ipynb")
