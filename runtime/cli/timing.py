"""`edgeport bench`: a bundle's pipeline timed the way users call it, stage by stage, beside
other variants and (with a reference backend) transformers, in one run.

>>> report = benchmark("bundle", variants=["fp32", "int8"], iterations=50)   # doctest: +SKIP
>>> print(markdown(report))                                                  # doctest: +SKIP
| backend | batch | tokens | total p50 ms | p90 | p99 | preprocess | inference | ...

What is measured, per backend and per cell of the grid (batch size x sequence length):

- The latency of whole calls (median, p90, p99), split into stages without touching any task's
  code: every engine a pipeline holds (``pipe.engine``; a generative pipeline's
  ``pipe.model.encoder`` and ``.decoder``) is wrapped in a proxy that notes when each run starts
  and ends. Preprocess is the call's start to the first run; inference the first run's start
  to the last run's end (a generation loop's work between decoder steps, and a chunked input's
  later chunks, included); postprocess the rest. The stages of a call add up to its total;
  ``engine`` is the time inside runs alone. A reference backend marks the same points with its
  own hooks (transformers: ``Pipeline._forward`` and the model's forward).
- Throughput: items per second over all timed calls. Generation: the time to the first token
  (the end of the first decoder run) and new tokens per second (rows of every decoder run).
- Cold start, in a fresh process per backend: import, load and first result, then one call of
  every cell and the peak resident memory (VmHWM, else ru_maxrss), so each backend's memory is
  its own (none with --cold-starts 0).
- Model size: the bytes of the variant's graph files (transformers: the checkpoint's weights).

Backends are timed interleaved (``timed_rounds``): noise from other processes on a shared
machine spreads over all of them, so the ratios between them hold better than the times.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..bundle import Bundle
from ..errors import EngineError, InputError, did_you_mean
from ..pipeline import pipeline_from_bundle
from .bench_inputs import Workload, check_sequences, load_given, modality, workloads

STAGES = ("total", "preprocess", "inference", "postprocess", "engine")
ROUNDS = 5
# The CPU flags a report lists: the vector, bf16 and int8 instructions its speed depends on.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
             "amx_bf16", "amx_int8")
# Bounds past which a setting is a typo rather than a benchmark.
LIMITS = {"iterations": (1, 1_000_000), "warmup": (0, 100_000), "batch": (1, 4096),
          "cold_starts": (0, 100), "max_new_tokens": (1, 8192), "threads": (1, 1024)}
MAX_SECONDS = 3600.0
# Generated inputs: tokens per text, seconds of audio; new tokens per generating call.
DEFAULTS = {"sequence": 128, "seconds": 5.0, "max_new_tokens": 32}


# --- timing -------------------------------------------------------------------------------------
def timed_rounds(calls: Mapping[str, Callable[[Any], Any]], inputs: Sequence, *,
                 seconds: float | None = None, iterations: int | None = None,
                 rounds: int = ROUNDS, tick: Callable[[], None] | None = None
                 ) -> dict[str, list]:
    """What each callable returns on each timed call, per name: a callable measures its own call
    (returns its latency, or a record of stages) and is given one of ``inputs`` at a time.

    The budget is ``seconds`` of calls in all, shared equally, or ``iterations`` timed calls per
    callable. Each round runs every callable in turn (in a rotated order), in one block: ONNX
    Runtime's intra-op threads spin for a while after a run, and interleaving sessions call by
    call would time each against the previous one's spinning threads (on 2 cores that doubled
    fp32's median). With more than one callable a block starts with an untimed pass over
    ``inputs``, which lets the previous block's threads go quiet. ``tick`` is called after
    every call, timed or not (a progress bar).
    """
    if (seconds is None) == (iterations is None):
        raise TypeError("timed_rounds takes seconds or iterations, one of them")
    tick = tick or (lambda: None)
    order = list(calls)
    samples: dict[str, list] = {name: [] for name in order}
    if iterations is not None:
        rounds = max(1, min(rounds, iterations))
    for number in range(rounds):
        shift = number % len(order)  # rotate: no callable always runs after the same one
        for name in order[shift:] + order[:shift]:
            call = calls[name]
            if len(order) > 1:
                for item in inputs:
                    call(item)
                    tick()
            if iterations is not None:
                for _ in range(iterations // rounds + (number < iterations % rounds)):
                    samples[name].append(call(inputs[len(samples[name]) % len(inputs)]))
                    tick()
                continue
            deadline = time.perf_counter() + seconds / rounds / len(order)
            while time.perf_counter() < deadline:
                for item in inputs:
                    samples[name].append(call(item))
                    tick()
    return samples


def planned_calls(callables: int, inputs: int, iterations: int, rounds: int = ROUNDS) -> int:
    """How many calls ``timed_rounds`` makes with an ``iterations`` budget (for a progress
    bar)."""
    rounds = max(1, min(rounds, iterations))
    untimed = rounds * inputs if callables > 1 else 0
    return callables * (iterations + untimed)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99 (interpolated between ranks) and mean."""
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean())}


