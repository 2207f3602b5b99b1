"""Product identification: normalisation, MinHash parity with datasketch, re-post and catalogue matching,
point-in-time history matching, the index's incremental adds and persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasketch import MinHash

from decision.rules import Rule, match_rules
from features.config import DataConfig
from features.identify import (
    PRODUCT_MATCH,
    Catalogue,
    HashFamily,
    ListingIndex,
    ProductIdentifier,
    choose_threshold,
    identify_history,
    matching_records,
    normalize_texts,
    shingles,
)

REJECTED = {
    "listing_id": "L-rejected",
    "title": "Rolex Submariner automatic watch black dial",
    "description": "Luxury diver watch with steel bracelet. Comes with box and papers. Ships from Geneva.",
    "brand": "Rolex",
}
CATALOGUE = pd.DataFrame(
    {
        "entry_id": ["C1", "C2", "C3"],
        "name": ["ivory carving", "switchblade knife", "cancer cure"],
        "aliases": [["carved ivory", "elephant ivory"], ["switchblade", "flick knife"], ["cures cancer"]],
        "reason": ["prohibited_item", "prohibited_item", "misleading_health_claim"],
        "action": ["block", "block", "review"],
    }
)


def identifier_with(*rejected: dict[str, str]) -> ProductIdentifier:
    identifier = ProductIdentifier(["title", "description", "brand"], catalogue=Catalogue(CATALOGUE))
    identifier.add_verdicts(
        list(rejected), "listing_id", ["reject"] * len(rejected), ["counterfeit"] * len(rejected), [0] * len(rejected)
    )
    return identifier


def test_normalisation_undoes_obfuscation_and_keeps_numbers() -> None:
    texts = [
        "R0lex   Submariner!!",
        "sw1tchblade for sale",
        "this c.u.r.e.s cancer",
        "Mir@cle cure$",
        "size 40, 3.5 kg",
    ]
    assert normalize_texts(texts) == [
        "rolex submariner",
        "switchblade for sale",
        "this cures cancer",
        "miracle cures",
        "size 40 35 kg",
    ]


def test_vectorised_signatures_equal_datasketch_minhash() -> None:
    family = HashFamily(num_perm=64, seed=1)
    texts = normalize_texts(["Rolex submariner black dial", "one", "", "a b a b c"])
    titles = normalize_texts(["Rolex submariner", "", "", "c"])
    signatures = family.signatures(texts, titles)
    for text, title, signature in zip(texts, titles, signatures, strict=True):
        reference = MinHash(num_perm=64, seed=1, scheme="affine32")
        reference.update_batch([s.encode() for s in shingles(text, title)])
        assert np.array_equal(reference.hashvalues.astype(np.uint32), signature), text


def test_an_edited_repost_matches_and_an_unrelated_listing_sharing_one_word_does_not() -> None:
    identifier = identifier_with(REJECTED)
    repost = {
        "listing_id": "L-repost",
        "title": "R0lex Submariner automatic watch, black dial - original",  # reworded and obfuscated
        "description": REJECTED["description"],
        "brand": "Rolex",
        "price": 99.0,
    }
    unrelated = {
        "listing_id": "L-other",
        "title": "Black leather wallet",  # shares "black" (and nothing else that identifies a product)
        "description": "Slim wallet with six card slots. Ships from Berlin.",
        "brand": "",
    }
    found = identifier.identify_records([repost, unrelated])
    assert found[0].repost_of == "L-rejected" and found[0].repost_similarity >= identifier.threshold
    assert found[0].product_match == "repost"
    assert found[0].reasons()[0] == {
        "feature": "repost_match",
        "matched_listing_id": "L-rejected",
        "similarity": round(found[0].repost_similarity, 4),
    }
    assert found[1].repost_of == "" and found[1].product_match == ""


def test_catalogue_alias_and_obfuscated_spelling_match_on_whole_words_only() -> None:
    catalogue = Catalogue(CATALOGUE)
    texts = normalize_texts(
        [
            "Vintage sw1tchblade, great condition",  # alias, obfuscated
            "Tea that c.u.r.e.s cancer naturally",  # alias, dotted
            "Hand painted ivory color vase",  # "ivory" is a catalogue word, but no entry's phrase is here
            "Ivory colour cushion cover",
            "Elephant ivorry figurine",  # misspelt alias word (fuzzy)
            "Switchboard panel for sale",  # close in letters, a different word
        ]
    )
    assert catalogue.match(texts).tolist() == [1, 2, -1, -1, 0, -1]


def test_catalogue_reads_pipe_joined_aliases_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    Catalogue(CATALOGUE).to_csv(path)
    again = Catalogue.read_csv(path)
    assert again.entries["aliases"].tolist() == CATALOGUE["aliases"].tolist()
    with pytest.raises(ValueError, match="missing columns"):
        Catalogue(CATALOGUE.drop(columns="aliases"))


def history_frame() -> pd.DataFrame:
    """A rejected listing reviewed on day 2, a copy created on day 1 (before the review), one on day 3."""
    day = pd.Timestamp("2025-03-01", tz="UTC")
    rows = [
        {**REJECTED, "created_at": day, "reviewed_at": day + pd.Timedelta(days=1), "label": 1},
        {**REJECTED, "listing_id": "L-early", "created_at": day + pd.Timedelta(hours=12), "label": 0},
        {**REJECTED, "listing_id": "L-late", "created_at": day + pd.Timedelta(days=2), "label": 0},
        {
            "listing_id": "L-knife",
            "title": "flick knife",
            "description": "",
            "brand": "",
            "created_at": day,
            "label": 0,
        },
    ]
    frame = pd.DataFrame(rows)
    frame["reviewed_at"] = frame["reviewed_at"].fillna(frame["created_at"] + pd.Timedelta(hours=1))
    return frame


def test_history_matches_only_rejects_reviewed_before_the_row_was_created() -> None:
    frame = history_frame()
    found = identify_history(frame, DataConfig(), CATALOGUE)
    assert found.index.equals(frame.index)
    assert found["repost_of"].tolist() == ["", "", "L-rejected", ""]  # never itself, never the future
    assert found["repost_similarity"].iloc[2] == 1.0
    assert found["catalogue_entry"].tolist() == ["", "", "", "C2"]
    assert found[PRODUCT_MATCH].tolist() == ["", "", "repost", "catalogue"]


def test_history_without_text_columns_matches_nothing() -> None:
    frame = history_frame()
    found = identify_history(frame, DataConfig(text=()), CATALOGUE)
    assert (found[PRODUCT_MATCH] == "").all() and (found["repost_similarity"] == 0).all()


def test_a_match_rule_matches_the_product_match_column() -> None:
    listings = pd.DataFrame({PRODUCT_MATCH: ["repost", "catalogue", "repost catalogue", ""]})
    rule = Rule(name="reposts", action="block", kind="match", values=["repost"])
    block, review, names = match_rules(listings, [rule])
    assert block.tolist() == [True, False, True, False] and not review.any()
    assert names[0] == ["reposts"]
    with pytest.raises(ValueError, match="values"):
        Rule.from_dict({"name": "x", "action": "review", "kind": "match", "values": ["brand"]})
    with pytest.raises(ValueError, match="values"):
        Rule.from_dict({"name": "x", "action": "review", "kind": "match", "values": []})


def test_index_adds_incrementally_dedupes_and_survives_save_and_load(tmp_path: Path) -> None:
    index = ListingIndex(tail_limit=3)
    rng = np.random.default_rng(0)
    words = [f"word{i}" for i in range(400)]
    texts = [" ".join(rng.choice(words, 12)) for _ in range(10)]
    titles = [t.split()[0] for t in texts]
    for i in range(10):  # past tail_limit: the tail merges into the base
        index.add([f"L{i}"], [texts[i]], [titles[i]], [i])
    assert index.add(["L3"], [texts[3]], [titles[3]], [99]) == 0
    assert len(index) == 10
    signatures = index.family.signatures(texts, titles)
    ids, similarity = index.best(signatures, 0.9)
    assert ids.tolist() == [f"L{i}" for i in range(10)] and (similarity == 1.0).all()
    index.save(tmp_path, "rejects")
    loaded = ListingIndex.load(tmp_path, "rejects", index.family, index.lsh_threshold)
    assert loaded.best(signatures, 0.9, before_us=np.full(10, 5))[0].tolist() == [
        *(f"L{i}" for i in range(5)),
        *([""] * 5),
    ]


def test_identifier_round_trips_with_similar_cases(tmp_path: Path) -> None:
    identifier = identifier_with(REJECTED)
    approved = {**REJECTED, "listing_id": "L-approved", "title": "Rolex Submariner watch black dial"}
    identifier.add_verdicts([approved], "listing_id", ["approve"], [""], [1])
    identifier.save(tmp_path / "identify")
    loaded = ProductIdentifier.load(tmp_path / "identify")
    cases = loaded.similar(loaded.signature(REJECTED), k=5, exclude="L-rejected")
    assert [(c.listing_id, c.verdict) for c in cases] == [("L-approved", "approve")]
    texts, titles = matching_records([REJECTED], loaded.text_columns)
    assert loaded.rejects.best(loaded.rejects.family.signatures(texts, titles), 0.99)[0].tolist() == ["L-rejected"]


def test_threshold_is_the_lowest_reaching_the_precision_target() -> None:
    similarity = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.0])
    is_repost = np.array([True, True, True, False, True, False])
    assert choose_threshold(similarity, is_repost, precision=0.95) == 0.85
    assert choose_threshold(similarity, is_repost, precision=0.75) == 0.7
