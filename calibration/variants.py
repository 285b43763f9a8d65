"""Variants: new graphs written beside the fp32 graph and recorded in the manifest.

The fp32 graph is never touched. A variant's files land in ``onnx/`` under Transformers.js
suffixes where the meaning matches (``model_int8.onnx``, ``model_fp16.onnx``, ``model_q4.onnx``)
and edgeport's own otherwise (``model_qdq.onnx``, ``model_opt.onnx``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from runtime.bundle import MANIFEST, Bundle, file_sha256, write_json_atomic
from runtime.errors import EdgeportError, InputError
from runtime.files import (
    fsync_path,
    inside,
    read_json_file,
    scratch_beside,
    writer_lock,
)
from runtime.graph_files import graph_file_locations

# recipe -> the variant name (and file suffix) it gets unless the user names it.
DEFAULT_NAMES = {
    "dynamic-int8": "int8",
    "static-int8": "qdq",
    "fp16": "fp16",
    "int4": "q4",
    "int8-weights": "q8",
    "optimize": "opt",
    "llm": "llm",
}
# Recipes whose graphs hold quantized weights: nothing is quantized on top of them.
QUANTIZED_RECIPES = ("dynamic-int8", "static-int8", "fp16", "int4", "int8-weights")


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
    """A temp directory beside the bundle, never inside it (same file system, so the final move
    is a rename): a killed run leaves nothing in the bundle, and what it left beside it is
    removed by the next run (``files.scratch_beside``). Where the bundle's folder may not be
    written, the system's temp folder (the files are then copied in)."""
    try:
        path = scratch_beside(bundle.path, "scratch")
    except PermissionError:  # a writable bundle in a folder that is not: the system's temp
        path = scratch_beside(Path(tempfile.gettempdir()) / bundle.path.absolute().name,
                              "scratch")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def scratch_sources(sources: Mapping[str, Path], staging: Path) -> dict[str, Path]:
    """The source graphs as files in ``staging``, for recipes: ONNX Runtime's quantizer writes
    ``<graph>-inferred.onnx`` beside the graph it is given, and the bundle is only read. A graph
    is linked (a symlink: nothing is copied); its external data files are copied, since onnx
    refuses to read weights through a symlink or a hard link."""
    folder = staging / "sources"
    folder.mkdir()
    placed = {}
    for graph, path in sources.items():
        own = folder / graph
        own.mkdir()
        for location in sorted(graph_file_locations(path)):
            data = inside(path.parent, location, what=f"The graph {path.name} (external data)")
            copy = inside(own, location, what=f"The graph {path.name} (external data)")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data, copy)
        os.symlink(path.resolve(), own / path.name)
        placed[graph] = own / path.name
    return placed


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


# Files a write into the bundle may leave unreferenced if it is killed: listed here before they
# are placed, removed by the next writer unless the manifest then names them.
PENDING = ".edgeport-pending.json"


def recover_pending(folder: Path) -> None:
    """Finish what a killed writer left: remove the files its journal lists that the manifest
    does not name. Call it holding the writer lock."""
    journal = folder / PENDING
    if not journal.exists():
        return
    try:
        names = read_json_file(journal, "The pending-writes journal", max_bytes=2**20,
                               expect=list)
    except EdgeportError:
        names = []  # unreadable: nothing is removed, the bundle stays as the manifest says
    referenced = set(Bundle.load(folder).manifest["checksums"])
    for name in names:
        if isinstance(name, str) and name not in referenced:
            with contextlib.suppress(EdgeportError, OSError):
                inside(folder, name, what="A pending-writes entry").unlink(missing_ok=True)
    journal.unlink(missing_ok=True)


def _free_name(stem: str, taken: set[str]) -> str:
    """``onnx/<stem>.onnx``, or ``onnx/<stem>-2.onnx`` ... when the manifest names it (an
    overwrite writes the new files beside the old ones, which stay until the manifest
    names the new ones)."""
    for number in range(1, 1000):
        relative = f"onnx/{stem}{'' if number == 1 else f'-{number}'}.onnx"
        if relative not in taken and relative + "_data" not in taken:
            return relative
    raise InputError(f"No free file name for {stem!r} in the bundle's onnx/ folder.")


def _move(source: Path, target: Path) -> None:
    """Rename, or copy where the two are on different file systems."""
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copyfile(source, target)
        os.unlink(source)
    fsync_path(target)


