"""Routing policy: rules, then thresholds on calibrated risk -> auto_pass / human_review / auto_block.

One pure function (`route`) that the service, the simulator and the evaluation all call, so a
simulation can never disagree with what the service would do. A `Policy` is data (thresholds, optional
per-segment thresholds, rules, QA sample rate); every version is kept in the bundle
(`policies/<version>.json`) and `policy.json` is the current one.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.bundle import MANIFEST, verify_manifest, write_manifest
from features.lexicon import normalize_category

AUTO_PASS, HUMAN_REVIEW, AUTO_BLOCK = "auto_pass", "human_review", "auto_block"
DECISIONS: tuple[str, str, str] = (AUTO_PASS, HUMAN_REVIEW, AUTO_BLOCK)  # index = int8 code
CODE_PASS, CODE_REVIEW, CODE_BLOCK = np.int8(0), np.int8(1), np.int8(2)

POLICY_FILE = "policy.json"
POLICY_HISTORY_DIR = "policies"
RULE_ACTIONS = ("block", "review")
RULE_KINDS = ("term", "category")

TextColumn: TypeAlias = pa.Array | Sequence[str]  # one text column of a batch of listings, "" where missing


def route(
    risk: np.ndarray,
    t_pass: float | np.ndarray,
    t_block: float | np.ndarray,
    rule_block: np.ndarray | None = None,
    rule_review: np.ndarray | None = None,
) -> np.ndarray:
    """Decision codes (int8: 0 auto_pass, 1 human_review, 2 auto_block) for each listing.

    Rules first (a block rule wins over a review rule), then thresholds: risk < t_pass passes,
    risk >= t_block blocks, the rest is queued. A risk that is NaN or infinite is queued, block rule or
    not (fail safe: nothing that could not be scored is ever decided automatically).
    """
    risk = np.asarray(risk, dtype=np.float64)
    codes = np.full(risk.shape, CODE_REVIEW, dtype=np.int8)
    finite = np.isfinite(risk)
    codes[finite & (risk < t_pass)] = CODE_PASS
    codes[finite & (risk >= t_block)] = CODE_BLOCK
    if rule_review is not None:
        codes[np.asarray(rule_review, dtype=bool)] = CODE_REVIEW
    if rule_block is not None:
        codes[np.asarray(rule_block, dtype=bool) & finite] = CODE_BLOCK
    return codes


def decision_names(codes: np.ndarray) -> np.ndarray:
    """int8 codes -> decision strings."""
    return np.asarray(DECISIONS, dtype=object)[np.asarray(codes, dtype=np.int64)]


def qa_sample(decisions: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Mask of automated decisions drawn for QA review, each with probability `rate`.

    The service routes them to human_review flagged `qa_sample` (keeping the decision they would have
    had), so the true miss rate of auto-pass stays measurable and retraining labels stay unbiased.
    """
    decisions = np.asarray(decisions)
    automated = decisions != CODE_REVIEW if decisions.dtype.kind in "iu" else decisions != HUMAN_REVIEW
    return automated & (rng.random(decisions.shape) < rate)


