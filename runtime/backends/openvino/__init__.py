"""OpenVINO: a bundle's ONNX graphs compiled for an Intel (or other x86 or ARM) CPU, an Intel
iGPU or NPU, at a precision hint, behind the Engine protocol.

    libs.py     openvino, imported lazily (a MissingDependencyError naming the extra), device
                names and precision hints checked against this machine (DeviceFacts)
    cache.py    OpenVINO's compiled-model cache under the bundle's engines/openvino, one folder
                per graph, variant, device, precision and version, with a checked sidecar
    engine.py   OvEngine (run; run_bound keeps a generation cache in OpenVINO tensors),
                engine_from_bundle (compiles a graph, through the cache; a merged decoder
                as its two branches; refuses dynamic-int8 variants, with the recipe to use)

Nothing here imports openvino at module level: ``import runtime.backends.openvino`` works on
any machine. Built on the bundle: may import it and the layers below it (errors, files,
``backends.engine``, ``generation.onnx_model`` for a variant's recipes); the layers below
reach it only by name, through ``backends.engine.BACKENDS``.

>>> from runtime import pipeline                                               # doctest: +SKIP
>>> classify = pipeline(model="bundle", backend="openvino", precision="bf16")  # doctest: +SKIP
"""

from .engine import OvArray, OvEngine, check_variant, engine_from_bundle
from .libs import DeviceFacts, device_name

__all__ = ["DeviceFacts", "OvArray", "OvEngine", "check_variant", "device_name",
           "engine_from_bundle"]
