"""TensorRT plans in a bundle: their names, sidecars, and whether one can run here.

A plan runs only on the GPU architecture and TensorRT version it was built with (unless built
hardware- or version-compatible), and only means something for the graph file it was built
from. So each plan under ``engines/`` is named by graph, variant, compute capability and
TensorRT version, and its JSON sidecar records those facts, the build options, the shape
ranges, the sha256 of the source graph and that of the plan itself (checked when it loads).
``plan_problems`` reads a sidecar against this machine and the bundle and says, in words, why
a plan cannot be used.

>>> facts = DeviceFacts((8, 7), "Orin", "10.3.0")
>>> plan_path(Path("bundle"), "model", "fp16", facts, BuildOptions()).name
'model.fp16.sm87.trt10.3.0.plan'
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from ...bundle import Bundle, write_bytes_atomic, write_json_atomic
from ...errors import EdgeportError, InputError, did_you_mean
from ...files import inside, read_json_file
from .libs import DeviceFacts

ENGINES = "engines"
AMPERE = (8, 0)  # hardware-compatible plans run on Ampere and newer GPUs
# Recipes whose graphs TensorRT runs ("export": the fp32 graph). Precision comes from the graph
# (a strongly typed network); the other recipes use ONNX Runtime's own operators.
BUILDABLE_RECIPES = ("export", "fp16", "static-int8")


@dataclass(frozen=True)
class BuildOptions:
    """How a plan is built; recorded in its sidecar, and reused when it is rebuilt."""

    workspace_mb: int | None = None  # None: TensorRT's default (the GPU's memory)
    opt_level: int = 3  # TensorRT's builder optimization level, 0 (fast build) to 5
    dla_core: int | None = None  # a Jetson DLA core, with GPU fallback for what it cannot run
    hardware_compatible: bool = False  # runs on any Ampere or newer GPU (slower kernels)
    version_compatible: bool = False  # runs on later TensorRT versions too

    def __post_init__(self):
        if self.workspace_mb is not None and self.workspace_mb < 1:
            raise InputError(f"workspace must be at least 1 MB, got {self.workspace_mb}.")
        if not 0 <= self.opt_level <= 5:
            raise InputError(f"opt level must be 0 to 5, got {self.opt_level}. Note: 3 is "
                             "TensorRT's default; 5 searches longest for the fastest kernels.")
        if self.dla_core is not None and self.dla_core < 0:
            raise InputError(f"DLA core must be 0 or more, got {self.dla_core}.")

    def to_json(self) -> dict:
        return asdict(self)


def check_buildable(bundle: Bundle, variant: str) -> None:
    """An InputError for a variant whose graphs TensorRT cannot run (ONNX Runtime's own
    operators: dynamic int8, int4, fused graphs)."""
    if variant not in bundle.variants:
        raise InputError(f"The bundle {bundle.path} has no variant {variant!r}. "
                         + did_you_mean(variant, bundle.variants))
    recipe = (bundle.variants[variant].get("recipe") or {}).get("name")
    if recipe is not None and recipe not in BUILDABLE_RECIPES:
        raise InputError(
            f"The variant {variant!r} was made by the {recipe} recipe, whose ONNX Runtime "
            "operators TensorRT does not run. Note: TensorRT builds the fp32 graph and the "
            "fp16 and static-int8 variants; make one with `edgeport quantize "
            f"{bundle.path} --recipe fp16`.")


def plan_path(bundle_path: Path, graph: str, variant: str, facts: DeviceFacts,
              options: BuildOptions, branch: str | None = None) -> Path:
    """``engines/GRAPH[.BRANCH].VARIANT.GPU.trtVERSION.plan``; GPU is ``ampere-plus`` for a
    hardware-compatible plan, else the compute capability (``sm87``); BRANCH names the branch
    of a merged decoder the plan runs (``no_past``, ``with_past``)."""
    gpu = "ampere-plus" if options.hardware_compatible else facts.sm
    name = graph if branch is None else f"{graph}.{branch}"
    return engines_dir(bundle_path) / f"{name}.{variant}.{gpu}.trt{facts.tensorrt}.plan"


def engines_dir(bundle_path: Path) -> Path:
    """The bundle's ``engines/`` folder; an UnsafePathError when a symlink leads it outside the
    bundle (plans are read from it and written into it)."""
    return inside(bundle_path, ENGINES, what="The bundle's engines folder", directory=True)


def sidecar_path(plan: Path) -> Path:
    return plan.with_suffix(".json")


def timing_cache_path(bundle_path: Path, facts: DeviceFacts) -> Path:
    """One timing cache per GPU and TensorRT version, shared by the bundle's graphs: kernel
    timings carry over between graphs and rebuilds."""
    return engines_dir(bundle_path) / f"timing.{facts.sm}.trt{facts.tensorrt}.cache"


def source_sha256(bundle: Bundle, graph: str, variant: str) -> str:
    """The manifest's sha256 of the graph file a plan is built from (verified on disk)."""
    path = bundle.graph_path(graph, variant)
    return bundle.manifest["checksums"][path.relative_to(bundle.path).as_posix()]


