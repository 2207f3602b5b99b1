"""The column-wide paths of product identification find what the per-listing paths find: the catalogue's
RE2 pre-selection over a batch, and `ProductIdentifier.product_matches` over a frame."""

from __future__ import annotations

import pandas as pd

from features.catalogue import Catalogue
from features.minhash import COLUMNAR_MIN, normalize_texts
from tests.features.test_identify import CATALOGUE, REJECTED, identifier_with

TEXTS = [
    "Vintage sw1tchblade, great condition",
    "Tea that c.u.r.e.s cancer naturally",
    "Hand painted ivory color vase",
    "Elephant ivorry figurine",
    "Switchboard panel for sale",
    "carved  ivory and a flick knife",  # two entries: the first found wins
    "",
    "ivory",
    "knife flick",  # an alias's words in the wrong order
    "Genuine elephant ivory, cancer cure tea",
]


def test_a_batch_matches_the_catalogue_as_each_text_alone_does() -> None:
    texts = normalize_texts(TEXTS * (COLUMNAR_MIN // len(TEXTS) + 1))
    assert len(texts) >= COLUMNAR_MIN  # the batch takes the column-wide path
    one_by_one = [Catalogue(CATALOGUE).match([text])[0] for text in texts]
    batch = Catalogue(CATALOGUE).match(texts).tolist()
    assert batch == one_by_one
    assert batch[: len(TEXTS)] == [1, 2, -1, 0, -1, 0, -1, -1, -1, 0]


def test_product_matches_of_a_frame_equal_identify_records() -> None:
    identifier = identifier_with(REJECTED)
    repost = {**REJECTED, "listing_id": "L-copy"}
    rows = [repost, {**repost, "listing_id": "L-knife", "title": "flick knife", "description": ""}]
    rows += [{**repost, "listing_id": f"L-{i}", "title": f"garden hose {i}", "description": ""} for i in range(70)]
    frame = pd.DataFrame(rows)
    for part in (frame, frame.iloc[:3]):  # column-wide and per-text paths
        expected = [found.product_match for found in identifier.identify_records(part.to_dict("records"), "listing_id")]
        assert identifier.product_matches(part, "listing_id").tolist() == expected
    assert identifier.product_matches(frame, "listing_id")[:3].tolist() == ["repost", "catalogue", ""]
