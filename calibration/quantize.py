"""``variant_from_bundle``: run a recipe on a bundle's graph and record the new variant.

>>> variant_from_bundle(Bundle.load("bundle"), "dynamic-int8")          # doctest: +SKIP
'int8'
"""

from __future__ import annotations

import os
from collections.abc import Callable

from runtime.bundle import Bundle
from runtime.errors import InputError, did_you_mean

from .data import feeds_from_path
from .recipes import RECIPES
from .variants import DEFAULT_NAMES, check_variant_name, source_graphs, staging_for, write_variant


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
    progress: Callable[[str], None] | None = None,
    **options,
) -> str:
    """Make a variant of every graph of ``source`` with ``recipe``; return the variant name.

    ``options`` go to the recipe (``per_channel``, ``method``, ``block_size``, ...); an unknown
    option is an error naming the accepted ones. The fp32 graph is never touched.
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
    name = name or DEFAULT_NAMES[recipe]
    check_variant_name(bundle, name, overwrite=overwrite)
    graphs = source_graphs(bundle, source)
    feeds = None
    if spec.needs_calibration:
        if calibration is None:
            raise InputError(
                f"The {recipe} recipe needs calibration data. Note: pass --calibration PATH (a "
                "text file of lines, JSON lines, an .npz, or a folder of samples)."
            )
        say(f"preparing calibration data from {calibration}")
        feeds = feeds_from_path(bundle, calibration, samples=samples, seed=seed,
                                progress=progress is not None)
    elif calibration is not None:
        raise InputError(f"The {recipe} recipe takes no calibration data; leave --calibration out.")
    with staging_for(bundle) as staging:
        made, used = {}, {}
        for graph, path in graphs.items():
            say(f"{recipe}: {path.name}")
            target = staging / f"{graph}.onnx"
            used = spec.make(path, target, feeds=feeds, **{**spec.options, **options})
            made[graph] = target
        record = {"name": recipe, "source": source, "options": used}
        if feeds is not None:
            record["calibration"] = {"path": str(calibration), "samples": len(feeds), "seed": seed}
        write_variant(bundle, name, made, record, overwrite=overwrite)
    return name