# --- stages -------------------------------------------------------------------------------------
@dataclass
class StageClock:
    """When the engines ran during one call: ``runs`` as (kind, start, end, rows), kind
    "model", "encoder" or "decoder" and rows the batch rows fed; ``spans`` as (start, end) for
    a backend that marks its inference stage itself (else the runs bound it)."""

    runs: list[tuple[str, float, float, int]] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)

    def reset(self) -> None:
        self.runs.clear()
        self.spans.clear()


class TimedEngine:
    """An engine that notes each run on a clock; every other attribute is the engine's own, so
    a pipeline holding it runs as before."""

    def __init__(self, engine, clock: StageClock, kind: str):
        self._engine, self._clock, self._kind = engine, clock, kind

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def run(self, feed, *args, **kwargs):
        return self._timed(self._engine.run, feed, *args, **kwargs)

    def run_bound(self, feed, *args, **kwargs):  # OrtEngine's IOBinding path (generation)
        return self._timed(self._engine.run_bound, feed, *args, **kwargs)

    def _timed(self, method, feed, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(feed, *args, **kwargs)
        finally:
            ids = feed.get("input_ids")
            rows = int(ids.shape[0]) if ids is not None else 0
            self._clock.runs.append((self._kind, start, time.perf_counter(), rows))


def instrument(pipe) -> StageClock:
    """Wrap a runtime pipeline's engines in TimedEngines noting on one new clock: ``engine``,
    and a generative pipeline's ``model.decoder`` and ``model.encoder`` (the decoder first: it
    is ``engine`` too, and keeps its kind)."""
    clock = StageClock()
    wrapped: dict[int, TimedEngine] = {}

    def wrap(engine, kind: str) -> TimedEngine:
        return wrapped.setdefault(id(engine), TimedEngine(engine, clock, kind))

    model = getattr(pipe, "model", None)
    if model is not None and hasattr(model, "decoder"):
        model.decoder = wrap(model.decoder, "decoder")
        if model.encoder is not None:
            model.encoder = wrap(model.encoder, "encoder")
    pipe.engine = wrap(pipe.engine, "model")
    return clock


def measure(backend: Backend, args: tuple, kwargs: dict) -> dict[str, float]:
    """One call, in seconds per stage (STAGES); a generating call also gives ``first_token``
    (call start to the end of the first decoder run) and ``new_tokens``."""
    clock = backend.clock
    clock.reset()
    start = time.perf_counter()
    backend(*args, **kwargs)
    end = time.perf_counter()
    spans = clock.spans or [(s, e) for _, s, e, _ in clock.runs]
    if not spans:
        raise EngineError(
            f"{backend.name}: the call ran no engine, so its stages cannot be told apart. Note: "
            "a pipeline must run its engines through pipe.engine (or pipe.model's encoder and "
            "decoder)."
        )
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    sample = {"total": end - start, "preprocess": first - start, "inference": last - first,
              "postprocess": end - last, "engine": sum(e - s for _, s, e, _ in clock.runs)}
    decoder = [(e, rows) for kind, _, e, rows in clock.runs if kind == "decoder"]
    if decoder:
        sample["first_token"] = decoder[0][0] - start
        sample["new_tokens"] = sum(rows for _, rows in decoder)
    return sample


# --- backends -----------------------------------------------------------------------------------
@dataclass
class ColdStart:
    """How a fresh process makes a backend's pipeline: import ``imports``, call ``factory`` (a
    dotted name) with ``kwargs``, and set ``attributes`` (dotted paths) on the result, with
    ``env`` added to the environment. All of it JSON."""

    imports: list[str]
    factory: str
    kwargs: dict[str, Any]
    attributes: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    """One thing to time: a pipeline (called as users call it) and the clock its engine runs
    are noted on. ``kind`` is "edgeport" or "transformers"; ``takes_batch_size`` whether calls
    on several items pass ``batch_size``."""

    name: str
    kind: str
    clock: StageClock
    takes_batch_size: bool
    size_bytes: int | None
    versions: dict[str, str]
    cold_start: ColdStart

    def __call__(self, *args, **kwargs) -> Any: ...


class EdgeportBackend:
    """The runtime's pipeline on one variant of a bundle, on ``backend`` (at ``row``'s
    precision: OpenVINO's)."""

    kind = "edgeport"

    def __init__(self, bundle: Bundle, variant: str, task: str | None = None, *,
                 threads: int | None = None, device: str = "cpu",
                 backend: str = "onnxruntime", row: BackendRow | None = None):
        import onnxruntime

        from ..version import __version__

        row = row or BackendRow(backend)
        backend = row.backend
        self.name = row.label(variant)
        self.precision = row.precision  # what it runs at (OpenVINO's), None: the variant's
        self.pipe = pipeline_from_bundle(bundle, task, variant=variant, device=device,
                                         threads=threads, backend=backend,
                                         build_if_missing=backend == "tensorrt",
                                         precision=row.hint)
        self.clock = instrument(self.pipe)
        self.takes_batch_size = "batch_size" in self.pipe.parameters
        self.size_bytes = bundle.summary()["variants"][variant]["bytes"]
        self.versions = {"edgeport": __version__, "onnxruntime": onnxruntime.__version__,
                         **row.versions}
        kwargs = {"task": task, "model": str(bundle.path), "variant": variant,
                  "device": device, "threads": threads, "backend": backend}
        if row.hint is not None:
            kwargs["precision"] = row.hint
        self.cold_start = ColdStart(imports=["runtime"], factory="runtime.pipeline",
                                    kwargs=kwargs)

    def __call__(self, *args, **kwargs):
        return self.pipe(*args, **kwargs)


@dataclass(frozen=True)
class BackendRow:
    """What runs a variant: ``backend``, and for OpenVINO the precision hint given (``hint``,
    None: OpenVINO's default for the device) and the precision it runs at (``precision``)."""

    backend: str
    hint: str | None = None
    precision: str | None = None
    versions: dict = field(default_factory=dict, compare=False)

    def label(self, variant: str) -> str:
        """The row's name: "fp32" on ONNX Runtime, "fp32 (tensorrt)", "fp32 (openvino bf16)"."""
        if self.backend == "onnxruntime":
            return variant
        return f"{variant} ({' '.join(filter(None, (self.backend, self.precision)))})"


def backend_rows(engines: Sequence[str], precision: str | None = None, device: str = "cpu"
                 ) -> list[BackendRow]:
    """The backends of ``engines``, each "BACKEND" or "openvino:PRECISION" (f32, bf16, f16);
    ``precision`` is the hint of the openvino entries that name none. OpenVINO's rows say the
    precision they run at (the hint, else the device's default, which this asks OpenVINO
    for); two entries that run alike (``openvino`` and ``openvino:bf16`` where bf16 is the
    default) are one row. An InputError for an unknown backend or precision, or a precision
    given for a backend that takes none."""
    from ..backends.engine import BACKENDS
    from ..backends.openvino.libs import PRECISIONS

    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"Unknown precision {precision!r}. "
                         f"{did_you_mean(str(precision), PRECISIONS)}")
    rows: dict[tuple, BackendRow] = {}
    for entry in engines:
        backend, colon, hint = str(entry).partition(":")
        if backend not in BACKENDS:
            raise InputError(f"Unknown backend {entry!r}. {did_you_mean(backend, BACKENDS)}")
        if colon and backend != "openvino":
            raise InputError(f"--backend {entry}: only openvino takes a precision ({backend}'s "
                             "comes from the variant: fp32, fp16, int8, qdq). Note: write "
                             f"--backend {backend}, and openvino:bf16 for OpenVINO at bf16.")
        if colon and hint not in PRECISIONS:
            raise InputError(f"--backend {entry}: unknown OpenVINO precision {hint!r}. "
                             f"{did_you_mean(hint, PRECISIONS)}")
        if backend != "openvino":
            rows.setdefault((backend,), BackendRow(backend))
            continue
        row = _openvino_row(hint or precision, device)
        rows.setdefault((backend, row.precision), row)
    if precision is not None and not any(row.backend == "openvino" for row in rows.values()):
        raise InputError(f"--precision {precision} is OpenVINO's precision hint, and no "
                         "openvino backend is benched. Note: add --backend openvino (or name "
                         "each precision, as in --backend onnxruntime openvino:f32 "
                         "openvino:bf16); on onnxruntime and tensorrt the variant sets the "
                         "precision (fp32, fp16, int8, qdq).")
    return list(rows.values())


