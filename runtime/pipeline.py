"""``pipeline()``: the runtime's front door, shaped like ``transformers.pipeline``."""

from __future__ import annotations

import os

from .audio.features import FeatureExtractor
from .bundle import Bundle
from .errors import InputError
from .tasks import Pipeline, pipeline_class
from .text.tokenizer import TextTokenizer
from .vision.processors import ImageProcessor


def pipeline(
    task: str | None = None,
    model: str | os.PathLike | Bundle | None = None,
    variant: str = "fp32",
    device: str = "cpu",
    *,
    threads: int | None = None,
    providers: list[str] | None = None,
    session_options=None,
    backend: str = "onnxruntime",
    build_if_missing: bool = False,
    precision: str | None = None,
    **kwargs,
) -> Pipeline:
    """A task pipeline on a bundle: swap ``from transformers import pipeline`` for
    ``from runtime import pipeline`` and pass a bundle directory as ``model``.

    ``task`` defaults to the bundle's own; other keyword arguments become defaults of every
    call (``top_k``, ``aggregation_strategy``, ...), as in transformers. ``backend="tensorrt"``
    (with ``device="cuda"``) runs every graph from the TensorRT plans `edgeport build` wrote
    under the bundle's engines/ (``build_if_missing=True`` builds them when absent or stale).
    ``backend="openvino"`` compiles them with OpenVINO for ``device`` cpu, gpu, npu or auto, at
    ``precision`` "f32", "bf16" or "f16" (None: what OpenVINO picks for the device).

    >>> classify = pipeline("text-classification", model="bundle")   # doctest: +SKIP
    >>> classify("I love this!")                                       # doctest: +SKIP
    [{'label': 'POSITIVE', 'score': 0.9998}]
    """
    if model is None:
        raise InputError(
            "pipeline() needs model=BUNDLE, the directory `edgeport export` wrote. Note: the "
            "runtime runs exported bundles; it does not load PyTorch checkpoints."
        )
    bundle = model if isinstance(model, Bundle) else Bundle.load(model)
    return pipeline_from_bundle(bundle, task, variant=variant, device=device, threads=threads,
                                providers=providers, session_options=session_options,
                                backend=backend, build_if_missing=build_if_missing,
                                precision=precision, **kwargs)


def pipeline_from_bundle(bundle: Bundle, task: str | None = None, *, variant: str = "fp32",
                         device: str = "cpu", threads: int | None = None,
                         providers: list[str] | None = None, session_options=None,
                         backend: str = "onnxruntime", build_if_missing: bool = False,
                         precision: str | None = None, engine=None, engines=None,
                         **kwargs) -> Pipeline:
    """A task pipeline on a loaded bundle (``pipeline``'s work). ``engine``: an Engine that
    runs the bundle's "model" graph in place of one made from ``backend`` (a serving backend
    that calls a server); not for generative tasks, whose graphs a GenerationModel runs:
    ``engines`` (graph name -> Engine) gives those (``encoder_model``,
    ``decoder_model_merged``, or a decoder-only ``model``), the others made from ``backend``."""
    task_name = task
    task = bundle.check_task(task)
    task_class = pipeline_class(task, bundle.manifest.get("family"),
                                bundle.manifest.get("model_type"))
    options = dict(device=device, threads=threads, providers=providers,
                   session_options=session_options, backend=backend,
                   build_if_missing=build_if_missing)
    if precision is not None:  # a backend's hint (OpenVINO's); the others take none
        options["precision"] = precision
    if task_class.generates and engine is not None:
        raise InputError(f"The task {task!r} generates text with several graphs; an engine "
                         "given in place of the bundle's cannot run it. Note: give engines= "
                         "(graph name -> Engine).")
    if engines is not None and not task_class.generates:
        raise InputError(f"engines= is for generative tasks; {task!r} runs one graph. Note: "
                         "give engine= instead.")
    if task_class.generates:
        from .generation import OnnxGenerationModel

        model = OnnxGenerationModel.from_bundle(bundle, variant, engines=engines, **options)
        kwargs.update(generation_model=model, task_name=task_name or bundle.task)
        engine = model.decoder
    elif engine is None:
        engine = bundle.engine("model", variant, **options)
    wanted = task_class.preprocessors
    tokenizer = TextTokenizer.from_dir(bundle.path) if "tokenizer" in wanted else None
    image_processor = (ImageProcessor.from_dir(bundle.path) if "image_processor" in wanted
                       else None)
    feature_extractor = (FeatureExtractor.from_dir(bundle.path) if "feature_extractor" in wanted
                         else None)
    return task_class(config=bundle.config, engine=engine, tokenizer=tokenizer,
                      image_processor=image_processor, feature_extractor=feature_extractor,
                      bundle=bundle, **kwargs)
