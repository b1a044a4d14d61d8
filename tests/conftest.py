"""Test-session hooks and fixtures every test directory can use.

The shared helpers themselves live in the importable package ``tests.harness``; this file only wires them
into pytest: ``--run-slow``, ``--plugin-from``, the relocatable ``bundle`` and the ``cni_logger_cli`` of the
runtime tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cni_logger.filesink import DROPPED_DIR
from tests.harness import plugin
from tests.harness.bundle import Bundle, bundle, unpack  # noqa: F401  (``bundle``: a fixture for every test)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run long reliability and fuzz runs")
    parser.addoption("--plugin-from", choices=("venv", "bundle", "shim"), default="venv",
                     help="which build the tests that run the plugin as a process use (the runtime tests "
                          "always use the bundle); shim: thick mode's shim, its agent in an `install --watch "
                          "--agent` of the venv [venv]")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long run: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _lost_events_counted_here() -> Iterator[None]:
    """The plugin counts every event it could not write in /run/cni-logger/dropped (cni_logger.dropped), per log
    path: the counts for the temporary paths (and devices) a test made it fail on are removed after the test."""
    before = _dropped_counts()
    yield
    for name in _dropped_counts() - before:
        if name.startswith(("%2Ftmp%2F", "%2Fdev%2F")):
            (Path(DROPPED_DIR) / name).unlink(missing_ok=True)


def _dropped_counts() -> set[str]:
    try:
        return set(os.listdir(DROPPED_DIR))
    except OSError:  # none yet, or not ours to read (an unprivileged run)
        return set()


@pytest.fixture(scope="session")
def cni_logger_cli(request: pytest.FixtureRequest) -> Path:
    """The ``cni-logger`` command of the runtime tests (cnitool, Podman, containerd): they install and
    query with it, and the plugin the runtimes execute is the launcher its ``launcher``/``install`` write.
    It is the relocatable bundle's ``bin/cni-logger`` (built, or reused from the cache, once per session;
    needs root), so those tests prove the bundle. CNI_LOGGER_CLI names another install's ``cni-logger``."""
    override = os.environ.get("CNI_LOGGER_CLI")
    if override:
        path = Path(override).absolute()
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"CNI_LOGGER_CLI={override} is not an executable file", pytrace=False)
        return path
    built: Bundle = request.getfixturevalue("bundle")
    return built.cli


@pytest.fixture(scope="session", autouse=True)
def _plugin_from(request: pytest.FixtureRequest) -> Iterator[None]:
    """``--plugin-from=bundle``: plugin_executable() is a launcher of the bundle, unpacked into a
    world-traversable directory (the session's copy lives in pytest's private temporary directory).
    Either way, the directories made for the plugin are removed when the session ends."""
    if request.config.getoption("--plugin-from") == "bundle" and not os.environ.get("CNI_LOGGER_BIN"):
        import tempfile

        built: Bundle = request.getfixturevalue("bundle")
        public = Path(tempfile.mkdtemp(prefix="cni-logger-test-bundle-", dir="/tmp"))
        plugin.PUBLIC_DIRS.append(public)
        public.chmod(0o755)
        plugin.use_launcher_of(unpack(built.tarball, public) / "bin" / "cni-logger")
    node = None
    if request.config.getoption("--plugin-from") == "shim" and not os.environ.get("CNI_LOGGER_BIN"):
        import tempfile

        from tests.harness.shim import built as built_shim
        from tests.harness.thick import ThickNode

        public = Path(tempfile.mkdtemp(prefix="cni-logger-test-thick-", dir="/tmp"))
        plugin.PUBLIC_DIRS.append(public)
        public.chmod(0o755)
        node = ThickNode(public, built_shim())
        node.start()
        plugin.use_executable(node.plugin)
    yield
    if node is not None:
        node.stop()
    for directory in plugin.PUBLIC_DIRS:
        shutil.rmtree(directory, ignore_errors=True)


def _clear_immutable(root: Path) -> None:
    """Undo ``chattr +i`` below ``root`` (the reliability tests make directories immutable): rmtree cannot."""
    if shutil.which("chattr"):
        for path in [root, *root.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                subprocess.run(["chattr", "-i", str(path)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory under /tmp (not the 0700 pytest tree) that the user ``nobody`` can traverse."""
    path = Path(tempfile.mkdtemp(prefix="cni-logger-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        _clear_immutable(path)
        shutil.rmtree(path, ignore_errors=True)
