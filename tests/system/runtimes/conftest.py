"""Fixtures for the integration tests: real runtimes (cnitool, Podman) in throw-away network namespaces.

Every test here is marked ``integration``. Tests that need root/cnitool/the installed plugin skip with the
reason (shown in the report header and with ``-rs``) instead of failing when the machine cannot run them.
Run: ``sudo .venv/bin/pytest -m integration -rs tests/system/runtimes``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cnitool import (
    CNITOOL,
    CniSandbox,
    Network,
    environment_problem,
    opened_sandbox,
    runtime_plugin,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config: pytest.Config) -> list[str]:
    problem = environment_problem()
    logger = os.environ.get("CNI_LOGGER_BIN") or os.environ.get("CNI_LOGGER_CLI") or "the bundle's cni-logger"
    return [
        f"cni-logger integration: cnitool={CNITOOL} logger={logger}",
        "cni-logger integration: " + (f"SKIPPING runtime tests: {problem}" if problem else "runtime tests enabled"),
    ]


def require_environment() -> None:
    problem = environment_problem()
    if problem:
        print(f"\nSKIP: {problem}", file=sys.stderr)
        pytest.skip(problem)


@pytest.fixture
def sandbox(tmp_path: Path, cni_logger_cli: Path) -> Iterator[CniSandbox]:
    """Namespaces + a CNI bin dir with ``logger``: a launcher written by the bundle's ``cni-logger``."""
    require_environment()
    plugin = runtime_plugin(cni_logger_cli)
    with opened_sandbox(tmp_path, plugin) as sandbox:
        if plugin == cni_logger_cli:   # the runtimes execute that install's interpreter, not this venv's
            assert (sandbox.bin_dir / "logger").read_text().startswith(f"#!{cni_logger_cli.resolve().parent}/python")
        yield sandbox


@pytest.fixture
def network(sandbox: CniSandbox) -> Network:
    return sandbox.new_network()
