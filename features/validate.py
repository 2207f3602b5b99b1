"""Read and validate review-outcome tables and listings against the data contract (features.config).

Bad input stops with a `DataValidationError` that names the column and the first offending rows;
nothing is ever dropped. What validation returns is a new, normalised frame:

- ids and merchant ids as str; timestamps as timezone-naive datetime64[us] (tz-aware input is
  converted to UTC first); the label as int8 0/1 (1 = rejected);
- numeric feature columns as float64: a missing value stays NaN (the features handle it), but a
  value that is not a number, or is +/-inf, is an error;
- text columns as str with missing -> "" and categorical columns as str with missing -> "" (filling
  is not dropping: the row stays, with an empty value);
- history only, when the config has a timestamp: if the configured `reviewed_at` column is absent (or
  `reviewed_at` is not configured) a column `review_time_column(config)` is added as created_at +
  review_lag_days; rows are sorted by created_at (stable) and the index reset. Without a timestamp
  (`time_order: row`) the rows keep the file's order, which is their time order. Listings to score
  keep their input order.

A table read by `load_table` remembers its file (`DataFrame.attrs["source"]`), so a missing column is
reported with the file and the data config it was checked against.

Row numbers in messages are 0-based positions in the table as it was passed in (offset by `first_row`
for a partition of a larger table).
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.config import INCLUSION_PROB, DataConfig, match_key

MAX_ROWS_SHOWN = 5
DEFAULT_REVIEW_TIME_COLUMN = "reviewed_at"
_YAML_BOOLEAN_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "y", "n"})


class DataValidationError(ValueError):
    """The input table breaks the data contract. `problems` holds one message per broken rule."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self) -> tuple[type[DataValidationError], tuple[list[str]]]:
        # rebuilt from its problems when it crosses a process boundary (a Dask worker's error)
        return (type(self), (self.problems,))


def review_time_column(config: DataConfig) -> str:
    """Name of the column holding when each outcome became known (configured or derived)."""
    return config.reviewed_at or DEFAULT_REVIEW_TIME_COLUMN


PARQUET_SUFFIXES = (".parquet", ".pq")


def parquet_parts(directory: Path) -> list[Path]:
    """The Parquet files of a directory (a partitioned table), in name order. A subdirectory holding
    Parquet files (a Hive-style partition, `date=2026-12-01/`) is refused rather than left unread."""
    nested = sorted(
        p.relative_to(directory).parts[0]
        for p in directory.rglob("*")
        if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES and p.parent != directory
    )
    if nested:
        raise DataValidationError(
            [
                f"{directory}: Parquet files in subdirectories ({', '.join(sorted(set(nested))[:MAX_ROWS_SHOWN])}) "
                "would not be read; give the files of one table in one directory"
            ]
        )
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES)


def load_table(
    path: str | Path,
    config: DataConfig | None = None,
    columns: Sequence[str] | None = None,
    optional: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a .parquet or .csv table, or a directory of Parquet files (one table, files in name order).
    CSV ids and text are read as strings, not numbers.

    With `columns`, a Parquet file is read for those columns only, and those of `optional` it has; when
    it lacks one of `columns`, every column is read, so the error that follows lists what it holds (for
    a directory: that file alone is returned, so the error names it)."""
    path = Path(path)
    if path.is_dir():
        return _load_directory(path, columns, optional)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (*PARQUET_SUFFIXES, ".csv"):
        raise DataValidationError([f"could not read {path}: unknown file type {suffix!r} (use .parquet or .csv)"])
    try:
        if suffix == ".csv":
            table = _read_csv(path, config)
        else:
            table = pd.read_parquet(path, columns=_parquet_columns(path, columns, optional))
    except UnicodeDecodeError as exc:  # pandas' position is within a buffer, not the file: name the line
        raise DataValidationError([_not_utf8(path)]) from exc
    except DataValidationError:
        raise
    except pd.errors.ParserError as exc:  # say how the file was read: the header line decides it
        raise DataValidationError([f"could not read {path}: {str(exc).strip()}; {_csv_reading(path)}"]) from exc
    except Exception as exc:  # any reader failure becomes one message that names the file
        raise DataValidationError([f"could not read {path}: {type(exc).__name__}: {exc}"]) from exc
    table.attrs["source"] = str(path)
    return table


def _csv_reading(path: Path) -> str:
    """How a CSV file was read, for a parse error: its separator and header fields, both taken from the
    first line (a file without a header line has its first row taken for one)."""
    sep = csv_separator(path)
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        header = handle.readline().rstrip("\r\n")
    names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}
    fields = header.split(sep)
    shown = ", ".join(repr(f[:30]) for f in fields[:6]) + (", ..." if len(fields) > 6 else "")
    return (
        f"read as {names[sep]}-separated with its first line as the header ({len(fields)} fields: {shown}); "
        "a file without a header line needs one naming the data config's columns"
    )


def _not_utf8(path: Path) -> str:
    """Where a CSV file first stops being UTF-8 (a Latin-1 or Windows-1252 export), as a line number."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return (
            f"could not read {path}: it is not UTF-8 text: line {line} holds byte 0x{data[exc.start]:02x} "
            f"({exc.reason}); save the export as UTF-8"
        )
    return f"could not read {path}: it is not UTF-8 text; save the export as UTF-8"


