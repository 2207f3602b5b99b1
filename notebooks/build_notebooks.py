"""Writes the notebooks from plain Python cell sources, so they stay reviewable in diffs.

Run: .venv/bin/python notebooks/build_notebooks.py   (the test suite executes the result)
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

MODEL_REPORT = [
    ("md", "# Model report\n\nA data scientist's look at one bundle: test metrics beside the baseline, "
           "calibration, score distributions by segment and the features the model leans on. Everything "
           "here reads the exported bundle through the package's own functions.\n\n"
           "Set `TRIAGE_BUNDLE` to look at another bundle (default `models/latest`)."),
    ("code", "import json, os\nfrom pathlib import Path\n\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
             "import pandas as pd\n\nfrom features.scoring import Bundle\nfrom training.evaluate import "
             "expected_calibration_error\n\nbundle = Bundle.load(os.environ.get('TRIAGE_BUNDLE', '../models/latest'))\n"
             "metrics = bundle.metrics\nreference = pd.read_parquet(bundle.path / 'reference.parquet')\n"
             "print(bundle.version, bundle.policy.version)"),
    ("md", "## Test split: model against the logistic-regression baseline"),
    ("code", "rows = ['roc_auc', 'pr_auc', 'prevalence']\npd.DataFrame({\n"
             "    'LightGBM': [metrics['test'].get(k) for k in rows],\n"
             "    'logistic baseline': [metrics['baseline_test'].get(k) for k in rows],\n}, index=rows)"),
    ("code", "pd.Series(metrics['test']['routing'], name='at the bundle thresholds (test split)').to_frame()"),
    ("md", "## Calibration on the reference (calibration) split"),
    ("code", "bins = pd.qcut(reference['risk'], 15, duplicates='drop')\n"
             "rel = reference.groupby(bins, observed=True).agg(mean_risk=('risk', 'mean'), observed=('label', 'mean'))\n"
             "fig, ax = plt.subplots(figsize=(5, 5))\nax.plot([0, 1], [0, 1], '--', color='grey')\n"
             "ax.plot(rel['mean_risk'], rel['observed'], 'o-')\nax.set(xlabel='calibrated risk', "
             "ylabel='observed rejection rate', title='Reliability')\nplt.show()\n"
             "print('ECE on reference:', round(expected_calibration_error(reference['label'].to_numpy(), "
             "reference['risk'].to_numpy()), 4))"),
    ("md", "## Score distributions and per-segment AUC"),
    ("code", "fig, ax = plt.subplots(figsize=(10, 4))\nfor label, part in reference.groupby('label'):\n"
             "    ax.hist(np.log10(part['risk'].clip(1e-4)), bins=60, alpha=0.6, density=True, "
             "label=f'label={label}')\nax.set(xlabel='log10 risk', title='Risk by review outcome')\nax.legend()\n"
             "plt.show()\npd.DataFrame(metrics['test']['segments']['category']).T.sort_values('roc_auc')"),
    ("code", "reference.groupby('category')['risk'].describe(percentiles=[0.5, 0.9, 0.99])"),
    ("md", "## What the model leans on"),
    ("code", "pd.Series(metrics['feature_importance_gain']).head(15).plot.barh(figsize=(7, 5)).invert_yaxis()\n"
             "plt.title('LightGBM gain')\nplt.show()"),
]


def build(cells: list[tuple[str, str]], path: Path) -> None:
    notebook = new_notebook(
        cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(notebook, path)


if __name__ == "__main__":
    build(MODEL_REPORT, HERE / "model_report.ipynb")
