"""Data contract: which column of a review-outcomes table plays which role.

Only `id` and `label` are always required. Every other role is optional: an absent or empty role
(`text: []`, `merchant: null`, `segments: []`, ...) means "no features of that kind". A table without
timestamps says so with `timestamp: null` plus `time_order: row` (the file's row order is time order).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# Optional column of a labelled export: the chance each row had of getting its label (1 for a reviewed
# listing, the audit rate for an audited automated decision; blank = 1). Training weighs rows by 1 / it.
INCLUSION_PROB = "inclusion_prob"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "data.yaml"

# Feature groups that can be switched off (model selection ablates them; a data config can force one off).
MERCHANT_HISTORY, TEXT_MODEL, LEXICON_HITS = "merchant_history", "text_model", "lexicons"
# A second text score from word + char_wb n-grams: robust to misspellings and short texts, several times
# dearer to compute, so never on by default; model selection tries it where its cost is affordable.
TEXT_CHARS = "text_chars"
FEATURE_GROUPS: tuple[str, ...] = (MERCHANT_HISTORY, TEXT_MODEL, TEXT_CHARS, LEXICON_HITS)
OPT_IN_GROUPS = frozenset({TEXT_CHARS})
TIME_ORDERS = ("timestamp", "row")

_KNOWN_KEYS = (
    "id",
    "merchant",
    "timestamp",
    "time_order",
    "reviewed_at",
    "review_lag_days",
    "label",
    "label_values",
    "text",
    "categorical",
    "numeric",
    "violation_reason",
    "review_seconds",
    "qa_overturned",
    "segments",
    "features",
    "tiers",
    "unassigned_tier",
)


# A text a CSV reader reads as a number: sign, digits (leading zeros too), decimals, exponent
_NUMERAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")  # ASCII digits only


def match_key(value: Any) -> Hashable:
    """How a table's value is matched to a value the config names (a label value, a violation reason): a
    number (or boolean) by its value, a text with surrounding whitespace and case ignored, so an export's
    `' Spam '` is the config's `spam` and `' Counterfeit '` its `counterfeit`.

    A text that is a number as a CSV reader reads one ('1', ' 1.0 ', '01', '1e0') is that number, on
    either side: a Parquet text column of '1'/'0' matches `reject: [1]` as a CSV column of 1.0/0 (read
    as numbers) and a boolean column do, and a configured '1' matches a numeric column. Any other text
    ('yes', 'one', '1,0', 'inf', 'nan', full-width '１', '1e400' past a float's range) stays text and never
    matches a number."""
    if isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating)):
        return ("num", float(value))
    text = str(value).strip()
    if _NUMERAL.fullmatch(text) and math.isfinite(number := float(text)):
        return ("num", number)
    return ("str", text.lower())


def reason_key(value: Any) -> Hashable:
    """How a table's violation reason is matched to a reason a tier lists: as text, surrounding whitespace
    and case ignored (`' Counterfeit '` is `counterfeit`). Reasons are codes, never numbers: '3.1' is not
    '3.10' and '007' is not '7' (so unlike `match_key`), except that a whole number stored as a number is
    its digits (a numeric reason column with a blank reads as floats: 7.0 is the code '7')."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip().casefold()


@dataclass(frozen=True)
class Tier:
    """A group of violation reasons with its own recall target (a policy area: severe, minor, ...).

    Each tier gets its own calibrated risk and its own auto-pass threshold, certified at `recall`."""

    name: str
    reasons: tuple[str, ...]
    recall: float

    def to_dict(self) -> dict[str, Any]:
        return {"reasons": list(self.reasons), "recall": self.recall}


# The marketplace's default policy areas (configs/data.yaml ships the same): a missed counterfeit,
# prohibited item, health claim or uncertified regulated product harms buyers and exposes the platform,
# so 99% of them must reach a person; "other" (off-platform payment notes, wrong category, a reviewer's
# mistaken reject) at 90%.
MARKETPLACE_TIERS: tuple[Tier, ...] = (
    Tier("severe", ("prohibited_item", "counterfeit", "regulated_no_certificate", "misleading_health_claim"), 0.99),
    Tier("minor", ("other",), 0.90),
)


@dataclass(frozen=True)
class DataConfig:
    """Column roles of the historical-outcomes table (see configs/data.yaml).

    The Python defaults fit the built-in generator; a YAML config leaves out what its data lacks.
    `origin` says where the roles came from, for error messages (not part of the contract).
    """

    id: str = "listing_id"
    merchant: str | None = "merchant_id"
    timestamp: str | None = "created_at"
    label: str = "label"
    time_order: str = "timestamp"
    reviewed_at: str | None = "reviewed_at"
    review_lag_days: float = 7.0
    label_reject: tuple[Any, ...] = (1, "1", "reject", "rejected")
    label_approve: tuple[Any, ...] = (0, "0", "approve", "approved")
    text: tuple[str, ...] = ("title", "description", "brand")
    categorical: tuple[str, ...] = ("category", "market")
    numeric: tuple[str, ...] = ("price", "merchant_tenure_days", "image_count", "has_certificate")
    violation_reason: str | None = "violation_reason"
    review_seconds: str | None = "review_seconds"
    qa_overturned: str | None = None
    segments: tuple[str, ...] = ("category", "market")
    features_off: tuple[str, ...] = ()
    # violation reason -> tier (empty: one tier over every violation); a reason not listed (or missing)
    # counts in `unassigned_tier` (default: the first, strictest tier)
    tiers: tuple[Tier, ...] = MARKETPLACE_TIERS
    unassigned_tier: str | None = None
    origin: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check(self)

    @property
    def required_columns(self) -> list[str]:
        """Columns an outcomes table must have: the roles, every feature column and the segments."""
        return list(dict.fromkeys([*self.listing_columns, self.label, *self.segments]))

    @property
    def feature_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.text, *self.categorical, *self.numeric]))

    @property
    def listing_columns(self) -> list[str]:
        """Columns a listing carries at scoring time (no outcome fields), each once."""
        roles = [self.id, self.merchant, self.timestamp]
        return list(dict.fromkeys([c for c in roles if c] + self.feature_columns))

    @property
    def feature_groups(self) -> frozenset[str]:
        """The switchable feature groups this data supports and the config has not switched off.

        Merchant history needs a merchant column and timestamps (with `time_order: row` it is off:
        a listing's creation time, which the point-in-time definition needs, is unknown when scored)."""
        groups = set()
        if self.merchant and self.timestamp:
            groups.add(MERCHANT_HISTORY)
        if self.text:
            groups |= {TEXT_MODEL, TEXT_CHARS, LEXICON_HITS}
        return frozenset(groups - set(self.features_off))

    @property
    def default_feature_groups(self) -> frozenset[str]:
        """The groups a feature builder uses when none are chosen: the available ones minus opt-in groups."""
        return self.feature_groups - OPT_IN_GROUPS

    @property
    def tiered(self) -> bool:
        """Whether violations are split into tiers (needs a violation-reason column and two or more tiers)."""
        return bool(self.violation_reason) and len(self.tiers) > 1

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers] if self.tiered else []

    def tier_of_reason(self) -> dict[str, str]:
        """Each reason a tier lists -> that tier, spelled as the config spells it (`tier_of_reason_key`
        matches a table's reasons)."""
        return {reason: tier.name for tier in self.tiers for reason in tier.reasons}

    def tier_of_reason_key(self) -> dict[Hashable, str]:
        """`reason_key` of each reason a tier lists -> that tier: a table's reason is in the tier whose
        reason it matches with case and surrounding spaces ignored (`' Counterfeit '` is `counterfeit`)."""
        return {reason_key(reason): tier.name for tier in self.tiers for reason in tier.reasons}

    @property
    def fallback_tier(self) -> str:
        """The tier of a violation whose reason no tier lists (or that has none)."""
        return self.unassigned_tier or self.tiers[0].name

    def single_tier(self) -> DataConfig:
        """The same contract with every violation in one tier."""
        return replace(self, tiers=(), unassigned_tier=None)

    def check_segment_by(self, column: str | None) -> None:
        """Refuse thresholds per segment of a column not listed under `segments`: only those columns are
        kept beside the scored rows thresholds are chosen on, so another column would be found missing
        only after the whole fit."""
        if column is None or column in self.segments:
            return
        listed = ", ".join(map(repr, self.segments)) or "no column"
        raise ValueError(
            f"per-segment thresholds by {column!r}: the column must be listed under 'segments' in the data "
            f"config, which lists {listed}; {self.where()}"
        )

    def column_roles(self) -> dict[str, list[str]]:
        """Column -> the roles it plays (a merchant column may also be a categorical feature)."""
        roles: dict[str, list[str]] = {}
        singles = {"id": self.id, "merchant": self.merchant, "timestamp": self.timestamp, "label": self.label}
        for role, column in singles.items():
            if column:
                roles.setdefault(column, []).append(role)
        for role, columns in (("text", self.text), ("categorical", self.categorical), ("numeric", self.numeric)):
            for column in columns:
                roles.setdefault(column, []).append(role)
        for column in self.segments:
            roles.setdefault(column, []).append("segments")
        return roles

    def where(self) -> str:
        """Where these roles came from, for error messages."""
        return self.origin or "the data config was built in code (the CLI reads configs/data.yaml or --config)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "merchant": self.merchant,
            "timestamp": self.timestamp,
            "time_order": self.time_order,
            "reviewed_at": self.reviewed_at,
            "review_lag_days": self.review_lag_days,
            "label": self.label,
            "label_values": {"reject": list(self.label_reject), "approve": list(self.label_approve)},
            "text": list(self.text),
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "violation_reason": self.violation_reason,
            "review_seconds": self.review_seconds,
            "qa_overturned": self.qa_overturned,
            "segments": list(self.segments),
            "features": dict.fromkeys(self.features_off, False),
            "tiers": {t.name: t.to_dict() for t in self.tiers},
            "unassigned_tier": self.unassigned_tier,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str | None = None) -> DataConfig:
        """Roles from a mapping (a YAML data config). Absent optional roles are empty: nothing of the
        generator's marketplace columns is assumed."""
        unknown = sorted(set(raw) - set(_KNOWN_KEYS))
        if unknown:
            raise ValueError(f"data config: unknown keys {unknown}; known keys are {sorted(_KNOWN_KEYS)}")
        if "id" not in raw or "label" not in raw:
            raise ValueError("data config: 'id' and 'label' are required (the columns of the row id and the outcome)")
        if "timestamp" not in raw:
            raise ValueError(
                "data config: 'timestamp' is missing: name the creation-time column, or, for a file "
                "without timestamps whose rows are in time order (oldest first), write `timestamp: null` "
                "and `time_order: row`"
            )
        labels = raw.get("label_values") or {}
        base = cls()
        return cls(
            id=raw["id"],
            merchant=raw.get("merchant"),
            timestamp=raw["timestamp"],
            label=raw["label"],
            time_order=raw.get("time_order", "timestamp"),
            reviewed_at=raw.get("reviewed_at"),
            review_lag_days=float(raw.get("review_lag_days", base.review_lag_days)),
            label_reject=tuple(labels.get("reject", base.label_reject)),
            label_approve=tuple(labels.get("approve", base.label_approve)),
            text=_columns(raw, "text"),
            categorical=_columns(raw, "categorical"),
            numeric=_columns(raw, "numeric"),
            violation_reason=raw.get("violation_reason"),
            review_seconds=raw.get("review_seconds"),
            qa_overturned=raw.get("qa_overturned"),
            segments=_columns(raw, "segments"),
            features_off=_features_off(raw.get("features")),
            tiers=_tiers(raw.get("tiers")),
            unassigned_tier=raw.get("unassigned_tier"),
            origin=origin,
        )


