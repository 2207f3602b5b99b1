"""Validation stops bad input with a message naming the column and the first offending rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import DEFAULT_CONFIG_PATH, DataConfig, load_config
from features.validate import DataValidationError, load_table, validate_history, validate_listings

CONFIG = DataConfig()


def history(n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2024-03-01") + pd.to_timedelta(rng.permutation(n), unit="h")
    return pd.DataFrame(
        {
            "listing_id": [f"L{i:03d}" for i in range(n)],
            "merchant_id": [f"M{i % 3}" for i in range(n)],
            "created_at": created,
            "reviewed_at": created + pd.Timedelta(hours=5),
            "title": ["red bag"] * n,
            "description": [None if i == 2 else "nice" for i in range(n)],
            "brand": [""] * n,
            "category": ["fashion"] * n,
            "market": ["DE"] * n,
            "price": rng.uniform(5, 50, n),
            "merchant_tenure_days": rng.uniform(0, 900, n),
            "image_count": rng.integers(0, 5, n),
            "has_certificate": rng.integers(0, 2, n),
            "label": [i % 2 for i in range(n)],
            "violation_reason": [""] * n,
            "review_seconds": rng.uniform(20, 90, n),
        }
    )


def error_of(df: pd.DataFrame) -> str:
    with pytest.raises(DataValidationError) as info:
        validate_history(df, CONFIG)
    return str(info.value)


def test_valid_history_is_normalised_not_dropped():
    raw = history()
    out = validate_history(raw, CONFIG)
    assert len(out) == len(raw)
    assert out["created_at"].is_monotonic_increasing
    assert list(out.index) == list(range(len(raw)))
    assert out["label"].dtype == np.int8
    assert sorted(out["listing_id"]) == sorted(raw["listing_id"])
    assert (out["description"] == "").sum() == 1  # the missing description is kept, as ""
    assert out["image_count"].dtype == np.float64
    assert raw["description"].isna().sum() == 1  # the input frame is not modified


def test_label_strings_are_mapped():
    raw = history(6)
    raw["label"] = ["reject", "Approved", "1", "0", "REJECTED", "approve"]
    out = validate_history(raw, CONFIG).set_index("listing_id")
    assert out.loc[raw["listing_id"], "label"].tolist() == [1, 0, 1, 0, 1, 0]


def test_missing_columns_are_all_listed():
    message = error_of(history().drop(columns=["price", "title"]))
    assert "column 'title' (role text) is not in the outcomes table" in message
    assert "column 'price' (role numeric) is not in the outcomes table" in message


def test_unknown_label_names_rows_and_ids():
    raw = history()
    raw["label"] = raw["label"].astype(object)
    raw.loc[[3, 7], "label"] = ["maybe", "spam"]
    message = error_of(raw)
    assert "column 'label'" in message and "2 rows" in message and "unknown label" in message
    assert "row 3 (listing_id='L003'): 'maybe'" in message and "row 7 (listing_id='L007'): 'spam'" in message


def test_null_label_is_an_error():
    raw = history()
    raw["label"] = raw["label"].astype(float)
    raw.loc[4, "label"] = np.nan
    assert "row 4 (listing_id='L004')" in error_of(raw)


def test_unparsable_timestamp():
    raw = history()
    raw["created_at"] = raw["created_at"].astype(str)
    raw.loc[5, "created_at"] = "yesterday-ish"
    message = error_of(raw)
    assert "column 'created_at'" in message and "unparsable" in message
    assert "row 5 (listing_id='L005'): 'yesterday-ish'" in message


def test_timestamps_in_mixed_formats_parse():
    raw = history(4)
    raw["created_at"] = ["2024-03-01 10:00:00", "2024-03-02T11:00:00Z", "03/04/2024 09:00", "2024-03-05"]
    raw["reviewed_at"] = "2024-04-01"
    out = validate_history(raw, CONFIG)
    assert out["created_at"].notna().all()


def test_day_first_timestamps_are_read_day_first_throughout():
    # A day-first export whose first dates fit month-first too: every row must be read day-first,
    # not the first ones month-first and the rest (day > 12) day-first.
    raw = history(4)
    raw["created_at"] = ["12/07/2013 22:33", "01/08/2013 09:19", "13/07/2013 11:17", "02/08/2013 03:15"]
    raw["reviewed_at"] = "2013-09-01"
    out = validate_history(raw, CONFIG).set_index("listing_id")
    expected = pd.to_datetime(raw["created_at"], format="%d/%m/%Y %H:%M").to_numpy()
    assert (out.loc[raw["listing_id"], "created_at"].to_numpy() == expected).all()


def test_a_day_first_first_value_is_read_without_a_warning_on_screen(recwarn: pytest.WarningsRecorder) -> None:
    """pandas' 'Parsing dates in %d/%m/%Y %H:%M format when dayfirst=False' leaked into `triage score`."""
    raw = history(2).assign(created_at=["31/12/2013 10:00", "01/11/2013 11:00"], reviewed_at="2014-01-05")
    out = validate_history(raw, CONFIG).set_index("listing_id")
    assert out.loc[raw["listing_id"], "created_at"].tolist() == [
        pd.Timestamp(2013, 12, 31, 10),
        pd.Timestamp(2013, 11, 1, 11),
    ]
    assert not [w for w in recwarn if "dayfirst" in str(w.message)]


