"""A python-flavor Triton model repository from a bundle: ``REPO/NAME/config.pbtxt`` (a Python
backend model with dynamic batching), ``REPO/NAME/1/model.py`` (``serving/python_model.py``)
and ``REPO/NAME/1/bundle`` (a copy of the bundle: the repository is self-contained, so it can be
mounted into a container or moved to another machine, and a later change to the bundle does
not change what a running server serves). Written in a scratch folder beside REPO and renamed
into place: never a half-written repository."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from runtime.bundle import Bundle
from runtime.errors import InputError
from runtime.files import scratch_beside, write_text_atomic

from .inputs import input_names
from .streaming import add_stream_model, streams

SETTINGS = "edgeport_python.json"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"--name {name!r} is not a Triton model name. Note: use letters, "
                         "digits, '_', '-' and '.', starting with a letter, digit or '_'.")
    return name


def default_name(bundle: Bundle) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", bundle.path.absolute().name).lstrip(".-") or "model"
    return stem[:100]


def config_pbtxt(name: str, inputs: Sequence[str], max_batch: int, instances: int) -> str:
    """``inputs``: the names of the BYTES inputs (serving.inputs.input_names). With batching,
    [batch, 1] tensors (one item a row); without (``max_batch`` 0), [-1]."""
    dims = "1" if max_batch > 0 else "-1"
    inputs = [inputs] if isinstance(inputs, str) else inputs  # one name, not its letters
    declared = ", ".join(f'{{ name: "{input_}" data_type: TYPE_STRING dims: [ {dims} ] }}'
                         for input_ in inputs)
    return (
        f'name: "{name}"\n'
        'backend: "python"\n'
        f"max_batch_size: {max_batch}\n"
        f"input [ {declared} ]\n"
        f'output [ {{ name: "result" data_type: TYPE_STRING dims: [ {dims} ] }} ]\n'
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
        + ("dynamic_batching { max_queue_delay_microseconds: 2000 }\n" if max_batch > 0 else "")
    )


@contextlib.contextmanager
def new_repository(repo) -> Iterator[Path]:
    """A scratch folder beside ``repo`` (a new or empty folder) to write the repository in;
    renamed to ``repo`` when the block ends without an error, removed otherwise."""
    repo = Path(repo)
    if repo.exists() and (not repo.is_dir() or any(repo.iterdir())):
        raise InputError(f"{repo} exists and is not an empty folder. Note: remove it or name "
                         "a new folder with -o.")
    repo.absolute().parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_beside(repo, "triton")
    try:
        yield scratch
        if repo.exists():
            repo.rmdir()  # empty, checked above
        scratch.rename(repo)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def checked_settings(bundle, name: str | None, max_batch, instances) -> tuple[Bundle, str]:
    """(the Bundle, the entry model's name) of a repository's settings; InputErrors for a bad
    name, --max-batch or --instances. Both flavors check them so."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    name = check_name(name if name is not None else default_name(bundle))
    if not isinstance(max_batch, int) or max_batch < 0:
        raise InputError(f"--max-batch must be 0 (no batching) or more, got {max_batch!r}.")
    if not isinstance(instances, int) or instances < 1:
        raise InputError(f"--instances must be 1 or more, got {instances!r}.")
    return bundle, name


def write_python_repository(bundle, repo, *, name: str | None = None, variant: str = "fp32",
                            max_batch: int = 8, instances: int = 1) -> Path:
    """Write the python-flavor repository of ``bundle`` to the new folder ``repo``."""
    from runtime.tasks import pipeline_class

    bundle, name = checked_settings(bundle, name, max_batch, instances)
    if variant not in bundle.variants:
        raise InputError(f"The bundle has no variant {variant!r}. Note: it has "
                         f"{', '.join(sorted(bundle.variants))}.")
    task = bundle.check_task(None)
    cls = pipeline_class(task, bundle.manifest.get("family"), bundle.manifest.get("model_type"))
    inputs = input_names(task, cls)
    with new_repository(repo) as scratch:
        version = scratch / name / "1"
        version.mkdir(parents=True)
        shutil.copytree(bundle.path, version / "bundle",
                        ignore=shutil.ignore_patterns(".edgeport.lock", ".*-scratch-*"))
        shutil.copyfile(Path(__file__).with_name("python_model.py"), version / "model.py")
        write_text_atomic(version / SETTINGS, json.dumps(
            {"inputs": list(inputs), "bundle": "bundle", "variant": variant, "task": task}))
        write_text_atomic(scratch / name / "config.pbtxt",
                          config_pbtxt(name, inputs, max_batch, instances))
        if streams(cls):  # NAME_stream, decoupled: token streaming (serving/streaming.py)
            add_stream_model(scratch, name, SETTINGS)
    return Path(repo)
