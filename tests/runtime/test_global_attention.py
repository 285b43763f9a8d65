"""Longformer's global attention mask as the runtime makes it (runtime/text/global_attention.py);
against transformers' heads in tests/exporter/test_long_text_export.py and the task tests."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from runtime.errors import BundleError, InputError
from runtime.text import global_attention
from runtime.text.global_attention import global_attention_mask


def test_doctests():
    assert doctest.testmod(global_attention).failed == 0


def test_question_tokens_per_row():
    ids = np.array([[0, 5, 6, 7, 2, 2, 9, 2, 1, 1],   # right-padded
                    [0, 5, 2, 2, 9, 9, 9, 9, 9, 2]])
    expected = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(global_attention_mask("question", ids, sep_token_id=2),
                                  expected)
    assert global_attention_mask("first", ids, sep_token_id=None).sum() == 2


@pytest.mark.parametrize("rule, ids, sep, error, match", [
    ("question", [[0, 5, 2, 2, 9, 2, 2]], 2, InputError, "exactly three separator tokens"),
    ("question", [[0, 5, 2, 9, 1]], 2, InputError, r"got \[1\]"),
    ("question", [[0, 5, 2, 2, 9, 2]], None, BundleError, "sep_token_id=None"),
    ("question", [[0, 5, 2, 2, 9, 2]], "2", BundleError, "not a token id"),
    ("everything", [[0, 5, 2]], 2, BundleError, "Note: known are question, first"),
    (None, [[0, 5, 2]], 2, BundleError, "global attention 'None'"),
])
def test_errors(rule, ids, sep, error, match):
    with pytest.raises(error, match=match):
        global_attention_mask(rule, np.array(ids), sep_token_id=sep)