def _openvino_row(hint: str | None, device: str) -> BackendRow:
    """OpenVINO at ``hint`` on ``device``: the precision it runs at, checked on this machine
    (a clear error when the device cannot run it), and OpenVINO's version."""
    from ..backends.openvino.libs import DeviceFacts, import_openvino

    ov = import_openvino()
    facts = DeviceFacts.detect(ov, ov.Core(), device, hint)
    return BackendRow("openvino", hint, facts.precision, {"openvino": facts.openvino,
                                                          "device": facts.full_name})


# A reference backend's maker: (bundle, task, generates=, threads=, device=) -> Backend.
ReferenceFactory = Callable[..., Backend]


# --- cold start ---------------------------------------------------------------------------------
# Run with `python -c`: nothing of edgeport is imported before the clock starts.
_COLD_START = """
import importlib, json, pickle, sys, time
started = time.perf_counter()
spec = json.loads(sys.argv[1])
for name in spec["imports"]:
    importlib.import_module(name)
module, _, attribute = spec["factory"].rpartition(".")
factory = getattr(sys.modules[module], attribute)
imported = time.perf_counter()
pipe = factory(**spec["kwargs"])
for path, value in spec["attributes"].items():
    *parents, name = path.split(".")
    owner = pipe
    for parent in parents:
        owner = getattr(owner, parent)
    setattr(owner, name, value)
loaded = time.perf_counter()
with open(spec["calls"], "rb") as stream:
    calls = pickle.load(stream)
ready = time.perf_counter()
args, kwargs = calls[0]
pipe(*args, **kwargs)
first = time.perf_counter()
for args, kwargs in calls[1:]:
    pipe(*args, **kwargs)
# Linux: the peak of this process's own memory (ru_maxrss would count the parent's from
# before exec); elsewhere ru_maxrss, in kilobytes (macOS: bytes).
peak = None
try:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
except (OSError, StopIteration):
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024
    except ImportError:  # Windows
        pass
print(json.dumps({"import_s": imported - started, "load_s": loaded - imported,
                  "first_result_s": first - ready, "peak_rss_bytes": peak}))
"""


