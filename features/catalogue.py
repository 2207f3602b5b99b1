"""Known prohibited or restricted products by name and aliases (`Catalogue`).

A phrase matches on whole words only, after each listing word that is a close misspelling of a catalogue
word (rapidfuzz ratio >= `FUZZY_RATIO`, words of `FUZZY_MIN_LENGTH`+ letters) is read as that word.
Every word of an alias must be there, in order: "ivory color" shares one word with "ivory carving" and
matches nothing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.minhash import COLUMNAR_MIN, normalize_texts

CATALOGUE_COLUMNS = ("entry_id", "name", "aliases", "reason", "action")
FUZZY_RATIO = 88.0
FUZZY_MIN_LENGTH = 5


class Catalogue:
    """Known prohibited or restricted products (`CATALOGUE_COLUMNS`); `match` finds them in normalised texts.

    A listing word of FUZZY_MIN_LENGTH+ letters within FUZZY_RATIO of a catalogue word (rapidfuzz ratio:
    "rolexx", "switchblde") reads as that word; then a name or alias matches as a whole phrase, every
    word in order, so one shared word is never enough.
    """

    def __init__(self, entries: pd.DataFrame) -> None:
        missing = [c for c in CATALOGUE_COLUMNS if c not in entries]
        if missing:
            raise ValueError(f"catalogue: missing columns {missing} (expected {list(CATALOGUE_COLUMNS)})")
        self.entries = entries.loc[:, list(CATALOGUE_COLUMNS)].reset_index(drop=True).copy()
        self.entries["entry_id"] = self.entries["entry_id"].astype(str)
        self.entries["aliases"] = [_aliases(a) for a in self.entries["aliases"]]
        phrases: dict[str, int] = {}
        for row, (name, aliases) in enumerate(zip(self.entries["name"], self.entries["aliases"], strict=True)):
            for phrase in normalize_texts([str(name), *aliases]):
                if phrase:
                    phrases.setdefault(phrase, row)  # the first entry naming a phrase owns it
        self._phrases = phrases
        self._words = sorted({w for p in phrases for w in p.split()})
        self._fuzzy_words = [w for w in self._words if len(w) >= FUZZY_MIN_LENGTH]
        alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<!\S)(?:{alternatives})(?!\S)") if phrases else None
        # the same phrases in RE2, for a superset test over a column (no lookbehind: the spaces around a
        # phrase are consumed instead; a run of spaces between its words matches too)
        alternatives_re2 = "|".join(_re2_escape(p).replace(" ", " +") for p in sorted(phrases, key=len, reverse=True))
        self._pattern_re2 = rf"(?:^| )(?:{alternatives_re2})(?: |$)"
        self._read_as: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def read_csv(cls, path: str | Path) -> Catalogue:
        """A catalogue file: `CATALOGUE_COLUMNS`, aliases joined by "|"."""
        return cls(pd.read_csv(path, dtype=str, keep_default_na=False))

    def to_csv(self, path: Path) -> None:
        frame = self.entries.copy()
        frame["aliases"] = ["|".join(a) for a in frame["aliases"]]
        frame.to_csv(path, index=False)

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, texts: Sequence[str]) -> np.ndarray:
        """Per normalised text, the row of the first catalogue entry found (-1: none)."""
        found = np.full(len(texts), -1, dtype=np.int64)
        if self._pattern is None:
            return found
        if len(texts) < COLUMNAR_MIN:
            self._learn_words({w for t in texts for w in t.split()})
            rows: Sequence[int] = range(len(texts))
        else:
            rows = self._rows_with_catalogue_words(texts)
        read_as = self._read_as
        for i in rows:
            text = texts[i]
            canonical = " ".join(read_as.get(w, w) for w in text.split())
            hit = self._pattern.search(canonical)
            if hit is not None:
                found[i] = self._phrases[hit.group(0)]
        return found

    def _rows_with_catalogue_words(self, texts: Sequence[str]) -> list[int]:
        """Learn the texts' words, then return the rows whose canonical text (each word read as its
        catalogue word) holds a catalogue phrase: the rows `match` has to look at, found in RE2 over
        the whole column (a superset test: `match` then finds the first phrase of each in Python)."""
        split = pc.utf8_split_whitespace(pa.array(texts, type=pa.large_string()))
        words = pc.list_flatten(split).dictionary_encode()
        distinct = words.dictionary.to_pylist()
        self._learn_words({w for w in distinct if w})
        read_as = self._read_as
        canonical_words = pa.array([read_as.get(w, w) for w in distinct], type=pa.large_string()).take(words.indices)
        space = pa.scalar(" ", pa.large_string())
        canonical = pc.binary_join(type(split).from_arrays(split.offsets, canonical_words), space)
        hit = pc.match_substring_regex(canonical, self._pattern_re2).to_numpy(zero_copy_only=False)
        return np.flatnonzero(hit).tolist()

    def _learn_words(self, words: set[str]) -> None:
        """Remember which new listing words read as a catalogue word (one rapidfuzz cdist per batch)."""
        from rapidfuzz import fuzz, process

        new = [w for w in words if w not in self._read_as and len(w) >= FUZZY_MIN_LENGTH]
        if not new or not self._fuzzy_words:
            return
        scores = process.cdist(new, self._fuzzy_words, scorer=fuzz.ratio, score_cutoff=FUZZY_RATIO, workers=1)
        best = scores.argmax(axis=1)
        learned = {
            w: self._fuzzy_words[j]
            for w, j, s in zip(new, best.tolist(), scores.max(axis=1).tolist(), strict=True)
            if s
        }
        with self._lock:
            if len(self._read_as) > 1_000_000:  # bounded: forget and relearn
                self._read_as = {}
            self._read_as.update({w: learned.get(w, w) for w in new})


def _re2_escape(text: str) -> str:
    """`text` as a literal in an RE2 pattern: every character but letters, digits and spaces escaped."""
    return "".join(c if c.isalnum() or c == " " else f"\\{c}" for c in text)


def _aliases(value: Any) -> list[str]:
    if isinstance(value, str):
        return [a.strip() for a in value.split("|") if a.strip()]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(a).strip() for a in value if str(a).strip()]
