"""The words a reviewer reads: signals (model features, product matches) and rules in plain language, and
the policy (SOP) excerpt of each violation reason.

A decision logs its reasons as feature names and values (`log_price_vs_category = -2.48`); a reviewer
needs "price is 12x below the category's typical price". `ReasonCatalogue` turns one into the other from
configs/reasons.yaml; a name it has no entry for is still written as words from the name itself
("seller score", never `seller_score_code`), so a new feature degrades to plain but readable text.
`PolicyExcerpts` reads configs/policy_excerpts.yaml: the policy text a reviewer sees next to each
violation reason they can choose. Both files are checked when loaded: a missing field or an unknown
value format stops the service with the file and the entry named.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from decision.rules import Rule
from features.config import DataConfig

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_REASON_CATALOGUE = CONFIGS_DIR / "reasons.yaml"
DEFAULT_POLICY_EXCERPTS = CONFIGS_DIR / "policy_excerpts.yaml"
OTHER_REASON = "other"  # always choosable: a violation no listed reason covers
VALUE_FORMATS = ("count", "flag", "flag_value", "days", "rate", "price", "price_ratio", "number")
_SAME_PRICE_BAND = 1.25  # within this ratio either way, a price is "about the same as" the norm
_CODE_SUFFIX = "_code"


class ReviewTextError(ValueError):
    """A reason catalogue or policy excerpt file that cannot be used, naming the file and the entry."""


@dataclass(frozen=True)
class SignalText:
    """One catalogue entry: the sentence, how `{value}` is written, and the listing column `{listing}` reads."""

    text: str
    value: str = "number"
    column: str | None = None


def _load_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReviewTextError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ReviewTextError(f"{what} {path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ReviewTextError(f"{what} {path}: expected a mapping at the top level")
    return raw


def _entries(raw: dict[str, Any], key: str, path: Path, what: str) -> dict[str, Any]:
    entries = raw.get(key)
    if not isinstance(entries, dict) or not entries:
        raise ReviewTextError(f"{what} {path}: `{key}` must map names to entries")
    return entries


class ReasonCatalogue:
    """Signal name -> the words a reviewer reads (`describe`)."""

    def __init__(self, signals: Mapping[str, SignalText]) -> None:
        self.signals = dict(signals)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_REASON_CATALOGUE) -> ReasonCatalogue:
        path = Path(path)
        what = "reason catalogue"
        entries = _entries(_load_yaml(path, what), "features", path, what)
        return cls({str(name): _signal(entry, f"{what} {path}: features.{name}") for name, entry in entries.items()})

    def __contains__(self, name: object) -> bool:
        return name in self.signals

    def describe(self, reason: Mapping[str, Any], listing: Mapping[str, Any]) -> str:
        """One logged reason ({"feature": ..., "value": ..., ...}) in words, for this listing."""
        name = str(reason.get("feature", ""))
        signal = self.signals.get(name) or _fallback(name)
        fields: dict[str, str] = {k: _field_text(k, v) for k, v in reason.items() if k not in ("feature", "value")}
        fields["value"] = format_value(reason.get("value"), signal.value)
        if signal.column is not None:
            fields["listing"] = _plain(listing.get(signal.column))
        return signal.text.format_map(_Unknown(fields))


def _signal(entry: Any, where: str) -> SignalText:
    """One catalogue entry, checked: a usable `text` template, a known value format, the column it reads."""
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str) or not entry["text"].strip():
        raise ReviewTextError(f"{where}: needs a non-empty `text`")
    unknown = sorted(set(entry) - {"text", "value", "column"})
    if unknown:
        raise ReviewTextError(f"{where}: unknown keys {unknown} (text, value, column)")
    value = entry.get("value", "number")
    if value not in VALUE_FORMATS:
        raise ReviewTextError(f"{where}.value: {value!r} is not one of {list(VALUE_FORMATS)}")
    try:
        entry["text"].format_map(_Unknown())
    except (ValueError, IndexError, AttributeError) as exc:
        raise ReviewTextError(f"{where}.text: not a usable template ({exc}); write fields as {{value}}") from exc
    column = entry.get("column")
    if "{listing}" in entry["text"] and not column:
        raise ReviewTextError(f"{where}: `{{listing}}` needs the `column` it reads")
    return SignalText(entry["text"].strip(), value, column)


class _Unknown(dict[str, str]):
    """Fields a reason lacks read as 'unknown' rather than failing the whole page."""

    def __missing__(self, key: str) -> str:
        return "unknown"


def _fallback(name: str) -> SignalText:
    """Words for a signal the catalogue does not know: its name as words, with the listing's own value
    for a category code."""
    if name.endswith(_CODE_SUFFIX) and len(name) > len(_CODE_SUFFIX):
        column = name[: -len(_CODE_SUFFIX)]
        return SignalText(f"the {_words(column)}: {{listing}}", column=column)
    return SignalText(f"{_words(name) or 'an unnamed signal'}: {{value}}")


def _words(name: str) -> str:
    return re.sub(r"[_\W]+", " ", name).strip()


def _plain(value: Any) -> str:
    if value is None or value == "":
        return "not given"
    return str(value)


def _field_text(key: str, value: Any) -> str:
    if key == "similarity" and isinstance(value, (int, float)):
        return f"{100 * value:.0f}%"
    return _plain(value)


def format_value(value: Any, kind: str) -> str:
    """A feature value as a reviewer reads it (see configs/reasons.yaml for the formats)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "unknown"
    number = float(value)
    if kind == "count":
        return f"{number:.0f}"
    if kind == "flag_value":
        return "yes" if number >= 0.5 else "no"
    if kind == "flag":
        return ""
    if kind == "days":
        return f"{number:.0f} day{'s' if round(number) != 1 else ''}"
    if kind == "rate":
        return f"{100 * number:.0f}%"
    if kind == "price":
        return f"{math.expm1(number):.2f}"
    if kind == "price_ratio":
        return price_ratio_words(math.exp(number))
    return f"{number:g}"


