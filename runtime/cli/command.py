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
    edgeport mobile BUNDLE -o OUT [--variant V] [--shapes ...]           (mobile)
    edgeport triton BUNDLE -o REPO [--flavor python|native] [--max-batch N] (serving)
    edgeport serve BUNDLE [--http-port P] [--grpc-port P] [--metrics-port P] (serving, serve extra)

Bundles, checkpoints and inputs come from someone else, so whatever they hold, a failure is one
line on stderr, ``edgeport COMMAND: error: WHAT. Note: HOW TO FIX IT``, and exit status 1: an
EdgeportError, an error of the system (permission denied, disk full), a file that is not UTF-8.
An exception edgeport did not expect is a bug, and its line says so; ``EDGEPORT_DEBUG=1`` shows
the traceback instead. A reader of stdout that goes away (``edgeport run ... | head -1``) ends
the command quietly with status 141 (128 + SIGPIPE: what a shell reports for ``cat`` there).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import importlib
import json
import os
import re
import sys

from ..errors import EdgeportError, MissingDependencyError

# subcommand -> (module that defines add_arguments(parser) and main(args), one-line help)
SUBCOMMANDS = {
    "export": ("exporter.cli", "export a Transformers checkpoint to a validated bundle"),
    "run": ("runtime.cli.run", "run a bundle's pipeline on inputs"),
    "inspect": ("runtime.cli.inspect", "show a bundle's task, graphs, variants and validation"),
    "bench": ("runtime.cli.bench", "time a bundle's pipeline per stage, beside transformers"),
    "build": ("runtime.cli.build", "build TensorRT plans of a bundle's graphs on this device"),
    "quantize": ("calibration.cli", "write a quantized (or optimized) variant of a bundle"),
    "compare": ("calibration.cli_compare", "compare variants against a reference on data"),
    "mobile": ("mobile.cli", "ORT-format and end-to-end models, with a report, for mobile apps"),
    "triton": ("serving.cli_triton", "write a Triton Inference Server model repository"),
    "serve": ("serving.cli_serve", "serve a bundle on the bundled Triton Inference Server"),
}


