"""A node without Python: a Debian 11 minbase root (glibc 2.31, no python3 at all) gets
the bundle from the DaemonSet's entry point (deploy/kubernetes/cni-logger-node.sh, chrooted as on a node),
and a real chain runs inside that root: cnitool with bridge + host-local + the installed logger in
throw-away network namespaces, ADD, CHECK and DEL answered and logged to the root's audit log.

The pristine root and bullseye's own bridge/host-local come from scripts/build-node-root.sh (cached under
/var/cache/cni-logger: ~1.5 min once, then seconds); every test unpacks a private copy. Every mount a test
needs (/proc, /sys, /dev, a netns file) is made in a mount namespace that dies with the process using it,
so nothing stays mounted under the copy when it is deleted. That the bundle's ELF files need no glibc
newer than 2.31 is checked in test_bundle.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.bundle import PYTHON_VERSION, Bundle
from tests.harness.cnitool import CNITOOL, cnitool_container_id, ipv4_cidrs
from tests.harness.plugin import REPO, read_events

pytestmark = pytest.mark.integration

NODE_ROOT_SCRIPT = REPO / "scripts" / "build-node-root.sh"
ENTRY_POINT = REPO / "deploy" / "kubernetes" / "cni-logger-node.sh"

# Host paths as the DaemonSet (deploy/kubernetes/cni-logger.yaml) names them, here inside the node root.
INSTALL_DIR = "/opt/cni-logger"
CNI_BIN_DIR = "/opt/cni/bin"
CONF_DIR = "/etc/cni/net.d"
LOG_FILE = "/var/log/cni/cni-logger.log"
STATE_DIR = "/var/lib/cni-logger"
READY_FILE = f"{STATE_DIR}/ready"
HOST_PATH_VOLUMES = (CNI_BIN_DIR, CONF_DIR, INSTALL_DIR, STATE_DIR, "/var/log/cni")
"""The hostPath volumes of type DirectoryOrCreate: the kubelet creates them before the container starts."""

CNI_VERSION = "0.4.0"
"""bullseye's plugins (containernetworking-plugins 0.9.0) speak up to 0.4.0."""
GLIBC = "glibc 2.31"
STARTUP_DEADLINE = 120.0
"""Seconds the entry point may take to unpack the bundle and install (a hang guard, not a speed check)."""


def run(argv: list[str], *, check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, **kw)
    if check:
        assert proc.returncode == 0, f"$ {' '.join(argv)}\nrc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path`` in this process's mount namespace."""
    prefix = str(path)
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


@pytest.fixture(scope="module")
def node_cache() -> Path:
    """The cached pristine root tarball and bullseye's plugins (built on first use)."""
    if os.geteuid() != 0:
        pytest.skip("a node root needs root (debootstrap, chroot, network namespaces)")
    for tool in ("debootstrap", "ip", "unshare", "chroot"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup-system.sh)")
    if not CNITOOL.is_file():
        pytest.skip(f"{CNITOOL} is not built (scripts/setup-system.sh)")
    proc = run(["bash", str(NODE_ROOT_SCRIPT)], check=False, timeout=900)
    assert proc.returncode == 0, f"build-node-root.sh failed:\n{proc.stderr[-4000:]}"
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert (folder / "rootfs.tar").is_file() and (folder / "cni" / "bridge").is_file(), folder
    return folder


