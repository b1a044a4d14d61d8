"""The logger under a real Kubernetes runtime: containerd 1.6's CRI plugin, driven the way kubelet drives it.

A private containerd (tests/system/cri/containerd.py) runs with a bridge + host-local + portmap network;
``cni-logger install`` puts the logger last into that conflist while containerd runs, and containerd picks
the change up by itself. A pod sandbox then goes through RunPodSandbox, PodSandboxStatus, StopPodSandbox and
RemovePodSandbox over the CRI gRPC API, and the audit trail must name the pod (namespace, name, uid), the
address containerd reports for it, its port mappings and its annotations (every value masked), and the
audit commands must find it. ``cni-logger uninstall`` then restores the conflist byte for byte.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.plugin import read_events
from tests.system.conftest import NETWORK, SUBNET
from tests.system.cri.containerd import PrivateContainerd, wait_for

pytestmark = pytest.mark.integration

RELOAD_TIMEOUT = 30.0
"""Seconds for containerd to load a changed conflist (about 0.2 s here: it reacts to WRITE and RENAME)."""

POD_NAMESPACE = "cnilcri-shop"
POD_NAME = "web-7d4b9c-x2kq"
SECRET_VALUE = "hunter2-cnilcri-s3cr3t"
ANNOTATIONS = {
    "kubernetes.io/config.source": "api",
    "kubernetes.io/config.seen": "2026-11-29T05:00:00.000000000Z",
    "example.com/db-password": SECRET_VALUE,  # looks like a secret
    "example.com/owner-team": "payments-cnilcri",  # does not: masked all the same
}
EXPECTED_CNI_ARGS = {"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID",
                     "K8S_POD_UID"}


def cli(executable: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(executable), *args], capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


def loaded_plugin_types(ctd: PrivateContainerd) -> list[str] | None:
    """The plugin types of our network as containerd's CRI plugin has loaded it (CRI Status, verbose)."""
    assert ctd.client is not None
    info = ctd.client.status().info
    config = json.loads(info["cniconfig"])
    for net in config.get("Networks") or []:
        if net["Config"]["Name"] == NETWORK:
            return [plugin["Network"]["type"] for plugin in net["Config"]["Plugins"]]
    return None


def wait_until_loaded(ctd: PrivateContainerd, types: list[str]) -> None:
    wait_for(f"containerd to load {NETWORK} as {types}",
             lambda: True if loaded_plugin_types(ctd) == types else None, RELOAD_TIMEOUT)


def sandbox_config(ctd: PrivateContainerd, uid: str, log_dir: Path) -> Any:
    """What kubelet sends for a pod with two host ports, its labels and annotations."""
    pb = ctd.pb2
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=POD_NAME, uid=uid, namespace=POD_NAMESPACE, attempt=0),
        hostname=POD_NAME,
        log_directory=str(log_dir),
        dns_config=pb.DNSConfig(servers=["10.96.0.10"], searches=[f"{POD_NAMESPACE}.svc.cluster.local"],
                                options=["ndots:5"]),
        port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=18080),
                       pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=18053)],
        labels={"app": "web", "io.kubernetes.pod.name": POD_NAME, "io.kubernetes.pod.namespace": POD_NAMESPACE,
                "io.kubernetes.pod.uid": uid},
        annotations=ANNOTATIONS,
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=ctd.cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
    )


def netns_of(status_info: dict[str, str]) -> str:
    """The pod's network namespace path, from PodSandboxStatus's verbose info (the OCI runtime spec)."""
    spec = json.loads(status_info["info"])["runtimeSpec"]
    paths = [ns.get("path", "") for ns in spec["linux"]["namespaces"] if ns["type"] == "network"]
    assert len(paths) == 1 and paths[0], spec["linux"]["namespaces"]
    return str(paths[0])


