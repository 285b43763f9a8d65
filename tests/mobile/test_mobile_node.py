"""model.ort loads and runs in onnxruntime-node (npm: what web and React Native apps run) with
the outputs of Python's ONNX Runtime.

`make test` installs onnxruntime-node into .node/ (git-ignored) when npm is present; run
directly, this test installs it there itself. It is skipped only where node or npm is absent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from node_packages import makefile_version, npm_package

# Loads a model with onnxruntime-node, feeds it the inputs of a JSON file, prints the outputs.
RUNNER = r"""
const ort = require(process.argv[2]);
const fs = require("fs");
const ARRAYS = { int64: (d) => BigInt64Array.from(d, BigInt), int32: (d) => Int32Array.from(d),
                 float32: (d) => Float32Array.from(d) };
(async () => {
  const session = await ort.InferenceSession.create(process.argv[3]);
  const given = JSON.parse(fs.readFileSync(process.argv[4], "utf8"));
  const feeds = {};
  for (const [name, t] of Object.entries(given)) {
    feeds[name] = new ort.Tensor(t.dtype, ARRAYS[t.dtype](t.data), t.dims);
  }
  const results = await session.run(feeds);
  const out = {};
  for (const [name, t] of Object.entries(results)) {
    out[name] = { dims: Array.from(t.dims), data: Array.from(t.data, Number) };
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def test_versions_agree():
    """The Makefile installs the onnxruntime-node the README of a mobile folder names, the npm
    release of the Python onnxruntime that converts."""
    from mobile.examples import PACKAGES

    assert PACKAGES["node"][0] == f"onnxruntime-node@{makefile_version()}"
    assert makefile_version().split(".")[:2] == ort.__version__.split(".")[:2]


@pytest.fixture(scope="module")
def onnxruntime_node() -> Path:
    return npm_package("onnxruntime-node")


def node_outputs(package: Path, model: Path, feeds: dict, folder: Path) -> dict:
    script, given = folder / "run.js", folder / "feeds.json"
    script.write_text(RUNNER)
    given.write_text(json.dumps({
        name: {"dtype": str(value.dtype), "dims": list(value.shape),
               "data": value.ravel().tolist()} for name, value in feeds.items()}))
    done = subprocess.run(["node", str(script), str(package), str(model), str(given)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {name: np.array(t["data"], dtype=np.float64).reshape(t["dims"])
            for name, t in json.loads(done.stdout).items()}


@pytest.mark.parametrize("model_type, task, shapes", [
    ("bert", "text-classification", ["batch=1", "sequence=12"]),
    ("vit", "image-classification", []),
])
def test_model_ort_in_onnxruntime_node(onnxruntime_node, tiny_bundle, tmp_path, model_type,
                                       task, shapes):
    from mobile.build import mobile_from_bundle
    from mobile.convert import sample_feeds
    from runtime.bundle import Bundle

    bundle = Bundle.load(tiny_bundle(model_type, task))
    out = tmp_path / "out"
    mobile_from_bundle(bundle.path, out, shapes=shapes)
    sizes = {"batch": 2, "sequence": 9} if model_type == "bert" else {"batch": 2}
    models = [(out / "model.ort", sizes)]
    if shapes:
        models.append((out / "model_fixed.ort", {"batch": 1, "sequence": 12}))
    for model, at in models:
        feeds = sample_feeds(bundle, "model", at, seed=7)
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        got = node_outputs(onnxruntime_node, model, feeds, tmp_path)
        assert set(got) == set(want)
        for name, value in want.items():
            assert got[name].shape == value.shape
            np.testing.assert_allclose(got[name], value, atol=1e-5, rtol=0)