@dataclass
class Rule:
    """A policy rule. kind "term": any of `terms` as a whole word (case-insensitive) in `fields`;
    kind "category": `column` (normalised like 'Health & Supplements' -> 'health supplements') is one
    of `values`. action "block" sends matches to auto_block, "review" to human_review."""

    name: str
    action: str
    kind: str
    terms: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    column: str | None = None
    values: list[str] = field(default_factory=list)

    def validate(self, where: str = "rule") -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{where}.name: must be a non-empty string")
        if self.action not in RULE_ACTIONS:
            raise ValueError(f"{where}.action: {self.action!r} is not one of {list(RULE_ACTIONS)}")
        if self.kind not in RULE_KINDS:
            raise ValueError(f"{where}.kind: {self.kind!r} is not one of {list(RULE_KINDS)}")
        if self.kind == "term":
            if not self.terms or not all(isinstance(t, str) and t.strip() for t in self.terms):
                raise ValueError(f"{where}.terms: a term rule needs a list of non-empty strings")
            if not self.fields or not all(isinstance(f, str) and f for f in self.fields):
                raise ValueError(f"{where}.fields: a term rule needs the text fields to search")
        else:
            if not isinstance(self.column, str) or not self.column:
                raise ValueError(f"{where}.column: a category rule needs the column to compare")
            if not self.values or not all(isinstance(v, str) for v in self.values):
                raise ValueError(f"{where}.values: a category rule needs a list of values")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "rule") -> Rule:
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - {"name", "action", "kind", "terms", "fields", "column", "values"})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}")
        rule = cls(
            name=raw.get("name", ""),
            action=raw.get("action", ""),
            kind=raw.get("kind", ""),
            terms=list(raw.get("terms") or []),
            fields=list(raw.get("fields") or []),
            column=raw.get("column"),
            values=list(raw.get("values") or []),
        )
        rule.validate(where)
        return rule

    @property
    def columns(self) -> list[str]:
        """The listing columns this rule reads."""
        return [self.column] if self.kind == "category" and self.column else list(self.fields)

    def match(self, listings: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the listings this rule matches (vectorised; absent columns match nothing)."""
        return self.match_texts(_text_columns(listings, self.columns), len(listings))

    def match_texts(self, texts: Mapping[str, TextColumn], n: int) -> np.ndarray:
        """`match` on the rule's columns given as text ("" where missing), for `n` listings.

        Term rules run in RE2 over each whole column; categories are normalised once per distinct value.
        """
        mask = np.zeros(n, dtype=bool)
        if self.kind == "category":
            values = texts.get(self.column or "")
            if values is None or not n:
                return mask
            wanted = {normalize_category(v) for v in self.values}
            if isinstance(values, pa.Array):
                values = values.to_numpy(zero_copy_only=False)
            uniques, inverse = np.unique(np.asarray(values, dtype=str), return_inverse=True)
            hit = np.fromiter((normalize_category(u) in wanted for u in uniques), dtype=bool, count=len(uniques))
            return hit[inverse.reshape(-1)]
        for column in self.fields:
            if column in texts and n:
                text = texts[column]
                text = text if isinstance(text, pa.Array) else pa.array(text, type=pa.large_string())
                ascii_text = bool(pc.all(pc.string_is_ascii(text)).as_py())
                pattern = _term_pattern_re2(tuple(self.terms), ascii_text)
                mask |= pc.match_substring_regex(text, pattern).to_numpy(zero_copy_only=False)
        return mask


def _term_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words without \b, so terms that start or end with punctuation ("c++") still match.
    alternatives = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


# The same match in RE2 (pyarrow), for whole columns: about ten times faster than Python's `re` over
# pandas. RE2 has no lookbehind, so the word edges are consumed instead (fine for "contains"), and
# Python's Unicode \w and \s are spelled out...
_NOT_WORD = r"[^\p{L}\p{N}_]"
_SPACES = r"[\s\x{0b}\p{Z}\x{85}\x{1c}-\x{1f}]+"
# ... and so are their ASCII parts, which match ASCII text exactly alike. pyarrow compiles the pattern on
# every call, and the Unicode classes make that cost about 1 ms (0.06 ms without): a column that is all
# ASCII, as most are, gets the ASCII pattern.
_NOT_WORD_ASCII = r"[^A-Za-z0-9_]"
_SPACES_ASCII = r"[\t\n\x{0b}\f\r \x{1c}-\x{1f}]+"


@lru_cache(maxsize=256)
def _term_pattern_re2(terms: tuple[str, ...], ascii_text: bool = False) -> str:
    """RE2 twin of `_term_pattern`; `ascii_text=True` gives a pattern valid only for ASCII text."""
    not_word, spaces = (_NOT_WORD_ASCII, _SPACES_ASCII) if ascii_text else (_NOT_WORD, _SPACES)
    alternatives = "|".join(spaces.join(re.escape(w) for w in t.split()) for t in sorted(terms, key=len, reverse=True))
    return rf"(?i)(?:^|{not_word})(?:{alternatives})(?:{not_word}|$)"


def _text_columns(listings: pd.DataFrame, columns: Sequence[str]) -> dict[str, TextColumn]:
    """The listed columns that exist, as arrow text ("" where missing)."""
    return {
        c: pa.array(listings[c].astype("string").fillna(""), type=pa.large_string()) for c in columns if c in listings
    }


def match_rules(
    listings: pd.DataFrame, rules: Sequence[Rule | dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """(block_mask, review_mask, matched rule names per listing)."""
    parsed = [raw if isinstance(raw, Rule) else Rule.from_dict(raw, f"rules[{i}]") for i, raw in enumerate(rules)]
    texts = _text_columns(listings, sorted({c for rule in parsed for c in rule.columns}))
    return match_rules_on_texts(texts, len(listings), parsed)


def match_rules_on_texts(
    texts: Mapping[str, TextColumn], n: int, rules: Sequence[Rule]
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """`match_rules` for listings given as text columns ("" where missing): the columnar core that
    the service runs on a batch of listing dicts without building a DataFrame."""
    block, review = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    matched: list[list[str]] = [[] for _ in range(n)]
    for rule in rules:
        mask = rule.match_texts(texts, n)
        (block if rule.action == "block" else review)[mask] = True
        for row in np.flatnonzero(mask).tolist():
            matched[row].append(rule.name)
    return block, review, matched


@dataclass
class Policy:
    """Thresholds (global and per segment), rules and QA sample rate, versioned."""

    version: str
    t_pass: float
    t_block: float
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    segment_by: str | None = None
    segments: dict[str, tuple[float, float]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    qa_sample_rate: float = 0.02
    targets: dict[str, Any] = field(default_factory=dict)
    provisional: bool = False
    guarantee: dict[str, Any] = field(default_factory=dict)

    def validate(self, columns: Collection[str] | None = None) -> Policy:
        """Check the policy; with `columns` (what every listing carries), also that each rule reads
        only those columns."""
        if not isinstance(self.version, str) or not self.version:
            raise ValueError("version: must be a non-empty string")
        _check_pair(self.t_pass, self.t_block, "t_pass", "t_block")
        if self.segments and not self.segment_by:
            raise ValueError("segment_by: per-segment thresholds need the column they are keyed by")
        for name, pair in self.segments.items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"segments[{name!r}]: expected (t_pass, t_block)")
            _check_pair(pair[0], pair[1], f"segments[{name!r}].t_pass", f"segments[{name!r}].t_block")
        for i, rule in enumerate(self.rules):
            if not isinstance(rule, Rule):
                raise ValueError(f"rules[{i}]: expected a Rule")
            rule.validate(f"rules[{i}]")
            missing = [c for c in rule.columns if columns is not None and c not in columns]
            if missing:
                raise ValueError(
                    f"rules[{i}]: rule {rule.name!r} reads columns {missing} that listings do not carry "
                    f"(they carry {sorted(columns or [])}); a rule never falls back to another column"
                )
        rate = self.qa_sample_rate
        if not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"qa_sample_rate: {rate!r} is not in [0, 1]")
        return self

    def thresholds_for(self, segment_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-listing (t_pass, t_block) arrays; a segment without its own pair gets the global pair."""
        values = np.asarray(segment_values).astype(str)
        t_pass = np.full(values.shape, self.t_pass, dtype=np.float64)
        t_block = np.full(values.shape, self.t_block, dtype=np.float64)
        if not self.segments or values.size == 0:
            return t_pass, t_block
        uniques, inverse = np.unique(values, return_inverse=True)
        pairs = np.array([self.segments.get(u, (self.t_pass, self.t_block)) for u in uniques], dtype=np.float64)
        inverse = inverse.reshape(-1)
        return pairs[inverse, 0].reshape(values.shape), pairs[inverse, 1].reshape(values.shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "t_pass": float(self.t_pass),
            "t_block": float(self.t_block),
            "segment_by": self.segment_by,
            "segments": {k: [float(a), float(b)] for k, (a, b) in sorted(self.segments.items())},
            "rules": [r.to_dict() for r in self.rules],
            "qa_sample_rate": float(self.qa_sample_rate),
            "targets": dict(self.targets),
            "provisional": bool(self.provisional),
            "guarantee": dict(self.guarantee),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Policy:
        if not isinstance(raw, dict):
            raise ValueError(f"policy: expected a mapping, got {type(raw).__name__}")
        for key in ("version", "t_pass", "t_block"):
            if key not in raw:
                raise ValueError(f"{key}: missing")
        segments = raw.get("segments") or {}
        if not isinstance(segments, dict):
            raise ValueError("segments: expected a mapping of segment -> [t_pass, t_block]")
        policy = cls(
            version=raw["version"],
            t_pass=_as_float(raw["t_pass"], "t_pass"),
            t_block=_as_float(raw["t_block"], "t_block"),
            created_at=raw.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
            segment_by=raw.get("segment_by"),
            segments={str(k): _as_pair(v, f"segments[{k!r}]") for k, v in segments.items()},
            rules=[Rule.from_dict(r, f"rules[{i}]") for i, r in enumerate(raw.get("rules") or [])],
            qa_sample_rate=_as_float(raw.get("qa_sample_rate", 0.02), "qa_sample_rate"),
            targets=dict(raw.get("targets") or {}),
            provisional=bool(raw.get("provisional", False)),
            guarantee=dict(raw.get("guarantee") or {}),
        )
        return policy.validate()


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _as_pair(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name}: expected [t_pass, t_block]")
    return _as_float(value[0], f"{name}.t_pass"), _as_float(value[1], f"{name}.t_block")


def _check_pair(t_pass: Any, t_block: Any, pass_name: str, block_name: str) -> None:
    for value, name in ((t_pass, pass_name), (t_block, block_name)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: {value!r} is not a finite number")
    if not 0.0 <= t_pass < 1.0:
        raise ValueError(f"{pass_name}: {t_pass!r} is not in [0, 1)")
    if not 0.0 < t_block <= 1.0:
        raise ValueError(f"{block_name}: {t_block!r} is not in (0, 1]")
    if not t_pass < t_block:
        raise ValueError(f"{block_name}: {t_block!r} must be greater than {pass_name} {t_pass!r}")


# --- storage in a bundle directory -------------------------------------------------------------------


def next_policy_version(bundle_dir: str | Path, now: datetime | None = None) -> str:
    """'policy-YYYYMMDDTHHMMSS-<n>', n one more than any version kept in the bundle (so it increases)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    history = Path(bundle_dir) / POLICY_HISTORY_DIR
    counters = (
        [int(p.stem.rsplit("-", 1)[1]) for p in history.glob("policy-*-*.json") if p.stem.rsplit("-", 1)[1].isdigit()]
        if history.is_dir()
        else []
    )
    return f"policy-{stamp}-{max(counters, default=0) + 1}"


def save_policy(bundle_dir: str | Path, policy: Policy) -> Path:
    """Write `policies/<version>.json` (never overwriting another policy) and `policy.json`, then the
    bundle manifest. Returns the path of the versioned file.

    A bundle that already has a manifest must still match it: re-signing would bless files that were
    tampered with since the bundle was written.
    """
    bundle_dir = Path(bundle_dir)
    policy.validate()
    if (bundle_dir / MANIFEST).exists():
        verify_manifest(bundle_dir)
    text = json.dumps(policy.to_dict(), indent=2, sort_keys=True)
    history = bundle_dir / POLICY_HISTORY_DIR
    history.mkdir(parents=True, exist_ok=True)
    versioned = history / f"{policy.version}.json"
    if versioned.exists() and versioned.read_text() != text:
        raise ValueError(f"version: policy {policy.version} already exists in {bundle_dir} with other content")
    _atomic_write(versioned, text)
    _atomic_write(bundle_dir / POLICY_FILE, text)
    write_manifest(bundle_dir)
    return versioned


def load_policy(bundle_dir: str | Path) -> Policy:
    path = Path(bundle_dir) / POLICY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"bundle {bundle_dir}: no {POLICY_FILE}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    return Policy.from_dict(raw)


def policy_versions(bundle_dir: str | Path) -> list[str]:
    """Every policy version kept in the bundle, oldest first."""
    history = Path(bundle_dir) / POLICY_HISTORY_DIR
    files = history.glob("*.json") if history.is_dir() else []
    return [p.stem for p in sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
