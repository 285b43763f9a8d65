"""Fixtures of the tests that start the real tritonserver."""

from __future__ import annotations

import os

import pytest
from triton_server import needs_numpy1, numpy1_folder


@pytest.fixture(scope="session")
def stub_numpy(tmp_path_factory):
    """A folder holding numpy 1.x for the backend stub when this environment has numpy 2
    (see serving.launch.numpy_for_stub); installed with pip when not given."""
    if not needs_numpy1():
        yield
        return
    from serving import launch

    folder = tmp_path_factory.mktemp("numpy1")
    error = numpy1_folder(folder)
    if error:
        pytest.skip(f"the bundled Python backend needs numpy<2, and pip could not install it: "
                    f"{error}")
    os.environ[launch.NUMPY1_VARIABLE] = str(folder)
    yield
    os.environ.pop(launch.NUMPY1_VARIABLE, None)