# subcommand -> the extra whose absence makes its module fail to import
_EXTRAS = {"export": "export", "quantize": "quantize", "compare": "quantize",
           "mobile": "mobile", "triton": "serve", "serve": "serve"}


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
    from ..version import __version__

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
    """Run one subcommand; the exit status: 0 done, 1 an error (one line on stderr), 2 a usage
    error (argparse's), 130 interrupted, 141 the reader of stdout went away (``| head``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    restore = _escape_unencodable_stdout()
    try:
        status = _dispatch(command, argv)
        # Flushed here, not by the interpreter at exit, so that a reader that went away is
        # handled below instead of printing "Exception ignored ... BrokenPipeError".
        if sys.stdout is not None:  # None when started with stdout closed (`>&-`)
            sys.stdout.flush()
        return status
    except BrokenPipeError as exc:
        if not _stdout_gone():
            return _fail(command, exc, _os_error_message(exc))
        return _quit_closed_pipe()
    except KeyboardInterrupt:
        _say(f"{_name(command)}: interrupted")
        return 130
    except EdgeportError as exc:
        return _fail(command, exc, str(exc))
    except OSError as exc:  # the environment, not a bug: permissions, a full disk, a folder
        return _fail(command, exc, _os_error_message(exc))
    except UnicodeEncodeError as exc:
        if not _stdout_encoding(exc.encoding):
            return _fail(command, exc, _bug_message(exc))
        return _fail(command, exc, _encoding_message(exc))
    except UnicodeDecodeError as exc:  # a reader that did not check its file's encoding
        return _fail(command, exc, _decoding_message(exc))
    except Exception as exc:  # a bug: say so in one line; EDGEPORT_DEBUG=1 shows the traceback
        return _fail(command, exc, _bug_message(exc))
    finally:
        restore()


def _dispatch(command: str | None, argv: list[str]) -> int:
    if command is None:  # --help, --version, nothing, or a mistyped command
        parser = _parser()
        parser.parse_args(argv)  # exits for --help, --version and an unknown command
        parser.print_help()
        return 2
    module = _load(command)
    # intermixed: options may come between inputs (edgeport run B --variant int8 "text")
    args = _command_parser(command, module).parse_intermixed_args(argv[1:])
    return int(module.main(args) or 0)


# --- errors as one line ---------------------------------------------------------------------
DEBUG_VARIABLE = "EDGEPORT_DEBUG"
_MAX_LINE = 2000  # a message quoting a hostile file could be as long as the file


def _debug() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")


def _fail(command: str | None, exc: BaseException, message: str) -> int:
    """Print ``edgeport COMMAND: error: MESSAGE`` as one line and return 1; with EDGEPORT_DEBUG
    set, raise instead, so that the traceback shows."""
    if _debug():
        raise exc
    _say(f"{_name(command)}: error: {one_line(message)}")
    return 1


def _name(command: str | None) -> str:
    return f"edgeport {command}" if command else "edgeport"


def _say(line: str) -> None:
    # A closed stderr (`2>&-`, or `2>&1 | head` whose reader is gone) leaves nowhere to tell;
    # print(file=None) would write to stdout, among the results.
    if sys.stderr is None:
        return
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _bug_message(exc: BaseException) -> str:
    text = str(exc)
    return (f"this is a bug in edgeport: {type(exc).__name__}{': ' + text if text else ''}. "
            f"Note: run with {DEBUG_VARIABLE}=1 for the traceback and report it.")


_OS_NOTES = {
    errno.EACCES: "this user may not use it; check its permissions, or choose another path",
    errno.EPERM: "this user may not use it; check its permissions, or choose another path",
    errno.ENOSPC: "the disk is full; free some space, or write elsewhere",
    errno.EDQUOT: "the disk quota is used up; free some space, or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EISDIR: "a folder is where a file was expected; name a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.ENOENT: "check the path",
    errno.EEXIST: "remove it, or choose another path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.ELOOP: "the path leads through a loop of symlinks; check the path",
}


def _os_error_message(exc: OSError) -> str:
    """``Permission denied: /out/a.png. Note: ...`` from an OSError: what the system said, the
    paths it names, and what usually fixes it."""
    what = exc.strerror or str(exc) or type(exc).__name__
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2)
             if isinstance(p, (str, bytes, os.PathLike))]
    where = f": {' -> '.join(paths)}" if paths else ""
    note = _OS_NOTES.get(exc.errno, "check the path, its permissions and the free space")
    return f"{what}{where}. Note: {note}."


def _encoding_message(exc: UnicodeEncodeError) -> str:
    bad = exc.object[exc.start:exc.start + 1]
    return (f"the output holds {bad!r}, which stdout's encoding ({exc.encoding}) cannot write. "
            "Note: run in a UTF-8 locale or set PYTHONIOENCODING=utf-8; --json output escapes "
            "such characters.")


def _decoding_message(exc: UnicodeDecodeError) -> str:
    bad = " ".join(f"0x{byte:02x}" for byte in bytes(exc.object[exc.start:exc.end][:8]))
    return (f"an input file is not {exc.encoding} text: {bad} at offset {exc.start} "
            f"({exc.reason}). Note: save it as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8 FILE > "
            f"NEW`); {DEBUG_VARIABLE}=1 shows where it was read.")


# Characters that move the cursor, change colours or reorder text when printed to a terminal:
# C0 and C1 controls (ESC starts a terminal command), DEL, and Unicode's line separators and
# bidirectional overrides (which make text display in another order than it reads).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                     "\u202a-\u202e\u2066-\u2069]")
# In JSON also lone surrogates (a file name that is not UTF-8): escaped, the output stays UTF-8.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                             "\u2066-\u2069\ud800-\udfff]")


def one_line(text: str) -> str:
    """``text`` as one line that is safe to print: line breaks become spaces, other control
    characters show as escapes, and it is cut at a bound.

    >>> one_line("No bundle at /x.\\n  Note: export one.\\x1b[31m")
    'No bundle at /x. Note: export one.\\\\x1b[31m'
    """
    text = re.sub(r"\s*[\r\n\x85\u2028\u2029]+\s*", " ", text).strip()
    text = terminal_safe(text.replace("\t", " "))
    return text if len(text) <= _MAX_LINE else text[:_MAX_LINE] + "..."


def terminal_safe(text: str, *, keep: str = "") -> str:
    """``text`` with the characters that would act on a terminal (see ``_UNSAFE``) written as
    Python escapes, but those in ``keep`` (e.g. "\\n"). For strings a bundle or a model gives,
    which someone else wrote."""
    def escape(match: re.Match) -> str:
        char = match.group()
        if char in keep:
            return char
        return ascii(char)[1:-1]

    return _UNSAFE.sub(escape, str(text))


def json_for_stdout(value, **kwargs) -> str:
    """JSON text of ``value`` for printing: the same data in every case, escaped as \\uXXXX where
    stdout cannot encode it (a non-UTF-8 locale) and where a terminal would act on it.

    >>> print(json_for_stdout({"label": "red\\x1b[31m\\u202e", "path": "x\\udcff"}))
    {"label": "red\\u001b[31m\\u202e", "path": "x\\udcff"}
    """
    text = json.dumps(value, ensure_ascii=not _stdout_encoding("utf-8"), **kwargs)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# --- stdout ------------------------------------------------------------------------------------
def _stdout_encoding(encoding: str | None) -> bool:
    """Whether ``encoding`` is stdout's (both normalized); for "utf-8", whether stdout writes
    any UTF encoding."""
    def name(value):
        try:
            return codecs.lookup(value or "").name
        except LookupError:
            return None

    mine = name(getattr(sys.stdout, "encoding", None))
    if mine is None:
        return False
    if name(encoding) == "utf-8":
        return mine.startswith("utf")
    return mine == name(encoding)


def _escape_unencodable_stdout():
    """Make a strict stdout write what it cannot encode as backslash escapes (``caf\\xe9``), as
    Python's own stderr does, so that a result in a non-UTF-8 locale (PYTHONIOENCODING=ascii) is
    readable instead of an error; JSON output escapes such characters itself. Returns what puts
    stdout back."""
    stream = sys.stdout
    if getattr(stream, "errors", None) != "strict" or not hasattr(stream, "reconfigure"):
        return lambda: None
    try:
        stream.reconfigure(errors="backslashreplace")
    except (OSError, ValueError):
        return lambda: None

    def restore():
        with contextlib.suppress(OSError, ValueError):
            stream.reconfigure(errors="strict")

    return restore


def _stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone away (its end reports an error
    to poll), as opposed to a BrokenPipeError from some other pipe. True when it cannot tell."""
    try:
        fd = sys.stdout.fileno()
        import select

        poller = select.poll()
    except (AttributeError, OSError, ValueError, ImportError):
        return True
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


# 128 + SIGPIPE: the status a shell reports for `cat` or `grep` stopped by a closed pipe, so
# scripts with `set -o pipefail` that already accept it for those accept it for edgeport too.
# (Python's documented recipe exits 1, which a script cannot tell from a real error.)
CLOSED_PIPE_STATUS = 141


def _quit_closed_pipe() -> int:
    """The reader of stdout went away (``edgeport run ... | head -1``): stop quietly, as
    command-line tools do. What is still buffered goes to /dev/null, so that the interpreter's
    last flush at exit does not raise again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return CLOSED_PIPE_STATUS


if __name__ == "__main__":
    sys.exit(main())
