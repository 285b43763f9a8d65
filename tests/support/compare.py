"""Comparing runtime results with transformers' pipeline results."""

from __future__ import annotations

import numpy as np


def assert_same(actual, expected, where="result", *, atol=1e-4, rtol=None):
    """Same structure, key order, types and values; floats within ``atol`` (and, with ``rtol``,
    within that fraction of the expected value plus 1e-7, for small scores). transformers
    sometimes gives numpy floats; the runtime always gives Python floats (JSON-ready)."""
    if isinstance(expected, (float, np.floating)):
        assert type(actual) is float, f"{where}: {actual!r} is not a float"
        diff = abs(actual - float(expected))
        assert diff <= atol, f"{where}: {actual} != {expected}"
        if rtol is not None:
            assert diff <= rtol * abs(expected) + 1e-7, f"{where}: {actual} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a dict"
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]", atol=atol, rtol=rtol)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), \
            f"{where}: {len(actual)} items != {len(expected)}\n{actual}\n{expected}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{i}]", atol=atol, rtol=rtol)
    else:
        assert type(actual) is type(expected) and actual == expected, \
            f"{where}: {actual!r} != {expected!r}"


def assert_same_small(actual, expected, where="result"):
    """As assert_same, and small scores within 0.1% (fill-mask and classification scores)."""
    assert_same(actual, expected, where, rtol=1e-3)
