"""The ``edgeport`` command. Subcommands live with the package that owns them; this entry point
finds them by module name at call time, so the runtime never imports ``exporter`` or
``calibration``, and a subcommand whose extra is missing says which extra to install.

    edgeport export CHECKPOINT -o BUNDLE [--task TASK] [--opset N]     (exporter)
    edgeport run BUNDLE INPUT... [--json]                               (runtime)
    edgeport inspect BUNDLE [--json]                                    (runtime)
    edgeport bench BUNDLE [--variants ...] [--against transformers]     (runtime)
    edgeport build BUNDLE [--variant V] [--shapes NAME=MIN:OPT:MAX]     (runtime, TensorRT)
    edgeport quantize BUNDLE --recipe RECIPE [--calibration PATH]      (calibration)
    edgeport compare BUNDLE [--data PATH] [--variants ...]              (calibration)
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import EdgeportError, MissingDependencyError

# subcommand -> (module that defines add_arguments(parser) and main(args), one-line help)
SUBCOMMANDS = {
    "export": ("exporter.cli", "export a Transformers checkpoint to a validated bundle"),
    "run": ("runtime.cli_run", "run a bundle's pipeline on inputs"),
    "inspect": ("runtime.cli_inspect", "show a bundle's task, graphs, variants and validation"),
    "bench": ("runtime.cli_bench", "time a bundle's pipeline per stage, beside transformers"),
    "build": ("runtime.cli_build", "build TensorRT plans of a bundle's graphs on this device"),
    "quantize": ("calibration.cli", "write a quantized (or optimized) variant of a bundle"),
    "compare": ("calibration.cli_compare", "compare variants against a reference on data"),
}


# subcommand -> the extra whose absence makes its module fail to import
_EXTRAS = {"export": "export", "quantize": "quantize", "compare": "quantize"}


def _load(command: str):
    module_name = SUBCOMMANDS[command][0]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(command, "export")
        raise MissingDependencyError(
            f"`edgeport {command}` is not available: {exc}. Note: install its extra with "
            f"`pip install 'edgeport[{extra}]'`."
        ) from None


def _parser() -> argparse.ArgumentParser:
    """The top-level parser: the list of subcommands, --help and --version."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="edgeport",
        description="Transformers checkpoints to devices: export, quantize, run.",
    )
    parser.add_argument("--version", action="version", version=f"edgeport {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def _command_parser(command: str, module) -> argparse.ArgumentParser:
    """One subcommand's own parser; only its module is imported, at call time."""
    help_text = SUBCOMMANDS[command][1]
    parser = argparse.ArgumentParser(prog=f"edgeport {command}", description=help_text)
    module.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    try:
        if command is None:  # --help, --version, nothing, or a mistyped command
            parser = _parser()
            parser.parse_args(argv)  # exits for --help, --version and an unknown command
            parser.print_help()
            return 2
        module = _load(command)
        # intermixed: options may come between inputs (edgeport run B --variant int8 "text")
        args = _command_parser(command, module).parse_intermixed_args(argv[1:])
        return int(module.main(args) or 0)
    except EdgeportError as exc:
        print(f"edgeport {command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edgeport {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
