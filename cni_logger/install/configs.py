"""Reading the conf dir strictly: as Go's decoder parses JSON and as libcni picks and classifies files.

Strict, because the installer rewrites what it reads: a file a runtime would read differently from
Python (duplicate keys, NaN, invalid UTF-8) is never rewritten on a guess.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from cni_logger import jsonio
from cni_logger.install import Refusal
from cni_logger.install.runtimes import Runtime

MAX_DEPTH = 64
"""Deeper configs are not rewritten (real ones nest a few levels). Python's parser stops near 1000 levels,
Go's near 10000, and the installer's own steps (copying, comparing, writing) recurse too: a bound far
below all of them makes "too deep" one clear refusal instead of a crash at whichever step hits it first."""


class ConfigFile:
    """One file in the conf dir, read once: its bytes, its parse, and why it is not usable (if it is not).

    ``unparsable``: the bytes are not JSON (or not UTF-8), possibly a half-written file. ``ambiguous``: valid
    for a runtime but not rewritable without guessing (duplicate keys, a symlink).
    """

    __slots__ = ("ambiguous", "data", "doc", "path", "problem", "stat", "unparsable")

    def __init__(self, path: str, data: bytes, stat: os.stat_result, *, problem: str | None = None,
                 ambiguous: bool = False) -> None:
        self.path, self.data, self.stat = path, data, stat
        self.doc: Any = None
        self.problem, self.ambiguous = problem, ambiguous
        self.unparsable = False

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def is_list(self) -> bool:
        return self.path.endswith(".conflist")

    @property
    def network(self) -> str | None:
        name = self.doc.get("name") if isinstance(self.doc, dict) else None
        return name if isinstance(name, str) else None

    def changed(self) -> bool:
        """Whether the file on disk is no longer what was read (another writer got in between)."""
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return True
        return (now.st_ino, now.st_size, now.st_mtime_ns) != (
            self.stat.st_ino, self.stat.st_size, self.stat.st_mtime_ns)


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether arrays and objects in ``doc`` nest more than ``limit`` levels (without recursing itself)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def _valid_plugin(plugin: Any) -> bool:
    return isinstance(plugin, dict) and isinstance(plugin.get("type"), str) and bool(plugin["type"])


def read_config(path: str) -> ConfigFile:
    """Read and classify one file the way libcni would load it (by extension: list or single config)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ConfigFile(path, b"", st, problem="is a symbolic link (not modified: write its target instead)",
                          ambiguous=True)
    if not stat.S_ISREG(st.st_mode):
        return ConfigFile(path, b"", st, problem="is not a regular file")
    with open(path, "rb") as f:
        data = f.read()
    return classify(path, data, st)


def classify(path: str, data: bytes, st: os.stat_result) -> ConfigFile:
    """``data`` read as libcni would read it at ``path``: also for content only planned, not yet written."""
    cfg = ConfigFile(path, data, st)
    try:
        cfg.doc = jsonio.loads_bytes(data, unique_keys=True)
    except jsonio.DuplicateKeyError as exc:
        cfg.problem, cfg.ambiguous = f"has a {exc} (Go keeps the last one; refusing to guess)", True
        return cfg
    except RecursionError:
        cfg.doc = None
        cfg.problem, cfg.ambiguous = f"is nested more than {MAX_DEPTH} levels deep (not rewritten)", True
        return cfg
    except ValueError as exc:
        cfg.problem, cfg.unparsable = f"is not valid JSON ({exc})", True
        return cfg
    doc = cfg.doc
    if _deeper_than(doc, MAX_DEPTH):
        cfg.doc = None
        cfg.problem, cfg.ambiguous = f"is nested more than {MAX_DEPTH} levels deep (not rewritten)", True
    elif not isinstance(doc, dict):
        cfg.problem = "is not a JSON object"
    elif "cniVersion" in doc and not isinstance(doc["cniVersion"], str):
        cfg.problem = "has a cniVersion that is not a string"
    elif cfg.is_list:
        plugins = doc.get("plugins")
        if not isinstance(plugins, list):
            cfg.problem = "is a .conflist without a 'plugins' list"
        elif not plugins:
            cfg.problem = "is a .conflist with no plugins"
        elif not all(_valid_plugin(p) for p in plugins):
            cfg.problem = "has a plugin entry that is not an object with a 'type'"
        elif not isinstance(doc.get("name"), str) or not doc["name"]:
            cfg.problem = "is a .conflist without a network 'name'"
    elif not _valid_plugin(doc):
        cfg.problem = "has no 'type' (a plugin list must be named .conflist)"
    return cfg


def order(name: str) -> bytes:
    """The runtimes' order of file names: Go compares their bytes (a name that is not UTF-8 is kept by
    ``os.listdir`` as surrogate escapes, whose code points would sort differently from its bytes)."""
    return os.fsencode(name)


def scan(conf_dir: str, runtime: Runtime) -> list[ConfigFile]:
    """The files the runtime would consider, in its (lexicographic) order."""
    try:
        names = sorted(os.listdir(conf_dir), key=order)
    except FileNotFoundError:
        raise Refusal(f"{conf_dir} does not exist (is this the runtime's CNI conf dir? see --conf-dir)") from None
    found = []
    for name in names:
        if not name.endswith(runtime.extensions):
            continue
        path = os.path.join(conf_dir, name)
        if os.path.isdir(path):
            continue  # libcni's ConfFiles skips directories
        try:
            found.append(read_config(path))
        except FileNotFoundError:
            continue  # removed while we listed: the runtime will not see it either
        except OSError as exc:
            raise Refusal(f"cannot read {path}: {exc}") from exc
    return found
