"""`edgeport build BUNDLE [--variant V] [--shapes NAME=MIN:OPT:MAX ...] [options]`: TensorRT
plans for every graph of a variant, built on this machine (the device the plans will run on).

``--shapes`` gives shape ranges by dim name (those `edgeport inspect` shows); each ``--shapes``
group is one optimization profile, and dims a group leaves out keep their defaults:

    edgeport build bundle --variant fp16 --shapes sequence=1:64:128 --shapes sequence=129:256:512
"""

from __future__ import annotations

import argparse
import importlib

from ..backends.engine import parse_device
from ..backends.tensorrt.profiles import (
    DEFAULT_MAX_BATCH,
    merge_ranges,
    parse_shapes,
    resolve_ranges,
)
from ..bundle import Bundle
from ..errors import InputError, MissingDependencyError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory (from `edgeport export`)")
    parser.add_argument("--variant", default="fp32",
                        help="the variant to build: fp32 (default), fp16, or a static-int8 one")
    parser.add_argument("--shapes", action="append", nargs="+", default=[],
                        metavar="NAME=MIN:OPT:MAX",
                        help="shape ranges by dim name (NAME=SIZE for one size); repeat "
                             "--shapes for more optimization profiles")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help=f"largest batch of the default ranges ({DEFAULT_MAX_BATCH})")
    parser.add_argument("--calibration", metavar="PATH",
                        help="take the shape ranges from this data (as `edgeport quantize` "
                             "reads it; needs the quantize extra)")
    parser.add_argument("--workspace", type=int, metavar="MB",
                        help="TensorRT's workspace limit in MB (default: TensorRT's)")
    parser.add_argument("--opt-level", type=int, default=3,
                        help="builder optimization level, 0 (fast build) to 5 (default 3)")
    parser.add_argument("--dla", type=int, metavar="N",
                        help="build for DLA core N (Jetson), falling back to the GPU")
    parser.add_argument("--hardware-compatible", action="store_true",
                        help="a plan that runs on any Ampere or newer GPU")
    parser.add_argument("--version-compatible", action="store_true",
                        help="a plan that later TensorRT versions run too")
    parser.add_argument("--device", default="cuda",
                        help="the GPU to build on and for: cuda (the first) or cuda:N")


def main(args) -> int:
    from ..backends.tensorrt.builder import engines_from_bundle
    from ..backends.tensorrt.libs import import_cudart, import_tensorrt
    from ..backends.tensorrt.plans import BuildOptions, check_buildable
    bundle = Bundle.load(args.bundle)
    check_buildable(bundle, args.variant)
    if parse_device(args.device)[0] != "cuda":
        raise InputError(f"--device {args.device}: plans are built on a GPU, cuda or cuda:N.")
    shapes = [parse_shapes(group) for group in args.shapes]
    # before the slow parts: a typo, or a dim without a default, fails at once
    resolve_ranges(bundle, shapes=shapes, max_batch=args.max_batch)
    options = BuildOptions(workspace_mb=args.workspace, opt_level=args.opt_level,
                           dla_core=args.dla, hardware_compatible=args.hardware_compatible,
                           version_compatible=args.version_compatible)
    trt = import_tensorrt()
    import_cudart()
    calibration = None if args.calibration is None else calibration_ranges(bundle,
                                                                            args.calibration)
    engines_from_bundle(bundle, args.variant, shapes=shapes, calibration=calibration,
                        max_batch=args.max_batch, options=options, device=args.device, trt=trt,
                        say=print)
    return 0


def calibration_ranges(bundle: Bundle, path: str) -> dict:
    """The dim ranges the bundle's graphs see on the data at ``path``, through the calibration
    package (imported here, so the runtime does not need it otherwise)."""
    try:  # by name, as runtime.cli.command finds subcommands: the runtime never imports calibration
        data = importlib.import_module("calibration.data")
    except ImportError as exc:
        raise MissingDependencyError(
            f"--calibration reads data through the calibration package, which cannot be "
            f"imported ({exc}). Note: install its extra with `pip install 'edgeport[quantize]'`, "
            "or give the ranges with --shapes."
        ) from None
    samples = data.load_samples(bundle, path)
    feeds = (data.graph_feeds(bundle, samples.sources()) if data.is_generative(bundle)
             else {"model": samples.feeds})
    return merge_ranges(data.dim_ranges(bundle, each, graph) for graph, each in feeds.items())