def test_day_first_dates_beside_iso_dates_are_read_day_first():
    # Exports merged from several sources: ISO rows beside day-first rows whose first value fits
    # month-first too. The day-first rows were read month-first (a wrong date, no message) because the
    # ISO rows failed the day-first format.
    raw = history(6)
    raw["created_at"] = [
        "07/11/2013 10:00",
        "2013-11-08 09:00:00",
        "13/11/2013 11:17",
        "2013-11-20T03:15:00Z",
        "05/12/2013 08:00",
        "12/11/2013 12:00",
    ]
    raw["reviewed_at"] = "2014-01-01"
    out = validate_history(raw, CONFIG).set_index("listing_id")
    expected = [
        "2013-11-07 10:00",
        "2013-11-08 09:00",
        "2013-11-13 11:17",
        "2013-11-20 03:15",
        "2013-12-05 08:00",
        "2013-11-12 12:00",
    ]
    assert (out.loc[raw["listing_id"], "created_at"].to_numpy() == pd.to_datetime(expected).to_numpy()).all()


def test_month_first_dates_beside_iso_dates_stay_month_first():
    raw = history(4)
    raw["created_at"] = ["2024-03-01 10:00:00", "03/04/2024 09:00", "12/28/2024 09:00", "2024-03-05"]
    raw["reviewed_at"] = "2025-02-01"
    out = validate_history(raw, CONFIG).set_index("listing_id")
    expected = pd.to_datetime(
        ["2024-03-01 10:00", "2024-03-04 09:00", "2024-12-28 09:00", "2024-03-05"], format="ISO8601"
    )
    assert (out.loc[raw["listing_id"], "created_at"].to_numpy() == expected.to_numpy()).all()


def test_duplicate_ids_are_named():
    raw = history()
    raw.loc[6, "listing_id"] = "L001"
    message = error_of(raw)
    assert "column 'listing_id'" in message and "duplicated" in message and "'L001'" in message
    assert "row 1 " in message and "row 6 " in message


def test_all_one_class_is_refused():
    raw = history()
    raw["label"] = 0
    message = error_of(raw)
    assert "column 'label'" in message and "both classes" in message


def test_all_one_class_is_said_in_the_files_own_label_values():
    """It read 'all 4827 rows have label 0 (1 = reject, 0 = approve)' of a file whose labels are ham and spam."""
    config = DataConfig(label_reject=("spam",), label_approve=("ham",))
    raw = history(6).assign(label="ham")
    with pytest.raises(DataValidationError) as caught:
        validate_history(raw, config)
    assert (
        "column 'label': all 6 labelled rows are approvals ('ham'); training needs both classes: no row holds a "
        "label value of reject (['spam'])"
    ) in str(caught.value)


