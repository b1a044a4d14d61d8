"""Test-session hooks (``--run-slow``) and fixtures every test directory can use.

The shared helpers themselves live in the importable package ``tests.harness``; this file only wires them
into pytest.
"""

from __future__ import annotations

import pytest

from tests.harness.bundle import bundle  # noqa: F401  (the relocatable bundle, for any test directory)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run long reliability and fuzz runs")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long run: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
