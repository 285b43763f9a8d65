"""The PyTorch reference of ``compare``: the checkpoint a bundle was exported from, run by
transformers behind the Engine protocol (``reference="pytorch"``, needs the export extra).

torch and transformers are imported when a reference is made, never at import time.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle
from runtime.errors import (
    EngineError,
    InputError,
    MissingDependencyError,
)
from runtime.tasks import TASK_MODEL_CLASSES

REFERENCES = ("fp32", "pytorch")


class TorchEngine:
    """The checkpoint a bundle was exported from, run by transformers behind the Engine protocol.

    >>> engine = TorchEngine(Bundle.load("bundle"))               # doctest: +SKIP
    >>> sorted(engine.run(feed))                                   # doctest: +SKIP
    ['logits']
    """

    def __init__(self, bundle: Bundle):
        self._torch, self.model = torch_model(bundle)
        self.inputs, self.outputs = bundle.graph_specs("model")
        self._accepted = set(inspect.signature(self.model.forward).parameters)

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        tensors = {name: torch.from_numpy(np.ascontiguousarray(feed[spec.name]))
                   for spec in self.inputs for name in [spec.name] if name in self._accepted}
        if "noise" in self._accepted and "pixel_values" in tensors:
            tensors["noise"] = self._ordered_noise(tensors["pixel_values"])
        with torch.inference_mode():
            result = self.model(**tensors)
        outputs = {}
        for spec in self.outputs:
            value = result.get(spec.name) if hasattr(result, "get") else None
            if value is None:
                raise EngineError(
                    f"The PyTorch model gives no output {spec.name!r} (it gives "
                    f"{sorted(result.keys())}). Note: use --reference fp32."
                )
            outputs[spec.name] = value.float().numpy()
        return outputs


    def _ordered_noise(self, pixel_values):
        """ViTMAE's masking noise that keeps every patch in image order, as its graph does
        (exporter/configs/image_features.py): ``noise[i] = i`` sorts to the identity."""
        patch = self.model.config.patch_size
        count = (pixel_values.shape[-2] // patch) * (pixel_values.shape[-1] // patch)
        return self._torch.arange(count, dtype=self._torch.float32).expand(
            pixel_values.shape[0], -1)


def torch_model(bundle: Bundle):
    """(torch, the transformers model of the checkpoint the bundle was exported from, in eval
    mode); a clear error when torch or the checkpoint is missing."""
    checkpoint = (bundle.manifest.get("source") or {}).get("checkpoint")
    if not checkpoint:
        raise InputError(
            f"The manifest of {bundle.path} records no source checkpoint, so there is no "
            "PyTorch reference to load. Note: use --reference fp32."
        )
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"--reference pytorch needs torch and transformers ({exc}). Note: install them "
            "with `pip install 'edgeport[export]'`, or use --reference fp32."
        ) from None
    path = Path(checkpoint)
    if not path.is_dir():
        raise InputError(
            f"The checkpoint the bundle was exported from, {checkpoint}, does not exist on "
            "this machine any more. Note: restore it at that path, or use --reference fp32 "
            "(the bundle's validation report records how close fp32 was to PyTorch)."
        )
    try:
        config = transformers.AutoConfig.from_pretrained(str(path))
        if hasattr(config, "mask_ratio"):  # ViTMAE: the ratio the export forced (0, no masking)
            config.mask_ratio = bundle.config.get("mask_ratio", config.mask_ratio)
        model_class = reference_model_class(transformers, bundle, config)
        model = model_class.from_pretrained(str(path), config=config).eval()
    except InputError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
        raise InputError(
            f"transformers could not load {path} for {bundle.task}: {first}. Note: "
            "use --reference fp32."
        ) from None
    return torch, model


def reference_model_class(transformers, bundle: Bundle, config):
    """The transformers class that computes the bundle's task for its checkpoint: the task's
    auto class when it knows the model (as the exporter loads it for most architectures), else
    the class the checkpoint's config.json names in ``architectures``, which the manifest keeps
    under ``source``. That is the case where the exporter's architecture row names another
    auto class: SegFormer's semantic and Mask2Former's universal segmentation heads are outside
    AutoModelForImageSegmentation. (calibration does not import the exporter's rows.)

    >>> reference_model_class(transformers, segformer_bundle, config).__name__   # doctest: +SKIP
    'SegformerForSemanticSegmentation'
    """
    auto_class = getattr(transformers, TASK_MODEL_CLASSES[bundle.task])
    # The auto class's config -> model table, which from_pretrained looks the config up in
    # (private, but stable since transformers 4.0; without it, the auto class is tried as is).
    mapping = getattr(auto_class, "_model_mapping", None)
    if mapping is None or type(config) in mapping:
        return auto_class
    names = (bundle.manifest.get("source") or {}).get("architectures") or []
    for name in names:  # a class of transformers' models, nothing else the manifest names
        model_class = getattr(transformers, name, None)
        if isinstance(model_class, type) and issubclass(model_class, transformers.PreTrainedModel):
            return model_class
    raise InputError(
        f"transformers' {auto_class.__name__} does not load model_type "
        f"{getattr(config, 'model_type', '?')!r}, and the manifest of {bundle.path} names no "
        f"transformers class under source.architectures (it has {names}). Note: use "
        "--reference fp32 (the bundle's validation report records how close fp32 was to "
        "PyTorch)."
    )
