"""`edgeport run BUNDLE INPUT... [--json] [--output-dir DIR] [--device D] [--backend B]`: a
bundle's pipeline on inputs (texts, or image or audio files for the vision and audio tasks, or
trajectories in JSON for a Decision Transformer), from the shell, on the CPU or a GPU, through
ONNX Runtime, TensorRT or OpenVINO (``--backend openvino [--device cpu|gpu|npu|auto]
[--precision f32|bf16|f16]``)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..bundle import BACKENDS
from ..errors import InputError
from ..files import write_bytes_atomic
from .command import json_for_stdout, terminal_safe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory (from `edgeport export`)")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="texts (or image or audio files, for vision and audio bundles; "
                             "JSON trajectories or .json files for a Decision Transformer) to "
                             "run on; none reads one input per line from stdin")
    parser.add_argument("--task", help="the task to run (default: the bundle's)")
    parser.add_argument("--variant", default="fp32", help="graph variant (default: fp32)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or cuda:N (a GPU by index), or tensorrt[:N] for ONNX "
                             "Runtime's TensorRT provider; with --backend openvino: cpu, gpu "
                             "(an Intel iGPU), npu or auto (default: cpu)")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                        help="what runs the graphs: onnxruntime (default), tensorrt for the "
                             "plans `edgeport build` wrote (with --device cuda), or openvino")
    parser.add_argument("--precision", choices=["f32", "bf16", "f16"],
                        help="openvino: the precision hint (default: what OpenVINO picks for "
                             "the device; `edgeport inspect BUNDLE --backend openvino` says "
                             "which)")
    parser.add_argument("--build-if-missing", action="store_true",
                        help="tensorrt: build the plans first when absent or stale")
    parser.add_argument("--context",
                        help="question-answering: the context the INPUT questions ask about")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline argument, VALUE parsed as JSON when it can be "
                             "(--set top_k=3 --set aggregation_strategy=simple)")
    parser.add_argument("--json", action="store_true", help="print results as one JSON document")
    parser.add_argument("--output-dir", type=Path, metavar="DIR",
                        help="vision: save masks and depth maps here (PNG images, .npy arrays) "
                             "and print their paths")


def key_values(pairs: list[str], flag: str = "--set", example: str = "top_k=3") -> dict:
    """KEY=VALUE command-line pairs -> a dict, each VALUE parsed as JSON when it can be.

    >>> key_values(["top_k=3", "aggregation_strategy=simple"])
    {'top_k': 3, 'aggregation_strategy': 'simple'}
    """
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} takes KEY=VALUE, got {pair!r}. Note: e.g. {flag} {example}.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
        except RecursionError:
            raise InputError(f"{flag} {key}=... is nested too deeply to be read. Note: pass a "
                             "plain value, e.g. {flag} {example}.") from None
    return options


def main(args) -> int:
    from ..pipeline import pipeline

    if args.inputs:
        inputs = [(text, f"INPUT argument {n}") for n, text in enumerate(args.inputs, 1)]
    else:
        inputs = stdin_lines()
    if not inputs:
        raise InputError("No inputs: give texts as arguments, or one per line on stdin.")
    if args.build_if_missing and args.backend != "tensorrt":
        raise InputError("--build-if-missing builds TensorRT plans: it goes with --backend "
                         "tensorrt.")
    if args.precision is not None and args.backend != "openvino":
        raise InputError(f"--precision is OpenVINO's precision hint: it goes with --backend "
                         f"openvino. Note: on {args.backend} the variant sets the precision "
                         "(--variant fp16, qdq).")
    if args.context is not None:
        check_text(args.context, "--context")
    options = key_values(args.options)
    for key, value in options.items():
        check_text(value, f"--set {key}")
    if args.output_dir is not None:  # before the slow part: a wrong folder fails at once
        output_folder(args.output_dir)
    pipe = pipeline(args.task, model=args.bundle, variant=args.variant, device=args.device,
                    backend=args.backend, build_if_missing=args.build_if_missing,
                    precision=args.precision)
    if reads_text(pipe):
        for text, where in inputs:
            check_text(text, where)
    inputs = [text for text, _ in inputs]
    if pipe.task == "question-answering":
        if args.context is None:
            raise InputError("question-answering needs --context TEXT; the INPUTs are questions.")
        results = [pipe(question=q, context=args.context, **options) for q in inputs]
    elif args.context is not None:
        raise InputError(f"--context is for question-answering; this bundle runs {pipe.task}.")
    elif pipe.task == "reinforcement-learning":  # each INPUT a trajectory in JSON
        results = [{name: np.asarray(value).tolist()
                    for name, value in pipe(trajectory_input(item), **options).items()}
                   for item in inputs]
    else:
        results = [pipe(text, **options) for text in inputs]
    results = [printable(result, args.output_dir, f"{index}-{Path(str(item)).stem}")
               for index, (item, result) in enumerate(zip(inputs, results))]
    if args.json:
        print(json_for_stdout(results if len(results) > 1 else results[0]))
    else:
        for text, result in zip(inputs, results):
            print(f"{terminal_safe(text)}\n  {json_for_stdout(result)}")
    return 0


def trajectory_input(item: str) -> dict:
    """A reinforcement-learning INPUT: a JSON object of states, actions, returns_to_go and
    timesteps (lists), inline or in a .json file."""
    from ..files import read_json_file
    from ..tasks.reinforcement_learning import trajectory_from_json, trajectory_object

    if item.lstrip().startswith("{"):
        return trajectory_from_json(item, "the INPUT trajectory")
    return trajectory_object(
        read_json_file(item, "the trajectory file", error=InputError, missing=InputError))


def reads_text(pipe) -> bool:
    """Whether a pipeline (or its class) takes texts, which go to a tokenizer that takes only
    valid Unicode; image and audio pipelines take file names, passed on as the OS gave them (a
    name that is not UTF-8 is still a valid path)."""
    return not set(pipe.preprocessors) & {"image_processor", "feature_extractor"}


def stdin_lines() -> list[tuple[str, str]]:
    """The non-blank lines of stdin, each with where it came from ("line 3 of stdin").

    Read as bytes and decoded as the OS decodes arguments (UTF-8, undecodable bytes kept as
    surrogates), so that a line is a file name exactly as given, and a text that is not UTF-8
    is refused with its line number (``check_text``) instead of failing in the tokenizer.
    """
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        return []
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a text stream put in place of stdin (a test, an embedding program)
        lines = sys.stdin.read().split("\n")
    else:
        data = raw.read()
        if data.startswith(b"\xef\xbb\xbf"):  # the UTF-8 mark some Windows editors write
            data = data[3:]
        lines = [os.fsdecode(line) for line in data.splitlines()]
    return [(line.rstrip("\r\n"), f"Line {n} of stdin") for n, line in enumerate(lines, 1)
            if line.strip()]


def check_text(value, where: str) -> None:
    """An InputError when ``value`` (a text, or a list or dict holding texts) is not valid
    Unicode: arguments and stdin lines reach Python with each byte that is not UTF-8 as a lone
    surrogate, which no tokenizer takes.

    >>> check_text("caf\\udce9", "INPUT argument 1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    runtime.errors.InputError: INPUT argument 1 is not valid UTF-8 text: byte 0xe9 at ... Note: ...
    """
    if isinstance(value, dict):
        for item in value.values():
            check_text(item, where)
    elif isinstance(value, list):
        for item in value:
            check_text(item, where)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(value[exc.start])
            what = (f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF
                    else f"the lone surrogate U+{code:04X}")
            raise InputError(
                f"{where} is not valid UTF-8 text: {what} at character {exc.start + 1}. Note: "
                "give text in UTF-8; convert a file with `iconv -f LATIN1 -t UTF-8 FILE`, or set "
                "the terminal's locale to UTF-8.") from None


def output_folder(path: Path) -> None:
    """Make the --output-dir folder (and its parents), or say in one line why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(
            f"--output-dir {path} is a file, not a folder. Note: name a folder (it is made when "
            "missing), or move the file away.") from None
    except OSError as exc:
        raise InputError(
            f"--output-dir {path} cannot be made: {exc.strerror}. Note: name a folder this user "
            "may write in.") from None


def printable(result, directory: Path | None, stem: str):
    """A result with its images and arrays (masks, depth) replaced by the paths they were saved
    to in ``directory``, or by a short description when there is none."""
    saved = 0

    def convert(value, key: str):
        nonlocal saved
        if isinstance(value, (Image.Image, np.ndarray)):
            image = isinstance(value, Image.Image)
            if directory is None:
                shape = f"{value.mode} {value.width}x{value.height}" if image else (
                    f"{value.dtype} {list(value.shape)}")
                return f"<{'image' if image else 'array'} {shape}: pass --output-dir to save it>"
            name = f"{file_part(stem)}-{file_part(key)}-{saved}.{'png' if image else 'npy'}"
            saved += 1
            path = directory / name
            _save(value, path)
            return str(path)
        if isinstance(value, dict):
            return {k: convert(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v, key) for v in value]
        return value

    return convert(result, "result")


def file_part(text: str, limit: int = 60) -> str:
    """``text`` as a safe part of a file name: the input's name and the result's keys (which
    a model's labels can be) name the saved files, so no '/', no '..', no control characters.

    >>> file_part("../../etc/passwd"), file_part("café au lait")
    ('etc_passwd', 'caf_au_lait')
    """
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return safe[:limit] or "_"


def _save(value, path: Path) -> None:
    """Write through a temp file of a random name beside ``path``, then rename: never a
    half-written file, and a symlink planted in the folder cannot redirect the write."""
    stream = io.BytesIO()
    if isinstance(value, Image.Image):
        value.save(stream, format="PNG")
    else:
        np.save(stream, value, allow_pickle=False)
    write_bytes_atomic(path, stream.getvalue())
