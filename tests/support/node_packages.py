"""The npm releases of ONNX Runtime that the mobile tests run (onnxruntime-node, onnxruntime-web),
kept in .node/ (git-ignored) at the version the Makefile's node-deps target installs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / ".node"


def makefile_version() -> str:
    """ORT_NODE_VERSION in the Makefile: the version of every ONNX Runtime npm package."""
    match = re.search(r"^ORT_NODE_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, "the Makefile names the ONNX Runtime npm version (ORT_NODE_VERSION)"
    return match.group(1)


def npm_package(name: str) -> Path:
    """.node/node_modules/<name> at the Makefile's version, installed when missing (as `make
    node-deps` does); skips the test, saying why, where node or npm is absent."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node and npm are not installed: the {name} test needs them "
                    "(install Node.js to run it)")
    version = makefile_version()
    package = NODE_DIR / "node_modules" / name
    manifest = package / "package.json"
    if not manifest.is_file() or json.loads(manifest.read_text())["version"] != version:
        NODE_DIR.mkdir(exist_ok=True)
        subprocess.run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund",
                        "--silent", "--prefix", str(NODE_DIR), f"{name}@{version}"],
                       check=True, timeout=600)
    return package
