"""A bundle is untrusted input: every path its manifest names stays inside it, every file a graph
loads is listed and hashed, and errors never tell about files outside the bundle.

Each case crafts a hostile bundle from a tiny exported one; the "victim" files live in the test's
own temp folder, never elsewhere on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from runtime import (
    Bundle,
    BundleNotFoundError,
    ChecksumError,
    EdgeportError,
    ManifestError,
    UnsafePathError,
    pipeline,
)
from runtime.bundle import file_sha256
from runtime.cli import main as edgeport

VICTIM_TEXT = "secret victim contents 0123456789"


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return Path(shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "bundle"))


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _write_manifest(bundle: Path, manifest: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _says_nothing_about(text: str, victim: Path) -> None:
    """An error may name a path it refused, never what lies there."""
    assert VICTIM_TEXT not in text
    assert file_sha256(victim)[:12] not in text
    assert str(victim.stat().st_size) not in text.replace(str(victim), "")


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "backslash", "dot", "empty"])
def test_a_variant_file_outside_the_bundle_is_refused_at_load(bundle_copy, victim, kind):
    named = {"absolute": str(victim), "dotdot": "../victim.txt",
             "backslash": "onnx\\..\\..\\victim.txt", "dot": "./onnx/model.onnx",
             "empty": ""}[kind]
    manifest = _manifest(bundle_copy)
    manifest["variants"]["evil"] = {"files": {"model": named}, "data_files": {}}
    manifest["checksums"][named] = file_sha256(victim)
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(ManifestError) as caught:
        Bundle.load(bundle_copy)
    assert "Note:" in str(caught.value)
    _says_nothing_about(str(caught.value), victim)


def test_quantize_overwrite_never_deletes_what_a_crafted_manifest_names(bundle_copy, victim,
                                                                       capsys):
    manifest = _manifest(bundle_copy)
    manifest["variants"]["int8"] = {"files": {"model": "../victim.txt"}, "data_files": {}}
    manifest["checksums"]["../victim.txt"] = file_sha256(victim)
    _write_manifest(bundle_copy, manifest)
    code = edgeport(["quantize", str(bundle_copy), "--recipe", "dynamic-int8", "--overwrite"])
    assert code != 0
    assert victim.read_text() == VICTIM_TEXT
    err = capsys.readouterr().err
    assert "'..'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["../../evil", "a/b", ".hidden", "x" * 200])
def test_graph_and_variant_names_that_would_leave_onnx_are_refused(bundle_copy, name):
    manifest = _manifest(bundle_copy)
    manifest["graphs"][name] = manifest["graphs"]["model"]
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(ManifestError, match="file name"):
        Bundle.load(bundle_copy)
    manifest = _manifest(bundle_copy)
    del manifest["graphs"][name]
    manifest["variants"][name] = manifest["variants"]["fp32"]
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(ManifestError, match="file name"):
        Bundle.load(bundle_copy)


def test_a_folder_symlinked_out_of_the_bundle_is_refused(bundle_copy, tmp_path, victim):
    outside = tmp_path / "elsewhere"
    shutil.move(bundle_copy / "onnx", outside)
    os.symlink(outside, bundle_copy / "onnx")
    with pytest.raises(UnsafePathError, match="symlink leads outside"):
        Bundle.load(bundle_copy)


def test_a_symlinked_file_is_allowed_as_the_hub_cache_makes_them(bundle_copy, tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    shutil.move(bundle_copy / "onnx" / "model.onnx", blobs / "abc123")
    os.symlink(blobs / "abc123", bundle_copy / "onnx" / "model.onnx")
    result = pipeline(model=bundle_copy)("a fine day")
    assert result[0]["label"]


def test_a_file_linked_out_of_the_bundle_tells_nothing_of_its_target(bundle_copy, victim,
                                                                    capsys):
    """A crafted bundle links its graph to a file of the user's: no error or summary tells its
    size, hash or existence."""
    graph = bundle_copy / "onnx" / "model.onnx"
    graph.unlink()
    os.symlink(victim, graph)
    errors = []
    for target in (victim, victim.with_name("absent")):
        os.unlink(graph)
        os.symlink(target, graph)
        bundle = Bundle.load(bundle_copy)  # loads: the link is looked at when verified
        with pytest.raises(ChecksumError) as caught:
            bundle.graph_path("model")
        errors.append(str(caught.value))
        _says_nothing_about(errors[-1], victim)
        assert bundle.summary()["variants"]["fp32"]["bytes"] is None
        assert edgeport(["inspect", str(bundle_copy), "--json"]) == 0
        _says_nothing_about(capsys.readouterr().out, victim)
    assert errors[0] == errors[1]  # present or absent: the same words


def test_reports_and_engines_folders_symlinked_out_are_refused(bundle_copy, tmp_path,
                                                             monkeypatch):
    from calibration import report
    from calibration.report import write_reports
    from runtime.backends.tensorrt.plans import engines_dir

    monkeypatch.setattr(report, "markdown_report", lambda r: "# report")
    monkeypatch.setattr(report, "html_report", lambda r: "<p>report</p>")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(bundle_copy / "reports")
    os.symlink(outside, bundle_copy / "reports")
    with pytest.raises(UnsafePathError):
        write_reports(Bundle.load(bundle_copy), {})
    os.symlink(outside, bundle_copy / "engines")
    with pytest.raises(UnsafePathError):
        engines_dir(bundle_copy)
    assert list(outside.iterdir()) == []


def test_read_json_names_stay_inside(bundle_copy, victim):
    bundle = Bundle.load(bundle_copy)
    with pytest.raises(UnsafePathError):
        bundle.read_json("../victim.txt")
    with pytest.raises(UnsafePathError):
        bundle.read_json(str(victim))


def test_inspect_reports_nothing_about_files_outside(bundle_copy, victim, capsys):
    manifest = _manifest(bundle_copy)
    manifest["variants"]["evil"] = {"files": {"model": "../victim.txt"}, "data_files": {}}
    manifest["checksums"]["../victim.txt"] = file_sha256(victim)
    _write_manifest(bundle_copy, manifest)
    assert edgeport(["inspect", str(bundle_copy)]) != 0
    captured = capsys.readouterr()
    _says_nothing_about(captured.out + captured.err, victim)


# --- integrity --------------------------------------------------------------------------------
def _with_external_data(bundle: Path, *, list_it: bool) -> Path:
    """Rewrite the fp32 graph with its weights in onnx/model.onnx_data."""
    import onnx

    graph = bundle / "onnx" / "model.onnx"
    model = onnx.load(str(graph))
    onnx.save_model(model, str(graph), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx_data", size_threshold=0)
    manifest = _manifest(bundle)
    manifest["checksums"]["onnx/model.onnx"] = file_sha256(graph)
    if list_it:
        manifest["checksums"]["onnx/model.onnx_data"] = file_sha256(graph.with_name(
            "model.onnx_data"))
        manifest["variants"]["fp32"]["data_files"] = {"model": ["onnx/model.onnx_data"]}
    _write_manifest(bundle, manifest)
    return graph.with_name("model.onnx_data")


def test_external_data_the_manifest_does_not_list_is_refused(bundle_copy):
    _with_external_data(bundle_copy, list_it=False)
    with pytest.raises(ManifestError, match="does not list"):
        Bundle.load(bundle_copy).graph_path("model")


def test_listed_external_data_is_hashed(bundle_copy):
    data = _with_external_data(bundle_copy, list_it=True)
    assert pipeline(model=bundle_copy)("a fine day")[0]["label"]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError):
        Bundle.load(bundle_copy).graph_path("model")


def test_a_file_swapped_in_place_within_one_process_is_caught(bundle_copy, monkeypatch):
    monkeypatch.setenv("EDGEPORT_VERIFY", "always")  # the per-user cache is tested below
    bundle = Bundle.load(bundle_copy)
    graph = bundle.graph_path("model")
    before = graph.stat()
    raw = bytearray(graph.read_bytes())
    raw[-1] ^= 0xFF  # same size; mtime put back below, as a tamperer would
    replacement = graph.with_name("swap")
    replacement.write_bytes(bytes(raw))
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, graph)
    assert graph.stat().st_size == before.st_size
    assert graph.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(ChecksumError):
        bundle.graph_path("model")


def _cache_file() -> Path:
    from runtime.bundle import _verified_cache

    return _verified_cache()


@pytest.mark.parametrize("kind", ["fifo", "deep", "huge", "list", "binary"])
def test_a_hostile_checksum_cache_is_ignored(bundle_copy, tmp_path, monkeypatch, kind):
    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path / "cache"))
    cache = _cache_file()
    cache.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(cache)
    elif kind == "deep":
        cache.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "huge":
        cache.write_bytes(b" " * (5 * 2**20) + b"{}")
    elif kind == "list":
        cache.write_text("[1, 2, 3]")
    else:
        cache.write_bytes(b"\xff\xfe\x00garbage")
    started = time.monotonic()
    assert pipeline(model=bundle_copy)("a fine day")[0]["label"]
    assert time.monotonic() - started < 60  # a FIFO read would hang forever


def test_a_remembered_checksum_does_not_cover_a_changed_file(bundle_copy, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path / "cache"))
    Bundle.load(bundle_copy).graph_path("model")  # remembered
    assert _cache_file().is_file()
    graph = bundle_copy / "onnx" / "model.onnx"
    raw = bytearray(graph.read_bytes())
    raw[-1] ^= 0xFF
    before = graph.stat()
    graph.write_bytes(bytes(raw))
    os.utime(graph, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(ChecksumError):
        Bundle.load(bundle_copy).graph_path("model")


def test_external_data_locations_are_read_as_onnx_writes_them(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from runtime.graph_files import graph_file_locations

    def branch(name: str):
        weight = numpy_helper.from_array(np.full((4,), 2.0, np.float32), f"{name}_w")
        return helper.make_graph([helper.make_node("Mul", ["x", f"{name}_w"], [f"{name}_y"])],
                                 name, [], [helper.make_tensor_value_info(
                                     f"{name}_y", TensorProto.FLOAT, [4])], [weight])

    outer = numpy_helper.from_array(np.ones((4,), np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x0", "bias"], ["x"]),
         helper.make_node("If", ["c"], ["y"], then_branch=branch("then"),
                          else_branch=branch("else"))],
        "g", [helper.make_tensor_value_info("x0", TensorProto.FLOAT, [4]),
              helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [outer])
    model = helper.make_model(graph)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)
    expected = {entry.value for tensor in onnx.external_data_helper._get_all_tensors(
        onnx.load(str(path), load_external_data=False))
        for entry in tensor.external_data if entry.key == "location"}
    assert len(expected) >= 3  # the outer initializer and one in each branch
    assert graph_file_locations(path) == expected


# --- malformed manifests -----------------------------------------------------------------------
def _mutations(manifest: dict):
    variant = manifest["variants"]["fp32"]
    yield "graphs as a list", {**manifest, "graphs": list(manifest["graphs"])}
    yield "variants null", {**manifest, "variants": None}
    yield "a variant without files", {**manifest, "variants": {"fp32": {"recipe": None}}}
    spec = manifest["graphs"]["model"]
    yield "dims as strings", {**manifest, "graphs": {"model": {**spec, "inputs": [
        {**spec["inputs"][0], "dims": "batch,sequence"}]}}}
    yield "an unknown dim name", {**manifest, "graphs": {"model": {**spec, "inputs": [
        {**spec["inputs"][0], "dims": ["batch", "seqence"]}]}}}
    yield "schema_version true", {**manifest, "schema_version": True}
    yield "schema_version 1.0", {**manifest, "schema_version": 1.0}
    yield "checksums not hex", {**manifest, "checksums": {"onnx/model.onnx": "zz"}}
    yield "a file with no checksum", {**manifest, "checksums": {}}
    yield "files naming an unknown graph", {**manifest, "variants": {"fp32": {
        **variant, "files": {"decoder": "onnx/model.onnx"}}}}
    yield "data_files not a list", {**manifest, "variants": {"fp32": {
        **variant, "data_files": {"model": "onnx/model.onnx"}}}}
    yield "task a number", {**manifest, "task": 7}
    yield "recipe a string", {**manifest, "variants": {"fp32": {**variant, "recipe": "x"}}}
    yield "source.checkpoint a number", {**manifest, "source": {"checkpoint": 5}}
    yield "source.architectures not names", {**manifest, "source": {
        "architectures": ["os.system('x')"]}}
    yield "a list", [manifest]


def test_every_malformed_manifest_is_one_manifest_error(bundle_copy):
    manifest = _manifest(bundle_copy)
    for what, broken in _mutations(manifest):
        _write_manifest(bundle_copy, broken)
        with pytest.raises(ManifestError) as caught:
            Bundle.load(bundle_copy)
        assert "Note:" in str(caught.value), what


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"a":' * 100_000 + "1" + "}" * 100_000,
                                  '{"schema_version": NaN}', "\xff\xfe"])
def test_deep_or_odd_json_is_a_manifest_error(bundle_copy, text):
    (bundle_copy / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape")
                                                if text.isascii() else b"\xff\xfe")
    with pytest.raises(ManifestError):
        Bundle.load(bundle_copy)


def test_a_manifest_that_is_a_fifo_or_huge_is_refused(bundle_copy):
    os.unlink(bundle_copy / "manifest.json")
    os.mkfifo(bundle_copy / "manifest.json")
    with pytest.raises(ManifestError, match="not a regular file"):
        Bundle.load(bundle_copy)
    os.unlink(bundle_copy / "manifest.json")
    with open(bundle_copy / "manifest.json", "wb") as handle:
        handle.truncate(17 * 2**20)  # sparse: no disk used
    with pytest.raises(ManifestError, match="over the limit"):
        Bundle.load(bundle_copy)


def test_config_json_of_a_bundle_must_be_an_object(bundle_copy):
    (bundle_copy / "config.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="not a JSON object"):
        Bundle.load(bundle_copy)
    (bundle_copy / "config.json").unlink()
    with pytest.raises(BundleNotFoundError):
        Bundle.load(bundle_copy)


def test_errors_are_edgeport_errors_with_a_note(bundle_copy):
    for text in ("null", "{}", '{"schema_version": 1}', "1e999"):
        (bundle_copy / "manifest.json").write_text(text)
        with pytest.raises(EdgeportError) as caught:
            Bundle.load(bundle_copy)
        assert "Note:" in str(caught.value)


def test_a_graph_naming_external_data_outside_is_refused_before_onnx_runtime(bundle_copy,
                                                                            victim):
    import onnx

    data = _with_external_data(bundle_copy, list_it=True)
    graph = data.with_name("model.onnx")
    model = onnx.load(str(graph), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../victim.txt"
    onnx.save_model(model, str(graph))
    manifest = _manifest(bundle_copy)
    manifest["checksums"]["onnx/model.onnx"] = file_sha256(graph)
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(UnsafePathError, match="external data") as caught:
        Bundle.load(bundle_copy).graph_path("model")
    _says_nothing_about(str(caught.value), victim)


@pytest.mark.parametrize("value", ["512", True, 10**15, -3, 1.5])
def test_tensorrt_profiles_take_only_sane_sizes_from_configs(bundle_copy, value):
    from runtime.backends.tensorrt.profiles import default_ranges

    config = json.loads((bundle_copy / "config.json").read_text())
    config["max_position_embeddings"] = value
    (bundle_copy / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((bundle_copy / "tokenizer_config.json").read_text())
    tokenizer["model_max_length"] = value
    (bundle_copy / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ManifestError, match="no maximum length"):
        default_ranges(Bundle.load(bundle_copy))
