"""`triage rules suggest`: on the bundle's history or on a labelled file scored by the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from triage.cli import app


def test_rules_suggest_prints_a_ranked_table_from_the_bundle_history(bundle_dir: Path) -> None:
    result = CliRunner().invoke(app, ["rules", "suggest", "--bundle", str(bundle_dir), "--top", "5"])

    assert result.exit_code == 0, result.output
    assert "rule suggestions: mined on" in result.output
    assert "none enabled" in result.output


def test_rules_suggest_shows_the_queue_a_review_rule_adds_not_the_queue_a_block_rule_would_remove(
    bundle_dir: Path,
) -> None:
    args = ["rules", "suggest", "--bundle", str(bundle_dir), "--top", "8"]
    table = CliRunner().invoke(app, args)
    report = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)

    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    header = " ".join(lines[top : next(i for i, line in enumerate(lines) if line.startswith("┡"))])
    assert "queue" in header and "hours" in header and "removed" not in header  # the headers wrap: words only
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    rows = [row for row in rows if row and row[0].isdigit()]
    suggestions = report["suggestions"]
    assert len(rows) == len(suggestions) and any(s["rule"]["action"] == "review" for s in suggestions)
    for row, suggestion in zip(rows, suggestions, strict=True):
        queue, hours, caught = row[5:8]
        review = suggestion["as_review"]
        if suggestion["rule"]["action"] == "review":  # it removes nothing: it queues the auto-passes it matches
            assert (queue, hours) == (f"+{review['workload_added_items']:,}", f"+{review['reviewer_hours_added']:.1f}")
        else:
            block = suggestion["as_block"]
            assert (queue, hours) == (f"-{block['hits_in_queue']:,}", f"-{block['reviewer_hours_removed']:.1f}")
        assert caught == f"{review['extra_violations_caught']:,}"


def test_rules_suggest_json_on_a_labelled_file(bundle_dir: Path, generated_dir: Path, tmp_path: Path) -> None:
    reviews = pd.read_parquet(generated_dir / "reviews.parquet")
    newest = reviews.tail(12_000)  # the newest rows: the bundle's held-out period
    data = tmp_path / "newest.parquet"
    newest.to_parquet(data, index=False)

    result = CliRunner().invoke(
        app, ["rules", "suggest", "--bundle", str(bundle_dir), "--data", str(data), "--top", "3", "--json"]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["mining_rows"] + report["holdout_rows"] == len(newest)
    assert report["enabled"] is False and len(report["suggestions"]) <= 3
    assert all(not s["enabled"] and s["backtest"] is not None for s in report["suggestions"])


def test_rules_suggest_refuses_bad_input_naming_it(bundle_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad_sort = runner.invoke(app, ["rules", "suggest", "--bundle", str(bundle_dir), "--sort", "best"])
    no_bundle = runner.invoke(app, ["rules", "suggest", "--bundle", str(tmp_path / "none")])
    unlabelled = tmp_path / "unlabelled.parquet"
    pd.DataFrame({"listing_id": ["a"], "title": ["x"]}).to_parquet(unlabelled)
    no_label = runner.invoke(app, ["rules", "suggest", "--bundle", str(bundle_dir), "--data", str(unlabelled)])

    assert bad_sort.exit_code == 2 and "--sort" in bad_sort.output
    assert no_bundle.exit_code == 2 and "error" in no_bundle.output
    assert no_label.exit_code == 2 and "label" in no_label.output
