"""TensorRT plans for a bundle: built on the device, run behind the Engine protocol.

    profiles.py   shape ranges by dim name (config defaults, calibration data, --shapes) and
                  each graph's optimization profiles from them; pure, tested without a GPU
    plans.py      plan names under engines/, sidecars, and whether a plan runs here
    builder.py    plan_from_onnx (the TensorRT build calls), engines_from_bundle
    engine.py     TrtEngine (device memory through cuda-python, pooled; DeviceArrays keep a
                  generation cache on the GPU; an output allocator for data-dependent shapes),
                  engine_from_bundle
    libs.py       tensorrt and cuda-python, imported lazily, and the device facts

Nothing here imports tensorrt or cuda-python at module level: ``import runtime.backends.tensorrt``
works on any machine, and a missing library is a MissingDependencyError that says what to
install. Built on the bundle: may import it and the layers below it (errors, files, dims,
``backends.engine``, ``backends.merged``, ``generation.onnx_model`` for cache names); the
layers below reach it only by name, through ``backends.engine.BACKENDS``.

>>> from runtime import pipeline                                               # doctest: +SKIP
>>> classify = pipeline(model="bundle", device="cuda", backend="tensorrt",
...                     variant="fp16", build_if_missing=True)                  # doctest: +SKIP
"""

from .builder import engines_from_bundle, plan_from_onnx
from .engine import TrtEngine, engine_from_bundle
from .libs import DeviceFacts
from .plans import BuildOptions
from .profiles import default_ranges, graph_profile, parse_shapes, resolve_ranges

__all__ = [
    "BuildOptions", "DeviceFacts", "TrtEngine", "default_ranges", "engine_from_bundle",
    "engines_from_bundle", "graph_profile", "parse_shapes", "plan_from_onnx", "resolve_ranges",
]
