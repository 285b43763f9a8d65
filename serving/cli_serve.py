"""`edgeport serve BUNDLE [--http-port P] [--grpc-port P] [--metrics-port P]`: the bundle on
the tritonserver bundled in nvidia-pytriton (the `serve` extra), from a python-flavor model
repository written to a temp folder. Stops on SIGTERM or Ctrl-C, and the server with it."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from runtime.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory (from `edgeport export`)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    parser.add_argument("--metrics-port", type=int, default=8002,
                        help="metrics port (default 8002)")
    parser.add_argument("--name", help="the model's name (default: the bundle folder's name)")
    parser.add_argument("--variant", default="fp32", help="graph variant (default: fp32)")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="max_batch_size, with dynamic batching (0: none; default: 8)")
    parser.add_argument("--instances", type=int, default=1, help="model instances (default 1)")


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(args) -> int:
    from .launch import Server, check_platform, distribution, numpy_for_stub
    from .python_repo import write_python_repository

    check_platform()
    distribution()
    numpy_for_stub()
    folder = Path(tempfile.mkdtemp(prefix="edgeport-serve-"))
    server = None
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        repo = write_python_repository(args.bundle, folder / "repository", name=args.name,
                                       variant=args.variant, max_batch=args.max_batch,
                                       instances=args.instances)
        # NAME, and NAME_stream for a bundle that streams (serving/streaming.py)
        name, *stream = sorted(path.name for path in repo.iterdir())
        server = Server(repo, http_port=args.http_port, grpc_port=args.grpc_port,
                        metrics_port=args.metrics_port)
        server.start()
        print(f"Serving {args.bundle} as the Triton model {name!r}\n"
              f"  HTTP:    {server.http_url}  (infer: POST {server.http_url}/v2/models/{name}"
              f"/infer)\n"
              f"  gRPC:    {server.grpc_url}\n"
              + "".join(f"  stream:  the model {model!r}: gRPC streaming, or POST "
                        f"{server.http_url}/v2/models/{model}/generate_stream, with the "
                        "parameter stream=true\n" for model in stream)
              + f"  health:  {server.http_url}/v2/health/ready\n"
              f"  metrics: {server.metrics_url}\n"
              "Stop with Ctrl-C or SIGTERM.", flush=True)
        while server.process.poll() is None:
            time.sleep(0.5)
        raise InputError(f"tritonserver stopped by itself (status {server.process.returncode}):"
                         f" {server.log_tail()}")
    except KeyboardInterrupt:
        print("Stopping.", file=sys.stderr, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
