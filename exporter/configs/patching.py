"""Export-time patches: a model function swapped for a traceable one while a graph is traced.

A patch replaces one attribute of one class (or module) inside a ``with`` block and puts the
original back on the way out, also when the trace raises. Patches nest: each restores what it
found, so applying a set twice is harmless.

>>> import math
>>> patch = ExportPatch("exact_pi", math, "pi", 3.0)
>>> with patch.applied():
...     math.pi
3.0
>>> round(math.pi, 5)
3.14159
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from runtime.errors import ExportError


@dataclass(frozen=True)
class ExportPatch:
    """``owner.attribute`` is ``replacement`` inside ``applied()``; ``name`` says which patch."""

    name: str
    owner: Any  # a class or a module
    attribute: str
    replacement: Any

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        # __dict__, not getattr: a staticmethod or classmethod must come back as one.
        if self.attribute not in vars(self.owner):
            owner = getattr(self.owner, "__qualname__", None) or self.owner.__name__
            raise ExportError(
                f"Export patch {self.name!r} replaces {owner}.{self.attribute}, which the "
                "installed version of its library does not define. Note: the patches are "
                "written against the versions of the export extra (transformers < 4.58)."
            )
        original = vars(self.owner)[self.attribute]
        setattr(self.owner, self.attribute, self.replacement)
        try:
            yield
        finally:
            setattr(self.owner, self.attribute, original)


@contextlib.contextmanager
def applied(patches: Iterable[ExportPatch]) -> Iterator[None]:
    """All of ``patches`` applied, undone in reverse order on exit."""
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch.applied())
        yield
