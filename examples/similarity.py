"""Sentence similarity with the real all-MiniLM-L6-v2, in the torch-free runtime.

    python examples/similarity.py BUNDLE

BUNDLE is what `edgeport export` made of the checkpoint (`make demo` does both steps).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from runtime import pipeline

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "A monkey is playing drums.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
]
QUERY = "Someone is having a meal."


def main(bundle: str) -> int:
    start = time.perf_counter()
    embed = pipeline("feature-extraction", model=bundle)
    loaded = time.perf_counter()
    vectors = embed.embed(SENTENCES + [QUERY])
    done = time.perf_counter()

    sentences, query = vectors[:-1], vectors[-1]
    scores = sentences @ query  # embeddings are normalized: dot product = cosine
    print(f"Query: {QUERY!r}\n")
    for i in np.argsort(-scores):
        print(f"  {scores[i]:+.4f}  {SENTENCES[i]}")
    similarity = sentences @ sentences.T
    np.fill_diagonal(similarity, -1)
    a, b = np.unravel_index(np.argmax(similarity), similarity.shape)
    print(f"\nMost similar pair ({similarity[a, b]:.4f}):\n  {SENTENCES[a]}\n  {SENTENCES[b]}")
    print(f"\nLoaded the bundle in {1e3 * (loaded - start):.0f} ms; embedded "
          f"{len(vectors)} sentences in {1e3 * (done - loaded):.0f} ms "
          f"({vectors.shape[1]}-dim, normalized).")
    heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
    print(f"Imported torch/transformers/optimum: {heavy or 'none'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
