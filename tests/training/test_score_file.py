"""`score_file` streams a Parquet file chunk by chunk: the same output as reading, validating and scoring the
file in one piece; bad input stops with the whole file's message and leaves no output behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import training.offline as offline
from bundle.load import Bundle
from features.config import DataConfig
from features.validate import DataValidationError, load_table, stream_table, validate_listings

CHUNK = 300


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


@pytest.fixture(scope="module")
def rows(generated_dir: Path, bundle: Bundle) -> pd.DataFrame:
    """1,000 listings as a file brings them (not validated), in the file's order."""
    frame = pd.read_parquet(generated_dir / "reviews.parquet").iloc[:1000].reset_index(drop=True)
    return frame[offline.scoring_columns(bundle)]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline, "SCORE_CHUNK_ROWS", CHUNK)  # 4 chunks, the last one short


def whole_file_message(path: Path, config: DataConfig, bundle: Bundle) -> str:
    with pytest.raises(DataValidationError) as whole:
        validate_listings(load_table(path, config, columns=offline.scoring_columns(bundle)), config)
    return str(whole.value)


def test_a_streamed_parquet_file_scores_as_the_csv_read_in_one_piece(
    bundle_dir: Path, bundle: Bundle, rows: pd.DataFrame, tmp_path: Path, small_chunks: None
) -> None:
    parquet, csv = tmp_path / "in.parquet", tmp_path / "in.csv"
    rows.to_parquet(parquet, index=False)
    rows.to_csv(csv, index=False)
    assert stream_table(parquet, bundle.config, offline.scoring_columns(bundle)) is not None
    assert stream_table(csv, bundle.config, offline.scoring_columns(bundle)) is None  # CSV: read whole
    streamed = offline.score_file(bundle_dir, parquet, tmp_path / "streamed.parquet", threads=2)
    whole = offline.score_file(bundle_dir, csv, tmp_path / "whole.parquet", threads=2)
    assert streamed["rows"] == whole["rows"] == len(rows)
    assert streamed["decisions"] == whole["decisions"]
    out = pd.read_parquet(tmp_path / "streamed.parquet")
    pd.testing.assert_frame_equal(out, pd.read_parquet(tmp_path / "whole.parquet"))
    expected = offline.score_frame(bundle, validate_listings(rows, bundle.config))
    np.testing.assert_array_equal(out["risk"].to_numpy(), expected["risk"].to_numpy())
    assert out["decision"].tolist() == expected["decision"].tolist()
    assert out[bundle.config.id].tolist() == rows[bundle.config.id].astype(str).tolist()
    # CSV output: the chunks appended under one header are the table written in one piece
    offline.score_file(bundle_dir, parquet, tmp_path / "streamed.csv", threads=2)
    assert (tmp_path / "streamed.csv").read_text() == expected.to_csv(index=False)
    assert not list(tmp_path.glob(".*.partial"))


def test_stream_table_yields_frames_with_their_first_row(bundle: Bundle, rows: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    rows.to_parquet(path, index=False)
    stream = stream_table(path, bundle.config, offline.scoring_columns(bundle), batch_rows=CHUNK)
    assert stream is not None
    frames = list(stream)
    assert [first for first, _ in frames] == [0, 300, 600, 900]
    pd.testing.assert_frame_equal(pd.concat([f for _, f in frames], ignore_index=True), rows)
    assert frames[1][1].attrs["source"] == str(path)


def test_files_a_chunk_could_read_differently_are_read_whole(
    bundle: Bundle, rows: pd.DataFrame, tmp_path: Path
) -> None:
    """Timestamps stored as text (their format is inferred from the first value) and a missing column (the
    whole read names what the file holds) go to `load_table`; a missing file is an error at once."""
    columns = offline.scoring_columns(bundle)
    timestamp = bundle.config.timestamp
    assert timestamp in columns
    as_text = tmp_path / "text_times.parquet"
    rows.assign(**{timestamp: rows[timestamp].astype(str)}).to_parquet(as_text, index=False)
    assert stream_table(as_text, bundle.config, columns) is None
    lacking = tmp_path / "lacking.parquet"
    rows.drop(columns=[bundle.config.text[0]]).to_parquet(lacking, index=False)
    assert stream_table(lacking, bundle.config, columns) is None
    with pytest.raises(FileNotFoundError, match="data file not found"):
        stream_table(tmp_path / "nowhere.parquet", bundle.config, columns)


def test_problems_in_several_chunks_are_reported_as_the_whole_file_reports_them(
    bundle_dir: Path, bundle: Bundle, rows: pd.DataFrame, tmp_path: Path, small_chunks: None
) -> None:
    config = bundle.config
    numeric = config.numeric[0]
    bad = rows.copy()
    bad[numeric] = bad[numeric].map(lambda v: None if pd.isna(v) else repr(float(v)))  # numbers as text
    bad.loc[[5, 650, 901], numeric] = "n/a"  # chunks 0, 2 and 3
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False)
    out = tmp_path / "scored.parquet"
    out.write_bytes(b"an earlier run's output")
    with pytest.raises(DataValidationError) as streamed:
        offline.score_file(bundle_dir, path, out, threads=2)
    message = str(streamed.value)
    assert message == whole_file_message(path, config, bundle)
    assert f"column {numeric!r}: 3 rows are not numbers" in message
    assert "row 650" in message and "row 901" in message
    assert out.read_bytes() == b"an earlier run's output"  # untouched, and no partial file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "scored.parquet"]


