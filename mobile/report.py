"""What each mobile execution provider can take of a graph, and the report that says it
(``mobile_report.json`` and ``mobile_report.md``).

NNAPI and Core ML (NeuralNetwork and MLProgram): the partitioning analysis of ONNX Runtime's
own ``check_onnx_model_mobile_usability`` (``onnxruntime.tools.mobile_helpers.usability_checker``,
called as functions, with the operator lists shipped in the installed onnxruntime package), on
the graph optimized at the basic level as that tool does: how many nodes the EP takes, in how
many partitions, which operators it lacks, and whether fixing the dynamic shapes would help.

XNNPACK: the installed Python package ships no XNNPACK operator list (nor the EP), so its
coverage is counted with the same partitioning function against ``XNNPACK_OPS`` below: the
kernels that ONNX Runtime's XNNPACK EP registers (onnxruntime/core/providers/xnnpack/
xnnpack_execution_provider.cc). XNNPACK runs on the CPU beside the CPU EP, so
dynamic shapes do not stop it and partitions cost no device copies.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

# The XNNPACK EP's kernels (domain:op), as its kernel registry lists them
# (xnnpack_execution_provider.cc, RegisterKernels). Conv, ConvTranspose, pools, Resize and
# QLinearConv run in NHWC, which the EP's layout transformation inserts; a Relu or Clip right
# after a Conv or pool is fused into it (not counted here); a QDQ group around a supported op
# counts as its QLinear form. node_support_checker.cc adds limits per op (e.g. constant
# weights for Gemm and MatMul, 2-D pools), which this count does not check.
XNNPACK_OPS = {
    "ai.onnx:Conv": "2-D, constant weights",
    "ai.onnx:ConvTranspose": "2-D, constant weights",
    "ai.onnx:MaxPool": "2-D",
    "ai.onnx:AveragePool": "2-D",
    "ai.onnx:Resize": "2-D, linear or nearest",
    "ai.onnx:Softmax": "",
    "ai.onnx:Gemm": "constant B",
    "ai.onnx:MatMul": "constant 2-D B",
    "ai.onnx:QLinearConv": "uint8 or int8",
    "com.microsoft:QLinearConvTranspose": "",
    "com.microsoft:QLinearAveragePool": "",
    "com.microsoft:QLinearSoftmax": "",
}
XNNPACK_SOURCE = ("the kernels ONNX Runtime's XNNPACK EP registers "
                  "(onnxruntime/core/providers/xnnpack/xnnpack_execution_provider.cc), "
                  "op types only; the installed onnxruntime package ships no XNNPACK op list")

EP_NAMES = ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram", "XNNPACK")


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("edgeport.mobile.usability")
    logger.setLevel(logging.ERROR)
    return logger


def _partition_record(info) -> dict:
    total = info.num_nodes or 1
    return {
        "nodes": info.num_nodes,
        "supported_nodes": info.num_supported_nodes,
        "supported_percent": round(100.0 * info.num_supported_nodes / total, 1),
        "partitions": info.num_partitions,
        "unsupported_ops": sorted(info.unsupported_ops),
        "nodes_unsupported_due_to_dynamic_shapes": info.nodes_unsupported_due_to_dynamic_input,
        "suitability": info.suitability().name,  # YES / MAYBE / NO, ONNX Runtime's verdict
        "caveats": info.supported_ops_checker.get_caveats(),
    }


def _xnnpack_checker(folder: Path):
    from onnxruntime.tools.mobile_helpers.usability_checker import _SupportedOpsChecker

    table = folder / "xnnpack_supported_ops.md"
    lines = ["|Operator|Note|", "|--|--|"]
    lines += [f"|{op}|{note}|" for op, note in XNNPACK_OPS.items()]
    table.write_text("\n".join(lines) + "\n")
    return _SupportedOpsChecker(table)


def ep_coverage(onnx_path: Path) -> dict:
    """Per execution provider, how much of the graph at ``onnx_path`` it takes as it is, and
    (where the shapes are dynamic) with them fixed; and the graph's dynamic inputs."""
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory(prefix="edgeport-mobile-") as folder:
        folder = Path(folder)
        optimized = folder / "basic.onnx"
        # as check_onnx_model_mobile_usability: the basic level first, which ORT format applies
        optimize_model(Path(onnx_path), optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        dynamic_inputs, dynamic_values = uc.check_shapes(model.graph, _quiet_logger())
        checks = {
            "NNAPI": lambda fixed: uc.check_nnapi_partitions(model, fixed),
            "CoreML NeuralNetwork": lambda fixed: uc.check_coreml_partitions(
                model, fixed, "coreml_supported_neuralnetwork_ops.md"),
            "CoreML MLProgram": lambda fixed: uc.check_coreml_partitions(
                model, fixed, "coreml_supported_mlprogram_ops.md"),
        }
        result = {}
        for name, check in checks.items():
            now = _partition_record(check(True))
            record = {"as_is": now}
            if dynamic_inputs:
                fixed = _partition_record(check(False))
                record["with_fixed_shapes"] = fixed
                record["fixed_shapes_help"] = (fixed["supported_nodes"] > now["supported_nodes"]
                                               or _rank(fixed) > _rank(now))
            else:
                record["fixed_shapes_help"] = False
            result[name] = record
        xnn = uc.check_partitioning(model.graph, _xnnpack_checker(folder), False)
        record = _partition_record(xnn)
        # a CPU EP: ONNX Runtime's suitability rule (device copies between partitions) is moot
        record["suitability"] = None
        result["XNNPACK"] = {"as_is": record, "fixed_shapes_help": False,
                             "source": XNNPACK_SOURCE}
    return {"dynamic_inputs": [value.name for value in dynamic_inputs],
            "dynamic_values": dynamic_values, "providers": result}


def _rank(record: dict) -> int:
    return {"NO": 0, "MAYBE": 1, "YES": 2}.get(record["suitability"], 0)


# --- the report as markdown ---------------------------------------------------------------------
def report_markdown(report: dict) -> str:
    """``mobile_report.md``: the JSON report for people."""
    lines = [f"# Mobile report: {report['bundle']['task']} ({report['bundle']['model_type']}, "
             f"variant {report['variant']})", ""]
    lines += ["## Artifacts", "",
              "| File | Size | Load (ms) | First inference (ms) | Note |",
              "|---|---:|---:|---:|---|"]
    for name, item in report["artifacts"].items():
        size = f"{item['bytes'] / 1e6:.2f} MB" if item.get("bytes") is not None else "-"
        load = item.get("load_ms", "-")
        run = item.get("first_run_ms", "-")
        lines.append(f"| {name} | {size} | {load} | {run} | {item.get('note', '')} |")
    lines += ["", f"Timed with onnxruntime {report['onnxruntime']} (Python, CPU EP) on the "
              f"machine that ran `edgeport mobile`, inputs at {_sizes(report['sample_sizes'])}; "
              "a phone is slower, the ratios are what carry over.", ""]
    titles = {
        "model": ("the variant's graph, as exported (dynamic shapes)",
                  "Analysed at ONNX Runtime's basic optimization level, as "
                  "check_onnx_model_mobile_usability does. model.ort itself is further fused "
                  "for the CPU EP (com.microsoft ops that NNAPI and Core ML do not take): to "
                  "try those EPs, use model_fixed.ort (`--shapes`), which keeps standard ops."),
        "model_fixed": ("model_fixed.onnx / model_fixed.ort (fixed shapes)", ""),
    }
    for key, (title, note) in titles.items():
        coverage = report["execution_providers"].get(key)
        if not coverage:
            continue
        lines += [f"## Execution providers: {title}", ""] + ([note, ""] if note else [])
        if coverage["dynamic_inputs"]:
            lines.append(f"Dynamic inputs: {', '.join(coverage['dynamic_inputs'])}.")
        else:
            lines.append("All inputs have fixed shapes.")
        lines += ["", "| EP | Nodes taken | Partitions | Verdict | Fixed shapes | Missing ops |",
                  "|---|---:|---:|---|---|---|"]
        for ep, record in coverage["providers"].items():
            now = record["as_is"]
            fixed = record.get("with_fixed_shapes")
            after = (f"{fixed['supported_percent']}% ({fixed['suitability']})" if fixed
                     else "n/a")
            help_text = f"help: {after}" if record["fixed_shapes_help"] else (
                "no change" if fixed else "not needed")
            missing = ", ".join(now["unsupported_ops"]) or "none"
            lines.append(f"| {ep} | {now['supported_nodes']}/{now['nodes']} "
                         f"({now['supported_percent']}%) | {now['partitions']} | "
                         f"{now['suitability'] or 'CPU EP'} | {help_text} | {missing} |")
        lines += ["", "NNAPI and Core ML: ONNX Runtime's check_onnx_model_mobile_usability "
                  "analysis (YES: worth trying, MAYBE, NO: use the CPU EP). XNNPACK: "
                  f"{XNNPACK_SOURCE}.", ""]
    e2e = report.get("e2e")
    lines += ["## End-to-end graph", ""]
    if e2e and e2e.get("built"):
        lines.append(f"`model_e2e.onnx` / `model_e2e.ort` (exact: {e2e.get('exact')}).")
        lines += ["", "Inputs:"] + [f"- `{k}`: {v}" for k, v in e2e.get("inputs", {}).items()]
        lines += ["", "Outputs:"] + [f"- `{k}`: {v}" for k, v in e2e.get("outputs", {}).items()]
        lines += [""] + [f"- {note}" for note in e2e.get("notes", [])]
    else:
        lines.append(f"None: {e2e.get('reason') if e2e else 'not built'}")
    return "\n".join(lines).rstrip() + "\n"


def _sizes(sizes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(sizes.items())) or "fixed shapes"
