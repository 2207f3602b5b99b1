"""Text vectorising: `TextModel.vectorize` (the fast paths) against the per-document reference
(`vectorize_per_document`: sklearn's analyzers and `FeatureHasher`, one document at a time).

    python bench/bench_text.py [--rounds 5] [--docs 20000]

Generated listings' documents (title, description, brand; `training.generate`, seed 3), the word model
(word uni+bi-grams) and the char model (the same plus char_wb 2-5-grams, what small-data bundles add), in
batches of 1 (a single-listing request), 12 (the service's typical micro-batch at concurrency 32), 48
and 4,096 (offline scoring and training). CPU time per document (process time, so other work on the
machine shifts it less than wall time), medians over rounds run in rotating order; every fast matrix is
checked equal to the reference's first. Writes bench/RESULTS_TEXT.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, alternate, log, median, run_meta  # noqa: E402

BATCH_SIZES = (1, 12, 48, 4096)
RESULTS_MD = ROOT / "bench" / "RESULTS_TEXT.md"


def _per_document_us(vectorize: Callable[[list[str]], object], docs: list[str], size: int, budget: int) -> float:
    """CPU µs per document of `vectorize` over consecutive batches of `size` covering up to `budget` docs."""
    batches = [docs[lo : lo + size] for lo in range(0, min(len(docs), budget), size)]
    start = time.process_time()
    for batch in batches:
        vectorize(batch)
    return (time.process_time() - start) / (len(batches) * size) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--docs", type=int, default=20_000)
    args = parser.parse_args()
    start = time.perf_counter()

    from features.builder import CHAR_NGRAMS
    from features.text import TextModel, documents
    from training.generate import generate

    reviews, _ = generate(args.docs, seed=3)
    docs = documents(reviews, ("title", "description", "brand"))
    models = {"word": TextModel(), "char": TextModel(char_ngrams=CHAR_NGRAMS)}
    for name, model in models.items():
        for size in BATCH_SIZES:
            fast, reference = model.vectorize(docs[:size]), model.vectorize_per_document(docs[:size])
            if (fast != reference).nnz or fast.indices.tolist() != reference.indices.tolist():
                raise SystemExit(f"{name} model, batch of {size}: the fast path differs from the reference")
    log(f"{len(docs):,} documents, mean {np.mean([len(d) for d in docs]):.0f} characters; paths checked equal")

    rows = []
    for name, model in models.items():
        for size in BATCH_SIZES:
            budget = 2_000 if size == 1 else 8_192  # documents a round: bounded time at every size
            results = alternate(
                args.rounds,
                {
                    "fast": partial(_per_document_us, model.vectorize, docs, size, budget),
                    "reference": partial(_per_document_us, model.vectorize_per_document, docs, size, budget),
                },
            )
            fast, reference = median(results["fast"]), median(results["reference"])
            rows.append((name, size, fast, reference))
            log(f"{name} model, batch {size}: {fast:.1f} vs {reference:.1f} µs/doc ({reference / fast:.1f}x)")

    meta = run_meta("bench/bench_text.py", start)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Text vectorising: fast paths against the per-document reference",
        "",
        f"`{meta['command']}`: {meta['machine']}, finished {meta['finished_at']} ({meta['seconds']} s), "
        f"load average at the end {load}. CPU µs per document (process time), medians of {args.rounds} rounds "
        "in rotating order; each fast matrix checked equal to the reference's.",
        "",
        "| model | batch | `vectorize` µs/doc | reference µs/doc | speed-up |",
        "|---|---|---|---|---|",
        *[f"| {name} | {size:,} | {fast:.1f} | {ref:.1f} | {ref / fast:.1f}x |" for name, size, fast, ref in rows],
        "",
    ]
    RESULTS_MD.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
