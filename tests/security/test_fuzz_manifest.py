"""Property-based fuzzing of manifest parsing: whatever a manifest.json holds, reading it gives a
Bundle or an EdgeportError, never another exception."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import Bundle, EdgeportError
from runtime.graph_files import external_data_locations
from runtime.manifest import validate_manifest

_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["batch", "sequence", "onnx/model.onnx", "../x", "/etc/passwd", "model",
                     "fp32", "float32", "int64", "a" * 64, "C:\\x", ".", ""]),
)
JSON = st.recursive(_LEAVES, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.text(max_size=10) | st.sampled_from(
        ["files", "data_files", "inputs", "outputs", "dims", "name", "dtype", "recipe",
         "model", "fp32", "onnx/model.onnx"]), children, max_size=4)), max_leaves=20)


def _paths(value, prefix=()):
    """Every (path of keys/indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@pytest.fixture(scope="module")
def good(tiny_bundle):
    path = tiny_bundle("bert", "text-classification")
    return path, json.loads((path / "manifest.json").read_text())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_manifest_is_valid_or_one_edgeport_error(good, data):
    _, manifest = good
    paths = list(_paths(manifest))
    mutated = manifest
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(mutated))
        where = data.draw(st.sampled_from(paths))
        mutated = _replace(mutated, where, data.draw(JSON))
    try:
        validate_manifest(mutated, "manifest.json")
    except EdgeportError:
        pass


@settings(max_examples=200, deadline=None)
@given(value=JSON)
def test_any_json_is_valid_or_one_edgeport_error(value):
    try:
        validate_manifest(value, "manifest.json")
    except EdgeportError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_loading_a_bundle_with_a_mutated_manifest(good, tmp_path_factory, data):
    """Past validation, a loaded bundle answers what pipelines ask of it without a TypeError."""
    source, manifest = good
    folder = tmp_path_factory.mktemp("fuzz") / "bundle"
    shutil.copytree(source, folder)
    where = data.draw(st.sampled_from(list(_paths(manifest))))
    mutated = _replace(manifest, where, data.draw(JSON))
    raw = data.draw(st.sampled_from(["json", "bytes"]))
    if raw == "json":
        (folder / "manifest.json").write_text(json.dumps(mutated))
    else:
        text = json.dumps(mutated).encode()
        cut = data.draw(st.integers(0, len(text)))
        (folder / "manifest.json").write_bytes(text[:cut])
    try:
        bundle = Bundle.load(folder)
        bundle.summary()
        for variant, info in bundle.variants.items():
            for graph in info["files"]:
                bundle.graph_path(graph, variant)
    except EdgeportError:
        pass


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_an_onnx_graph_give_locations_or_a_graph_load_error(raw):
    try:
        found = external_data_locations(raw)
    except EdgeportError:
        return
    assert isinstance(found, set)


def test_truncated_real_graph(tiny_bundle):
    data = (Path(tiny_bundle("bert", "text-classification")) / "onnx" / "model.onnx"
            ).read_bytes()
    for cut in (10, 1000, len(data) // 2, len(data) - 3):
        try:
            external_data_locations(data[:cut])
        except EdgeportError:
            pass
