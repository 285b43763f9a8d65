"""The version floors in pyproject carry the external-data protections edgeport leans on:
ONNX Runtime 1.25 refuses external data that escapes the model's folder (from a path since 1.24,
from bytes since 1.25); onnx 1.21 refuses such paths, symlinks and hard-linked data files."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {"onnxruntime": (1, 25), "onnx": (1, 21)}


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()))


def test_pyproject_states_the_floors():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in extra]
    seen = set()
    for requirement in requirements:
        name = requirement.split(">=")[0].strip().lower()
        if name in FLOORS:
            assert ">=" in requirement, requirement
            assert _version(requirement.split(">=")[1]) >= FLOORS[name], requirement
            seen.add(name)
    assert seen == set(FLOORS)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_the_installed_versions_meet_them(name):
    assert _version(metadata.version(name)) >= FLOORS[name]


def test_onnx_runtime_itself_refuses_external_data_out_of_the_folder(tmp_path):
    """The last line behind edgeport's own checks: ONNX Runtime loading a crafted graph."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4,), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              [weight])
    folder = tmp_path / "bundle"
    folder.mkdir()
    onnx.save_model(helper.make_model(graph, ir_version=10, opset_imports=[
        helper.make_opsetid("", 17)]), str(folder / "m.onnx"),
                    save_as_external_data=True, location="m.data", size_threshold=0)
    (tmp_path / "outside.data").write_bytes((folder / "m.data").read_bytes())
    model = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../outside.data"
    onnx.save_model(model, str(folder / "m.onnx"))
    with pytest.raises(Exception, match="escapes"):
        ort.InferenceSession(str(folder / "m.onnx"), providers=["CPUExecutionProvider"])
