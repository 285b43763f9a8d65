"""Image processors as graphs: a bundle's ``preprocessor_config.json`` as onnxruntime-extensions
steps, from the encoded image file to ``pixel_values``.

    image (uint8 [bytes], JPEG or PNG)
      -> DecodeImage (the extensions' ConvertImageToBGR) -> 3 channels -> BGR to RGB
      -> resize on uint8 as Pillow resizes (ResizeLikePillow) -> CenterCrop
      -> rescale (ImageBytesToFloat) -> Normalize -> CHW -> [1, 3, H, W]

The processors it maps are those of runtime.vision.processors whose steps can be written so
(``PLANS``): fixed sizes (ViT, BEiT, DeiT, Segformer), CLIP's shortest edge, ConvNeXT's shortest
edge over crop_pct, DETR's shortest/longest edge (one image: no padding); every other one gets
an InputError naming these. The extensions' own Resize keeps the aspect ratio, rounds sizes to
nearest and differs from Pillow by up to 12 levels when shrinking, so the resize is Pillow's
algorithm in ONNX ops instead (within a level of Pillow). ``notes`` say where the graph is not
exact: mostly the JPEG decoder (see DECODER_NOTE).

>>> from runtime.vision.processors import ImageProcessor
>>> plan = plan_from_processor(ImageProcessor.from_config(
...     {"image_processor_type": "ViTImageProcessor", "size": {"height": 32, "width": 32}}))
>>> plan.resize, plan.crop
(('fixed', 32, 32), None)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, helper
from onnxruntime_extensions.tools.pre_post_processing import (
    CenterCrop,
    ChannelsLastToChannelsFirst,
    ConvertImageToBGR,
    ImageBytesToFloat,
    Normalize,
    PrePostProcessor,
    ReverseAxis,
    Step,
    Unsqueeze,
    create_named_value,
)
from PIL import Image

from runtime.errors import InputError
from runtime.vision import processors as proc

# The opset the steps are written for: Resize's antialias needs 18.
MIN_OPSET = 18
IMAGE_INPUT = "image"
DECODED_STEP = "ThreeChannels"  # the step whose output is the decoded RGB-ready image

@dataclass(frozen=True)
class _Filter:
    name: str
    support: float


# Pillow's filters ResizeLikePillow repeats: the triangle, and Keys' cubic with a = -0.5
_FILTERS = {
    Image.Resampling.BILINEAR: _Filter("linear", 1.0),
    Image.Resampling.BICUBIC: _Filter("cubic", 2.0),
}

DECODER_NOTE = (
    "The image is decoded in the graph by onnxruntime-extensions' DecodeImage (JPEG and PNG; no "
    "EXIF rotation, alpha dropped, grayscale made RGB); the runtime decodes with Pillow and "
    "turns EXIF-rotated photos upright. PNG and 4:4:4 JPEG decode as Pillow does (within a "
    "level); 4:2:0 JPEG (most cameras' and Pillow's default) differs by up to ~50 levels at "
    "full size where colors change sharply (the chroma is upsampled differently), and "
    "extensions 0.15.2 decodes grayscale JPEG wrongly from the 65th row on. Apps should pass "
    "upright color JPEG or PNG files.")
RESIZE_NOTE = (
    "The resize repeats Pillow's {name} filter (as transformers resizes) with float32 weight "
    "matrices and MatMul, on uint8 as transformers does: Pillow's 22-bit fixed-point weights "
    "round a few pixels differently, by a level (1/255). Its cost grows with the image: "
    "about height x width x output side x 3 multiply-adds, so apps should pass photos not "
    "far above the model's size (a 12-megapixel photo takes some 9 GMAC).")


@dataclass(frozen=True)
class ImagePlan:
    """What the graph does to one image: ``resize`` is ("fixed", height, width) or
    ("shortest_edge", edge) (torchvision's rule, the long edge rounded down), or None;
    ``crop`` is (height, width) or None; ``filter`` the Pillow resampling filter."""

    processor: str
    resize: tuple | None
    filter: Image.Resampling
    crop: tuple[int, int] | None
    rescale: float | None
    mean_std: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    notes: list[str] = field(default_factory=list)

    def output_size(self) -> tuple[str | int, str | int]:
        """(height, width) of pixel_values, symbolic where it depends on the image."""
        if self.crop is not None:
            return self.crop
        if self.resize is not None and self.resize[0] == "fixed":
            return self.resize[1], self.resize[2]
        return "height", "width"


# runtime's processor classes -> how their resize maps (exact classes: a subclass may resize
# differently, so each one is listed on its own).
FIXED_SIZE = (proc.ViTImageProcessor, proc.BeitImageProcessor, proc.DeiTImageProcessor,
              proc.SegformerImageProcessor)
PLANS = (*FIXED_SIZE, proc.CLIPImageProcessor, proc.ConvNextImageProcessor,
         proc.DetrImageProcessor)


def plan_from_processor(processor: proc.ImageProcessor) -> ImagePlan:
    """The graph's steps for one of runtime's processors; an InputError for one it cannot map."""
    kind = type(processor)
    if kind not in PLANS:
        names = ", ".join(cls.type_name for cls in PLANS)
        raise InputError(
            f"edgeport mobile cannot put {processor.type_name} in a graph: onnxruntime-extensions "
            f"has no steps for its resize rules. Note: the processors it maps are {names}; "
            "for this bundle use model.ort and preprocess in the app.")
    notes = [DECODER_NOTE]
    resize = None
    if processor.do_resize:
        if processor.resample not in _FILTERS:
            raise InputError(
                f"{processor.type_name} resizes with Pillow's {processor.resample.name.lower()} "
                "filter, which ONNX Resize has no match for. Note: edgeport mobile maps bilinear "
                "(2) and bicubic (3); set resample in preprocessor_config.json, or preprocess "
                "in the app and use model.ort.")
        size = processor.size
        if kind is proc.ConvNextImageProcessor:
            edge = size["shortest_edge"]
            resize = (("shortest_edge", int(edge / processor.crop_pct)) if edge < 384
                      else ("fixed", edge, edge))
        elif kind is proc.DetrImageProcessor:
            resize = _detr_resize(processor)
        elif "shortest_edge" in size:  # CLIP
            resize = ("shortest_edge", size["shortest_edge"])
        else:
            resize = ("fixed", size["height"], size["width"])
        notes.append(RESIZE_NOTE.format(name=processor.resample.name.lower()))
    crop = processor.center_crop_size()
    if crop is not None:
        smallest = _smallest_resized(resize)
        if smallest is None or crop[0] > smallest[0] or crop[1] > smallest[1]:
            raise InputError(
                f"{processor.type_name} center-crops to {crop[1]}x{crop[0]}, which can be larger "
                "than the resized image; transformers then pads with zeros, which the "
                "extensions' CenterCrop cannot. Note: make crop_size at most size in "
                "preprocessor_config.json, or preprocess in the app and use model.ort.")
    rescale = processor.rescale_factor if processor.do_rescale else None
    mean_std = ((tuple(processor.image_mean.tolist()), tuple(processor.image_std.tolist()))
                if processor.do_normalize else None)
    return ImagePlan(processor.type_name, resize, processor.resample, crop, rescale, mean_std,
                     notes)


def _detr_resize(processor: proc.DetrImageProcessor) -> tuple:
    size = processor.size
    if processor.do_pad and processor.pad_size is not None:
        raise InputError(
            "DetrImageProcessor with a pad_size pads every image to it, which the end-to-end "
            "graph does not. Note: remove pad_size from preprocessor_config.json (one image is "
            "not padded), or preprocess in the app and use model.ort.")
    if "shortest_edge" in size:
        return ("detr", size["shortest_edge"], size["longest_edge"])
    if "height" in size:
        return ("fixed", size["height"], size["width"])
    raise InputError(
        f"DetrImageProcessor with size={size} is not mapped to a graph. Note: edgeport mobile "
        "maps shortest_edge/longest_edge and height/width sizes.")


def _smallest_resized(resize) -> tuple[int, int] | None:
    """The smallest (height, width) the resize can make: None when the image is not resized."""
    if resize is None:
        return None
    if resize[0] == "fixed":
        return resize[1], resize[2]
    return resize[1], resize[1]


# --- steps the extensions lack ----------------------------------------------------------------
class ResizeLikePillow(Step):
    """HWC uint8 -> HWC uint8 resized as Pillow resizes (and so runtime's processors): to a
    fixed (height, width) (the extensions' Resize keeps the aspect ratio, transformers does
    not), or the short edge to ``edge`` and the long one in proportion rounded down (integer
    arithmetic, as ``shortest_edge_size``; the extensions' Resize rounds to nearest).

    ONNX Resize's antialias differs from Pillow by up to 12 levels when shrinking a lot (ONNX
    Runtime 1.2x), so the graph repeats Pillow's algorithm instead: per axis a matrix of
    Pillow's filter weights (support widened by the scale when shrinking, each row
    normalized), applied by MatMul, the width first, each pass rounded to uint8 as Pillow
    rounds. Pillow's weights are 22-bit fixed point; these are float32, so a pixel may differ
    by a level where a value falls at a rounding tie.
    """

    def __init__(self, plan: ImagePlan, name: str | None = None):
        super().__init__(["image"], ["resized_image"], name)
        self.plan = plan

    def _create_graph_for_step(self, graph: onnx.GraphProto, onnx_opset: int):
        source, target = self.input_names[0], self.output_names[0]
        resize = self.plan.resize
        kind = _FILTERS[self.plan.filter]
        constants = [_ints("zero", [0]), _ints("one", [1]), _ints("two", [2]),
                     _ints("minus_one", [-1]), _ints("three", [3]),
                     _floats("half", [0.5]), _floats("f_one", [1.0]), _floats("f_zero", [0.0]),
                     _floats("support", [kind.support]),
                     *(helper.make_tensor(f"{key}_scalar", TensorProto.FLOAT, [], [value])
                       for key, value in (("f_zero", 0.0), ("f_one", 1.0), ("f_255", 255.0))),
                     *(_floats(key, [value]) for key, value in (
                         ("c_1_5", 1.5), ("c_2_5", 2.5), ("c_5", 5.0), ("c_8", 8.0),
                         ("c_4", 4.0), ("c_a", -0.5), ("c_2", 2.0)))]
        nodes = [helper.make_node("Shape", [source], ["shape"]),
                 helper.make_node("Slice", ["shape", "zero", "two"], ["hw"]),
                 helper.make_node("Split", ["hw"], ["h", "w"], axis=0, num_outputs=2)]
        if resize[0] == "fixed":
            constants += [_ints("h_out", [resize[1]]), _ints("w_out", [resize[2]])]
        elif resize[0] == "detr":
            constants += [_doubles("size", [resize[1]]), _doubles("max_size", [resize[2]])]
            nodes += _detr_size_nodes()
        else:
            # the short edge to `edge`, the long one to long * edge // short (torchvision's
            # rule: the width is the short side where width <= height)
            constants.append(_ints("edge", [resize[1]]))
            nodes += [
                helper.make_node("ReduceMin", ["hw"], ["short"], keepdims=1),
                helper.make_node("Mul", ["hw", "edge"], ["scaled"]),
                helper.make_node("Div", ["scaled", "short"], ["proportional"]),
                helper.make_node("LessOrEqual", ["w", "h"], ["width_short"]),
                helper.make_node("Split", ["proportional"], ["h_prop", "w_prop"], axis=0,
                                 num_outputs=2),
                helper.make_node("Where", ["width_short", "h_prop", "edge"], ["h_out"]),
                helper.make_node("Where", ["width_short", "edge", "w_prop"], ["w_out"]),
            ]
        nodes += _axis_weights("wx", "w", "w_out", kind.name)   # [w_out, w]
        nodes += _axis_weights("wy", "h", "h_out", kind.name)   # [h_out, h]
        nodes += [
            helper.make_node("Cast", [source], ["pixels"], to=TensorProto.FLOAT),
            # the width: [w_out, w] @ [h, w, 3] -> [h, w_out, 3], rounded as Pillow rounds
            helper.make_node("MatMul", ["wx", "pixels"], ["rows"]),
            *_round_uint8_nodes("rows", "rows_u"),
            # the height: [h_out, h] @ [h, w_out * 3] -> [h_out, w_out * 3]
            helper.make_node("Concat", ["h", "minus_one"], ["flat_shape"], axis=0),
            helper.make_node("Reshape", ["rows_u", "flat_shape"], ["rows_flat"]),
            helper.make_node("MatMul", ["wy", "rows_flat"], ["columns"]),
            *_round_uint8_nodes("columns", "columns_u"),
            helper.make_node("Concat", ["h_out", "w_out", "three"], ["out_shape"], axis=0),
            helper.make_node("Reshape", ["columns_u", "out_shape"], ["resized_float"]),
            helper.make_node("Cast", ["resized_float"], [target], to=TensorProto.UINT8),
        ]
        height, width = (resize[1], resize[2]) if resize[0] == "fixed" else ("rh", "rw")
        return helper.make_graph(
            nodes, "resize_like_pillow",
            [_value_info(graph, source)],
            [helper.make_tensor_value_info(target, TensorProto.UINT8, [height, width, 3])],
            initializer=constants)


def _detr_size_nodes() -> list[onnx.NodeProto]:
    """h_out, w_out of DETR's get_size_with_aspect_ratio (runtime's DetrImageProcessor
    .aspect_size), its float64 operations in the same order, Python's round as Round (both
    round half to even) and int() of a positive number as Floor."""
    def node(op, inputs, output, **attributes):
        return helper.make_node(op, inputs, [output], **attributes)

    double = TensorProto.DOUBLE
    return [
        node("Cast", ["h"], "hd", to=double), node("Cast", ["w"], "wd", to=double),
        node("Min", ["hd", "wd"], "min_side"), node("Max", ["hd", "wd"], "max_side"),
        # max_side / min_side * size > max_size: the short edge max_size * min / max, rounded
        node("Div", ["max_side", "min_side"], "ratio"),
        node("Mul", ["ratio", "size"], "long_wanted"),
        node("Greater", ["long_wanted", "max_size"], "capped"),
        node("Mul", ["max_size", "min_side"], "raw_product"),
        node("Div", ["raw_product", "max_side"], "raw_size"),
        node("Round", ["raw_size"], "raw_rounded"),
        node("Where", ["capped", "raw_rounded", "size"], "edge"),
        node("Where", ["capped", "raw_size", "size"], "scaled"),
        # (height <= width and height == edge) or (width <= height and width == edge): as is
        node("LessOrEqual", ["hd", "wd"], "h_short"),
        node("LessOrEqual", ["wd", "hd"], "w_short"),
        node("Equal", ["hd", "edge"], "h_is_edge"), node("Equal", ["wd", "edge"], "w_is_edge"),
        node("And", ["h_short", "h_is_edge"], "keep_h"),
        node("And", ["w_short", "w_is_edge"], "keep_w"),
        node("Or", ["keep_h", "keep_w"], "keep"),
        node("Less", ["wd", "hd"], "portrait"),
        node("Mul", ["scaled", "hd"], "scaled_h"), node("Div", ["scaled_h", "wd"], "tall_h"),
        node("Mul", ["scaled", "wd"], "scaled_w"), node("Div", ["scaled_w", "hd"], "wide_w"),
        node("Floor", ["tall_h"], "tall_h_int"), node("Floor", ["wide_w"], "wide_w_int"),
        node("Where", ["portrait", "tall_h_int", "edge"], "h_new"),
        node("Where", ["portrait", "edge", "wide_w_int"], "w_new"),
        node("Where", ["keep", "hd", "h_new"], "h_double"),
        node("Where", ["keep", "wd", "w_new"], "w_double"),
        node("Cast", ["h_double"], "h_out", to=TensorProto.INT64),
        node("Cast", ["w_double"], "w_out", to=TensorProto.INT64),
    ]


def _doubles(name: str, values: list[float]) -> TensorProto:
    return helper.make_tensor(name, TensorProto.DOUBLE, [len(values)], values)


def _axis_weights(out: str, n_in: str, n_out: str, kind: str) -> list[onnx.NodeProto]:
    """Nodes making ``out`` [n_out, n_in]: Pillow's resampling weights along one axis
    (Pillow's precompute_coeffs: centers at (i + 0.5) * scale, the filter widened by the
    scale when shrinking, taps from int(center - support + 0.5) up to int(center + support +
    0.5), each row divided by its sum)."""
    def name(suffix: str) -> str:
        return f"{out}_{suffix}"

    def node(op: str, inputs: list[str], suffix: str, **attributes) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [name(suffix)], **attributes)

    nodes = [
        node("Cast", [n_in], "in_f", to=TensorProto.FLOAT),
        node("Cast", [n_out], "out_f", to=TensorProto.FLOAT),
        node("Div", [name("in_f"), name("out_f")], "scale"),
        node("Max", [name("scale"), "f_one"], "filter_scale"),
        node("Mul", ["support", name("filter_scale")], "support"),
        node("Squeeze", [n_out, "zero"], "count_out"),
        node("Squeeze", [n_in, "zero"], "count_in"),
        node("Range", ["f_zero_scalar", name("out_f_scalar"), "f_one_scalar"], "i"),
        node("Range", ["f_zero_scalar", name("in_f_scalar"), "f_one_scalar"], "j"),
        node("Add", [name("i"), "half"], "i_mid"),
        node("Mul", [name("i_mid"), name("scale")], "center_row"),
        node("Unsqueeze", [name("center_row"), "one"], "center"),          # [n_out, 1]
        node("Add", [name("j"), "half"], "j_mid"),                          # [n_in]
        node("Sub", [name("j_mid"), name("center")], "offset"),             # [n_out, n_in]
        node("Div", [name("offset"), name("filter_scale")], "x"),
        node("Abs", [name("x")], "ax"),
        # taps: int(center - support + 0.5) <= j < int(center + support + 0.5)
        node("Sub", [name("center"), name("support")], "low_edge"),
        node("Add", [name("low_edge"), "half"], "low_mid"),
        node("Floor", [name("low_mid")], "low"),
        node("Add", [name("center"), name("support")], "high_edge"),
        node("Add", [name("high_edge"), "half"], "high_mid"),
        node("Floor", [name("high_mid")], "high"),
        node("Unsqueeze", [name("j"), "zero"], "j_row"),                    # [1, n_in]
        node("GreaterOrEqual", [name("j_row"), name("low")], "above_low"),
        node("Less", [name("j_row"), name("high")], "below_high"),
        node("And", [name("above_low"), name("below_high")], "taps"),
    ]
    # the float scalars Range needs
    nodes[6:6] = [
        node("Squeeze", [name("out_f"), "zero"], "out_f_scalar"),
        node("Squeeze", [name("in_f"), "zero"], "in_f_scalar"),
    ]
    if kind == "linear":  # triangle: max(0, 1 - |x|)
        nodes += [node("Sub", ["f_one", name("ax")], "tri"),
                  node("Relu", [name("tri")], "filter")]
    else:  # Keys' cubic, a = -0.5: Pillow's bicubic_filter
        nodes += [
            # |x| < 1: ((a + 2)|x| - (a + 3))|x|^2 + 1 = (1.5|x| - 2.5)|x|^2 + 1
            node("Mul", [name("ax"), "c_1_5"], "n1"),
            node("Sub", [name("n1"), "c_2_5"], "n2"),
            node("Mul", [name("n2"), name("ax")], "n3"),
            node("Mul", [name("n3"), name("ax")], "n4"),
            node("Add", [name("n4"), "f_one"], "near"),
            # 1 <= |x| < 2: (((|x| - 5)|x| + 8)|x| - 4) a
            node("Sub", [name("ax"), "c_5"], "m1"),
            node("Mul", [name("m1"), name("ax")], "m2"),
            node("Add", [name("m2"), "c_8"], "m3"),
            node("Mul", [name("m3"), name("ax")], "m4"),
            node("Sub", [name("m4"), "c_4"], "m5"),
            node("Mul", [name("m5"), "c_a"], "far"),
            node("Less", [name("ax"), "f_one"], "is_near"),
            node("Less", [name("ax"), "c_2"], "is_far"),
            node("Where", [name("is_far"), name("far"), "f_zero"], "far_or_zero"),
            node("Where", [name("is_near"), name("near"), name("far_or_zero")], "filter"),
        ]
    nodes += [
        node("Where", [name("taps"), name("filter"), "f_zero"], "weights"),
        node("ReduceSum", [name("weights"), "one"], "total", keepdims=1),
        helper.make_node("Div", [name("weights"), name("total")], [out]),
    ]
    return nodes


def _round_uint8_nodes(source: str, target: str) -> list[onnx.NodeProto]:
    """Rounded half up and clipped to 0..255, as Pillow's fixed-point passes do (ONNX's Round
    rounds half to even); kept float for the next MatMul."""
    return [helper.make_node("Add", [source, "half"], [f"{source}_up"]),
            helper.make_node("Floor", [f"{source}_up"], [f"{source}_floor"]),
            helper.make_node("Clip", [f"{source}_floor", "f_zero_scalar", "f_255_scalar"],
                             [target])]


def _floats(name: str, values: list[float]) -> TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, [len(values)], values)


def _ints(name: str, values: list[int]) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _value_info(graph: onnx.GraphProto, name: str) -> onnx.ValueInfoProto:
    for value in [*graph.output, *graph.input]:
        if value.name == name:
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(value)
            return copy
    raise KeyError(name)


class Activation(Step):
    """logits -> ``scores``: softmax or sigmoid over the last axis (or the logits as they are,
    for function_to_apply "none")."""

    def __init__(self, function: str, output: str = "scores", name: str | None = None):
        super().__init__(["logits"], [output], name)
        self.function = function

    def _create_graph_for_step(self, graph: onnx.GraphProto, onnx_opset: int):
        op = {"softmax": "Softmax", "sigmoid": "Sigmoid", "none": "Identity"}[self.function]
        attributes = {"axis": -1} if op == "Softmax" else {}
        source = _value_info(graph, self.input_names[0])
        out = onnx.ValueInfoProto()
        out.CopyFrom(source)
        out.name = self.output_names[0]
        return helper.make_graph(
            [helper.make_node(op, [self.input_names[0]], [self.output_names[0]], **attributes)],
            "activation", [source], [out])


class ThreeChannels(Step):
    """DecodeImage's HWC output with 3 channels: a grayscale PNG decodes to one, which is
    repeated (as Pillow's convert("RGB")); a 4-channel one keeps its first 3 (alpha dropped,
    as Pillow's convert("RGB") drops it)."""

    def __init__(self, name: str | None = None):
        super().__init__(["image"], ["bgr_image"], name)

    def _create_graph_for_step(self, graph: onnx.GraphProto, onnx_opset: int):
        source, target = self.input_names[0], self.output_names[0]
        return helper.make_graph(
            # the shape is computed, not a constant: ONNX Runtime would drop an Expand to a
            # constant shape as a no-op, trusting the decoder's declared 3 channels
            [helper.make_node("Shape", [source], ["shape"], end=2),
             helper.make_node("Concat", ["shape", "three"], ["rgb_shape"], axis=0),
             helper.make_node("Expand", [source, "rgb_shape"], ["expanded"]),
             helper.make_node("Slice", ["expanded", "zero", "three", "two"], [target])],
            "three_channels", [_value_info(graph, source)],
            [helper.make_tensor_value_info(target, TensorProto.UINT8, ["dh", "dw", 3])],
            initializer=[_ints("zero", [0]), _ints("three", [3]),
                         _ints("two", [2])])


class DetectionOutputs(Step):
    """DETR-style outputs -> what the object-detection pipeline draws, before its threshold:
    ``scores`` [1, queries] (the best class's softmax probability, "no object" left out),
    ``labels`` [1, queries] (that class's id) and ``boxes`` [1, queries, 4] (xmin, ymin, xmax,
    ymax in pixels of the decoded image, truncated to int32 as the pipeline truncates). Its
    third input is the decoded image, for its size."""

    def __init__(self, name: str | None = None):
        super().__init__(["logits", "pred_boxes", "image"], ["scores", "labels", "boxes"], name)

    def _create_graph_for_step(self, graph: onnx.GraphProto, onnx_opset: int):
        logits, boxes, image = self.input_names
        scores, labels, pixels = self.output_names

        def node(op, inputs, output, **attributes):
            return helper.make_node(op, inputs, [output], **attributes)

        nodes = [
            node("Softmax", [logits], "probabilities", axis=-1),
            node("Slice", ["probabilities", "zero", "minus_one", "minus_one"], "classes"),
            node("ReduceMax", ["classes", "minus_one"], scores, keepdims=0),
            node("ArgMax", ["classes"], labels, axis=-1, keepdims=0),
            helper.make_node("Split", [boxes], ["cx", "cy", "bw", "bh"], axis=-1,
                             num_outputs=4),
            node("Mul", ["bw", "half"], "half_w"), node("Mul", ["bh", "half"], "half_h"),
            node("Sub", ["cx", "half_w"], "x0"), node("Sub", ["cy", "half_h"], "y0"),
            node("Add", ["cx", "half_w"], "x1"), node("Add", ["cy", "half_h"], "y1"),
            node("Concat", ["x0", "y0", "x1", "y1"], "corners", axis=-1),
            node("Shape", [image], "image_shape", end=2),
            node("Gather", ["image_shape", "whwh"], "size_whwh"),
            node("Cast", ["size_whwh"], "size_f", to=TensorProto.FLOAT),
            node("Mul", ["corners", "size_f"], "boxes_f"),
            node("Cast", ["boxes_f"], pixels, to=TensorProto.INT32),
        ]
        logits_info = _value_info(graph, logits)
        queries = logits_info.type.tensor_type.shape.dim[1]
        queries = queries.dim_value if queries.HasField("dim_value") else "queries"
        return helper.make_graph(
            nodes, "detection_outputs",
            [logits_info, _value_info(graph, boxes), _value_info(graph, image)],
            [helper.make_tensor_value_info(scores, TensorProto.FLOAT, [1, queries]),
             helper.make_tensor_value_info(labels, TensorProto.INT64, [1, queries]),
             helper.make_tensor_value_info(pixels, TensorProto.INT32, [1, queries, 4])],
            initializer=[_ints("zero", [0]), _ints("minus_one", [-1]), _ints("whwh", [1, 0, 1, 0]),
                         _floats("half", [0.5])])


# --- graphs -----------------------------------------------------------------------------------
def preprocessing_steps(plan: ImagePlan) -> list[Step]:
    """The steps from the encoded image to pixel_values [1, 3, H, W] float32."""
    steps: list[Step] = [ConvertImageToBGR(), ThreeChannels(DECODED_STEP),
                         ReverseAxis(axis=2, dim_value=3, name="BGRToRGB")]
    if plan.resize is not None:
        steps.append(ResizeLikePillow(plan))
    if plan.crop is not None:
        steps.append(CenterCrop(*plan.crop))
    # Rescale then (x - mean) / std in float32, as transformers does (the runtime fuses them
    # into one multiply-add: the two differ by float32 roundings, under 1e-6).
    steps.append(ImageBytesToFloat(rescale_factor=plan.rescale if plan.rescale else 1.0))
    if plan.mean_std is not None:
        steps.append(Normalize(list(zip(*plan.mean_std)), layout="HWC"))
    steps += [ChannelsLastToChannelsFirst(), Unsqueeze([0])]
    return steps


def with_image_processing(model: onnx.ModelProto, plan: ImagePlan,
                          post_steps: list[Step] | None = None) -> onnx.ModelProto:
    """``model`` (one float32 input, pixel_values) with the plan's steps in front, taking the
    encoded image as the uint8 tensor ``image`` [bytes], and ``post_steps`` after its first
    output. Opset imports of other domains (com.microsoft, in optimized or quantized graphs)
    are kept."""
    opset = max([MIN_OPSET] + [entry.version for entry in model.opset_import
                               if entry.domain in ("", "ai.onnx")])
    processor = PrePostProcessor(
        [create_named_value(IMAGE_INPUT, TensorProto.UINT8, ["bytes"])], onnx_opset=opset)
    processor.add_pre_processing(preprocessing_steps(plan))
    if post_steps:
        processor.add_post_processing(post_steps)
    # run() makes the model's opset imports from its checker context alone: without the
    # model's other domains (com.microsoft: fused or 4-bit ops) the checker refuses the model
    context = processor._custom_op_checker_context
    context.opset_imports = {**context.opset_imports, **{
        entry.domain: entry.version for entry in model.opset_import
        if entry.domain not in ("", "ai.onnx")}}
    return processor.run(topologically_sorted(model))


def topologically_sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its nodes in an order where each comes after what it reads (the fp16
    converter appends its input Casts last; ONNX Runtime runs that, the ONNX checker does not)."""
    graph = model.graph
    inputs = {value.name for value in graph.input} | {t.name for t in graph.initializer} | {""}
    known = set(inputs)
    for node in graph.node:
        if not all(name in known for name in node.input):
            break
        known.update(node.output)
    else:  # sorted already (kept as is: a Loop's body may read values it does not list)
        return model
    known = inputs
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in known for name in node.input)]
        if not ready:  # a cycle, or inputs from nowhere: leave it to the checker to name
            ordered += pending
            break
        ready_ids = {id(node) for node in ready}
        pending = [node for node in pending if id(node) not in ready_ids]
        for node in ready:
            ordered.append(node)
            known.update(node.output)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.node[:]
    copy.graph.node.extend(ordered)
    return copy


def pixel_values_graph(plan: ImagePlan) -> onnx.ModelProto:
    """The preprocessing alone: ``image`` [bytes] -> ``pixel_values`` [1, 3, H, W] (to measure
    it against the runtime's processor, or to run it in an app before model.ort)."""
    height, width = plan.output_size()
    identity = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["pixel_values_in"], ["pixel_values"])], "identity",
            [helper.make_tensor_value_info("pixel_values_in", TensorProto.FLOAT,
                                           [1, 3, height, width])],
            [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT,
                                           [1, 3, height, width])]),
        opset_imports=[helper.make_operatorsetid("", MIN_OPSET)])
    return with_image_processing(identity, plan)


def session_options():
    """onnxruntime SessionOptions with the extensions' custom ops registered (what an app's
    ONNX Runtime needs to run these graphs)."""
    import onnxruntime
    from onnxruntime_extensions import get_library_path

    options = onnxruntime.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    return options
