"""OpenVINO's compiled-model cache in a bundle: one folder per graph, variant, device,
precision and OpenVINO version under ``engines/openvino/``, with a sidecar that says what it
was compiled from and for, and the sha256 of every file OpenVINO wrote into it.

OpenVINO keys its cache blobs by a hash of the model file's path and the compile options; that
does not notice a graph file replaced in place, nor a bundle copied to another CPU. So the
sidecar is checked before OpenVINO may read the folder: a sidecar that does not match (another
source graph, device, precision or OpenVINO version, or a blob that changed) means the folder
is compiled anew into a fresh temp folder beside it, which then replaces it in one rename. A
bundle that cannot be written (read-only media) runs without the cache, with one warning.

>>> facts = DeviceFacts("CPU", "Intel Xeon", "bf16", True, "2026.4.1")
>>> cache_name("model", "qdq", facts)
'model.qdq.cpu.bf16.ov2026.4.1'
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from ...bundle import Bundle, file_sha256, write_json_atomic
from ...errors import EdgeportError, UnsafePathError
from ...files import exchange, inside, read_json_file, safe_name, scratch_beside
from .libs import DeviceFacts

CACHE = "engines/openvino"
SIDECAR = "edgeport-cache.json"

# What a sidecar must hold, and of what type, for its folder to be used at all.
_SIDECAR_KEYS = {"graph": str, "variant": str, "source": str, "source_sha256": str,
                 "device": str, "full_name": str, "precision": str, "openvino": str,
                 "files": dict}

_warned: set[str] = set()  # bundles told once that they run without a cache


def cache_name(graph: str, variant: str, facts: DeviceFacts, branch: str | None = None) -> str:
    """``GRAPH[.BRANCH].VARIANT.DEVICE.PRECISION.ovVERSION``: the folder of one compiled
    model; BRANCH names the branch of a merged decoder it runs (``no_past``, ``with_past``)."""
    name = safe_name(graph, what="A graph name")
    if branch is not None:
        name += "." + safe_name(branch, what="A branch name")
    return (f"{name}.{safe_name(variant, what='A variant name')}.{facts.device.lower()}"
            f".{facts.precision}.ov{facts.openvino}")


def sidecar_for(bundle: Bundle, graph: str, variant: str, facts: DeviceFacts,
                branch: str | None = None) -> dict:
    """What a cache folder must have been compiled from and for (the files are added when it
    is written)."""
    from ...version import __version__

    source = bundle.graph_path(graph, variant).relative_to(bundle.path).as_posix()
    return {"graph": graph, "branch": branch, "variant": variant, "source": source,
            "source_sha256": bundle.manifest["checksums"][source], "device": facts.device,
            "full_name": facts.full_name, "precision": facts.precision,
            "openvino": facts.openvino, "edgeport": __version__}


def cache_problems(folder: Path, expected: dict) -> list[str]:
    """Why the cache folder cannot be used for ``expected``; [] when it can."""
    try:
        sidecar = read_json_file(folder / SIDECAR, "An OpenVINO cache sidecar",
                                 max_bytes=2**20, expect=dict)
    except EdgeportError:
        return [f"it has no readable {SIDECAR}"]
    if not all(isinstance(sidecar.get(k), t) for k, t in _SIDECAR_KEYS.items()):
        return [f"its {SIDECAR} is not of the expected shape"]
    problems = [f"it was compiled with {key} {sidecar.get(key)!r}, not {expected[key]!r}"
                for key in [*_SIDECAR_KEYS, "branch"]
                if key != "files" and sidecar.get(key) != expected[key]]
    if problems:
        return problems
    present = {p.name for p in folder.iterdir() if p.name != SIDECAR}
    if present != set(sidecar["files"]):
        return [f"it holds {sorted(present)}, and its sidecar lists {sorted(sidecar['files'])}"]
    for name, sha in sidecar["files"].items():
        path = folder / name
        if path.is_symlink() or not path.is_file() or file_sha256(path) != sha:
            return [f"its file {name} changed after it was compiled"]
    return []


def compile_cached(bundle: Bundle, graph: str, variant: str, facts: DeviceFacts, compile_with,
                   branch: str | None = None):
    """``compile_with(cache_dir)`` with OpenVINO's cache in the bundle: the folder for these
    facts when its sidecar matches; else a fresh one, compiled into a temp folder and renamed
    into place. ``cache_dir`` is None (no cache) when the bundle cannot be written."""
    expected = sidecar_for(bundle, graph, variant, facts, branch)
    try:
        root = inside(bundle.path, CACHE, what="The bundle's OpenVINO cache folder",
                      directory=True)
        folder = root / cache_name(graph, variant, facts, branch)
        if folder.is_symlink():
            raise UnsafePathError(f"The OpenVINO cache folder {folder} is a symlink. Note: "
                                  "remove it; it is made anew.")
        if folder.is_dir() and not cache_problems(folder, expected):
            compiled = compile_with(str(folder))
            _record_new_files(folder, expected)
            return compiled
        root.mkdir(parents=True, exist_ok=True)
        staging = scratch_beside(folder, "compiling")
    except OSError as exc:
        _warn_uncached(bundle, exc)
        return compile_with(None)
    try:
        compiled = compile_with(str(staging))
        _write_sidecar(staging, expected)
        if not folder.exists():
            os.rename(staging, folder)
        elif not exchange(staging, folder):
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(staging, folder)
    except OSError as exc:  # another process put its folder in place meanwhile, or a full disk
        _warn_uncached(bundle, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap: the old folder
    return compiled


def _write_sidecar(folder: Path, expected: dict) -> None:
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir())
             if p.name != SIDECAR and p.is_file() and not p.is_symlink()}
    write_json_atomic(folder / SIDECAR, {**expected, "files": files})


def _record_new_files(folder: Path, expected: dict) -> None:
    """OpenVINO writes a new blob into a verified folder when its own key changed (the bundle
    was moved): record it, so the folder stays verifiable."""
    listed = read_json_file(folder / SIDECAR, "An OpenVINO cache sidecar", max_bytes=2**20,
                            expect=dict).get("files", {})
    if {p.name for p in folder.iterdir() if p.name != SIDECAR} != set(listed):
        try:
            _write_sidecar(folder, expected)
        except OSError:
            pass  # checked again (and rebuilt) next time


def _warn_uncached(bundle: Bundle, exc: OSError) -> None:
    key = str(bundle.path)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"OpenVINO runs {bundle.path} without its compiled-model cache: "
                      f"{CACHE} cannot be written ({exc.strerror or exc}). Each load compiles "
                      "the graphs again. Note: make the bundle writable to keep them.",
                      RuntimeWarning, stacklevel=4)
