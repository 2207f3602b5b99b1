"""`triage score --cluster`: a real Dask LocalCluster of two worker processes scores a partitioned Parquet
directory as `score_file` scores the same rows, names bad rows by column and row, and refuses bad
options with exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.validate import DataValidationError
from training.cluster import cluster_client
from training.dask_score import score_with_client, worker_bundle
from training.offline import score_file
from triage.cli import app

ROWS = 3_000
FILES = 3
ROW_GROUP_ROWS = 500
PARTITION_ROWS = 500  # one row group a partition: 3 files of 2 row groups -> 6 partitions
WORKER_MEMORY_LIMIT = "2GiB"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # the timeout bounds the module cluster start and stop too


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One LocalCluster of 2 worker processes for the module (bounded, with the tests, by the timeout)."""
    with cluster_client("local:2", memory_limit=WORKER_MEMORY_LIMIT, trim_memory=False) as opened:  # as score does
        yield opened


@pytest.fixture(scope="module")
def listings(generated_dir: Path) -> pd.DataFrame:
    frame = pd.read_parquet(generated_dir / "reviews.parquet")
    return frame.sample(ROWS, random_state=11).reset_index(drop=True)


def write_parts(frame: pd.DataFrame, directory: Path, files: int = FILES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(directory / f"listings-{k}.parquet", row_group_size=ROW_GROUP_ROWS)
    return directory


def test_cluster_scoring_equals_score_file_row_for_row(
    client: Any, bundle_dir: Path, listings: pd.DataFrame, tmp_path: Path
) -> None:
    listings = listings.copy()
    listings.loc[::7, "category"] = "hovercraft"  # values the model has no code for, in every partition
    whole = tmp_path / "listings.parquet"
    listings.to_parquet(whole)
    single = score_file(bundle_dir, whole, tmp_path / "single.parquet")
    out = tmp_path / "scored"
    summary = score_with_client(
        client, bundle_dir, write_parts(listings, tmp_path / "parts"), out, partition_rows=PARTITION_ROWS
    )

    assert summary["rows"] == ROWS and summary["partitions"] == 6
    assert summary["decisions"] == single["decisions"]
    assert summary["unknown_categories"] == single["unknown_categories"] != {}
    assert summary["unknown_categories"]["category"] == {"rows": len(listings[::7]), "values": ["hovercraft"]}
    assert sorted(p.name for p in out.iterdir()) == [f"part.{k:05d}.parquet" for k in range(6)]
    expected, got = pd.read_parquet(tmp_path / "single.parquet"), pd.read_parquet(out)
    assert list(got.columns) == list(expected.columns)
    for column in ("listing_id", "decision", "decision_tier"):
        assert got[column].tolist() == expected[column].tolist(), column
    risks = [c for c in expected.columns if c.startswith("risk")]
    # workers run ONNX Runtime on one thread: the float32 tree sums may round differently
    np.testing.assert_allclose(got[risks].to_numpy(), expected[risks].to_numpy(), rtol=0, atol=1e-5)
    loads = client.run(lambda: worker_bundle.cache_info().misses)
    assert sorted(loads.values()) == [1, 1]  # one bundle load per worker, not one per partition


def test_scoring_workers_run_without_dasks_malloc_trim_threshold(client: Any) -> None:
    """`MALLOC_TRIM_THRESHOLD_=65536`, which Dask sets for its workers, made scoring 25% slower per row;
    `triage score --cluster local:N` starts its workers without it (a training cluster keeps it)."""
    import os

    assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}
    with cluster_client("local:1", memory_limit=WORKER_MEMORY_LIMIT) as training:
        assert set(training.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}


def _count_scoring() -> None:
    """On a worker: count the rows `training.dask_score` scores (undone by `_stop_counting`)."""
    import importlib

    module: Any = importlib.import_module("training.dask_score")
    original = module.score_frame
    module.scored_rows = 0

    def counting(bundle: Any, frame: pd.DataFrame) -> pd.DataFrame:
        module.scored_rows += len(frame)
        return original(bundle, frame)

    counting.original = original  # type: ignore[attr-defined]
    module.score_frame = counting


def _stop_counting() -> int:
    import importlib

    module: Any = importlib.import_module("training.dask_score")
    module.score_frame = module.score_frame.original
    return int(module.scored_rows)