def test_non_numeric_value_in_numeric_column():
    raw = history()
    raw["price"] = raw["price"].astype(object)
    raw.loc[8, "price"] = "ten euros"
    message = error_of(raw)
    assert "column 'price'" in message and "not numbers" in message
    assert "row 8 (listing_id='L008'): 'ten euros'" in message


def test_missing_numeric_is_allowed_but_inf_is_not():
    raw = history()
    raw.loc[2, "price"] = np.nan
    assert np.isnan(validate_history(raw, CONFIG).set_index("listing_id").loc["L002", "price"])
    raw.loc[3, "price"] = np.inf
    assert "column 'price'" in error_of(raw) and "infinite" in error_of(raw)


def test_negative_review_seconds():
    raw = history()
    raw.loc[9, "review_seconds"] = -3.0
    assert "column 'review_seconds'" in error_of(raw) and "row 9 " in error_of(raw)


def test_null_merchant_and_review_before_creation():
    raw = history()
    raw.loc[1, "merchant_id"] = None
    raw.loc[10, "reviewed_at"] = raw.loc[10, "created_at"] - pd.Timedelta(days=1)
    message = error_of(raw)
    assert "column 'merchant_id'" in message and "row 1 " in message
    assert "column 'reviewed_at'" in message and "row 10 " in message and "before they were created" in message


def test_reviewed_at_is_derived_when_absent():
    raw = history().drop(columns=["reviewed_at"])
    out = validate_history(raw, CONFIG)
    lag = out["reviewed_at"] - out["created_at"]
    assert (lag == pd.Timedelta(days=CONFIG.review_lag_days)).all()


def test_error_shows_at_most_five_rows():
    raw = history(20)
    raw["label"] = "unclear"
    message = error_of(raw)
    assert "20 rows" in message and message.count("(listing_id=") == 5


def test_listings_need_no_label_and_keep_their_order():
    raw = history().drop(columns=["label", "reviewed_at"])
    out = validate_listings(raw, CONFIG)
    assert out["listing_id"].tolist() == raw["listing_id"].tolist()
    raw.loc[0, "created_at"] = None
    with pytest.raises(DataValidationError, match="column 'created_at'.*row 0 "):
        validate_listings(raw, CONFIG)


@pytest.mark.parametrize(
    "values, expected",
    [
        (pd.array([7, None, 9, None], dtype="Int64"), ["7", "", "9", ""]),  # a nullable integer (pandas' Parquet)
        (pd.array([True, None, False, None], dtype="boolean"), ["True", "", "False", ""]),
        (pd.Categorical(["toys", None, "shoes", None]), ["toys", "", "shoes", ""]),
        ([7.0, np.nan, 9.5, np.nan], ["7.0", "", "9.5", ""]),  # an integer column with nulls read by pandas
        (np.array([0.1, 7, 9.5, 2], dtype=np.float32), ["0.1", "7.0", "9.5", "2.0"]),  # as before: no float64 digits
        (pd.array(["toys", None, "shoes", None], dtype="str"), ["toys", "", "shoes", ""]),
    ],
)
def test_a_categorical_column_of_any_dtype_reads_as_text_with_missing_as_empty(values, expected):
    """Categorical and text columns hold text whatever dtype the file gave them, a missing value as "":
    a nullable dtype cannot hold "" itself, which once stopped validation with a TypeError."""
    raw = history(4).drop(columns=["label", "reviewed_at"]).assign(category=values)
    out = validate_listings(raw, CONFIG)
    assert out["category"].tolist() == expected


