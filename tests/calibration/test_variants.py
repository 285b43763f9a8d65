"""Variants are written beside the fp32 graph and recorded atomically in the manifest."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from calibration.variants import source_graphs, staging_for, write_variant
from runtime import Bundle, InputError, pipeline


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    return Bundle.load(shutil.copytree(tiny_bundle("bert", "text-classification"),
                                       tmp_path / "bundle"))


def _copy_variant(bundle, name, **kwargs):
    with staging_for(bundle) as staging:
        shutil.copy(bundle.graph_path("model", "fp32"), staging / "model.onnx")
        return write_variant(bundle, name, {"model": staging / "model.onnx"},
                             {"name": "copy"}, **kwargs)


def test_a_variant_lands_beside_fp32_and_runs(bundle):
    fp32_bytes = (bundle.path / "onnx" / "model.onnx").read_bytes()
    bundle = _copy_variant(bundle, "same")
    assert bundle.variants["same"]["files"] == {"model": "onnx/model_same.onnx"}
    assert "onnx/model_same.onnx" in bundle.manifest["checksums"]
    assert (bundle.path / "onnx" / "model.onnx").read_bytes() == fp32_bytes
    assert sorted(p.name for p in (bundle.path / "onnx").iterdir()) == [
        "model.onnx", "model_same.onnx"]  # no staging left behind
    text = "a variant runs like fp32"
    expected = pipeline(model=bundle.path)(text, top_k=None)
    got = pipeline(model=bundle.path, variant="same")(text, top_k=None)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected])


def test_names_are_checked(bundle):
    bundle = _copy_variant(bundle, "same")
    with pytest.raises(InputError, match="already has a variant 'same'.*--overwrite"):
        _copy_variant(bundle, "same")
    bundle = _copy_variant(bundle, "same", overwrite=True)
    assert list(bundle.variants) == ["fp32", "same"]
    with pytest.raises(InputError, match="never replaced"):
        _copy_variant(bundle, "fp32")
    with pytest.raises(InputError, match="not usable"):
        _copy_variant(bundle, "../evil")


def test_a_quantized_variant_is_no_source(bundle):
    with staging_for(bundle) as staging:
        shutil.copy(bundle.graph_path("model", "fp32"), staging / "model.onnx")
        bundle = write_variant(bundle, "int8", {"model": staging / "model.onnx"},
                               {"name": "dynamic-int8"})
    with pytest.raises(InputError, match="already quantized.*start from 'fp32'"):
        source_graphs(bundle, "int8")
    with pytest.raises(InputError, match="no variant 'int9'.*Did you mean 'int8'"):
        source_graphs(bundle, "int9")


def test_writes_from_a_stale_bundle_object_keep_other_variants(bundle):
    stale = bundle
    _copy_variant(bundle, "first")
    _copy_variant(stale, "second")  # the object predates "first"; the manifest on disk does not
    assert sorted(Bundle.load(bundle.path).variants) == ["first", "fp32", "second"]
