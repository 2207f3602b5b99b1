"""End to end on the shapes real exports come in: a small generated table is cut to each shape (columns
dropped or renamed, roles left out of the data config), trained, exported, and the bundle is loaded
back to score listings of the same shape and replay its reference set in the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from bundle.load import Bundle
from bundle.manifest import BundleError
from bundle.policies import load_policy, save_policy
from decision.rules import Rule
from decision.simulate import simulate_policy
from features.config import DEFAULT_CONFIG_PATH
from features.merchant import MERCHANT_FEATURES
from features.validate import load_table, validate_listings
from training.generate import generate
from training.offline import score_frame
from training.pipeline import TrainOptions, TrainResult, train

pytestmark = pytest.mark.slow

ROWS = 4_000
SCORED = 5  # listings scored through the loaded bundle


@dataclass(frozen=True)
class Shape:
    """The default data config with `changes` (None is written as null) and the keys in `absent` left
    out, as a user leaves a role out; the generated table with `drop` dropped and `rename` renamed."""

    changes: dict[str, Any]
    absent: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)


def text_only(reviews: pd.DataFrame) -> pd.DataFrame:
    """The SMS-spam shape: an id, one text column and a spam/ham label, in time order, nothing else."""
    return pd.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(len(reviews))],
            "text": reviews["title"] + " " + reviews["description"],
            "spam": np.where(reviews["label"] == 1, "spam", "ham"),
        }
    )


SHAPES = {
    "text_only_row_order": Shape(
        {
            "id": "message_id",
            "timestamp": None,
            "time_order": "row",
            "label": "spam",
            "label_values": {"reject": ["spam"], "approve": ["ham"]},
            "text": ["text"],
            "merchant": None,
            "categorical": [],
            "numeric": [],
            "segments": [],
        },
        absent=("reviewed_at", "violation_reason", "review_seconds"),
    ),
    "tabular_no_text": Shape({"text": []}, drop=("title", "description", "brand")),
    "no_merchant": Shape({"merchant": None}, drop=("merchant_id",)),
    "no_segments": Shape({}, absent=("segments",)),
    "no_review_seconds": Shape({"review_seconds": None}, drop=("review_seconds",)),
    "no_violation_reason": Shape({}, absent=("violation_reason",), drop=("violation_reason",)),
    "renamed_no_categorical": Shape(
        {"id": "sku", "categorical": [], "segments": []},
        drop=("category", "market"),
        rename={"listing_id": "sku"},
    ),
}


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return generate(ROWS, seed=11)[0]


def write_shape(reviews: pd.DataFrame, shape: Shape, directory: Path) -> tuple[Path, Path]:
    """The shaped table (CSV, as exports come) and its data config."""
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()) | shape.changes
    for key in shape.absent:
        del config[key]
    table = text_only(reviews) if shape.changes.get("time_order") == "row" else reviews
    table = table.drop(columns=list(shape.drop)).rename(columns=shape.rename)
    directory.mkdir(parents=True, exist_ok=True)
    data, config_path = directory / "export.csv", directory / "data.yaml"
    table.to_csv(data, index=False)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return data, config_path


def train_shape(data: Path, config: Path, out: Path, log_mlflow: bool = False) -> TrainResult:
    # model selection is not the subject here: a small search budget keeps each shape quick
    options = TrainOptions(
        data=data, config=config, out=out, seed=3, show_progress=False, log_mlflow=log_mlflow, search_trials=2
    )
    return train(options)


def check_bundle_scores(result: TrainResult, data: Path) -> Bundle:
    """The bundle loads, scores listings of the export's shape, and its reference set replays."""
    bundle = Bundle.load(result.bundle_dir)
    raw = load_table(data, bundle.config)
    listings = validate_listings(raw.drop(columns=[bundle.config.label]).tail(SCORED), bundle.config)
    scored = score_frame(bundle, listings)
    assert len(scored) == SCORED
    assert np.all((scored["risk"] >= 0) & (scored["risk"] <= 1))
    assert set(scored["decision"]) <= {"auto_pass", "human_review", "auto_block"}
    reference = pd.read_parquet(result.bundle_dir / "reference.parquet")
    simulated = simulate_policy(reference, bundle.policy, daily_volume=1000)
    assert simulated.n_reference == len(reference)
    assert (result.bundle_dir / "MODEL_CARD.md").read_text()
    assert list((result.bundle_dir / "plots").glob("*.png"))
    return bundle


def check_rule_on_a_missing_column_is_refused(bundle_dir: Path) -> None:
    """A term rule on 'title', which this bundle's listings do not carry, makes the bundle unloadable."""
    policy = load_policy(bundle_dir)
    term = Rule(name="title_terms", action="review", kind="term", terms=["replica"], fields=["title"])
    save_policy(bundle_dir, replace(policy, version=f"{policy.version}-title", rules=[*policy.rules, term]))
    with pytest.raises(BundleError, match=r"rule 'title_terms' reads columns \['title'\]"):
        Bundle.load(bundle_dir)


