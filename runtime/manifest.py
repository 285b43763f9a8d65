"""The manifest's schema, checked in one place when a bundle is read.

A manifest comes from someone else: every key a reader uses is checked here for its type and
bounds, so that code past ``Bundle.load`` can index it without guarding, and a damaged or crafted
manifest is one ManifestError naming the entry (``variants.int8.files.model``), never a
TypeError or KeyError later. Paths are checked for form here (``files.check_relative``); where
they lead on disk is checked by ``files.inside`` when a file is opened.

>>> validate_manifest({"schema_version": True}, "manifest.json")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
runtime.errors.ManifestError: manifest.json: schema_version True is not one this edgeport ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .dims import DIM_NAMES
from .errors import EdgeportError, ManifestError
from .files import check_relative, json_kind, safe_name

SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 16 * 2**20
_MAX_GRAPHS = 256
_MAX_VARIANTS = 256
_MAX_TENSORS = 65536  # inputs or outputs of one graph (a 100-layer KV cache has 400)
_MAX_RANK = 16
_MAX_DIM = 2**31 - 1
_MAX_TEXT = 4096
DTYPES = frozenset({"float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16",
                    "uint16", "int32", "uint32", "int64", "uint64", "bool", "str", "object",
                    "float8_e4m3fn", "float8_e5m2", "int4", "uint4"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIX = "Note: the manifest is damaged or was edited by hand; export the bundle again."


def validate_manifest(data: Any, where: str) -> dict:
    """``data`` (a parsed manifest.json) if it follows the schema; a ManifestError saying which
    entry is wrong otherwise. ``where`` names the file in messages."""
    def fail(entry: str, problem: str, note: str = _FIX):
        raise ManifestError(f"{where}: {entry + ' ' if entry else ''}{problem}. {note}")

    if not isinstance(data, dict):
        fail("the manifest", f"must be a JSON object, not {json_kind(data)}")
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        fail(f"schema_version {version!r:.40}", f"is not one this edgeport reads: it reads schema "
             f"version {SCHEMA_VERSION} (an integer)",
             "Note: export the bundle again with this edgeport, or install the edgeport version "
             "that wrote it.")
    for key in ("task", "model_type"):
        _text(data.get(key), key, fail)
    for key in ("family", "modality"):
        if data.get(key) is not None:
            _text(data[key], key, fail)
    for key in ("preprocessing", "validation", "source", "exported_with"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            fail(key, f"must be an object or null, not {json_kind(data[key])}")

    source = data.get("source") or {}
    if source.get("checkpoint") is not None:
        _text(source["checkpoint"], "source.checkpoint", fail)
    names = source.get("architectures")
    if names is not None and not (isinstance(names, list) and len(names) <= 64 and all(
            isinstance(n, str) and n.isidentifier() for n in names)):
        fail("source.architectures", "must be a list of class names")

    graphs = _mapping(data.get("graphs"), "graphs", fail, limit=_MAX_GRAPHS)
    for graph, info in graphs.items():
        _name(graph, "a graph name", fail)
        info = _mapping(info, f"graphs.{graph}", fail, allow_empty=True)
        for side in ("inputs", "outputs"):
            specs = info.get(side)
            if not isinstance(specs, list) or not specs or len(specs) > _MAX_TENSORS:
                fail(f"graphs.{graph}.{side}", f"must be a list of 1 to {_MAX_TENSORS} tensors")
            for number, spec in enumerate(specs):
                _tensor(spec, f"graphs.{graph}.{side}[{number}]", fail)

    checksums = _mapping(data.get("checksums"), "checksums", fail, limit=1_000_000)
    for relative, digest in checksums.items():
        _path(relative, "checksums", fail)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            fail(f"checksums[{relative!r}]", "must be a sha256 as 64 lowercase hex digits")

    variants = _mapping(data.get("variants"), "variants", fail, limit=_MAX_VARIANTS)
    for variant, info in variants.items():
        _name(variant, "a variant name", fail)
        entry = f"variants.{variant}"
        info = _mapping(info, entry, fail, allow_empty=True)
        files = _mapping(info.get("files"), f"{entry}.files", fail)
        data_files = info.get("data_files")
        data_files = {} if data_files is None else _mapping(
            data_files, f"{entry}.data_files", fail, allow_empty=True)
        for graph in [*files, *data_files]:
            if graph not in graphs:
                fail(f"{entry}", f"names a graph {graph!r:.80} that graphs does not declare")
        for graph, relative in files.items():
            _listed(relative, f"{entry}.files.{graph}", checksums, fail)
        for graph, names in data_files.items():
            if not isinstance(names, list) or len(names) > 4096:
                fail(f"{entry}.data_files.{graph}", "must be a list of file paths")
            for number, relative in enumerate(names):
                _listed(relative, f"{entry}.data_files.{graph}[{number}]", checksums, fail)
        for key in ("recipe", "accuracy"):
            if info.get(key) is not None and not isinstance(info[key], dict):
                fail(f"{entry}.{key}", f"must be an object or null, not {json_kind(info[key])}")
        recipe = info.get("recipe") or {}
        if recipe.get("name") is not None:
            _text(recipe["name"], f"{entry}.recipe.name", fail)
    return data


def _text(value: Any, entry: str, fail) -> None:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        fail(entry, f"must be a non-empty string, got {json_kind(value)}")


def _mapping(value: Any, entry: str, fail, *, limit: int = 65536,
             allow_empty: bool = False) -> Mapping:
    if not isinstance(value, dict):
        fail(entry, f"must be an object, not {json_kind(value)}")
    if not value and not allow_empty:
        fail(entry, "is empty")
    if len(value) > limit:
        fail(entry, f"has {len(value):,} entries, more than the {limit:,} allowed")
    return value


def _name(name: str, what: str, fail) -> None:
    try:
        safe_name(name, what=what)
    except EdgeportError as exc:
        fail("", str(exc).rstrip("."))


def _path(relative: Any, entry: str, fail) -> None:
    try:
        check_relative(relative, what=entry)
    except EdgeportError as exc:
        fail("", str(exc).split(". Note:")[0])


def _listed(relative: Any, entry: str, checksums: Mapping, fail) -> None:
    _path(relative, entry, fail)
    if relative not in checksums:
        fail(entry, f"names {relative!r}, which checksums does not list (every file a graph "
             "loads is hashed)")


def _tensor(spec: Any, entry: str, fail) -> None:
    if not isinstance(spec, dict):
        fail(entry, f"must be an object, not {json_kind(spec)}")
    name, dtype, dims = spec.get("name"), spec.get("dtype"), spec.get("dims")
    _text(name, f"{entry}.name", fail)
    if not isinstance(dtype, str) or dtype not in DTYPES:
        fail(f"{entry}.dtype", f"is {dtype!r:.40}, not a known dtype",
             f"Note: known dtypes are {', '.join(sorted(DTYPES))}.")
    if not isinstance(dims, list) or len(dims) > _MAX_RANK:
        fail(f"{entry}.dims", f"must be a list of at most {_MAX_RANK} dims")
    for dim in dims:
        if type(dim) is int and 0 <= dim <= _MAX_DIM:
            continue
        if dim is None or (isinstance(dim, str) and dim in DIM_NAMES):
            continue
        fail(f"{entry}.dims", f"holds {dim!r:.40}: a dim is a size (a non-negative int) or a "
             "name from edgeport's vocabulary", f"Note: the names are {', '.join(DIM_NAMES)}.")
