"""OpenVINO, imported only when a graph runs on it, with one clear message when it is missing;
the device names edgeport takes and the precision hints, each checked against this machine.

>>> device_name("gpu:1"), device_name("auto")
('GPU.1', 'AUTO')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import EngineError, InputError, MissingDependencyError, did_you_mean

INSTALL_NOTE = ('Note: install it with `pip install "edgeport[openvino]"` (or `pip install '
                'openvino`); it needs no torch and no GPU driver for the CPU.')

# edgeport's device names -> OpenVINO's. "auto" lets OpenVINO's AUTO plugin pick (an NPU or
# iGPU when there is one, else the CPU).
DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "auto": "AUTO"}

# precision hint -> (OpenVINO's INFERENCE_PRECISION_HINT, the capability a device lists for it)
PRECISIONS = {"f32": ("f32", "FP32"), "bf16": ("bf16", "BF16"), "f16": ("f16", "FP16")}


def import_openvino():
    """The ``openvino`` module, or a MissingDependencyError saying what to install."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError(
            f"The openvino backend needs OpenVINO, which is not installed ({exc}). "
            f"{INSTALL_NOTE}") from None
    return openvino


def openvino_version(ov) -> str:
    """OpenVINO's version as numbers only: "2026.4.1" of "2026.4.1-22982-e213a14...".

    >>> class Ov: __version__ = "2026.4.1-22982-e213a147257-releases/2026/4"
    >>> openvino_version(Ov)
    '2026.4.1'
    """
    match = re.match(r"\d+(\.\d+)*", str(ov.__version__))
    return match.group(0) if match else str(ov.__version__)


def device_name(device: str) -> str:
    """OpenVINO's name for an edgeport device: ``cpu`` -> ``CPU``, ``gpu:1`` -> ``GPU.1`` (the
    second Intel GPU), ``auto`` -> ``AUTO``; an InputError for any other name."""
    name, colon, index = str(device).lower().partition(":")
    if name not in DEVICES:
        raise InputError(f"Unknown OpenVINO device {device!r}. {did_you_mean(name, DEVICES)} "
                         "A second GPU is named by its index: 'gpu:1'.")
    if not colon:
        return DEVICES[name]
    if name not in ("gpu", "npu") or not index.isdigit():
        raise InputError(f"Bad device {device!r}. Note: only 'gpu' and 'npu' take an index, "
                         "as in 'gpu:1'; 'cpu' and 'auto' take none.")
    return f"{DEVICES[name]}.{int(index)}"


@dataclass(frozen=True)
class DeviceFacts:
    """What a compiled model is tied to: the OpenVINO device, its full name, the precision it
    runs at, and OpenVINO's version. ``precision`` is the hint given, or the one OpenVINO picks
    for the device when none is (``default`` True then); AUTO's is its devices' own."""

    device: str  # OpenVINO's name: CPU, GPU.1, AUTO
    full_name: str
    precision: str  # f32, bf16, f16, or "auto" (AUTO's devices decide)
    default: bool
    openvino: str
    capabilities: tuple[str, ...] = ()

    @classmethod
    def detect(cls, ov, core, device: str, precision: str | None) -> DeviceFacts:
        """The facts for ``device`` (edgeport's name) at ``precision`` on this machine; a clear
        error when OpenVINO has no such device here or the device cannot run the precision."""
        name = device_name(device)
        if precision is not None and precision not in PRECISIONS:
            raise InputError(f"Unknown precision {precision!r} for OpenVINO. "
                             f"{did_you_mean(str(precision), PRECISIONS)} None (the default) "
                             "runs at what OpenVINO picks for the device.")
        available = list(core.available_devices)
        if name == "AUTO":
            if not available:
                raise EngineError("OpenVINO sees no device on this machine.")
            hint = precision or "auto"
            return cls("AUTO", "AUTO: " + ", ".join(available), hint, precision is None,
                       openvino_version(ov))
        if name not in available and not any(d.startswith(name + ".") for d in available):
            raise InputError(
                f"OpenVINO has no device {name} ({device!r}) on this machine. Note: OpenVINO "
                f"sees {available or 'no device'} here; an Intel iGPU needs its OpenCL driver "
                "(intel-opencl-icd) and an NPU its driver (intel-npu-driver). Use device='cpu' "
                "or 'auto'.")
        full_name = str(core.get_property(name, "FULL_DEVICE_NAME"))
        capabilities = tuple(str(c) for c in core.get_property(name,
                                                               "OPTIMIZATION_CAPABILITIES"))
        if precision is None:
            picked = _type_name(core.get_property(name, "INFERENCE_PRECISION_HINT"))
            return cls(name, full_name, picked, True, openvino_version(ov), capabilities)
        needed = PRECISIONS[precision][1]
        if needed not in capabilities:
            can = [hint for hint, (_, cap) in PRECISIONS.items() if cap in capabilities]
            raise InputError(
                f"{name} ({full_name}) cannot run at {precision}: OpenVINO lists no {needed} "
                f"among its capabilities {list(capabilities)}. Note: this device runs "
                f"{' or '.join(can) or 'no float precision edgeport knows'}; leave precision "
                "out for the one OpenVINO picks.")
        return cls(name, full_name, precision, False, openvino_version(ov), capabilities)

    def describe(self) -> str:
        """One line for `edgeport inspect` and messages: where and at which precision it runs."""
        how = "OpenVINO's default for the device" if self.default else "the precision hint"
        if self.device == "AUTO":
            return (f"AUTO ({self.full_name}), precision {self.precision} "
                    f"({'each device its own' if self.default else how}), OpenVINO "
                    f"{self.openvino}")
        return (f"{self.device} ({self.full_name}), precision {self.precision} ({how}), "
                f"OpenVINO {self.openvino}")


def _type_name(value) -> str:
    """``f32`` of OpenVINO's element type ``<Type: 'float32'>`` (or of its name)."""
    name = getattr(value, "get_type_name", lambda: str(value))()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)
