"""The web example `edgeport mobile` writes (examples/web/run.mjs) runs as written with
onnxruntime-web (its wasm backend, in Node.js) and gives Python ONNX Runtime's outputs.

`make test` installs onnxruntime-web into .node/ (git-ignored) when npm is present; run directly,
this test installs it there itself. It is skipped only where node or npm is absent.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from node_packages import NODE_DIR, npm_package

from runtime.cli import main

# Imports the example's run() and placeholderFeeds() as an app would, with the one setting Node.js
# needs (no wasm worker threads). Runs the example's own placeholder inputs with the model given
# as a file path, or the inputs of a JSON file with the model given as bytes; prints the inputs
# and outputs.
DRIVER = r"""
import * as ort from "onnxruntime-web";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [example, model, given] = process.argv.slice(2);
ort.env.wasm.numThreads = 1;
const { run, placeholderFeeds } = await import(pathToFileURL(example).href);
const ARRAYS = { int64: (d) => BigInt64Array.from(d, BigInt), int32: (d) => Int32Array.from(d),
                 float32: (d) => Float32Array.from(d) };
const dump = (tensors) => Object.fromEntries(Object.entries(tensors).map(([name, t]) =>
  [name, { dtype: t.type, dims: Array.from(t.dims), data: Array.from(t.data, Number) }]));
let feeds, results;
if (given) {
  feeds = {};
  for (const [name, t] of Object.entries(JSON.parse(readFileSync(given, "utf8")))) {
    feeds[name] = new ort.Tensor(t.dtype, ARRAYS[t.dtype](t.data), t.dims);
  }
  results = await run(new Uint8Array(readFileSync(model)), feeds);
} else {
  feeds = placeholderFeeds();
  results = await run(model);
}
process.stdout.write(JSON.stringify({ feeds: dump(feeds), outputs: dump(results) }));
"""


def run_example(folder, out, given=None) -> tuple[dict, dict]:
    """(feeds, outputs) of examples/web/run.mjs run in node, as numpy arrays."""
    driver = folder / "driver.mjs"
    driver.write_text(DRIVER)
    argv = ["node", str(driver), str(out / "examples/web/run.mjs"), str(out / "model.ort")]
    if given is not None:
        (folder / "feeds.json").write_text(json.dumps({
            name: {"dtype": str(value.dtype), "dims": list(value.shape),
                   "data": value.ravel().tolist()} for name, value in given.items()}))
        argv.append(str(folder / "feeds.json"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=folder)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    return tuple({name: np.array(t["data"], dtype=t["dtype"]).reshape(t["dims"])
                  for name, t in got[part].items()} for part in ("feeds", "outputs"))


@pytest.mark.parametrize("model_type, task, sizes", [
    ("bert", "text-classification", {"batch": 2, "sequence": 9}),
    ("vit", "image-classification", {"batch": 2}),
])
def test_web_example_runs_in_onnxruntime_web(tiny_bundle, tmp_path, capsys, model_type, task,
                                             sizes):
    from mobile.convert import sample_feeds
    from runtime.bundle import Bundle

    npm_package("onnxruntime-web")
    bundle = Bundle.load(tiny_bundle(model_type, task))
    out = tmp_path / "out"
    status = main(["mobile", str(bundle.path), "-o", str(out)])
    assert status == 0, capsys.readouterr().err
    report = json.loads((out / "mobile_report.json").read_text())
    # the example's bare `import "onnxruntime-web"` resolves from the folders above it
    (tmp_path / "node_modules").symlink_to(NODE_DIR / "node_modules", target_is_directory=True)
    session = ort.InferenceSession(str(out / "model.ort"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == [o["name"] for o in report["outputs"]]

    # as written: its placeholder inputs, the model as a file path
    feeds, got_placeholder = run_example(tmp_path, out)
    assert {n: (v.dtype.name, v.ndim) for n, v in feeds.items()} == {
        i["name"]: (i["dtype"], len(i["dims"])) for i in report["inputs"]}
    want_placeholder = dict(zip(names, session.run(None, feeds)))
    # with an app's inputs at other sizes, the model as bytes
    given = sample_feeds(bundle, "model", sizes, seed=11)
    _, got_given = run_example(tmp_path, out, given)
    want_given = dict(zip(names, session.run(None, given)))
    for got, want in ((got_placeholder, want_placeholder), (got_given, want_given)):
        assert list(got) == names
        for name, value in want.items():
            assert got[name].shape == value.shape, name
            np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=0, err_msg=name)
    assert got_given["logits"].shape[0] == sizes["batch"]
    assert not np.allclose(got_given["logits"][0], got_given["logits"][1])  # inputs matter
