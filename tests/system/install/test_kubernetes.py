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
from tests.harness import kustomize as harness_kustomize
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


CHECK_ROOT = "/host"
"""Where the image's entry point runs its VERSION check (CHECK_ROOT in deploy/Containerfile)."""
CHECK_MOUNTS = {"/host/usr": "/usr", "/host/lib": "/lib", "/host/lib64": "/lib64"}
"""The check root's host directories: the dynamic loader and shared libraries, nothing else of the host."""


def pod_paths(ds: dict[str, Any]) -> tuple[dict[str, Any], argparse.Namespace, dict[str, str], list[dict[str, Any]]]:
    """The container, its installer arguments, its volumes' host paths and its mounts."""
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container, install_args(container), {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}, \
        container["volumeMounts"]


def check_least_privilege_mounts(ds: dict[str, Any]) -> None:
    """Each host path is mounted at its own path (the installer's paths are then the host's, no chroot into the
    host's root); only the directories the pod reads or writes are mounted; the check root holds the host's
    loader and libraries and the bundle folder, read-only."""
    container, args, host_paths, mounts = pod_paths(ds)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "/" not in host_paths.values(), "the host's root is not mounted"
    for path in host_paths.values():
        assert path.rstrip("/") not in ("/etc", "/var", "/var/lib", "/run", "/home", "/root", "/var/lib/kubelet"), path
    assert {m["name"] for m in mounts} == set(host_paths), "every hostPath is mounted"
    own = {m["mountPath"]: m for m in mounts if not m["mountPath"].startswith(CHECK_ROOT + "/")}
    for path, mount in own.items():
        assert host_paths[mount["name"]] == path, f"{mount['name']} is mounted at {path}, not at its host path"
    writable = {path for path, m in own.items() if not m.get("readOnly")}
    assert {args.bin_dir, args.conf_dir, args.state_dir, os.path.dirname(args.log_file), env["INSTALL_DIR"],
            os.path.dirname(DROPPED_DIR)} == writable
    assert os.path.dirname(args.ready_file) == args.state_dir
    assert own[args.results_cache].get("readOnly") is True, "libcni's cache is only read"
    checks = {m["mountPath"]: m for m in mounts if m["mountPath"].startswith(CHECK_ROOT + "/")}
    assert all(m.get("readOnly") is True for m in checks.values()), "the check root is read-only"
    assert {path: host_paths[checks[path]["name"]] for path in CHECK_MOUNTS} == CHECK_MOUNTS
    assert set(checks) == {*CHECK_MOUNTS, f"{CHECK_ROOT}/cni-logger"}
    assert host_paths[checks[f"{CHECK_ROOT}/cni-logger"]["name"]] == env["INSTALL_DIR"]
    assert env["CNI_BIN_DIR"] == args.bin_dir
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe == ["test", "-e", args.ready_file]


def test_the_pod_mounts_only_what_it_reads_and_writes_at_the_host_paths() -> None:
    check_least_privilege_mounts(daemonset())


def test_the_pod_holds_no_capability_that_reads_around_permissions() -> None:
    container = daemonset()["spec"]["template"]["spec"]["containers"][0]
    context = container["securityContext"]
    assert context["privileged"] is False and context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert set(context["capabilities"]["add"]) == {"SYS_CHROOT", "CHOWN", "FOWNER"}


def test_containerfile_ships_the_bundle_and_the_entry_point() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert "ARG BASE_IMAGE=" in text and "FROM ${BASE_IMAGE}" in text, "the base is a build argument"
    assert "COPY --chmod=0755 cni-logger-node.sh /usr/local/bin/cni-logger-node" in text
    assert "COPY --chmod=0644 bundle/ /bundle/" in text
    assert 'ENTRYPOINT ["/usr/local/bin/cni-logger-node"]' in text
    assert "ENV CHECK_ROOT=/host CHECK_INSTALL_DIR=/cni-logger" in text
    assert not [line for line in text.splitlines() if line.startswith("RUN")], "no RUN: no runtime, any arch"
    assert not (DEPLOY / "Dockerfile").exists(), "one way to build the interpreter: the bundle's"


