"""The engine protocol: feeds checked in one place, ORT sessions, fake engines."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends.engine import (
    Engine,
    EngineError,
    FakeEngine,
    OrtEngine,
    TensorSpec,
    check_feed,
)

SPECS = [TensorSpec("input_ids", "int64", ("batch", "sequence")),
         TensorSpec("attention_mask", "int64", ("batch", "sequence"))]


def test_check_feed_picks_declared_inputs_and_casts():
    feed = {"input_ids": np.ones((1, 4), np.int32), "attention_mask": np.ones((1, 4)),
            "token_type_ids": np.zeros((1, 4))}
    checked = check_feed(SPECS, feed)
    assert list(checked) == ["input_ids", "attention_mask"]
    assert all(v.dtype == np.int64 for v in checked.values())


def test_check_feed_errors_name_the_problem():
    with pytest.raises(EngineError, match="needs an input named 'attention_mask'"):
        check_feed(SPECS, {"input_ids": np.ones((1, 4))})
    with pytest.raises(EngineError, match="has 1 dims.*expects 2"):
        check_feed(SPECS, {"input_ids": np.ones(4), "attention_mask": np.ones((1, 4))})


def test_fake_and_ort_engines_fit_the_protocol(tiny_bundle):
    fake = FakeEngine(SPECS, [TensorSpec("y", "float32", ("batch",))],
                      lambda feed: {"y": feed["attention_mask"].sum(1).astype(np.float32)})
    assert isinstance(fake, Engine)
    out = fake.run({"input_ids": np.ones((2, 3)), "attention_mask": np.ones((2, 3))})
    assert out["y"].tolist() == [3, 3]
    ort_engine = OrtEngine(tiny_bundle("bert", "fill-mask") / "onnx" / "model.onnx", threads=1)
    assert isinstance(ort_engine, Engine)
    assert [s.name for s in ort_engine.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    out = ort_engine.run({"input_ids": np.array([[101, 7592, 102]]),
                          "attention_mask": np.ones((1, 3)), "token_type_ids": np.zeros((1, 3))})
    assert out["logits"].shape[:2] == (1, 3)


def test_missing_gpu_provider_says_what_to_install(tiny_bundle):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(EngineError, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        OrtEngine(tiny_bundle("bert", "fill-mask") / "onnx" / "model.onnx", device="cuda")
