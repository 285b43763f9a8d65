"""Where ``compare`` and ``--max-drop`` run the variants: the backend, device and precision
options, checked before any work is done; a backend's refusal of a variant or a recipe; and the
record of where an engine ran (``measured_on``). The reference always runs on
``REFERENCE_ENGINE``: fp32 on ONNX Runtime's CPU, where its numbers are exact."""

from __future__ import annotations

from collections.abc import Mapping

from runtime.backends.engine import backend_factory
from runtime.bundle import Bundle
from runtime.errors import InputError

REFERENCE_ENGINE = {"backend": "onnxruntime", "device": "cpu"}


def engine_options(backend: str = "onnxruntime", device: str = "cpu",
                   precision: str | None = None) -> dict:
    """The ``Bundle.engine`` options the variants run with, checked before any work is done:
    an unknown backend, a precision hint on a backend that takes none, an OpenVINO device or
    precision this machine lacks are each an InputError.

    >>> engine_options("onnxruntime")
    {'backend': 'onnxruntime', 'device': 'cpu'}
    """
    backend_factory(backend)  # an InputError naming the backends there are
    options = {"backend": backend, "device": device}
    if precision is not None:
        if backend != "openvino":
            raise InputError(
                f"precision={precision!r} (--precision) is OpenVINO's precision hint; on "
                f"{backend} the variant's graph sets the precision. Note: add --backend openvino "
                "(backend='openvino'), or compare a variant made at that precision (fp16, qdq) "
                "instead.")
        options["precision"] = precision
    if backend == "openvino":  # the device and the precision, checked against this machine
        from runtime.backends.openvino.libs import DeviceFacts, import_openvino

        ov = import_openvino()
        DeviceFacts.detect(ov, ov.Core(), device, precision)
    return options


def check_runs_on(bundle: Bundle, options: Mapping, *, variant: str | None = None,
                  recipe: str | None = None) -> None:
    """An InputError, with the backend's reason and what to use instead, when the backend of
    ``options`` refuses ``variant`` or every variant ``recipe`` makes (OpenVINO: dynamic-int8);
    nothing otherwise."""
    if options["backend"] != "openvino":
        return
    from runtime.backends.openvino.engine import REFUSED_RECIPES, check_variant

    if variant is not None:
        check_variant(bundle, variant)
    if recipe in REFUSED_RECIPES:
        why, instead = REFUSED_RECIPES[recipe]
        raise InputError(f"A {recipe} variant does not run on OpenVINO: {why}. Note: "
                         f"{instead}.")


def runnable(bundle: Bundle, options: Mapping, names) -> tuple[list[str], dict[str, str]]:
    """Of the variants ``names``, those the backend of ``options`` runs, and those it refuses
    (name -> why): a default list of variants leaves the refused ones out, and says so."""
    runs: list[str] = []
    refused: dict[str, str] = {}
    for name in names:
        try:
            check_runs_on(bundle, options, variant=name)
        except InputError as refusal:
            refused[name] = str(refusal)
            continue
        runs.append(name)
    return runs, refused


def measured_on(engine, options: Mapping) -> dict:
    """Where an engine ran, for the report: backend, device, and the precision it ran at:
    OpenVINO's from the compiled model's facts (``precision_default``: OpenVINO picked it for
    the device; ``device_name``: the device's full name; ``dynamic_quantization_group_size``
    where the device has the option); None on the other backends, where each op runs at its
    graph's own dtype."""
    where = {"backend": options["backend"], "device": options["device"], "precision": None}
    # a merged decoder's engine is one engine per branch, compiled alike
    engine = engine if hasattr(engine, "facts") else next(
        (e for e in getattr(engine, "_engines", {}).values() if hasattr(e, "facts")), None)
    if engine is not None:
        facts = engine.facts
        where.update(precision=facts.precision, precision_default=facts.default,
                     device_name=facts.full_name, openvino=facts.openvino)
        # OpenVINO's CPU quantizes the activations of MatMuls with int4/int8 weights (an int4
        # variant's) to int8 in groups of this many at run time; 0: it does not
        group = engine.property("DYNAMIC_QUANTIZATION_GROUP_SIZE")
        if group is not None:
            where["dynamic_quantization_group_size"] = int(group)
    return where