def price_ratio_words(ratio: float) -> str:
    """'12x below', '3.0x above' or 'about the same as' for a price / norm ratio."""
    if not math.isfinite(ratio) or ratio <= 0:
        return "not comparable to"
    if 1 / _SAME_PRICE_BAND <= ratio <= _SAME_PRICE_BAND:
        return "about the same as"
    factor = 1 / ratio if ratio < 1 else ratio
    shown = f"{factor:.0f}" if factor >= 10 else f"{factor:.1f}"
    return f"{shown}x {'below' if ratio < 1 else 'above'}"


def rule_in_words(rule: Rule) -> str:
    """What a rule checks, as a reviewer reads it."""
    if rule.kind == "term":
        return f"{' or '.join(rule.fields)} contains any of: {', '.join(rule.terms)}"
    if rule.kind == "category":
        return f"{rule.column} is one of: {', '.join(rule.values)}"
    if rule.kind == "range":
        low = f"at least {rule.min:g}" if rule.min is not None else ""
        high = f"below {rule.max:g}" if rule.max is not None else ""
        return f"{rule.column} is {' and '.join(b for b in (low, high) if b)}"
    if rule.kind == "match":
        found = {"repost": "a re-post of a rejected listing", "catalogue": "a known catalogue product"}
        return "product identification found " + " or ".join(found.get(v, v) for v in rule.values)
    return " and ".join(rule_in_words(condition) for condition in rule.all)


@dataclass(frozen=True)
class PolicyExcerpt:
    reason: str
    title: str
    section: str
    text: str


class PolicyExcerpts:
    """Violation reason -> the policy excerpt a reviewer reads before choosing it."""

    def __init__(self, excerpts: Mapping[str, PolicyExcerpt]) -> None:
        self.excerpts = dict(excerpts)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_POLICY_EXCERPTS) -> PolicyExcerpts:
        path = Path(path)
        what = "policy excerpts"
        excerpts = {}
        for reason, entry in _entries(_load_yaml(path, what), "reasons", path, what).items():
            where = f"{what} {path}: reasons.{reason}"
            if not isinstance(entry, dict):
                raise ReviewTextError(f"{where}: expected title, section and text")
            missing = [k for k in ("title", "section", "text") if not isinstance(entry.get(k), str) or not entry[k]]
            if missing:
                raise ReviewTextError(f"{where}: needs a non-empty {', '.join(missing)}")
            excerpts[str(reason)] = PolicyExcerpt(str(reason), entry["title"], entry["section"], entry["text"].strip())
        if OTHER_REASON not in excerpts:
            raise ReviewTextError(f"{what} {path}: needs an excerpt for `{OTHER_REASON}` (always choosable)")
        return cls(excerpts)

    def get(self, reason: str) -> PolicyExcerpt | None:
        return self.excerpts.get(reason)


def violation_reasons(config: DataConfig | None, excerpts: PolicyExcerpts) -> list[str]:
    """The reasons a reviewer can give for a rejection: those the serving bundle's data config groups into
    tiers, those the policy excerpts describe, and `other`; in that order, each once."""
    tiered = [reason for tier in config.tiers for reason in tier.reasons] if config is not None else []
    return list(dict.fromkeys([*tiered, *excerpts.excerpts, OTHER_REASON]))


@dataclass(frozen=True)
class ReviewTexts:
    """What the console and the verdict check read, loaded once when the service starts."""

    catalogue: ReasonCatalogue
    excerpts: PolicyExcerpts

    @classmethod
    def load(cls, catalogue: str | Path, excerpts: str | Path) -> ReviewTexts:
        return cls(ReasonCatalogue.load(catalogue), PolicyExcerpts.load(excerpts))

    def violation_reasons(self, config: DataConfig | None) -> list[str]:
        """The reasons a reviewer can give under the serving bundle's data config (`violation_reasons`)."""
        return violation_reasons(config, self.excerpts)

    def rejection_problem(self, config: DataConfig | None, verdict: str, violation_reason: str | None) -> str | None:
        """Why a verdict's violation reason is refused under that config (`rejection_reason_problem`)."""
        return rejection_reason_problem(verdict, violation_reason, self.violation_reasons(config))


def rejection_reason_problem(verdict: str, violation_reason: str | None, choosable: list[str]) -> str | None:
    """Why a verdict's violation reason is refused (None: accepted). A rejection must give one of the
    reasons a reviewer can choose (`violation_reasons`), so its statement of reasons always says why; an
    approval gives none (exported as a label 0 with a reason, it would tell retraining a violation type
    for a listing found clean)."""
    if verdict != "reject":
        return "an approval has no violation_reason" if violation_reason else None
    if not violation_reason:
        return f"a reject needs a violation_reason, one of {choosable}"
    if violation_reason not in choosable:
        return f"{violation_reason!r} is not a violation reason of this policy; one of {choosable}"
    return None
