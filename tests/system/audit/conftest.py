"""The audit story's trail (written by the real plugin, rotated, gzipped and damaged): ``tests.harness.trails``;
and the cnitool sandbox of the tests that drive a chain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cnitool import CniSandbox, environment_problem, opened_sandbox, runtime_plugin
from tests.harness.trails import copy_of_trail, trail  # noqa: F401  (fixtures)


@pytest.fixture
def sandbox(tmp_path: Path, cni_logger_cli: Path) -> Iterator[CniSandbox]:
    """Namespaces + a CNI bin dir with ``logger`` (the launcher of ``cni_logger_cli``, the bundle's by
    default) for the tests that drive the chain with cnitool; cleaned up afterwards."""
    problem = environment_problem()
    if problem:
        pytest.skip(problem)
    with opened_sandbox(tmp_path, runtime_plugin(cni_logger_cli)) as sb:
        yield sb
