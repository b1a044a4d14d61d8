"""Fixtures for the install tests; the installer's settle delay for half-written files is shortened so
refusals stay fast."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cni_logger.install import choose
from tests.harness.nodes import Node


@pytest.fixture(autouse=True)
def fast_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(choose, "SETTLE_SECONDS", 0.01)


@pytest.fixture
def node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Node]:
    n = Node(tmp_path, capsys)
    n.net_d.mkdir()
    n.bin_dir.mkdir()
    old_umask = os.umask(0o022)
    try:
        yield n
    finally:
        os.umask(old_umask)
