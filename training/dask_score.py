"""Offline batch scoring on a Dask cluster: `triage score --cluster local:N|tcp://host:8786`.

The listings (a Parquet file, or a directory of Parquet files) are cut into partitions: runs of row
groups of about `PARTITION_ROWS` rows, indexed by their row number in the whole input (files in name
order). One Dask task per partition reads it on the worker that runs it (nothing but the partition's
file name and row groups travels), and each worker loads the bundle once (cached by path and manifest
digest) and validates, scores and routes every partition it gets with the code `score_file` runs
(`validate_listings`, `score_frame`); each partition becomes one Parquet part of the output directory,
`part.00000.parquet`, ... in input order, so reading the directory back gives `score_file`'s rows in
its order. New listings are scored from the bundle's own state (merchant snapshot, identification
index), so a partition's scores never depend on another partition.

Ids must be unique over the whole input: each partition checks its own rows, and the client then checks
the 64-bit hashes of all ids (8 bytes a row); only on a hash collision are the id columns read again to
name the rows. The bundle directory and `--out` must be paths every worker can reach (one machine, or
a shared filesystem). Parts are written to a staging directory inside `--out` and moved into place
when every partition succeeded, so a failed run leaves the previous output as it was.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bundle.load import Bundle
from bundle.manifest import MANIFEST, BundleError, resolve_bundle
from features.identify import PRODUCT_MATCH
from features.validate import (
    PARQUET_SUFFIXES,
    DataValidationError,
    check_unique_ids,
    frame_of,
    integers_read_as_float,
    parquet_parts,
    validate_listings,
)
from training.cluster import ClusterSpec, cluster_client
from training.offline import (
    SCORE_CHUNK_ROWS,
    output_schema,
    score_frame,
    scoring_columns,
    unknown_categories,
    unknown_summary,
)

PARTITION_ROWS = SCORE_CHUNK_ROWS
PART_PREFIX = "part."
STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class Piece:
    """One partition of the input: consecutive row groups of one Parquet file."""

    path: str
    row_groups: tuple[int, ...]
    first_row: int  # its first row's number in the whole input
    rows: int

    def describe(self) -> str:
        return f"{self.path} (rows {self.first_row:,}-{self.first_row + self.rows - 1:,} of the input)"


def parquet_files(data: Path) -> list[Path]:
    """The Parquet file, or the Parquet files of a directory in name order."""
    if data.is_dir():
        files = parquet_parts(data)
        if not files:
            raise ValueError(f"--data {data}: the directory holds no .parquet files")
        return files
    if not data.is_file():
        raise FileNotFoundError(f"data file not found: {data}")
    if data.suffix.lower() not in PARQUET_SUFFIXES:
        raise ValueError(f"--data {data}: --cluster reads Parquet (a .parquet file or a directory of them)")
    return [data]


def plan_pieces(files: list[Path], partition_rows: int = PARTITION_ROWS) -> list[Piece]:
    """Partitions of about `partition_rows` rows (whole row groups, never across files), in input order."""
    import pyarrow.parquet as pq

    pieces: list[Piece] = []
    first_row = 0
    for path in files:
        try:
            with pq.ParquetFile(path) as parquet:  # one file open at a time, however many parts
                metadata = parquet.metadata
        except Exception as exc:  # any unreadable file is named
            raise DataValidationError([f"could not read {path}: {type(exc).__name__}: {exc}"]) from exc
        groups: list[int] = []
        rows = 0
        for group in range(metadata.num_row_groups):
            groups.append(group)
            rows += metadata.row_group(group).num_rows
            if rows >= partition_rows or group == metadata.num_row_groups - 1:
                if rows:
                    pieces.append(Piece(str(path), tuple(groups), first_row, rows))
                first_row += rows
                groups, rows = [], 0
    if not pieces:
        raise DataValidationError([f"the listings table has no rows ({len(files)} files)"])
    return pieces


def read_piece(piece: Piece, wanted: list[str], as_float: list[str] | None = None) -> pd.DataFrame:
    """A partition's `wanted` columns (those the file has), indexed by row number in the input; the
    integer columns `as_float` (`floated_integers`: those with a null anywhere in the input) as float64,
    as the whole input reads them (by default, those of this partition's file)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(piece.path) as parquet:
        present = [c for c in wanted if c in parquet.schema_arrow.names]
        if as_float is None:
            as_float = integers_read_as_float(parquet, present)
        frame = frame_of(parquet.read_row_groups(list(piece.row_groups), columns=present), as_float)
    frame.index = pd.RangeIndex(piece.first_row, piece.first_row + len(frame))
    frame.attrs["source"] = piece.describe()  # what validation messages name
    return frame


def floated_integers(files: list[Path], wanted: list[str]) -> list[str]:
    """The integer columns that a null in any of the input's files makes float64 when the input is read
    as one table: every partition reads them so, whichever file it comes from."""
    import pyarrow.parquet as pq

    found: set[str] = set()
    for path in files:
        with pq.ParquetFile(path) as parquet:  # one file open at a time, however many parts
            found.update(integers_read_as_float(parquet, [c for c in wanted if c in parquet.schema_arrow.names]))
    return sorted(found)


def manifest_digest(bundle_dir: Path) -> str:
    return hashlib.sha256((bundle_dir / MANIFEST).read_bytes()).hexdigest()


@lru_cache(maxsize=2)
def worker_bundle(bundle_dir: str, digest: str) -> Bundle:
    """The bundle, loaded once per worker process for a given manifest; refused if it changed since the
    client read it."""
    found = manifest_digest(Path(bundle_dir))
    if found != digest:
        raise BundleError(f"bundle {bundle_dir}: its manifest changed while it was scoring (sha256 {found[:12]})")
    return Bundle.load(bundle_dir, threads=1)  # a worker's parallelism is its Dask threads


def score_partition(frame: pd.DataFrame, bundle_dir: str, digest: str) -> pd.DataFrame:
    """Validate, score and route one partition (index: row numbers in the input) as `score_file` does."""
    bundle = worker_bundle(bundle_dir, digest)
    first_row = int(frame.index[0]) if len(frame) else 0
    source = frame.attrs.get("source", f"the partition from row {first_row:,}")
    listings = frame.reset_index(drop=True)
    listings.attrs["source"] = source
    try:
        validated = validate_listings(listings, bundle.config, first_row=first_row)
    except DataValidationError as exc:
        raise DataValidationError([f"{source}: {problem}" for problem in exc.problems]) from None
    scored = score_frame(bundle, validated)
    scored.index = frame.index
    return scored


def id_hashes(ids: pd.Series) -> pd.Series:
    """64-bit hashes of a partition's ids (stable across processes)."""
    return pd.Series(pd.util.hash_pandas_object(ids, index=False).to_numpy(), dtype="uint64")


def part_name(partition: int) -> str:
    return f"{PART_PREFIX}{partition:05d}.parquet"


def check_output_directory(out: Path) -> None:
    """`--out` of a cluster run: a directory that is new, empty or holds only an earlier run's parts."""
    if out.suffix.lower() == ".csv" or (out.exists() and not out.is_dir()):
        raise ValueError(
            f"--out {out}: with --cluster the output is a directory of Parquet parts (part.00000.parquet, ...), "
            "not a file; name a directory"
        )
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if not _is_part(p) and not p.name.startswith(STAGING_PREFIX))
        if others:
            raise ValueError(
                f"--out {out}: the directory holds other files ({', '.join(others[:5])}); a cluster run replaces "
                "only its own part.NNNNN.parquet files: name an empty or new directory"
            )


