"""A private containerd 1.6 (Debian's package, CRI plugin included) for one test, and everything it leaves.

Nothing of the system's containerd is used or touched: the instance gets its own ``--config`` with
``root``, ``state``, the gRPC socket and the CRI plugin's CNI ``bin_dir``/``conf_dir`` under a temporary
directory. It runs inside a throw-away "host" network namespace (``nsenter --net``; not ``ip netns exec``,
which remounts /sys and hides the cgroup mounts runc needs), so the bridge, the veth host ends and
portmap's iptables chains exist only there and vanish with it.

A few things land outside the private directories because containerd or libcni hard-code them;
:meth:`PrivateContainerd.cleanup` removes exactly the ones this instance made: the pod network namespaces
(``/run/netns/cni-*`` of the sandboxes it ran), libcni's result cache ``/var/lib/cni/results/<network>-*``,
the sandboxes' cgroups (under a cgroup parent unique to this instance), the shims' sockets under
``/run/containerd/s/`` and any mount below the temporary directory.

Two settings this machine needs (see /work/shared/reference/containerd-cri.md): the CRI plugin's
``restrict_oom_score_adj = true`` (no CAP_SYS_RESOURCE here: runc cannot set the sandbox's -998), and
``runc`` with cgroupfs (the default for io.containerd.runc.v2).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.harness.debian import foreign_reason
from tests.system.cri.client import CriClient, GeneratedCode

T = TypeVar("T")

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
SYSTEM_PLUGINS = Path("/usr/lib/cni")
RESULTS_DIR = Path("/var/lib/cni/results")
SHIM_SOCKET_DIR = Path("/run/containerd/s")
"""containerd 1.6 puts shim sockets here whatever its ``state`` is (runtime/v2/shim/util_unix.go)."""
CGROUP_ROOT = Path("/sys/fs/cgroup")
START_TIMEOUT = 30.0
"""Seconds for containerd to answer Version after start (about 0.5 s here)."""
STOP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 60.0


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something other than None; fail with ``what`` after ``timeout``.

    The bound only keeps a broken runtime from hanging the suite; nothing is asserted about speed.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
        except Exception as exc:  # the runtime is still coming up: keep polling, report the last error
            last_error = exc
            value = None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last error: {last_error!r}")
        time.sleep(interval)


def run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"$ {' '.join(argv)}\nrc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr}")
    return proc


def unavailable_reason() -> str | None:
    """Why a private containerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "the containerd CRI test needs root (network namespaces, mounts, cgroups)"
    for tool in (CONTAINERD, CTR, shutil.which("runc"), shutil.which("nsenter"), shutil.which("gcc")):
        if tool is None or not os.access(tool, os.X_OK):
            return (f"{tool or 'runc/nsenter/gcc'} is missing: install Debian's containerd (and gcc, util-linux); "
                    "scripts/setup-system.sh does")
    for tool, package in ((CONTAINERD, "containerd"), (shutil.which("runc") or "runc", "runc")):
        reason = foreign_reason(tool, package)
        if reason:
            return reason
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not (SYSTEM_PLUGINS / plugin).is_file():
            return f"{SYSTEM_PLUGINS / plugin} is missing: install containernetworking-plugins"
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError as exc:
        return f"grpcio/grpcio-tools are not installed ({exc}): pip install -e '.[test]'"
    return None