def test_load_table_csv_and_parquet(tmp_path):
    raw = history()
    raw.to_csv(tmp_path / "h.csv", index=False)
    raw.to_parquet(tmp_path / "h.parquet", index=False)
    for name in ("h.csv", "h.parquet"):
        out = validate_history(load_table(tmp_path / name, CONFIG), CONFIG)
        assert len(out) == len(raw)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_table(tmp_path / "nope.csv", CONFIG)
    (tmp_path / "h.xlsx").write_text("x")
    with pytest.raises(DataValidationError, match="h.xlsx"):
        load_table(tmp_path / "h.xlsx", CONFIG)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataValidationError, match="bad.parquet"):
        load_table(tmp_path / "bad.parquet", CONFIG)


def test_a_csv_that_does_not_parse_says_how_it_was_read(tmp_path):
    # the SMS Spam Collection as published: tab-separated, no header line, commas in its text
    lines = "ham\tGo until jurong point, crazy\nham\tOk lar, joking\nspam\tFree entry, win, a, prize\n"
    (tmp_path / "sms.csv").write_text(lines)
    with pytest.raises(DataValidationError) as err:
        load_table(tmp_path / "sms.csv", CONFIG)
    message = str(err.value)
    assert "Expected 2 fields in line 3, saw 4; read as comma-separated with its first line as the header" in message
    assert "(2 fields: 'ham\\tGo until jurong point', ' crazy')" in message and "needs one naming" in message


def test_csv_text_values_that_look_missing_are_kept(tmp_path):
    # "NA" is a market (North America), a value in the columns read as text, as in Parquet; an empty
    # field and the markers SQL and spreadsheet exports write (NULL, N/A, None) are missing there, and a
    # numeric "NA" is still a missing number.
    raw = history(4).assign(
        market=["NA", "DE", "NA", ""], title=["None", "NULL", "N/A", "red bag"], price=["NA", "3.5", "", "4"]
    )
    raw.to_csv(tmp_path / "h.csv", index=False)
    out = validate_history(load_table(tmp_path / "h.csv", CONFIG), CONFIG).set_index("listing_id")
    out = out.loc[raw["listing_id"]]
    assert out["market"].tolist() == ["NA", "DE", "NA", ""]
    assert out["title"].tolist() == ["", "", "", "red bag"]
    assert out["price"].isna().tolist() == [True, False, True, False]


def test_an_id_that_reads_like_a_missing_marker_is_an_id(tmp_path):
    # An id is opaque: "NULL", "NA" or "None" written by export-labels read back as those ids; only an
    # empty field is a missing id, and the rows written "NULL" for a missing id are refused as one
    # duplicated id, named.
    raw = history(4).assign(listing_id=["NULL", "NA", "None", "L-4"])
    raw.to_csv(tmp_path / "h.csv", index=False)
    out = validate_history(load_table(tmp_path / "h.csv", CONFIG), CONFIG)
    assert sorted(out["listing_id"]) == sorted(["NULL", "NA", "None", "L-4"])
    raw.assign(listing_id=["NULL", "NULL", "L-3", ""]).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataValidationError) as err:
        validate_history(load_table(tmp_path / "m.csv", CONFIG), CONFIG)
    assert "NULL" in str(err.value) and "duplicated id" in str(err.value)
    assert "1 rows have no value" in str(err.value)


def test_a_csv_separated_by_semicolons_tabs_or_bars_reads_as_the_comma_one(tmp_path):
    # Spreadsheets in decimal-comma locales export with ";": the header line tells the separator. A comma
    # inside a title stays text in every one of them.
    raw = history(5).assign(title=["red, blue bag", "hat", "cap; wool", "shoe", "belt"])
    raw.to_csv(tmp_path / "comma.csv", index=False)
    expected = validate_history(load_table(tmp_path / "comma.csv", CONFIG), CONFIG)
    for name, sep in (("semicolon", ";"), ("tab", "\t"), ("bar", "|")):
        raw.to_csv(tmp_path / f"{name}.csv", index=False, sep=sep)
        read = validate_history(load_table(tmp_path / f"{name}.csv", CONFIG), CONFIG)
        pd.testing.assert_frame_equal(read, expected, obj=name)
        assert load_table(tmp_path / f"{name}.csv", None).shape == raw.shape  # without a config too


