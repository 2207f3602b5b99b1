"""Risky terms written in disguise: `lexicon.undisguise`, `lexicon.count_disguised_hits` and the
builder's `disguised_term_hits` feature."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.builder import DISGUISED_HITS, FeatureBuilder
from features.config import DataConfig
from features.lexicon import _CANDIDATE, count_disguised_hits, undisguise, undisguise_column
from training.generate import OBFUSCATED_TERMS, generate

CONFIG = DataConfig()


@pytest.mark.parametrize(
    ("text", "undone", "hits"),
    [
        ("pr.ada denim jacket", "prada denim jacket", 1),
        ("r.o.l.e.x chronograph", "rolex chronograph", 1),
        ("gucc1 hoodie and d1or bag", "gucci hoodie and dior bag", 2),
        ("sw1tchblade for sale", "switchblade for sale", 1),
        ("c.u.r.e.s cancer fast", "cures cancer fast", 1),
        ("prada denim jacket", "prada denim jacket", 0),  # written plainly: the lexicon counts it already
        ("omega-3 fish oil, 24 hours, $25", "omega-3 fish oil, 24 hours, $25", 0),  # hyphens and numbers stay
        ("1000mg capsules", "iooomg capsules", 0),  # read as letters, matches nothing
        ("end of sentence.next one", "end of sentencenext one", 0),
    ],
)
def test_undisguise_and_count(text, undone, hits):
    assert undisguise(text) == undone
    assert count_disguised_hits([text]).tolist() == [hits]
    assert count_disguised_hits(pa.array([text], type=pa.large_string())).tolist() == [hits]


def test_every_generated_obfuscation_of_a_listed_term_is_counted():
    """Each disguised spelling the generator's violators use, where its plain term is on a risky list
    and the disguise is one `undisguise` reads (digits, @, $, dots between letters), counts once."""
    counted = count_disguised_hits([term.lower() for term in OBFUSCATED_TERMS])
    plain = count_disguised_hits([undisguise(term.lower()) for term in OBFUSCATED_TERMS])
    assert plain.sum() == 0  # once undone, the plain words are the lexicon's, not disguised
    assert (counted > 0).mean() > 0.5
    assert counted[list(OBFUSCATED_TERMS).index("R.o.l.e.x")] == 1


def test_text_without_a_candidate_comes_back_unchanged():
    """The column path skips texts the candidate pattern does not match: for those, `undisguise` must be
    the identity (random texts over letters, digits, separators and symbols)."""
    rng = np.random.default_rng(0)
    alphabet = np.array(list("abcxyz019@$._*- !,"))
    texts = ["".join(rng.choice(alphabet, rng.integers(0, 14))) for _ in range(5000)]
    unmatched = [t for t in texts if not _CANDIDATE.search(t)]
    assert len(unmatched) > 500
    assert all(undisguise(t) == t for t in unmatched)


def test_the_column_undoes_disguises_as_each_text_alone():
    """`undisguise_column` (RE2 and numpy over the column's bytes) equals `undisguise` text by text: random
    texts over letters, digits, separators, symbols and non-ASCII characters, plus edge cases, in a
    sliced column (an offset into its buffers)."""
    rng = np.random.default_rng(1)
    alphabet = np.array(list("abrxz0137@$._*- !,éü"))
    texts = ["".join(rng.choice(alphabet, rng.integers(0, 16))) for _ in range(20_000)]
    texts += ["", "a.b.c.d.e", "a..b", "a._b", "r0lex", "30 days", "$25", "l0se 10kg", "é1a", "a1", "1a", "x" * 300]
    column = pa.array(["pad", *texts, "pad"], type=pa.large_string()).slice(1, len(texts))
    assert undisguise_column(column).to_pylist() == [undisguise(t) for t in texts]
    plain = pa.array(["no disguise here", "omega-3"], type=pa.large_string())
    assert undisguise_column(plain).to_pylist() == ["no disguise here", "omega-3"]
    assert undisguise_column(pa.array([], type=pa.large_string())).to_pylist() == []
    assert undisguise_column(pa.array(["", ""], type=pa.string())).to_pylist() == ["", ""]


def test_list_and_column_paths_count_alike():
    frame = generate(3000, seed=7)[0]
    docs = (frame["title"].fillna("") + " " + frame["description"].fillna("")).str.lower().tolist()
    docs += ["Ünïcode r0lex", "pr.ada", "", "gucc1" * 3]
    as_list = count_disguised_hits(docs)
    np.testing.assert_array_equal(as_list, count_disguised_hits(pa.array(docs, type=pa.large_string())))
    assert as_list[-4:].tolist() == [1, 1, 0, 0]


def _listings() -> pd.DataFrame:
    frame = generate(600, seed=5)[0].reset_index(drop=True)
    frame.loc[0, ["title", "brand"]] = ["Pr.ada wool coat new with tags", ""]
    frame.loc[1, ["title", "description"]] = ["sw1tchblade", "c.u.r.e.s cancer, omega-3"]
    frame.loc[2, ["title", "brand"]] = ["Prada wool coat", "Prada"]
    return frame


def test_builder_feature_is_the_same_on_both_paths():
    frame = _listings()
    builder = FeatureBuilder(CONFIG, seed=0, min_category_count=5)
    builder.fit_transform(frame.iloc[:400], history=frame)
    rest = frame[CONFIG.listing_columns]
    expected = builder.transform(rest)
    column = expected[DISGUISED_HITS].to_numpy()
    assert column[:3].tolist() == [1, 2, 0]
    records = rest.to_dict("records")
    np.testing.assert_array_equal(builder.transform_records(records), expected.to_numpy())
    np.testing.assert_array_equal(builder.transform_records(records[:3]), expected.to_numpy()[:3])


def test_a_state_saved_before_the_feature_loads_without_it(tmp_path):
    """Bundles trained before `disguised_term_hits` existed keep their feature list (and so their model's
    input width): the state has no `disguised_hits` key and its names lack the feature."""
    frame = _listings()
    old = FeatureBuilder(CONFIG, seed=0, min_category_count=5, disguised_hits=False)
    old.fit_transform(frame.iloc[:400], history=frame)
    old.save(tmp_path)
    state_file = tmp_path / "feature_builder.json"
    state = json.loads(state_file.read_text())
    del state["disguised_hits"]
    state_file.write_text(json.dumps(state))
    loaded = FeatureBuilder.load(tmp_path)
    assert DISGUISED_HITS not in loaded.feature_names
    assert loaded.feature_names == old.feature_names
    rest = frame[CONFIG.listing_columns].iloc[400:]
    pd.testing.assert_frame_equal(loaded.transform(rest), old.transform(rest))