@pytest.mark.parametrize("name", list(SHAPES))
def test_shape_trains_exports_and_scores(name: str, reviews: pd.DataFrame, tmp_path: Path) -> None:
    data, config = write_shape(reviews, SHAPES[name], tmp_path / "in")
    result = train_shape(data, config, tmp_path / "models")
    assert result.metrics["test"]["roc_auc"] > 0.6
    bundle = check_bundle_scores(result, data)
    features = set(bundle.feature_names)
    rules = {rule.name: rule.columns for rule in bundle.policy.rules}
    if name == "text_only_row_order":
        sizes = result.metrics["split_sizes"]  # by row order; a small export gets a larger calibration share
        assert sizes["test"] == 800 and sizes["train"] + sizes["calibration"] == 3200
        if sizes["calibration"] > 800:
            assert any("calibration share raised" in w for w in result.metrics["warnings"])
        # only text features: a text score (word or character n-grams, model selection keeps what helps
        # on validation) and perhaps lexicon counts
        assert features & {"text_score", "text_score_chars"}
        assert features <= {"text_score", "text_score_chars", "prohibited_hits", "luxury_brand_hits"} | {
            "health_claim_hits",
            "certificate_word_hits",
            "disguised_term_hits",
        }
        assert set(result.metrics["model"]["feature_groups"]) <= {"text_model", "text_chars", "lexicons"}
        # text only: the term rule and product identification's match rules (which read product_match)
        assert rules == {
            "prohibited_term": ["text"],
            "repost_of_rejected": ["product_match"],
            "catalogue_prohibited": ["product_match"],
        }
    if name == "tabular_no_text":
        assert not features & {"text_score", "prohibited_hits"}
        assert rules == {"regulated_category": ["category"]}
        check_rule_on_a_missing_column_is_refused(result.bundle_dir)
    if name in ("no_merchant", "text_only_row_order"):
        assert not features & set(MERCHANT_FEATURES)
    if name in ("no_segments", "renamed_no_categorical", "text_only_row_order"):
        assert result.metrics["test"]["segments"] == {}
    if name == "no_review_seconds":
        assert "queue_reviewer_hours" not in result.metrics["test"]["routing"]  # not NaN: absent
    if name == "renamed_no_categorical":
        assert "regulated_category" not in rules  # never attached to another column


def test_merchant_also_categorical_logs_to_mlflow(
    reviews: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merchant column as history key and categorical feature at once, through the MLflow step
    (its signature is inferred from listings with the merchant column once)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    shape = Shape({"categorical": ["category", "market", "merchant_id"]})
    data, config = write_shape(reviews, shape, tmp_path / "in")
    result = train_shape(data, config, tmp_path / "models", log_mlflow=True)
    assert result.mlflow is not None and result.mlflow["model_version"] == "1"
    bundle = check_bundle_scores(result, data)
    assert "merchant_id_code" in bundle.feature_names
    # the history features are there exactly when model selection kept the group
    kept_history = "merchant_history" in result.metrics["model"]["feature_groups"]
    assert (set(MERCHANT_FEATURES) <= set(bundle.feature_names)) == kept_history
    assert "merchant_history" in result.metrics["selection"]["candidates"]["lightgbm"]["feature_groups"]
    assert bundle.config.listing_columns.count("merchant_id") == 1


def test_feature_group_switched_off_in_the_config(reviews: pd.DataFrame, tmp_path: Path) -> None:
    data, config = write_shape(reviews, Shape({"features": {"merchant_history": False}}), tmp_path / "in")
    result = train_shape(data, config, tmp_path / "models")
    bundle = check_bundle_scores(result, data)
    assert not set(bundle.feature_names) & set(MERCHANT_FEATURES)
    assert "merchant_history" not in bundle.builder.feature_groups
    assert all(
        "merchant_history" not in c["feature_groups"] for c in result.metrics["selection"]["candidates"].values()
    )
    assert not (result.bundle_dir / "feature_state" / "merchant_snapshot.parquet").exists()


def test_a_feature_column_empty_in_every_row_is_a_warning(reviews: pd.DataFrame, tmp_path: Path) -> None:
    """An export whose description column came out empty (a mapping or export mistake) still trains, but
    the run says which column gave the model nothing, by name and role."""
    data, config = write_shape(reviews.assign(description="", image_count=np.nan), Shape({}), tmp_path / "in")
    result = train_shape(data, config, tmp_path / "models")
    warnings = " ".join(result.metrics["warnings"])
    assert "column 'description' (role text) is empty in every one of the 4,000 rows" in warnings
    assert "column 'image_count' (role numeric) is empty in every one of the 4,000 rows" in warnings
    assert "'title'" not in warnings and "'price'" not in warnings