def _is_part(path: Path) -> bool:
    return path.is_file() and path.name.startswith(PART_PREFIX) and path.suffix == ".parquet"


def score_on_cluster(
    bundle_path: Path, data: Path, out: Path, cluster: ClusterSpec | str, *, partition_rows: int = PARTITION_ROWS
) -> dict[str, Any]:
    """Score every listing of a Parquet file or directory on the Dask cluster `cluster` names (a local
    one is started and closed here); the summary `score_file` returns, with the partitions and cluster."""
    spec = cluster if isinstance(cluster, ClusterSpec) else ClusterSpec.parse(cluster)
    check_output_directory(out)
    parquet_files(data)  # bad input fails before a cluster starts
    start = time.perf_counter()
    with cluster_client(spec, trim_memory=False) as client:  # scoring: speed over returning memory
        summary = score_with_client(client, bundle_path, data, out, partition_rows=partition_rows)
    seconds = time.perf_counter() - start
    return {**summary, "seconds": round(seconds, 2), "rows_per_second": round(summary["rows"] / seconds),
            "cluster": spec.describe()}  # fmt: skip


def score_with_client(
    client: Any, bundle_path: Path, data: Path, out: Path, *, partition_rows: int = PARTITION_ROWS
) -> dict[str, Any]:
    """Score on the cluster of an open Dask client; write `out/part.NNNNN.parquet` (listing id, risk,
    tier risks, decision, decision_tier, as `score_file` writes) and return its summary."""
    check_output_directory(out)
    start = time.perf_counter()
    bundle_dir = resolve_bundle(bundle_path).resolve()
    bundle = Bundle.load(bundle_dir, threads=1)  # verified here, so a bad bundle fails before any worker loads it
    digest = manifest_digest(bundle_dir)
    files = parquet_files(data)
    pieces = plan_pieces(files, partition_rows)
    rows, decisions, unknown = _score_pieces(client, bundle, digest, pieces, out, files)
    seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "out": str(out),
        "decisions": decisions,
        "unknown_categories": unknown,
        "partitions": len(pieces),
    }