def _columns(raw: dict[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise ValueError(f"data config: '{key}' must be a list of column names, got {value!r}")
    return tuple(value)


def _tiers(value: Any) -> tuple[Tier, ...]:
    """`tiers: {name: {reasons: [...], recall: 0.99}, ...}` (absent or empty: one tier)."""
    if not value:
        return ()
    if not isinstance(value, dict):
        raise ValueError(f"data config: 'tiers' must map tier names to {{reasons: [...], recall: R}}, got {value!r}")
    tiers = []
    for name, spec in value.items():
        where = f"data config: tiers.{name}"
        if not isinstance(spec, dict) or set(spec) - {"reasons", "recall"}:
            raise ValueError(f"{where}: expected {{reasons: [...], recall: R}}, got {spec!r}")
        reasons = spec.get("reasons") or []
        if isinstance(reasons, str):
            reasons = [reasons]
        if not isinstance(reasons, list) or not all(isinstance(r, str) and r for r in reasons):
            raise ValueError(f"{where}.reasons: expected a list of violation reasons, got {reasons!r}")
        recall = spec.get("recall")
        if isinstance(recall, bool) or not isinstance(recall, (int, float)) or not 0.0 < recall < 1.0:
            raise ValueError(f"{where}.recall: {recall!r} must be a number strictly between 0 and 1")
        tiers.append(Tier(str(name), tuple(reasons), float(recall)))
    return tuple(tiers)


def _features_off(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
        raise ValueError(f"data config: 'features' must map feature groups to true/false, got {value!r}")
    unknown = sorted(set(value) - set(FEATURE_GROUPS))
    if unknown:
        raise ValueError(f"data config: unknown feature groups {unknown} under 'features' (known: {FEATURE_GROUPS})")
    return tuple(group for group in FEATURE_GROUPS if value.get(group) is False)


def _check(config: DataConfig) -> None:
    """Refuse contradictory roles with a message that says what to write instead."""
    for key in ("id", "label"):
        if not isinstance(getattr(config, key), str) or not getattr(config, key):
            raise ValueError(f"data config: '{key}' must be a column name")
    for key in ("merchant", "timestamp", "reviewed_at", "violation_reason", "review_seconds", "qa_overturned"):
        value = getattr(config, key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"data config: '{key}' must be a column name or null")
    for key in ("text", "categorical", "numeric", "segments"):
        if not all(isinstance(c, str) and c for c in getattr(config, key)):
            raise ValueError(f"data config: '{key}' must be a list of column names")
    if config.time_order not in TIME_ORDERS:
        raise ValueError(f"data config: 'time_order' is {config.time_order!r}; use one of {list(TIME_ORDERS)}")
    if config.timestamp is None and config.time_order != "row":
        raise ValueError(
            "data config: no timestamp column (timestamp: null): if the file's rows are in time order "
            "(oldest first), add `time_order: row` to split by row order; otherwise name the creation-time column"
        )
    if config.timestamp is not None and config.time_order == "row":
        raise ValueError("data config: `time_order: row` is for files without timestamps: set `timestamp: null`")
    if config.timestamp is None and config.reviewed_at is not None:
        raise ValueError("data config: 'reviewed_at' needs a 'timestamp' column: set `reviewed_at: null`")
    overlap = sorted(set(config.text) & set(config.categorical) | set(config.text) & set(config.numeric))
    overlap += sorted(set(config.categorical) & set(config.numeric))
    if overlap:
        raise ValueError(f"data config: columns {overlap} are listed under more than one of text/categorical/numeric")
    _check_no_bookkeeping_names(config)
    _check_no_outcome_features(config)
    _check_no_envelope_names(config)
    unknown = sorted(set(config.features_off) - set(FEATURE_GROUPS))
    if unknown:
        raise ValueError(f"data config: unknown feature groups {unknown} (known: {list(FEATURE_GROUPS)})")
    _check_tiers(config)


# Roles known only once a listing has been reviewed (and the row's id): never a model input.
OUTCOME_ROLES = ("id", "label", "violation_reason", "reviewed_at", "review_seconds", "qa_overturned")


def _check_no_outcome_features(config: DataConfig) -> None:
    """A column of the review's outcome listed as a feature would teach the model the answer (test ROC-AUC
    1.0) and make every listing sent for scoring carry it: refuse it, naming the role and the list."""
    outcome = {getattr(config, role): role for role in OUTCOME_ROLES if getattr(config, role) is not None}
    outcome.setdefault(INCLUSION_PROB, INCLUSION_PROB)
    for key in ("text", "categorical", "numeric"):
        for column in getattr(config, key):
            if column in outcome:
                role = outcome[column]
                what = "identifies a row and predicts nothing" if role == "id" else "is known only after review"
                raise ValueError(
                    f"data config: column {column!r} is the {role!r} column and is also listed under '{key}': "
                    f"it {what}, so it cannot be a model input; remove it from '{key}'"
                )


# Columns the product writes beside a data config's own: `triage export-labels` beside each verdict (with
# `label_source`, how the label was decided), and `triage score` beside each listing's id (with
# `risk_<tier>` per tier of a tiered bundle).
EXPORT_COLUMNS = ("decision_id", "qa_sample", INCLUSION_PROB, "logged_decision", "corrected", "label_source")
SCORE_COLUMNS = ("risk", "decision", "decision_tier")


def _check_no_bookkeeping_names(config: DataConfig) -> None:
    """A column the config names that has the name of a column the product writes beside it would be
    overwritten there: exported verdicts would carry the bookkeeping value in its place (retraining on a
    text that reads False), and scored files would carry the risk in place of the listing's id. Refuse it
    before anything is trained, naming the column, its role and what to do."""
    named = config.column_roles()
    for role in OUTCOME_ROLES:
        column = getattr(config, role)
        if column is not None:
            named.setdefault(column, []).append(role)
    for column, roles in named.items():
        if column in EXPORT_COLUMNS:
            writer = "`triage export-labels` writes beside each verdict"
        elif "id" in roles and (column in SCORE_COLUMNS or column in {f"risk_{t.name}" for t in config.tiers}):
            writer = "`triage score` writes beside each listing's id"
        else:
            continue
        raise ValueError(
            f"data config: column {column!r} ({', '.join(dict.fromkeys(roles))}) has the name of a column {writer}, "
            "which would overwrite it; rename the column in the data file and in the data config"
        )


# Keys of the scoring API's request envelope beside a listing's own fields (`POST /v1/score` is flat).
ENVELOPE_FIELDS = ("request_id",)


def _check_no_envelope_names(config: DataConfig) -> None:
    """A listing column named like a key of the scoring request's envelope would be read as that key (the
    idempotency key, for `request_id`) and never reach the model: refuse it, naming the column and what
    to do, before anything is trained."""
    for column in config.listing_columns:
        if column in ENVELOPE_FIELDS:
            raise ValueError(
                f"data config: column {column!r} has the name of the scoring request's idempotency key, so a "
                f"listing could not carry it to the model; rename the column in the data file and in the data config"
            )


def _check_tiers(config: DataConfig) -> None:
    names = [t.name for t in config.tiers]
    if len(set(names)) != len(names):
        raise ValueError(f"data config: tier names must be unique, got {names}")
    if not all(n.replace("_", "").isalnum() for n in names):
        raise ValueError(f"data config: tier names must be letters, digits and underscores, got {names}")
    seen: dict[Hashable, tuple[str, str]] = {}  # reason_key -> (reason as written, tier)
    for tier in config.tiers:
        for reason in tier.reasons:
            first, where = seen.setdefault(reason_key(reason), (reason, tier.name))
            if where != tier.name:
                same = (
                    f"reason {reason!r} is" if first == reason else f"reasons {first!r} and {reason!r} (one reason) are"
                )
                raise ValueError(f"data config: {same} in tiers {where!r} and {tier.name!r}")
    if config.unassigned_tier is not None and config.unassigned_tier not in names:
        raise ValueError(f"data config: unassigned_tier {config.unassigned_tier!r} is not one of the tiers {names}")


def load_config(path: str | Path | None = None) -> DataConfig:
    """Read a YAML data config; the default config fits the built-in generator."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.exists():
        raise FileNotFoundError(f"data config not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"data config {path}: expected a mapping of role -> column")
    return DataConfig.from_dict(raw, origin=f"the data config is {_shown(path)}: edit it or pass --config")


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is below it (as a user would type it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
