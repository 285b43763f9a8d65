"""`edgeport inspect BUNDLE [--json]`: task, graphs with dim names, variants, sizes, validation."""

from __future__ import annotations

import argparse
import json

from .bundle import Bundle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _dims(spec: dict) -> str:
    """``name: dtype[dims]``; an output dim without a vocabulary name (derived from the inputs
    at run time, e.g. Mask2Former's mask height) shows as ``?``."""
    dims = ", ".join("?" if d is None else str(d) for d in spec["dims"])
    return f"{spec['name']}: {spec['dtype']}[{dims}]"


def main(args) -> int:
    summary = Bundle.load(args.bundle).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"bundle      {summary['path']}")
    print(f"task        {summary['task']}")
    print(f"model_type  {summary['model_type']} ({summary['family']})")
    for name, graph in summary["graphs"].items():
        print(f"graph       {name}")
        for spec in graph["inputs"]:
            print(f"  in   {_dims(spec)}")
        for spec in graph["outputs"]:
            print(f"  out  {_dims(spec)}")
    for name, variant in summary["variants"].items():
        recipe = (variant["recipe"] or {}).get("name", "?")
        files = ", ".join(variant["files"].values())
        print(f"variant     {name:<10} {variant['bytes'] / 1e6:8.1f} MB  {recipe:<8} {files}")
    validation = summary.get("validation")
    if validation:
        worst = ", ".join(f"{k} {v:.1e}" for k, v in validation["max_abs_diff"].items())
        verdict = "passed" if validation["passed"] else "FAILED"
        print(f"validation  {verdict} against {validation['reference']} "
              f"(max abs diff {worst}; atol {validation['atol']:.0e})")
    versions = summary.get("exported_with") or {}
    if versions:
        print("exported    " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return 0
