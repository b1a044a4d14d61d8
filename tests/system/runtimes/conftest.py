"""Fixtures for the integration tests: real runtimes (cnitool, Podman) in throw-away network namespaces.

Every test here is marked ``integration``. Tests that need root/cnitool/the installed plugin skip with the
reason (shown in the report header and with ``-rs``) instead of failing when the machine cannot run them.
Run: ``sudo .venv/bin/pytest -m integration -rs tests/system/runtimes``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cnitool import (
    CNITOOL,
    CniSandbox,
    Network,
    environment_problem,
    logger_bin,
    logger_unavailable_reason,
    opened_sandbox,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config: pytest.Config) -> list[str]:
    problem = environment_problem()
    logger_problem = logger_unavailable_reason()
    return [
        f"cni-logger integration: cnitool={CNITOOL} logger={logger_bin()}",
        "cni-logger integration: " + (f"SKIPPING runtime tests: {problem}" if problem else
                                      f"runtime tests enabled (plugin: {logger_problem or 'ok'})"),
    ]


def require_environment() -> None:
    problem = environment_problem()
    if problem:
        print(f"\nSKIP: {problem}", file=sys.stderr)
        pytest.skip(problem)


def require_logger() -> Path:
    reason = logger_unavailable_reason()
    if reason:
        print(f"\nSKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return logger_bin()


@pytest.fixture
def bare_sandbox(tmp_path: Path) -> Iterator[CniSandbox]:
    """Namespaces + a CNI bin dir (system plugins + Go debug plugin) without the logger."""
    require_environment()
    with opened_sandbox(tmp_path, None) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[CniSandbox]:
    """Namespaces + a CNI bin dir with ``logger`` -> the installed ``cni-logger`` console script."""
    require_environment()
    logger = require_logger()
    with opened_sandbox(tmp_path, logger) as sandbox:
        yield sandbox


@pytest.fixture
def network(sandbox: CniSandbox) -> Network:
    return sandbox.new_network()
