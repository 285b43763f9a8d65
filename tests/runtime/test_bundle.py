"""Reading a bundle validates it: each broken bundle is refused with a clear error."""

from __future__ import annotations

import json
import shutil

import pytest

from runtime import (
    Bundle,
    BundleNotFoundError,
    ChecksumError,
    GraphLoadError,
    InputError,
    ManifestError,
    TaskError,
    pipeline,
)
from runtime.bundle import file_sha256


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    """A fresh copy of a tiny text-classification bundle, to break."""
    return shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "bundle")


def _edit_manifest(path, **changes):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_good_bundle_loads_and_runs(bundle_copy):
    bundle = Bundle.load(bundle_copy)
    assert bundle.task == "text-classification"
    assert bundle.summary()["variants"]["fp32"]["bytes"] > 0
    result = pipeline(model=bundle_copy)("a fine day")
    assert [r["label"] for r in result][0] in {"negative", "neutral", "positive"}


def test_missing_directory_and_manifest(tmp_path):
    with pytest.raises(BundleNotFoundError, match="edgeport export"):
        Bundle.load(tmp_path / "nope")
    with pytest.raises(ManifestError, match="no manifest.json"):
        Bundle.load(tmp_path)


def test_unknown_schema_version(bundle_copy):
    _edit_manifest(bundle_copy, schema_version=99)
    with pytest.raises(ManifestError, match="schema_version 99.*reads schema version 1"):
        Bundle.load(bundle_copy)


def test_corrupt_manifest(bundle_copy):
    (bundle_copy / "manifest.json").write_text('{"schema_version": 1, "task":')
    with pytest.raises(ManifestError, match="not valid JSON"):
        Bundle.load(bundle_copy)


def test_missing_graph_file(bundle_copy):
    (bundle_copy / "onnx" / "model.onnx").unlink()
    with pytest.raises(BundleNotFoundError, match="missing files.*onnx/model.onnx"):
        Bundle.load(bundle_copy)


def test_checksum_mismatch(bundle_copy):
    graph = bundle_copy / "onnx" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a weight
    graph.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="does not match the manifest.*export the bundle again"):
        pipeline(model=bundle_copy)


def _hashes(monkeypatch) -> list:
    """Count the graph files hashed from now on."""
    from runtime import bundle as module

    calls = []
    real = module.file_sha256
    monkeypatch.setattr(module, "file_sha256", lambda path: calls.append(path) or real(path))
    return calls


def test_a_verified_file_is_not_hashed_again_in_a_new_process(bundle_copy, tmp_path,
                                                              monkeypatch):
    """What a later process finds in the per-user cache (a new Bundle stands in for it): the
    same file is not hashed again; a changed one is, and is refused."""
    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path / "cache"))
    hashed = _hashes(monkeypatch)
    Bundle.load(bundle_copy).graph_path()
    assert len(hashed) == 1 and (tmp_path / "cache" / "verified-checksums.json").is_file()
    Bundle.load(bundle_copy).graph_path()
    assert len(hashed) == 1
    monkeypatch.setenv("EDGEPORT_VERIFY", "always")
    Bundle.load(bundle_copy).graph_path()
    assert len(hashed) == 2
    monkeypatch.delenv("EDGEPORT_VERIFY")
    graph = bundle_copy / "onnx" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-100] ^= 0xFF  # the same size, written in place
    graph.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="does not match the manifest"):
        Bundle.load(bundle_copy).graph_path()
    assert len(hashed) == 3


def test_an_unusable_verification_cache_only_costs_a_hash(bundle_copy, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("EDGEPORT_CACHE", str(blocker / "cache"))
    hashed = _hashes(monkeypatch)
    for _ in range(2):
        assert Bundle.load(bundle_copy).graph_path().is_file()
    assert len(hashed) == 2
    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path))
    (tmp_path / "verified-checksums.json").write_text("[not json")
    assert Bundle.load(bundle_copy).graph_path().is_file()
    assert json.loads((tmp_path / "verified-checksums.json").read_text())  # rewritten whole


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_onnx_with_matching_checksum_is_a_load_error(bundle_copy, damage):
    graph = bundle_copy / "onnx" / "model.onnx"
    data = graph.read_bytes()
    graph.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"not an onnx file")
    _edit_manifest(bundle_copy, checksums={"onnx/model.onnx": file_sha256(graph)})
    with pytest.raises(GraphLoadError, match="could not load the graph.*corrupt or truncated"):
        pipeline(model=bundle_copy)


def test_missing_tokenizer(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleNotFoundError, match="No tokenizer.json"):
        pipeline(model=bundle_copy)


def test_missing_config(bundle_copy):
    (bundle_copy / "config.json").unlink()
    with pytest.raises(BundleNotFoundError, match="config.json"):
        Bundle.load(bundle_copy)


def test_task_the_bundle_does_not_serve(bundle_copy):
    with pytest.raises(TaskError, match="serves 'text-classification', not 'fill-mask'"):
        pipeline("fill-mask", model=bundle_copy)
    with pytest.raises(TaskError, match="Did you mean 'text-classification'"):
        pipeline("text-clasification", model=bundle_copy)
    # transformers' aliases name the same task
    assert pipeline("sentiment-analysis", model=bundle_copy).task == "text-classification"


def test_unknown_variant_and_device(bundle_copy):
    with pytest.raises(InputError, match="no variant 'int8'.*fp32"):
        pipeline(model=bundle_copy, variant="int8")
    with pytest.raises(InputError, match="Unknown device 'cdua'.*cuda"):
        pipeline(model=bundle_copy, device="cdua")


def test_pipeline_needs_a_bundle():
    with pytest.raises(InputError, match="model=BUNDLE"):
        pipeline("text-classification")
