"""The relocatable bundle (scripts/build-bundle.sh) as a pytest fixture, for any test that needs it.

``bundle`` (session scope) builds the tarball, or reuses the cached interpreter so that only the
project layer is redone (seconds), and unpacks it once into a temporary directory. Tests that need a
private copy (to move it, or to install it into a root of their own) call ``unpack`` on
``bundle.tarball``. tests/conftest.py re-exports the fixture, so every test directory can use it.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-bundle.sh"
PYTHON_VERSION = "3.11"
GLIBC_LIBRARIES = frozenset({"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
                             "libutil.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"})
"""Shared libraries that glibc itself provides (so every glibc node has them)."""


@dataclass(frozen=True)
class Bundle:
    """A built bundle: its tarball and one unpacked copy of it (treat the copy as read-only)."""

    tarball: Path
    folder: Path

    @property
    def python(self) -> Path:
        return self.folder / "bin" / f"python{PYTHON_VERSION}"

    @property
    def cli(self) -> Path:
        return self.folder / "bin" / "cni-logger"

    @property
    def build_id(self) -> str:
        return (self.folder / "BUILD_ID").read_text().strip()


def build(*args: str) -> Path:
    """Run scripts/build-bundle.sh ``args`` (as root; cached interpreter) and return the tarball it printed:
    ``build("--arch", "arm64")`` for the cross-compiled arm64 bundle."""
    env = dict(os.environ)
    env.setdefault("CNI_LOGGER_VENV", str(REPO / ".venv"))
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), *args], env=env, capture_output=True, text=True, check=False,
                          timeout=3600)
    assert proc.returncode == 0, f"build-bundle.sh failed:\n{proc.stderr[-4000:]}"
    tarball = Path(proc.stdout.strip().splitlines()[-1])
    assert tarball.is_file() and tarball.name.endswith(".tar.gz"), proc.stdout
    return tarball


def elf_files(folder: Path) -> list[Path]:
    """The ELF files under ``folder`` (symlinks aside), for the bundles' glibc and architecture checks."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def unpack(tarball: Path, destination: Path) -> Path:
    """Unpack ``tarball`` under ``destination`` (created) and return the single folder it holds."""
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        tops = {Path(name).parts[0] for name in tar.getnames()}
    assert len(tops) == 1, f"the tarball must hold one folder, not {sorted(tops)}"
    # tar(1), as a node's operator would: this Python's tarfile predates extraction filters.
    subprocess.run(["tar", "-C", str(destination), "-xzf", str(tarball)], check=True, timeout=120)
    return destination / tops.pop()


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    """The bundle, built (or reused from the cache) and unpacked once per test session (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("building the bundle needs root (debootstrap, chroot)")
    tarball = build()
    yield Bundle(tarball, unpack(tarball, tmp_path_factory.mktemp("bundle")))