def _load_directory(directory: Path, columns: Sequence[str] | None, optional: Sequence[str]) -> pd.DataFrame:
    """The Parquet files of a directory as one table: every file must hold the same columns (a column
    some files lack would read as missing in their rows), except that a file lacking one of `columns` is
    returned alone, for the error that follows to name it and list what it holds."""
    files = parquet_parts(directory)
    if not files:
        raise DataValidationError([f"could not read {directory}: the directory holds no .parquet files"])
    frames = []
    for file in files:
        frame = load_table(file, None, columns, optional)
        if columns is not None and not set(columns) <= set(frame.columns):
            return frame
        frames.append(frame)
    held = {file: list(frame.columns) for file, frame in zip(files, frames, strict=True)}
    first = held[files[0]]
    differ = [f"{file.name} ({', '.join(names)})" for file, names in held.items() if set(names) != set(first)]
    if differ:
        raise DataValidationError(
            [
                f"{directory}: the files hold different columns: {files[0].name} holds {', '.join(first)}; "
                f"{'; '.join(differ[:MAX_ROWS_SHOWN])}. Give every file the same columns"
            ]
        )
    table = pd.concat(frames, ignore_index=True)
    table.attrs["source"] = str(directory)
    return table


def stream_table(
    path: str | Path,
    config: DataConfig,
    columns: Sequence[str],
    optional: Sequence[str] = (),
    batch_rows: int = 25_000,
) -> Iterator[tuple[int, pd.DataFrame]] | None:
    """A Parquet file's `columns` (and those of `optional` it has) in frames of `batch_rows`, with each
    frame's first row number in the file, read as they are consumed; what validating each frame with
    that number finds is what validating the whole table finds, row for row. A directory of Parquet
    files streams as the one table `load_table` reads, file after file, one file open at a time.

    None where a frame could read differently from the whole table, so the caller reads it with
    `load_table`: a CSV file (its types are inferred from the whole file), a missing column (`load_table`
    names what the file holds), a file Parquet cannot open (`load_table` names the error), a timestamp
    stored as text (its format is inferred from the first value, which a frame would take from its own
    first row), or files of a directory that hold different columns or store a column in different
    types (an int64 file beside a float64 one reads "7.0" in the whole table).

    An integer column with a null anywhere in the table reads as float64 in every frame, as the whole
    table reads it (pandas holds such a column as float64), so an id or category reads "7.0" in every
    row, not "7" in the frames without a null."""
    path = Path(path)
    if path.is_dir():
        plans = [_stream_plan(file, config, columns, optional) for file in parquet_parts(path)]
    elif path.is_file():
        plans = [_stream_plan(path, config, columns, optional)]
    else:
        raise FileNotFoundError(f"data file not found: {path}")
    if not plans or any(plan is None for plan in plans):
        return None
    ready = [plan for plan in plans if plan is not None]
    if any(plan.types != ready[0].types for plan in ready):
        return None  # files of different columns or types: pandas' concat decides how they read
    as_float = sorted({name for plan in ready for name in plan.as_float})
    if any(name in plan.nullable for plan in ready for name in as_float):
        return None  # one file's nullable integer beside another's float64: pandas' concat decides

    def frames() -> Iterator[tuple[int, pd.DataFrame]]:
        import pyarrow.parquet as pq

        first_row = 0
        for plan in ready:  # one file open at a time, however many the directory holds
            try:
                parquet = pq.ParquetFile(plan.path)
            except Exception as exc:  # changed since it was planned: named as load_table names it
                raise DataValidationError([f"could not read {plan.path}: {type(exc).__name__}: {exc}"]) from exc
            with parquet:
                batches = parquet.iter_batches(batch_size=batch_rows, columns=plan.wanted, use_threads=False)
                while True:
                    try:
                        batch = next(batches, None)
                        if batch is None:
                            break
                        frame = frame_of(batch, as_float)
                    except Exception as exc:  # a damaged page: one message that names the file, as load_table's
                        message = f"could not read {plan.path}: {type(exc).__name__}: {exc}"
                        raise DataValidationError([message]) from exc
                    frame.attrs["source"] = str(path)
                    yield first_row, frame
                    first_row += len(frame)

    return frames()