def test_an_id_repeated_in_two_chunks_is_refused_with_every_row_that_shares_it(
    bundle_dir: Path, bundle: Bundle, rows: pd.DataFrame, tmp_path: Path, small_chunks: None
) -> None:
    """Each chunk sees only its own duplicates: ids are compared across chunks before the output is kept."""
    config = bundle.config
    twice = rows.copy()
    twice.loc[950, config.id] = twice.loc[10, config.id]  # chunk 0 and chunk 3
    path = tmp_path / "twice.parquet"
    twice.to_parquet(path, index=False)
    with pytest.raises(DataValidationError) as streamed:
        offline.score_file(bundle_dir, path, tmp_path / "scored.parquet", threads=2)
    message = str(streamed.value)
    assert message == whole_file_message(path, config, bundle)
    assert "share a duplicated id" in message and "row 10 " in message and "row 950 " in message
    assert not (tmp_path / "scored.parquet").exists() and not list(tmp_path.glob(".*.partial"))


def test_an_empty_file_scores_to_an_empty_output(
    bundle_dir: Path, bundle: Bundle, rows: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "empty.parquet"
    rows.iloc[:0].to_parquet(path, index=False)
    summary = offline.score_file(bundle_dir, path, tmp_path / "scored.parquet")
    assert summary["rows"] == 0 and summary["decisions"] == {}
    out = pd.read_parquet(tmp_path / "scored.parquet")
    assert len(out) == 0
    assert {bundle.config.id, "risk", "decision", "decision_tier"} <= set(out.columns)


def foreign_export(rows: pd.DataFrame, category: str) -> tuple[Any, np.ndarray]:
    """(an arrow table of `rows` with `category` as integer codes that are null from row 950 on, without
    pandas' metadata, as another tool exports it; the codes)."""
    import pyarrow as pa

    codes = pd.factorize(rows[category])[0].astype(object)
    codes[950:] = None  # only the last chunk holds a null
    table = pa.Table.from_pandas(rows, preserve_index=False)
    table = table.set_column(table.schema.get_field_index(category), category, pa.array(codes, pa.int64()))
    return table.replace_schema_metadata(None), codes


def test_an_integer_column_with_a_null_reads_as_the_whole_file_reads_it(
    bundle_dir: Path, bundle: Bundle, rows: pd.DataFrame, tmp_path: Path, small_chunks: None
) -> None:
    """A file written without pandas' metadata (another tool's export) with an integer category that is
    null only in its last rows: the whole table reads it as float64 ("7.0"); so must the frames before
    the null, or the same category would read "7" there. A nullable integer pandas wrote reads alike."""
    import pyarrow.parquet as pq

    config = bundle.config
    category = config.categorical[0]
    table, codes = foreign_export(rows, category)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(table, foreign)
    whole = validate_listings(load_table(foreign, config, columns=offline.scoring_columns(bundle)), config)
    stream = stream_table(foreign, config, offline.scoring_columns(bundle), batch_rows=CHUNK)
    assert stream is not None
    frames = [validate_listings(frame, config, first_row=first) for first, frame in stream]
    assert frames[0][category].iloc[0] == whole[category].iloc[0] == f"{float(codes[0])}"
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)
    offline.score_file(bundle_dir, foreign, tmp_path / "scored.parquet", threads=2)
    expected = offline.score_frame(bundle, whole)
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "scored.parquet")["risk"], expected["risk"])

    nullable = tmp_path / "nullable.parquet"
    rows.assign(**{category: pd.array(codes, dtype="Int64")}).to_parquet(nullable, index=False)
    whole = validate_listings(load_table(nullable, config, columns=offline.scoring_columns(bundle)), config)
    stream = stream_table(nullable, config, offline.scoring_columns(bundle), batch_rows=CHUNK)
    assert stream is not None
    frames = [validate_listings(frame, config, first_row=first) for first, frame in stream]
    assert frames[0][category].iloc[0] == whole[category].iloc[0] == str(codes[0])
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)


