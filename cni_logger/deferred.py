"""Import a package's submodules without running the package's own ``__init__``.

``import structlog`` runs ``structlog/__init__.py``, which imports the console renderer, the
standard-library bridge, ``asyncio`` (and through it ``ssl``, ``socket``, ``subprocess``...) and
more: most of a plugin process's start-up, for names the event pipeline never uses. The pipeline
needs only ``structlog._generic`` and what it imports.

For the packages in ``DEFERRED_INITS`` a meta-path finder hands the import system the real spec with
one change: the loader creates a placeholder package that has its ``__path__`` (so submodules import
as usual) but runs ``__init__`` only when something reads an attribute the package does not yet
hold. ``importlib.util.LazyLoader`` cannot do this: the import system itself reads ``__spec__`` right
after the import, which makes a LazyLoader module load for real.

The technique *fails safe*: any use of the package namespace (``from structlog import X``,
``structlog.get_logger``) runs the real ``__init__`` first, so nothing breaks; the saving is lost.
``tests/system/test_rooms.py`` watches which modules an ADD loads.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType as _ModuleType
    from typing import Any
else:
    _ModuleType = type(sys)  # types.ModuleType, without importing types

DEFERRED_INITS: frozenset[str] = frozenset({"structlog"})
"""Packages whose ``__init__`` runs on first attribute access instead of at import."""

_ModuleSpec = type(sys.__spec__)  # importlib.machinery.ModuleSpec, without importing importlib.machinery


class DeferredPackage(_ModuleType):
    """A package whose submodules import normally but whose ``__init__`` waits for first real use."""

    def __getattr__(self, attr: str) -> Any:
        loader = self.__dict__.get("_cni_logger_init_loader")
        if loader is None:
            raise AttributeError(attr)
        self.__class__ = _ModuleType  # type: ignore[assignment]  # __init__ may read its own attributes
        del self.__dict__["_cni_logger_init_loader"]
        loader.exec_module(self)
        return getattr(self, attr)


class _PackageLoader:
    def __init__(self, real: Any) -> None:
        self.real = real

    def create_module(self, spec: Any) -> Any:
        return DeferredPackage(spec.name)

    def exec_module(self, module: Any) -> None:
        module.__dict__["_cni_logger_init_loader"] = self.real


class DeferringFinder:
    """Meta-path finder: the real finders' spec, with a loader that defers the package's ``__init__``."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
        if name not in DEFERRED_INITS:
            return None
        for finder in sys.meta_path:
            if finder is DeferringFinder or not hasattr(finder, "find_spec"):
                continue
            real = finder.find_spec(name, path, target)
            if real is None:
                continue
            if real.loader is None or real.submodule_search_locations is None or not hasattr(real.loader,
                                                                                            "exec_module"):
                return None  # not an ordinary package: import it the ordinary way
            spec = _ModuleSpec(name, _PackageLoader(real.loader), origin=real.origin,  # type: ignore[arg-type]
                               is_package=True)
            spec.submodule_search_locations = real.submodule_search_locations
            spec.has_location = real.has_location
            spec.cached = real.cached
            return spec
        return None

    @staticmethod
    def invalidate_caches() -> None:
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent)."""
    if not any(finder is DeferringFinder for finder in sys.meta_path):
        sys.meta_path.insert(0, DeferringFinder)
