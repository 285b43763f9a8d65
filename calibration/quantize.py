"""``variant_from_bundle``: run a recipe on a bundle's graph and record the new variant.

>>> variant_from_bundle(Bundle.load("bundle"), "dynamic-int8")          # doctest: +SKIP
'int8'
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from runtime.bundle import Bundle
from runtime.errors import InputError, did_you_mean

from .branches import is_merged, merged_recipe
from .data import graph_feeds, is_generative, load_samples
from .recipes import RECIPES
from .variants import (
    DEFAULT_NAMES,
    check_variant_name,
    scratch_sources,
    source_graphs,
    staging_for,
    write_variant,
)


def variant_from_bundle(
    bundle: Bundle | str | os.PathLike,
    recipe: str,
    *,
    name: str | None = None,
    source: str = "fp32",
    calibration: str | os.PathLike | None = None,
    samples: int | None = 100,
    seed: int = 0,
    overwrite: bool = False,
    graphs: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    **options,
) -> str:
    """Make a variant of every graph of ``source`` with ``recipe``; return the variant name.

    ``options`` go to the recipe (``per_channel``, ``method``, ``block_size``, ...); an unknown
    option is an error naming the accepted ones. The fp32 graph is never touched.

    Every graph of the bundle is made (a generative bundle's encoder and decoder alike), or
    those named in ``graphs``: the others are shared with ``source`` as they are (int4 for a
    decoder, its encoder left fp32). A merged decoder's two branches are each made as a graph
    of their own (``branches``).
    Static recipes calibrate each graph on its own feeds: a generative bundle's are captured
    while its fp32 graphs generate from the calibration texts (``data.graph_feeds``).
    """
    say = progress or (lambda line: None)
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    if recipe not in RECIPES:
        raise InputError(f"Unknown recipe {recipe!r}. " + did_you_mean(recipe, RECIPES))
    spec = RECIPES[recipe]
    unknown = set(options) - set(spec.options)
    if unknown:
        raise InputError(
            f"The {recipe} recipe takes no option {sorted(unknown)[0]!r}. "
            + did_you_mean(sorted(unknown)[0], spec.options or ["(none)"])
        )
    if spec.wants_model_type and options.get("model_type") is None:
        options["model_type"] = bundle.model_type  # the recipe reads only graph files
    if spec.wants_checkpoint and options.get("checkpoint") is None:
        options["checkpoint"] = (bundle.manifest.get("source") or {}).get("checkpoint")
    if spec.wants_checkpoint and source != "fp32":
        raise InputError(
            f"The {recipe} recipe builds from the checkpoint the bundle was exported from, not "
            f"from the variant {source!r}. Note: leave --from out; quantize its variant with "
            f"--from {name or DEFAULT_NAMES[recipe]} afterwards.")
    name = name or DEFAULT_NAMES[recipe]
    check_variant_name(bundle, name, overwrite=overwrite)
    sources = source_graphs(bundle, source)
    chosen = chosen_graphs(bundle, sources, graphs)
    if set(chosen) != set(sources) and name == source:
        raise InputError(
            f"The variant {name!r} cannot share files with itself: replacing it would remove "
            "them. Note: give the new variant another name (--name)."
        )
    feeds = None
    if spec.needs_calibration or (spec.takes_calibration and calibration is not None):
        if calibration is None:
            raise InputError(
                f"The {recipe} recipe needs calibration data. Note: pass --calibration PATH (a "
                "text file of lines, JSON lines, an .npz, or a folder of samples)."
            )
        say(f"preparing calibration data from {calibration}")
        loaded = load_samples(bundle, calibration, samples=samples, seed=seed,
                              progress=progress is not None)
        if is_generative(bundle):
            say(f"generating from {len(loaded)} inputs to capture each graph's feeds")
            feeds = graph_feeds(bundle, loaded.sources(), progress=progress is not None)
        else:
            feeds = {graph: loaded.feeds for graph in bundle.graphs}
    elif calibration is not None:
        raise InputError(f"The {recipe} recipe takes no calibration data; leave --calibration out.")
    exclusions = (exclusions_per_graph(recipe, options.pop("nodes_to_exclude"), sources,
                                        chosen) if "nodes_to_exclude" in options else {})
    with staging_for(bundle) as staging:
        made, used = {}, {}
        for graph, path in scratch_sources(
                {g: p for g, p in sources.items() if g in chosen}, staging).items():
            say(f"{recipe}: {path.name}")
            target = staging / f"{graph}.onnx"
            graph_options = {**spec.options, **options}
            if graph in exclusions:
                graph_options["nodes_to_exclude"] = exclusions[graph]
            fed = None if feeds is None else feeds.get(graph, [])
            if is_merged(path):
                used[graph] = merged_recipe(spec.make, recipe, path, target, feeds=fed,
                                            **graph_options)
            else:
                used[graph] = spec.make(path, target, feeds=fed, **graph_options)
            made[graph] = target
        # The options every graph was made with; each graph's own facts beside them when the
        # bundle has several graphs.
        first = next(iter(used.values()))
        common = {k: v for k, v in first.items() if all(u.get(k) == v for u in used.values())}
        record = {"name": recipe, "source": source, "options": common}
        own = {graph: {k: v for k, v in u.items() if k not in common}
               for graph, u in used.items()}
        if any(own.values()):
            record["graphs"] = own
        if feeds is not None:
            record["calibration"] = {"path": str(calibration), "samples": len(loaded),
                                     "seed": seed}
            if is_generative(bundle):
                record["calibration"]["feeds"] = {graph: len(f) for graph, f in feeds.items()
                                                  if graph in chosen}
        reused = {graph: source for graph in sources if graph not in chosen}
        if reused:
            record["shared"] = dict(reused)  # graph -> the variant whose file it shares
        write_variant(bundle, name, made, record, overwrite=overwrite, reused=reused)
    return name


def node_names(path: Path) -> set[str]:
    """The names of a graph file's nodes, those inside its subgraphs (a merged decoder's
    branches) included; the weights are not read."""
    import onnx

    def walk(graph):
        for node in graph.node:
            if node.name:
                yield node.name
            for attribute in node.attribute:
                for sub in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                    yield from walk(sub)

    return set(walk(onnx.load(str(path), load_external_data=False).graph))


def exclusions_per_graph(recipe: str, value, sources: dict, chosen: list[str]) -> dict:
    """``nodes_to_exclude`` for each graph made. One graph: the list as given (the recipe
    checks it). Several: a mapping of graph name -> node names, or one list whose names each
    go to the graphs that have such a node (an encoder and a decoder exported apart may both
    have a node of the same name: the mapping tells them apart); a name in no graph is an
    error."""
    if len(chosen) == 1 and not isinstance(value, Mapping):
        return {chosen[0]: value}
    if isinstance(value, Mapping):
        unknown = [graph for graph in value if graph not in chosen]
        if unknown:
            raise InputError(
                f"The {recipe} recipe's nodes_to_exclude names the graph {unknown[0]!r}, which "
                f"this variant does not make. " + did_you_mean(str(unknown[0]), chosen)
            )
        return {graph: value.get(graph) for graph in chosen}
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value):
        return {graph: value for graph in chosen}  # the recipe says what is wrong with it
    names = {graph: node_names(sources[graph]) for graph in chosen}
    unknown = [n for n in value if not any(n in own for own in names.values())]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(set().union(*names.values())), n=1)
        raise InputError(
            f"The {recipe} recipe's nodes_to_exclude names {unknown[0]!r}, which is no node "
            f"of the graphs it makes ({', '.join(chosen)}). "
            + (f"Did you mean {close[0]!r}? " if close else "")
            + "Note: name the nodes per graph with a mapping, e.g. "
            f'{{"{chosen[-1]}": ["..."]}}.'
        )
    return {graph: [n for n in value if n in own] for graph, own in names.items()}


def chosen_graphs(bundle: Bundle, sources: dict, graphs) -> list[str]:
    """The graphs a recipe makes: all of the source variant's, or those named."""
    if graphs is None:
        return list(sources)
    if isinstance(graphs, str) or not all(isinstance(g, str) for g in graphs) or not graphs:
        raise InputError(
            f"graphs takes a non-empty list of graph names, got {graphs!r}. Note: the bundle's "
            f"graphs are {', '.join(bundle.graphs)} (--graphs {' '.join(bundle.graphs)})."
        )
    for graph in graphs:
        if graph not in sources:
            raise InputError(f"The bundle {bundle.path} has no graph {graph!r}. "
                             + did_you_mean(graph, sources))
    return [graph for graph in sources if graph in graphs]
