"""Writes are atomic, `--overwrite` included: a run killed at any moment leaves the old bundle
(or variant) or the new one, loadable, and the next run clears what the killed one left. Writers
of one bundle are kept apart by a lock; reading a bundle writes nothing into it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime import Bundle, BundleBusyError, pipeline
from runtime import files as runtime_files
from runtime.files import writer_lock


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return Path(shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "bundle"))


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _beside(bundle: Path) -> list[str]:
    return sorted(p.name for p in bundle.parent.iterdir() if p.name.startswith(f".{bundle.name}."))


def _check_loadable(bundle: Path) -> Bundle:
    """Every variant of the bundle verifies (checksums, listed data) and runs."""
    loaded = Bundle.load(bundle)
    for variant, info in loaded.variants.items():
        for graph in info["files"]:
            loaded.graph_path(graph, variant)
    return loaded


def _quantize(bundle: Path, *, overwrite: bool) -> None:
    from calibration import variant_from_bundle

    variant_from_bundle(bundle, "dynamic-int8", overwrite=overwrite)


# --- reading writes nothing -------------------------------------------------------------------
def test_running_inspecting_and_comparing_write_nothing_into_the_bundle(bundle_copy, tmp_path):
    from calibration.compare import compare_variants

    _quantize(bundle_copy, overwrite=False)
    before = _listing(bundle_copy)
    pipeline(model=bundle_copy)("a fine day")
    Bundle.load(bundle_copy).summary()
    compare_variants(Bundle.load(bundle_copy), None, variants=["int8"], samples=4)
    assert _listing(bundle_copy) == before
    assert _beside(bundle_copy) == []


def test_quantize_leaves_nothing_in_the_bundle_but_its_variant(bundle_copy):
    before = set(_listing(bundle_copy))
    _quantize(bundle_copy, overwrite=False)
    added = set(_listing(bundle_copy)) - before
    assert added == {"onnx/model_int8.onnx", ".edgeport.lock"}
    assert _beside(bundle_copy) == []
    _quantize(bundle_copy, overwrite=True)
    assert set(_listing(bundle_copy)) - before == added  # the usual name again, no "-2"
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    assert manifest["variants"]["int8"]["files"] == {"model": "onnx/model_int8.onnx"}


# --- the writer lock --------------------------------------------------------------------------
def test_a_second_writer_is_told_the_bundle_is_busy(bundle_copy, monkeypatch):
    monkeypatch.setattr(runtime_files, "WRITER_WAIT", 0.2)
    with writer_lock(bundle_copy):
        with pytest.raises(BundleBusyError, match="busy"):
            _quantize(bundle_copy, overwrite=False)
    _quantize(bundle_copy, overwrite=False)  # free again
    assert "int8" in Bundle.load(bundle_copy).variants


def test_the_lock_file_is_never_followed_as_a_symlink(bundle_copy, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x")
    os.symlink(target, bundle_copy / ".edgeport.lock")
    with pytest.raises(Exception, match="writer lock"):
        with writer_lock(bundle_copy, wait=0):
            pass
    assert target.read_text() == "x"


# --- SIGKILL at every step of quantize --overwrite --------------------------------------------
_STEPS = ("replace", "rename", "link", "unlink")


def _forked(action, kill_at: int | None) -> tuple[bool, int]:
    """Run ``action`` in a forked child that SIGKILLs itself right after its ``kill_at``-th file
    step (os.replace, rename, link, unlink). Returns (killed, steps taken)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        count = [0]

        def hook(real):
            def step(*args, **kwargs):
                result = real(*args, **kwargs)
                count[0] += 1
                if count[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return result
            return step

        for name in _STEPS:
            setattr(os, name, hook(getattr(os, name)))
        code = 0
        try:
            action()
        except BaseException:  # noqa: BLE001 - reported through the exit code
            code = 3
        os.write(write, str(count[0]).encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        taken = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        assert os.WEXITSTATUS(status) == 0, "the child failed without being killed"
    return os.WIFSIGNALED(status), int(taken or 0)


def test_quantize_overwrite_killed_at_every_step_leaves_a_loadable_bundle(bundle_copy):
    _quantize(bundle_copy, overwrite=False)
    killed, steps = _forked(lambda: _quantize(bundle_copy, overwrite=True), kill_at=None)
    assert not killed and steps > 3
    for kill_at in range(1, steps + 1):
        killed, _ = _forked(lambda: _quantize(bundle_copy, overwrite=True), kill_at=kill_at)
        assert killed
        loaded = _check_loadable(bundle_copy)  # never a checksum failure, never a missing file
        assert "int8" in loaded.variants, kill_at
        pipeline(model=bundle_copy, variant="int8")("a fine day")
    _quantize(bundle_copy, overwrite=True)  # the next run clears what the killed ones left
    _check_loadable(bundle_copy)
    assert sorted(p.name for p in (bundle_copy / "onnx").iterdir()) == [
        "model.onnx", "model_int8.onnx"]
    assert not (bundle_copy / ".edgeport-pending.json").exists()
    assert _beside(bundle_copy) == []


def test_a_first_quantize_killed_at_every_step_leaves_no_half_variant(bundle_copy):
    killed, steps = _forked(lambda: _quantize(bundle_copy, overwrite=False), kill_at=None)
    assert not killed
    _quantize_undo(bundle_copy)
    for kill_at in range(1, steps + 1):
        _forked(lambda: _quantize(bundle_copy, overwrite=True), kill_at=kill_at)
        _check_loadable(bundle_copy)
        _quantize_undo(bundle_copy)


def _quantize_undo(bundle: Path) -> None:
    """Drop the int8 variant from the manifest, as a bundle that never had it (its files
    become leftovers that the next writer must not trip on)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    info = manifest["variants"].pop("int8", None)
    if info:
        for relative in info["files"].values():
            manifest["checksums"].pop(relative, None)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


# --- SIGKILL during export --overwrite --------------------------------------------------------
_EXPORT = textwrap.dedent("""
    import os, signal, sys
    import runtime.bundle as bundle_module
    from exporter import bundle_from_checkpoint

    moment = sys.argv[3]
    real = bundle_module.exchange

    def exchange(a, b):
        if moment == "before-swap":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(a, b)
        if moment == "after-swap":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    bundle_module.exchange = exchange
    bundle_from_checkpoint(sys.argv[1], sys.argv[2], task="text-classification", overwrite=True)
""")


def test_export_overwrite_killed_around_the_swap_leaves_old_or_new(bundle_copy, tiny_checkpoint):
    checkpoint = tiny_checkpoint("bert", "text-classification")
    marker = "edgeport-test-marker"
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["source"]["marker"] = marker  # tells the old bundle from a new export
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    for moment, old_expected in (("before-swap", True), ("after-swap", False)):
        run = subprocess.run([sys.executable, "-c", _EXPORT, str(checkpoint), str(bundle_copy),
                              moment], env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
        loaded = _check_loadable(bundle_copy)
        assert (loaded.manifest["source"].get("marker") == marker) == old_expected, moment
        pipeline(model=bundle_copy)("a fine day")
    # What the killed runs left beside the bundle goes with the next write of it.
    assert _beside(bundle_copy)
    from runtime.bundle import staged_directory

    with staged_directory(bundle_copy, overwrite=True) as staging:
        shutil.copytree(bundle_copy, staging, dirs_exist_ok=True)
    assert _beside(bundle_copy) == []
    _check_loadable(bundle_copy)


def test_where_folders_cannot_be_swapped_a_killed_replace_is_recovered(bundle_copy,
                                                                       monkeypatch):
    """Without renameat2 (another OS), the old bundle is moved aside, then the new one moved in;
    a run killed between the two leaves the old one aside, and the next write puts it back."""
    import runtime.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "exchange", lambda a, b: False)

    def replace():
        with bundle_module.staged_directory(bundle_copy, overwrite=True) as staging:
            shutil.copytree(bundle_copy, staging, dirs_exist_ok=True)

    killed, steps = _forked(replace, kill_at=None)
    assert not killed
    for kill_at in range(1, steps + 1):
        _forked(replace, kill_at=kill_at)
        if not bundle_copy.exists():
            bundle_module._recover_moved_aside(bundle_copy.absolute())
        _check_loadable(bundle_copy)
    replace()
    assert _beside(bundle_copy) == []


def test_two_quantize_runs_on_one_bundle_at_once_both_finish(bundle_copy):
    """Each works in its own scratch folder; the lock puts their writes one after the other."""
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _quantize(bundle_copy, overwrite=True)
            except BaseException:  # noqa: BLE001 - reported through the exit code
                code = 3
            os._exit(code)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    _check_loadable(bundle_copy)
    assert sorted(p.name for p in (bundle_copy / "onnx").iterdir()) == [
        "model.onnx", "model_int8.onnx"]
    assert _beside(bundle_copy) == []


def test_compare_with_reports_elsewhere_leaves_the_bundle_untouched(bundle_copy, tmp_path,
                                                                   capsys):
    from runtime.cli import main as edgeport

    _quantize(bundle_copy, overwrite=False)
    before = _listing(bundle_copy)
    out = tmp_path / "reports-out"
    assert edgeport(["compare", str(bundle_copy), "--samples", "4", "--no-layers",
                     "--reports", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.html", "accuracy.json",
                                                     "accuracy.md"]
    assert _listing(bundle_copy) == before
    assert "recorded in manifest.json" not in capsys.readouterr().err


def test_quantize_works_where_only_the_bundle_folder_is_writable(bundle_copy, monkeypatch):
    """(Tests run as root, whom permissions do not stop: the refusal is simulated.)"""
    from calibration import variants

    real = variants.scratch_beside

    def beside(target, kind):
        if Path(target).absolute() == bundle_copy.absolute():
            raise PermissionError(13, "Permission denied", str(Path(target).parent))
        return real(target, kind)

    monkeypatch.setattr(variants, "scratch_beside", beside)
    _quantize(bundle_copy, overwrite=False)
    _check_loadable(bundle_copy)
    assert _beside(bundle_copy) == []
