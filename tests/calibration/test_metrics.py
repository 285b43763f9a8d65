"""compare's metrics on hand-made cases with known answers."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from calibration import metrics


def test_docstring_examples_hold():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20 and result.failed == 0


def test_one_flip_in_ten():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(10, 3))
    candidate = reference + rng.normal(scale=1e-3, size=(10, 3))
    top = reference[7].argmax()
    candidate[7, (top + 1) % 3] = reference[7, top] + 1.0  # another class wins at sample 7
    result = metrics.top1_agreement(reference, candidate)
    assert result == {"agreement": 0.9, "flips": [7], "count": 10}
    assert metrics.top1_agreement(reference, reference)["flips"] == []
    with pytest.raises(ValueError, match="shapes|samples, classes"):
        metrics.top1_agreement(reference, candidate[:5])


def test_position_agreement_counts_only_the_chosen_positions():
    reference = np.eye(5)[[[0, 1, 2, 3]]]
    candidate = np.eye(5)[[[0, 4, 4, 3]]]
    assert metrics.position_agreement(reference, candidate, [[True] * 4]) == (2, 4)
    assert metrics.position_agreement(reference, candidate, [[True, False, False, True]]) == (2, 2)


@pytest.mark.parametrize("labels, spans", [
    (["O", "B-PER", "I-PER", "O"], {(1, 2, "PER")}),
    (["B-PER", "B-PER"], {(0, 0, "PER"), (1, 1, "PER")}),
    (["I-LOC", "I-LOC", "O"], {(0, 1, "LOC")}),               # I- after O starts an entity
    (["B-PER", "I-LOC"], {(0, 0, "PER"), (1, 1, "LOC")}),      # a type change splits
    (["B-ORG", "I-ORG", "I-ORG"], {(0, 2, "ORG")}),            # runs to the end
    (["LABEL_1", "LABEL_1", "LABEL_2", "O"], {(0, 1, "LABEL_1"), (2, 2, "LABEL_2")}),
    (["O", "O"], set()),
    ([], set()),
])
def test_bio_spans(labels, spans):
    assert metrics.bio_spans(labels) == spans


def test_entity_f1_of_hand_made_sequences():
    reference = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O"]]
    # one entity exact, one with the wrong type, one cut short, one extra
    candidate = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "B-LOC"]]
    result = metrics.entity_f1(reference, candidate)
    assert result["entities"] == 3
    assert result["precision"] == pytest.approx(2 / 4)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert metrics.entity_f1(reference, reference)["f1"] == 1.0
    assert metrics.entity_f1([["O", "O"]], [["O", "O"]])["f1"] == 1.0  # nothing to find
    assert metrics.entity_f1([["O", "O"]], [["B-PER", "O"]])["f1"] == 0.0
    assert metrics.entity_f1([["B-PER"]], [["O"]])["recall"] == 0.0
    # a span with the right type but one token short is a miss, not half a hit
    assert metrics.entity_f1([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0.0


def test_best_span_stays_valid():
    start = np.array([9.0, 1.0, 5.0, 0.0, 0.0, 0.0])
    end = np.array([0.0, 8.0, 0.0, 0.0, 0.0, 7.0])
    assert metrics.best_span(start, end) == (0, 1)
    # position 0 is not in the context: the best remaining pair
    context = [False, True, True, True, True, True]
    assert metrics.best_span(start, end, context) == (2, 5)
    assert metrics.best_span(start, end, [False, True, False, False, False, False]) == (1, 1)
    # (2, 5) is four tokens long: too long for max_length=3
    assert metrics.best_span(start, end, context, max_length=3) == (1, 1)
    # an end before the start never wins, however high
    assert metrics.best_span([0.0, 9.0], [9.0, 1.0]) == (1, 1)  # (1, 0) would score 18
    assert metrics.best_span(start, end, [False] * 6) == (-1, -1)


def test_span_exact_match_and_f1():
    reference = [(3, 6), (2, 2), (0, 4), (5, 5)]
    candidate = [(5, 8), (2, 2), (6, 9), (5, 5)]
    result = metrics.span_agreement(reference, candidate)
    assert result["exact_match"] == 0.5
    # (3,6) vs (5,8): 2 shared of 4 and 4 tokens -> 0.5; disjoint -> 0
    assert result["f1"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert result["changed"] == [0, 2]
    assert metrics.span_overlap_f1((0, 9), (0, 0)) == pytest.approx(2 * 1 * 0.1 / 1.1)
    assert metrics.span_overlap_f1((-1, -1), (-1, -1)) == 1.0
    assert metrics.span_overlap_f1((-1, -1), (1, 2)) == 0.0


def test_context_positions():
    ids = np.array([101, 5, 6, 102, 7, 8, 9, 102, 0, 0])
    types = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
    mask = np.array([1] * 8 + [0, 0])
    expected = [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    special = {0, 101, 102}
    assert metrics.context_positions(ids, special, types, mask).astype(int).tolist() == expected
    assert metrics.context_positions(ids, special, None, mask).astype(int).tolist() == expected
    # RoBERTa style: two separators between question and context, no token types
    roberta = np.array([0, 5, 6, 2, 2, 7, 8, 2])
    assert metrics.context_positions(roberta, {0, 2}).astype(int).tolist() == [
        0, 0, 0, 0, 0, 1, 1, 0]
    assert metrics.context_positions(roberta, {0, 2}, question_first=False).astype(
        int).tolist() == [0, 1, 1, 0, 0, 0, 0, 0]


def test_sqnr_cosine_and_errors_of_known_arrays():
    reference = np.ones(4)
    candidate = reference + 0.1  # noise power 0.04 against signal power 4: 100x, 20 dB
    assert metrics.sqnr_db(reference, candidate) == pytest.approx(20.0)
    assert metrics.sqnr_db(reference, reference) == math.inf
    assert metrics.max_abs_error(reference, candidate) == pytest.approx(0.1)
    assert metrics.mean_abs_error(reference, candidate) == pytest.approx(0.1)
    assert metrics.relative_error(reference, candidate) == pytest.approx(0.1)
    assert metrics.cosine_similarity(reference, candidate) == pytest.approx(1.0)
    assert metrics.cosine_similarity([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert metrics.cosine_similarity([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)
    assert metrics.cosine_similarity([1.0, 2.0], [3.0, 6.0]) == pytest.approx(1.0)
    assert metrics.cosine_similarity([0.0], [1.0]) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        metrics.sqnr_db(np.ones(3), np.ones(4))


def test_histogram_counts_every_element():
    reference = np.zeros(6)
    candidate = np.array([0.0, 0.0, 1e-12, 3e-3, 5.0, 1e6])
    counts, zeros = metrics.abs_error_histogram(reference, candidate)
    edges = metrics.histogram_edges()
    assert zeros == 2 and counts.sum() == 4 and len(counts) == len(edges) - 1
    assert counts[0] == 1 and counts[-1] == 1  # out of range: clamped into the end bins
    assert edges[np.flatnonzero(counts)].tolist() == [-9.0, -3.0, 0.5, 1.5]


def test_embedding_cosines_and_pooling():
    hidden = np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    pooled = metrics.mean_pool(hidden, np.array([[1, 1, 0]]))
    np.testing.assert_allclose(pooled, [[0.5, 0.5]])
    result = metrics.embedding_cosines([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
                                       [[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    assert result["min"] == pytest.approx(0.0) and result["worst"] == 2
    assert result["mean"] == pytest.approx(2 / 3)


def test_latency_summary():
    summary = metrics.latency_summary([0.010] * 9 + [0.100])
    assert summary["median_ms"] == pytest.approx(10.0)
    assert summary["p90_ms"] == pytest.approx(19.0)  # numpy's linear interpolation
    with pytest.raises(ValueError):
        metrics.latency_summary([])


def test_error_growth_charges_the_node_where_error_enters():
    nodes = [
        {"name": "embed", "op_type": "Gather", "inputs": ["w_embed", "ids"], "outputs": ["e"]},
        {"name": "shape", "op_type": "Shape", "inputs": ["e"], "outputs": ["s"]},
        {"name": "mm", "op_type": "MatMul", "inputs": ["e", "w1"], "outputs": ["m"]},
        # fused away in the variant: not measured, inherits the error of its input
        {"name": "add", "op_type": "Add", "inputs": ["m", "b1"], "outputs": ["a"]},
        {"name": "reshape", "op_type": "Reshape", "inputs": ["a", "s"], "outputs": ["r"]},
        {"name": "norm", "op_type": "LayerNorm", "inputs": ["r"], "outputs": ["n"]},
    ]
    errors = {"e": 0.001, "m": 0.2, "r": 0.21, "n": 0.05}
    rows = metrics.error_growth(nodes, errors, sources=["ids"], exact=["s"])
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["embed", "mm", "reshape", "norm"]
    assert by_name["embed"]["growth"] == pytest.approx(0.001)   # weights carry no input error
    assert by_name["mm"]["growth"] == pytest.approx(0.199)
    assert by_name["reshape"]["input_error"] == pytest.approx(0.2)  # through the unmeasured add
    assert by_name["reshape"]["growth"] == pytest.approx(0.01)
    assert by_name["norm"]["growth"] == pytest.approx(-0.16)
    assert max(rows, key=lambda r: r["growth"])["name"] == "mm"


def test_error_growth_charges_changed_constants_to_their_reader():
    nodes = [
        {"name": "const", "op_type": "Constant", "inputs": [], "outputs": ["c"]},
        {"name": "cast_w", "op_type": "Cast", "inputs": ["w"], "outputs": ["w16"]},
        {"name": "mul", "op_type": "Mul", "inputs": ["x", "c"], "outputs": ["m"]},
        {"name": "mm", "op_type": "MatMul", "inputs": ["m", "w16"], "outputs": ["y"]},
    ]
    # the constant and the cast weight changed (fp16), but they are weights, not activations
    errors = {"c": 1.0, "w16": 0.5, "m": 0.001, "y": 0.01}
    rows = metrics.error_growth(nodes, errors, sources=["x"])
    assert [r["name"] for r in rows] == ["mul", "mm"]
    assert rows[0]["growth"] == pytest.approx(0.001)
    assert rows[1]["input_error"] == pytest.approx(0.001)
    assert rows[1]["growth"] == pytest.approx(0.009)
