"""CLI messages print whole: a long path is never broken across lines, and text that looks like rich
markup (a column named `price[usd]`) is printed as given."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from training import cli_output


def test_an_error_keeps_a_long_path_and_bracketed_names_in_one_piece(capsys: pytest.CaptureFixture[str]) -> None:
    path = "/data/exports/" + "marketplace-listings-" * 6 + "2026-12.parquet"
    with pytest.raises(typer.Exit) as exit_info:
        cli_output.fail(f"column price[usd] rows [3, 7]: not a number in {path}")
    out = capsys.readouterr().out
    assert exit_info.value.exit_code == 2
    assert out == f"error: column price[usd] rows [3, 7]: not a number in {path}\n"


def test_a_warning_on_stderr_keeps_its_text(capsys: pytest.CaptureFixture[str]) -> None:
    cli_output.warning("[bold]not markup[/] " + "x" * 200, stderr=True)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "warning: [bold]not markup[/] " + "x" * 200 + "\n"


def test_triage_score_names_a_missing_file_by_its_whole_path(bundle_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from triage.cli import app

    missing = tmp_path / ("a-directory-with-a-long-name-" * 4) / "listings[2026-12].parquet"
    result = CliRunner().invoke(app, ["score", "--bundle", str(bundle_dir), "--data", str(missing)])
    assert result.exit_code == 2
    first = result.output.splitlines()[0]
    assert first.startswith("error: ") and str(missing) in first


def test_the_selection_table_folds_a_long_candidate_name_instead_of_cutting_it() -> None:
    import io

    from rich.console import Console

    from training.summary import selection_table

    names = ["lightgbm", "logistic_regression-no-merchant_history", "logistic_regression-no-text_model"]
    figures = {"review_share_at_target_recall": 0.9, "difference_sd": 0.01, "pr_auc": 0.7, "roc_auc": 0.9}
    candidates = dict.fromkeys(names, figures)
    selection = {"criterion": "review share", "winner": {"name": "lightgbm"}, "candidates": candidates}
    out = io.StringIO()
    Console(width=80, file=out, soft_wrap=True).print(selection_table(selection))
    text = out.getvalue()
    first_cells = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))
    assert "…" not in text
    assert all(name in first_cells for name in names)


def test_triage_train_names_the_latest_pointer_of_its_out_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out elsewhere` moves elsewhere/latest, not models/latest: the closing line says which."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import training.pipeline
    import training.summary
    from triage.cli import app

    out = tmp_path / "experiments"
    result = SimpleNamespace(metrics={}, bundle_dir=out / "20261204T000000Z", mlflow=None)
    monkeypatch.setattr(training.pipeline, "train", lambda options: result)
    monkeypatch.setattr(training.summary, "summary_lines", lambda metrics: [])
    printed = CliRunner().invoke(app, ["train", "--out", str(out), "--no-mlflow"], env={"COLUMNS": "400"})
    assert printed.exit_code == 0, printed.output
    assert f"({out / 'latest'} points to it)" in printed.output
    assert "models/latest" not in printed.output


def test_triage_train_says_why_a_registered_model_got_no_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-alias into models/ (what `triage retrain` runs) is not "--out is not models/"."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import training.pipeline
    import training.summary
    from triage.cli import app

    result = SimpleNamespace(metrics={}, bundle_dir=tmp_path / "v", mlflow={"model_version": "3", "run_id": "r"})
    monkeypatch.setattr(training.pipeline, "train", lambda options: result)
    monkeypatch.setattr(training.summary, "summary_lines", lambda metrics: [])
    env = {"COLUMNS": "400"}
    asked = CliRunner().invoke(app, ["train", "--out", "models", "--no-alias"], env=env)
    elsewhere = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "experiments")], env=env)
    assert asked.exit_code == 0 and elsewhere.exit_code == 0
    assert "version 3 without alias (--no-alias:" in asked.output and "--out is not models/" not in asked.output
    assert "version 3 without alias (--out is not models/; pass --alias" in elsewhere.output