def test_each_partition_is_scored_once(client: Any, bundle_dir: Path, listings: pd.DataFrame, tmp_path: Path) -> None:
    """The part, the id check, the decision counts and the unknown categories come from one scoring of a
    partition: as separate Dask outputs each of them scored every partition again (three times the work)."""
    client.run(_count_scoring)
    try:
        summary = score_with_client(
            client, bundle_dir, write_parts(listings, tmp_path / "parts"), tmp_path / "out", partition_rows=1_000
        )
    finally:
        scored = client.run(_stop_counting)
    assert summary["rows"] == ROWS and sum(scored.values()) == ROWS


def test_a_partition_with_a_bad_row_names_the_file_column_and_row(
    client: Any, bundle_dir: Path, listings: pd.DataFrame, tmp_path: Path
) -> None:
    parts = write_parts(listings, tmp_path / "parts")
    bad = pd.read_parquet(parts / "listings-2.parquet")
    bad["price"] = bad["price"].astype(str)
    bad.iloc[7, bad.columns.get_loc("price")] = "cheap"
    bad.to_parquet(parts / "listings-2.parquet", row_group_size=ROW_GROUP_ROWS)
    out = tmp_path / "scored"
    out.mkdir()
    (out / "part.00000.parquet").write_bytes(b"an earlier run's part")

    with pytest.raises(DataValidationError) as raised:
        score_with_client(client, bundle_dir, parts, out, partition_rows=PARTITION_ROWS)

    message = str(raised.value)
    row = 2 * ROWS // FILES + 7  # the input's row number: the files in name order
    assert "listings-2.parquet" in message and "column 'price'" in message and "not numbers" in message
    assert f"row {row} (listing_id={listings.loc[row, 'listing_id']!r}): 'cheap'" in message
    assert [p.name for p in out.iterdir()] == ["part.00000.parquet"]  # nothing written, nothing staged
    assert (out / "part.00000.parquet").read_bytes() == b"an earlier run's part"


def test_an_id_repeated_in_two_partitions_is_refused_with_both_rows(
    client: Any, bundle_dir: Path, listings: pd.DataFrame, tmp_path: Path
) -> None:
    repeated = listings.copy()
    repeated.loc[ROWS - 1, "listing_id"] = repeated.loc[3, "listing_id"]

    with pytest.raises(DataValidationError) as raised:
        score_with_client(
            client, bundle_dir, write_parts(repeated, tmp_path / "parts"), tmp_path / "out", partition_rows=1_000
        )

    message = str(raised.value)
    assert "column 'listing_id'" in message and "duplicated id" in message
    assert f"row 3 (listing_id={listings.loc[3, 'listing_id']!r})" in message and f"row {ROWS - 1} " in message


def test_cli_scores_on_a_running_scheduler_and_prints_the_summary(
    client: Any, bundle_dir: Path, listings: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "scored"
    result = CliRunner().invoke(
        app,
        ["score", "--bundle", str(bundle_dir), "--data", str(write_parts(listings, tmp_path / "parts")),
         "--out", str(out), "--cluster", client.scheduler.address],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "'rows': 3000" in result.output and "'decisions'" in result.output and "rows_per_second" in result.output
    assert len(pd.read_parquet(out)) == ROWS


@pytest.mark.parametrize(
    ("cluster", "message"),
    [("local:0", "local:N needs 1 <= N"), ("spark://host:7077", "expected local:N"), ("tcp://", "expected local:N")],
)
def test_a_bad_cluster_value_exits_2_with_the_reason(
    bundle_dir: Path, tmp_path: Path, cluster: str, message: str
) -> None:
    result = CliRunner().invoke(
        app, ["score", "--bundle", str(bundle_dir), "--data", str(tmp_path), "--cluster", cluster]
    )

    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_out_must_be_a_directory_with_cluster(bundle_dir: Path, tmp_path: Path) -> None:
    existing = tmp_path / "scored.parquet"
    existing.write_bytes(b"")
    for out in (existing, tmp_path / "scored.csv"):
        result = CliRunner().invoke(
            app,
            ["score", "--bundle", str(bundle_dir), "--data", str(tmp_path), "--out", str(out), "--cluster", "local:1"],
        )
        assert result.exit_code == 2
        assert "the output is a directory of Parquet parts" in " ".join(result.output.split())


def test_cluster_reads_parquet_only(bundle_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "listings.csv"
    csv.write_text("listing_id\n1\n")
    out = tmp_path / "scored"
    result = CliRunner().invoke(
        app, ["score", "--bundle", str(bundle_dir), "--data", str(csv), "--out", str(out), "--cluster", "local:1"]
    )

    assert result.exit_code == 2
    assert "--cluster reads Parquet" in " ".join(result.output.split())
