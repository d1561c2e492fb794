"""Named implementations registered by import: sources, encoders, decoders, baselines, data sets.

One helper for every "name → implementation" table of the project. A module registers its
implementations with a decorator at import; the registry imports its modality modules the
first time a name is looked up, so a slim install (no images, no ECG) still works.

Typical workflow::

    DECODERS = Registry("decoder architecture", "models.decoders_ecg", "models.decoders_image")

    @DECODERS.register("pointwise")
    class PointwiseJointDecoder(nn.Module): ...

    cls = DECODERS.get("pointwise")     # KeyError naming the known ones if absent
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


def import_optional(*modules: str) -> None:
    """Import each module for its registration side effect.

    A module that does not exist is skipped (a slim install may leave a modality out);
    a module that exists but fails to import raises, so real errors are never hidden.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


class Registry(Generic[T]):
    """A table of named implementations of one kind.

    Args:
        kind: what the names name, for messages (``"decoder architecture"``).
        modules: modules imported (if installed) before the first lookup; their import registers.
    """

    def __init__(self, kind: str, *modules: str):
        self.kind = kind
        self._modules = modules
        self._loaded = False
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated class or function as ``name``."""

        def deco(item: T) -> T:
            self.add(name, item)
            return item

        return deco

    def add(self, name: str, item: T) -> None:
        """Register ``item`` as ``name`` (a later registration of a name replaces the earlier)."""
        self._items[name] = item

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a throw-away implementation clean up with this)."""
        self._items.pop(name, None)

    def _load(self) -> None:
        if not self._loaded:
            import_optional(*self._modules)
            self._loaded = True

    def get(self, name: str) -> T:
        """The implementation registered as ``name``.

        Raises:
            KeyError: no such name; the message lists the known ones.
        """
        self._load()
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items