@dataclass(frozen=True)
class _StreamPlan:
    path: Path
    wanted: list[str]
    types: dict[str, str]  # each wanted column's stored type
    as_float: list[str]  # integer columns with a null, which the whole table reads as float64
    nullable: list[str]  # integer columns pandas restores as a nullable integer (its metadata says so)


def _stream_plan(path: Path, config: DataConfig, columns: Sequence[str], optional: Sequence[str]) -> _StreamPlan | None:
    """How one Parquet file streams, or None where it must be read whole (`stream_table`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix.lower() not in PARQUET_SUFFIXES:
        return None
    try:
        with pq.ParquetFile(path) as parquet:
            schema = parquet.schema_arrow
            wanted = [*dict.fromkeys([*columns, *(c for c in optional if c in schema.names)])]
            if not set(columns) <= set(schema.names):
                return None
            with_nulls = integers_with_nulls(parquet, wanted)
    except Exception:  # load_table reports it
        return None
    if config.timestamp and config.timestamp in wanted:
        stored = schema.field(config.timestamp).type
        if not pa.types.is_timestamp(stored) and not pa.types.is_date(stored):
            return None
    nullable = _nullable_integers(schema, [c for c in wanted if pa.types.is_integer(schema.field(c).type)])
    types = {c: str(schema.field(c).type) for c in wanted}
    return _StreamPlan(path, wanted, types, [c for c in with_nulls if c not in nullable], nullable)


def frame_of(part: Any, as_float: Sequence[str]) -> pd.DataFrame:
    """A record batch or table of part of a Parquet file as pandas reads the whole file: the columns
    `as_float` (`integers_read_as_float`) as float64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in as_float:
        column = part.schema.get_field_index(name)
        if column >= 0:
            part = part.set_column(column, name, pc.cast(part.column(column), pa.float64(), safe=False))
    return part.to_pandas()


def integers_with_nulls(parquet: Any, columns: Sequence[str]) -> list[str]:
    """The integer columns among `columns` with a null in a Parquet file: from the row groups' null
    counts, or, for a column whose row groups do not all keep one, by reading that column."""
    import pyarrow as pa

    schema = parquet.schema_arrow
    leaves = list(parquet.schema.names)
    metadata = parquet.metadata
    found = []
    for name in [c for c in columns if pa.types.is_integer(schema.field(c).type)]:
        statistics = [
            metadata.row_group(group).column(leaves.index(name)).statistics if name in leaves else None
            for group in range(metadata.num_row_groups)
        ]
        counts = [stats.null_count for stats in statistics if stats is not None and stats.has_null_count]
        kept = len(counts) == len(statistics)  # else a writer kept no null count: the column is read
        nulls = sum(counts) if kept else parquet.read(columns=[name]).column(0).null_count
        if nulls:
            found.append(name)
    return found


def integers_read_as_float(parquet: Any, columns: Sequence[str]) -> list[str]:
    """`integers_with_nulls` that pandas reads as float64 (not those its metadata restores as a nullable
    integer): the columns a part of the file must read as float64 to read as the whole file does."""
    found = integers_with_nulls(parquet, columns)
    if not found:
        return found
    nullable = _nullable_integers(parquet.schema_arrow, found)
    return [c for c in found if c not in nullable]


