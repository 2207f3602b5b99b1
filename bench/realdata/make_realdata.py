"""Turn the raw UCI files in bench/realdata/raw/ into the tidy CSVs the pipeline reads directly.

    python bench/realdata/make_realdata.py        # rewrites bench/realdata/sms_spam.csv and youtube_spam.csv

- sms_spam.csv: message_id, label (spam / ham), text; in file order (the data has no timestamps, so file
  order is the only order there is; configs/sms_spam.yaml splits by it).
- youtube_spam.csv: comment_id, author, published_at, video, content, label (1 = spam); sorted by
  published_at. Two decisions, counted in bench/realdata/README.md:
  * rows without a DATE are dropped: they are all in one file and all spam, so any imputed date would
    carry the label;
  * rows that repeat a COMMENT_ID with identical fields are kept once (ids must be unique).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RAW = HERE / "raw"
SMS_COLUMNS = ["message_id", "label", "text"]
YOUTUBE_COLUMNS = ["comment_id", "author", "published_at", "video", "content", "label"]


def sms_table(raw_file: Path = RAW / "sms_spam" / "SMSSpamCollection") -> pd.DataFrame:
    """One row per message, in file order; message_id is the 0-based line number."""
    raw = pd.read_csv(raw_file, sep="\t", header=None, names=["label", "text"], quoting=csv.QUOTE_NONE, dtype=str)
    raw.insert(0, "message_id", [f"sms-{i:05d}" for i in range(len(raw))])
    return raw[SMS_COLUMNS]


def youtube_table(raw_dir: Path = RAW / "youtube_spam") -> tuple[pd.DataFrame, dict[str, int]]:
    """All five videos in one table sorted by publication time, and the counts of what was dropped."""
    frames = [
        pd.read_csv(path, dtype={"COMMENT_ID": str, "AUTHOR": str, "CONTENT": str}).assign(
            video=path.stem.split("-", 1)[1]
        )
        for path in sorted(raw_dir.glob("Youtube0*.csv"))
    ]
    raw = pd.concat(frames, ignore_index=True)
    undated = raw["DATE"].isna()
    dated = raw[~undated]
    deduped = dated.drop_duplicates()
    if deduped["COMMENT_ID"].duplicated().any():
        raise ValueError("youtube_spam: a COMMENT_ID repeats with different fields; decide which row to keep")
    table = pd.DataFrame(
        {
            "comment_id": deduped["COMMENT_ID"],
            "author": deduped["AUTHOR"],
            "published_at": pd.to_datetime(deduped["DATE"], format="ISO8601"),
            "video": deduped["video"],
            "content": deduped["CONTENT"],
            "label": deduped["CLASS"].astype(int),
        }
    )
    table = table.sort_values("published_at", kind="stable").reset_index(drop=True)
    dropped = {
        "raw_rows": len(raw),
        "undated_dropped": int(undated.sum()),
        "undated_spam": int(raw.loc[undated, "CLASS"].sum()),
        "duplicates_dropped": len(dated) - len(deduped),
        "rows": len(table),
    }
    return table, dropped


def main() -> None:
    sms = sms_table()
    sms.to_csv(HERE / "sms_spam.csv", index=False)
    print(f"sms_spam.csv: {len(sms):,} rows, {int((sms['label'] == 'spam').sum()):,} spam")
    youtube, dropped = youtube_table()
    youtube.to_csv(HERE / "youtube_spam.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
    print(f"youtube_spam.csv: {len(youtube):,} rows, {int(youtube['label'].sum()):,} spam; {dropped}")


if __name__ == "__main__":
    main()