def test_an_unquoted_export_whose_text_opens_with_a_quote_loses_no_row(tmp_path):
    # A tab-separated dump written without quoting (the SMS Spam Collection's own format): read as
    # quoted, the text of row 1 opened a field that ran to the quote in row 3 and swallowed row 2.
    raw = history(5).assign(title=["red bag", "\"Keep it, b'coz nobody", "blue hat", 'cap "wool" warm', "shoe"])
    raw["title"] = raw["title"].astype(str)
    lines = ["\t".join(raw.columns)] + ["\t".join(map(str, row)) for row in raw.itertuples(index=False)]
    (tmp_path / "dump.csv").write_text("\n".join(lines) + "\n")
    read = load_table(tmp_path / "dump.csv", CONFIG)
    assert read["listing_id"].tolist() == raw["listing_id"].tolist()
    assert read["title"].tolist() == raw["title"].tolist()


def test_a_quoted_field_with_a_line_break_keeps_its_quoted_reading(tmp_path):
    raw = history(4).assign(title=["red bag", "two\nlines", 'a "quoted" word', "shoe"])
    for sep in (",", "\t"):
        raw.to_csv(tmp_path / "q.csv", index=False, sep=sep)
        read = load_table(tmp_path / "q.csv", CONFIG)
        assert read["title"].tolist() == raw["title"].tolist(), repr(sep)


