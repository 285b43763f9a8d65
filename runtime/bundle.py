"""The bundle: a directory of HF JSON files, ONNX graphs and edgeport's manifest.json.

Reading a bundle validates it: the manifest's schema version, the files it lists, and (for the
graph files a pipeline loads) their sha256. Writing is atomic: a bundle is assembled in a
sibling temp directory and renamed into place, so a failed or interrupted write leaves nothing
half-written at the target path.

>>> bundle = Bundle.load("minilm-bundle")                       # doctest: +SKIP
>>> bundle.task, bundle.model_type, sorted(bundle.variants)      # doctest: +SKIP
('feature-extraction', 'bert', ['fp32'])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .engine import Engine, OrtEngine, TensorSpec, parse_device, providers_for_device
from .errors import (
    BundleNotFoundError,
    ChecksumError,
    InputError,
    ManifestError,
    TaskError,
    did_you_mean,
)

SCHEMA_VERSION = 1
BACKENDS = ("onnxruntime", "tensorrt")  # what runs a bundle's graphs: Bundle.engine(backend=)
MANIFEST = "manifest.json"
_REQUIRED_KEYS = ("schema_version", "task", "model_type", "graphs", "variants", "checksums")
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
# EDGEPORT_VERIFY=always hashes every time; a cache that cannot be read or written is ignored
# (the file is then hashed, as without it).
_VERIFIED_ENTRIES = 4096


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
        data = json.loads(_verified_cache().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _verified_before(path: Path, stat: os.stat_result, sha256: str) -> bool:
    if os.environ.get("EDGEPORT_VERIFY") == "always":
        return False
    key, stamp = _stamp(path, stat, sha256)
    return _read_verified().get(key) == stamp


def _remember_verified(path: Path, stat: os.stat_result, sha256: str) -> None:
    if os.environ.get("EDGEPORT_VERIFY") == "always":
        return
    key, stamp = _stamp(path, stat, sha256)
    data = _read_verified()
    data.pop(key, None)
    data[key] = stamp  # newest last: the oldest go first when the cache is full
    while len(data) > _VERIFIED_ENTRIES:
        data.pop(next(iter(data)))
    try:
        _verified_cache().parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(_verified_cache(), data)
    except OSError:
        pass  # a read-only home: verified again next time


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleNotFoundError(f"{what} is missing: {path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"{what} at {path} is not valid JSON ({exc}). Note: the file is corrupt or was "
            "edited by hand; export the bundle again."
        ) from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside path, then rename: readers never see half a file (a
    manifest, a report, a TensorRT plan)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a bundle is for sharing
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """``write_bytes_atomic`` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    """``write_bytes_atomic`` of indented JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_target(target: str | os.PathLike, *, overwrite: bool) -> None:
    """An InputError when ``target`` may not be written: it exists and ``overwrite`` is off, or
    it is a file. Call it before slow work, too, to fail fast."""
    target = Path(target)
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

    >>> with staged_directory("out/bundle") as staging:          # doctest: +SKIP
    ...     (staging / "manifest.json").write_text("{}")
    """
    target = Path(target).absolute()
    check_target(target, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield staging
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class Bundle:
    """A validated bundle directory. ``Bundle.load(path)`` raises a BundleError subclass when the
    bundle cannot be used, saying what is wrong and how to fix it."""

    def __init__(self, path: Path, manifest: dict, config: dict):
        self.path = path
        self.manifest = manifest
        self.config = config
        self._verified: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike) -> Bundle:
        path = Path(path)
        if not path.is_dir():
            raise BundleNotFoundError(
                f"No bundle at {path}: the directory does not exist. Note: make one with "
                "`edgeport export CHECKPOINT -o BUNDLE`."
            )
        if not (path / MANIFEST).is_file():
            raise ManifestError(
                f"{path} has no {MANIFEST}, so it is not an edgeport bundle. Note: make one with "
                "`edgeport export CHECKPOINT -o BUNDLE`."
            )
        manifest = read_json(path / MANIFEST, "The bundle manifest")
        if not isinstance(manifest, dict):
            raise ManifestError(f"{path / MANIFEST} does not hold a JSON object.")
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"{path / MANIFEST} has schema_version {version!r}; this edgeport reads schema "
                f"version {SCHEMA_VERSION}. Note: export the bundle again with this edgeport, or "
                "install the edgeport version that wrote it."
            )
        missing_keys = [k for k in _REQUIRED_KEYS if k not in manifest]
        if missing_keys:
            raise ManifestError(
                f"{path / MANIFEST} lacks the keys {missing_keys}. Note: the manifest is "
                "damaged; export the bundle again."
            )
        missing = [name for name in manifest["checksums"] if not (path / name).is_file()]
        if missing:
            raise BundleNotFoundError(
                f"The bundle {path} is missing files its manifest lists: {missing}. Note: copy "
                "the whole bundle directory, or export it again."
            )
        config = read_json(path / "config.json", "The model config (config.json)")
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
        return self.manifest.get("family") == "encoder-decoder" and {task, self.task} <= set(
            text_to_text)

    def check_task(self, task: str | None) -> str:
        """The task to run: the bundle's own when None; a TaskError for one it does not serve."""
        from .tasks import canonical_task

        if task is None:
            return self.task
        task = canonical_task(task)
        if not self.serves(task):
            raise TaskError(
                f"The bundle {self.path} serves {self.task!r}, not {task!r}. Note: export the "
                f"checkpoint again with `--task {task}`, or call pipeline({self.task!r}, ...)."
            )
        return task

    def read_json(self, name: str, *, required: bool = True) -> Any:
        """One of the bundle's JSON files (HF's own, or edgeport's), or None when optional."""
        path = self.path / name
        if not required and not path.is_file():
            return None
        return read_json(path, f"The bundle file {name}")

    # --- graph files ------------------------------------------------------------------------
    def graph_path(self, graph: str = "model", variant: str = "fp32") -> Path:
        """The verified file of a graph in a variant: a ChecksumError when its sha256 differs
        from the manifest's (checked once per process while the file is unchanged)."""
        if variant not in self.variants:
            raise InputError(
                f"The bundle {self.path} has no variant {variant!r}. "
                + did_you_mean(variant, self.variants)
            )
        files = self.variants[variant]["files"]
        if graph not in files:
            raise InputError(
                f"The variant {variant!r} has no graph {graph!r}. " + did_you_mean(graph, files)
            )
        relative = files[graph]
        path = self.path / relative
        for name in [relative, *self.variants[variant].get("data_files", {}).get(graph, [])]:
            self._verify(name)
        return path

    def _verify(self, relative: str) -> None:
        path = self.path / relative
        if not path.is_file():
            raise BundleNotFoundError(
                f"The bundle file {path} is missing. Note: copy the whole bundle directory, or "
                "export it again."
            )
        expected = self.manifest["checksums"].get(relative)
        if expected is None:
            raise ManifestError(f"The manifest of {self.path} has no checksum for {relative}.")
        stat = path.stat()
        key = (relative, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._verified:
                return
        if not _verified_before(path, stat, expected):
            actual = file_sha256(path)
            if actual != expected:
                raise ChecksumError(
                    f"{path} does not match the manifest: sha256 {actual[:16]}... instead of "
                    f"{expected[:16]}... Note: the file was changed or damaged after export; "
                    "export the bundle again (or restore the file)."
                )
            _remember_verified(path, stat, expected)
        with self._lock:
            self._verified.add(key)

    def engine(self, graph: str = "model", variant: str = "fp32", *,
               backend: str = "onnxruntime", build_if_missing: bool = False,
               **options) -> Engine:
        """An engine for one graph of one variant: ONNX Runtime's (options go to OrtEngine;
        device "tensorrt" keeps its TensorRT provider's engine cache in engines/onnxruntime),
        or TensorRT's from the plan under engines/ (built first when ``build_if_missing``)."""
        if backend == "tensorrt":
            from .tensorrt import engine_from_bundle

            return engine_from_bundle(self, graph, variant, build_if_missing=build_if_missing,
                                      **options)
        if backend != "onnxruntime":
            raise InputError(f"Unknown backend {backend!r}. " + did_you_mean(backend, BACKENDS))
        device = options.get("device", "cpu")
        if parse_device(device)[0] == "tensorrt" and options.get("providers") is None:
            options["providers"] = providers_for_device(
                device, cache_dir=self.path / "engines" / "onnxruntime")
        return OrtEngine(self.graph_path(graph, variant), **options)

    def summary(self) -> dict:
        """What `edgeport inspect` prints: task, graphs with dims, variants with sizes."""
        variants = {}
        for name, info in self.variants.items():
            files = list(info["files"].values())
            for extra in info.get("data_files", {}).values():
                files += extra
            size = sum((self.path / f).stat().st_size for f in files if (self.path / f).is_file())
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
