"""cni-logger under Podman 4 with its CNI backend (runc, busybox --rootfs, private config and storage).

Sandbox workarounds (see docs in the reference notes): runc instead of crun (hybrid cgroups), lowered default
ulimits (no CAP_SYS_RESOURCE), cgroupfs, file events logger, vfs storage in a temp root, and podman run via
``nsenter --net=/run/netns/<host>`` (``ip netns exec`` remounts /sys and hides the cgroup mounts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cnitool import (
    CniSandbox,
    Network,
    Proc,
    canonical,
    dig,
    load_example,
    result_mismatches,
    retarget_example,
    run,
)
from tests.harness.debian import foreign_reason

PODMAN_TIMEOUT = 120.0
"""Seconds for one podman call (a run takes ~0.4 s here; the first one also initialises the storage)."""
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Podman:
    sandbox: CniSandbox
    root: Path
    rootfs: Path
    env: dict[str, str]
    network_dir: Path

    def __call__(self, *args: str, timeout: float = PODMAN_TIMEOUT) -> Proc:
        argv = ["nsenter", f"--net={self.sandbox.netns_path(self.sandbox.host_ns)}", "podman", *args]
        return run(argv, env=self.env, timeout=timeout)

    def add_network(self, conflist: dict[str, Any]) -> None:
        (self.network_dir / f"{conflist['name']}.conflist").write_text(json.dumps(conflist, indent=3))


def podman_unavailable_reason() -> str | None:
    for tool in ("podman", "runc", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup-system.sh installs it unless WITH_PODMAN=0)"
    for tool in ("podman", "runc"):
        reason = foreign_reason(shutil.which(tool) or tool, tool)
        if reason:
            return reason
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        return "/bin/busybox missing (apt-get install busybox-static)"
    if b"/ld-linux" in busybox.read_bytes()[:8192]:
        return "/bin/busybox is dynamically linked; the --rootfs needs busybox-static"
    return None


def make_rootfs(path: Path) -> None:
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (path / sub).mkdir(parents=True)
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    for applet in ("sh", "ip", "true", "cat"):
        (path / "bin" / applet).symlink_to("busybox")


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True)


@pytest.fixture
def podman(sandbox: CniSandbox) -> Iterator[Podman]:
    reason = podman_unavailable_reason()
    if reason:
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    # A short root: conmon's attach socket lives under it (sun_path is 108 bytes); with pytest's long tmp
    # paths podman only notices the container's exit after conmon's 20 s timeout.
    root = Path(tempfile.mkdtemp(prefix=f"{sandbox.names.prefix}-podman-", dir="/tmp"))
    network_dir = root / "cni"
    for sub in ("cni", "root", "runroot", "tmp"):
        (root / sub).mkdir()
    rootfs = sandbox.tmp / "rootfs"
    make_rootfs(rootfs)
    (root / "containers.conf").write_text(f"""\
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
runtime = "runc"
tmp_dir = "{root}/tmp"
static_dir = "{root}/root/libpod"
volume_path = "{root}/root/volumes"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{sandbox.bin_dir}"]
network_config_dir = "{network_dir}"
""")
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/root"\nrunroot = "{root}/runroot"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "CONTAINERS_"))}
    env.update(CONTAINERS_CONF=str(root / "containers.conf"),
               CONTAINERS_STORAGE_CONF=str(root / "storage.conf"))
    pod = Podman(sandbox, root, rootfs, env, network_dir)

    def teardown() -> None:
        problems = []
        leftover = pod("rm", "--all", "--force", "--time", "0", timeout=60)
        if leftover.rc != 0:
            problems.append(f"podman rm --all: {leftover.stderr.strip()}")
        for point in mounts_under(root):
            if run(["umount", "-l", point]).rc != 0:
                problems.append(f"could not unmount {point}")
        # Network namespaces Podman created for our containers (known from the audit log) must be gone.
        for net in sandbox.networks:
            for ev in net.events():
                netns = dig(ev, "cni.netns", "")
                if netns.startswith("/run/netns/netns-") and Path(netns).exists():
                    problems.append(f"podman left {netns} behind (removed)")
                    run(["ip", "netns", "del", Path(netns).name])
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        if problems:
            raise RuntimeError("; ".join(problems))

    sandbox.extra_cleanup.append(("podman teardown", teardown))
    info = pod("info", "--format", "{{.Host.NetworkBackend}} {{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}}")
    if info.rc != 0 or info.stdout.split() != ["cni", "vfs", "runc"]:
        reason = f"podman cannot run here: {info.describe()}"
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    yield pod


@pytest.mark.parametrize("cni_version", ["0.4.0", "1.0.0"])
def test_podman_run_records_add_and_del(sandbox: CniSandbox, network: Network, podman: Podman,
                                        cni_version: str) -> None:
    net = network
    conflist = retarget_example(load_example("podman/87-podman-bridge.conflist"), net)
    conflist["cniVersion"] = cni_version
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "firewall", "tuning", "logger"]
    podman.add_network(conflist)
    name = f"{sandbox.names.prefix}-web"
    cidfile = sandbox.tmp / "cid"

    proc = podman("run", "--rm", "--name", name, "--cidfile", str(cidfile), "--network", net.name,
                  "--rootfs", str(podman.rootfs), "/bin/sh", "-c", "ip -4 -o addr show dev eth0")
    assert proc.rc == 0, proc.describe()
    seen = re.findall(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", proc.stdout)
    assert len(seen) == 1, proc.stdout
    container_id = cidfile.read_text().strip()
    assert HEX64.match(container_id), container_id

    events = net.events()
    assert [dig(e, "cni.command") for e in events] == ["ADD", "DEL"], events
    for ev in events:
        assert ev["event"]["outcome"] == "success", ev
        assert ev["container"]["id"] == container_id
        assert dig(ev, "cni.container_id") == container_id
        assert dig(ev, "cni.args.K8S_POD_NAME") == name
        assert dig(ev, "orchestrator.resource.name") == name
        assert dig(ev, "orchestrator.type") != "kubernetes"       # Podman sends no K8S_POD_NAMESPACE/UID
        assert dig(ev, "network.name") == net.name
        assert dig(ev, "cni.ifname") == "eth0"
        assert dig(ev, "cni.version") == cni_version
        assert re.match(r"^/run/netns/netns-[0-9a-f-]{36}$", dig(ev, "cni.netns", "")), ev
    add_ev, del_ev = events
    assert dig(add_ev, "cni.netns") == dig(del_ev, "cni.netns")
    # The address recorded on ADD is the one the container saw on its eth0.
    assert [ip["address"] for ip in dig(add_ev, "cni.prev_result.ips", [])] == seen
    assert dig(add_ev, "related.ip") == [seen[0].split("/")[0]]
    # DEL carries the cached final result of the chain, which is what the logger passed on at ADD.
    assert result_mismatches(canonical(dig(del_ev, "cni.prev_result")),
                             canonical(dig(add_ev, "cni.prev_result"))) == []
    # Podman cleaned up after --rm: no cached result, no netns for this container.
    assert not any(net.cache_file(container_id, "eth0").parent.glob(f"{net.name}-{container_id}-*"))
    assert not Path(dig(add_ev, "cni.netns")).exists()