def test_a_dask_partition_reads_an_integer_column_with_a_null_as_the_whole_file_does(
    bundle: Bundle, rows: pd.DataFrame, tmp_path: Path
) -> None:
    """`triage score --cluster` reads partitions of row groups: the one before the null reads float64 too."""
    import pyarrow.parquet as pq

    from training.dask_score import floated_integers, plan_pieces, read_piece

    category = bundle.config.categorical[0]
    table, _ = foreign_export(rows, category)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(table, foreign, row_group_size=500)
    pieces = plan_pieces([foreign], partition_rows=500)
    assert len(pieces) == 2
    first = read_piece(pieces[0], offline.scoring_columns(bundle))
    whole = pd.read_parquet(foreign)
    assert first[category].dtype == whole[category].dtype == np.float64
    assert first[category].tolist() == whole[category].iloc[:500].tolist()
    # a directory whose second file alone holds the null: the first file's rows read float64 too
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(table.slice(0, 500), parts / "a.parquet")
    pq.write_table(table.slice(500), parts / "b.parquet")
    files = sorted(parts.iterdir())
    columns = offline.scoring_columns(bundle)
    assert floated_integers(files, columns) == [category]
    first = read_piece(plan_pieces(files)[0], columns, floated_integers(files, columns))
    assert first[category].dtype == np.float64
    assert first[category].tolist() == whole[category].iloc[:500].tolist()


