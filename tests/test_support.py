"""The test helpers themselves: a comparison that cannot fail proves nothing."""

from __future__ import annotations

import pytest
from compare import assert_same


def test_assert_same_catches_differences():
    good = [{"label": "positive", "score": 0.002, "start": 0}]
    assert_same([{"label": "positive", "score": 0.0020001, "start": 0}], good, rtol=1e-3)
    for bad in ([{"label": "negative", "score": 0.002, "start": 0}],
                [{"label": "positive", "score": 0.0022, "start": 0}],
                [{"label": "positive", "score": 0.002, "start": 0.0}],
                [{"label": "positive", "score": 0.002, "start": 1}],
                [{"score": 0.002, "label": "positive", "start": 0}],
                good[0], [good], []):
        with pytest.raises(AssertionError):
            assert_same(bad, good, rtol=1e-3)
