"""Defer standard-library modules that dependencies import but a plugin invocation never uses.

``import structlog`` loads ``asyncio`` (and through it ``ssl``, ``socket``, ``subprocess``...),
``dataclasses`` loads ``inspect``, and so on: about half of an ADD's wall time goes to modules whose
functions are never called in a one-shot plugin process. ``importlib.util.LazyLoader`` does not help,
because the import system itself reads ``module.__spec__`` right after the import, which makes a
LazyLoader module load for real.

Here a meta-path finder hands out placeholder modules for the names below. A placeholder answers the
import system's own attributes (``__spec__``, ``__name__``...) from its ``__dict__``; the first
access to anything else imports the real module and from then on the placeholder forwards to it.
So the technique *fails safe*: if a dependency starts using one of these modules, it simply loads
(the saving shrinks, nothing breaks), and a test watches which ones stay deferred.

Packages in ``DEFERRED_INITS`` are treated the same way one level down: their submodules import as
usual, but the package's own ``__init__`` (which for structlog imports its console renderer, the
standard-library bridge and asyncio) runs only when something reads an attribute of the package.
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

DEFERRED: frozenset[str] = frozenset({
    "asyncio", "ssl", "socket", "selectors", "subprocess", "signal", "inspect", "dis", "ast", "tokenize",
    "textwrap", "uuid", "platform", "base64", "queue", "concurrent.futures", "copy", "datetime", "linecache",
})
"""Imported by structlog / dataclasses / python-json-logger at import time, unused by the plugin."""
DEFERRED_INITS: frozenset[str] = frozenset({"structlog"})
"""Packages whose ``__init__`` runs on first attribute access instead of at import."""

_ModuleSpec = type(sys.__spec__)  # importlib.machinery.ModuleSpec, without importing importlib.machinery
_realizing: set[str] = set()


class DeferredModule(_ModuleType):
    """A module that imports its real self on first use of any attribute it does not hold."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(realize(self.__name__), attr)

    def __dir__(self) -> list[str]:
        return dir(realize(self.__name__))


def realize(name: str) -> Any:
    """Import the real module behind a placeholder, and make every later import see the real one."""
    placeholder = sys.modules.get(name)
    if not isinstance(placeholder, DeferredModule):
        return placeholder
    del sys.modules[name]
    _realizing.add(name)
    try:
        real = __import__(name, fromlist=["__name__"])
    finally:
        _realizing.discard(name)
    placeholder.__dict__.update(real.__dict__)
    placeholder.__class__ = _ModuleType  # type: ignore[assignment]  # now a plain snapshot; nothing is deferred any more
    return real


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


class _Loader:
    @staticmethod
    def create_module(spec: Any) -> Any:
        return DeferredModule(spec.name)

    @staticmethod
    def exec_module(module: Any) -> None:
        return None


class _PackageLoader:
    def __init__(self, real: Any) -> None:
        self.real = real

    def create_module(self, spec: Any) -> Any:
        return DeferredPackage(spec.name)

    def exec_module(self, module: Any) -> None:
        module.__dict__["_cni_logger_init_loader"] = self.real


def _package_spec(name: str, path: Sequence[str] | None, target: Any) -> Any:
    """The real finders' spec for ``name``, with a loader that defers the package's ``__init__``."""
    for finder in sys.meta_path:
        if finder is DeferringFinder or not hasattr(finder, "find_spec"):
            continue
        real = finder.find_spec(name, path, target)
        if real is None:
            continue
        if real.loader is None or real.submodule_search_locations is None or not hasattr(real.loader, "exec_module"):
            return None  # not an ordinary package: import it the ordinary way
        spec = _ModuleSpec(name, _PackageLoader(real.loader), origin=real.origin, is_package=True)  # type: ignore[arg-type]
        spec.submodule_search_locations = real.submodule_search_locations
        spec.has_location = real.has_location
        spec.cached = real.cached
        return spec
    return None


class DeferringFinder:
    """Meta-path finder that answers the deferred names with placeholders."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
        if name in DEFERRED_INITS:
            return _package_spec(name, path, target)
        if name not in DEFERRED or name in _realizing:
            return None
        return _ModuleSpec(name, _Loader, origin="deferred by cni-logger")  # type: ignore[arg-type]

    @staticmethod
    def invalidate_caches() -> None:
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent)."""
    if not any(finder is DeferringFinder for finder in sys.meta_path):
        sys.meta_path.insert(0, DeferringFinder)


def realized() -> list[str]:
    """Deferred names that have been loaded for real in this process."""
    return sorted(name for name in DEFERRED if name in sys.modules
                  and not isinstance(sys.modules[name], DeferredModule))