@pytest.mark.parametrize("name, says", [("a_directory", "is a directory"), ("scores.txt", "name a .parquet or .csv")])
def test_an_output_that_is_a_directory_or_of_no_known_type_is_refused_before_scoring(
    bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path, name: str, says: str
) -> None:
    from typer.testing import CliRunner

    from triage.cli import app

    data = tmp_path / "in.parquet"
    rows.iloc[:50].to_parquet(data, index=False)
    (tmp_path / "a_directory").mkdir()
    out = tmp_path / name
    result = CliRunner().invoke(app, ["score", "--bundle", str(bundle_dir), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_directory", "in.parquet"]


def write_parts(frame: pd.DataFrame, directory: Path, files: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(directory / f"part-{k}.parquet", index=False, row_group_size=200)
    return directory


def test_a_directory_of_parquet_files_scores_as_the_one_file_holding_its_rows(
    bundle_dir: Path, bundle: Bundle, rows: pd.DataFrame, tmp_path: Path, small_chunks: None
) -> None:
    parts = write_parts(rows, tmp_path / "parts")
    (parts / "README.txt").write_text("not a part")  # only .parquet / .pq files are read
    whole = tmp_path / "whole.parquet"
    rows.to_parquet(whole, index=False)
    stream = stream_table(parts, bundle.config, offline.scoring_columns(bundle), batch_rows=CHUNK)
    assert stream is not None
    firsts = [first for first, _ in stream]
    assert firsts[0] == 0 and firsts[-1] < len(rows) and firsts == sorted(firsts)
    offline.score_file(bundle_dir, parts, tmp_path / "from_parts.parquet", threads=2)
    offline.score_file(bundle_dir, whole, tmp_path / "from_file.parquet", threads=2)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "from_parts.parquet"), pd.read_parquet(tmp_path / "from_file.parquet")
    )
    with pytest.raises(ValueError, match="inside --data"):
        offline.score_file(bundle_dir, parts, parts / "scored.parquet")
    # a column stored as int64 in one file and float64 in another reads as the concatenated table does
    numeric = bundle.config.numeric[-1]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    rows.iloc[:500].assign(**{numeric: np.arange(500)}).to_parquet(mixed / "a.parquet", index=False)
    rows.iloc[500:].assign(**{numeric: np.arange(500, 1000) + 0.5}).to_parquet(mixed / "b.parquet", index=False)
    assert stream_table(mixed, bundle.config, offline.scoring_columns(bundle)) is None


def test_a_part_without_a_column_is_named_and_parts_of_different_columns_refused(
    bundle_dir: Path, bundle: Bundle, rows: pd.DataFrame, tmp_path: Path
) -> None:
    config = bundle.config
    parts = write_parts(rows, tmp_path / "parts")
    text = config.text[0]
    pd.read_parquet(parts / "part-1.parquet").drop(columns=[text]).to_parquet(parts / "part-1.parquet", index=False)
    with pytest.raises(DataValidationError, match=f"column '{text}'.* is not in .*part-1.parquet"):
        offline.score_file(bundle_dir, parts, tmp_path / "scored.parquet")
    parts = write_parts(rows, tmp_path / "parts2")
    extra = pd.read_parquet(parts / "part-2.parquet").assign(product_match="")  # an optional column in one part
    extra.to_parquet(parts / "part-2.parquet", index=False)
    with pytest.raises(DataValidationError, match="the files hold different columns: part-0.parquet holds"):
        offline.score_file(bundle_dir, parts, tmp_path / "scored.parquet")
    assert not (tmp_path / "scored.parquet").exists()


def test_parquet_files_in_subdirectories_are_refused_not_left_unread(
    bundle: Bundle, rows: pd.DataFrame, tmp_path: Path
) -> None:
    parts = write_parts(rows, tmp_path / "parts", files=2)
    (parts / "date=2026-12-01").mkdir()
    rows.iloc[:10].to_parquet(parts / "date=2026-12-01" / "part-9.parquet", index=False)
    with pytest.raises(DataValidationError, match=r"subdirectories \(date=2026-12-01\) would not be read"):
        stream_table(parts, bundle.config, offline.scoring_columns(bundle))
    with pytest.raises(DataValidationError, match="would not be read"):
        load_table(parts, bundle.config)


def test_a_directory_of_more_files_than_the_process_may_open_streams_one_file_at_a_time(
    bundle: Bundle, rows: pd.DataFrame, tmp_path: Path
) -> None:
    """A subprocess with a soft limit of 64 open files streams 120 files: none is held open while planning."""
    import subprocess
    import sys

    parts = write_parts(rows.iloc[:240], tmp_path / "parts", files=120)
    script = f"""
import resource, sys
sys.path.insert(0, {str(Path(offline.__file__).resolve().parents[1])!r})
from pathlib import Path
from bundle.load import Bundle
from features.validate import stream_table
from training.offline import scoring_columns
bundle = Bundle.load(Path({str(bundle.path)!r}))
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
stream = stream_table(Path({str(parts)!r}), bundle.config, scoring_columns(bundle), batch_rows=100)
print(sum(len(frame) for _, frame in stream))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "240"


def test_integer_columns_of_a_writer_that_kept_no_null_counts_are_read_to_find_their_nulls(
    bundle: Bundle, rows: pd.DataFrame, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    category = bundle.config.categorical[0]
    table, _ = foreign_export(rows, category)
    path = tmp_path / "no_statistics.parquet"
    pq.write_table(table, path, write_statistics=False)
    stream = stream_table(path, bundle.config, offline.scoring_columns(bundle), batch_rows=CHUNK)
    assert stream is not None
    first = next(stream)[1]
    assert first[category].dtype == np.float64 == pd.read_parquet(path)[category].dtype


def test_the_input_file_is_never_the_output(bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path) -> None:
    data = tmp_path / "in.parquet"
    rows.iloc[:50].to_parquet(data, index=False)
    before = data.read_bytes()
    with pytest.raises(ValueError, match="is the --data file"):
        offline.score_file(bundle_dir, data, tmp_path / "." / "in.parquet")
    assert data.read_bytes() == before


def test_values_the_model_has_no_code_for_are_counted_and_warned_of(
    bundle_dir: Path, bundle: Bundle, rows: pd.DataFrame, tmp_path: Path, small_chunks: None
) -> None:
    """A file whose category held values training never saw (or ints where it saw text) scored them all as
    the unknown category without a word, where the service warns per listing."""
    from typer.testing import CliRunner

    from triage.cli import app

    changed = rows.copy()
    changed.loc[:99, "category"] = "hovercraft"  # rows 0-99: across the first two chunks of CHUNK rows
    changed.to_parquet(tmp_path / "in.parquet", index=False)
    summary = offline.score_file(bundle_dir, tmp_path / "in.parquet", tmp_path / "out.parquet", threads=2)
    assert summary["unknown_categories"] == {"category": {"rows": 100, "values": ["hovercraft"]}}
    assert offline.score_file(bundle_dir, tmp_path / "in.parquet", tmp_path / "o.csv")["rows"] == len(rows)

    rows.to_parquet(tmp_path / "same.parquet", index=False)  # the training's own values: nothing to say
    assert offline.unknown_categories(bundle, validate_listings(rows, bundle.config)).empty
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--bundle",
            str(bundle_dir),
            "--data",
            str(tmp_path / "in.parquet"),
            "--out",
            str(tmp_path / "c.parquet"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning: column 'category': 100 listings (10.0%) hold values the model has no code for" in result.output
    assert "['hovercraft']" in result.output


def test_a_column_of_only_missing_values_is_written_as_the_decisions_text_type() -> None:
    """A chunk or cluster part where no tier decided (`decision_tier` all missing) is typed as the
    `decision` column, not as plain `string` beside other parts' `large_string`: the parts of one run
    must share one schema for readers that unify them."""
    import pyarrow as pa

    from training.offline import output_schema

    decided = pd.DataFrame({"listing_id": ["a", "b"], "risk": [0.1, 0.9], "decision": ["auto_pass", "human_review"]})
    none = output_schema(decided.assign(decision_tier=[None, None]))
    some = output_schema(decided.assign(decision_tier=[None, "severe"]))
    assert none.field("decision_tier").type == some.field("decision_tier").type == some.field("decision").type
    assert pa.unify_schemas([none.remove_metadata(), some.remove_metadata()]) == some.remove_metadata()