@pytest.fixture
def node_root(node_cache: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the pristine root, deleted afterwards (refused while anything is mounted in it)."""
    root = tmp_path / "node"
    root.mkdir()
    run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(node_cache / "rootfs.tar")], timeout=300)
    yield root
    left = mounts_under(root)
    assert not left, f"still mounted under the node root (not deleting it): {left}"
    shutil.rmtree(root)


def pythons_in(root: Path) -> list[str]:
    """Every Python interpreter or libpython in ``root``, outside the bundle's install dir."""
    bundle_dir = root / INSTALL_DIR.lstrip("/")
    found = []
    for pattern in ("python*", "libpython*"):
        for path in root.rglob(pattern):
            if bundle_dir in path.parents or path.is_dir():
                continue
            found.append("/" + str(path.relative_to(root)))
    return sorted(found)


def test_the_node_root_is_debian_11_with_glibc_2_31_and_no_python(node_root: Path) -> None:
    assert "bullseye" in (node_root / "etc" / "os-release").read_text()
    assert run(["chroot", str(node_root), "getconf", "GNU_LIBC_VERSION"]).stdout.strip() == GLIBC
    assert pythons_in(node_root) == []
    assert not list((node_root / "usr" / "lib").glob("python3*"))
    missing = run(["chroot", str(node_root), "/bin/sh", "-c", "command -v python3 python"], check=False)
    assert missing.returncode != 0 and missing.stdout == "", missing.stdout


# --- the DaemonSet's entry point, run as the kubelet would, against the node root -------------------------------


def start_entry_point(root: Path, tarball: Path, log: Path) -> subprocess.Popen[bytes]:
    """deploy/kubernetes/cni-logger-node.sh with the DaemonSet's arguments and HOST_ROOT=root, in a mount
    namespace of its own where the root has /proc and /dev (as the host's do under /host on a node).
    ``unshare`` and ``sh`` exec, so the returned process becomes the installer and receives the SIGTERM."""
    script = ('mount -t proc proc "$HOST_ROOT/proc"; mount --rbind /dev "$HOST_ROOT/dev"; '
              'exec sh "$0" "$@"')
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOST_ROOT": str(root), "INSTALL_DIR": INSTALL_DIR,
           "CNI_BIN_DIR": CNI_BIN_DIR, "BUNDLE": str(tarball)}
    with log.open("wb") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, str(ENTRY_POINT),
             f"--conf-dir={CONF_DIR}", f"--log-file={LOG_FILE}", f"--state-dir={STATE_DIR}",
             f"--ready-file={READY_FILE}", "--interval=5"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def wait_until_ready(proc: subprocess.Popen[bytes], ready: Path, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready.exists(), f"the entry point is not ready (rc={proc.poll()}):\n{log.read_text()}"


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"the installer ignored SIGTERM:\n{log.read_text()}") from None
    assert proc.returncode == 0, f"rc={proc.returncode}:\n{log.read_text()}"


# --- the chain, inside the root ------------------------------------------------------------------------------------


@contextlib.contextmanager
def netns(name: str) -> Iterator[str]:
    """A throw-away network namespace (its bridges and veths go with it)."""
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        run(["ip", "netns", "delete", name], check=False)