def _score_pieces(
    client: Any, bundle: Bundle, digest: str, pieces: list[Piece], out: Path, files: list[Path]
) -> tuple[int, dict, dict]:
    """One task per partition reads, validates, scores, routes and writes it on the worker that runs it, and
    returns only its ids' hashes and its counts; the parts are moved from staging into `out` once every
    task succeeded."""
    import dask

    config = bundle.config
    columns = [*scoring_columns(bundle), PRODUCT_MATCH]
    as_float = floated_integers(files, columns)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        parts = [
            dask.delayed(score_part, pure=False)(
                piece, columns, as_float, str(bundle.path), digest, str(staging / part_name(number))
            )
            for number, piece in enumerate(pieces)
        ]
        found = dask.compute(*parts, scheduler=client)
        _check_unique(np.concatenate([part.hashes for part in found]), pieces, config)
        for old in [p for p in out.iterdir() if _is_part(p)]:
            old.unlink()
        for part in sorted(staging.iterdir()):
            part.replace(out / part.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = pd.concat([part.decisions for part in found]).groupby(level=0).sum()
    decisions = counts.sort_values(ascending=False, kind="stable").to_dict()
    return int(sum(p.rows for p in pieces)), decisions, unknown_summary([part.unknown for part in found])


@dataclass(frozen=True)
class ScoredPart:
    """What a partition's task returns to the client: a few bytes a row, not the scored rows."""

    hashes: np.ndarray  # 64-bit hashes of its ids
    decisions: pd.Series  # its count of each decision
    unknown: pd.Series  # its categorical values the bundle has no code for, counted


def score_part(
    piece: Piece, columns: list[str], as_float: list[str], bundle_dir: str, digest: str, path: str
) -> ScoredPart:
    """Read one partition (`read_piece`), score it (`score_partition`) and write it to `path` as
    `score_file` writes its rows.

    The partition is read and scored once for everything the run needs: the part, the id check, the
    decision counts and the unknown categories (separate Dask outputs of one scored collection each scored
    it again: three times the work)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = read_piece(piece, columns, as_float)
    scored = score_partition(frame, bundle_dir, digest).reset_index(drop=True)
    pq.write_table(pa.Table.from_pandas(scored, schema=output_schema(scored), preserve_index=False), path)
    bundle = worker_bundle(bundle_dir, digest)
    return ScoredPart(
        hashes=id_hashes(scored[bundle.config.id]).to_numpy(),
        decisions=scored["decision"].value_counts(),
        unknown=unknown_categories(bundle, frame),
    )


def _check_unique(hashes: np.ndarray, pieces: list[Piece], config: Any) -> None:
    """Duplicate ids across partitions: cheap on hashes; on any repeated hash, read the ids to name rows."""
    ordered = np.sort(hashes)
    if not (ordered[1:] == ordered[:-1]).any():
        return
    ids = pd.concat([read_piece(p, [config.id])[config.id] for p in pieces])
    check_unique_ids(ids, config)  # raises with the rows; a mere hash collision passes