def test_pod_sandbox_lifecycle_through_cri_is_audited(private_containerd: PrivateContainerd,
                                                       cni_logger_cli: Path, tmp_path: Path) -> None:
    ctd = private_containerd
    conflist = ctd.conf_dir / "10-cnilcri.conflist"
    original = conflist.read_bytes()
    log_file = tmp_path / "audit" / "cni-logger.log"
    state_dir = tmp_path / "cni-logger-state"
    wait_until_loaded(ctd, ["bridge", "portmap"])

    # 1. Install into the running node: launcher into the bin dir, the logger entry last in the conflist.
    install = cli(cni_logger_cli, "install", "--bin-dir", str(ctd.bin_dir), "--conf-dir", str(ctd.conf_dir),
                  "--log-file", str(log_file), "--state-dir", str(state_dir),
                  "--capabilities", "portMappings,io.kubernetes.cri.pod-annotations")
    assert install.returncode == 0, install.stderr
    entry = json.loads(conflist.read_text())["plugins"][-1]
    assert entry["type"] == "logger"
    assert entry["capabilities"] == {"portMappings": True, "io.kubernetes.cri.pod-annotations": True}
    wait_until_loaded(ctd, ["bridge", "portmap", "logger"])

    # 2. The pod, as kubelet runs it.
    assert ctd.client is not None
    uid = str(uuid.uuid4())
    config = sandbox_config(ctd, uid, tmp_path / "pods" / f"{POD_NAMESPACE}_{POD_NAME}_{uid}")
    sandbox = ctd.client.run_pod_sandbox(config)
    ctd.sandboxes.append(sandbox)
    status = ctd.client.pod_sandbox_status(sandbox)
    netns = netns_of(dict(status.info))
    ctd.pod_netns.append(Path(netns).name)
    assert status.status.state == ctd.pb2.SANDBOX_READY
    pod_ip = status.status.network.ip
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(SUBNET), pod_ip

    # 3. What containerd called: ADD on RunPodSandbox, DEL on StopPodSandbox, DEL again on RemovePodSandbox.
    def commands() -> list[str]:
        return [e["cni"]["command"] for e in read_events(log_file)]

    assert commands() == ["ADD"]
    ctd.client.stop_pod_sandbox(sandbox)
    assert commands() == ["ADD", "DEL"]
    ctd.client.remove_pod_sandbox(sandbox)
    events = read_events(log_file)
    assert [e["cni"]["command"] for e in events] == ["ADD", "DEL", "DEL"], events
    add, stop_del, remove_del = events
    for event in events:
        assert event["event"]["outcome"] == "success", event
        assert event["container"]["id"] == sandbox
        assert event["cni"]["container_id"] == sandbox
        assert event["cni"]["ifname"] == "eth0"
        assert event["cni"]["path"] == [str(ctd.bin_dir)]
        assert event["network"]["name"] == NETWORK
        # The pod's identity comes from CNI_ARGS, which containerd sends with every call.
        assert set(event["cni"]["args"]) == EXPECTED_CNI_ARGS, event["cni"]["args"]
        assert event["cni"]["args"] == {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": POD_NAMESPACE,
                                        "K8S_POD_NAME": POD_NAME, "K8S_POD_INFRA_CONTAINER_ID": sandbox,
                                        "K8S_POD_UID": uid}
        orchestrator = event["orchestrator"]
        assert orchestrator["type"] == "kubernetes"
        assert orchestrator["namespace"] == POD_NAMESPACE
        assert orchestrator["resource"]["type"] == "pod"
        assert orchestrator["resource"]["name"] == POD_NAME
        assert orchestrator["resource"]["id"] == uid
        # Capability arguments: containerd sends Go-cased port mappings ("HostPort", an empty "HostIP"),
        # recorded in the conventions' spelling; every annotation, each value masked while its key stays.
        runtime_config = event["cni"]["config"]["runtimeConfig"]
        assert runtime_config["portMappings"] == [
            {"hostPort": 18080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
            {"hostPort": 18053, "containerPort": 53, "protocol": "udp", "hostIP": ""},
        ], runtime_config
        assert runtime_config["io.kubernetes.cri.pod-annotations"] == dict.fromkeys(ANNOTATIONS, "[REDACTED]")

    # The address PodSandboxStatus reports is the one recorded on ADD and on the DEL that tears it down.
    assert add["cni"]["netns"] == netns
    assert add["related"]["ip"] == [pod_ip]
    assert add["orchestrator"]["resource"]["ip"] == [pod_ip]
    assert [ip["address"].split("/")[0] for ip in add["cni"]["prev_result"]["ips"]] == [pod_ip]
    assert stop_del["cni"]["netns"] == netns
    assert [ip["address"].split("/")[0] for ip in stop_del["cni"]["prev_result"]["ips"]] == [pod_ip]
    # RemovePodSandbox's DEL: the netns is gone already (empty CNI_NETNS) and libcni has no cached result.
    assert remove_del["cni"]["netns"] == "", remove_del["cni"]
    assert "prev_result" not in remove_del["cni"], remove_del["cni"]

    # No annotation value reaches the trail, nor containerd's log (where the plugin's stderr goes).
    trail = log_file.read_text()
    containerd_log = ctd.log_text()
    for value in ANNOTATIONS.values():
        assert value not in trail
    for event in events:
        assert event["event"]["id"] in containerd_log, "the plugin's stderr lines end up in containerd's log"
    assert SECRET_VALUE not in containerd_log

    # 4. The audit commands find the pod.
    who = cli(cni_logger_cli, "who-had", pod_ip, "--log-file", str(log_file), "--json")
    assert who.returncode == 0, who.stderr
    holders = [json.loads(line) for line in who.stdout.splitlines()]
    assert len(holders) == 1, holders
    holder = holders[0]
    assert (holder["address"], holder["namespace"], holder["pod"], holder["container_id"], holder["network"]) == (
        pod_ip, POD_NAMESPACE, POD_NAME, sandbox, NETWORK), holder
    assert (holder["from"], holder["until"], holder["ended_by"]) == (
        add["@timestamp"], stop_del["@timestamp"], "DEL"), "held from the ADD to StopPodSandbox's DEL"
    timeline = cli(cni_logger_cli, "timeline", sandbox[:12], "--log-file", str(log_file), "--json")
    assert timeline.returncode == 0, timeline.stderr
    attachments = [json.loads(line) for line in timeline.stdout.splitlines()]
    assert len(attachments) == 1, attachments
    attachment = attachments[0]
    assert (attachment["namespace"], attachment["pod"], attachment["container_id"]) == (
        POD_NAMESPACE, POD_NAME, sandbox), attachment
    assert [(e["command"], e["addresses"]) for e in attachment["events"]] == [
        ("ADD", [f"{pod_ip}/24"]), ("DEL", [f"{pod_ip}/24"]), ("DEL", [])], attachment["events"]
    # RemovePodSandbox's second DEL is neither a leak nor a "DEL without ADD": exit status 1, nothing found.
    leaks = cli(cni_logger_cli, "leaks", "--log-file", str(log_file), "--json")
    assert (leaks.returncode, leaks.stdout) == (1, ""), leaks

    # 5. Uninstall restores the conflist byte for byte, and containerd loads it again.
    uninstall = cli(cni_logger_cli, "uninstall", "--state-dir", str(state_dir))
    assert uninstall.returncode == 0, uninstall.stderr
    assert conflist.read_bytes() == original
    assert not (ctd.bin_dir / "logger").exists()
    wait_until_loaded(ctd, ["bridge", "portmap"])
