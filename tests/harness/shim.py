"""The thick-mode shim (shim/cni-logger-shim.c), built once per source for the tests that run it.

``built()`` compiles it with this machine's ``cc`` through scripts/build-shim.sh (the flags the virtualenv's
and the bundle's copies are built with) into ``$CNI_LOGGER_CACHE/shim-<key>/cni-logger-shim``, the key being a
hash of the C source and the build script: an edit rebuilds it, a rerun reuses it (0.3 s saved per session,
and every test process of a parallel run shares one binary). The build writes to a temporary name and renames
(build-shim.sh), so concurrent sessions at worst build it twice, never run a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "shim" / "cni-logger-shim.c"
BUILD_SCRIPT = REPO / "scripts" / "build-shim.sh"


def cache_dir() -> Path:
    """``$CNI_LOGGER_CACHE`` (default /var/cache/cni-logger), or a per-user one under /tmp when that is not ours."""
    cache = Path(os.environ.get("CNI_LOGGER_CACHE", "/var/cache/cni-logger"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if os.access(cache, os.W_OK):
            return cache
    except OSError:
        pass
    return Path(f"/tmp/cni-logger-cache-{os.getuid()}")


def key() -> str:
    """What the binary is built from: the source and the build script (its compiler flags)."""
    digest = hashlib.sha256()
    for path in (SOURCE, BUILD_SCRIPT):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def built() -> Path:
    """The shim built from the working tree's source with the host ``cc`` (reused while the source is unchanged)."""
    binary = cache_dir() / f"shim-{key()}" / "cni-logger-shim"
    if not binary.is_file():
        proc = subprocess.run(["bash", str(BUILD_SCRIPT), "--out", str(binary)], capture_output=True, text=True,
                              check=False, timeout=300)
        assert proc.returncode == 0, f"build-shim.sh --out {binary} failed:\n{proc.stderr}"
    return binary