def write_variant(bundle: Bundle, name: str, files: Mapping[str, Path], recipe: Mapping,
                  *, overwrite: bool = False, accuracy: Mapping | None = None,
                  reused: Mapping[str, str] | None = None) -> Bundle:
    """Move finished graph files into ``onnx/`` and record the variant in the manifest.

    ``files`` maps graph name -> a finished file in the staging directory; ``reused`` maps
    graph name -> the variant whose file of that graph this one shares as it is (a recipe made
    for some graphs only). Holding the bundle's writer lock:

    1. the files to be written and those to be replaced are listed in a journal;
    2. the new files go in under names the manifest does not use (``model_int8.onnx``, or
       ``model_int8-2.onnx`` while the old variant holds that name);
    3. the manifest is replaced atomically: a reader sees the old variant or the new one;
    4. the old files go, and a new file under a temporary name is given its usual name (a
       hard link, then the manifest again, then the temporary name goes);
    5. the journal goes. A run killed at any step leaves a loadable bundle; the next writer
       removes the files the journal lists that the manifest does not name.

    Returns the reloaded bundle.
    """
    with writer_lock(bundle.path):
        recover_pending(bundle.path)
        bundle = Bundle.load(bundle.path)  # the manifest on disk now, not a stale copy
        check_variant_name(bundle, name, overwrite=overwrite)
        if name in (reused or {}).values():
            raise InputError(
                f"The variant {name!r} cannot share files with itself: replacing it would "
                "remove them. Note: give the new variant another name."
            )
        manifest = dict(bundle.manifest)
        checksums = dict(manifest["checksums"])
        old = bundle.variants.get(name)
        taken = set(checksums)
        targets = {}
        for graph in files:
            targets[graph] = _free_name(f"{graph}_{name}", taken)
            taken |= {targets[graph], targets[graph] + "_data"}
        old_files = _variant_files(old) if old else []
        _journal(bundle.path, [*taken - set(checksums), *old_files])

        placed = {}
        for graph, path in files.items():
            relative = targets[graph]
            data = Path(str(path) + "_data")
            if data.exists():  # external weights (graphs over 2 GB) travel with their graph
                _point_at(path, Path(relative).name + "_data")
                _move(data, bundle.file(relative + "_data", what="A variant's data file"))
                checksums[relative + "_data"] = file_sha256(bundle.path / (relative + "_data"))
            _move(path, bundle.file(relative, what="A variant's graph file"))
            checksums[relative] = file_sha256(bundle.path / relative)
            placed[graph] = relative
        data_files = {g: [p + "_data"] for g, p in placed.items() if p + "_data" in checksums}
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
        kept = {p for info in variants.values() for p in _variant_files(info)}
        unused = [p for p in old_files if p not in kept]
        manifest["checksums"] = {k: v for k, v in checksums.items() if k not in unused}
        write_json_atomic(bundle.path / MANIFEST, manifest)
        for relative in unused:  # only now that the manifest no longer names them
            bundle.file(relative, what="A replaced variant's file").unlink(missing_ok=True)
        _settle_names(bundle, manifest, name, files)
        (bundle.path / PENDING).unlink(missing_ok=True)
        return Bundle.load(bundle.path)


def _variant_files(info: Mapping) -> list[str]:
    return [*info["files"].values(),
            *(p for ps in (info.get("data_files") or {}).values() for p in ps)]


def _journal(folder: Path, names: list[str]) -> None:
    write_json_atomic(folder / PENDING, sorted(set(names)))


def _settle_names(bundle: Bundle, manifest: dict, name: str, files: Mapping) -> None:
    """Give a graph written under a temporary name (``-2``) its usual one: a hard link, the
    manifest naming it, then the temporary name removed; each step leaves the manifest naming
    files that exist."""
    info = manifest["variants"][name]
    renamed = {}
    for graph in files:
        current, usual = info["files"][graph], f"onnx/{graph}_{name}.onnx"
        if current == usual or info["data_files"].get(graph) or usual in manifest["checksums"]:
            continue  # a graph with external data keeps its name: the graph names its data
        try:
            target = bundle.file(usual, what="A variant's graph file")
            target.unlink(missing_ok=True)  # a leftover no manifest names
            os.link(bundle.file(current, what="A variant's graph file"), target)
        except OSError:
            continue  # no hard links here: the temporary name stays, which the manifest names
        renamed[graph] = (current, usual)
    if not renamed:
        return
    checksums = dict(manifest["checksums"])
    files_now = dict(info["files"])
    for graph, (current, usual) in renamed.items():
        checksums[usual] = checksums.pop(current)
        files_now[graph] = usual
    variants = dict(manifest["variants"])
    variants[name] = {**info, "files": files_now}
    manifest = {**manifest, "variants": variants, "checksums": checksums}
    write_json_atomic(bundle.path / MANIFEST, manifest)
    for current, _ in renamed.values():
        bundle.file(current, what="A variant's graph file").unlink(missing_ok=True)


def record_accuracy(bundle: Bundle, name: str, accuracy: Mapping) -> Bundle:
    """Store a variant's accuracy summary (from compare) in the manifest."""
    with writer_lock(bundle.path):
        manifest = dict(Bundle.load(bundle.path).manifest)  # not a stale copy
        variants = dict(manifest["variants"])
        variants[name] = {**variants[name], "accuracy": dict(accuracy)}
        manifest["variants"] = variants
        write_json_atomic(bundle.path / MANIFEST, manifest)
        return Bundle.load(bundle.path)
