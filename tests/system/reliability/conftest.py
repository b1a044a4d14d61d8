"""Fixtures for the reliability suite: a tiny tmpfs, and whether an unprivileged user can be switched to
(``public_dir``, a directory that user can reach, is every test directory's: ``tests/conftest.py``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

TMPFS_SIZE = "64k"


def _run(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), capture_output=True, timeout=30, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 64 KiB tmpfs mounted for this test (needs root); always unmounted afterwards."""
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    done = _run("mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", str(mountpoint))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mountpoint
    finally:
        _run("mount", "-o", "remount,rw", str(mountpoint))
        if _run("umount", str(mountpoint)).returncode != 0:
            _run("umount", "-l", str(mountpoint))


def remount(mountpoint: Path, option: str) -> None:
    done = _run("mount", "-o", f"remount,{option}", str(mountpoint))
    assert done.returncode == 0, done.stderr


@pytest.fixture
def unprivileged() -> None:
    """Skip unless we are root and ``setpriv`` can drop to nobody:nogroup."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    done = _run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "true")
    if done.returncode != 0:
        pytest.skip(f"setpriv cannot drop privileges: {done.stderr.decode(errors='replace').strip()}")