def sidecar_for(bundle: Bundle, graph: str, variant: str, facts: DeviceFacts,
                options: BuildOptions, ranges: list[dict], profiles: list[dict],
                branch: dict | None = None) -> dict:
    """The sidecar of a plan; ``branch`` ({"name", "condition", "when"}) for a plan of one
    branch of a merged decoder."""
    from ...version import __version__

    path = bundle.graph_path(graph, variant)
    return {
        "graph": graph,
        **({} if branch is None else {"branch": dict(branch)}),
        "variant": variant,
        "source": path.relative_to(bundle.path).as_posix(),
        "source_sha256": source_sha256(bundle, graph, variant),
        "compute_capability": list(facts.compute_capability),
        "gpu": facts.gpu,
        "tensorrt": facts.tensorrt,
        "edgeport": __version__,
        "options": options.to_json(),
        "ranges": [{dim: list(r) for dim, r in group.items()} for group in ranges],
        "profiles": [{name: [list(s) for s in shapes] for name, shapes in p.items()}
                     for p in profiles],
    }


def plan_problems(sidecar: dict, facts: DeviceFacts, source_sha: str) -> list[str]:
    """Why a plan with this sidecar cannot run on this machine for this bundle; [] when it can.

    >>> side = {"compute_capability": [8, 7], "gpu": "Orin", "tensorrt": "10.3.0",
    ...         "source": "onnx/model.onnx", "source_sha256": "ab", "options": {}}
    >>> plan_problems(side, DeviceFacts((9, 0), "H100", "10.3.0"), "ab")
    ['it was built for compute capability 8.7 (Orin), and this GPU (H100) has 9.0']
    """
    problems = []
    options = sidecar.get("options", {})
    built_cc = tuple(sidecar["compute_capability"])
    if sidecar["source_sha256"] != source_sha:
        problems.append(f"it was built from another {sidecar['source']} (sha256 "
                        f"{sidecar['source_sha256'][:12]}..., the bundle's is "
                        f"{source_sha[:12]}...)")
    if options.get("hardware_compatible"):
        if facts.compute_capability < AMPERE:
            problems.append(f"it was built for Ampere or newer GPUs, and this GPU ({facts.gpu}) "
                            f"has compute capability {_cc(facts.compute_capability)}")
    elif built_cc != facts.compute_capability:
        problems.append(f"it was built for compute capability {_cc(built_cc)} ({sidecar['gpu']}), "
                        f"and this GPU ({facts.gpu}) has {_cc(facts.compute_capability)}")
    built, have = _version(sidecar["tensorrt"]), _version(facts.tensorrt)
    if options.get("version_compatible") and have < built:
        problems.append(f"it was built with TensorRT {sidecar['tensorrt']} (version-compatible: "
                        f"that or later), and TensorRT {facts.tensorrt} is installed")
    elif not options.get("version_compatible") and built != have:
        problems.append(f"it was built with TensorRT {sidecar['tensorrt']}, and TensorRT "
                        f"{facts.tensorrt} is installed")
    return problems


