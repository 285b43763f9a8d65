"""Accuracy-aware quantization: quantize, measure the task metric against fp32, and keep
excluding the nodes where the most error enters until the drop is within budget.

>>> variant_within_budget("bundle", "dynamic-int8", "cosine=0.01")     # doctest: +SKIP
{'variant': 'int8', 'metric': 'embedding_cosine_min', 'drop': 0.004, 'excluded': [...]}
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from runtime.bundle import Bundle
from runtime.errors import InputError

from .metrics import metric_drop
from .quantize import chosen_graphs, exclusions_per_graph
from .recipes import RECIPES
from .variants import source_graphs

# Short names users type -> the task metric compare reports (1.0 = same as fp32; for
# depth_abs_rel, wer and action_abs_error 0 is, and the drop is the value itself).
METRIC_ALIASES = {
    "top1": "top1_agreement",
    "f1": ("entity_f1", "span_f1"),
    "entity_f1": "entity_f1",
    "span_f1": "span_f1",
    "cosine": "embedding_cosine_min",
    "top1_agreement": "top1_agreement",
    "embedding_cosine_min": "embedding_cosine_min",
    "map": "map50",
    "map50": "map50",
    "miou": "miou",
    "abs_rel": "depth_abs_rel",
    "absrel": "depth_abs_rel",
    "depth_abs_rel": "depth_abs_rel",
    "tokens": "token_agreement",
    "token_agreement": "token_agreement",
    "wer": "wer",
    "cer": "cer",
    "answers": "answer_accuracy",
    "answer_accuracy": "answer_accuracy",
    "action": "action_abs_error",
    "action_abs_error": "action_abs_error",
}
# The ops each recipe quantizes, whose nodes it can leave in fp32 (nodes_to_exclude): (op
# types, only those with a weight). dynamic-int8 quantizes weight MatMuls and Gemms (ONNX
# Runtime makes a Gemm a MatMul first) and the Gathers of embedding tables; int4 and
# int8-weights weight MatMuls (and GPT-2's Conv1D Gemms, made MatMuls); static-int8 (QDQ) every
# MatMul and Gemm, the attention products of two activations too, where a fixed range suits the
# scores least.
QUANTIZED_OPS = {"dynamic-int8": (("MatMul", "Gemm", "Gather"), True),
                 "int4": (("MatMul", "Gemm"), True),
                 "int8-weights": (("MatMul", "Gemm"), True),
                 "static-int8": (("MatMul", "Gemm"), False)}


def parse_max_drop(text: str) -> tuple[str, float]:
    """``"top1=0.01"`` -> ``("top1", 0.01)``; a clear error for anything else."""
    key, sep, value = str(text).partition("=")
    try:
        budget = float(value)
    except ValueError:
        budget = -1.0
    if not sep or not key or not 0.0 <= budget < 1.0:
        raise InputError(
            f"--max-drop takes METRIC=VALUE with VALUE in [0, 1), got {text!r}. Note: e.g. "
            "top1=0.01 (classification), f1=0.02 (entities, answers), cosine=0.01 "
            "(embeddings), map50=0.02 (detection), miou=0.02 (segmentation), abs_rel=0.01 "
            "(depth), wer=0.02 (speech recognition), tokens=0.05 (text generation)."
        )
    return key, budget


def _metric_for(key: str, task_metric: str, task: str) -> str:
    wanted = METRIC_ALIASES.get(key, key)
    names = wanted if isinstance(wanted, tuple) else (wanted,)
    if task_metric not in names:
        raise InputError(
            f"--max-drop names {key!r}, but {task} bundles are measured by {task_metric!r}. "
            f"Note: pass --max-drop {task_metric}=VALUE."
        )
    return task_metric


def _graph_facts(path, recipe: str) -> tuple[set[str], dict[str, list[str]]]:
    """The node names ``recipe`` quantizes in the graph file at ``path``, and for every node
    the nodes feeding it; a merged decoder's nodes are those of its branches (the same name is
    usually in both, as nodes_to_exclude takes it)."""
    import onnx

    outer = onnx.load(str(path), load_external_data=False).graph
    graphs, nodes = [outer], []
    while graphs:  # the graph and its subgraphs (an If's branches)
        graph = graphs.pop()
        nodes += graph.node
        graphs += [sub for node in graph.node for attribute in node.attribute
                   for sub in ([attribute.g] if attribute.HasField("g") else attribute.graphs)]
    producer = {out: node.name for node in nodes for out in node.output}
    feeders: dict[str, list[str]] = {}
    for node in nodes:
        feeders.setdefault(node.name, []).extend(producer[i] for i in node.input if i in producer)
    types, weighted = QUANTIZED_OPS[recipe]
    ops = [n for n in nodes if n.op_type in types and n.name]
    if weighted:  # a weight is an initializer of the outer graph (a branch reads it there)
        weights = {init.name for init in outer.initializer}
        ops = [n for n in ops if any(i in weights for i in n.input)]
    return {n.name for n in ops}, feeders


def _culprit(name: str, candidates: set[str], feeders: Mapping[str, list[str]]) -> str | None:
    """The quantized node behind a node where error grew: itself, or the nearest quantized
    node feeding it (a quantizer may rename a MatMul's output, so the growth shows on the Add
    of its bias)."""
    frontier, seen = [name], set()
    for _ in range(3):
        for node in frontier:
            if node in candidates:
                return node
        seen.update(frontier)
        frontier = [f for node in frontier for f in feeders.get(node, []) if f not in seen]
    return None


def variant_within_budget(
    bundle: Bundle | str | os.PathLike,
    recipe: str,
    max_drop: str,
    *,
    data: str | os.PathLike | None = None,
    name: str | None = None,
    samples: int = 100,
    seed: int = 0,
    max_rounds: int = 8,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    backend: str = "onnxruntime",
    device: str = "cpu",
    precision: str | None = None,
    **recipe_options,
) -> dict:
    """Make a ``recipe`` variant whose task metric drops at most ``max_drop`` below fp32 on
    ``data`` (built-in samples when None), excluding the most sensitive nodes round by round
    (1, 2, 4, ... more each round), then bisecting for the fewest nodes that meet the budget.
    The drop is 1 - the metric (which is 1.0 when the variant agrees with fp32), or the metric
    itself for those where 0 is agreement (LOWER_IS_BETTER: depth AbsRel, WER).
    Records the excluded nodes and the rounds in the manifest; returns that record. An
    InputError when the budget cannot be met within ``max_rounds`` growing rounds.

    ``backend``, ``device`` and ``precision`` say where each round's variant is measured (and
    timed), as ``compare_variants`` runs it: ``backend="openvino", precision="bf16"`` budgets
    the drop of what OpenVINO runs, against fp32 on ONNX Runtime; the record's
    ``measured_on`` says where. A recipe whose variants the backend refuses (dynamic-int8 on
    OpenVINO) is refused before anything is quantized. The nodes to leave in fp32 are still
    ranked on ONNX Runtime, which reads every intermediate tensor of the variant's graph: it
    locates the error the quantization adds (``layers_backend``)."""
    from .compare import builtin_rows, compare_variants
    from .engines import check_runs_on, engine_options
    from .quantize import variant_from_bundle
    from .variants import DEFAULT_NAMES, record_accuracy

    say = progress or (lambda line: None)
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    key, budget = parse_max_drop(max_drop)
    if recipe not in RECIPES or "nodes_to_exclude" not in RECIPES[recipe].options:
        raise InputError(
            f"--max-drop needs a recipe that can leave nodes unquantized; {recipe!r} cannot. "
            "Note: use dynamic-int8, static-int8, int4 or int8-weights."
        )
    if recipe_options.get("source", "fp32") != "fp32":
        raise InputError("--max-drop starts from the fp32 graph; leave --from out.")
    name = name or DEFAULT_NAMES[recipe]
    options = engine_options(backend, device, precision)
    check_runs_on(bundle, options, recipe=recipe)  # before any quantizing work
    if data is None:  # measure on the calibration data when there is some
        data = recipe_options.get("calibration")
    if data is None:
        builtin_rows(bundle)  # image bundles have none: say so before quantizing anything
    # The graphs the recipe makes, their quantized nodes and what feeds each node. A node is
    # (graph, name): an encoder and a decoder exported apart may have nodes of the same name.
    sources = source_graphs(bundle, "fp32")
    chosen = chosen_graphs(bundle, sources, recipe_options.get("graphs"))
    facts = {graph: _graph_facts(sources[graph], recipe) for graph in chosen}
    candidates = {(graph, node) for graph, (names, _) in facts.items() for node in names}
    given = recipe_options.pop("nodes_to_exclude", None)
    excluded = [(graph, node) for graph, nodes in
                exclusions_per_graph(recipe, given, sources, chosen).items()
                for node in nodes or []] if given else []
    single = list(bundle.graphs) == ["model"]
    recipe_options.pop("graphs", None)
    rounds: list[dict] = []

    def made(nodes) -> list[str]:
        """The graphs with a node left to quantize: a graph whose every such node is left in
        fp32 is shared with fp32 as it is (a recipe refuses to quantize nothing)."""
        return [graph for graph in chosen if any((graph, node) not in nodes
                                                 for node in facts[graph][0])]

    def as_option(nodes: list[tuple[str, str]], graphs: list[str]):
        """nodes_to_exclude as the recipe takes it: a list for a one-graph bundle, else a
        list per graph of ``graphs``."""
        if single:
            return [node for _, node in nodes]
        return {graph: [node for owner, node in nodes if owner == graph] for graph in graphs}

    def attempt(nodes: list[tuple[str, str]]) -> tuple[dict, str, float]:
        nonlocal bundle
        say(f"round {len(rounds) + 1}: {recipe} with {len(nodes)} node(s) left in fp32")
        graphs = made(nodes)
        variant_from_bundle(bundle, recipe, name=name, overwrite=overwrite or bool(rounds),
                            samples=samples, seed=seed, graphs=graphs,
                            nodes_to_exclude=as_option(nodes, graphs), **recipe_options)
        bundle = Bundle.load(bundle.path)
        report = compare_variants(bundle, data, variants=[name], samples=samples, seed=seed,
                                  top=max(20, 2 * len(candidates)), **options)
        measured = report["variants"][name]
        metric = _metric_for(key, measured["task"]["metric"], bundle.task)
        drop = metric_drop(metric, measured["task"]["value"])
        rounds.append({"excluded": len(nodes), "value": measured["task"]["value"],
                       "drop": drop, "speedup": measured["speedup"]})
        say(f"  {metric} {measured['task']['value']:.4f} (drop {drop:.4f}, budget {budget})")
        return measured, metric, drop

    # Grow the excluded list 1, 2, 4, ... nodes at a time, most error growth first ...
    passed, failed, step = None, None, 1
    while len(rounds) < max_rounds:
        measured, metric, drop = attempt(excluded)
        if drop <= budget:
            passed = (len(excluded), measured, metric, drop)
            break
        failed = len(excluded)
        ranked = []
        for row in (measured.get("layers") or {}).get("top", []):
            graph = row.get("graph", "model")
            if graph in facts:
                culprit = _culprit(row["name"], *facts[graph])
                ranked.append((graph, culprit) if culprit else None)
        # at most all but one of the nodes: a variant that quantizes nothing is fp32
        room = len(candidates - set(excluded)) - 1
        new = list(dict.fromkeys(n for n in ranked if n and n not in excluded))[:min(step, room)]
        if not new:
            break
        excluded += new
        step *= 2
    if passed is not None:
        # ... then, the list being an order, find its shortest passing prefix by bisection:
        # doubling overshoots, and every node left in fp32 costs speed.
        low, high = failed, passed[0]
        while low is not None and high - low > 1:
            middle = (low + high) // 2
            measured, metric, drop = attempt(excluded[:middle])
            if drop <= budget:
                high, passed = middle, (middle, measured, metric, drop)
            else:
                low = middle
        if rounds[-1]["excluded"] != passed[0]:  # the last attempt failed: redo the best
            attempt(excluded[:passed[0]])
        kept, measured, metric, drop = passed
        record = {"variant": name, "metric": metric, "max_drop": budget, "drop": drop,
                  "excluded": as_option(excluded[:kept], chosen), "rounds": rounds,
                  "measured_on": measured["measured_on"], "layers_backend": "onnxruntime"}
        accuracy = {"metric": metric, "value": measured["task"]["value"], "reference": "fp32",
                    "speedup": measured["speedup"], "measured_on": measured["measured_on"],
                    "accuracy_aware": {k: record[k] for k in ("max_drop", "excluded", "rounds",
                                                              "layers_backend")}}
        previous = Bundle.load(bundle.path).variants[name].get("accuracy") or {}
        record_accuracy(bundle, name, {**previous, **accuracy})
        return record
    raise InputError(
        f"Could not bring the {recipe} variant within {key}={budget}: after {len(rounds)} "
        f"round(s) and {len(excluded)} node(s) left in fp32 the drop is {rounds[-1]['drop']:.4f}. "
        "Note: allow a larger drop, use more representative --data, or another recipe; the "
        f"last attempt is kept as variant {name!r}."
    )
