"""The ``edgeport`` command (``command.main``) and the subcommands the runtime owns: ``run``,
``inspect``, ``bench`` (with ``timing`` and ``bench_inputs``) and ``build``. ``command`` finds
every subcommand by module name at call time, so the runtime never imports ``exporter`` or
``calibration``.

The top of the house: may import every other part of the runtime.
"""

from .command import main

__all__ = ["main"]
