"""Variants: new graphs written beside the fp32 graph and recorded in the manifest.

The fp32 graph is never touched. A variant's files land in ``onnx/`` under Transformers.js
suffixes where the meaning matches (``model_int8.onnx``, ``model_fp16.onnx``, ``model_q4.onnx``)
and edgeport's own otherwise (``model_qdq.onnx``, ``model_opt.onnx``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from runtime.bundle import Bundle, file_sha256, write_json_atomic
from runtime.errors import InputError

# recipe -> the variant name (and file suffix) it gets unless the user names it.
DEFAULT_NAMES = {
    "dynamic-int8": "int8",
    "static-int8": "qdq",
    "fp16": "fp16",
    "int4": "q4",
    "optimize": "opt",
}
# Recipes whose graphs hold quantized weights: nothing is quantized on top of them.
QUANTIZED_RECIPES = ("dynamic-int8", "static-int8", "fp16", "int4")


def check_variant_name(bundle: Bundle, name: str, *, overwrite: bool) -> None:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(
            f"Variant name {name!r} is not usable. Note: use letters, digits, '-' and '_' "
            "(it becomes part of the file name)."
        )
    if name == "fp32":
        raise InputError("The fp32 variant is the exported graph and is never replaced.")
    if name in bundle.variants and not overwrite:
        raise InputError(
            f"The bundle {bundle.path} already has a variant {name!r}. Note: pick another "
            "name with --name, or pass --overwrite to replace it."
        )


def source_graphs(bundle: Bundle, variant: str) -> dict[str, Path]:
    """The verified graph files of the variant a recipe starts from; a clear error when that
    variant is already quantized."""
    if variant not in bundle.variants:
        from runtime.errors import did_you_mean

        raise InputError(f"The bundle has no variant {variant!r}. "
                         + did_you_mean(variant, bundle.variants))
    recipe = (bundle.variants[variant].get("recipe") or {}).get("name")
    if recipe in QUANTIZED_RECIPES:
        raise InputError(
            f"The variant {variant!r} is already quantized ({recipe}); a recipe on top of it "
            "would quantize twice. Note: start from 'fp32' (or from an 'optimize' variant)."
        )
    return {graph: bundle.graph_path(graph, variant) for graph in bundle.variants[variant]["files"]}


@contextmanager
def staging_for(bundle: Bundle) -> Iterator[Path]:
    """A temp directory inside the bundle (same file system: the final move is a rename)."""
    path = Path(tempfile.mkdtemp(prefix=".variant-", dir=bundle.path / "onnx"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _point_at(graph: Path, location: str) -> None:
    """Make the graph file ``graph`` read its external weights from ``location`` (a file name
    beside it): the graph proto alone is rewritten, the weights are not loaded."""
    import onnx

    def tensors(g):  # a merged decoder's If branches hold initializers too
        yield from g.initializer
        for node in g.node:
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(
                        attribute.graphs):
                    yield from tensors(sub)

    model = onnx.load(str(graph), load_external_data=False)
    for tensor in tensors(model.graph):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(graph))


def write_variant(bundle: Bundle, name: str, files: Mapping[str, Path], recipe: Mapping,
                  *, overwrite: bool = False, accuracy: Mapping | None = None,
                  reused: Mapping[str, str] | None = None) -> Bundle:
    """Move finished graph files into ``onnx/`` and record the variant in the manifest.

    ``files`` maps graph name -> a finished file in the bundle's staging directory; ``reused``
    maps graph name -> the variant whose file of that graph this one shares as it is (a
    recipe made for some graphs only). The graph files are renamed into place first, then the
    manifest is replaced atomically: a reader sees the old manifest or the new one, never half
    of either. Returns the reloaded bundle.
    """
    bundle = Bundle.load(bundle.path)  # the manifest on disk now, not a stale copy
    check_variant_name(bundle, name, overwrite=overwrite)
    if name in (reused or {}).values():
        raise InputError(
            f"The variant {name!r} cannot share files with itself: replacing it would remove "
            "them. Note: give the new variant another name."
        )
    manifest = dict(bundle.manifest)
    checksums = dict(manifest["checksums"])
    old = bundle.variants.get(name)
    placed = {}
    for graph, path in files.items():
        stem = "model" if graph == "model" else graph
        relative = f"onnx/{stem}_{name}.onnx"
        data = Path(str(path) + "_data")
        if data.exists():  # external weights (graphs over 2 GB) travel with their graph
            _point_at(path, Path(relative).name + "_data")
            os.replace(data, bundle.path / (relative + "_data"))
            checksums[relative + "_data"] = file_sha256(bundle.path / (relative + "_data"))
        os.replace(path, bundle.path / relative)
        checksums[relative] = file_sha256(bundle.path / relative)
        placed[graph] = relative
    data_files = {g: [p + "_data"] for g, p in placed.items()
                  if (bundle.path / (p + "_data")).exists()}
    for graph, owner in (reused or {}).items():
        shared = bundle.variants[owner]
        placed[graph] = shared["files"][graph]
        if shared.get("data_files", {}).get(graph):
            data_files[graph] = list(shared["data_files"][graph])
    placed = {graph: placed[graph] for graph in bundle.graphs if graph in placed}
    variants = dict(manifest["variants"])
    variants[name] = {"files": placed, "data_files": data_files, "recipe": dict(recipe),
                      "accuracy": dict(accuracy) if accuracy else None}
    manifest["variants"] = variants
    if old:  # files of the replaced variant that no variant uses any more
        kept = {p for info in variants.values() for p in info["files"].values()}
        kept |= {p for info in variants.values()
                 for ps in info.get("data_files", {}).values() for p in ps}
        for relative in list(old["files"].values()) + [
                p for ps in old.get("data_files", {}).values() for p in ps]:
            if relative not in kept:
                checksums.pop(relative, None)
                (bundle.path / relative).unlink(missing_ok=True)
    manifest["checksums"] = checksums
    write_json_atomic(bundle.path / "manifest.json", manifest)
    return Bundle.load(bundle.path)


def record_accuracy(bundle: Bundle, name: str, accuracy: Mapping) -> Bundle:
    """Store a variant's accuracy summary (from compare) in the manifest."""
    manifest = dict(Bundle.load(bundle.path).manifest)  # not a stale copy
    variants = dict(manifest["variants"])
    variants[name] = {**variants[name], "accuracy": dict(accuracy)}
    manifest["variants"] = variants
    write_json_atomic(bundle.path / "manifest.json", manifest)
    return Bundle.load(bundle.path)