def chrooted_cnitool(root: Path, host_ns: str, command: str, network: str,
                     ctr_ns: str) -> subprocess.CompletedProcess[str]:
    """``cnitool COMMAND NETWORK /run/netns/CTR`` chrooted into the node root, run in the throw-away
    ``host_ns`` (so the bridge is made there, not on this machine), with the root's own CNI dirs.
    ``ip netns exec`` gives it a private mount namespace: the root gets /proc, /sys (of host_ns), /dev and
    the container's netns file there, and they vanish when cnitool exits."""
    script = ('R=$1 N=$2; shift 2; mount -t proc proc "$R/proc"; mount --rbind /sys "$R/sys"; '
              'mount --rbind /dev "$R/dev"; : > "$R/run/netns/$N"; mount --bind "/run/netns/$N" "$R/run/netns/$N"; '
              f'exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_PATH={CNI_BIN_DIR} '
              f'NETCONFPATH={CONF_DIR} "$@"')
    return run(["ip", "netns", "exec", host_ns, "sh", "-ec", script, "sh", str(root), ctr_ns,
                f"{CNI_BIN_DIR}/cnitool", command, network, f"/run/netns/{ctr_ns}"],
               check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def test_the_entry_point_installs_the_bundle_into_a_node_without_python_and_a_real_chain_is_logged(
        bundle: Bundle, node_cache: Path, node_root: Path, tmp_path: Path) -> None:
    root = node_root
    pid = os.getpid()
    network, bridge = f"cnilnode-{pid}", f"cnilnode{pid % 100000}"
    subnet = ipaddress.IPv4Network(f"10.98.{pid % 250 + 1}.0/24")
    host_ns, ctr_ns = f"cnilnode-{pid}-host", f"cnilnode-{pid}-ctr"

    def at(path: str) -> Path:
        return root / path.lstrip("/")

    for volume in HOST_PATH_VOLUMES:
        at(volume).mkdir(parents=True, exist_ok=True)
    at("/run/netns").mkdir(parents=True, exist_ok=True)
    # The node's CNI plugins: bullseye's own bridge and host-local (libc only), and the static cnitool.
    for plugin in ("bridge", "host-local"):
        shutil.copy2(node_cache / "cni" / plugin, at(f"{CNI_BIN_DIR}/{plugin}"))
    shutil.copy2(CNITOOL, at(f"{CNI_BIN_DIR}/cnitool"))
    conflist = at(f"{CONF_DIR}/10-{network}.conflist")
    conflist.write_text(json.dumps({
        "cniVersion": CNI_VERSION, "name": network,
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": str(subnet)}]]}}]}, indent=2) + "\n")
    original = conflist.read_bytes()
    assert pythons_in(root) == []

    entry_log = tmp_path / "entry-point.log"
    entry = start_entry_point(root, bundle.tarball, entry_log)
    try:
        wait_until_ready(entry, at(READY_FILE), entry_log)
        installed = f"{INSTALL_DIR}/{bundle.build_id}"
        assert (at(installed) / "BUILD_ID").read_text().strip() == bundle.build_id
        interpreter = f"{installed}/bin/python{PYTHON_VERSION}"
        assert at(f"{CNI_BIN_DIR}/logger").read_text().startswith(f"#!{interpreter} -IS\n")
        plugins = json.loads(conflist.read_text())["plugins"]
        assert [p["type"] for p in plugins] == ["bridge", "logger"]
        assert plugins[-1]["logFile"] == LOG_FILE

        with netns(host_ns), netns(ctr_ns):
            add = chrooted_cnitool(root, host_ns, "add", network, ctr_ns)
            assert add.returncode == 0, add.stderr
            [address] = ipv4_cidrs(ctr_ns, "eth0")
            assert ipaddress.IPv4Interface(address).network == subnet
            result = json.loads(add.stdout)
            assert result["cniVersion"] == CNI_VERSION
            assert [ip["address"] for ip in result["ips"]] == [address]
            check = chrooted_cnitool(root, host_ns, "check", network, ctr_ns)
            assert check.returncode == 0, check.stderr
            delete = chrooted_cnitool(root, host_ns, "del", network, ctr_ns)
            assert delete.returncode == 0, delete.stderr
            gone = run(["ip", "-n", ctr_ns, "link", "show", "dev", "eth0"], check=False)
            assert gone.returncode != 0, "DEL left the container's eth0"
    finally:
        stop(entry, entry_log)

    events = read_events(at(LOG_FILE))
    assert [e["cni"]["command"] for e in events] == ["ADD", "CHECK", "DEL"]
    netns_path = f"/run/netns/{ctr_ns}"
    for event in events:
        assert event["event"]["outcome"] == "success", event
        assert event["container"]["id"] == cnitool_container_id(netns_path)
        assert event["cni"]["netns"] == netns_path
        assert event["network"]["name"] == network
        assert event["cni"]["path"] == [CNI_BIN_DIR]
    assert events[0]["related"]["ip"] == [address.split("/")[0]]
    assert [ip["address"] for ip in events[0]["cni"]["prev_result"]["ips"]] == [address]

    # SIGTERM took the entry out again: the file is the original byte for byte; the launcher stays for
    # the DELs of pods set up with it; the bundle stays installed; still no Python besides the bundle's.
    assert conflist.read_bytes() == original
    assert not at(READY_FILE).exists()
    assert at(f"{CNI_BIN_DIR}/logger").is_file()
    assert pythons_in(root) == []