KUSTOMIZE = DEPLOY / "kubernetes"
OVERLAYS = ("k3s", "gke", "crio")
DEFAULT_NODE_PATHS = {"cniConfDir": "/etc/cni/net.d", "cniBinDir": "/opt/cni/bin", "installDir": "/opt/cni-logger",
                      "cniResultsCache": "/var/lib/cni/results"}
"""The base's node paths, which an overlay's node-paths.yaml replaces."""


def kubectl_kustomize(path: Path) -> list[dict[str, Any]] | None:
    """``kubectl kustomize PATH``, parsed; None without kubectl."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def kustomize(path: Path) -> list[dict[str, Any]]:
    """PATH rendered by kubectl's kustomize, or without kubectl by tests/harness/kustomize.py."""
    pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")
    rendered = kubectl_kustomize(path)
    return rendered if rendered is not None else harness_kustomize.render(path)


@pytest.mark.parametrize("path", ["base", *(f"overlays/{o}" for o in ("k3s", "gke", "crio"))])
def test_the_stand_in_renders_what_kubectl_kustomize_renders(path: str) -> None:
    pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")
    rendered = kubectl_kustomize(KUSTOMIZE / path)
    if rendered is None:
        pytest.skip("kubectl is not installed: the overlays are rendered by tests/harness/kustomize.py alone")
    assert by_kind(harness_kustomize.render(KUSTOMIZE / path)) == by_kind(rendered)


def by_kind(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents in a fixed order (kustomize orders its output by kind)."""
    return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))


def node_paths(overlay: str) -> dict[str, str]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")
    data: dict[str, str] = yaml.safe_load((KUSTOMIZE / "overlays" / overlay / "node-paths.yaml").read_text())["data"]
    return data


def with_paths(value: Any, paths: dict[str, str]) -> Any:
    """``value`` with every string that is a default node path (or an ``--option=`` of one) set to ``paths``'."""
    if isinstance(value, dict):
        return {k: with_paths(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [with_paths(v, paths) for v in value]
    if isinstance(value, str):
        for key, default in DEFAULT_NODE_PATHS.items():
            if value == default:
                return paths[key]
            if value.startswith("--") and value.endswith("=" + default):
                return value[: -len(default)] + paths[key]
    return value


def test_the_base_renders_the_manifest_file() -> None:
    assert (KUSTOMIZE / "cni-logger.yaml").resolve() == (KUSTOMIZE / "base" / "cni-logger.yaml").resolve()
    assert by_kind(kustomize(KUSTOMIZE / "base")) == by_kind(documents())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_sets_every_node_path_from_one_place(overlay: str) -> None:
    """The overlay's output is the base's with the node paths of its node-paths.yaml wherever the base has
    the defaults (arguments, environment, hostPath volumes, mounts), and nothing else changed; its pod keeps
    the least-privilege mounts; its ConfigMap is not part of the output."""
    paths = node_paths(overlay)
    assert set(paths) == set(DEFAULT_NODE_PATHS) and paths != DEFAULT_NODE_PATHS
    rendered = kustomize(KUSTOMIZE / "overlays" / overlay)
    assert by_kind(rendered) == by_kind(with_paths(documents(), paths))
    (ds,) = [d for d in rendered if d["kind"] == "DaemonSet"]
    container, args, _, _ = pod_paths(ds)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (args.conf_dir, args.bin_dir, env["INSTALL_DIR"], args.results_cache) == (
        paths["cniConfDir"], paths["cniBinDir"], paths["installDir"], paths["cniResultsCache"])
    check_least_privilege_mounts(ds)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_validates_against_the_api_schemas(overlay: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip install kubernetes-validate)")
    for doc in kustomize(KUSTOMIZE / "overlays" / overlay):
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


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
