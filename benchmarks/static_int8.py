"""static-int8 (QDQ, TensorRT's int8) beside dynamic-int8 and fp16 at real sizes: accuracy
against fp32 (and PyTorch, for the real all-MiniLM-L6-v2), size and ONNX Runtime CPU latency.

    python benchmarks/static_int8.py OUT_DIR [--models NAME ...] [--tiny]

Models (benchmarks/suite.py builds them): all-MiniLM-L6-v2 (the real checkpoint),
bert-base-uncased text classification and vit-base-patch16-224 image classification (their
real configs, seeded random weights: their accuracy numbers say how far a variant moves the
logits, not what a trained model keeps). Variants: dynamic-int8, fp16, static-int8 with the
per-MatMul search (the default), with ONNX Runtime's min/max ranges (what it was before the
search), and with fp16 float parts (``float_type=fp16``, TensorRT's variant). Text is
calibrated on the accuracy tests' 32 calibration sentences and measured on the 58 others;
images are calibrated on half of tests/calibration's 21 images and measured on the other
half. Accuracy and latency come from `edgeport compare` (calibration.compare_variants: the
task metric, the mean cosine of the outputs, the median latency per sample on ONNX Runtime's
CPU provider). OUT_DIR gets results.md and results.json; checkpoints and bundles stay in
OUT_DIR/models.

--tiny: the tests' tiny checkpoints (the smoke test; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from calibration.compare import compare_variants  # noqa: E402
from calibration.quantize import variant_from_bundle  # noqa: E402
from runtime import Bundle  # noqa: E402

NAMES = ("all-MiniLM-L6-v2", "bert-base-uncased", "vit-base-patch16-224")
VARIANTS = {  # name: (recipe, options)
    "int8": ("dynamic-int8", {}),
    "fp16": ("fp16", {}),
    "qdq": ("static-int8", {}),
    "qdq-minmax": ("static-int8", {"method": "minmax"}),
    "qdq16": ("static-int8", {"float_type": "fp16"}),
}


def say(line: str) -> None:
    print(f"static_int8: {line}", file=sys.stderr, flush=True)


def data(kind: str, folder: Path) -> tuple[Path, Path]:
    """(calibration data, held-out data) for a text or an image bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "text":
        from sentences import CALIBRATION_SENTENCES, SENTENCES

        calibration, held_out = folder / "calibration.txt", folder / "held-out.txt"
        calibration.write_text("\n".join(CALIBRATION_SENTENCES) + "\n")
        held_out.write_text("\n".join(SENTENCES) + "\n")
        return calibration, held_out
    import importlib.util

    # tests/calibration/conftest.py's image folder, loaded by path (pytest has its own conftest)
    spec = importlib.util.spec_from_file_location(
        "calibration_test_images", ROOT / "tests" / "calibration" / "conftest.py")
    images = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(images)
    every = folder / "all"
    names = images.write_image_folder(every)
    calibration, held_out = folder / "calibration", folder / "held-out"
    for index, name in enumerate(names):
        target = (calibration if index % 2 == 0 else held_out) / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(every / name, target)
    return calibration, held_out


def run_model(model, out: Path, tiny: bool) -> dict:
    from suite import prepared_bundle

    bundle, _ = prepared_bundle(model, out / "models" / model.name, tiny=tiny)
    kind = "image" if model.task.startswith("image") else "text"
    calibration, held_out = data(kind, out / "data" / kind)
    made = {}
    for name, (recipe, options) in VARIANTS.items():
        if name not in Bundle.load(bundle.path).variants:
            say(f"{model.name}: {name} ({recipe} {options})")
            made[name] = variant_from_bundle(
                bundle.path, recipe, name=name, overwrite=True,
                calibration=calibration if recipe == "static-int8" else None, **options)
    say(f"{model.name}: comparing on {held_out.name}")
    report = compare_variants(bundle.path, held_out, variants=list(VARIANTS), layers=False,
                              runs=3)
    torch_report = None
    if model.name == "all-MiniLM-L6-v2" and not tiny:
        say(f"{model.name}: comparing with PyTorch")
        torch_report = compare_variants(bundle.path, held_out, variants=["fp32", *VARIANTS],
                                        reference="pytorch", layers=False)
    return {"model": model.name, "task": model.task, "report": report,
            "pytorch": torch_report}


def _row(name: str, variant: dict, torch_variant: dict | None, reference: dict) -> str:
    task = variant["task"]
    latency = variant["latency_ms"]["median_ms"]
    base = reference["latency_ms"]["median_ms"]
    against_torch = (f"{torch_variant['task']['value']:.4f}" if torch_variant else "-")
    return (f"| {name} | {variant['bytes'] / 1e6:.1f} | {task['metric']} {task['value']:.4f} | "
            f"{variant['cosine']:.4f} | {against_torch} | {latency:.2f} | {base / latency:.2f} |")


def table(results: list[dict]) -> str:
    lines = ["| model / variant | MB | task metric vs fp32 | mean output cosine | vs PyTorch | "
             "ms (median) | x fp32 |", "|---|---:|---|---:|---:|---:|---:|"]
    for result in results:
        report = result["report"]
        reference = report["reference"]
        torch_fp32 = (result["pytorch"] or {}).get("variants", {}).get("fp32")
        against_torch = f"{torch_fp32['task']['value']:.4f}" if torch_fp32 else "-"
        lines.append(f"| **{result['model']}** fp32 | {reference['bytes'] / 1e6:.1f} | - | - | "
                     f"{against_torch} | {reference['latency_ms']['median_ms']:.2f} | 1.00 |")
        for name, variant in report["variants"].items():
            torch_variant = (result["pytorch"] or {}).get("variants", {}).get(name)
            lines.append(_row(name, variant, torch_variant, reference))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", nargs="+", choices=NAMES, default=list(NAMES))
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    from suite import MODELS

    from runtime.cli.timing import _machine

    results = [run_model(model, args.out, args.tiny) for model in MODELS
               if model.name in args.models]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    machine = ", ".join(f"{key} {value}" for key, value in _machine().items())
    text = f"# static-int8 beside dynamic-int8 and fp16\n\n{machine}\n\n" + table(results)
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
