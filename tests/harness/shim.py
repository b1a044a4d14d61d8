"""The thick-mode shim (shim/cni-logger-shim.c), built once per source for the tests that run it.

``built()`` compiles it with this machine's ``cc`` through scripts/build-shim.sh (the flags the virtualenv's
and the bundle's copies are built with) into ``$CNI_LOGGER_CACHE/shim-<key>/cni-logger-shim``, the key being a
hash of the C source and the build script: an edit rebuilds it, a rerun reuses it (0.3 s saved per session,
and every test process of a parallel run shares one binary). The build writes to a temporary name and renames
(build-shim.sh), so concurrent sessions at worst build it twice, never run a half-written file.

``without_memfd()`` is a small launcher that runs a command with memfd_create(2) failing (ENOSYS, as on a
kernel before 3.17 or under a seccomp profile that lacks it), for the shim's other ways of handing stdin over.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
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


WITHOUT_MEMFD = r"""
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof *filter, .filter = filter};
    if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("without-memfd");
        return 125;
    }
    execv(argv[1], argv + 1);
    perror(argv[1]);
    return 126;
}
"""


def without_memfd() -> Path:
    """A launcher (``without-memfd COMMAND ARG...``) under which memfd_create fails with ENOSYS."""
    binary = cache_dir() / f"without-memfd-{hashlib.sha256(WITHOUT_MEMFD.encode()).hexdigest()[:16]}"
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(f".{binary.name}.{os.getpid()}")
        with tempfile.NamedTemporaryFile("w", suffix=".c") as source:
            source.write(WITHOUT_MEMFD)
            source.flush()
            subprocess.run(["cc", "-O2", "-o", str(partial), source.name], check=True, timeout=120)
        os.replace(partial, binary)
    return binary
