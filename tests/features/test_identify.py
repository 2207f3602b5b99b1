"""Product identification: normalisation, MinHash parity with datasketch, re-post and catalogue matching,
point-in-time history matching, the index's incremental adds and persistence."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from datasketch import MinHash

from decision.rules import Rule, match_rules
from features.catalogue import Catalogue
from features.config import DataConfig
from features.identify import PRODUCT_MATCH, ProductIdentifier, choose_threshold, identify_history
from features.listing_index import REPOST_THRESHOLD, ListingIndex
from features.minhash import COLUMNAR_MIN, HashFamily, normalize_texts, shingles

REJECTED: dict[str, Any] = {
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


def identifier_with(*rejected: dict[str, Any]) -> ProductIdentifier:
    identifier = ProductIdentifier(
        ["title", "description", "brand"],
        ["category"],
        "price",
        "merchant_id",
        "merchant_tenure_days",
        catalogue=Catalogue(CATALOGUE),
    )
    yesterday = time.time_ns() // 1_000 - DAY_US  # rejected a day before the listings queried (now)
    identifier.add_verdicts(
        list(rejected),
        "listing_id",
        ["reject"] * len(rejected),
        ["counterfeit"] * len(rejected),
        [yesterday] * len(rejected),
    )
    return identifier


DAY_US = 86_400 * 1_000_000

TRICKY = [
    "R0lex   Submariner!!",
    "sw1tchblade for sale",
    "this c.u.r.e.s cancer",
    "Mir@cle cure$ now!",
    "size 40, 3.5 kg",
    "a!!b @home e-mail snake_case *star* x.y.z",
    "Ünïcode ＦＵＬＬＷＩＤＴＨ café—crème",
    "",
    "   ",
]


def test_normalisation_undoes_obfuscation() -> None:
    assert normalize_texts(TRICKY[:5]) == [
        "rolex submariner",
        "switchblade for sale",
        "this cures cancer",
        "miracle cure now",
        "size ao es kg",
    ]


def test_normalisation_of_one_text_and_of_a_column_agree() -> None:
    texts = TRICKY * 10  # more than COLUMNAR_MIN: the RE2 path
    assert len(texts) >= COLUMNAR_MIN
    assert normalize_texts(texts) == [normalize_texts([t])[0] for t in texts]


def test_vectorised_signatures_equal_datasketch_minhash() -> None:
    """Both paths (a few texts, and a block with padding and a text longer than the padded width)."""
    family = HashFamily(num_perm=64, seed=1)
    long_text = " ".join(f"word{i}" for i in range(300))
    texts = normalize_texts(["Rolex submariner black dial", "one", "", "a b a b c", long_text, *TRICKY[:7]])
    titles = normalize_texts(["Rolex submariner", "", "", "c", "word1 word2", *TRICKY[:7]])
    assert len(texts) > 8  # past the few-texts path
    together = family.signatures(texts, titles)
    alone = np.concatenate([family.signatures([t], [ti]) for t, ti in zip(texts, titles, strict=True)])
    for text, title, signature, single in zip(texts, titles, together, alone, strict=True):
        reference = MinHash(num_perm=64, seed=1, scheme="affine32")
        reference.update_batch([s.encode() for s in shingles(text, title)])
        assert np.array_equal(reference.hashvalues.astype(np.uint32), signature), text[:40]
        assert np.array_equal(signature, single), text[:40]


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
    found = identifier.identify_records([repost, unrelated], "listing_id")
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
    records = [
        {"listing_id": f"L{i}", "title": " ".join(rng.choice(words, 3)), "description": " ".join(rng.choice(words, 9))}
        for i in range(10)
    ]
    maker = ProductIdentifier(["title", "description"])
    listings, _ = maker.record_listings(records, "listing_id", list(range(10)))
    for i in range(10):  # past tail_limit: the tail merges into the base
        assert index.add(listings.take([i])) == 1
    assert index.add(listings.take([3])) == 0
    assert len(index) == 10
    queries = replace(listings, ids=np.array([f"Q{i}" for i in range(10)], dtype=object))
    ids, similarity, _ = index.best(queries, 0.9)
    assert ids.tolist() == [f"L{i}" for i in range(10)] and (similarity == 1.0).all()
    assert index.best(listings, 0.9)[0].tolist() == [""] * 10  # never a listing's own id
    index.save(tmp_path, "rejects")
    loaded = ListingIndex.load(tmp_path, "rejects", index.family, index.lsh_threshold)
    assert loaded.best(queries, 0.9, before_us=np.full(10, 5))[0].tolist() == [
        *(f"L{i}" for i in range(5)),
        *([""] * 5),
    ]


def test_a_copy_of_another_product_or_price_is_no_repost_and_the_seller_counts() -> None:
    identifier = identifier_with({**REJECTED, "category": "watches", "price": 100.0, "merchant_id": "M1"})
    copy = {**REJECTED, "listing_id": "L-copy", "category": "watches", "price": 90.0, "merchant_id": "M1"}
    other_category = {**copy, "listing_id": "L-cat", "category": "toys"}
    other_price = {**copy, "listing_id": "L-price", "price": 300.0}
    unknown = {k: v for k, v in copy.items() if k not in ("category", "price")}
    found = identifier.identify_records([copy, other_category, other_price, unknown], "listing_id")
    # the re-post index is blocked by the product attributes: no known attributes, no candidate among
    # listings with known ones
    assert [f.repost_of for f in found] == ["L-rejected", "", "", ""]
    edited = {**copy, "title": "Rolex Submariner watch, black dial, with box"}
    now = [time.time_ns() // 1_000]  # one query time for every pair compared below
    other_seller = identifier.record_listings([{**edited, "merchant_id": "M2"}], "listing_id", now)[0]
    same_seller = identifier.record_listings([{**edited, "merchant_id": "M1"}], "listing_id", now)[0]
    found_other, found_same = identifier.rejects.query(other_seller), identifier.rejects.query(same_seller)
    assert len(found_other.similarity) == 1 and found_other.similarity.tolist() == found_same.similarity.tolist()
    assert found_same.score[0] > found_other.score[0]
    assert not found_other.same_merchant.any() and found_same.same_merchant.all()
    new_account = identifier.record_listings(
        [{**edited, "merchant_id": "M2", "merchant_tenure_days": 5}], "listing_id", now
    )[0]
    found_new = identifier.rejects.query(new_account)
    assert found_new.new_account.all() and found_new.score[0] > found_other.score[0]
    same_and_new = identifier.record_listings(
        [{**edited, "merchant_id": "M1", "merchant_tenure_days": 5}], "listing_id", now
    )
    assert identifier.rejects.query(same_and_new[0]).score.tolist() == found_same.score.tolist()  # one bonus


def test_identifier_round_trips_with_similar_cases(tmp_path: Path) -> None:
    identifier = identifier_with(REJECTED)
    approved = {**REJECTED, "listing_id": "L-approved", "title": "Rolex Submariner watch black dial"}
    identifier.add_verdicts([approved], "listing_id", ["approve"], [""], [1])
    identifier.save(tmp_path / "identify")
    loaded = ProductIdentifier.load(tmp_path / "identify")
    indexed = loaded.reviewed.listing("L-rejected")
    assert indexed is not None
    cases = loaded.similar(indexed, k=5)
    assert [(c.listing_id, c.verdict) for c in cases] == [("L-approved", "approve")]
    query = loaded.record_listings([{**REJECTED, "listing_id": "L-new"}], "listing_id")[0]
    assert loaded.rejects.best(query, 0.99)[0].tolist() == ["L-rejected"]


def test_threshold_is_the_lowest_reaching_the_precision_target() -> None:
    similarity = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.0])
    is_repost = np.array([True, True, True, False, True, False])
    assert choose_threshold(similarity, is_repost, precision=0.95) == 0.85
    assert choose_threshold(similarity, is_repost, precision=0.75) == 0.7


def test_a_listing_is_signed_and_keyed_alike_alone_and_in_a_column() -> None:
    """The service signs listings one by one, the bundle's index a whole column: the same listing must
    get the same signature, product attributes and merchant either way."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "listing_id": [f"L{i}" for i in range(COLUMNAR_MIN + 6)],
            "title": [f"R0lex item {i % 7} c.u.r.e.s" for i in range(COLUMNAR_MIN + 6)],
            "description": ["", "Ünïcode text!", None, *(["plain words here"] * (COLUMNAR_MIN + 3))],
            "category": ["watches", None, "toys", *(["watches"] * (COLUMNAR_MIN + 3))],
            "image_count": [3, 3.0, None, *rng.integers(0, 5, COLUMNAR_MIN + 3).tolist()],
            "price": [10.0, None, -1.0, *rng.uniform(1, 100, COLUMNAR_MIN + 3).tolist()],
            "merchant_id": ["M1", None, "M2", *(["M3"] * (COLUMNAR_MIN + 3))],
        }
    )
    identifier = ProductIdentifier(["title", "description"], ["category", "image_count"], "price", "merchant_id")
    column, _ = identifier.frame_listings(frame, frame["listing_id"].to_numpy(dtype=object), np.zeros(len(frame)))
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    alone = [identifier.record_listings([r], "listing_id")[0] for r in records]
    for field in ("signatures", "attributes", "merchants"):
        assert np.array_equal(getattr(column, field), np.concatenate([getattr(a, field) for a in alone])), field
    assert np.array_equal(column.prices, np.concatenate([a.prices for a in alone]), equal_nan=True)
    same = identifier.record_listings(
        [{"category": "watches", "image_count": 3}, {"category": "Watches ", "image_count": 3.0}], "listing_id"
    )[0]
    assert same.attributes[0] == same.attributes[1] != 0
    assert np.isnan(column.prices[1:3]).all()  # missing or non-positive: unknown


