"""What the tests that start the REAL tritonserver (bundled in nvidia-pytriton) share: why it
cannot run here, and a numpy 1.x folder for its Python backend stub. The ``stub_numpy``
fixture (tests/serving/conftest.py) uses ``numpy1_folder``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def runnable() -> str | None:
    """None when the bundled tritonserver can run on this machine, else the reason."""
    try:
        from serving import launch

        launch.check_platform()
        launch.distribution()
    except Exception as error:  # noqa: BLE001 - the reason to skip
        return str(error)
    return None


def numpy1_folder(folder: Path) -> str | None:
    """Install numpy 1.x into ``folder`` for the backend stub (see
    serving.launch.numpy_for_stub); the error's tail when pip cannot."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(folder), "numpy<2"], capture_output=True)
    return done.stderr.decode(errors="replace")[-300:] if done.returncode else None


def needs_numpy1() -> bool:
    from serving import launch

    return (int(np.__version__.split(".")[0]) >= 2
            and not os.environ.get(launch.NUMPY1_VARIABLE))


def close(a, b) -> bool:
    """Two JSON results equal, floats within 1e-4 (absolute and relative)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y)
                                                                for x, y in zip(a, b))
    if isinstance(a, float):
        return isinstance(b, (int, float)) and abs(a - b) <= 1e-4 + 1e-4 * abs(b)
    return a == b


def png_photos(count: int = 2) -> list[bytes]:
    """The first ``count`` real photos (tests/support/images.py) as PNG files' bytes."""
    import io

    from images import photos

    out = []
    for photo in photos()[:count]:
        stream = io.BytesIO()
        photo.save(stream, format="PNG")
        out.append(stream.getvalue())
    return out


def skip_unless_runnable() -> None:
    """Skip the calling test (or fixture) with the reason the bundled server cannot run."""
    import pytest

    reason = runnable()
    if reason:
        pytest.skip(f"the bundled tritonserver cannot run here: {reason}")


def add_models(repo: Path, written: Path) -> list[Path]:
    """Move every model of the repository ``written`` into ``repo``; the moved folders."""
    import shutil

    moved = []
    for model in sorted(written.iterdir()):
        shutil.move(model, repo / model.name)
        moved.append(repo / model.name)
    return moved


def served(repo: Path):
    """A module fixture's body: the real server on ``repo``, stopped (and checked stopped)
    when the module is done."""
    from serving import launch

    running = launch.Server(repo).start()
    yield running
    running.stop()
    assert running.process.poll() is not None