def cold_start(name: str, spec: ColdStart, calls: Sequence[tuple[tuple, dict]], *,
               timeout: float = 1800.0) -> dict[str, float | None]:
    """Import, load and first-call seconds of a backend in a fresh process of this
    interpreter, the process's wall time (interpreter start included), and its peak resident
    memory after ``calls[0]`` and the other ``calls``."""
    root = str(Path(__file__).resolve().parents[1])  # where `runtime` is importable from
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, **spec.env, "PYTHONPATH": path}
    with tempfile.TemporaryDirectory(prefix="edgeport-bench-") as scratch:
        inputs = Path(scratch) / "calls.pickle"
        inputs.write_bytes(pickle.dumps(list(calls)))
        payload = json.dumps({"imports": spec.imports, "factory": spec.factory,
                              "kwargs": spec.kwargs, "attributes": spec.attributes,
                              "calls": str(inputs)})
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-c", _COLD_START, payload], env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EngineError(f"The cold start of {name} took over {timeout:.0f} s in a fresh "
                              "process. Note: bench with --cold-starts 0.") from None
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise EngineError(
            f"The cold start of {name} failed in a fresh process: {lines[-1]}. Note: the same "
            "call succeeded in this process; check the environment (PYTHONPATH, threads), or "
            "bench with --cold-starts 0."
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["to_first_result_s"] = (result["import_s"] + result["load_s"]
                                   + result["first_result_s"])
    result["process_s"] = wall
    return result


def _median_cold_start(results: list[dict]) -> dict:
    """Each time's median over the repeats; the largest peak memory."""
    merged = {key: float(np.median([r[key] for r in results]))
              for key in results[0] if key != "peak_rss_bytes"}
    peaks = [r["peak_rss_bytes"] for r in results if r["peak_rss_bytes"] is not None]
    merged["peak_rss_bytes"] = max(peaks) if peaks else None
    merged["repeats"] = len(results)
    return merged


# --- the benchmark ------------------------------------------------------------------------------
def benchmark(
    bundle: str | os.PathLike | Bundle,
    *,
    task: str | None = None,
    variants: Sequence[str] | None = None,
    reference: ReferenceFactory | None = None,
    batches: Sequence[int] = (1,),
    sequences: Sequence[int] | None = None,
    seconds: float | None = None,
    max_new_tokens: int | None = None,
    inputs: Sequence[str] | None = None,
    iterations: int = 20,
    warmup: int = 3,
    cold_starts: int = 1,
    threads: int | None = None,
    device: str = "cpu",
    engines: Sequence[str] = ("onnxruntime",),
    precision: str | None = None,
    peers: Sequence[ReferenceFactory] = (),
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """The report of one benchmark (a JSON-ready dict; ``markdown`` prints it).

    ``variants``: the bundle's variants to time (default: all). ``reference``: makes the
    backend to compare with (``exporter.bench_reference.reference_from_bundle`` for
    transformers). Generated inputs unless ``inputs`` (texts, or image or audio files) are
    given: texts of each of ``sequences`` tokens (default 128), images of the model's size,
    ``seconds`` of audio (default 5). Generating bundles decode greedily ``max_new_tokens``
    (default 32). Each backend makes ``warmup`` untimed calls per cell, then ``iterations``
    timed ones, interleaved with the others; ``cold_starts`` fresh processes per backend.
    ``progress(done, total, what)`` is told of every call. ``engines``: the backends that run
    each variant (``["onnxruntime", "tensorrt"]`` times both, TensorRT's plans built when
    missing; its rows are named "VARIANT (tensorrt)"); "openvino:bf16" runs OpenVINO at a
    precision hint (``precision``: the hint of plain "openvino"), its rows named "VARIANT
    (openvino bf16)" after the precision they run at (``backend_rows``). A variant a backend
    refuses (dynamic-int8 on OpenVINO) is left out of that backend's rows, with the reason
    in the report's ``not_run``. ``peers``: makers (as ``reference``) of other backends timed
    beside, before the reference (optimum-intel's OVModel in transformers.pipeline).
    """
    _check_settings(iterations=iterations, warmup=warmup, batches=batches,
                    cold_starts=cold_starts, threads=threads, max_new_tokens=max_new_tokens)
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    variants = list(dict.fromkeys(variants or bundle.variants))
    for variant in variants:
        if variant not in bundle.variants:
            raise InputError(f"The bundle {bundle.path} has no variant {variant!r}. "
                             + did_you_mean(variant, bundle.variants))
    backends: list[Backend] = []
    not_run = []
    for row in backend_rows(engines, precision, device):
        for variant in variants:
            refused = _refusal(bundle, variant, row.backend)
            if refused:
                not_run.append({"backend": row.label(variant), "reason": refused})
                continue
            backends.append(EdgeportBackend(bundle, variant, task, threads=threads,
                                            device=device, row=row))
    if not backends:
        raise InputError(" ".join(entry["reason"] for entry in not_run))
    pipe = backends[0].pipe
    settings = _input_settings(pipe, bundle, sequences=sequences, seconds=seconds,
                               max_new_tokens=max_new_tokens, inputs=inputs)
    given = load_given(pipe, inputs) if inputs else None
    cells = workloads(pipe, pipe.task, batches=sorted(set(batches)), given=given,
                      **{k: settings[k] for k in ("sequences", "seconds", "max_new_tokens")})
    for maker in [*peers, *([reference] if reference is not None else [])]:
        backends.append(maker(bundle, task or bundle.task, generates=pipe.generates,
                              threads=threads, device=device))
    total = sum(planned_calls(len(backends), len(cell.batches), iterations)
                + len(backends) * warmup for cell in cells) + len(backends) * cold_starts
    ticker = _Ticker(total, progress)
    started_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    runs = [run for cell in cells
            for run in _time_cell(backends, cell, iterations, warmup, ticker)]
    backend_records = [_backend_record(backend, cells, cold_starts, ticker)
                       for backend in backends]
    info = _machine()
    info["load_average"] = {"start": started_load,
                            "end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    return {
        "schema": "edgeport-bench/1",
        "bundle": str(bundle.path),
        "task": pipe.task,
        "model_type": bundle.model_type,
        "family": bundle.manifest.get("family"),
        "source": (bundle.manifest.get("source") or {}).get("checkpoint"),
        "machine": info,
        "settings": {**settings, "batches": sorted(set(batches)), "iterations": iterations,
                     "warmup": warmup, "cold_starts": cold_starts, "threads": threads,
                     "device": device, "engines": list(dict.fromkeys(engines)),
                     "precision": precision,
                     "inputs": "given" if inputs else "generated",
                     "reference": backends[-1].kind if reference is not None else None},
        "backends": backend_records,
        "runs": runs,
        "not_run": not_run,
        "ratios": _ratios(runs, backend_records) if reference is not None else [],
    }


def _refusal(bundle: Bundle, variant: str, backend: str) -> str | None:
    """Why ``backend`` does not run ``variant`` (OpenVINO and a dynamic-int8 variant), or
    None."""
    if backend != "openvino":
        return None
    from ..backends.openvino import check_variant

    try:
        check_variant(bundle, variant)
    except InputError as exc:
        return str(exc)
    return None


def _check_settings(**given) -> None:
    """A clear error for a setting out of LIMITS (None: not given)."""
    for name, value in given.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        key = "batch" if name == "batches" else name
        low, high = LIMITS[key]
        for item in values:
            if item is None:
                continue
            if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
                flag = "--" + key.replace("_", "-")
                raise InputError(f"{flag} {item!r} is out of range. Note: use an integer from "
                                 f"{low} to {high}.")
    if not given["batches"]:
        raise InputError("No batch size given. Note: e.g. --batch 1 8.")


def _input_settings(pipe, bundle: Bundle, *, sequences, seconds, max_new_tokens, inputs
                    ) -> dict:
    """The input settings that apply to this bundle, defaults filled in; a clear error for a
    setting that does not apply (--sequence on an image model, ...)."""
    kind = modality(pipe)
    if sequences is not None and (kind != "text" or inputs):
        why = f"this bundle reads {kind}" if kind != "text" else "--input texts are used as given"
        raise InputError(f"--sequence sets the length of generated texts, but {why}. Note: drop "
                         "--sequence.")
    if seconds is not None and (kind != "audio" or inputs):
        why = f"this bundle reads {kind}" if kind != "audio" else "--input audio is used as given"
        raise InputError(f"--seconds sets the length of generated audio, but {why}. Note: drop "
                         "--seconds.")
    if max_new_tokens is not None and not pipe.generates:
        raise InputError(f"--max-new-tokens is for generating bundles; {bundle.path} runs "
                         f"{pipe.task}. Note: drop --max-new-tokens.")
    if seconds is not None and not 0 < seconds <= MAX_SECONDS:
        raise InputError(f"--seconds {seconds} is out of range. Note: use more than 0 and at "
                         f"most {MAX_SECONDS:.0f} seconds of audio.")
    settings = {"sequences": None, "seconds": None, "max_new_tokens": None}
    if pipe.generates:
        settings["max_new_tokens"] = max_new_tokens or DEFAULTS["max_new_tokens"]
    if kind == "text" and not inputs:
        settings["sequences"] = sorted(set(sequences or [DEFAULTS["sequence"]]))
        check_sequences(pipe, settings["sequences"], settings["max_new_tokens"])
    if kind == "audio" and not inputs:
        settings["seconds"] = seconds or DEFAULTS["seconds"]
    return settings


class _Ticker:
    """Counts the calls made, for ``progress(done, total, what)``."""

    def __init__(self, total: int, progress: Callable[[int, int, str], None] | None):
        self.done, self.total, self.progress = 0, total, progress

    def __call__(self, what: str) -> Callable[[], None]:
        def advance() -> None:
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.total, what)
        return advance


def _time_cell(backends: list[Backend], cell: Workload, iterations: int, warmup: int,
               ticker: _Ticker) -> list[dict]:
    """One run record per backend: ``warmup`` untimed calls each (all of one backend's before
    the next's), then ``iterations`` timed calls each, interleaved."""
    what = _cell_name(cell)
    calls = {backend.name: _measuring(backend, cell) for backend in backends}
    for backend in backends:
        for index in range(warmup):
            calls[backend.name](cell.batches[index % len(cell.batches)])
            ticker(f"warm-up {what}")()
    samples = timed_rounds(calls, cell.batches, iterations=iterations,
                           tick=ticker(f"timing {what}"))
    return [_run_record(backend, cell, samples[backend.name]) for backend in backends]


def _backend_record(backend: Backend, cells: list[Workload], cold_starts: int,
                    ticker: _Ticker) -> dict:
    """Name, size, versions, and the cold start (median of ``cold_starts`` fresh processes,
    each making the first call of every cell)."""
    record = {"name": backend.name, "kind": backend.kind, "size_bytes": backend.size_bytes,
              "versions": backend.versions, "precision": getattr(backend, "precision", None),
              "cold_start": None}
    if cold_starts:
        calls = [cell.arguments(cell.batches[0], backend.takes_batch_size) for cell in cells]
        results = []
        for _ in range(cold_starts):
            results.append(cold_start(backend.name, backend.cold_start, calls))
            ticker(f"cold start {backend.name}")()
        record["cold_start"] = _median_cold_start(results)
    return record


def _measuring(backend: Backend, cell: Workload) -> Callable[[list], dict]:
    def call(items: list) -> dict:
        args, kwargs = cell.arguments(items, backend.takes_batch_size)
        return measure(backend, args, kwargs)
    return call


def _cell_name(cell: Workload) -> str:
    return f"batch {cell.batch}" + (f", sequence {cell.sequence}" if cell.sequence else "")


def _run_record(backend: Backend, cell: Workload, samples: list[dict]) -> dict:
    seconds = sum(s["total"] for s in samples)
    record = {
        "backend": backend.name, "kind": backend.kind, "batch": cell.batch,
        "sequence": cell.sequence, "tokens": cell.tokens, "calls": len(samples),
        "latency_ms": {stage: percentiles([1e3 * s[stage] for s in samples])
                       for stage in STAGES},
        "items_per_s": cell.batch * len(samples) / seconds,
    }
    if all("first_token" in s for s in samples):
        tokens = sum(s["new_tokens"] for s in samples)
        record["generation"] = {
            "time_to_first_token_ms": percentiles([1e3 * s["first_token"] for s in samples]),
            "new_tokens_per_call": tokens / len(samples),
            "tokens_per_s": tokens / seconds,
        }
    return record


def _ratios(runs: list[dict], backends: list[dict]) -> list[dict]:
    """Per edgeport run, how many times faster than the reference in the same cell, per stage
    (median against median), in tokens/s, and in cold start; and its share of the
    reference's peak memory."""
    reference = backends[-1]
    theirs = {(r["batch"], r["sequence"]): r for r in runs if r["backend"] == reference["name"]}
    cold = {b["name"]: b["cold_start"] for b in backends}
    ratios = []
    for run in runs:
        if run["kind"] != "edgeport":
            continue
        other = theirs[run["batch"], run["sequence"]]
        ratio = {"variant": run["backend"], "batch": run["batch"], "sequence": run["sequence"],
                 "speedup": {stage: _ratio(other["latency_ms"][stage]["median"],
                                           run["latency_ms"][stage]["median"])
                             for stage in STAGES}}
        if "generation" in run and "generation" in other:
            ratio["tokens_per_s"] = _ratio(run["generation"]["tokens_per_s"],
                                           other["generation"]["tokens_per_s"])
        ours, base = cold[run["backend"]], cold[reference["name"]]
        if ours and base:
            ratio["cold_start_speedup"] = _ratio(base["to_first_result_s"],
                                                 ours["to_first_result_s"])
            if ours["peak_rss_bytes"] and base["peak_rss_bytes"]:
                ratio["peak_rss_fraction"] = ours["peak_rss_bytes"] / base["peak_rss_bytes"]
        ratios.append(ratio)
    return ratios


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _machine() -> dict:
    """What the numbers were measured on; ``cpu_flags``: which of CPU_FLAGS (what bf16 and
    int8 speed depend on) the CPU has (None: not known here)."""
    processor, named, flags = platform.processor() or platform.machine(), False, None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and not named:
                processor, named = line.partition(":")[2].strip(), True
            elif line.startswith("flags") and flags is None:
                have = set(line.partition(":")[2].split())
                flags = [flag for flag in CPU_FLAGS if flag in have]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"platform": platform.platform(), "processor": processor, "cpus": os.cpu_count(),
            "cpus_usable": usable, "cpu_flags": flags, "python": platform.python_version(),
            "numpy": np.__version__}


