"""Installing edgeport must not install torch: the base dependencies are the runtime's alone."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    for stop in "<>=!~;[ ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower()


def test_base_dependencies_are_the_runtimes_alone():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the package itself supports 3.10
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    assert base == {"numpy", "onnxruntime", "tokenizers", "pillow", "soundfile", "soxr",
                    "jinja2"}  # chat templates
    export = {_name(r) for r in project["optional-dependencies"]["export"]}
    assert {_name(r) for r in project["optional-dependencies"]["quantize"]} == {
        "onnx", "onnx-ir", "tqdm", "rapidfuzz"}
    assert {"torch", "transformers", "optimum-onnx", "onnx"} <= export
    assert project["scripts"]["edgeport"] == "runtime.cli:main"


def test_constraints_pin_what_the_issue_names():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == "2.13.0" and pins["transformers"] == "4.57.6"
    assert pins["optimum-onnx"] == "0.1.0"
    for name in ("onnxruntime", "onnx", "tokenizers", "numpy"):
        assert name in pins


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
