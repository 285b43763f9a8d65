"""End-to-end graphs of image bundles (see mobile.e2e).

The graph takes the encoded image file (JPEG or PNG) as a uint8 tensor ``image`` [bytes] and
runs the bundle's image processor inside (``mobile.image_graphs``: onnxruntime-extensions'
DecodeImage, then Pillow's resize repeated in ONNX ops, the center crop, rescale and normalize),
then the variant's graph, then the task's postprocessing. One image per call, as an app has it.

    image-classification   ``scores`` [1, labels]: softmax (sigmoid for multi-label or one-class
                           models), as the runtime's pipeline applies by default; the label
                           names in the metadata ``labels`` (a JSON list by class id)
    object-detection       (DETR-style) ``scores`` [1, queries], ``labels`` [1, queries] and
                           ``boxes`` [1, queries, 4] (pixels of the original image, int32):
                           the pipeline's detections before its threshold, which the app
                           applies (score > 0.5 by default), in query order
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime_extensions.tools.pre_post_processing import IoMapEntry

from runtime.bundle import Bundle
from runtime.errors import BundleError, InputError
from runtime.tasks.base import config_id2label, default_labels
from runtime.vision.processors import ImageProcessor

from .graphs import metadata_json, save
from .image_graphs import (
    DECODED_STEP,
    IMAGE_INPUT,
    Activation,
    DetectionOutputs,
    ImagePlan,
    plan_from_processor,
    with_image_processing,
)

IMAGE_DESCRIPTION = ("uint8 [bytes]: the encoded image file (JPEG or PNG) as it is on disk, "
                     "one image per call")


def plan_from_bundle(bundle: Bundle) -> ImagePlan:
    """The in-graph preprocessing of ``bundle``'s preprocessor_config.json."""
    if bundle.manifest.get("modality") != "image":
        raise InputError(
            f"The bundle {bundle.path} is not an image bundle (its modality is "
            f"{bundle.manifest.get('modality')!r}). Note: image end-to-end graphs need a bundle "
            "with a preprocessor_config.json.")
    return plan_from_processor(ImageProcessor.from_dir(bundle.path))


def _pixel_model(bundle: Bundle, variant: str) -> onnx.ModelProto:
    """The variant's graph, checked to take pixel_values alone."""
    model = onnx.load(str(bundle.graph_path("model", variant)), load_external_data=True)
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in initializers]
    if inputs != ["pixel_values"]:
        raise BundleError(
            f"The bundle's graph takes {inputs}; an image end-to-end graph feeds pixel_values "
            "alone. Note: use model.ort and feed its inputs from the app.")
    return model


def _labels(bundle: Bundle, count) -> list[str]:
    id2label = config_id2label(bundle.config) or default_labels(bundle.config)
    if isinstance(count, int) and count > 0:
        missing = [i for i in range(count) if i not in id2label]
        if missing:
            raise BundleError(
                f"The model gives {count} scores, but config.json's id2label has no name for "
                f"classes {missing[:10]}. Note: the bundle's id2label must name every class.")
        return [id2label[i] for i in range(count)]
    return [id2label[i] for i in sorted(id2label)]


def _write(bundle: Bundle, model: onnx.ModelProto, plan: ImagePlan, outputs: dict,
           metadata: dict, target: Path, exact: bool, notes: list[str] = ()) -> dict:
    """Metadata, the file, and the report's record."""
    inputs = {IMAGE_INPUT: IMAGE_DESCRIPTION}
    notes = [*plan.notes, *notes]
    meta = {"edgeport.task": bundle.task, "edgeport.inputs": metadata_json(inputs),
            "edgeport.outputs": metadata_json(outputs),
            "edgeport.image_processor": plan.processor,
            "edgeport.notes": metadata_json(notes), **metadata}
    model.producer_name = "edgeport mobile"
    model.graph.name = f"edgeport_e2e_{bundle.task}"
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    save(model, target)
    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    return {"inputs": inputs, "outputs": outputs, "exact": exact, "notes": notes,
            "opset": opset}


# --- builders ---------------------------------------------------------------------------------
def build_image_classification(bundle: Bundle, variant: str, target: Path) -> dict:
    """``scores`` [1, labels]: the runtime pipeline's scores for every label (its top_k sorts
    and cuts them: app-side), label names in the metadata ``labels``."""
    plan = plan_from_bundle(bundle)
    model = _pixel_model(bundle, variant)
    if len(model.graph.output) != 1:
        raise BundleError(
            f"The bundle's graph gives {len(model.graph.output)} outputs; an image-classification "
            "graph gives logits alone. Note: export the checkpoint again with "
            "--task image-classification.")
    dims = model.graph.output[0].type.tensor_type.shape.dim
    count = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
    labels = _labels(bundle, count)
    single = (bundle.config.get("problem_type") == "multi_label_classification"
              or len(labels) == 1)
    function = "sigmoid" if single else "softmax"
    combined = with_image_processing(model, plan, [Activation(function)])
    outputs = {"scores": f"float32 [1, {len(labels)}]: the {function} of the logits (what the "
                         "image-classification pipeline's scores are), columns in the order of "
                         "the metadata's labels; sort them for the top k"}
    # the scores differ from the runtime's where the decoded or resized pixels do (see notes)
    return _write(bundle, combined, plan, outputs,
                  {"labels": metadata_json(labels), "edgeport.function": function}, target,
                  exact=False)


def build_object_detection(bundle: Bundle, variant: str, target: Path) -> dict:
    """DETR-style detection: ``scores``, ``labels`` and ``boxes`` for every query; the app
    keeps the rows whose score passes its threshold (the pipeline's default is 0.5), in query
    order, and names labels through the metadata ``labels``."""
    plan = plan_from_bundle(bundle)
    if plan.processor != "DetrImageProcessor":
        raise InputError(
            f"edgeport mobile makes object-detection graphs for DETR-style bundles "
            f"(DetrImageProcessor); this one uses {plan.processor}. Note: use model.ort and "
            "pre- and postprocess in the app.")
    model = _pixel_model(bundle, variant)
    names = [value.name for value in model.graph.output]
    if names != ["logits", "pred_boxes"]:
        raise BundleError(
            f"The bundle's graph gives {names}; a DETR-style detection graph gives logits and "
            "pred_boxes. Note: export the checkpoint again with --task object-detection.")
    dims = model.graph.output[0].type.tensor_type.shape.dim
    count = dims[-1].dim_value - 1 if dims and dims[-1].HasField("dim_value") else None
    labels = _labels(bundle, count)
    combined = with_image_processing(
        model, plan, [(DetectionOutputs(), [IoMapEntry(DECODED_STEP, 0, 2)])])
    outputs = {
        "scores": "float32 [1, queries]: each query's best class probability (softmax, the "
                  "\"no object\" class left out); keep the queries above your threshold "
                  "(the pipeline's default: score > 0.5), in query order",
        "labels": "int64 [1, queries]: that class's id, named by the metadata's labels",
        "boxes": "int32 [1, queries, 4]: xmin, ymin, xmax, ymax in pixels of the image as "
                 "decoded (the pipeline's box)",
    }
    note = ("Thresholding stays in the app: the graph gives every query, the pipeline those "
            "with score > threshold (0.5 by default).")
    return _write(bundle, combined, plan, outputs,
                  {"labels": metadata_json(labels), "edgeport.threshold": "0.5"}, target,
                  exact=False, notes=[note])


BUILDERS = {
    "image-classification": build_image_classification,
    "object-detection": build_object_detection,
}