def _nullable_integers(schema: Any, names: Sequence[str]) -> list[str]:
    """Of these integer columns, those pandas restores as a nullable integer (the file's pandas metadata
    says so), which read alike in a part of the file and in the whole."""
    if not names:
        return []
    restored = schema.empty_table().to_pandas()
    return [c for c in names if isinstance(restored[c].dtype, pd.api.extensions.ExtensionDtype)]


def validate_history(df: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """Check and normalise a labelled review-outcomes table (one row per reviewed listing)."""
    _require_columns(df, config.required_columns, "the outcomes table", config)
    if len(df) == 0:
        raise DataValidationError(["the outcomes table has no rows"])
    checker = _Checker(df, config)
    out = checker.common()
    out[config.label] = checker.label()
    if config.timestamp:
        review_col = review_time_column(config)
        if config.reviewed_at and config.reviewed_at in df.columns:
            out[review_col] = checker.timestamp(config.reviewed_at, allow_null=False)
            checker.reviewed_not_before_created(out[config.timestamp], out[review_col])
        else:
            out[review_col] = out[config.timestamp] + pd.Timedelta(days=config.review_lag_days)
    if config.review_seconds and config.review_seconds in df.columns:
        out[config.review_seconds] = checker.numeric(config.review_seconds, non_negative=True)
    for optional in (config.violation_reason,):
        if optional and optional in df.columns:
            out[optional] = checker.text(optional)
    if INCLUSION_PROB in df.columns:
        pi = checker.numeric(INCLUSION_PROB)
        outside = ((pi <= 0) | (pi > 1)).to_numpy()
        checker.report(INCLUSION_PROB, outside, "are not probabilities in (0, 1] (the chance the row was labelled)")
        out[INCLUSION_PROB] = pi.fillna(1.0)  # blank: a row of a fully labelled period
    checker.raise_if_problems()
    if not config.timestamp:  # time_order: row, the file's order is time order
        return out.reset_index(drop=True)
    order = np.argsort(out[config.timestamp].to_numpy(), kind="stable")
    return out.iloc[order].reset_index(drop=True)


def validate_listings(df: pd.DataFrame, config: DataConfig, *, first_row: int = 0) -> pd.DataFrame:
    """Check and normalise unlabelled listings to score; keeps the input order (index reset).

    `first_row` is the row number of the frame's first row in a larger table it is a part of (a
    partition), so messages name rows of that table."""
    _require_columns(df, config.listing_columns, "the listings table", config)
    checker = _Checker(df, config, first_row)
    out = checker.common()
    checker.raise_if_problems()
    return out.reset_index(drop=True)


def _parquet_columns(path: Path, columns: Sequence[str] | None, optional: Sequence[str]) -> list[str] | None:
    if columns is None:
        return None
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    if not names.issuperset(columns):
        return None
    return list(dict.fromkeys([*columns, *(c for c in optional if c in names)]))


def check_unique_ids(ids: pd.Series, config: DataConfig) -> None:
    """DataValidationError naming the rows that share an id, as `validate_listings` reports them: for the
    ids of a table validated in parts (each part can only see its own duplicates)."""
    checker = _Checker(ids.to_frame(config.id).reset_index(drop=True), config)
    checker.duplicates(config.id, ids.astype("str").reset_index(drop=True))
    checker.raise_if_problems()


# pandas' missing markers that are values in a text or category column: "NA" is a market (North America)
TEXT_VALUES = frozenset({"NA"})


def _read_csv(path: Path, config: DataConfig | None) -> pd.DataFrame:
    """A CSV file with the data config's id, text and categorical columns as strings, in which "NA" is a
    value (a market, North America), as it is in Parquet; an empty field and pandas' other missing
    markers (NULL, N/A, NaN, None: what SQL and spreadsheet exports write for a missing value) are
    missing, and every marker keeps its meaning in the other columns (a numeric "NA"). An id is opaque:
    only an empty field is a missing id, so a listing whose id is "NULL" reads back as written (several
    rows written "NULL" for a missing id are then refused as one duplicated id).

    A file written without quoting (a tab-separated dump, say) whose text starts with a quote mark is
    read line by line: read as quoted, that quote would open a field running to the next one, lines
    later, and swallow the rows between (see `_lines_are_rows`). A file whose records would read other
    than as written (a stray quote mark, a short row, a repeated header name) is refused, naming the
    lines (`_check_records`)."""
    sep = csv_separator(path)
    strings = _csv_string_columns(config)
    options: dict[str, Any] = {}
    if strings:
        from pandas._libs.parsers import STR_NA_VALUES

        header = pd.read_csv(path, sep=sep, nrows=0).columns
        markers = sorted(STR_NA_VALUES)
        missing = {c: [m for m in markers if m not in TEXT_VALUES] if c in strings else markers for c in header}
        if config is not None and config.id in missing:
            missing[config.id] = [""]
        options = {"dtype": strings, "keep_default_na": False, "na_values": missing}
    options["index_col"] = False  # never the first column as the index (rows ending in a separator)
    table = _read_csv_quietly(path, sep, options)
    spans_lines = _has_line_breaks(table)
    if spans_lines and _lines_are_rows(path, sep):
        _check_records(path, sep, quoted=False, strict=False)
        return _read_csv_quietly(path, sep, {**options, "quoting": csv.QUOTE_NONE})
    _check_records(path, sep, quoted=True, strict=spans_lines)
    return table


def _read_csv_quietly(path: Path, sep: str, options: dict[str, Any]) -> pd.DataFrame:
    """`pd.read_csv` without its warning that rows longer than the header lose data: `_check_records`
    refuses such a row unless what it would lose is empty (a spreadsheet's trailing separator)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Length of header or names does not match", category=pd.errors.ParserWarning
        )
        return pd.read_csv(path, sep=sep, **options)


def _has_line_breaks(table: pd.DataFrame) -> bool:
    """Whether a text of the table holds a line break (an object column may hold booleans and blanks: a
    TRUE/FALSE column with an empty cell)."""
    text = table.select_dtypes(include=["object", "string"])
    return any(text[c].astype("str").str.contains("[\r\n]", regex=True).any() for c in text.columns)


def _lines_are_rows(path: Path, sep: str) -> bool:
    """Whether a CSV file that read as quoted with a line break inside a field has the header's number of
    fields on every line: then each line is a row and the quote marks are text (an unquoted export), not
    quoting. A file that quotes a field with a line break in it has lines with fewer fields than its
    header, so it keeps its quoted reading."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        separators = {line.count(sep) for line in handle if line.strip()}
    return len(separators) == 1


def _check_records(path: Path, sep: str, *, quoted: bool, strict: bool) -> None:
    """Refuse a CSV file whose records pandas would read other than as written, naming the lines: a
    header that repeats a name (pandas reads the second as `name.1`, which nothing reads), and a record
    with fewer fields than the header (pandas fills the rest in as missing; a carriage return alone in
    an unquoted text, which ends a line for every CSV reader, splits one row into two that way).

    With `strict` (a quoted file with a field that spans lines), Python's `csv` reader also refuses a
    closing quote that is not followed by a separator or the line's end: pandas' reader is lenient, so
    a stray quote mark opens a field that runs on to the next quote mark, lines later, and the rows
    between become text of that field, silently."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = (
            csv.reader(handle, delimiter=sep, strict=strict)
            if quoted
            else csv.reader(handle, delimiter=sep, quoting=csv.QUOTE_NONE, strict=strict)
        )
        started, short, long = 1, [], []
        try:
            header = next((record for record in reader if record), [])  # pandas skips blank lines first
            # a spreadsheet's trailing unnamed columns repeat the blank name: pandas names them apart
            repeated = sorted({name for name in header if name.strip() and header.count(name) > 1})
            if repeated:
                raise DataValidationError(
                    [f"could not read {path}: the header names {', '.join(map(repr, repeated))} more than once; "
                     "give each column its own name"]
                )  # fmt: skip
            started = reader.line_num + 1
            for record in reader:
                if record and len(record) < len(header):
                    short.append((started, len(record)))
                elif any(field.strip() for field in record[len(header) :]):  # pandas would shift the columns
                    long.append((started, len(record)))
                started = reader.line_num + 1
        except csv.Error as exc:
            raise DataValidationError(
                [
                    f"could not read {path}: the field opened by a quote mark on line {started} runs on to line "
                    f"{reader.line_num} ({exc}): a stray quote mark would turn the rows between into text. "
                    "Quote fields that hold a separator, a quote mark or a line break, and double the quote "
                    "marks inside them"
                ]
            ) from exc
    if long:
        raise DataValidationError(
            [
                _field_counts(path, long, "more", len(header))
                + ". A separator inside a text that is not quoted, or a header that lacks a column: quote such "
                "texts, or name every column"
            ]
        )
    if short:
        raise DataValidationError(
            [
                _field_counts(path, short, "fewer", len(header))
                + ". A field is missing, or a line break (a carriage return alone, too) inside a text that is "
                "not quoted split a row in two: quote such texts, or write an empty field for a missing value"
            ]
        )


def _field_counts(path: Path, lines: list[tuple[int, int]], which: str, fields: int) -> str:
    """The lines (line number, fields) whose field count differs from the header's, for a message."""
    shown = ", ".join(f"line {line} has {n}" for line, n in lines[:MAX_ROWS_SHOWN])
    more = ", ..." if len(lines) > MAX_ROWS_SHOWN else ""
    return f"could not read {path}: {len(lines)} lines hold {which} fields than the header's {fields}: {shown}{more}"


CSV_SEPARATORS = (",", ";", "\t", "|")


_SEPARATOR_HINT = re.compile(r"sep=(.)\s*")


def csv_separator(path: Path) -> str:
    """The CSV file's field separator, read off its header line: a comma, unless the header holds none
    and holds a semicolon (spreadsheets in locales with a decimal comma write those), a tab or a bar. A
    spreadsheet's `sep=;` hint line in its place is refused, naming it."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        header = handle.readline()
    hint = _SEPARATOR_HINT.fullmatch(header.strip("\r\n"))
    if hint:  # Excel writes `sep=;` above the header: read as one, every config column would be missing
        raise DataValidationError(
            [
                f"{path}: line 1 is {header.strip()!r}, a spreadsheet's separator hint, not a header: delete that "
                f"line (the separator, {hint.group(1)!r}, is read off the header line) and read the file again"
            ]
        )
    found = [sep for sep in CSV_SEPARATORS if sep in header]
    return found[0] if found else ","


def _csv_string_columns(config: DataConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    columns = [config.id, config.merchant, *config.text, *config.categorical, config.violation_reason]
    return dict.fromkeys([c for c in columns if c], "str")


def _require_columns(df: pd.DataFrame, required: list[str], what: str, config: DataConfig) -> None:
    """One problem per missing column: its role(s), the file (when read by `load_table`) and the config."""
    missing = [c for c in dict.fromkeys(required) if c not in df.columns]
    if not missing:
        return
    source = df.attrs.get("source", what)
    roles = config.column_roles()
    present = ", ".join(map(str, df.columns))
    raise DataValidationError(
        [
            f"column {c!r} (role {' and '.join(roles.get(c, ['feature']))}) is not in {source}; {config.where()} "
            f"(columns present: {present})"
            for c in missing
        ]
    )


class _Checker:
    """Runs the per-column checks on one input frame and collects every problem before raising."""

    def __init__(self, df: pd.DataFrame, config: DataConfig, first_row: int = 0):
        self.df = df
        self.config = config
        self.first_row = first_row
        self.problems: list[str] = []
        self.ids = df[config.id].to_numpy()

    def report(self, column: str, bad: np.ndarray, what: str, show: Callable[[int], str] | None = None) -> None:
        """Record a problem for the rows where `bad` is True: count, rule, first rows with their id."""
        rows = np.flatnonzero(bad)
        if len(rows) == 0:
            return
        values = self.df[column].to_numpy()
        show = show or (lambda i: repr(_plain(values[i])))
        shown = ", ".join(
            f"row {self.first_row + i} ({self.config.id}={_plain(self.ids[i])!r}): {show(i)}"
            for i in rows[:MAX_ROWS_SHOWN]
        )
        self.problems.append(f"column {column!r}: {len(rows)} rows {what}; first rows: {shown}")

    def raise_if_problems(self) -> None:
        if self.problems:
            raise DataValidationError(self.problems)

    def common(self) -> pd.DataFrame:
        """Checks shared by history and listings; returns the normalised copy."""
        config = self.config
        out = self.df.copy()
        out[config.id] = self.identifier(config.id)
        if config.merchant:
            out[config.merchant] = self.identifier(config.merchant)
        self.duplicates(config.id, out[config.id])
        if config.timestamp:
            out[config.timestamp] = self.timestamp(config.timestamp, allow_null=False)
        for column in config.text:
            out[column] = self.text(column)
        for column in config.categorical:
            out[column] = self.text(column)
        for column in config.numeric:
            out[column] = self.numeric(column)
        return out

    def identifier(self, column: str) -> pd.Series:
        raw = self.df[column]
        as_str = raw.astype("str")
        missing = raw.isna().to_numpy() | (as_str.str.strip() == "").to_numpy()
        self.report(column, missing, "have no value (null or empty)")
        return as_str

    def duplicates(self, column: str, ids: pd.Series) -> None:
        dup = ids.duplicated(keep=False).to_numpy()
        if dup.any():
            names = pd.unique(ids[dup])
            listed = ", ".join(repr(x) for x in names[:MAX_ROWS_SHOWN])
            more = f" and {len(names) - MAX_ROWS_SHOWN} more" if len(names) > MAX_ROWS_SHOWN else ""
            self.report(column, dup, f"share a duplicated id ({len(names)} ids duplicated: {listed}{more})")

    def timestamp(self, column: str, allow_null: bool) -> pd.Series:
        raw = self.df[column]
        parsed = _parse_timestamps(raw)
        null = raw.isna().to_numpy()
        unparsable = parsed.isna().to_numpy() & ~null
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            self.report(column, unparsable, "hold bare numbers, not timestamps (unit unknown: use ISO 8601)")
        else:
            self.report(column, unparsable, "have unparsable timestamps")
        if not allow_null:
            self.report(column, null, "have no timestamp (null)")
        return parsed

    def reviewed_not_before_created(self, created: pd.Series, reviewed: pd.Series) -> None:
        early = (reviewed < created).to_numpy()
        created_values = created.to_numpy()
        self.report(
            self.config.reviewed_at or DEFAULT_REVIEW_TIME_COLUMN,
            early,
            f"were reviewed before they were created ({self.config.timestamp})",
            show=lambda i: f"{reviewed.iloc[i]} < {pd.Timestamp(created_values[i])}",
        )

    def label(self) -> pd.Series:
        column = self.config.label
        raw = self.df[column]
        null = raw.isna().to_numpy()
        self.report(column, null, "have no label (null)")
        codes, uniques = pd.factorize(raw, use_na_sentinel=True)
        lookup = _label_lookup(self.config)
        mapped_uniques = np.array([lookup.get(match_key(u), -1) for u in uniques], dtype=np.int8)
        mapped = np.where(codes >= 0, mapped_uniques[np.maximum(codes, 0)] if len(uniques) else -1, -1)
        unknown = (mapped < 0) & ~null
        allowed = f"allowed: reject={list(self.config.label_reject)}, approve={list(self.config.label_approve)}"
        self.report(column, unknown, f"have unknown label values ({allowed}){self.boolean_hint(raw, unknown)}")
        labels = mapped.astype(np.int8)
        known = labels[labels >= 0]
        if len(known) and known.min() == known.max():
            side, other = ("rejects", "approve") if known[0] == 1 else ("approvals", "reject")
            seen = ", ".join(map(repr, pd.unique(raw[labels >= 0])[:MAX_ROWS_SHOWN].tolist()))
            self.problems.append(
                f"column {column!r}: all {len(known)} labelled rows are {side} "
                f"({seen}); training needs both classes: no row holds a label value of {other} "
                f"({list(getattr(self.config, f'label_{other}'))})"
            )
        return pd.Series(labels, index=self.df.index, name=column)

    def boolean_hint(self, raw: pd.Series, unknown: np.ndarray) -> str:
        """A hint when a boolean on one side may be text on the other: YAML reads unquoted yes/no/true/
        false/on/off as booleans, while a CSV column of those words holds text."""
        if not unknown.any():
            return ""
        configured = [*self.config.label_reject, *self.config.label_approve]
        seen = [_plain(v) for v in pd.unique(raw[unknown])]
        looks_boolean = pd.api.types.is_bool_dtype(raw) or any(
            isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _YAML_BOOLEAN_WORDS)
            for v in [*configured, *seen]
        )
        if not looks_boolean:
            return ""
        return (
            f". The column holds {', '.join(f'{v!r} ({type(v).__name__})' for v in seen[:MAX_ROWS_SHOWN])}; "
            "YAML reads unquoted yes/no/true/false/on/off as booleans: under label_values, quote them "
            f'("yes") to match text, or leave them unquoted to match a boolean column ({self.config.where()})'
        )

    def numeric(self, column: str, non_negative: bool = False) -> pd.Series:
        raw = self.df[column]
        if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
            values = raw.astype("float64")
        else:
            values = pd.to_numeric(raw.astype("object"), errors="coerce").astype("float64")
            not_number = (values.isna() & raw.notna()).to_numpy()
            self.report(column, not_number, "are not numbers")
        array = values.to_numpy()
        self.report(column, np.isinf(array), "are infinite")
        if non_negative:
            self.report(column, array < 0, "are negative")
        return values

    def text(self, column: str) -> pd.Series:
        raw = self.df[column]
        if isinstance(raw.dtype, pd.api.extensions.ExtensionDtype) and not isinstance(raw.dtype, pd.StringDtype):
            raw = raw.astype(object)  # nullable integers, booleans, categories: "" fits none of their dtypes
        return raw.fillna("").astype("str")


def _parse_timestamps(raw: pd.Series) -> pd.Series:
    """Parse to tz-naive datetime64[us]; failures become NaT (reported by the caller)."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    if pd.api.types.is_datetime64_dtype(raw):
        return raw.astype("datetime64[us]")
    if pd.api.types.is_numeric_dtype(raw):
        # Bare numbers are ambiguous (seconds? days?): refuse them rather than guess.
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
    with warnings.catch_warnings():  # a day-first format inferred from the first value is read as such
        warnings.filterwarnings(
            "ignore", message="Parsing dates in .* format when dayfirst=False", category=UserWarning
        )
        parsed = pd.to_datetime(raw, errors="coerce", utc=True)
    retry = parsed.isna() & raw.notna()
    if retry.any():
        one_order = _parse_one_day_month_order(raw)
        if one_order is not None:
            parsed = one_order
        else:  # a minority in another format: parse those one by one
            parsed[retry] = pd.to_datetime(raw[retry], errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def _parse_one_day_month_order(raw: pd.Series) -> pd.Series | None:
    """The column with ISO 8601 values read as such and every other value in one day/month order: month
    first (pandas' reading) when that reads them all, else day first when that does (some value can only
    be day first: "13/07/2013"). One column holds one day/month order, so a row read month-first beside
    rows read day-first would hold a wrong date without a message. None when the other values are not
    numeric dates in one such format (a text month, say)."""
    from pandas.tseries.api import guess_datetime_format

    values = raw.dropna()
    iso = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    others = values[iso.isna()]
    if others.empty:
        return None
    first = others.iloc[0]
    guessed = (guess_datetime_format(first) if isinstance(first, str) else None) or ""
    month, day, year = guessed.find("%m"), guessed.find("%d"), guessed.find("%Y")
    if not 0 <= month < day or 0 <= year < month:
        return None  # not read month-first (ISO 8601 is year-first): nothing pandas could have swapped
    day_first = guessed.replace("%m", "%%M%%").replace("%d", "%m").replace("%%M%%", "%d")
    for order in (guessed, day_first):
        read = pd.to_datetime(others, errors="coerce", utc=True, format=order)
        if read.notna().all():
            parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
            parsed[iso.index] = iso
            parsed[others.index] = read
            return parsed
    return None


def _label_lookup(config: DataConfig) -> dict[Any, int]:
    lookup = {match_key(v): 1 for v in config.label_reject}
    for value in config.label_approve:
        key = match_key(value)
        if lookup.get(key) == 1:
            raise DataValidationError([f"column {config.label!r}: label value {value!r} is both reject and approve"])
        lookup[key] = 0
    return lookup


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so messages read 'L1', not np.str_('L1')."""
    return value.item() if isinstance(value, np.generic) else value
