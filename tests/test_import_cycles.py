"""The layering, one way: no import cycle between the project's modules, and the bundle knows
nothing above it.

Imports are read from the source (``ast``), those inside functions included: a lazy import
still ties two modules together. Names resolved by importlib at call time from a table (the
CLI's subcommands, ``runtime.backends.engine.BACKENDS``) are plugin lookups by design, not imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "calibration", "exporter")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] \
                if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            names += [f"{source}.{alias.name}" for alias in node.names]
    found = set()
    for name in names:
        while name and name not in modules:  # an attribute or an outside package: its owner
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    graph = _graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(
        f"{' <-> '.join(c)} ({', '.join(f'{m} -> {sorted(graph[m] & set(c))}' for m in c)})"
        for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_a_lazy_import_counts(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from runtime import tasks\n")
    assert "runtime.tasks" in _imported("runtime.m", path, _modules())


# package -> what no module of it may reach, directly or through others: the folders of the
# runtime, each below the ones it may not import.
ABOVE_BUNDLE = ("runtime.bundle", "runtime.tasks", "runtime.backends.tensorrt",
                "runtime.pipeline", "runtime.generation", "runtime.cli")
LAYERS = {
    "runtime.bundle": ABOVE_BUNDLE[1:],
    "runtime.backends.engine": (*ABOVE_BUNDLE, "runtime.text", "runtime.vision",
                                "runtime.audio"),
    "runtime.backends.merged": (*ABOVE_BUNDLE, "runtime.text", "runtime.vision",
                                "runtime.audio"),
    "runtime.text": (*ABOVE_BUNDLE, "runtime.backends", "runtime.vision", "runtime.audio"),
    "runtime.vision": (*ABOVE_BUNDLE, "runtime.backends", "runtime.text", "runtime.audio"),
    # Whisper's decoding settings are a GenerationConfig; the generation loop is above audio.
    "runtime.audio": (*(m for m in ABOVE_BUNDLE if m != "runtime.generation"),
                      "runtime.generation.onnx_model", "runtime.generation.search",
                      "runtime.backends", "runtime.vision"),
    "runtime.generation": ("runtime.tasks", "runtime.pipeline", "runtime.cli"),
    "runtime.tasks": ("runtime.pipeline", "runtime.cli"),
}


def _reached(graph: dict[str, set[str]], start: str) -> set[str]:
    reached, todo = set(), [m for m in graph if m == start or m.startswith(start + ".")]
    while todo:
        for name in graph[todo.pop()] - reached:
            reached.add(name)
            todo.append(name)
    return reached


def test_each_layer_reaches_nothing_above_it():
    graph = _graph()
    for package, forbidden in LAYERS.items():
        bad = sorted(m for m in _reached(graph, package)
                     if any(m == f or m.startswith(f + ".") for f in forbidden))
        assert not bad, f"{package} reaches {bad}, above it"


def test_ruff_bans_each_folder_from_the_layers_above_it():
    """The per-folder ruff configs (runtime/*/ruff.toml) bite, and keep the runtime's own bans
    (a nested config replaces the banned list)."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    probes = {"text": "from ..bundle import Bundle", "vision": "from ..tasks import TASKS",
              "audio": "from ..backends import engine", "backends": "from ..tasks import TASKS",
              "generation": "from ..pipeline import pipeline", "tasks": "from .. import cli"}
    for folder, line in probes.items():
        for source in (line, "import torch"):
            run = subprocess.run([ruff, "check", "--stdin-filename",
                                  f"runtime/{folder}/probe.py", "-"], cwd=ROOT,
                                 input=f"{source}\nprint(locals())\n", text=True,
                                 capture_output=True)
            assert run.returncode == 1 and "TID251" in run.stdout, (folder, source, run.stdout)
