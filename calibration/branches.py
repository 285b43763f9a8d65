"""Recipes on a merged decoder: each branch of its ``If`` made a graph of its own, the recipe run
on each, and the results put back into one ``If``.

An encoder-decoder bundle's ``decoder_model_merged.onnx`` (optimum's merged decoder) is one
``If`` on the graph input ``use_cache_branch``: one branch runs the decoder on the first step
(no cache yet), the other on the cached steps. The model lives in the branches, which read the
weights from the outer graph. ONNX Runtime's quantizers and optimizers work on a graph's own
nodes: the static quantizer and its calibration do not look into subgraphs (nor do the fusions
or the float16 converter, which breaks the branches' outputs). So every recipe runs here on
the branches, each cut out as a standalone graph (its outer-scope inputs made graph inputs, the
weights it reads copied in), and static-int8 calibrates each branch on the feeds the merged
decoder got while generating with that branch. The two results go back into one ``If``;
weights the two results hold alike (the same name and bytes, e.g. every quantized weight) are
kept once, in the outer graph, as they were.

    >>> branches = merged_branches(onnx.load("decoder_model_merged.onnx"))  # doctest: +SKIP
    >>> sorted(branches.models)                                               # doctest: +SKIP
    ['no_past', 'with_past']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from runtime.backends.merged import Branches, if_node, is_merged, merged_branches
from runtime.errors import InputError

__all__ = ["Branches", "branch_feeds", "branch_options", "is_merged", "merged_branches",
           "merged_from_branches", "merged_recipe"]


def _opsets(*models) -> list:
    from onnx import helper

    versions: dict[str, int] = {}
    for model in models:
        for opset in model.opset_import:
            versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    return [helper.make_opsetid(domain, version) for domain, version in sorted(versions.items())]


def merged_from_branches(model, branches: Branches, made: Mapping[str, object]):
    """The merged graph again, its ``If`` holding the models in ``made`` (branch name ->
    model, as a recipe made it from ``branches.models``). Weights alike in every branch go to
    the outer graph once; the others stay in their branch."""
    from onnx import helper

    node = if_node(model)
    outer = {i.name for i in model.graph.input}
    results = {branches.names[a]: made[branches.names[a]] for a in branches.names}
    for name, result in results.items():
        extra = [i.name for i in result.graph.input if i.name not in outer]
        if extra:
            raise InputError(
                f"The recipe gave the branch {name!r} an input {extra[0]!r} the merged graph "
                "does not have. Note: this recipe cannot be applied to a merged decoder."
            )
    # A weight is shared when every branch holds it under the same name with the same bytes.
    tensors = [{t.name: t for t in result.graph.initializer} for result in results.values()]
    shared = {}
    for weight_name, tensor in tensors[0].items():
        data = tensor.SerializeToString()
        if all(weight_name in other and other[weight_name].SerializeToString() == data
               for other in tensors[1:]):
            shared[weight_name] = tensor
    graphs = {}
    for name, result in results.items():
        graph = result.graph
        local = [t for t in graph.initializer if t.name not in shared]
        nodes = _sorted_nodes(graph.node)
        outputs = []
        produced = {o for n in nodes for o in n.output}
        for output in graph.output:
            if output.name not in produced:
                # An output that is a value of the outer scope (an input, a weight): ONNX
                # Runtime refuses a subgraph output that is not computed inside it.
                renamed = helper.ValueInfoProto()
                renamed.CopyFrom(output)
                renamed.name = f"{output.name}_{name}"
                nodes.append(helper.make_node("Identity", [output.name], [renamed.name],
                                              name=f"{renamed.name}_Identity"))
                output = renamed
            outputs.append(output)
        graphs[name] = helper.make_graph(nodes, name, [], outputs, initializer=local,
                                         value_info=list(graph.value_info))
    attributes = [helper.make_attribute(a, graphs[branches.names[a]]) for a in
                  ("then_branch", "else_branch")]
    merged_node = helper.make_node("If", list(node.input), list(node.output), name=node.name,
                                   domain=node.domain)
    merged_node.attribute.extend(attributes)
    graph = helper.make_graph([merged_node], model.graph.name, list(model.graph.input),
                              list(model.graph.output), initializer=list(shared.values()),
                              value_info=list(model.graph.value_info))
    merged = helper.make_model(graph, opset_imports=_opsets(model, *results.values()),
                               ir_version=max(model.ir_version,
                                              *(r.ir_version for r in results.values())),
                               producer_name=model.producer_name,
                               producer_version=model.producer_version)
    functions = {(f.domain, f.name): f for r in [model, *results.values()] for f in r.functions}
    merged.functions.extend(functions.values())
    merged.metadata_props.extend(model.metadata_props)
    return merged


def _sorted_nodes(nodes) -> list:
    """``nodes`` in an order where each comes after the producers of its inputs, otherwise as
    given. ONNX Runtime requires it of a subgraph (not of a model's graph, which the recipes
    may leave unordered: the float16 converter puts its input Casts last).

    >>> from onnx import helper
    >>> late = helper.make_node("Cast", ["x"], ["y"], to=10, name="cast")
    >>> [n.name for n in _sorted_nodes([helper.make_node("Neg", ["y"], ["z"], name="neg"), late])]
    ['cast', 'neg']
    """
    nodes = list(nodes)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output}
    state = [0] * len(nodes)  # 0: not seen, 1: its producers are being placed, 2: placed
    ordered = []
    for root in range(len(nodes)):
        stack = [(root, False)]
        while stack:  # depth first, iteratively: a deep decoder is a long chain
            index, ready = stack.pop()
            if state[index] == 2 or (state[index] == 1 and not ready):
                continue
            if ready:
                state[index] = 2
                ordered.append(nodes[index])
                continue
            state[index] = 1
            stack.append((index, True))
            for name in reversed(nodes[index].input):
                before = producer.get(name)
                if before is not None and state[before] == 0:
                    stack.append((before, False))
    return ordered


def branch_feeds(branches: Branches, feeds: list | None) -> dict[str, list | None]:
    """The feeds of each branch: those where the condition picks it (true: ``then_branch``)."""
    if feeds is None:
        return {name: None for name in branches.models}
    import numpy as np

    chosen: dict[str, list] = {name: [] for name in branches.models}
    for number, feed in enumerate(feeds):
        if branches.condition not in feed:
            raise InputError(
                f"Calibration sample {number} has no {branches.condition!r}, the input that "
                "picks the merged decoder's branch. Note: calibrate generative bundles from "
                "texts; their feeds are captured while generating."
            )
        which = "then_branch" if bool(np.asarray(feed[branches.condition]).ravel()[0]) \
            else "else_branch"
        chosen[branches.names[which]].append(feed)
    return chosen


def branch_options(branches: Branches, recipe: str, options: Mapping) -> dict[str, dict]:
    """The recipe's options for each branch: ``nodes_to_exclude`` keeps, for each branch, the
    names of its own nodes (a node name of the merged decoder is usually in both); a name in
    no branch is an error."""
    exclude = options.get("nodes_to_exclude")
    if not exclude:
        return {name: dict(options) for name in branches.models}
    if isinstance(exclude, str) or not all(isinstance(n, str) for n in exclude):
        return {name: dict(options) for name in branches.models}  # the recipe says what's wrong
    names = {branch: {n.name for n in model.graph.node if n.name}
             for branch, model in branches.models.items()}
    known = set().union(*names.values())
    unknown = [n for n in exclude if n not in known]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise InputError(
            f"The {recipe} recipe's nodes_to_exclude names {unknown[0]!r}, which is no node of "
            f"either branch of the merged decoder. {hint}Note: the node names of a merged "
            "decoder are those inside its If (the same name is usually in both branches)."
        )
    return {branch: {**options, "nodes_to_exclude": [n for n in exclude if n in own]}
            for branch, own in names.items()}


def merged_recipe(make: Callable[..., dict], recipe: str, source: Path, target: Path, *,
                  feeds=None, **options) -> dict:
    """Run ``make`` (a recipe function) on each branch of the merged graph at ``source`` and
    write the merged result to ``target``. Returns the options used: those alike in every
    branch, and each branch's own under ``branches``."""
    import onnx

    from .recipes import _check_loads, _large, _save

    model = onnx.load(str(source))
    branches = merged_branches(model)
    del model
    per_feeds = branch_feeds(branches, feeds)
    per_options = branch_options(branches, recipe, options)
    for name, fed in per_feeds.items():
        if fed is not None and not fed:
            raise InputError(
                f"The calibration feeds never ran the merged decoder's {name!r} branch. Note: "
                "give texts that generate at least two tokens."
            )
    made, used = {}, {}
    for name, standalone in branches.models.items():
        stem = Path(target).parent / f".{Path(target).stem}.{name}"
        branch_source, branch_target = Path(f"{stem}.source.onnx"), Path(f"{stem}.onnx")
        try:
            _save(standalone, branch_source, external=_large(standalone))
            try:
                used[name] = make(branch_source, branch_target, feeds=per_feeds[name],
                                  **per_options[name])
            except InputError as error:
                raise InputError(f"In the {name!r} branch of {Path(source).name}: {error}") \
                    from None
            made[name] = onnx.load(str(branch_target))
        finally:
            for path in (branch_source, branch_target):
                for file in (path, Path(f"{path}_data")):
                    file.unlink(missing_ok=True)
    outer = onnx.load(str(source), load_external_data=False)
    merged = merged_from_branches(outer, branches, made)
    _save(merged, Path(target), external=_large(merged))
    _check_loads(recipe, Path(target), "leave this graph out, or try another recipe.")
    first = next(iter(used.values()))
    common = {k: v for k, v in first.items() if all(u.get(k) == v for u in used.values())}
    return {**common, "branches": {name: {k: v for k, v in u.items() if k not in common}
                                   for name, u in used.items()}}
