"""The data config: optional roles, row order for files without timestamps, feature groups, and errors
that say what to write."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.config import DEFAULT_CONFIG_PATH, FEATURE_GROUPS, DataConfig, load_config

MINIMAL = {"id": "message_id", "label": "spam", "timestamp": None, "time_order": "row", "text": ["text"]}


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_default_config_file_is_the_generator_contract() -> None:
    config = load_config()
    assert config == DataConfig()
    assert config.feature_groups == set(FEATURE_GROUPS)


def test_absent_roles_are_empty_not_the_marketplace_columns(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.merchant is None and config.reviewed_at is None
    assert config.categorical == config.numeric == config.segments == ()
    assert config.violation_reason is None and config.review_seconds is None
    assert config.listing_columns == ["message_id", "text"]
    assert config.required_columns == ["message_id", "text", "spam"]
    assert config.feature_groups == {"text_model", "text_chars", "lexicons"}  # no merchant history without time
    assert config.default_feature_groups == {"text_model", "lexicons"}  # the char-gram score is opt-in


def test_missing_timestamp_role_says_what_to_add(tmp_path: Path) -> None:
    raw = {k: v for k, v in MINIMAL.items() if k not in ("timestamp", "time_order")}
    with pytest.raises(ValueError, match="timestamp: null.*time_order: row"):
        load_config(write(tmp_path, raw))
    with pytest.raises(ValueError, match="add `time_order: row`"):
        load_config(write(tmp_path, {**raw, "timestamp": None}))


def test_row_order_excludes_a_timestamp(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set `timestamp: null`"):
        load_config(write(tmp_path, {**MINIMAL, "timestamp": "created_at"}))
    with pytest.raises(ValueError, match="'time_order' is 'rows'"):
        load_config(write(tmp_path, {**MINIMAL, "time_order": "rows"}))


def test_merchant_may_also_be_categorical_and_is_listed_once() -> None:
    config = DataConfig(categorical=("category", "merchant_id"))
    assert config.listing_columns.count("merchant_id") == 1
    assert config.column_roles()["merchant_id"] == ["merchant", "categorical"]


def test_a_column_in_two_feature_roles_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\['price'\] are listed under more than one"):
        DataConfig(categorical=("category", "price"))


@pytest.mark.parametrize(
    ("role", "extra"),
    [
        ("label", {"numeric": ("price", "label")}),
        ("violation_reason", {"categorical": ("category", "violation_reason")}),
        ("review_seconds", {"numeric": ("price", "review_seconds")}),
        ("id", {"text": ("title", "listing_id")}),
    ],
)
def test_an_outcome_column_listed_as_a_feature_is_refused(role: str, extra: dict) -> None:
    """The label under `numeric` trained to test ROC-AUC 1.0 and made every scoring request carry it."""
    key = next(iter(extra))
    with pytest.raises(ValueError, match=rf"is the '{role}' column and is also listed under '{key}'"):
        DataConfig(**extra)


@pytest.mark.parametrize(
    "extra", [{"numeric": ["price", "request_id"]}, {"id": "request_id"}, {"text": ["request_id"]}]
)
def test_a_listing_column_named_like_the_request_envelope_is_refused(extra: dict) -> None:
    """`POST /v1/score` is flat: a listing column `request_id` would be read as the idempotency key."""
    with pytest.raises(ValueError, match="column 'request_id' has the name of the scoring request's idempotency key"):
        DataConfig(**extra)


@pytest.mark.parametrize(
    ("extra", "column", "writer"),
    [
        ({"text": ["qa_sample"]}, "qa_sample", "export-labels"),
        ({"categorical": ["category", "logged_decision"]}, "logged_decision", "export-labels"),
        ({"numeric": ["price", "inclusion_prob"]}, "inclusion_prob", "export-labels"),
        ({"id": "label_source"}, "label_source", "export-labels"),
        ({"violation_reason": "corrected"}, "corrected", "export-labels"),
        ({"id": "risk"}, "risk", "score"),
        ({"id": "decision_tier"}, "decision_tier", "score"),
    ],
)
def test_a_column_named_like_one_the_product_writes_beside_it_is_refused(extra: dict, column: str, writer: str) -> None:
    """`export-labels` wrote qa_sample=False over a text column named qa_sample (and the decision id over a
    text named decision_id); `triage score` wrote the risk over an id column named risk."""
    with pytest.raises(ValueError, match=rf"column '{column}' \(.*\) has the name of a column `triage {writer}`"):
        DataConfig(**extra)


def test_a_feature_may_share_a_name_with_a_scored_column() -> None:
    """Only the id sits beside `triage score`'s columns: a text column named risk or decision is read as it is."""
    assert DataConfig(text=("risk", "decision")).text == ("risk", "decision")


def test_the_bookkeeping_columns_are_the_ones_export_labels_writes() -> None:
    from features.config import EXPORT_COLUMNS, OUTCOME_ROLES
    from serving.store.labels import labels_frame

    config = DataConfig()
    named = set(config.column_roles()) | {getattr(config, role) for role in OUTCOME_ROLES}
    bookkeeping = set(labels_frame([], config).columns) - named
    assert bookkeeping and bookkeeping <= set(EXPORT_COLUMNS)


def test_features_switch_groups_off(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config = load_config(write(tmp_path, {**raw, "features": {"merchant_history": False, "text_chars": False}}))
    assert config.feature_groups == {"text_model", "lexicons"}
    assert DataConfig.from_dict(config.to_dict()) == config  # as the bundle stores it
    with pytest.raises(ValueError, match="unknown feature groups"):
        load_config(write(tmp_path, {**raw, "features": {"merchant": False}}))
    # true is the default: on when the data has the group's columns (the template lists every group)
    assert load_config(write(tmp_path, {**MINIMAL, "features": {"merchant_history": True}})).feature_groups == {
        "text_model",
        "text_chars",
        "lexicons",
    }


def test_the_config_file_is_named_for_error_messages(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.where() == f"the data config is {tmp_path / 'data.yaml'}: edit it or pass --config"


def test_a_reason_in_two_tiers_is_refused_whatever_its_case_and_spaces(tmp_path: Path) -> None:
    """A table's reason matches a tier's with surrounding whitespace and case ignored, so `Counterfeit` in
    one tier and ` counterfeit` in another would claim the same violations."""
    tiers = {
        "severe": {"reasons": ["Counterfeit"], "recall": 0.99},
        "minor": {"reasons": [" counterfeit"], "recall": 0.9},
    }
    raw = {**MINIMAL, "violation_reason": "reason", "tiers": tiers}
    with pytest.raises(
        ValueError, match="reasons ' counterfeit' and 'Counterfeit' \\(one reason\\) are in tiers 'minor' and 'severe'"
    ):
        load_config(write(tmp_path, raw))