def find_plan(bundle: Bundle, graph: str, variant: str, facts: DeviceFacts,
              branch: str | None = None
              ) -> tuple[Path | None, dict | None, dict[Path, list[str]]]:
    """The plan of ``graph`` (of its ``branch``, for a merged decoder) in ``variant`` that runs
    here (and its sidecar), or None; and for each plan found that cannot run here, why not."""
    source_sha = source_sha256(bundle, graph, variant)
    rejected: dict[Path, list[str]] = {}
    exact = plan_path(bundle.path, graph, variant, facts, BuildOptions(), branch)
    name = graph if branch is None else f"{graph}.{branch}"
    candidates = sorted(engines_dir(bundle.path).glob(f"{name}.{variant}.*.plan"),
                        key=lambda p: (p != exact, p.name))
    for plan in candidates:
        sidecar = read_sidecar(plan)
        if sidecar is None:
            rejected[plan] = [f"it has no readable sidecar {sidecar_path(plan).name}"]
            continue
        problems = plan_problems(sidecar, facts, source_sha)
        if not problems:
            return plan, sidecar, rejected
        rejected[plan] = problems
    return None, None, rejected


def plan_branches(bundle: Bundle, graph: str, variant: str) -> dict[bool, str]:
    """The branches of the merged decoder ``graph`` that have plans in ``variant`` (whether
    they run here or not): the value of the condition input that runs each -> its name, read
    from the sidecars (the runtime reads no ONNX graph)."""
    branches = {}
    for plan in sorted(engines_dir(bundle.path).glob(f"{graph}.*.{variant}.*.plan")):
        sidecar = read_sidecar(plan)
        branch = (sidecar or {}).get("branch")
        if branch and sidecar.get("variant") == variant and sidecar.get("graph") == graph:
            branches[bool(branch["when"])] = branch["name"]
    return branches


# What a sidecar must hold, and of what type, for a plan to be considered at all.
_SIDECAR_KEYS = {"graph": str, "variant": str, "source": str, "source_sha256": str,
                 "plan_sha256": str, "compute_capability": list, "gpu": str, "tensorrt": str,
                 "options": dict, "profiles": list}


def read_sidecar(plan: Path) -> dict | None:
    """A plan's sidecar, or None when it is missing, unreadable or not of the expected shape
    (such a plan is never used)."""
    try:
        sidecar = read_json_file(sidecar_path(plan), "A plan's sidecar", max_bytes=2**22,
                                 expect=dict)
    except EdgeportError:
        return None
    if not all(isinstance(sidecar.get(k), t) for k, t in _SIDECAR_KEYS.items()):
        return None
    capability = sidecar["compute_capability"]
    if len(capability) != 2 or not all(type(c) is int for c in capability):
        return None
    branch = sidecar.get("branch")
    if branch is not None and not (isinstance(branch, dict) and isinstance(
            branch.get("name"), str) and isinstance(branch.get("when"), (bool, int))):
        return None
    return sidecar


def missing_plan_message(bundle: Bundle, graph: str, variant: str, facts: DeviceFacts,
                         rejected: dict[Path, list[str]]) -> str:
    """What to say when no plan runs here: which plans were found and why each cannot run,
    and the command that builds one."""
    here = (f"this GPU ({facts.gpu}, compute capability {_cc(facts.compute_capability)}) "
            f"with TensorRT {facts.tensorrt}")
    lines = [f"No TensorRT plan of the graph {graph!r} ({variant}) in {bundle.path} runs on "
             f"{here}."]
    for plan, problems in rejected.items():
        lines.append(f"{plan.relative_to(bundle.path)} cannot be used: {'; '.join(problems)}.")
    lines.append(f"Note: build one on this machine with `edgeport build {bundle.path} --variant "
                 f"{variant}`, or pass build_if_missing=True.")
    return " ".join(lines)


def save_plan(plan: Path, data: bytes, sidecar: dict) -> None:
    """The plan, then its sidecar with the plan's sha256: a plan without one is never taken
    for a usable plan, and a plan that changed after it was built is refused."""
    plan.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(plan, data)
    write_json_atomic(sidecar_path(plan),
                      {**sidecar, "plan_sha256": hashlib.sha256(data).hexdigest()})


def _cc(cc) -> str:
    return f"{cc[0]}.{cc[1]}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())