class PrivateContainerd:
    """One containerd process with private dirs, a private host netns and a CRI client connected to it."""

    def __init__(self, tmp: Path, *, tag: str, sandbox_image: str) -> None:
        self.tmp = tmp
        self.tag = tag
        self.root = tmp / "root"
        self.state = tmp / "state"
        self.socket = tmp / "containerd.sock"
        self.bin_dir = tmp / "cni-bin"
        self.conf_dir = tmp / "net.d"
        self.config = tmp / "containerd.toml"
        self.log = tmp / "containerd.log"
        self.host_netns = f"{tag}-host"
        self.cgroup_parent = f"/{tag}"
        self.sandbox_image = sandbox_image
        self.networks: list[str] = []
        """CNI network names whose libcni cache entries cleanup removes (register before use)."""
        self.sandboxes: list[str] = []
        """Sandbox ids this test ran; cleanup stops and removes any still there."""
        self.pod_netns: list[str] = []
        self.client: CriClient | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._made_run_containerd = not Path("/run/containerd").exists()

    # -- setup ----------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Private dirs, the CNI bin dir with the reference plugins, the config file and the host netns."""
        for d in (self.root, self.state, self.bin_dir, self.conf_dir):
            d.mkdir(parents=True, exist_ok=True)
        # containerd always adds a loopback network to every pod (go-cni WithLoNetwork): it needs `loopback`.
        for plugin in ("bridge", "host-local", "portmap", "loopback"):
            shutil.copy2(SYSTEM_PLUGINS / plugin, self.bin_dir / plugin)
        self.config.write_text(self._config_toml())
        run(["ip", "netns", "add", self.host_netns])
        # The CRI streaming server binds 127.0.0.1: the namespace's loopback must be up.
        run(["ip", "-n", self.host_netns, "link", "set", "lo", "up"])

    def _config_toml(self) -> str:
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        q = json.dumps  # TOML basic strings accept JSON string escapes
        return "\n".join([
            "version = 2",
            f"root = {q(str(self.root))}",
            f"state = {q(str(self.state))}",
            # Snapshotters and plugins this test does not need (and that would probe the host) stay off.
            'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",'
            ' "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",'
            ' "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
            "[grpc]",
            f"  address = {q(str(self.socket))}",
            "[ttrpc]",
            f"  address = {q(str(self.tmp / 'containerd-ttrpc.sock'))}",
            "[debug]",
            '  address = ""',
            '  level = "info"',
            "[metrics]",
            '  address = ""',
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {q(str(self.tmp / 'opt'))}",
            cri,
            f"  sandbox_image = {q(self.sandbox_image)}",
            "  restrict_oom_score_adj = true",
            "  disable_apparmor = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            # runc's state (default /run/containerd/runc) stays private too. Declaring the runtime replaces
            # the built-in default entry, so its type must be restated.
            f"{cri[:-1]}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"{cri[:-1]}.containerd.runtimes.runc.options]",
            f"  Root = {q(str(self.state / 'runc'))}",
            f"{cri[:-1]}.cni]",
            f"  bin_dir = {q(str(self.bin_dir))}",
            f"  conf_dir = {q(str(self.conf_dir))}",
            "  max_conf_num = 1",
            "",
        ])

    def start(self, code: GeneratedCode) -> None:
        """Start containerd in the private host netns and wait until its CRI service answers."""
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.host_netns}", CONTAINERD, "--config", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.client = CriClient(code, self.socket)
        client = self.client

        def answers() -> Any:
            if self._proc is not None and self._proc.poll() is not None:
                raise AssertionError(f"containerd exited (rc={self._proc.returncode}):\n{self.log_text()}")
            return client.version() if self.socket.exists() else None

        try:
            wait_for("containerd's CRI Version", answers, START_TIMEOUT, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- containerd log\n{self.log_text()}") from None

    @property
    def pb2(self) -> Any:
        """The CRI message classes (after :meth:`start`)."""
        assert self.client is not None
        return self.client.pb2

    def import_image(self, archive: Path) -> str:
        """``ctr images import`` into the k8s.io namespace (the CRI plugin's); returns ctr's output."""
        proc = run([CTR, "--address", str(self.socket), "-n", "k8s.io", "images", "import", str(archive)])
        listed = run([CTR, "--address", str(self.socket), "-n", "k8s.io", "images", "ls", "-q"]).stdout.split()
        assert self.sandbox_image in listed, f"{self.sandbox_image} not imported: {listed}\n{proc.stdout}"
        return proc.stdout

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- cleanup --------------------------------------------------------------------------------------------

    def shim_socket(self, sandbox_id: str) -> Path:
        """Where containerd 1.6 puts the shim socket of a task in k8s.io: sha256(address/namespace/id)."""
        digest = hashlib.sha256(os.path.join(str(self.socket), "k8s.io", sandbox_id).encode()).hexdigest()
        return SHIM_SOCKET_DIR / digest

    def cleanup(self) -> list[str]:
        """Stop everything this instance made and remove what it left; returns problems (never raises)."""
        problems: list[str] = []

        def attempt(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as exc:
                problems.append(f"{what}: {exc!r}")

        if self.client is not None and self._proc is not None and self._proc.poll() is None:
            for sandbox in self.sandboxes:
                attempt(f"stop and remove {sandbox}", lambda s=sandbox: self._remove_sandbox(s))  # type: ignore[misc]
            attempt("wait for shims", self._wait_shims_gone)
        if self.client is not None:
            attempt("close channel", self.client.close)
        attempt("stop containerd", self._stop)
        attempt("kill shims", self._kill_shims)
        attempt("unmount", self._unmount_all)
        for name in self.pod_netns:
            path = Path("/run/netns") / name
            if path.exists():
                attempt(f"netns {name}", lambda n=name: run(["ip", "netns", "delete", n]))  # type: ignore[misc]
        attempt("host netns", lambda: run(["ip", "netns", "delete", self.host_netns], check=False))
        for network in self.networks:
            for entry in RESULTS_DIR.glob(f"{network}-*"):
                attempt(f"cache {entry}", entry.unlink)
        for sandbox in self.sandboxes:
            attempt("shim socket", lambda s=sandbox: self.shim_socket(s).unlink(missing_ok=True))  # type: ignore[misc]
        attempt("cgroups", self._remove_cgroups)
        if self._made_run_containerd:
            for d in (SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent):
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if empty: another containerd may have appeared meanwhile
        return problems

    def _remove_sandbox(self, sandbox_id: str) -> None:
        """Stop and remove a sandbox the test left behind; one it already removed is not found (fine)."""
        import grpc

        assert self.client is not None
        try:
            self.client.stop_pod_sandbox(sandbox_id)
            self.client.remove_pod_sandbox(sandbox_id)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    def _stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=STOP_TIMEOUT)

    def _shim_pids(self) -> list[int]:
        """The containerd-shim-runc-v2 processes serving this instance (their argv names its socket)."""
        marker = str(self.socket).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                pids.append(int(entry.name))
        return pids

    def _wait_shims_gone(self) -> None:
        """Let the shims of removed sandboxes exit while containerd, their subreaper, is there to reap them."""
        with contextlib.suppress(AssertionError):
            wait_for("the shims to exit", lambda: True if not self._shim_pids() else None, STOP_TIMEOUT)

    def _kill_shims(self) -> None:
        """Shims outlive containerd by design; end any still running for this instance (by pid)."""
        for pid in self._shim_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _unmount_all(self) -> None:
        """Unmount whatever is still mounted below the private dir (rootfs, /dev/shm), deepest first."""
        prefix = str(self.tmp) + "/"
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix):
                mounts.append(target)
        for target in sorted(mounts, key=len, reverse=True):
            run(["umount", "-l", target], check=False)

    def _remove_cgroups(self) -> None:
        """rmdir this instance's cgroup parent (and the sandboxes' cgroups in it) in every hierarchy."""
        name = self.cgroup_parent.strip("/")
        for hierarchy in CGROUP_ROOT.iterdir():
            parent = hierarchy / name
            if not parent.is_dir():
                continue
            for child in sorted(parent.iterdir(), reverse=True):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()
