"""Start the tritonserver bundled in nvidia-pytriton on a model repository, the way PyTriton
starts it: a backend folder holding the wheel's Python backend with the stub built for the
running Python (``python_backend_stubs/3.X``) placed in ``backends/python/``, the wheel's
libraries (``nvidia_pytriton.libs``) on LD_LIBRARY_PATH, ``--model-control-mode explicit
--load-model '*'``. The stub embeds libpython: this interpreter's library folder goes first on
LD_LIBRARY_PATH, its bin folder first on PATH (as PyTriton does), and its ``sys.path`` on
PYTHONPATH, so the Python backend's models import this environment's ``runtime`` and numpy.

The server runs in its own process group (session); ``stop`` ends the group: no orphans.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from runtime.errors import EdgeportError, InputError, MissingDependencyError

_INSTALL = "Note: install the serve extra with `pip install 'edgeport[serve]'`."


class ServerError(EdgeportError):
    """The bundled tritonserver cannot run here, or did not come up."""


def distribution() -> tuple[Path, Path]:
    """(pytriton's tritonserver folder, the wheel's bundled libraries folder)."""
    try:
        import pytriton
    except ImportError:
        raise MissingDependencyError(
            f"`edgeport serve` needs nvidia-pytriton (its bundled tritonserver). {_INSTALL}"
        ) from None
    root = Path(pytriton.__file__).resolve().parent
    server = root / "tritonserver"
    libs = root.parent / "nvidia_pytriton.libs"
    if not (server / "bin" / "tritonserver").is_file():
        raise MissingDependencyError(f"nvidia-pytriton at {root} has no tritonserver binary. "
                                     f"{_INSTALL}")
    return server, libs


def check_platform() -> None:
    """A ServerError when the wheel's tritonserver cannot run on this machine."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        raise ServerError(
            f"The bundled tritonserver runs on Linux x86-64 or aarch64, not {sys.platform} "
            f"{platform.machine()}. Note: write a repository with `edgeport triton` and serve "
            "it from NVIDIA's Triton container.")
    libc, version = platform.libc_ver()
    if libc == "glibc" and version:
        if tuple(int(part) for part in version.split(".")[:2]) < (2, 35):
            raise ServerError(
                f"The bundled tritonserver needs glibc 2.35 or later; this machine has {version}. "
                "Note: use a newer distribution (Ubuntu 22.04+), or NVIDIA's Triton container "
                "with a repository from `edgeport triton`.")


def check_port(port: int, what: str) -> None:
    if not isinstance(port, int) or not 0 < port < 65536:
        raise InputError(f"{what} must be a port number (1-65535), got {port!r}.")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            raise InputError(f"{what} {port} is taken: another program listens on it. Note: "
                             f"pick another port with {what}.") from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def backend_directory(server: Path, into: Path) -> Path:
    """A copy of the wheel's backends folder with this Python's stub in backends/python/."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no Python backend stub for Python {version}. "
                          "Note: use a Python it supports (3.8-3.13).")
    backends = into / "backends"
    shutil.copytree(server / "backends", backends,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
    return backends


NUMPY1_VARIABLE = "EDGEPORT_TRITON_NUMPY"


def numpy_for_stub() -> list[str]:
    """Folders to put before ``sys.path`` for the backend stub: the wheel's stub (pybind11) was
    built against numpy 1.x and misreads numpy 2 arrays (BYTES inputs fail to decode), so where
    this environment has numpy 2, a folder holding numpy 1.x (``$EDGEPORT_TRITON_NUMPY``) goes
    first. The runtime runs on either."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return []
    folder = os.environ.get(NUMPY1_VARIABLE)
    if not folder or not (Path(folder) / "numpy" / "__init__.py").is_file():
        raise ServerError(
            f"The bundled Triton Python backend needs numpy 1.x; this environment has numpy "
            f"{numpy.__version__}. Note: install 'numpy<2' here (nvidia-pytriton asks for it), "
            f"or `pip install --no-deps --target DIR 'numpy<2'` and set {NUMPY1_VARIABLE}=DIR.")
    return [str(Path(folder).absolute())]


