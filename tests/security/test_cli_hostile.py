"""The edgeport command on hostile or malformed input: text that is not UTF-8, a reader that
closes the pipe, an --output-dir that is a file or holds planted symlinks, broken bundles, a
stdout that cannot encode the result, errors of the system. Whatever happens, stderr is one
line that starts with ``edgeport `` and never a traceback; a failure exits non-zero."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from runtime.cli import command as cli
from runtime.cli import main
from runtime.cli.run import printable
from runtime.errors import BundleError

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(err: str, command: str) -> str:
    """The one error line of ``err``, after checking it is one."""
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"edgeport {command}: "), err
    assert "\x1b" not in err, err
    return err


def edgeport_command() -> list[str]:
    """The installed console script (what users run), else the module."""
    script = Path(sys.executable).parent / "edgeport"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runtime.cli"]


def run_edgeport(args: list, *, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    environment = dict(os.environ, **(env or {}))
    environment.pop(cli.DEBUG_VARIABLE, None)
    return subprocess.run([*edgeport_command(), *args], capture_output=True, env=environment,
                          cwd=ROOT, timeout=300, **kwargs)


@pytest.fixture
def bert(tiny_bundle):
    return tiny_bundle("bert", "text-classification")


@pytest.fixture
def broken(bert, tmp_path):
    """broken(manifest) -> a copy of the tiny BERT bundle whose manifest.json is ``manifest``
    (a JSON value, or raw bytes)."""

    def make(manifest) -> Path:
        copy = shutil.copytree(bert, tmp_path / f"b{len(list(tmp_path.iterdir()))}")
        data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        (copy / "manifest.json").write_bytes(data)
        return copy

    return make


# --- text that is not UTF-8 ---------------------------------------------------------------------
def test_an_argument_that_is_not_utf8_is_one_clear_error(bert, capsys):
    # what the OS gives Python for `edgeport run B ok $'\xff'`: the byte as a lone surrogate
    assert main(["run", str(bert), "ok", "\udcff"]) == 1
    err = one_line_error(capsys.readouterr().err, "run")
    assert "INPUT argument 2 is not valid UTF-8 text: byte 0xff at character 1" in err
    assert "Note:" in err


def test_an_argument_that_is_not_utf8_from_the_shell(bert):
    proc = run_edgeport(["run", str(bert), b"caf\xe9"])
    assert proc.returncode == 1
    err = one_line_error(proc.stderr.decode(), "run")
    assert "byte 0xe9 at character 4" in err and proc.stdout == b""


def test_a_stdin_line_that_is_not_utf8_is_one_clear_error(bert, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fine\n\nab\xffcd\n")))
    assert main(["run", str(bert)]) == 1
    err = one_line_error(capsys.readouterr().err, "run")
    assert "Line 3 of stdin is not valid UTF-8 text: byte 0xff at character 3" in err


def test_stdin_lines_are_read_as_bytes(bert, monkeypatch, capsys):
    # a UTF-8 mark and Windows line ends, as a file saved by a Windows editor has
    stdin = io.TextIOWrapper(io.BytesIO("\ufeffcafé\r\n\r\nsecond\r\n".encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["run", str(bert)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "café" and out[2] == "second"


@pytest.mark.parametrize("flags", [["--set", 'top_k="\udcff"'], ["--context", "x\udcff"]])
def test_options_that_are_not_utf8_are_refused(flags, bert, capsys):
    assert main(["run", str(bert), "ok", *flags]) == 1
    assert "is not valid UTF-8 text" in one_line_error(capsys.readouterr().err, "run")


def test_bench_input_that_is_not_utf8_is_refused(bert, capsys):
    assert main(["bench", str(bert), "--input", "ok", "\udcff", "--cold-starts", "0"]) == 1
    err = one_line_error(capsys.readouterr().err, "bench")
    assert "--input 2 is not valid UTF-8 text" in err


# --- a reader that goes away ------------------------------------------------------------------
def test_a_closed_pipe_ends_quietly(bert, tmp_path):
    """`edgeport run B < lines | head -c1`: the reader stops after one byte; edgeport stops
    quietly with the status a shell gives `cat` in that place (128 + SIGPIPE)."""
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line {n}\n" for n in range(3000)))  # ~200 kB of results
    environment = dict(os.environ)
    environment.pop(cli.DEBUG_VARIABLE, None)
    with open(lines, "rb") as stdin:
        proc = subprocess.Popen([*edgeport_command(), "run", str(bert)], stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                env=environment)
        assert proc.stdout.read(1) == b"l"
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        status = proc.wait(timeout=300)
    assert status == cli.CLOSED_PIPE_STATUS == 141
    assert err == ""


def test_a_broken_pipe_that_is_not_stdout_is_an_error(tmp_path):
    # stdout is a live file here, so the BrokenPipeError came from somewhere else: say so
    script = (
        "import sys, types\n"
        "from runtime.cli import command as cli\n"
        "def boom(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "cli._load = lambda command: types.SimpleNamespace(add_arguments=lambda p: None,"
        " main=boom)\n"
        "sys.exit(cli.main(['inspect']))\n")
    with open(tmp_path / "out.txt", "wb") as out:
        proc = subprocess.run([sys.executable, "-c", script], stdout=out, stderr=subprocess.PIPE,
                              cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert "Broken pipe" in one_line_error(proc.stderr.decode(), "inspect")


# --- stdout that cannot encode the result -------------------------------------------------------
def test_an_ascii_stdout_gets_escapes_not_an_error(bert):
    proc = run_edgeport(["run", str(bert), "café ☃"], env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    assert proc.stdout.decode("ascii").startswith("caf\\xe9 \\u2603\n")
    proc = run_edgeport(["run", str(bert), "café ☃", "x", "--json"],
                        env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    assert len(json.loads(proc.stdout.decode("ascii"))) == 2


def test_a_stdout_that_cannot_write_the_output_is_one_line(bert):
    # an errors handler the user chose (not 'strict') is left alone; what it cannot write is
    # one error line
    proc = run_edgeport(["run", str(bert), "café"],
                        env={"PYTHONIOENCODING": "ascii:surrogateescape"})
    assert proc.returncode == 1
    err = one_line_error(proc.stderr.decode(), "run")
    assert "stdout's encoding (ascii) cannot write" in err and "Note:" in err


def test_inspect_on_an_ascii_stdout(bert, tmp_path):
    bundle = shutil.copytree(bert, tmp_path / "bündle")
    proc = run_edgeport(["inspect", str(bundle)], env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0 and proc.stderr == b""
    assert "b\\xfcndle" in proc.stdout.decode("ascii")
    proc = run_edgeport(["inspect", str(bundle), "--json"], env={"PYTHONIOENCODING": "ascii"})
    assert json.loads(proc.stdout.decode("ascii"))["path"] == str(bundle)


# --- --output-dir ----------------------------------------------------------------------------
def test_output_dir_that_is_a_file(bert, tmp_path, capsys):
    existing = tmp_path / "a-file"
    existing.write_text("keep me")
    assert main(["run", str(bert), "x", "--output-dir", str(existing)]) == 1
    assert "is a file, not a folder" in one_line_error(capsys.readouterr().err, "run")
    assert existing.read_text() == "keep me"
    assert main(["run", str(bert), "x", "--output-dir", str(existing / "sub")]) == 1
    assert "--output-dir" in one_line_error(capsys.readouterr().err, "run")


def test_output_dir_ignores_planted_symlinks(tiny_bundle, tmp_path, capsys):
    """The masks are written through random temp names: a symlink planted at the name the
    writer once used (``.NAME.tmp``), or at the final name, never leads the write elsewhere."""
    from images import photos

    photo = tmp_path / "coffee.png"
    photos()[1].save(photo)
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    for n in range(8):
        (out / f".0-coffee-mask-{n}.png.tmp").symlink_to(target)
    (out / "0-coffee-mask-0.png").symlink_to(target)
    segformer = tiny_bundle("segformer", "image-segmentation")
    assert main(["run", str(segformer), str(photo), "--json", "--output-dir", str(out)]) == 0
    masks = [Path(s["mask"]) for s in json.loads(capsys.readouterr().out)]
    assert masks and all(m.parent == out and m.is_file() and not m.is_symlink() for m in masks)
    assert target.read_text() == "precious"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_saved_file_names_cannot_leave_the_folder(tmp_path):
    # a key of a result (a label, say) and the input's name become part of the file name
    result = {"../../escape": np.zeros((2, 2), np.float32),
              "a/b": [np.ones(3, np.float32)], "\x1b[2J": np.zeros(1, np.uint8)}
    paths = printable(result, tmp_path, "0-../../../etc/passwd")
    files = [Path(paths["../../escape"]), Path(paths["a/b"][0]), Path(paths["\x1b[2J"])]
    assert all(f.parent == tmp_path and f.is_file() for f in files)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+\.npy", f.name) for f in files), files
    assert np.load(files[1]).tolist() == [1.0, 1.0, 1.0]


# --- broken bundles ------------------------------------------------------------------------
COMMANDS = {
    "run": ["x"], "inspect": [], "bench": ["--cold-starts", "0"], "build": [],
    "quantize": ["--recipe", "dynamic-int8"], "compare": [],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", ["missing", "a file", "manifest a list", "manifest not json",
                                  "manifest not utf8"])
def test_broken_bundles_are_one_line(command, case, broken, tmp_path, capsys):
    if case == "missing":
        path = tmp_path / "no-such-bundle"
    elif case == "a file":
        path = tmp_path / "a-file"
        path.write_text("not a bundle")
    else:
        path = broken({"manifest a list": [], "manifest not json": b"{\"task\": ",
                       "manifest not utf8": b"{\"task\": \"\xff\"}"}[case])
    assert main([command, str(path), *COMMANDS[command]]) == 1
    err = one_line_error(capsys.readouterr().err, command)
    assert "error:" in err and "bug in edgeport" not in err


@pytest.mark.parametrize("command", ["run", "bench"])
def test_a_bundle_with_an_unknown_task(command, bert, broken, capsys):
    manifest = json.loads((bert / "manifest.json").read_text())
    path = broken(dict(manifest, task="no-such-task"))
    assert main([command, str(path), *COMMANDS[command]]) == 1
    err = one_line_error(capsys.readouterr().err, command)
    assert "no-such-task" in err


def test_inspect_shows_manifest_text_without_terminal_controls(bert, broken, capsys):
    manifest = json.loads((bert / "manifest.json").read_text())
    manifest["validation"] = {"max_abs_diff": {"logits\x1b[2J": "big"}, "passed": "yes",
                              "reference": "\x1b]0;title\x07pytorch", "atol": None}
    path = broken(dict(manifest, task="text-classification\u202e\x1b[31m\nfake line"))
    status = main(["inspect", str(path)])
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert not set(text) & {"\x1b", "\x07", "\u202e"}, text
    if status:  # a bundle layer that refuses such a manifest says so in one line
        one_line_error(captured.err, "inspect")
    else:
        assert "validation  FAILED" in captured.out and "fake line" not in captured.out.split(
            "\n")


def test_bench_json_report_path_is_checked_first(bert, tmp_path, capsys):
    assert main(["bench", str(bert), "--json", str(tmp_path)]) == 1
    assert "is a folder" in one_line_error(capsys.readouterr().err, "bench")
    (tmp_path / "file").write_text("")
    assert main(["bench", str(bert), "--json", str(tmp_path / "file" / "r.json")]) == 1
    assert "is not a folder" in one_line_error(capsys.readouterr().err, "bench")


# --- errors of the system, and bugs ---------------------------------------------------------
@pytest.fixture
def failing(monkeypatch):
    """failing(exception) -> the `inspect` subcommand replaced by one that raises it."""

    def install(exception: BaseException):
        def fail(args):
            raise exception

        module = types.SimpleNamespace(add_arguments=lambda parser: None, main=fail)
        monkeypatch.setattr(cli, "_load", lambda command: module)

    monkeypatch.delenv(cli.DEBUG_VARIABLE, raising=False)
    return install


@pytest.mark.parametrize("exception, expected", [
    (PermissionError(errno.EACCES, "Permission denied", "/out/a.png"),
     "Permission denied: /out/a.png. Note: this user may not use it"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/a.png"),
     "No space left on device: /out/a.png. Note: the disk is full"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp/x", None, "/out"),
     "Is a directory: /tmp/x -> /out. Note: a folder is where a file was expected"),
    (BundleError("two\nlines\r\n  of message\x1b[31m"), "two lines of message\\x1b[31m"),
    (UnicodeDecodeError("utf-8", b"ab\xff", 2, 3, "invalid start byte"),
     "an input file is not utf-8 text: 0xff at offset 2"),
])
def test_errors_are_one_line(exception, expected, failing, capsys):
    failing(exception)
    assert main(["inspect"]) == 1
    err = one_line_error(capsys.readouterr().err, "inspect")
    assert expected in err, err


def test_a_bug_is_one_line_that_says_so(failing, capsys, monkeypatch):
    failing(TypeError("unexpected\nthing"))
    assert main(["inspect"]) == 1
    err = one_line_error(capsys.readouterr().err, "inspect")
    assert "this is a bug in edgeport: TypeError: unexpected thing." in err
    assert "Note: run with EDGEPORT_DEBUG=1 for the traceback and report it." in err
    monkeypatch.setenv(cli.DEBUG_VARIABLE, "1")
    with pytest.raises(TypeError, match="unexpected"):
        main(["inspect"])


def test_an_error_line_is_bounded(failing, capsys):
    failing(BundleError("x" * 100_000))
    assert main(["inspect"]) == 1
    assert len(one_line_error(capsys.readouterr().err, "inspect")) < 2100


def test_usage_errors_are_argparse_s(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run"])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_closed_stderr_keeps_the_error_off_stdout(tmp_path):
    # started with `2>&-`: there is nowhere to tell, and stdout holds only results
    proc = run_edgeport(["inspect", str(tmp_path / "missing")], preexec_fn=lambda: os.close(2))
    assert proc.returncode == 1 and proc.stdout == b""


@pytest.mark.parametrize("module", ["runtime.cli.command", "runtime.cli.run"])
def test_examples_in_docstrings(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0
