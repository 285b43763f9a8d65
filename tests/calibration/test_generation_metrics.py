"""The generation metrics of compare (token agreement, first divergence, BLEU) on hand-made
token sequences with known answers."""

from __future__ import annotations

import math

import pytest

from calibration.metrics import bleu, first_divergence, token_agreement


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [9, 2, 3]) == 0
    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2
    assert first_divergence([1, 2, 3], [1, 2]) == 2  # the candidate stopped early
    assert first_divergence([1, 2], [1, 2, 3]) == 2  # ... or ran on
    assert first_divergence([], []) is None
    assert first_divergence([], [7]) == 0


def test_token_agreement_counts_prefix_and_positions():
    result = token_agreement([[1, 2, 3, 4], [5, 6], [7, 8, 9]],
                             [[1, 2, 9, 4], [5, 6], [7, 8]])
    # prefix: 2 of 4, 2 of 2, 2 of 3 (the longer side counts) -> 6 / 9
    assert result["prefix"] == pytest.approx(6 / 9)
    # positions: 3 of 4 (the 4 after the divergence agrees again), 2 of 2, 2 of 3 -> 7 / 9
    assert result["position"] == pytest.approx(7 / 9)
    assert result["exact_match"] == pytest.approx(1 / 3)
    assert result["first_divergence"] == [2, None, 2]
    assert result["tokens"] == 9 and result["count"] == 3


def test_token_agreement_edge_cases():
    assert token_agreement([[1, 2]], [[1, 2]])["prefix"] == 1.0
    assert token_agreement([[1, 2]], [[3, 4]]) == {
        "prefix": 0.0, "position": 0.0, "exact_match": 0.0, "first_divergence": [0],
        "tokens": 2, "count": 1}
    empty = token_agreement([[]], [[]])
    assert empty["prefix"] == empty["position"] == empty["exact_match"] == 1.0
    assert token_agreement([], [])["prefix"] == 1.0
    with pytest.raises(ValueError, match="2 reference sequences but 1 candidate"):
        token_agreement([[1], [2]], [[1]])


def test_bleu_of_identical_sequences_is_one():
    result = bleu([[1, 2, 3, 4, 5], [6, 7, 8, 9]], [[1, 2, 3, 4, 5], [6, 7, 8, 9]])
    assert result["bleu"] == 1.0 and result["precisions"] == [1.0] * 4
    assert result["brevity_penalty"] == 1.0 and result["max_n"] == 4


def test_bleu_known_answers():
    # one substitution at the end: n-gram precisions 5/6, 4/5, 3/4, 2/3
    result = bleu([[1, 2, 3, 4, 5, 6]], [[1, 2, 3, 4, 5, 7]])
    assert result["precisions"] == pytest.approx([5 / 6, 4 / 5, 3 / 4, 2 / 3])
    assert result["bleu"] == pytest.approx((5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)
    # a correct but short candidate: brevity penalty exp(1 - 8 / 4)
    result = bleu([[1, 2, 3, 4, 5, 6, 7, 8]], [[1, 2, 3, 4]])
    assert result["bleu"] == pytest.approx(math.exp(-1.0))
    # longer than the reference: no penalty, but the extra n-grams lower each precision
    result = bleu([[1, 2, 3, 4]], [[1, 2, 3, 4, 5]])
    assert result["brevity_penalty"] == 1.0
    assert result["precisions"] == pytest.approx([4 / 5, 3 / 4, 2 / 3, 1 / 2])


def test_bleu_clips_repeated_ngrams_and_pools_the_corpus():
    # "1 1 1 1" against "1 2 3 4": the unigram 1 counts once (clipped); no bigram matches
    result = bleu([[1, 2, 3, 4]], [[1, 1, 1, 1]])
    assert result["precisions"][:2] == [0.25, 0.0] and result["bleu"] == 0.0
    # corpus BLEU pools the counts before dividing (not a mean of sentence scores):
    # unigrams 4/4 + 2/4 -> 6/8, bigrams 3/3 + 0/3 -> 3/6, ...
    result = bleu([[1, 2, 3, 4], [5, 6, 7, 8]], [[1, 2, 3, 4], [5, 9, 7, 9]], max_n=2)
    assert result["precisions"] == pytest.approx([6 / 8, 3 / 6])
    assert result["bleu"] == pytest.approx(math.sqrt(6 / 8 * 3 / 6))


def test_bleu_of_short_sequences_uses_the_orders_they_have():
    # two-token sequences have no 3- or 4-grams on either side: BLEU-2
    result = bleu([[1, 2]], [[1, 2]])
    assert result["max_n"] == 2 and result["bleu"] == 1.0
    # a candidate with nothing at all
    assert bleu([[1, 2]], [[]])["bleu"] == 0.0
    assert bleu([[]], [[]])["bleu"] == 1.0
    with pytest.raises(ValueError, match="max_n must be at least 1"):
        bleu([[1]], [[1]], max_n=0)


def test_docstring_examples_hold():
    import doctest

    from calibration import branches, compare_generation, metrics

    for module in (branches, compare_generation, metrics):
        assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