def python_environment(into: Path) -> Path:
    """A virtual environment for the backend stub, the way PyTriton makes the stub use this
    interpreter's environment: the stub embeds libpython, which finds its ``sys.path`` from the
    ``python3`` first on PATH (PYTHONPATH is not read). Its ``site-packages`` holds only a
    ``.pth`` listing the numpy 1.x folder (when needed), the current folder and this
    interpreter's ``sys.path``, then adding this interpreter's site folders as site folders
    (their .pth files run: an editable install's finder), so the backend imports this
    environment's ``runtime`` from whatever folder the server was started in."""
    env = into / "python-env"
    (env / "bin").mkdir(parents=True)
    base = Path(getattr(sys, "_base_executable", sys.executable))
    home = Path(sysconfig.get_config_var("BINDIR") or base.parent)
    for name in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        os.symlink(base, env / "bin" / name)
    (env / "pyvenv.cfg").write_text(
        f"home = {home}\ninclude-system-site-packages = false\n"
        f"version = {sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}\n")
    site = env / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    site.mkdir(parents=True)
    stdlib = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    entries = [*numpy_for_stub(), os.getcwd()]
    entries += [p for p in sys.path if p and Path(p).is_dir() and p not in stdlib]
    # this environment's site folders as site folders, so that their own .pth files run too:
    # an editable install (`pip install -e`) puts edgeport's packages on the path only there
    import site as site_module

    folders = [*site_module.getsitepackages(), site_module.getusersitepackages()]
    lines = [f"{entry}\n" for entry in dict.fromkeys(entries)]
    lines += [f"import site; site.addsitedir({folder!r})\n" for folder in folders
              if Path(folder).is_dir()]
    (site / "edgeport-serve.pth").write_text("".join(lines))
    return env


def environment(libs: Path, python_env: Path) -> dict:
    env = os.environ.copy()
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [p for p in (libdir, str(libs), env.get("LD_LIBRARY_PATH", "")) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
    env["PATH"] = os.pathsep.join([str(python_env / "bin"), env.get("PATH", "")])
    for name in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


class Server:
    """A running tritonserver on ``repo``; ``stop()`` (or leaving the ``with``) ends it."""

    def __init__(self, repo, *, http_port: int | None = None, grpc_port: int | None = None,
                 metrics_port: int | None = None, log=None):
        self.repo = Path(repo).absolute()
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.log = log
        self.process: subprocess.Popen | None = None
        self._scratch: Path | None = None

    def start(self, timeout: float = 120.0) -> Server:
        check_platform()
        server, libs = distribution()
        numpy_for_stub()
        for port, flag in ((self.http_port, "--http-port"), (self.grpc_port, "--grpc-port"),
                           (self.metrics_port, "--metrics-port")):
            check_port(port, flag)
        self._scratch = Path(tempfile.mkdtemp(prefix="edgeport-triton-"))
        backends = backend_directory(server, self._scratch)
        log_path = self._scratch / "tritonserver.log"
        command = [str(server / "bin" / "tritonserver"),
                   f"--model-repository={self.repo}",
                   f"--backend-directory={backends}",
                   f"--cache-directory={server / 'caches'}",
                   "--model-control-mode=explicit", "--load-model=*",
                   f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
                   f"--metrics-port={self.metrics_port}", "--exit-on-error=true",
                   "--strict-readiness=true"]
        self._log_file = self.log if self.log is not None else open(log_path, "wb")  # noqa: SIM115
        self.log_path = log_path
        env = environment(libs, python_environment(self._scratch))
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self._log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise ServerError(f"tritonserver exited (status {self.process.returncode}) "
                                  f"before it was ready: {tail}")
            if self.ready():
                return self
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s: {tail}")

    def log_tail(self, lines: int = 8) -> str:
        if self.log is not None:
            return "(log on the given stream)"
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``timeout``; then clean up."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process is not None:  # stubs left in the group (the server crashed): end them too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.log is None and getattr(self, "_log_file", None) is not None:
            self._log_file.close()
            self._log_file = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
