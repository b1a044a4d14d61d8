"""The Kubernetes deployment: manifests valid against the API schemas, consistent with the installer's
options and with their own mounts; the image's entry point sound (and, with --run-slow, run for real)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cni_logger.filesink import DROPPED_DIR
from cni_logger.install import cli as install_cli
from tests.harness.bundle import PYTHON_VERSION, Bundle
from tests.harness.nodes import shape
from tests.harness.plugin import REPO

DEPLOY = REPO / "deploy"
MANIFEST = DEPLOY / "kubernetes" / "cni-logger.yaml"
ENTRYPOINT = DEPLOY / "kubernetes" / "cni-logger-node.sh"
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")
"""The oldest Kubernetes still commonly run and the newest the validator knows."""


def documents() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def daemonset() -> dict[str, Any]:
    (ds,) = [d for d in documents() if d["kind"] == "DaemonSet"]
    return ds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_api_schemas(version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip install kubernetes-validate)")
    docs = documents()
    assert {d["kind"] for d in docs} == {"Namespace", "ServiceAccount", "ResourceQuota", "DaemonSet"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_no_api_access_is_granted() -> None:
    docs = documents()
    assert not [d for d in docs if d["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    pod = daemonset()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


def test_daemonset_runs_on_every_node_before_pod_networking() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]
    namespace = next(d for d in documents() if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def install_args(container: dict[str, Any]) -> argparse.Namespace:
    """The container's arguments as the entry point passes them to ``cni-logger install --watch``."""
    parser = argparse.ArgumentParser()
    install_cli.register(parser.add_subparsers())
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    return parser.parse_args(["install", "--watch", "--bin-dir", env["CNI_BIN_DIR"], *container["args"]])


def test_installer_paths_are_host_paths_mounted_under_host() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = install_args(container)
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert set(mounts) == set(host_paths), "every hostPath is mounted"
    for name, path in host_paths.items():
        assert mounts[name]["mountPath"] == ("/host" if path == "/" else "/host" + path), name
    writable = {path for name, path in host_paths.items() if not mounts[name].get("readOnly")}
    assert mounts["host-root"]["readOnly"] is True
    assert {"/opt/cni/bin", "/etc/cni/net.d", "/var/log/cni", "/var/lib/cni-logger", "/opt/cni-logger"} <= writable
    assert args.watch and args.bin_dir in writable and args.conf_dir in writable
    assert args.state_dir in writable
    assert os.path.dirname(args.log_file) in writable
    assert os.path.dirname(args.ready_file) == args.state_dir
    assert os.path.dirname(DROPPED_DIR) in writable, "the watcher claims and removes the plugin's counts of lost events"
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe == ["test", "-e", "/host" + args.ready_file]


def test_dockerfile_ships_the_entry_point() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/kubernetes/cni-logger-node.sh /usr/local/bin/cni-logger-node" in text
    assert 'ENTRYPOINT ["/usr/local/bin/cni-logger-node"]' in text
    # The bundle is built in Debian 11 by the very scripts scripts/build-bundle.sh runs.
    assert "FROM debian:bullseye AS python" in text
    for script in ("fetch-python-source.sh", "build-python.sh", "assemble.sh"):
        assert f"scripts/bundle/{script}" in text


def test_entry_point_is_valid_posix_shell() -> None:
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            proc = subprocess.run([shell, "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False)
            assert proc.returncode == 0, proc.stderr
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-s", "sh", str(ENTRYPOINT)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stdout


def test_entry_point_end_to_end_with_the_host_root_at_slash(tmp_path: Path, bundle: Bundle) -> None:
    """The image's entry point with HOST_ROOT=/ (this machine plays the node; every path is under tmp):
    installs the bundle as <install dir>/<build id>, removes an older build no launcher names (keeping
    one that the launcher names), writes a launcher on the bundle's interpreter that answers VERSION,
    inserts the entry, and takes it out on SIGTERM. The host's Python is not used."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    net_d, bin_dir, opt = tmp_path / "net.d", tmp_path / "bin", tmp_path / "opt"
    net_d.mkdir()
    (net_d / "10-flannel.conflist").write_bytes(shape("10-flannel.conflist"))
    unused, legacy, foreign = opt / "00000000deadbeef", opt / "venv-0123", opt / "keep-me"
    for folder in (unused, legacy, foreign):
        (folder / "bin").mkdir(parents=True)
    ready = tmp_path / "state" / "ready"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOST_ROOT": "/", "INSTALL_DIR": str(opt),
           "CNI_BIN_DIR": str(bin_dir), "BUNDLE": str(bundle.tarball)}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(["sh", str(ENTRYPOINT), f"--conf-dir={net_d}", f"--state-dir={tmp_path / 'state'}",
                                 f"--ready-file={ready}", "--interval=0.5"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def wait_ready(proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 300
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), proc.communicate(timeout=10)[1] if proc.poll() is not None else "not ready"

    def stop(proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)           # the shell exec'd chroot, which exec'd the installer
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err

    # A launcher left by an earlier build names `legacy`: that folder stays until the launcher changes.
    bin_dir.mkdir()
    (bin_dir / "logger").write_text(f"#!{legacy}/bin/python3.11 -IS\n# cni-logger CNI plugin launcher\n")
    proc = start()
    try:
        wait_ready(proc)
        installed = opt / bundle.build_id
        assert (installed / "BUILD_ID").read_text().strip() == bundle.build_id
        assert not unused.exists() and legacy.exists() and foreign.exists()
        assert not list(opt.glob(".unpack-*"))
        launcher = (bin_dir / "logger").read_text()
        assert launcher.startswith(f"#!{installed / 'bin' / f'python{PYTHON_VERSION}'} -IS\n")
        version = subprocess.run([str(bin_dir / "logger")], input=b'{"cniVersion": "1.0.0"}',
                                 env={"CNI_COMMAND": "VERSION"}, capture_output=True, timeout=30, check=False)
        assert version.returncode == 0 and b"supportedVersions" in version.stdout, version.stderr
        assert b'"logger"' in (net_d / "10-flannel.conflist").read_bytes()
        stop(proc)
        assert (net_d / "10-flannel.conflist").read_bytes() == shape("10-flannel.conflist")

        # The next start reuses the installed folder and, the launcher now naming it, drops `legacy`.
        mtime = installed.stat().st_mtime_ns
        proc = start()
        wait_ready(proc)
        assert installed.stat().st_mtime_ns == mtime
        assert not legacy.exists() and foreign.exists()
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
