"""The bundle: a directory of HF JSON files, ONNX graphs and edgeport's manifest.json.

A bundle is data from someone else. Reading one validates it: the manifest against its schema
(``runtime.manifest``), every path it names (``files.inside``: relative, and inside the bundle
after its folders' symlinks), the files it lists, and (for the graph files a pipeline loads)
their sha256 and the external data they name, each of which must be listed and hashed too.
Writing is atomic: a bundle is assembled in a sibling temp directory and swapped into place, so
a failed or interrupted write leaves the old bundle or the new one at the target path, never
neither; writers of one bundle take its lock (``files.writer_lock``).

>>> bundle = Bundle.load("minilm-bundle")                       # doctest: +SKIP
>>> bundle.task, bundle.model_type, sorted(bundle.variants)      # doctest: +SKIP
('feature-extraction', 'bert', ['fp32'])
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .backends.engine import BACKENDS, Engine, TensorSpec, backend_factory
from .errors import (
    BundleNotFoundError,
    ChecksumError,
    EdgeportError,
    InputError,
    ManifestError,
    TaskError,
    did_you_mean,
)
from .files import (
    exchange,
    fsync_path,
    inside,
    pid_alive,
    read_json_file,
    remove_stale,
    scratch_beside,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
    writer_lock,
)
from .graph_files import graph_file_locations
from .manifest import MAX_MANIFEST_BYTES, SCHEMA_VERSION, validate_manifest
from .task_names import canonical_task

__all__ = ["BACKENDS", "Bundle", "EXTERNAL_DATA_BYTES", "MANIFEST", "SCHEMA_VERSION",
           "check_target", "file_sha256", "manifest_for", "read_json", "staged_directory",
           "write_bytes_atomic", "write_json_atomic", "write_text_atomic", "writer_lock"]

MANIFEST = "manifest.json"
# Graphs holding more weights than this keep them in "<graph file>_data" beside the graph (ONNX
# external data): ONNX Runtime maps that file instead of parsing the weights out of the
# protobuf and copying them. Measured on BERT-base fp32 (438 MB): a session in 0.9 s instead of
# 2.2 s. Smaller graphs stay one file.
EXTERNAL_DATA_BYTES = 128 * 2**20


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- checksums verified in earlier processes ----------------------------------------------------
# Hashing a graph costs about 0.4 s per 450 MB, at every start of an app. A file that hashed
# right is remembered in a small per-user cache (EDGEPORT_CACHE, else $XDG_CACHE_HOME/edgeport or
# ~/.cache/edgeport) under its path, size, inode, mtime and ctime, and is not hashed again while
# all of them are unchanged: writing to a file changes its ctime, which no user can set back.
# The external data files the graph names are remembered with it. EDGEPORT_VERIFY=always
# hashes every time; a cache that cannot be read or written, is not a regular file, is over
# its size limit or does not parse within bounds is ignored (the file is then hashed, as
# without it).
_VERIFIED_ENTRIES = 4096
_VERIFIED_BYTES = 4 * 2**20


def _verified_cache() -> Path:
    root = os.environ.get("EDGEPORT_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeport"
    return Path(root) / "verified-checksums.json"


def _stamp(path: Path, stat: os.stat_result, sha256: str) -> tuple[str, list]:
    return str(path.resolve()), [stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns,
                                 sha256]


def _read_verified() -> dict:
    try:
        data = read_json_file(_verified_cache(), "The verified-checksums cache",
                              max_bytes=_VERIFIED_BYTES, max_depth=4)
    except EdgeportError:
        return {}
    return data if isinstance(data, dict) else {}


def _verified_before(path: Path, stat: os.stat_result, sha256: str) -> list[str] | None:
    """The external data locations remembered for a file verified before, or None."""
    if os.environ.get("EDGEPORT_VERIFY") == "always":
        return None
    key, stamp = _stamp(path, stat, sha256)
    entry = _read_verified().get(key)
    if (isinstance(entry, list) and len(entry) == len(stamp) + 1 and entry[:-1] == stamp
            and isinstance(entry[-1], list) and all(isinstance(x, str) for x in entry[-1])):
        return entry[-1]
    return None


def _remember_verified(path: Path, stat: os.stat_result, sha256: str,
                       locations: list[str]) -> None:
    if os.environ.get("EDGEPORT_VERIFY") == "always":
        return
    key, stamp = _stamp(path, stat, sha256)
    data = _read_verified()
    data.pop(key, None)
    data[key] = [*stamp, sorted(locations)]  # newest last: the oldest go first when full
    while len(data) > _VERIFIED_ENTRIES:
        data.pop(next(iter(data)))
    try:
        _verified_cache().parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(_verified_cache(), data)
    except OSError:
        pass  # a read-only home: verified again next time


def read_json(path: Path, what: str) -> Any:
    """A bundle's JSON file, read within bounds: a ManifestError when it is not valid JSON, a
    BundleNotFoundError when it is missing."""
    return read_json_file(path, what, error=ManifestError, missing=BundleNotFoundError)


def check_target(target: str | os.PathLike, *, overwrite: bool) -> None:
    """An InputError when ``target`` may not be written: it exists and ``overwrite`` is off, or
    it is a file. Call it before slow work, too, to fail fast."""
    target = Path(target)
    if target.is_symlink():
        raise InputError(f"{target} is a symlink; refusing to write through it. Note: name the "
                         "real folder, or remove the link.")
    if target.exists() and not overwrite:
        raise InputError(
            f"{target} already exists. Note: choose another output path, or pass "
            "overwrite=True (`--overwrite` on the command line) to replace it."
        )
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a directory; refusing to replace it.")


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty sibling temp directory; on success it replaces ``target`` atomically, on
    any error (or interrupt) it is removed and ``target`` is left as it was.

    Replacing swaps the two folders in one step (renameat2 on Linux, renamex_np on macOS), under
    the writer lock of the bundle being replaced: a reader sees the old bundle or the new one.
    Where the OS cannot swap, the old one is moved aside and the new one renamed in (a moment
    with neither); a run killed in that moment leaves the old one in ``.<name>.old-<pid>-*``,
    which the next write of the target puts back before it starts. Folders a killed run left
    beside the target are removed then too.

    >>> with staged_directory("out/bundle") as staging:          # doctest: +SKIP
    ...     (staging / "manifest.json").write_text("{}")
    """
    target = Path(target).absolute()
    check_target(target, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover_moved_aside(target)
    remove_stale(target, "old")
    staging = scratch_beside(target, "staging")
    try:
        yield staging
        fsync_path(staging)
        check_target(target, overwrite=overwrite)  # it may have appeared meanwhile
        if not target.exists():
            os.rename(staging, target)  # fails if another writer made it meanwhile
        else:
            with writer_lock(target):
                if not exchange(staging, target):
                    old = scratch_beside(target, "old")
                    os.replace(target, old / target.name)
                    os.replace(staging, target)
                    staging = old
            shutil.rmtree(staging, ignore_errors=True)  # the old bundle
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _recover_moved_aside(target: Path) -> None:
    """Put back a bundle that a run killed between its two renames left moved aside."""
    if target.exists():
        return
    pattern = re.compile(re.escape(f".{target.name}.old-") + r"(\d+)-")
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        moved = entry / target.name
        if match and not pid_alive(int(match.group(1))) and moved.is_dir() \
                and not moved.is_symlink():
            with contextlib.suppress(OSError):
                os.rename(moved, target)
                return


class Bundle:
    """A validated bundle directory. ``Bundle.load(path)`` raises a BundleError subclass when the
    bundle cannot be used, saying what is wrong and how to fix it."""

    def __init__(self, path: Path, manifest: dict, config: dict):
        self.path = path
        self.manifest = manifest
        self.config = config
        # Files verified in this process, under the same stamp as the per-user cache.
        self._verified: dict[tuple, list[str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike) -> Bundle:
        path = Path(path)
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise BundleNotFoundError(
                f"No bundle at {path}: it {what}. Note: a bundle is the folder that "
                "`edgeport export CHECKPOINT -o BUNDLE` makes."
            )
        if not (path / MANIFEST).exists():
            raise ManifestError(
                f"{path} has no {MANIFEST}, so it is not an edgeport bundle. Note: make one with "
                "`edgeport export CHECKPOINT -o BUNDLE`."
            )
        manifest = read_json_file(path / MANIFEST, "The bundle manifest", error=ManifestError,
                                  max_bytes=MAX_MANIFEST_BYTES)
        manifest = validate_manifest(manifest, str(path / MANIFEST))
        # A file linked out of the bundle (the Hub cache links files to blobs) is only looked
        # at when its checksum is verified: whether it exists is no business of a load.
        missing = [name for name in manifest["checksums"]
                   if not os.path.lexists(inside(path, name, what=f"The manifest's checksums "
                                                 f"entry {name!r}"))]
        if missing:
            raise BundleNotFoundError(
                f"The bundle {path} is missing files its manifest lists: {missing[:10]}. Note: "
                "copy the whole bundle directory, or export it again."
            )
        config = read_json_file(path / "config.json", "The model config (config.json)",
                                error=ManifestError, missing=BundleNotFoundError, expect=dict,
                                max_bytes=MAX_MANIFEST_BYTES)
        return cls(path, manifest, config)

    # --- what the manifest says -------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def model_type(self) -> str:
        return self.manifest["model_type"]

    @property
    def variants(self) -> dict[str, dict]:
        return self.manifest["variants"]

    @property
    def graphs(self) -> dict[str, dict]:
        return self.manifest["graphs"]

    def graph_specs(self, graph: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        info = self.graphs[graph]
        return ([TensorSpec.from_json(t) for t in info["inputs"]],
                [TensorSpec.from_json(t) for t in info["outputs"]])

    def serves(self, task: str) -> bool:
        """Whether the bundle runs ``task`` (a pipeline tag): its own, or for an
        encoder-decoder bundle any text-to-text task (the same graphs serve them all)."""
        if task == self.task:
            return True
        text_to_text = ("text2text-generation", "summarization", "translation")
        # (a vision-encoder-decoder's one model reads images for both; document questions need
        # Donut, which that pipeline checks)
        image_to_text = ("image-to-text", "document-question-answering")
        return self.manifest.get("family") == "encoder-decoder" and any(
            {task, self.task} <= set(tasks) for tasks in (text_to_text, image_to_text))

    def check_task(self, task: str | None) -> str:
        """The task to run: the bundle's own when None; a TaskError for one it does not serve."""
        if task is None:
            try:
                return canonical_task(self.task)
            except TaskError:
                raise TaskError(
                    f"The bundle {self.path} is for the task {self.task!r}, which this edgeport "
                    "does not run. Note: update edgeport, or export the checkpoint again with "
                    "`--task` naming one of the tasks `edgeport export --help` lists."
                ) from None
        task = canonical_task(task)
        if not self.serves(task):
            raise TaskError(
                f"The bundle {self.path} serves {self.task!r}, not {task!r}. Note: export the "
                f"checkpoint again with `--task {task}`, or call pipeline({self.task!r}, ...)."
            )
        return task

    def read_json(self, name: str, *, required: bool = True) -> Any:
        """One of the bundle's JSON files (HF's own, or edgeport's), or None when optional."""
        path = inside(self.path, name, what=f"The bundle file name {name!r}")
        if not required and not path.exists():
            return None
        return read_json(path, f"The bundle file {name}")

    def file(self, relative: str, *, what: str) -> Path:
        """The path of a file the manifest names, checked to stay inside the bundle."""
        return inside(self.path, relative, what=what)

    # --- graph files ------------------------------------------------------------------------
    def graph_path(self, graph: str = "model", variant: str = "fp32") -> Path:
        """The verified file of a graph in a variant: a ChecksumError when its sha256 (or that
        of an external data file it names) differs from the manifest's, a ManifestError when it
        names external data the manifest does not list. Checked once per process while the
        files are unchanged."""
        if variant not in self.variants:
            raise InputError(
                f"The bundle {self.path} has no variant {variant!r}. "
                + did_you_mean(variant, self.variants)
            )
        info = self.variants[variant]
        files = info["files"]
        if graph not in files:
            raise InputError(
                f"The variant {variant!r} has no graph {graph!r}. " + did_you_mean(graph, files)
            )
        relative = files[graph]
        entry = f"variants.{variant}.files.{graph}"
        path = inside(self.path, relative, what=f"The manifest's {entry}")
        listed = list((info.get("data_files") or {}).get(graph, []))
        for name in listed:
            self._verify(name, f"variants.{variant}.data_files.{graph}")
        locations = self._verify(relative, entry)
        folder = PurePosixPath(relative).parent
        for location in locations:
            inside(path.parent, location, what=f"The graph {relative} (external data)")
            if (folder / location).as_posix() not in listed:
                raise ManifestError(
                    f"The graph {relative} loads the external data file {location!r}, which the "
                    f"manifest's variants.{variant}.data_files.{graph} does not list, so it is "
                    "not checked. Note: export or quantize the bundle again with this edgeport."
                )
        return path

    def _verify(self, relative: str, entry: str) -> list[str]:
        """Check one listed file's sha256; return the external data locations it names (none
        for a data file)."""
        path = inside(self.path, relative, what=f"The manifest's {entry}")
        expected = self.manifest["checksums"][relative]
        linked_out = self._linked_out(path)
        mismatch = ChecksumError(
            f"The bundle file {relative} ({entry}) does not match the manifest: its sha256 is "
            f"not the recorded {expected[:16]}...{', or it is missing' if linked_out else ''}. "
            "Note: it was changed or damaged after export; export the bundle again (or restore "
            "the file).")
        if not path.is_file():
            if linked_out:  # the same error either way: nothing is told of what lies outside
                raise mismatch
            raise BundleNotFoundError(
                f"The bundle file {relative} ({entry}) is missing. Note: copy the whole bundle "
                "directory, or export it again."
            )
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns,
               expected)
        with self._lock:
            if key in self._verified:
                return self._verified[key]
        locations = _verified_before(path, stat, expected)
        if locations is None:
            if file_sha256(path) != expected:  # its actual hash is not told: it may lie outside
                raise mismatch
            locations = sorted(graph_file_locations(path)) if relative.endswith(".onnx") else []
            _remember_verified(path, stat, expected, locations)
        with self._lock:
            self._verified[key] = locations
        return locations

    def engine(self, graph: str = "model", variant: str = "fp32", *,
               backend: str = "onnxruntime", build_if_missing: bool = False,
               **options) -> Engine:
        """An engine for one graph of one variant, from the backend named (``BACKENDS``):
        ONNX Runtime's (options go to OrtEngine), TensorRT's from the plan under engines/
        (built first when ``build_if_missing``), or OpenVINO's (``device``, ``precision``,
        ``threads``; compiled models cached under engines/openvino)."""
        return backend_factory(backend)(self, graph, variant, build_if_missing=build_if_missing,
                                        **options)

    def _linked_out(self, path: Path) -> bool:
        """Whether ``path`` (inside the bundle by name) is a symlink whose file lies outside."""
        root = self.path.resolve()
        return root not in path.resolve().parents

    def summary(self) -> dict:
        """What `edgeport inspect` prints: task, graphs with dims, variants with sizes. The size
        of a file linked out of the bundle is told only once its checksum is verified (then it
        is the file the manifest names); else the variant's size is None."""
        variants = {}
        for name, info in self.variants.items():
            files = list(info["files"].values())
            for extra in (info.get("data_files") or {}).values():
                files += extra
            size = 0
            for relative in files:
                path = self.file(relative, what=f"variants.{name}")
                if self._linked_out(path):
                    try:
                        self._verify(relative, f"variants.{name}")
                    except EdgeportError:
                        size = None
                        break
                if not path.is_file():
                    size = None
                    break
                size += path.stat().st_size
            variants[name] = {"files": info["files"], "bytes": size,
                              "recipe": info.get("recipe"), "accuracy": info.get("accuracy")}
        return {
            "path": str(self.path),
            "task": self.task,
            "model_type": self.model_type,
            "family": self.manifest.get("family"),
            "schema_version": self.manifest["schema_version"],
            "graphs": self.graphs,
            "variants": variants,
            "validation": self.manifest.get("validation"),
            "exported_with": self.manifest.get("exported_with"),
        }


def manifest_for(*, task: str, model_type: str, family: str, graphs: Mapping[str, dict],
                 variants: Mapping[str, dict], checksums: Mapping[str, str], **extra) -> dict:
    """A manifest dict in the current schema (the exporter and quantizer write through this)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "model_type": model_type,
        "family": family,
        "graphs": dict(graphs),
        "variants": dict(variants),
        "checksums": dict(checksums),
        **extra,
    }
