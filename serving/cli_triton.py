"""`edgeport triton BUNDLE -o REPO [--name NAME] [--variant V] [--max-batch N] [--instances N]
[--flavor python|native]`: a Triton Inference Server model repository from a bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory (from `edgeport export`)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="REPO",
                        help="the model repository to write (a new or empty folder)")
    parser.add_argument("--name", help="the model's name (default: the bundle folder's name)")
    parser.add_argument("--variant", default="fp32", help="graph variant (default: fp32)")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="max_batch_size, with dynamic batching (0: none; default: 8)")
    parser.add_argument("--instances", type=int, default=1,
                        help="model instances (instance_group count; default: 1)")
    parser.add_argument("--flavor", choices=("python", "native"), default="python",
                        help="python: a Python-backend model running the edgeport pipeline "
                             "(runs anywhere, incl. `edgeport serve`); native: onnxruntime/"
                             "tensorrt graph models for NVIDIA's Triton containers")


def write_repository(bundle, repo, *, flavor: str = "python", name: str | None = None,
                     variant: str = "fp32", max_batch: int = 8, instances: int = 1) -> Path:
    if flavor == "python":
        from .python_repo import write_python_repository

        return write_python_repository(bundle, repo, name=name, variant=variant,
                                       max_batch=max_batch, instances=instances)
    if flavor == "native":
        from .native import write_native_repository

        return write_native_repository(bundle, repo, name=name, variant=variant,
                                       max_batch=max_batch, instances=instances)
    raise InputError(f"--flavor is python or native, not {flavor!r}.")


def main(args) -> int:
    repo = write_repository(args.bundle, args.output, flavor=args.flavor, name=args.name,
                            variant=args.variant, max_batch=args.max_batch,
                            instances=args.instances)
    print(f"Wrote the Triton model repository {repo} ({args.flavor} flavor).")
    return 0
