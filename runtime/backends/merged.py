"""Merged decoders: optimum's ``decoder_model_merged.onnx`` is one ``If`` on the graph input
``use_cache_branch``, whose branches run the decoder on the first step (no cache yet) and on the
cached steps. ``merged_branches`` cuts each branch out as a standalone graph (its outer-scope
inputs made graph inputs, the weights it reads copied in): the quantizers (``calibration``) work
on the branches, and TensorRT builds one plan per branch, since a TensorRT conditional needs
both branches' outputs to have the same shapes, and the cache outputs of these do not (nor does
OpenVINO's CPU plugin run such an ``If``): ``BranchedEngine`` runs the engines of the two.

The ``onnx`` package is imported only when a graph is read (it is not a dependency of the
runtime: the quantize, tensorrt and openvino extras bring it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EngineError, InputError, MissingDependencyError
from .engine import Feed, TensorSpec

CONDITION = "use_cache_branch"  # the merged decoder's input that picks the branch


def is_merged_graph(inputs) -> bool:
    """Whether a graph with these input specs (a manifest's) is a merged decoder.

    >>> from runtime.backends.engine import TensorSpec
    >>> is_merged_graph([TensorSpec("use_cache_branch", "bool", (1,))])
    True
    """
    return any(spec.name == CONDITION for spec in inputs)


def import_onnx():
    """The ``onnx`` module, or a MissingDependencyError saying how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError(
            f"Splitting a merged decoder into its branches needs the onnx package ({exc}). "
            "Note: `pip install onnx` (it comes with `pip install 'edgeport[tensorrt]'` and "
            "'edgeport[quantize]')."
        ) from None
    return onnx


@dataclass
class Branches:
    """A merged graph's ``If``, and each branch as a standalone model.

    ``names`` maps the ``If`` attribute (``then_branch``, ``else_branch``) to the branch's name
    (the subgraph's own name, ``with_past`` / ``no_past`` in optimum's exports); ``models``
    maps that name to the standalone model; ``condition`` is the graph input that picks the
    branch (true: ``then_branch``).
    """

    condition: str
    names: dict[str, str]
    models: dict[str, object]


def if_node(model):
    """The merged graph's ``If``, when the graph is one ``If`` on a graph input; else None."""
    graph = model.graph
    inputs = {i.name for i in graph.input}
    if len(graph.node) == 1 and graph.node[0].op_type == "If" and graph.node[0].input[0] in inputs:
        return graph.node[0]
    return None


def is_merged(path: str | Path) -> bool:
    """Whether the graph file at ``path`` is a merged decoder (one ``If`` on a graph input).
    Reads the graph's structure only, not its weights."""
    return if_node(import_onnx().load(str(path), load_external_data=False)) is not None


def _used_names(graph) -> set[str]:
    """Every value name the nodes of ``graph`` (and of their subgraphs) read."""
    used = set()
    for node in graph.node:
        used.update(name for name in node.input if name)
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                used |= _used_names(sub)
    used.update(output.name for output in graph.output)
    return used


def merged_branches(model) -> Branches:
    """Each branch of a merged graph as a standalone model: the outer graph's inputs it reads
    become its inputs (in the outer graph's order), the outer weights it reads are copied in."""
    helper = import_onnx().helper
    node = if_node(model)
    if node is None:
        raise InputError("The graph is not a merged decoder (one If on a graph input).")
    outer_inputs = [i for i in model.graph.input if i.name != node.input[0]]
    outer_weights = {t.name: t for t in model.graph.initializer}
    names, models = {}, {}
    for attribute in node.attribute:
        if attribute.name not in ("then_branch", "else_branch"):
            continue
        branch = attribute.g
        name = branch.name if branch.name and branch.name not in models else attribute.name
        produced = {o for n in branch.node for o in n.output} | {t.name for t in
                                                                 branch.initializer}
        used = _used_names(branch) - produced
        graph = helper.make_graph(
            list(branch.node), name,
            [i for i in outer_inputs if i.name in used],
            list(branch.output),
            initializer=[*branch.initializer,
                         *(outer_weights[w] for w in sorted(used) if w in outer_weights)],
            value_info=list(branch.value_info),
        )
        standalone = helper.make_model(graph, opset_imports=list(model.opset_import),
                                       ir_version=model.ir_version,
                                       producer_name=model.producer_name,
                                       producer_version=model.producer_version)
        standalone.functions.extend(model.functions)
        missing = sorted(used - {i.name for i in graph.input} - {t.name for t in
                                                                 graph.initializer})
        if missing:  # a value of the outer graph that is neither an input nor a weight
            raise InputError(
                f"The branch {name!r} of the merged graph reads {missing[0]!r}, which the outer "
                "graph computes; edgeport splits only merged decoders whose outer graph is the "
                "If alone. Note: export the bundle again with `edgeport export`."
            )
        names[attribute.name] = name
        models[name] = standalone
    return Branches(condition=node.input[0], names=names, models=models)


def branch_graphs(path: str | Path) -> list[tuple[str, bool, object]]:
    """(branch name, the condition value that runs it, standalone model) for each branch of
    the merged decoder at ``path``, each model's outputs named as the merged graph's (an
    ``Identity`` where the branch names them otherwise): a graph per branch that reads and
    gives what the merged one does, for the value of ``use_cache_branch`` it was cut for."""
    onnx = import_onnx()
    model = onnx.load(str(path))
    node = if_node(model)
    branches = merged_branches(model)
    results = []
    for attribute, name in branches.names.items():
        standalone = branches.models[name]
        graph = standalone.graph
        for index, (inner, outer) in enumerate(zip([o.name for o in graph.output], node.output)):
            if inner != outer:
                graph.node.append(onnx.helper.make_node("Identity", [inner], [outer],
                                                        name=f"edgeport_output_{index}"))
                graph.output[index].name = outer
        results.append((name, attribute == "then_branch", standalone))
    return results


class BranchedEngine:
    """A merged decoder run as an engine per branch (TensorRT's plans, OpenVINO's compiled
    models: neither runs the ``If`` itself, its branches' cache outputs differing in shape):
    each call goes to the engine of the branch its ``use_cache_branch`` picks, as the graph's
    ``If`` would. Both run on one device, so the cache one leaves there is the other's input."""

    def __init__(self, engines: dict, *, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec]):
        self._engines = dict(engines)
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.device = self._engines[True].device

    def _branch(self, feed: Feed):
        if CONDITION not in feed:
            raise EngineError(f"A merged decoder's feed needs {CONDITION!r} (true once the cache "
                              "holds positions). Note: the feed has " f"{sorted(feed)}.")
        return self._engines[bool(np.asarray(feed[CONDITION]).reshape(-1)[0])]

    def run(self, feed: Feed) -> dict[str, np.ndarray]:
        return self._branch(feed).run(feed)

    def run_bound(self, feed: Feed, keep: set[str]) -> dict:
        return self._branch(feed).run_bound(feed, keep)

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
