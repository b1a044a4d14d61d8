"""The set-ups install by need: scripts/setup-demo.sh only what scripts/demo.sh runs, scripts/setup-system.sh that
and the test suite's packages; neither installs a container runtime beside one from another package.

Everything here runs the scripts' ``--plan`` (or their functions with apt-get faked): nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.debian import foreign_reason
from tests.harness.plugin import REPO

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None or shutil.which("apt-get") is None,
                                reason="the set-up scripts are for Debian (apt, dpkg)")

DEMO = REPO / "scripts" / "setup-demo.sh"
SYSTEM = REPO / "scripts" / "setup-system.sh"
LIB = REPO / "scripts" / "lib" / "setup.sh"

RUNTIMES = {"containerd", "podman", "runc", "crun", "conmon", "cri-o", "docker.io"}
NOT_FOR_THE_DEMO = RUNTIMES | {"chromium", "debootstrap", "prometheus", "qemu-user-static", "gcc", "hyperfine",
                               "golang-github-containernetworking-plugins-dev"}
THE_DEMO_RUNS = {"containernetworking-plugins", "golang-go", "golang-github-appc-cni-dev", "python3-venv", "iproute2"}
PODMAN = {"podman", "runc", "crun", "busybox-static", "catatonit", "conmon"}
THE_SUITE = {
    "ca-certificates", "python3", "python3-venv", "python3-pip", "iproute2", "iptables", "jq", "util-linux", "procps",
    "containernetworking-plugins", "golang-go", "golang-github-appc-cni-dev", "golang-github-vishvananda-netns-dev",
    "golang-golang-x-sys-dev", "golang-github-containernetworking-plugins-dev", "debian-archive-keyring", "xz-utils",
    "hyperfine", "time", "containerd", "gcc", "libc6-dev", "logrotate", "debootstrap", "binutils", "chromium",
    "faketime", "shellcheck", "prometheus", "qemu-user-static", *PODMAN,
}
"""What scripts/setup-system.sh installed as one script: splitting it must not change what the tests get."""


def env(path_first: Path | None = None, **extra: str) -> dict[str, str]:
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": f"{path_first}:{path}" if path_first else path, "HOME": os.environ.get("HOME", "/root"),
            "CNI_LOGGER_VENV": "/nonexistent/venv", **extra}


def plan(script: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """``script --plan`` as {package: "install" | "present" | "skip: why"}, plus the "tools", "venv" (and "shim")
    lines."""
    proc = subprocess.run(["bash", str(script), "--plan"], capture_output=True, text=True, check=False, timeout=120,
                          env=environ or env())
    assert proc.returncode == 0, proc.stderr
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("tools", "venv", "shim"):
            out[word] = rest
        else:
            assert word in ("install", "present", "skip"), line
            name, _, why = rest.partition(": ")
            out[name] = f"skip: {why}" if word == "skip" else word
    return out


def packages(p: dict[str, str]) -> set[str]:
    return set(p) - {"tools", "venv", "shim"}


def fake(directory: Path, name: str, body: str = "exit 0") -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_the_demo_installs_what_it_runs_and_no_runtime_browser_or_build_tool() -> None:
    demo = plan(DEMO)
    assert packages(demo) >= THE_DEMO_RUNS
    assert not packages(demo) & NOT_FOR_THE_DEMO, packages(demo) & NOT_FOR_THE_DEMO
    assert demo["tools"].split()[1:] == ["cnitool"]
    assert demo["venv"].endswith(str(REPO)), demo["venv"]  # the project alone, not its [test] extras
    assert "shim" not in demo                               # the demo runs no thick mode: no compiler


def test_the_test_setup_installs_the_demos_needs_and_the_suites() -> None:
    system = plan(SYSTEM)
    assert packages(system) == THE_SUITE
    assert packages(plan(DEMO)) < packages(system)
    assert system["tools"].split()[1:] == ["cnitool", "debug"]
    assert system["venv"].endswith(f"{REPO}[test]")
    assert system["shim"] == "/nonexistent/venv/libexec/cni-logger-shim"   # built with the host cc beside it
    assert packages(plan(SYSTEM, env(WITH_PODMAN="0"))) == THE_SUITE - PODMAN


def test_a_containerd_from_no_package_is_left_alone(tmp_path: Path) -> None:
    binary = fake(tmp_path / "bin", "containerd")
    system = plan(SYSTEM, env(tmp_path / "bin"))
    assert system["containerd"] == f"skip: {binary} is not from Debian's containerd package (no package owns it)"
    assert "containerd" not in system["podman"], system["podman"]  # podman does not pull containerd in
    assert "containerd" not in plan(DEMO, env(tmp_path / "bin"))


def test_a_runc_of_another_package_leaves_out_every_runtime_that_needs_it(tmp_path: Path) -> None:
    # Docker's containerd.io package owns this containerd and runc: apt would replace them, or put ours beside.
    bin_dir = tmp_path / "bin"
    containerd, runc = fake(bin_dir, "containerd"), fake(bin_dir, "runc")
    fake(bin_dir, "dpkg-query", 'if [ "$1" = -S ]; then\n'
         f'  case $3 in {containerd}|{runc}) echo "containerd.io: $3"; exit 0 ;; esac\nfi\n'
         'exec /usr/bin/dpkg-query "$@"')
    system = plan(SYSTEM, env(bin_dir))
    runc_reason = f"{runc} belongs to containerd.io, not to Debian's runc package"
    assert system["runc"] == f"skip: {runc_reason}"
    assert system["containerd"] == f"skip: {containerd} belongs to containerd.io, not to Debian's containerd package"
    assert system["podman"] == f"skip: it needs runc, and {runc_reason}"
    assert not {p for p, status in plan(DEMO, env(bin_dir)).items() if status.startswith("skip")}


def test_the_setup_says_what_it_installs_and_never_passes_a_left_out_runtime_to_apt(tmp_path: Path) -> None:
    # Every package reads as missing, and apt-get only records what it was asked: nothing is installed.
    bin_dir = tmp_path / "bin"
    record = tmp_path / "apt.args"
    fake(bin_dir, "containerd")
    fake(bin_dir, "dpkg-query", 'if [ "$1" = -W ]; then echo "unknown ok not-installed"; exit 0; fi\n'
         'exec /usr/bin/dpkg-query "$@"')
    fake(bin_dir, "apt-get", f'echo "$*" >> "{record}"')
    proc = subprocess.run(["bash", "-c", f'ROOT="{REPO}"; . "{LIB}"; setup_apt test'], capture_output=True, text=True,
                          check=False, timeout=120, env=env(bin_dir))
    assert proc.returncode == 0, proc.stderr
    said = proc.stderr.splitlines()
    assert f"[setup] not installing containerd: {bin_dir}/containerd is not from Debian's containerd package " \
           "(no package owns it); the tests that need it skip, saying why" in said
    [will] = [line for line in said if line.startswith("[setup] will install ")]
    calls = record.read_text().splitlines()
    assert calls[0] == "update -qq"
    install = calls[1].split()
    assert install[:5] == ["install", "-y", "-qq", "--no-install-recommends", "--no-remove"]
    assert set(install[5:]) == THE_SUITE - {"containerd"}
    assert will == f"[setup] will install {len(install) - 5} Debian packages (and their dependencies): " \
                   f"{' '.join(install[5:])}"


def test_the_runtime_tests_skip_a_runtime_from_another_package(tmp_path: Path) -> None:
    binary = fake(tmp_path, "containerd")
    reason = foreign_reason(str(binary), "containerd")
    assert reason is not None and reason.startswith(f"{binary} is not from any Debian package, not Debian's containerd")
    system = shutil.which("containerd")
    if system and not plan(SYSTEM)["containerd"].startswith("skip"):
        assert foreign_reason(system, "containerd") is None


def test_the_suite_opens_a_closed_checkout_and_refuses_one_under_a_closed_directory(tmp_path: Path,
                                                                                  public_dir: Path) -> None:
    # Some tests run the plugin as nobody from the checkout's virtualenv, so scripts/test.sh sees to it, before
    # installing anything, that nobody can reach the checkout. A clone into `mktemp -d` (a 0700 checkout) is opened
    # (o+rx: the launcher imports from it without site processing, which lists it), saying so. A checkout under a
    # closed directory that is not the project's (pytest's own base) is refused.
    def checkout(root: Path, mode: int = 0o755) -> Path:
        scripts = root / "scripts"
        scripts.mkdir(parents=True)
        root.chmod(mode)
        shutil.copy(REPO / "scripts" / "test.sh", scripts)
        (scripts / "setup-system.sh").write_text("echo set-up reached >&2; exit 42\n")
        return scripts / "test.sh"

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    refused = subprocess.run(["bash", str(checkout(private / "clone"))], capture_output=True, text=True, timeout=60,
                             check=False)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith(f"[test] the checkout {private}/clone is out of reach of user nobody (")
    assert "set-up reached" not in refused.stderr
    assert private.stat().st_mode & 0o777 == 0o700  # nothing above the checkout is opened

    closed = public_dir / "closed"
    opened = subprocess.run(["bash", str(checkout(closed, 0o700))], capture_output=True, text=True, timeout=60,
                            check=False)
    assert opened.returncode == 42, opened.stderr
    assert opened.stderr == (f"[test] the tests run the plugin as user nobody, who may not read the checkout {closed} "
                             "(mode 700, as `mktemp -d` makes): adding o+rx to it\nset-up reached\n")
    assert closed.stat().st_mode & 0o777 == 0o705

    passed = subprocess.run(["bash", str(checkout(public_dir / "open"))], capture_output=True, text=True, timeout=60,
                            check=False)
    assert (passed.returncode, passed.stderr) == (42, "set-up reached\n")
