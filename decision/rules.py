"""Policy rules and the one rule matcher.

A rule is data: a term rule matches any of its terms as a whole word (case-insensitive) in some text
fields; a category rule matches listings whose normalised category is one of its values; a range rule
matches listings whose number in a column lies in [min, max); an "all" rule is a conjunction of such
conditions (what mined rules such as "brand Rolex and price under 900" need); a match rule matches
listings whose product identification (`features.identify`) found a match of one of its sources
("repost", "catalogue"), read from the derived text column `product_match`. Every caller
(the service, offline scoring, the simulator, threshold selection) matches rules through
`match_rules_on_texts`, on listings given as text columns ("" where missing); `match_rules` is the same
for a DataFrame.

A rule has a mode: an `enforce` rule acts (block or review); a `shadow` rule is matched on every
decision and its hits are logged, but it never changes one. A disabled rule (`enabled=False`) is kept in
the policy and not matched at all. `version` counts the changes of one rule (1 when added; the policy
API bumps it on each change of that rule). `match_rules_split` runs the matcher once over the enforce
and shadow rules together and splits the hits afterwards.

A term rule has one pattern definition, run by whichever regex engine suits the number of listings:
RE2 (pyarrow) over a whole column is about ten times faster than Python's `re` text by text, but pyarrow
compiles its pattern on every call (about 1 ms per rule and column for ASCII text, several ms with the
Unicode classes), which would dominate the time of one listing. So below `COLUMNAR_RULES_MIN` listings
the same pattern runs precompiled in Python's `re`; tests hold the two dialects to the same answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from functools import cached_property, lru_cache
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.identify import MATCH_SOURCES, PRODUCT_MATCH
from features.lexicon import normalize_category

RULE_ACTIONS = ("block", "review")
RULE_KINDS = ("term", "category", "range", "all", "match")
# The keys of a condition inside an "all" rule: a rule's keys without name and action (and no nesting).
CONDITION_KEYS = ("kind", "terms", "fields", "column", "values", "min", "max")
# what each kind of condition reads (`Rule`)
KIND_READS: dict[str, tuple[str, ...]] = {
    "term": ("terms", "fields"),
    "category": ("column", "values"),
    "range": ("column", "min", "max"),
    "match": ("values",),
    "all": ("all",),
}
# terms of one term rule: one search of 1,000 60-character terms takes about 5 ms per text field of a listing,
# and the whole-column engine's pattern for ~10,000 such terms is more than RE2 compiles (`check_compiles`)
MAX_RULE_TERMS = 1_000
MAX_RULE_NAME = 128  # what /v1/policy/rules/{name} takes
RULE_MODES = ("enforce", "shadow")
# Columns the service derives for every listing before rules run (not sent by callers)
DERIVED_COLUMNS = frozenset({PRODUCT_MATCH})
COLUMNAR_RULES_MIN = 32  # from this many listings, term rules run in RE2 over whole columns

TextColumn: TypeAlias = pa.Array | Sequence[str]  # one text column of a batch of listings, "" where missing


@dataclass
class Rule:
    """A policy rule. kind "term": any of `terms` as a whole word (case-insensitive) in `fields`;
    kind "category": `column` (normalised like 'Health & Supplements' -> 'health supplements') is one
    of `values`; kind "range": the number in `column` is in [`min`, `max`) (either bound may be left
    out; a missing, non-numeric or non-finite value never matches); kind "all": every condition of `all`
    matches (each a term, category, range or match condition, without name or action); kind "match":
    product identification found a match from one of `values` (a non-empty subset of MATCH_SOURCES),
    read from the derived column `product_match`. action "block" sends
    matches to auto_block, "review" to human_review. Only an enabled `enforce` rule acts; an enabled
    `shadow` rule is matched and logged only; `version` counts its changes."""

    name: str
    action: str
    kind: str
    terms: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    column: str | None = None
    values: list[str] = field(default_factory=list)
    min: float | None = None
    max: float | None = None
    all: list[Rule] = field(default_factory=list)
    mode: str = "enforce"
    enabled: bool = True
    version: int = 1

    @property
    def acts(self) -> bool:
        """Whether this rule changes decisions (enabled and enforced)."""
        return self.enabled and self.mode == "enforce"

    @property
    def shadows(self) -> bool:
        """Whether this rule is matched and logged without acting (enabled, in shadow mode)."""
        return self.enabled and self.mode == "shadow"

    def validate(self, where: str = "rule") -> None:
        """Check the whole rule; ValueError("<where>.<field>: <problem>"). A blank name (empty or only
        whitespace) is refused: the name is how a rule is changed, logged and shown."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"{where}.name: must be a non-empty string (not only whitespace)")
        if self.action not in RULE_ACTIONS:
            raise ValueError(f"{where}.action: {self.action!r} is not one of {list(RULE_ACTIONS)}")
        if self.mode not in RULE_MODES:
            raise ValueError(f"{where}.mode: {self.mode!r} is not one of {list(RULE_MODES)}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"{where}.enabled: {self.enabled!r} is not true or false")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"{where}.version: {self.version!r} is not a whole number >= 1")
        self.validate_condition(where)

    def validate_condition(self, where: str = "rule") -> None:
        """Check the kind and what it needs (name and action aside: a condition of an "all" rule has neither)."""
        if self.kind not in RULE_KINDS:
            raise ValueError(f"{where}.kind: {self.kind!r} is not one of {list(RULE_KINDS)}")
        if self.kind == "term":
            if not self.terms or not all(isinstance(t, str) and t.strip() for t in self.terms):
                raise ValueError(f"{where}.terms: a term rule needs a list of non-empty strings")
            if not self.fields or not all(isinstance(f, str) and f for f in self.fields):
                raise ValueError(f"{where}.fields: a term rule needs the text fields to search")
        elif self.kind == "category":
            if not isinstance(self.column, str) or not self.column:
                raise ValueError(f"{where}.column: a category rule needs the column to compare")
            if not self.values or not all(isinstance(v, str) for v in self.values):
                raise ValueError(f"{where}.values: a category rule needs a list of values")
        elif self.kind == "range":
            _validate_range(self, where)
        elif self.kind == "match":
            if (
                not self.values
                or not set(self.values) <= set(MATCH_SOURCES)
                or len(set(self.values)) != len(self.values)
            ):
                raise ValueError(f"{where}.values: a match rule needs distinct sources from {list(MATCH_SOURCES)}")
        elif self.kind == "all":
            if not self.all:
                raise ValueError(f"{where}.all: an 'all' rule needs a non-empty list of conditions")
            for i, condition in enumerate(self.all):
                if condition.kind == "all":
                    raise ValueError(f"{where}.all[{i}].kind: an 'all' rule's conditions cannot nest another 'all'")
                condition.validate_condition(f"{where}.all[{i}]")

    def to_dict(self) -> dict[str, Any]:
        raw = {k: v for k, v in asdict(self).items() if k != "all" and v not in (None, [])}
        if self.all:
            raw["all"] = [condition.condition_dict() for condition in self.all]
        return raw

    def condition_dict(self) -> dict[str, Any]:
        """The rule's condition alone (its kind and what the kind reads): an "all" rule's entry."""
        raw = self.to_dict()
        return {k: raw[k] for k in (*CONDITION_KEYS, "all") if k in raw}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "rule") -> Rule:
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - _RULE_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}")
        rule = cls(
            name=raw.get("name", ""),
            action=raw.get("action", ""),
            **_condition_fields(raw, where),
            mode=raw.get("mode", "enforce"),
            enabled=raw.get("enabled", True),
            version=raw.get("version", 1),
        )
        rule.validate(where)
        return rule

    @classmethod
    def condition_from_dict(cls, raw: Any, where: str) -> Rule:
        """One condition of an "all" rule: a rule dict without name or action."""
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(CONDITION_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (a condition of an 'all' rule has no name or action)")
        condition = cls(name="", action="", **_condition_fields(raw, where))
        condition.validate_condition(where)
        return condition

    @property
    def columns(self) -> list[str]:
        """The listing columns this rule reads."""
        if self.kind == "all":
            return list(dict.fromkeys(c for condition in self.all for c in condition.columns))
        if self.kind == "match":
            return [PRODUCT_MATCH]
        if self.kind in ("category", "range"):
            return [self.column] if self.column else []
        return list(self.fields)

    def match(self, listings: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the listings this rule matches (vectorised; absent columns match nothing)."""
        return self.match_texts(_text_columns(listings, self.columns), len(listings))

    def match_texts(self, texts: Mapping[str, TextColumn], n: int) -> np.ndarray:
        """`match` on the rule's columns given as text ("" where missing), for `n` listings: text by text
        in Python's `re` for a few listings, columnar (RE2) from `COLUMNAR_RULES_MIN` on."""
        if self.kind == "all":  # each condition picks its own dialect by `n`, so both dialects agree here too
            mask = np.ones(n, dtype=bool)
            for condition in self.all:
                mask &= condition.match_texts(texts, n)
            return mask
        if self.kind == "match":  # the sources found, space-separated: a term match on that column
            as_terms = Rule(
                name=self.name, action=self.action, kind="term", terms=list(self.values), fields=[PRODUCT_MATCH]
            )
            return as_terms.match_texts(texts, n)
        if n < COLUMNAR_RULES_MIN:
            return np.array(self._hits_one_by_one(texts, n), dtype=bool).reshape(n)
        mask = np.zeros(n, dtype=bool)
        if self.kind == "category":
            values = texts.get(self.column or "")
            return mask if values is None else _category_mask(values, _normalized_values(tuple(self.values)))
        if self.kind == "range":
            values = texts.get(self.column or "")
            return mask if values is None else _in_range(_numbers_columnar(values), self.min, self.max)
        for column in self.fields:
            if column in texts:
                mask |= _term_mask(texts[column], tuple(self.terms))
        return mask

    def _hits_one_by_one(self, texts: Mapping[str, TextColumn], n: int) -> list[bool]:
        if self.kind == "category":
            values = texts.get(self.column or "")
            wanted = _normalized_values(tuple(self.values))
            return [False] * n if values is None else [normalize_category(v) in wanted for v in _texts(values)]
        if self.kind == "range":
            values = texts.get(self.column or "")
            if values is None:
                return [False] * n
            numbers = np.array([_number(v) for v in _texts(values)], dtype=np.float64).reshape(n)
            return _in_range(numbers, self.min, self.max).tolist()
        pattern = _term_pattern(tuple(self.terms))
        columns = [_texts(texts[c]) for c in self.fields if c in texts]
        return [any(pattern.search(column[i]) for column in columns) for i in range(n)]


_RULE_KEYS = frozenset(f.name for f in dataclass_fields(Rule))


def _condition_fields(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The condition part of a rule dict as `Rule` fields (bounds and conditions parsed, not yet validated)."""
    conditions = raw.get("all")
    if conditions is not None and not isinstance(conditions, list):
        raise ValueError(f"{where}.all: expected a list of conditions, got {type(conditions).__name__}")
    return {
        "kind": raw.get("kind", ""),
        "terms": _listed(raw, "terms", where),
        "fields": _listed(raw, "fields", where),
        "column": raw.get("column"),
        "values": _listed(raw, "values", where),
        "min": raw.get("min"),
        "max": raw.get("max"),
        "all": [Rule.condition_from_dict(c, f"{where}.all[{i}]") for i, c in enumerate(conditions or [])],
    }


def _listed(raw: dict[str, Any], key: str, where: str) -> list[Any]:
    """A rule's list field; a string or any other non-list is refused (`list("abc")` would take each
    letter for a term)."""
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}.{key}: expected a list, got {type(value).__name__} {value!r}")
    return list(value)


def _validate_range(rule: Rule, where: str) -> None:
    if not isinstance(rule.column, str) or not rule.column:
        raise ValueError(f"{where}.column: a range rule needs the numeric column to compare")
    for name, bound in (("min", rule.min), ("max", rule.max)):
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound)
        ):
            raise ValueError(f"{where}.{name}: {bound!r} is not a finite number")
    if rule.min is None and rule.max is None:
        raise ValueError(f"{where}.min: a range rule needs min, max or both")
    if rule.min is not None and rule.max is not None and not rule.min < rule.max:
        raise ValueError(f"{where}.max: {rule.max!r} must be greater than min {rule.min!r}")


def check_new_rule(rule: Rule, where: str, roles: Mapping[str, Sequence[str]], max_chars: Mapping[str, int]) -> None:
    """What a rule being written (a policy change) or tested (a backtest) must also pass, beyond
    `Rule.validate`, which every stored policy passes when it loads (so none of these, added later, can make
    a stored policy unservable): ValueError("<where>.<field>: <problem>") for

    - a name /v1/policy/rules/{name} cannot address (over MAX_RULE_NAME characters, a '/', or spaces at
      either end): such a rule could only be changed by replacing every rule;
    - a field its kind does not read (a term rule with a `column` reads like "the term in that column" but
      searches its `fields` alone), in the rule and in each condition of an "all" rule;
    - more than MAX_RULE_TERMS terms in a term condition;
    - and what `check_matchable` refuses: a rule that could never match, or whose terms cannot compile.
    """
    if len(rule.name) > MAX_RULE_NAME or "/" in rule.name or rule.name != rule.name.strip():
        raise ValueError(
            f"{where}.name: {rule.name[:40]!r}{'...' if len(rule.name) > 40 else ''} must be at most "
            f"{MAX_RULE_NAME} characters, with no '/' and no leading or trailing whitespace"
        )
    for at, condition in [(where, rule), *_conditions(rule, where)]:
        for key in (*CONDITION_KEYS[1:], "all"):
            if key not in KIND_READS[condition.kind] and getattr(condition, key) not in (None, []):
                raise ValueError(
                    f"{at}.{key}: a {condition.kind} rule does not read {key} (it reads "
                    f"{', '.join(KIND_READS[condition.kind])}); leave it out"
                )
        if condition.kind == "term" and len(condition.terms) > MAX_RULE_TERMS:
            raise ValueError(
                f"{at}.terms: {len(condition.terms):,} terms; a term rule takes at most {MAX_RULE_TERMS:,} (every "
                "listing is searched for each of them while it is scored)"
            )
    check_matchable(rule, where, roles, max_chars)


def check_matchable(rule: Rule, where: str, roles: Mapping[str, Sequence[str]], max_chars: Mapping[str, int]) -> None:
    """ValueError("<where>.<field>: <problem>") for a rule that could never match a listing of a data
    config, which the matcher alone would take silently (matching nothing):

    - a range condition on a column that does not hold numbers: `roles` gives the roles of each listing
      column (`DataConfig.column_roles`: "text", "categorical", "numeric", "id", ...), and only a
      "numeric" one holds numbers; a derived column (`product_match`) holds text;
    - a term condition with a term longer than the longest text any of its fields can carry: `max_chars`
      gives, per column, the most characters a listing may carry there (a column not in it has no limit,
      and neither has a term rule that searches one). The length compared is the term's shortest match,
      its words joined by one space (words match across any run of whitespace).
    """
    roles = {**{column: ["derived text"] for column in DERIVED_COLUMNS}, **roles}
    for at, condition in _conditions(rule, where) or [(where, rule)]:
        if condition.kind == "range":
            column_roles = roles.get(condition.column or "")
            if column_roles and "numeric" not in column_roles:  # a column listings lack is refused elsewhere
                numeric = [c for c, r in roles.items() if "numeric" in r]
                raise ValueError(
                    f"{at}.column: {condition.column!r} is a {column_roles[0]} column; a range rule compares "
                    f"numbers, so it needs a numeric column (this bundle's: {numeric})"
                )
        elif condition.kind == "category":
            column_roles = roles.get(condition.column or "")
            if column_roles and "numeric" in column_roles:
                raise ValueError(
                    f"{at}.column: {condition.column!r} is a numeric column; a category rule compares its text "
                    "with `values` (a band of numbers is a range rule: min, max)"
                )
            if any(not value.strip() for value in condition.values):
                raise ValueError(f"{at}.values: a blank value never matches (a missing value is never compared)")
        elif condition.kind == "term":
            check_compiles(condition, at)
            limits = [max_chars.get(column) for column in condition.fields]
            if not limits or None in limits:
                continue
            longest = max(limit for limit in limits if limit is not None)
            for j, term in enumerate(condition.terms, 1):
                length = len(" ".join(term.split()))
                if length > longest:
                    raise ValueError(
                        f"{at}.terms: term {j} is {length:,} characters, longer than any text of "
                        f"{condition.fields} can be (at most {longest:,} characters): it could never match"
                    )


# A listing's number as text (what `_text_columns` and the service's `cell_text` write): plain decimal
# notation, ASCII digits, no spaces. Anything else (blank, "n/a", "1_000", " 3") is not a number, and the
# two dialects agree because both test this one pattern before converting.
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUMBER_RE = re.compile(_NUMBER)


def _number(text: str) -> float:
    """The number a text cell holds; NaN when it holds none."""
    return float(text) if _NUMBER_RE.fullmatch(text) else math.nan


def _numbers_columnar(column: TextColumn) -> np.ndarray:
    """`_number` of a whole column: the pattern in RE2, then one numpy conversion of the texts that pass."""
    arrow = column if isinstance(column, pa.Array) else pa.array(column, type=pa.large_string())
    valid = pc.fill_null(pc.match_substring_regex(arrow, rf"^{_NUMBER}$"), False).to_numpy(zero_copy_only=False)
    numbers = np.full(len(arrow), np.nan)
    if valid.any():
        texts = arrow.filter(pa.array(valid)).to_numpy(zero_copy_only=False)
        numbers[valid] = texts.astype(str).astype(np.float64)
    return numbers


def _in_range(numbers: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """[low, high) on finite numbers; NaN and infinities never match."""
    mask = np.isfinite(numbers)
    if low is not None:
        mask &= numbers >= low
    if high is not None:
        mask &= numbers < high
    return mask


def _texts(column: TextColumn) -> Sequence[str]:
    return column.to_pylist() if isinstance(column, pa.Array) else column


def _category_mask(values: TextColumn, wanted: frozenset[str]) -> np.ndarray:
    """Categories are normalised once per distinct value, found by hashing (arrow's dictionary encoding,
    or pandas' factorize for Python text) rather than by sorting the column. A missing value is compared
    as its text ("None", "nan"), as `str` spells it."""
    if isinstance(values, pa.Array):
        encoded = values.dictionary_encode(null_encoding="encode")
        uniques: Sequence[Any] = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
    else:
        codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    hit = np.fromiter((normalize_category(str(u)) in wanted for u in uniques), dtype=bool, count=len(uniques))
    return hit[codes].reshape(-1)


def _conditions(rule: Rule, where: str) -> list[tuple[str, Rule]]:
    """An "all" rule's conditions with where each stands ("<where>.all[i]"); [] for any other rule."""
    return [(f"{where}.all[{i}]", c) for i, c in enumerate(rule.all)] if rule.kind == "all" else []


def check_compiles(rule: Rule, where: str) -> None:
    """ValueError("<where>.terms: ...") when a term rule's whole-column pattern is larger than RE2 compiles:
    scoring a batch with it would fail, and every listing of the batch would go to review (fail safe)."""
    try:
        pc.match_substring_regex(pa.array([""], type=pa.large_string()), _term_pattern_re2(tuple(rule.terms)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(
            f"{where}.terms: the {len(rule.terms):,} terms ({sum(map(len, rule.terms)):,} characters) make a pattern "
            f"too large to match ({exc}); use fewer or shorter terms"
        ) from exc


@lru_cache(maxsize=256)
def _normalized_values(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(normalize_category(v) for v in values)


def _term_mask(text: TextColumn, terms: tuple[str, ...]) -> np.ndarray:
    """Where any of `terms` occurs as a whole word in a column, in RE2 (see the module docstring)."""
    arrow = text if isinstance(text, pa.Array) else pa.array(text, type=pa.large_string())
    ascii_text = bool(pc.all(pc.string_is_ascii(arrow)).as_py())
    return pc.match_substring_regex(arrow, _term_pattern_re2(terms, ascii_text)).to_numpy(zero_copy_only=False)


@lru_cache(maxsize=256)
def _term_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words without \b, so terms that start or end with punctuation ("c++") still match.
    alternatives = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


# The same match in RE2, for whole columns. RE2 has no lookbehind, so the word edges are consumed instead
# (fine for "contains"), and Python's Unicode \w and \s are spelled out...
_NOT_WORD = r"[^\p{L}\p{N}_]"
_SPACES = r"[\s\x{0b}\p{Z}\x{85}\x{1c}-\x{1f}]+"
# ... and so are their ASCII parts, which match ASCII text exactly alike. pyarrow compiles the pattern on
# every call, and the Unicode classes make that several times dearer: a column that is all ASCII, as most
# are, gets the ASCII pattern.
_NOT_WORD_ASCII = r"[^A-Za-z0-9_]"
_SPACES_ASCII = r"[\t\n\x{0b}\f\r \x{1c}-\x{1f}]+"


@lru_cache(maxsize=256)
def _term_pattern_re2(terms: tuple[str, ...], ascii_text: bool = False) -> str:
    """RE2 twin of `_term_pattern`; `ascii_text=True` gives a pattern valid only for ASCII text."""
    not_word, spaces = (_NOT_WORD_ASCII, _SPACES_ASCII) if ascii_text else (_NOT_WORD, _SPACES)
    alternatives = "|".join(
        spaces.join(_DOTTED_I.sub(_ANY_I, re.escape(w)) for w in t.split())
        for t in sorted(terms, key=len, reverse=True)
    )
    return rf"(?i)(?:^|{not_word})(?:{alternatives})(?:{not_word}|$)"


# Python's re, case-insensitive, takes i, I, İ (dotted capital) and ı (dotless small) for one another; RE2's
# case folding pairs only i and I. Every one of them in a term is spelled as the four (letters are never
# escaped, so each is a literal here), and "İvory" is a match for "ivory" on both paths.
_DOTTED_I = re.compile("[iIİı]")
_ANY_I = "[iIİı]"


def _text_columns(listings: pd.DataFrame, columns: Sequence[str]) -> dict[str, TextColumn]:
    """The listed columns that exist, as arrow text ("" where missing)."""
    return {
        c: pa.array(listings[c].astype("string").fillna(""), type=pa.large_string()) for c in columns if c in listings
    }


def match_rules(
    listings: pd.DataFrame, rules: Sequence[Rule | dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """(block_mask, review_mask, matched rule names per listing) of the rules that act (enabled, enforced)."""
    matches = _match_frame(listings, rules)
    return matches.block, matches.review, matches.matched


def match_rule_masks(listings: pd.DataFrame, rules: Sequence[Rule | dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(block_mask, review_mask) of `match_rules`, without the rule names per listing: on a large batch,
    a list per listing costs more than the matching (100k listings, the default rules that read text and
    category: 126-199 ms with the names, 39-41 ms without)."""
    matches = _match_frame(listings, rules)
    return matches.block, matches.review


def acting_rules(rules: Sequence[Rule | dict[str, Any]]) -> list[Rule]:
    """The rules that act (enabled, enforced), parsed where given as dicts."""
    parsed = [raw if isinstance(raw, Rule) else Rule.from_dict(raw, f"rules[{i}]") for i, raw in enumerate(rules)]
    return [rule for rule in parsed if rule.acts]


def _match_frame(listings: pd.DataFrame, rules: Sequence[Rule | dict[str, Any]]) -> RuleMatches:
    acting = acting_rules(rules)
    texts = _text_columns(listings, sorted({c for rule in acting for c in rule.columns}))
    return match_rules_split(texts, len(listings), acting)


def match_rules_on_texts(
    texts: Mapping[str, TextColumn], n: int, rules: Sequence[Rule]
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """`match_rules` for listings given as text columns ("" where missing): the one matching core,
    which the service runs on listing dicts without building a DataFrame. Only the rules that act
    (enabled, enforced) match here; `match_rules_split` also returns the shadow rules' hits."""
    matches = match_rules_split(texts, n, [rule for rule in rules if rule.acts])
    return matches.block, matches.review, matches.matched


class RuleMatches:
    """The rules' hits on a batch: block and review masks of the rules that act (enabled, enforced), and,
    per listing, the names of the acting rules matched (`matched`) and of the enabled shadow rules matched
    (`shadow`, which never set a mask). The names are listed when first asked for."""

    def __init__(self, block: np.ndarray, review: np.ndarray, hits: list[tuple[Rule, np.ndarray]]) -> None:
        self.block, self.review = block, review
        self._hits = hits  # (rule, the rows it matched), in policy order

    @cached_property
    def matched(self) -> list[list[str]]:
        return self._names(acting=True)

    @cached_property
    def shadow(self) -> list[list[str]]:
        return self._names(acting=False)

    def _names(self, *, acting: bool) -> list[list[str]]:
        names: list[list[str]] = [[] for _ in range(len(self.block))]
        for rule, rows in self._hits:
            if rule.acts == acting:
                for row in rows.tolist():
                    names[row].append(rule.name)
        return names


def match_rules_split(texts: Mapping[str, TextColumn], n: int, rules: Sequence[Rule]) -> RuleMatches:
    """One pass of the matcher over every enabled rule (enforce and shadow alike, at the same cost),
    split afterwards: enforce hits set the masks and `matched`, shadow hits go to `shadow` only."""
    block, review = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    hits = []
    for rule in rules:
        if not rule.enabled:
            continue
        mask = rule.match_texts(texts, n)
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        if rule.acts:
            (block if rule.action == "block" else review)[mask] = True
        hits.append((rule, rows))
    return RuleMatches(block, review, hits)