def test_a_heavily_edited_repost_from_a_new_account_matches_and_a_same_category_listing_does_not() -> None:
    """Every edit at once (title reworded and reordered, obfuscated spelling, price down 15%, description
    reordered) from a second account days old, a day after the rejection: matched. Another product of the same category,
    market and brand by an established seller: not matched, though it shares the boilerplate."""
    original = {
        "listing_id": "L-orig",
        "title": "Tiffany necklace adjustable replica",
        "description": "AAA replica quality, looks real. Chain length can be adjusted. Polished finish that "
        "stays bright. Hypoallergenic and nickel free.",
        "brand": "Tiffany",
        "category": "jewelry",
        "market": "US",
        "price": 80.0,
        "merchant_id": "M-old",
        "merchant_tenure_days": 400.0,
    }
    identifier = ProductIdentifier(
        ["title", "description", "brand"], ["category", "market"], "price", "merchant_id", "merchant_tenure_days"
    )
    identifier.add_verdicts([original], "listing_id", ["reject"], ["counterfeit"], [time.time_ns() // 1_000 - DAY_US])
    repost = {
        **original,
        "listing_id": "L-repost",
        "title": "r3plica Tiffany necklace gold plated",
        "description": "Polished finish that stays bright. AAA r3plica quality, looks real. Hypoallergenic and "
        "nickel free. Chain length can be adjusted.",
        "price": 68.0,
        "merchant_id": "M-second",
        "merchant_tenure_days": 3.0,
    }
    unrelated = {
        **original,
        "listing_id": "L-other",
        "title": "Tiffany silver bracelet charm",
        "description": "Sterling silver charm bracelet. Polished finish that stays bright. Comes in an elegant "
        "gift box.",
        "price": 75.0,
        "merchant_id": "M-shop",
        "merchant_tenure_days": 900.0,
    }
    found = identifier.identify_records([repost, unrelated], "listing_id")
    assert [f.repost_of for f in found] == ["L-orig", ""]
    assert found[0].repost_similarity < 0.9  # edited: under the old text-only threshold (0.9156)
    scores = identifier.rejects.query(identifier.record_listings([repost], "listing_id")[0]).score
    assert scores.max() >= REPOST_THRESHOLD


def test_threshold_choice_equals_trying_every_value_from_the_lowest() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(0, 40))
        similarity = np.round(rng.random(n), int(rng.integers(1, 3))) * (rng.random(n) > 0.2)
        is_repost = rng.random(n) < similarity
        for precision in (0.5, 0.8, 0.95, 1.0):
            reaching = [
                t for t in np.unique(similarity[similarity > 0]) if is_repost[similarity >= t].mean() >= precision
            ]
            assert choose_threshold(similarity, is_repost, precision) == (float(reaching[0]) if reaching else 1.0)


def test_the_same_copy_soon_after_the_rejection_scores_higher_than_months_later() -> None:
    """Re-posters come back within days or weeks; a lookalike months later is less likely one."""
    identifier = identifier_with(REJECTED)
    copy = {**REJECTED, "listing_id": "L-copy", "title": "Rolex Submariner watch, black dial, with box"}
    now = time.time_ns() // 1_000
    soon, late = (identifier.record_listings([copy], "listing_id", [now + days * DAY_US])[0] for days in (2, 200))
    found_soon, found_late = identifier.rejects.query(soon), identifier.rejects.query(late)
    assert found_soon.similarity.tolist() == found_late.similarity.tolist()
    assert found_soon.days_since[0] == pytest.approx(3.0) and found_late.days_since[0] == pytest.approx(201.0)
    assert found_soon.score[0] > found_late.score[0]


def test_a_listing_dict_is_placed_at_its_creation_time_else_now() -> None:
    identifier = identifier_with(REJECTED)
    identifier.time_column = "created_at"
    records = [
        {**REJECTED, "listing_id": "A", "created_at": "2026-03-01T12:00:00Z"},
        {**REJECTED, "listing_id": "B", "created_at": "2026-03-01T12:00:00"},  # naive: UTC
        {**REJECTED, "listing_id": "C", "created_at": "not a time"},
        {**REJECTED, "listing_id": "D"},
    ]
    before = time.time_ns() // 1_000
    listings, _ = identifier.record_listings(records, "listing_id")
    march = int(pd.Timestamp("2026-03-01T12:00:00Z").value // 1_000)
    assert listings.times[:2].tolist() == [march, march]
    assert all(t >= before for t in listings.times[2:].tolist())  # unreadable or missing: now
    # offline scoring reads the same time from the column: the same matches as the service's
    edited = [{**r, "title": "Rolex Submariner watch, black dial"} for r in records[:2]]
    frame = pd.DataFrame(edited).assign(
        created_at=pd.to_datetime([r["created_at"] for r in edited], utc=True, format="ISO8601")
    )
    served = ["repost" if f.repost_of else "" for f in identifier.identify_records(edited, "listing_id")]
    assert identifier.product_matches(frame, "listing_id").tolist() == served


def test_a_saved_threshold_of_another_scorer_gives_way_to_this_ones(tmp_path: Path) -> None:
    identifier = identifier_with(REJECTED)
    identifier.threshold = 0.123
    identifier.save(tmp_path)
    assert ProductIdentifier.load(tmp_path).threshold == 0.123
    meta = json.loads((tmp_path / "identify.json").read_text())
    del meta["repost_features"]  # a bundle saved before the scorer read the days since the rejection
    (tmp_path / "identify.json").write_text(json.dumps(meta))
    assert ProductIdentifier.load(tmp_path).threshold == REPOST_THRESHOLD


def test_best_matches_queries_block_by_block_as_in_one_go(monkeypatch: pytest.MonkeyPatch) -> None:
    import features.listing_index as listing_index

    originals = [
        {**REJECTED, "listing_id": f"L{i}", "title": f"{REJECTED['title']} {word}"}
        for i, word in enumerate(["red", "blue", "green", "gold", "steel"])
    ]
    identifier = identifier_with(*originals)
    queries = [{**o, "listing_id": f"Q{i}", "title": o["title"] + " new"} for i, o in enumerate(originals * 3)]
    listings, _ = identifier.record_listings(queries, "listing_id", [time.time_ns() // 1_000] * len(queries))
    whole = identifier.rejects.best(listings, 0.0)
    monkeypatch.setattr(listing_index, "QUERY_BLOCK", 4)  # 15 queries: blocks of 4, 4, 4 and 3
    blocked = identifier.rejects.best(listings, 0.0)
    assert whole[0].tolist() == blocked[0].tolist() and set(whole[0].tolist()) >= {"L0", "L4"}
    np.testing.assert_array_equal(whole[1], blocked[1])
    np.testing.assert_array_equal(whole[2], blocked[2])


def test_without_a_time_column_the_days_since_a_rejection_read_zero() -> None:
    """Data ordered by row indexes row positions, not times: the service's listings must not look
    decades after every rejection (training saw neighbouring rows about 0 days apart)."""
    identifier = identifier_with(REJECTED)
    assert identifier.time_column is None
    listings, _ = identifier.record_listings([{**REJECTED, "listing_id": "L-copy"}], "listing_id")
    found = identifier.rejects.query(listings)
    assert listings.times.tolist() == [0] and found.days_since.tolist() == [0.0]
    frame = pd.DataFrame([{**REJECTED, "listing_id": "L-copy"}])
    assert identifier.product_matches(frame, "listing_id").tolist() == ["repost"]


def test_ascii_normalisation_equals_the_re2_rules_on_random_text() -> None:
    """The byte-table path for ASCII columns gives the RE2 path's strings: symbols, dots and
    underscores inside and around words, runs of gaps, gaps at either end, empty texts."""
    import random

    import pyarrow as pa

    from features.minhash import _normalize_ascii, _normalize_column, _normalize_re2

    rng = random.Random(0)
    alphabet = "aB0 1.-_*@!$ \t,Z3x"
    texts = ["", " ", "a", "@", "a@", "@a", "a_._b", "..a..", "x!", "!!", "a  b", " a b ", *TRICKY[:6]]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(5000)]
    column = pa.array(texts, type=pa.large_string())
    assert _normalize_ascii(column) == _normalize_re2(column)
    assert _normalize_ascii(column.slice(7, 100)) == _normalize_re2(column.slice(7, 100))  # an offset into the buffers
    mixed = pa.array([*TRICKY, *texts[:200]], type=pa.large_string())  # Unicode rows take the RE2 rules
    assert _normalize_column(mixed) == _normalize_re2(mixed)


def test_rejected_rows_match_raw_label_values_as_validation_does() -> None:
    """Raw text labels were matched with `isin` (' Spam ' missed `spam`), and a pandas string column, not of
    object dtype, was cast to float."""
    from features.config import DataConfig
    from features.identify import rejected_rows

    config = DataConfig(label_reject=("spam",), label_approve=("ham",))
    raw = pd.Series([" Spam ", "ham", None, "SPAM"])
    assert rejected_rows(pd.DataFrame({"label": raw}), config).tolist() == [True, False, False, True]
    assert rejected_rows(pd.DataFrame({"label": raw.astype(object)}), config).tolist() == [True, False, False, True]
    assert rejected_rows(pd.DataFrame({"label": [1, 0, 1]}), config).tolist() == [True, False, True]  # validated