# --- Markdown -----------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    """The report as Markdown tables: latency per stage (medians) and throughput per run;
    size, memory and cold start per backend; and, with a reference, the speed-ups."""
    machine = report["machine"]
    load = machine["load_average"]
    settings = report["settings"]
    lines = [
        f"### {report['model_type']} {report['task']} ({report['bundle']})",
        "",
        f"{machine['processor']}, {machine['cpus_usable'] or machine['cpus']} CPUs"
        + (f" ({' '.join(machine['cpu_flags']) or 'no avx2'})" if machine.get("cpu_flags")
           is not None else "") + ", "
        f"load average {_number(load['start'])} -> {_number(load['end'])}; "
        f"{settings['iterations']} timed calls after {settings['warmup']} warm-up, "
        f"{settings['inputs']} inputs" + (f", {settings['max_new_tokens']} new tokens (greedy)"
                                          if settings["max_new_tokens"] else "") + ".",
        "",
    ]
    generation = any("generation" in run for run in report["runs"])
    header = ["backend", "batch", "tokens", "total p50 ms", "p90", "p99", "preprocess",
              "inference", "postprocess", "engine", "items/s"]
    if generation:
        header += ["first token ms", "tokens/s"]
    rows = []
    for run in report["runs"]:
        latency = run["latency_ms"]
        row = [run["backend"], run["batch"], _tokens(run), _number(latency["total"]["median"]),
               _number(latency["total"]["p90"]), _number(latency["total"]["p99"]),
               *(_number(latency[stage]["median"]) for stage in STAGES[1:]),
               _number(run["items_per_s"])]
        if generation:
            gen = run.get("generation") or {}
            row += [_number(gen["time_to_first_token_ms"]["median"]) if gen else "-",
                    _number(gen["tokens_per_s"]) if gen else "-"]
        rows.append(row)
    lines += _table(header, rows)
    lines += ["", *(f"Not run: {entry['backend']}: {entry['reason']}"
                    for entry in report.get("not_run", []))] if report.get("not_run") else []
    header = ["backend", "size", "peak RSS", "import s", "load s", "first result s",
              "to first result s"]
    rows = []
    for backend in report["backends"]:
        cold = backend["cold_start"] or {}
        rows.append([backend["name"], format_size(backend["size_bytes"]),
                     format_size(cold.get("peak_rss_bytes")),
                     *(_number(cold.get(key)) for key in ("import_s", "load_s",
                                                          "first_result_s",
                                                          "to_first_result_s"))])
    lines += ["", *_table(header, rows)]
    if report["ratios"]:
        reference = report["backends"][-1]["name"]
        header = ["variant", "batch", "tokens", *(f"{stage} x" for stage in STAGES)]
        header += ["tokens/s x"] if generation else []
        header += ["cold start x", "memory"]
        rows = []
        for ratio in report["ratios"]:
            run = next(r for r in report["runs"] if r["backend"] == ratio["variant"]
                       and r["batch"] == ratio["batch"] and r["sequence"] == ratio["sequence"])
            row = [ratio["variant"], ratio["batch"], _tokens(run),
                   *(format_ratio(ratio["speedup"][stage]) for stage in STAGES)]
            if generation:
                row.append(format_ratio(ratio.get("tokens_per_s")))
            fraction = ratio.get("peak_rss_fraction")
            row += [format_ratio(ratio.get("cold_start_speedup")),
                    f"{100 * fraction:.0f}%" if fraction else "-"]
            rows.append(row)
        lines += ["", f"Speed-up over {reference} (x: times faster, its median over ours; "
                      f"memory: our peak RSS as a share of its):", "", *_table(header, rows)]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def _tokens(run: dict) -> str:
    """The cell's tokens per input: the requested sequence, else the measured mean."""
    if run["sequence"] is not None:
        return str(run["sequence"])
    return f"~{run['tokens']:.0f}" if run["tokens"] is not None else "-"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def format_ratio(value: float | None) -> str:
    """A speed-up as "2.50x"."""
    return "-" if value is None else f"{value:.2f}x"


def format_size(value: float | None) -> str:
    """Bytes in B, KB, MB or GB (powers of 1000)."""
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
