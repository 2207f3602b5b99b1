"""`triage rules backtest` on a bundle's history and on a scored file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bundle.load import Bundle
from triage.cli import app

IVORY = '{"name": "ivory", "action": "block", "kind": "term", "terms": ["ivory"], "fields": ["title", "description"]}'


def test_backtest_prints_json_on_the_bundle_history(bundle_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["rules", "backtest", "--bundle", str(bundle_dir), "--rule", IVORY, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    history = Bundle.load(bundle_dir).history()
    assert history is not None and out["rows"] == len(history)
    assert out["certificate"]["certified"] is False and out["rule"]["hits"] > 0

    rule_file = tmp_path / "rule.json"
    rule_file.write_text(IVORY)
    half = tmp_path / "half.parquet"
    history.iloc[: len(history) // 2].to_parquet(half)
    args = ["rules", "backtest", "--bundle", str(bundle_dir), "--rule-file", str(rule_file), "--data", str(half)]
    on_file = runner.invoke(app, [*args, "--json"])
    assert on_file.exit_code == 0, on_file.output
    assert json.loads(on_file.output)["rows"] == len(history) // 2
    printed = runner.invoke(app, args)
    assert printed.exit_code == 0 and "NOT certified" in printed.output


def test_bad_rules_name_the_field(bundle_dir: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        app, ["rules", "backtest", "--bundle", str(bundle_dir), "--rule", '{"name": "x", "kind": "term"}']
    )
    missing = runner.invoke(app, ["rules", "backtest", "--bundle", str(bundle_dir), "--remove", "nope"])
    never = runner.invoke(  # a range on a text column could never match: refused as the policy API refuses it
        app,
        [
            "rules", "backtest", "--bundle", str(bundle_dir),
            "--rule", '{"name": "t", "action": "review", "kind": "range", "column": "title", "max": 30}',
        ],
    )  # fmt: skip
    assert bad.exit_code == 2 and "rule.action" in bad.output
    assert missing.exit_code == 2 and "remove:" in missing.output
    assert never.exit_code == 2 and "'title' is a text column" in " ".join(never.output.split()), never.output


def test_a_scored_csv_reads_as_the_same_rows_as_parquet(bundle_dir: Path, tmp_path: Path) -> None:
    # A market "NA" (North America) or a listing id "007" are values: the CSV export of the bundle's
    # history backtests as its Parquet does, row for row.
    history = Bundle.load(bundle_dir).history()
    assert history is not None
    history = history.assign(market=["NA" if i % 3 == 0 else m for i, m in enumerate(history["market"])])
    rule = '{"name": "na_market", "action": "review", "kind": "category", "column": "market", "values": ["NA"]}'
    results = []
    for name in ("scored.parquet", "scored.csv"):
        path = tmp_path / name
        history.to_parquet(path) if name.endswith(".parquet") else history.to_csv(path, index=False)
        args = ["rules", "backtest", "--bundle", str(bundle_dir), "--rule", rule, "--data", str(path), "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        results.append(json.loads(result.output)["rule"]["hits"])
    assert results[0] == results[1] == (history["market"] == "NA").sum()
