"""The DaemonSet's entry point (deploy/kubernetes/cni-logger-node.sh) and the bundle folder it installs: a
folder that differs from the build's manifest in any way is unpacked anew, even while the launcher names it;
an interpreter that is not a working ELF executable is never taken for one (execvp runs an empty or
non-ELF "executable" with /bin/sh, which exits 0); and the container never exits 0 when the watcher cannot
start.

Run as the end-to-end test of test_kubernetes.py runs it: HOST_ROOT=/ (this machine plays the node, every
path is under tmp), with the real bundle. Each test damages a folder the way a node loses it (power loss
after an unsynced unpack leaves empty or zero-filled files and missing directory entries) and starts the
script as the kubelet would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.bundle import PYTHON_VERSION, Bundle, unpack
from tests.harness.nodes import shape
from tests.harness.plugin import REPO, cni_env, parse_single_json

ENTRYPOINT = REPO / "deploy" / "kubernetes" / "cni-logger-node.sh"
MANIFEST = "MANIFEST.sha256"
CONFLIST = "10-flannel.conflist"
READY_DEADLINE = 300.0
"""Seconds the script may take to unpack, check and install (a hang guard, not a speed check)."""
EXIT_DEADLINE = 120.0
"""Seconds a start that must fail may take to exit (a hang guard)."""
SITE = f"lib/python{PYTHON_VERSION}/site-packages"
INTERPRETER = f"bin/python{PYTHON_VERSION}"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")


@dataclass(frozen=True)
class Node:
    """A node's paths for the script, all under a test's temporary directory (HOST_ROOT is /)."""

    base: Path

    @property
    def opt(self) -> Path:
        return self.base / "opt"

    @property
    def bin_dir(self) -> Path:
        return self.base / "bin"

    @property
    def net_d(self) -> Path:
        return self.base / "net.d"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def ready(self) -> Path:
        return self.state / "ready"

    @property
    def launcher(self) -> Path:
        return self.bin_dir / "logger"

    def start(self, tarball: Path, *args: str, host_root: str = "/", check_root: Path | None = None,
              check_libs: bool = True, check_install: bool = True) -> subprocess.Popen[str]:
        """The script as the kubelet starts it. With ``check_root``: the pod's layout (deploy/kubernetes), in a
        mount namespace of its own where ``check_root`` holds the host's /usr, /lib, /lib64 (unless not
        ``check_libs``) and the install dir at /cni-logger, read-only, as the image's CHECK_ROOT=/host."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOST_ROOT": host_root, "INSTALL_DIR": str(self.opt),
               "CNI_BIN_DIR": str(self.bin_dir), "BUNDLE": str(tarball)}
        argv = ["sh", str(ENTRYPOINT), f"--conf-dir={self.net_d}", f"--state-dir={self.state}",
                f"--ready-file={self.ready}", "--interval=0.5", *args]
        if check_root is not None:
            env.update(CHECK_ROOT=str(check_root), CHECK_INSTALL_DIR="/cni-logger")
            self.opt.mkdir(exist_ok=True)
            for sub in ("usr", "lib", "lib64", "cni-logger"):
                (check_root / sub).mkdir(parents=True, exist_ok=True)
            binds = ' '.join(f"/{d}" for d in ("usr", "lib", "lib64")) if check_libs else ""
            bind_install = 'mount --bind -o ro "$INSTALL_DIR" "$CHECK_ROOT/cni-logger"; ' if check_install else ""
            script = ('for d in ' + binds + '; do mount --bind -o ro "$d" "$CHECK_ROOT$d"; done; ' + bind_install
                      + 'exec "$@"')
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "sh", *argv]
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + READY_DEADLINE
        while not self.ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not self.ready.exists():
            if proc.poll() is None:
                proc.kill()
            out, err = proc.communicate(timeout=30)
            raise AssertionError(f"the script is not ready (rc={proc.returncode}):\n{err}{out}")

    def stop(self, proc: subprocess.Popen[str]) -> str:
        proc.send_signal(signal.SIGTERM)            # sh exec'd chroot, which exec'd the installer
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        return err

    def run_until_ready(self, tarball: Path) -> str:
        """Start the script, wait until the watcher is ready, stop it; its stderr."""
        proc = self.start(tarball)
        try:
            self.wait_ready(proc)
            return self.stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)

    def run_to_exit(self, tarball: Path, *args: str, host_root: str = "/", check_root: Path | None = None,
                    check_libs: bool = True, check_install: bool = True) -> subprocess.CompletedProcess[str]:
        """Start the script and wait for it to exit by itself (it must, within the deadline)."""
        proc = self.start(tarball, *args, host_root=host_root, check_root=check_root, check_libs=check_libs,
                          check_install=check_install)
        try:
            out, err = proc.communicate(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"the script did not exit (ready: {self.ready.exists()}):\n{err}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    n = Node(tmp_path)
    n.net_d.mkdir()
    (n.net_d / CONFLIST).write_bytes(shape(CONFLIST))
    return n


def install_folder(bundle: Bundle, node: Node) -> Path:
    """The bundle unpacked as <install dir>/<build id>, as an earlier start of the script left it, with a
    launcher in the bin dir that names it (pods set up on it need it: the script must replace the folder
    safely, not skip it)."""
    folder = unpack(bundle.tarball, node.base / "unpacked")
    installed = node.opt / bundle.build_id
    node.opt.mkdir(exist_ok=True)
    folder.rename(installed)
    (node.base / "unpacked").rmdir()
    written = subprocess.run([str(installed / "bin" / "cni-logger"), "launcher", str(node.launcher)],
                             capture_output=True, text=True, check=False, timeout=60)
    assert written.returncode == 0, written.stderr
    return installed


def assert_installed_and_working(bundle: Bundle, node: Node, damaged: str) -> None:
    """The installed folder is the build again (the damaged file byte for byte, the manifest's check passes),
    nothing is left beside it, and the launcher the watcher wrote answers VERSION."""
    installed = node.opt / bundle.build_id
    assert (installed / damaged).read_bytes() == (bundle.folder / damaged).read_bytes()
    check = subprocess.run(["sha256sum", "-c", "--quiet", "--strict", MANIFEST], cwd=installed, capture_output=True,
                           text=True, check=False, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(p.name for p in node.opt.iterdir()) == [bundle.build_id], "left beside the build"
    assert node.launcher.read_text().startswith(f"#!{installed / INTERPRETER} -IS\n")
    version = subprocess.run([str(node.launcher)], input=b'{"cniVersion": "1.0.0"}', env=cni_env("VERSION"),
                             capture_output=True, check=False, timeout=60)
    assert version.returncode == 0, version.stderr
    assert "1.1.0" in parse_single_json(version.stdout)["supportedVersions"]
    assert (node.net_d / CONFLIST).read_bytes() == shape(CONFLIST), "SIGTERM took the entry out"


def test_a_folder_with_a_module_missing_is_unpacked_anew_although_the_launcher_names_it(
        bundle: Bundle, node: Node) -> None:
    installed = install_folder(bundle, node)
    damaged = f"{SITE}/cni_logger/skel.py"
    (installed / damaged).unlink()
    err = node.run_until_ready(bundle.tarball)
    assert "unpacking" in err, err
    assert_installed_and_working(bundle, node, damaged)


def test_an_empty_interpreter_file_is_unpacked_anew(bundle: Bundle, node: Node) -> None:
    """Power loss after an unsynced unpack: the interpreter's directory entry exists, its data does not.
    execvp runs an empty executable with /bin/sh, which exits 0: neither the check nor the watcher ran."""
    installed = install_folder(bundle, node)
    (installed / INTERPRETER).write_bytes(b"")
    node.run_until_ready(bundle.tarball)
    assert_installed_and_working(bundle, node, INTERPRETER)


def test_a_file_with_zeroed_blocks_is_unpacked_anew(bundle: Bundle, node: Node) -> None:
    """Same size, other bytes (a block that never reached the disk reads as zeros): only its hash tells."""
    installed = install_folder(bundle, node)
    damaged = f"{SITE}/cni_logger/__pycache__/plugin.cpython-{PYTHON_VERSION.replace('.', '')}.pyc"
    data = (installed / damaged).read_bytes()
    half = len(data) // 2
    (installed / damaged).write_bytes(data[:half] + bytes(len(data) - half))
    node.run_until_ready(bundle.tarball)
    assert_installed_and_working(bundle, node, damaged)


def test_a_complete_folder_is_reused_and_a_folder_left_by_an_interrupted_swap_is_removed(
        bundle: Bundle, node: Node) -> None:
    installed = install_folder(bundle, node)
    aside = node.opt / f".old-{bundle.build_id}"
    (aside / "bin").mkdir(parents=True)
    inode = installed.stat().st_ino
    for _ in range(2):              # the second start sees the folder as the first one's watcher left it
        err = node.run_until_ready(bundle.tarball)
        assert installed.stat().st_ino == inode, f"a complete folder was unpacked anew:\n{err}"
        assert "unpacking" not in err, err
        assert not aside.exists()


def repacked(bundle: Bundle, tmp: Path, interpreter: bytes) -> Path:
    """A tarball of the bundle whose interpreter is ``interpreter`` (mode kept), with a manifest and BUILD_ID
    that agree with it, as assemble.sh writes them: a bundle that is complete, yet cannot run here."""
    folder = unpack(bundle.tarball, tmp / "src")
    (folder / INTERPRETER).write_bytes(interpreter)
    listed = []
    for line in (folder / MANIFEST).read_text().splitlines():      # bin/python3 is a symlink to it
        name = line.split("  ", 1)[1]
        listed.append(f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n")
    (folder / MANIFEST).write_text("".join(listed))
    (folder / "BUILD_ID").write_text(hashlib.sha256("".join(listed).encode()).hexdigest()[:16] + "\n")
    out = tmp / bundle.tarball.name
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return out


@pytest.mark.parametrize("interpreter", [b"", b"#!/bin/sh\nexit 0\n"], ids=["empty", "shell-script"])
def test_an_interpreter_that_is_not_an_elf_executable_fails_the_start(
        bundle: Bundle, node: Node, tmp_path: Path, interpreter: bytes) -> None:
    tarball = repacked(bundle, tmp_path / "repack", interpreter)
    done = node.run_to_exit(tarball)
    assert done.returncode != 0, f"exit 0 without a watcher:\n{done.stderr}"
    assert "does not run" in done.stderr, done.stderr
    assert not node.ready.exists()
    assert not node.launcher.exists(), "a launcher on a broken interpreter"
    assert (node.net_d / CONFLIST).read_bytes() == shape(CONFLIST)


def test_a_bundle_without_a_manifest_is_refused(bundle: Bundle, node: Node, tmp_path: Path) -> None:
    folder = unpack(bundle.tarball, tmp_path / "src")
    (folder / MANIFEST).unlink()
    tarball = tmp_path / bundle.tarball.name
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    done = node.run_to_exit(tarball)
    assert done.returncode == 1, done.stderr
    assert MANIFEST in done.stderr, done.stderr
    assert not node.opt.exists() or not list(node.opt.iterdir())


def test_the_watchers_exit_status_is_the_containers(bundle: Bundle, node: Node) -> None:
    done = node.run_to_exit(bundle.tarball, "--interval=never")
    assert done.returncode == 2, done.stderr                  # argparse's status, from `install --watch`
    assert "--interval" in done.stderr


def test_a_host_root_without_glibc_is_a_failed_start(bundle: Bundle, node: Node, tmp_path: Path) -> None:
    """As on a musl node: the chrooted interpreter cannot start; the bundle is installed, nothing else is."""
    root = tmp_path / "root"
    root.mkdir()
    done = node.run_to_exit(bundle.tarball, host_root=str(root))
    assert done.returncode == 1, done.stderr
    assert "does not run on this host" in done.stderr, done.stderr
    assert (root / str(node.opt).lstrip("/") / bundle.build_id / "BUILD_ID").is_file()
    assert not (root / str(node.bin_dir).lstrip("/")).exists()


def test_the_check_runs_on_the_check_roots_libraries_not_the_containers(bundle: Bundle, node: Node,
                                                                       tmp_path: Path) -> None:
    """The pod's layout: every host path at its own path (HOST_ROOT=/, where the image's glibc would run the
    interpreter), the check chrooted into CHECK_ROOT. A host whose libraries cannot run it (here: none at all,
    as for the glibc a musl node lacks) fails the start before the launcher or the entry goes in."""
    done = node.run_to_exit(bundle.tarball, check_root=tmp_path / "check", check_libs=False)
    assert done.returncode == 1, done.stderr
    assert "does not run on this host" in done.stderr, done.stderr
    assert (node.opt / bundle.build_id / "BUILD_ID").is_file()
    assert not node.launcher.exists()
    assert (node.net_d / CONFLIST).read_bytes() == shape(CONFLIST)


def test_with_the_hosts_libraries_in_the_check_root_the_pod_layout_installs(bundle: Bundle, node: Node,
                                                                            tmp_path: Path) -> None:
    proc = node.start(bundle.tarball, check_root=tmp_path / "check")
    try:
        node.wait_ready(proc)
        assert node.launcher.read_text().startswith(f"#!{node.opt / bundle.build_id / INTERPRETER} -IS\n")
        assert b'"logger"' in (node.net_d / CONFLIST).read_bytes()
        node.stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert (node.net_d / CONFLIST).read_bytes() == shape(CONFLIST)


def test_a_check_root_without_the_install_dir_is_a_failed_start(bundle: Bundle, node: Node, tmp_path: Path) -> None:
    """The install dir is not mounted into the check root (a mount left out of the manifest): a failed start that
    says so, not a check of some other folder."""
    done = node.run_to_exit(bundle.tarball, check_root=tmp_path / "check", check_install=False)
    assert done.returncode == 1, done.stderr
    assert "does not show" in done.stderr and "mount the install dir" in done.stderr, done.stderr
    assert not node.launcher.exists()


def test_no_bundle_is_a_failed_start(node: Node, tmp_path: Path) -> None:
    done = node.run_to_exit(tmp_path / "missing.tar.gz")
    assert done.returncode == 1 and "no bundle" in done.stderr, done.stderr


def test_a_folder_the_launcher_names_in_a_shell_preamble_is_kept(bundle: Bundle, node: Node) -> None:
    """A launcher for an interpreter path the kernel cannot take in ``#!`` (blanks, quotes, length) execs it
    from a /bin/sh preamble, as pip writes such scripts: its folder is as much in use as a ``#!`` one."""
    legacy, unused = node.opt / "venv-0123", node.opt / "00000000deadbeef"
    for folder in (legacy, unused):
        (folder / "bin").mkdir(parents=True)
    node.bin_dir.mkdir()
    node.launcher.write_text(
        "#!/bin/sh\n"
        "# cni-logger CNI plugin launcher, written by `cni-logger launcher` / `cni-logger install`.\n"
        f"'''exec' '{legacy}/bin/python{PYTHON_VERSION}' -IS \"$0\" \"$@\"\n"
        "' '''\n")
    node.run_until_ready(bundle.tarball)
    assert legacy.exists(), "removed the folder the running launcher names"
    assert not unused.exists()
    shutil.rmtree(legacy)
