"""Which Debian package owns a file, for the tests that run a container runtime.

The set-up (``scripts/lib/setup.sh``) never installs a runtime beside one from another package (Docker's
containerd.io, a static download, k3s's bundled containerd): it leaves that package out. The tests that need the
runtime then skip, saying why, instead of driving a runtime they were not written for.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def owners(path: str) -> set[str] | None:
    """The installed packages that own ``path`` (or its target, or its ``/usr`` twin); None without dpkg."""
    if shutil.which("dpkg-query") is None:
        return None
    candidates = [path, os.path.realpath(path)]
    candidates += ["/usr" + c for c in candidates if c.startswith(("/bin/", "/sbin/", "/lib/"))]
    for candidate in candidates:
        proc = subprocess.run(["dpkg-query", "-S", "--", candidate], capture_output=True, text=True, check=False,
                              timeout=30)
        if proc.returncode != 0:
            continue
        names: set[str] = set()
        for line in proc.stdout.splitlines():
            if line.startswith("diversion by ") or ": /" not in line:
                continue
            names.update(name.strip().split(":")[0] for name in line.split(": /")[0].split(","))
        if names:
            return names
    return set()


def foreign_reason(path: str, package: str) -> str | None:
    """Why ``path`` is not the Debian package ``package``'s own file (the set-up left the package out), or None."""
    found = owners(path)
    if found is None or package in found:
        return None
    by = f"belongs to {', '.join(sorted(found))}" if found else "is not from any Debian package"
    return (f"{path} {by}, not Debian's {package}: the set-up leaves a runtime from another package alone, "
            "and this test runs only Debian's")