def test_a_stray_quote_in_a_quoted_csv_is_refused_not_read_over_the_rows_after_it(tmp_path):
    """A comma export that quotes a field with a comma in it and has a stray quote mark in another: read
    leniently, the stray quote ran its field on to the next quote mark and rows 3 and 4 became its text."""
    lines = [
        "listing_id,title,price",
        '1,"red bag, large",5',
        '2,"blue hat,6',
        "3,cap,7",
        '4,"x",8',
        '5,"two\nlines",9',
    ]
    (tmp_path / "h.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"a quote mark on line 3 runs on to line 5 .*stray quote"):
        load_table(tmp_path / "h.csv")
    lines[2] = "2,blue hat,6"  # mended: the quoted line break of listing 5 is read as it was
    (tmp_path / "h.csv").write_text("\n".join(lines) + "\n")
    assert load_table(tmp_path / "h.csv")["title"].tolist() == ["red bag, large", "blue hat", "cap", "x", "two\nlines"]


def test_a_csv_row_with_too_few_fields_is_refused_naming_the_lines(tmp_path):
    """pandas filled a short row's missing text in as empty, and a carriage return alone inside an unquoted
    text split one listing into two (scoring 3,000 rows wrote 3,001): both silently."""
    (tmp_path / "h.csv").write_bytes(b"id,label,text\nm1,ham,hello\nm2,ham\nm3,ham,line1\rline2\nm4,spam,ok\n")
    with pytest.raises(
        DataValidationError, match=r"2 lines hold fewer fields than the header's 3: line 3 has 2, line 5 "
    ):
        load_table(tmp_path / "h.csv")
    (tmp_path / "h.csv").write_bytes(b'id,label,text\nm1,ham,hello\nm2,ham,\nm3,ham,"line1\rline2"\nm4,spam,ok\n')
    assert load_table(tmp_path / "h.csv")["text"].tolist()[2:] == ["line1\rline2", "ok"]  # empty field, quoted CR


def test_a_csv_row_with_more_fields_than_the_header_is_refused_not_shifted(tmp_path):
    """With a separator at the end of every data row, pandas took the ids for an index and shifted every
    column: listing_id read 'red bag'. A trailing empty field is read as the row; a filled one is refused."""
    (tmp_path / "h.csv").write_text("listing_id,title,price\nA1,red bag,5,\nA2,blue bag,,\n")
    read = load_table(tmp_path / "h.csv")
    assert read["listing_id"].tolist() == ["A1", "A2"] and read["title"].tolist() == ["red bag", "blue bag"]
    (tmp_path / "h.csv").write_text("listing_id,title,price\nA1,red, bag,5\nA2,blue bag,6\n")
    with pytest.raises(DataValidationError, match=r"1 lines hold more fields than the header's 3: line 2 has 4"):
        load_table(tmp_path / "h.csv")


def test_a_csv_of_booleans_with_blanks_and_trailing_unnamed_columns_reads(tmp_path):
    """A TRUE/FALSE column with an empty cell crashed the line-break check (.str on booleans); a
    spreadsheet's two trailing unnamed columns were refused as one repeated name."""
    (tmp_path / "h.csv").write_text("listing_id,title,flag,,\nA1,a,TRUE,,\nA2,b,,,\nA3,c,FALSE,,\n")
    read = load_table(tmp_path / "h.csv")
    assert read["listing_id"].tolist() == ["A1", "A2", "A3"] and read["flag"].tolist()[::2] == [True, False]
    # a blank first line (the YouTube export's Psy file): the header is the first line with fields
    (tmp_path / "h.csv").write_text("\nlisting_id,title\nA1,a\nA2,b\n")
    assert load_table(tmp_path / "h.csv")["title"].tolist() == ["a", "b"]


def test_a_csv_header_that_repeats_a_name_is_refused(tmp_path):
    """The second `text` column was read as `text.1` and never used."""
    (tmp_path / "h.csv").write_text("id,label,text,text\nm1,ham,a,b\n")
    with pytest.raises(DataValidationError, match="the header names 'text' more than once"):
        load_table(tmp_path / "h.csv")


def test_a_spreadsheets_separator_hint_line_is_refused_naming_it(tmp_path):
    """Excel writes `sep=;` above the header in locales with a decimal comma: read as the header, every
    column of the config was reported missing, with the columns present given as ['sep=']."""
    (tmp_path / "h.csv").write_text("\ufeffsep=;\r\nid;label;text\r\nm1;ham;a\r\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"line 1 is 'sep=;', a spreadsheet's separator hint"):
        load_table(tmp_path / "h.csv")
    (tmp_path / "ok.csv").write_text("id;label;text\r\nm1;ham;sep=;\r\n", encoding="utf-8")
    assert load_table(tmp_path / "ok.csv")["text"].tolist() == ["sep="]  # a field that reads sep= is data


def test_a_csv_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    raw = history(6).assign(title=["red bag", "blue bag", "bag 5 \u00a3", "hat", "cap", "shoe"])
    raw.to_csv(tmp_path / "h.csv", index=False, encoding="latin-1")
    with pytest.raises(DataValidationError) as info:
        load_table(tmp_path / "h.csv", CONFIG)
    message = str(info.value)
    assert "h.csv" in message and "not UTF-8" in message and "line 4 " in message and "0xa3" in message


def test_missing_column_names_its_role_the_file_and_the_config(tmp_path):
    path = tmp_path / "reviews.csv"
    history().drop(columns=["title"]).to_csv(path, index=False)
    config = load_config(DEFAULT_CONFIG_PATH)
    with pytest.raises(DataValidationError) as info:
        validate_history(load_table(path, config), config)
    message = str(info.value)
    assert f"column 'title' (role text) is not in {path}; the data config is " in message
    assert "data.yaml: edit it or pass --config" in message


def test_yaml_booleans_against_text_labels_get_a_quoting_hint():
    raw = history().assign(label=lambda d: np.where(d["label"] == 1, "yes", "no"))
    config = DataConfig(label_reject=(True,), label_approve=(False,))  # YAML's reading of `reject: [yes]`
    message = error_of_config(raw, config)
    assert "have unknown label values" in message and "quote them" in message


def test_text_labels_against_a_boolean_column_get_a_quoting_hint():
    raw = history().assign(label=lambda d: d["label"] == 1)
    config = DataConfig(label_reject=("yes",), label_approve=("no",))
    assert "YAML reads unquoted yes/no/true/false/on/off as booleans" in error_of_config(raw, config)


def test_other_unknown_labels_get_no_quoting_hint():
    raw = history().assign(label=lambda d: np.where(d["label"] == 1, "spam", "ham"))
    assert "quote" not in error_of_config(raw, CONFIG)


def test_without_timestamps_rows_keep_the_file_order():
    config = DataConfig(timestamp=None, time_order="row", reviewed_at=None, merchant=None)
    raw = history().drop(columns=["created_at", "reviewed_at", "merchant_id"])
    out = validate_history(raw, config)
    assert out["listing_id"].tolist() == raw["listing_id"].tolist()
    assert "reviewed_at" not in out and "created_at" not in out


def error_of_config(df: pd.DataFrame, config: DataConfig) -> str:
    with pytest.raises(DataValidationError) as info:
        validate_history(df, config)
    return str(info.value)


def test_load_table_reads_a_directory_of_parquet_files_as_one_table(tmp_path):
    raw = history(12)
    parts = tmp_path / "parts"
    parts.mkdir()
    raw.iloc[:5].to_parquet(parts / "a.parquet", index=False)
    raw.iloc[5:].to_parquet(parts / "b.parquet", index=False)
    (parts / "_SUCCESS").write_text("")  # what Spark leaves beside its parts: not a Parquet file, not read
    table = load_table(parts, CONFIG)
    pd.testing.assert_frame_equal(validate_history(table, CONFIG), validate_history(raw, CONFIG))
    assert table.attrs["source"] == str(parts)
    raw.iloc[5:].drop(columns=["review_seconds"]).to_parquet(parts / "b.parquet", index=False)
    with pytest.raises(DataValidationError, match=r"the files hold different columns: a\.parquet holds .*b\.parquet"):
        load_table(parts, CONFIG)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataValidationError, match="holds no .parquet files"):
        load_table(empty, CONFIG)


def test_a_number_written_as_text_matches_the_configured_number(tmp_path) -> None:
    """A label column of '1'/'0' stored as text in Parquet matches `reject: [1], approve: [0]`, as a CSV
    column of 1.0/0 (read as numbers) and a boolean column do: a text matches a number when it is the
    number as a CSV reader would read it (sign, leading zeros, decimals, exponent; surrounding spaces
    ignored). A configured text '1' matches a numeric column the same way."""
    config = DataConfig(label_reject=(1,), label_approve=(0,))
    raw = history(8)
    raw["label"] = ["1", "0", " 1 ", "1.0", "01", "0.00", "+1", "1e0"]
    path = tmp_path / "labels.parquet"
    raw.to_parquet(path, index=False)
    out = validate_history(load_table(path, config), config).set_index("listing_id")
    assert out.loc[raw["listing_id"], "label"].tolist() == [1, 0, 1, 1, 1, 0, 1, 1]
    numeric = validate_history(history(8), DataConfig(label_reject=("1",), label_approve=(" 0 ",)))
    assert (
        numeric.set_index("listing_id").loc[history(8)["listing_id"], "label"].tolist() == history(8)["label"].tolist()
    )


@pytest.mark.parametrize("other", ["yes", "one", "1x", "1,0", "0x1", "inf", "nan", "1 0", "", "\uff11", "1e400"])
def test_a_text_that_is_not_a_number_never_matches_a_configured_number(other: str) -> None:
    raw = history().assign(label=lambda d: d["label"].astype(str))
    raw.loc[3, "label"] = other
    message = error_of_config(raw, DataConfig(label_reject=(1,), label_approve=(0,)))
    assert "column 'label': 1 rows have unknown label values (allowed: reject=[1], approve=[0])" in message
    assert f"row 3 (listing_id='L003'): {other!r}" in message
