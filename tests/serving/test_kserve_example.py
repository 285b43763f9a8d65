"""The KServe example (examples/kserve/): what can be checked without a cluster.

- the manifests parse, the InferenceServices name the ServingRuntime beside them and a model
  format it supports, and their storageUri is a scheme KServe's storage initializer reads;
- every flag the ServingRuntime passes to tritonserver is one the real tritonserver 2.51 (the
  one nvidia-pytriton bundles, the container's version) lists in its --help;
- the Dockerfile's base image is the Triton release edgeport's tests serve with;
- the `edgeport` commands in the comments parse with edgeport's own parsers.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

from runtime.cli.command import SUBCOMMANDS, _command_parser, _load

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kserve"
# Triton's container release -> its server version (NVIDIA's support matrix)
CONTAINER_VERSIONS = {"24.10": "2.51"}
BUNDLED_TRITON = "2.51"  # the tritonserver in nvidia-pytriton 0.7 (serving.launch)


def _documents() -> dict[str, list[dict]]:
    documents: dict[str, list[dict]] = {}
    for path in sorted(EXAMPLE.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            documents.setdefault(document["kind"], []).append(document)
    return documents


def test_the_manifests_fit_together():
    documents = _documents()
    (runtime,) = documents["ServingRuntime"]
    formats = {item["name"] for item in runtime["spec"]["supportedModelFormats"]}
    assert "v2" in runtime["spec"]["protocolVersions"]
    services = documents["InferenceService"]
    assert len(services) == 2
    for service in services:
        assert service["apiVersion"] == "serving.kserve.io/v1beta1"
        model = service["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        assert model["modelFormat"]["name"] in formats
        assert re.match(r"^(pvc|s3|gs|https?)://", model["storageUri"]), model["storageUri"]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"  # the name KServe looks for
    assert "--model-repository=/mnt/models" in container["args"]  # where KServe mounts it


def test_the_runtime_flags_are_tritonservers():
    pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
    from serving import launch

    try:
        launch.check_platform()
        server, libs = launch.distribution()
    except Exception as error:  # noqa: BLE001 - the reason to skip
        pytest.skip(f"the bundled tritonserver cannot run here: {error}")
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        [sysconfig.get_config_var("LIBDIR") or "", str(libs)]))
    done = subprocess.run([str(server / "bin" / "tritonserver"), "--help"], env=env,
                          capture_output=True, text=True, timeout=60)
    known = set(re.findall(r"--[a-z][a-z0-9-]+", done.stdout + done.stderr))
    assert "--model-repository" in known, done.stderr[-500:]
    (runtime,) = _documents()["ServingRuntime"]
    args = runtime["spec"]["containers"][0]["args"]
    assert args[0] == "tritonserver"
    for arg in args[1:]:
        assert arg.split("=")[0] in known, arg


def test_the_container_is_the_tested_triton():
    text = (EXAMPLE / "Dockerfile").read_text()
    release = re.search(r"^FROM nvcr\.io/nvidia/tritonserver:(\d+\.\d+)-py3$", text, re.M)
    assert release, "the Dockerfile's base image"
    assert CONTAINER_VERSIONS[release.group(1)] == BUNDLED_TRITON
    (runtime,) = _documents()["ServingRuntime"]
    assert runtime["spec"]["containers"][0]["image"].endswith(f":{release.group(1)}")


def test_the_commands_in_the_comments_parse():
    commands = [line.split("#", 1)[1].strip()
                for path in sorted(EXAMPLE.glob("*.yaml"))
                for line in path.read_text().splitlines()
                if line.lstrip().startswith("#") and "edgeport " in line
                and line.split("#", 1)[1].strip().startswith("edgeport ")]
    assert len(commands) >= 4
    for command in commands:
        argv = shlex.split(command)[1:]
        assert argv[0] in SUBCOMMANDS, command
        try:
            module = _load(argv[0])
        except Exception as error:  # noqa: BLE001 - an extra not installed here
            pytest.skip(f"`edgeport {argv[0]}` is not available: {error}")
        _command_parser(argv[0], module).parse_intermixed_args(argv[1:])
