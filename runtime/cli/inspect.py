"""`edgeport inspect BUNDLE [--json] [--backend openvino [--device D] [--precision P]]`: task,
graphs with dim names, variants, sizes, validation; with ``--backend openvino``, the OpenVINO
device, its name and the precision it runs at, and which variants run there."""

from __future__ import annotations

import argparse

from ..bundle import Bundle
from ..files import finite
from .command import json_for_stdout, terminal_safe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--backend", choices=["openvino"],
                        help="also say where and at which precision this backend runs the "
                             "bundle here, and which variants it runs")
    parser.add_argument("--device", default="cpu",
                        help="--backend openvino: cpu, gpu, gpu:N, npu or auto (default: cpu)")
    parser.add_argument("--precision", choices=["f32", "bf16", "f16"],
                        help="--backend openvino: the precision hint (default: OpenVINO's "
                             "pick for the device)")


# Everything printed here comes from the bundle's manifest, which someone else wrote: strings
# are shown through ``_text`` (no terminal control characters), numbers through ``_number``
# (a field of the wrong type shows as it is instead of failing the whole summary). Sizes come
# from Bundle.summary(); this module never looks at files itself.
def _text(value) -> str:
    return terminal_safe(value if isinstance(value, str) else repr(value))


def _number(value, spec: str) -> str:
    return format(value, spec) if finite(value) else _text(value)


def _dims(spec: dict) -> str:
    """``name: dtype[dims]``; an output dim without a vocabulary name (derived from the inputs
    at run time, e.g. Mask2Former's mask height) shows as ``?``."""
    dims = ", ".join("?" if d is None else _text(d) for d in spec["dims"])
    return f"{_text(spec['name'])}: {_text(spec['dtype'])}[{dims}]"


def openvino_summary(bundle: Bundle, device: str, precision: str | None) -> dict:
    """Where OpenVINO runs the bundle here: the device, its name, the precision (the hint, or
    OpenVINO's pick for the device), and each variant's fate (runs, or why not)."""
    from ..backends.openvino import DeviceFacts, check_variant
    from ..backends.openvino.libs import import_openvino
    from ..errors import InputError

    ov = import_openvino()
    facts = DeviceFacts.detect(ov, ov.Core(), device, precision)
    variants = {}
    for name in bundle.variants:
        try:
            check_variant(bundle, name)
            variants[name] = "runs"
        except InputError as exc:
            variants[name] = "refused: " + str(exc).split(": ", 1)[-1].split(". Note:")[0]
    return {"backend": "openvino", "device": device, "openvino_device": facts.device,
            "device_name": facts.full_name, "precision": facts.precision,
            "precision_is_default": facts.default, "openvino": facts.openvino,
            "description": facts.describe(), "variants": variants}


def main(args) -> int:
    if args.backend is None and (args.precision is not None or args.device != "cpu"):
        from ..errors import InputError

        raise InputError("--device and --precision say where a backend runs: they go with "
                         "--backend openvino.")
    bundle = Bundle.load(args.bundle)
    summary = bundle.summary()
    if args.backend == "openvino":
        summary["backend"] = openvino_summary(bundle, args.device, args.precision)
    if args.json:
        print(json_for_stdout(summary, indent=2))
        return 0
    print(f"bundle      {_text(summary['path'])}")
    print(f"task        {_text(summary['task'])}")
    print(f"model_type  {_text(summary['model_type'])} ({_text(summary['family'])})")
    for name, graph in summary["graphs"].items():
        print(f"graph       {_text(name)}")
        for spec in graph["inputs"]:
            print(f"  in   {_dims(spec)}")
        for spec in graph["outputs"]:
            print(f"  out  {_dims(spec)}")
    for name, variant in summary["variants"].items():
        recipe = (variant["recipe"] or {}).get("name", "?")
        files = ", ".join(_text(f) for f in variant["files"].values())
        print(f"variant     {_text(name):<10} {_number(variant['bytes'] / 1e6, '8.1f')} MB  "
              f"{_text(recipe):<8} {files}")
    validation = summary.get("validation")
    if isinstance(validation, dict):
        diffs = validation.get("max_abs_diff")
        worst = ", ".join(f"{_text(k)} {_number(v, '.1e')}" for k, v in diffs.items()
                          ) if isinstance(diffs, dict) else _text(diffs)
        verdict = "passed" if validation.get("passed") is True else "FAILED"
        print(f"validation  {verdict} against {_text(validation.get('reference'))} "
              f"(max abs diff {worst}; atol {_number(validation.get('atol'), '.0e')})")
    versions = summary.get("exported_with") or {}
    if versions:
        print("exported    " + ", ".join(f"{_text(k)} {_text(v)}" for k, v in versions.items()))
    backend = summary.get("backend")
    if backend:
        print(f"openvino    {_text(backend['description'])}")
        for name, fate in backend["variants"].items():
            print(f"  {_text(name):<10} {_text(fate)}")
    return 0
