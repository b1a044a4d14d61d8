"""The DaemonSet's image, built here, and its pod, run by a real engine against a real Kubernetes runtime.

``scripts/build-image.sh`` builds the image with podman from the cached bundle, on a base image made from the
Debian 11 minbase root of scripts/build-node-root.sh (``--base-rootfs``: ``podman import``; no registry is
reachable here), and writes it as an OCI archive with its SBOM. The archive is loaded into a private podman
store, and the pod template of deploy/kubernetes/cni-logger.yaml runs with ``podman kube play`` against a private
containerd with the CRI plugin (tests/system/cri/containerd.py): the template is unchanged but for the node's
paths (each host path and the mount at the same path, with the arguments and environment that name it, moved to
the test's own directories: what an overlay's node-paths.yaml does) and the node's port, and the image's name.

What podman 4.3.1 (bookworm) does not do as the kubelet does, and how the test stands in:
  * ``podman kube down`` stops the pod with a timeout of 0 (SIGKILL: the entry stays in the chain; the events
    log shows no SIGTERM). The test stops the pod as the kubelet does, SIGTERM with the pod's
    terminationGracePeriodSeconds (``podman pod stop --time``), then runs ``podman kube down``.
  * It turns an httpGet probe into a ``curl`` health check run inside the container (the image has no curl) and
    runs health checks only through systemd timers; readiness probes it ignores. The test asks /healthz and
    looks for the readiness file itself, as the kubelet would.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cni_logger.install.shim import read_config
from tests.harness.bundle import Bundle
from tests.harness.debian import foreign_reason
from tests.harness.plugin import REPO, read_events
from tests.system.cri.containerd import PrivateContainerd
from tests.system.test_containerd_cri import POD_NAME, POD_NAMESPACE, netns_of, sandbox_config, wait_until_loaded
from tests.system.test_node_without_python import mounts_under

pytestmark = pytest.mark.integration

BUILD_IMAGE = REPO / "scripts" / "build-image.sh"
NODE_ROOT_SCRIPT = REPO / "scripts" / "build-node-root.sh"
MANIFEST = REPO / "deploy" / "kubernetes" / "cni-logger.yaml"
POD = "cni-logger-node"
CONTAINER = f"{POD}-install"
"""podman names a pod's container <pod>-<container>."""
DEADLINE = 180.0
"""Seconds to wait for a pod to get ready or a file to change (a hang guard, not a speed check)."""


def run(argv: list[str], *, check: bool = True, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, **kw)
    if check:
        assert proc.returncode == 0, f"$ {' '.join(argv)}\nrc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def wait(what: str, probe: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def podman_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "podman's storage, containerd and network namespaces need root"
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup-system.sh)"
    for tool in ("podman", "runc"):
        reason = foreign_reason(shutil.which(tool) or tool, tool)
        if reason:
            return reason
    return None


# --- the images --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    archive: Path
    sbom: Path
    name: str
    bundle: Path
    build_id: str
    stderr: str


def build_image(bundle: Path, name: str, base_rootfs: Path, dist: Path) -> Image:
    env = {**os.environ, "BUNDLE": str(bundle), "IMAGE": name, "DIST": str(dist)}
    proc = run(["bash", str(BUILD_IMAGE), "--base-rootfs", str(base_rootfs)], env=env, timeout=900)
    archive = Path(proc.stdout.strip().splitlines()[-1])
    assert archive.parent == dist and archive.name.endswith(".oci.tar") and archive.is_file(), proc.stdout
    with tarfile.open(bundle) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/BUILD_ID") and m.name.count("/") == 1)
        f = tar.extractfile(member)
        assert f is not None
        build_id = f.read().decode().strip()
    return Image(archive, archive.with_name(archive.name.replace(".oci.tar", ".spdx.json")), name, bundle, build_id,
                 proc.stderr)


def newer_bundle(bundle: Path, work: Path) -> Path:
    """The bundle with one file changed, its manifest and BUILD_ID made again as scripts/bundle/assemble.sh makes
    them: a newer release, for the rolling update."""
    work.mkdir()
    run(["tar", "-C", str(work), "-xzf", str(bundle)])
    (folder,) = work.iterdir()
    init = folder / "lib" / "python3.11" / "site-packages" / "cni_logger" / "__init__.py"
    init.write_text(init.read_text() + "# the next release\n")
    (folder / "MANIFEST.sha256").unlink()
    (folder / "BUILD_ID").unlink()
    script = ('cd "$1" && find . -xtype f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum > "$2" && mv "$2" '
              'MANIFEST.sha256 && sha256sum < MANIFEST.sha256 | cut -c1-16 > BUILD_ID')
    run(["sh", "-c", script, "sh", str(folder), str(work / "manifest")])
    out = work / "dist" / bundle.name
    out.parent.mkdir()
    run(["sh", "-c", 'tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$2" | gzip -6n > "$3"', "sh",
         str(work), folder.name, str(out)])
    return out


@pytest.fixture(scope="module")
def base_rootfs() -> Path:
    """The Debian 11 minbase root (cached by scripts/build-node-root.sh) the base image is imported from."""
    reason = podman_unavailable()
    if reason:
        pytest.skip(reason)
    proc = run(["bash", str(NODE_ROOT_SCRIPT)], timeout=900)
    rootfs = Path(proc.stdout.strip().splitlines()[-1]) / "rootfs.tar"
    assert rootfs.is_file(), proc.stdout
    return rootfs


@pytest.fixture(scope="module")
def images(bundle: Bundle, base_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Image, Image]:
    """The image of the bundle, and of a newer bundle (one file changed: a new BUILD_ID)."""
    work = tmp_path_factory.mktemp("images")
    first = build_image(bundle.tarball, "cni-logger:0.1.0", base_rootfs, work / "dist")
    newer = newer_bundle(bundle.tarball, work / "newer")
    second = build_image(newer, "cni-logger:0.1.0-next", base_rootfs, work / "dist-next")
    assert first.build_id != second.build_id
    return first, second


# --- what the image holds ----------------------------------------------------------------------------------------


def oci_blob(archive: Path, digest: str) -> bytes:
    with tarfile.open(archive) as tar:
        f = tar.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
        assert f is not None
        return f.read()


def test_the_archive_holds_the_base_and_only_what_the_entry_point_needs(images: tuple[Image, Image],
                                                                       base_rootfs: Path) -> None:
    image = images[0]
    index = json.loads(_index(image.archive))
    (descriptor,) = index["manifests"]
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"].endswith("cni-logger:0.1.0")
    manifest = json.loads(oci_blob(image.archive, descriptor["digest"]))
    config = json.loads(oci_blob(image.archive, manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/cni-logger-node"]
    assert "CHECK_ROOT=/host" in config["config"]["Env"] and "CHECK_INSTALL_DIR=/cni-logger" in config["config"]["Env"]
    assert config["architecture"] == "amd64"
    # The base is one layer, the imported root as it is; every other layer is one COPY of the Containerfile.
    base_digest = hashlib.sha256(base_rootfs.read_bytes()).hexdigest()
    assert config["rootfs"]["diff_ids"][0] == f"sha256:{base_digest}"
    _, *added = manifest["layers"]
    files: dict[str, bytes] = {}
    for layer in added:
        with tarfile.open(fileobj=_bytes_io(oci_blob(image.archive, layer["digest"]))) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    files[member.name] = f.read()
    assert set(files) == {f"bundle/{image.bundle.name}", "usr/local/bin/cni-logger-node",
                          "usr/share/doc/cni-logger/sbom.spdx.json"}
    assert files[f"bundle/{image.bundle.name}"] == image.bundle.read_bytes(), "the cached bundle, as built"
    assert files["usr/local/bin/cni-logger-node"] == (REPO / "deploy/kubernetes/cni-logger-node.sh").read_bytes()
    assert json.loads(files["usr/share/doc/cni-logger/sbom.spdx.json"]) == json.loads(image.sbom.read_text()) | {
        "creationInfo": json.loads(files["usr/share/doc/cni-logger/sbom.spdx.json"])["creationInfo"]}
    assert " MB unpacked (" in image.stderr, "the build states the image's size"


def _index(archive: Path) -> bytes:
    with tarfile.open(archive) as tar:
        f = tar.extractfile("index.json")
        assert f is not None
        return f.read()


def _bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def test_the_sbom_lists_the_bundle_and_the_base_packages(images: tuple[Image, Image], bundle: Bundle,
                                                         base_rootfs: Path) -> None:
    image = images[0]
    doc = json.loads(image.sbom.read_text())
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    packages = {p["SPDXID"]: p for p in doc["packages"]}
    ids = set(packages)
    for rel in doc["relationships"]:
        assert rel["spdxElementId"] in ids | {"SPDXRef-DOCUMENT"} and rel["relatedSpdxElement"] in ids, rel
    purls = {ref["referenceLocator"] for p in doc["packages"] for ref in p.get("externalRefs", [])}
    # Every Python distribution the bundle carries, at its version.
    site = bundle.folder / "lib" / "python3.11" / "site-packages"
    for info in site.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").split("-")
        assert f"pkg:pypi/{name.lower().replace('_', '-')}@{version}" in purls, name
    (own,) = [p for p in doc["packages"] if p["name"] == "cni-logger" and p.get("externalRefs")]
    assert own["licenseDeclared"] == "Apache-2.0"
    version = run([str(bundle.python), "-I", "-c", "import platform; print(platform.python_version())"]).stdout.strip()
    assert f"pkg:generic/cpython@{version}" in purls
    (archive,) = [p for p in doc["packages"] if p["name"] == "cni-logger-bundle"]
    assert archive["checksums"] == [{"algorithm": "SHA256",
                                     "checksumValue": hashlib.sha256(bundle.tarball.read_bytes()).hexdigest()}]
    assert bundle.build_id in archive["comment"]
    # Every package installed in the base, from its own dpkg status.
    with tarfile.open(base_rootfs) as tar:
        f = tar.extractfile("./var/lib/dpkg/status")
        assert f is not None
        status = f.read().decode()
    installed = {(s.split("Package: ")[1].split("\n")[0], s.split("\nVersion: ")[1].split("\n")[0])
                 for s in status.split("\n\n") if "Package: " in s and "Status: install ok installed" in s}
    assert len(installed) > 50
    debs = {(p["name"], p["versionInfo"]) for p in doc["packages"] if any(
        r["referenceLocator"].startswith("pkg:deb/") for r in p.get("externalRefs", []))}
    assert debs == installed


# --- the pod, played by podman against containerd ---------------------------------------------------------------


class Podman:
    """podman with a private configuration and store (nothing under /etc/containers or /var/lib/containers)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("root", "runroot", "tmp"):
            (root / sub).mkdir()
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
""")
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/root"\nrunroot = "{root}/runroot"\n')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "CONTAINERS_"))}
        self.env.update(CONTAINERS_CONF=str(root / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(root / "storage.conf"))

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run(["podman", *args], env=self.env, check=check, timeout=timeout)


def relocated(value: Any, moves: dict[str, str]) -> Any:
    """``value`` with every host path under a key of ``moves`` (alone, as the start of a longer path, or as an
    ``--option=`` value) moved to the key's value."""
    if isinstance(value, dict):
        return {k: relocated(v, moves) for k, v in value.items()}
    if isinstance(value, list):
        return [relocated(v, moves) for v in value]
    if isinstance(value, str):
        prefix = value[: value.index("=") + 1] if value.startswith("--") and "=" in value else ""
        rest = value[len(prefix):]
        for old, new in moves.items():
            if rest == old or rest.startswith(old + "/"):
                return prefix + new + rest[len(old):]
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """The test's node: its directories, the pod files for each image, the podman that plays them."""

    podman: Podman
    ctd: PrivateContainerd
    dirs: dict[str, Path]
    port: int
    grace: int
    kube_files: dict[str, Path]
    last_logs: str = ""

    @property
    def install_dir(self) -> Path:
        return self.dirs["/opt/cni-logger"]

    @property
    def ready(self) -> Path:
        return self.dirs["/var/lib/cni-logger"] / "ready"

    @property
    def trail(self) -> Path:
        return self.dirs["/var/log/cni"] / "cni-logger.log"

    @property
    def launcher(self) -> Path:
        return self.ctd.bin_dir / "logger"

    def play(self, image: Image) -> None:
        self.podman("kube", "play", str(self.kube_files[image.name]))

    def logs(self) -> str:
        proc = self.podman("logs", CONTAINER, check=False)
        return proc.stdout + proc.stderr

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the pod's grace period, as the kubelet stops it; then ``kube down``."""
        self.podman("pod", "stop", "--time", str(self.grace), POD, timeout=self.grace + 60)
        state = self.podman("inspect", CONTAINER, "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}")
        self.last_logs = self.logs()
        assert state.stdout.split() == ["0", "false"], f"the watcher's exit status: {state.stdout}\n{self.last_logs}"
        any_file = next(iter(self.kube_files.values()))
        self.podman("kube", "down", str(any_file))

    def wait_ready(self) -> None:
        def ready() -> bool:
            state = self.podman("inspect", CONTAINER, "--format", "{{.State.Status}} {{.State.RestartCount}}",
                                check=False).stdout.split()
            assert state[:1] != ["exited"] or self.ready.exists(), f"the pod exited:\n{self.logs()}"
            return self.ready.exists()
        wait("the readiness file", ready)

    def healthz(self) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10) as answer:
            return answer.status, answer.read().decode()


@pytest.fixture
def node(private_containerd: PrivateContainerd, images: tuple[Image, Image], tmp_path: Path) -> Iterator[Node]:
    ctd = private_containerd
    # A short root: conmon's attach socket lives under it (sun_path is 108 bytes).
    podman = Podman(Path(tempfile.mkdtemp(prefix="cnil-kube-", dir="/tmp")))
    for image in images:
        loaded = podman("load", "-q", "-i", str(image.archive))
        assert f"localhost/{image.name}" in loaded.stdout, loaded.stdout
    dirs = {"/etc/cni/net.d": ctd.conf_dir, "/opt/cni/bin": ctd.bin_dir}
    for host_path in ("/opt/cni-logger", "/var/lib/cni-logger", "/var/log/cni", "/run/cni-logger"):
        dirs[host_path] = tmp_path / "node" / host_path.strip("/").replace("/", "-")
    port = free_port()
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")
    (ds,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] == "DaemonSet"]
    template = ds["spec"]["template"]
    kube_files = {}
    for image in images:
        spec = relocated(template["spec"], {k: str(v) for k, v in dirs.items()})
        (container,) = spec["containers"]
        assert container["image"] == "cni-logger:0.1.0"
        container["image"] = image.name
        container["args"] = [f"--metrics-address=:{port}" if a == "--metrics-address=:9740" else a
                             for a in container["args"]]
        for probe in ("livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] == 9740
            container[probe]["httpGet"]["port"] = port
        metadata = {"name": POD, "labels": template["metadata"]["labels"],
                    "annotations": {**template["metadata"]["annotations"], "prometheus.io/port": str(port)}}
        path = tmp_path / f"pod-{image.build_id}.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}))
        kube_files[image.name] = path
    node = Node(podman, ctd, dirs, port, int(template["spec"]["terminationGracePeriodSeconds"]), kube_files)
    try:
        yield node
    finally:
        podman("pod", "rm", "--force", "--time", "0", POD, check=False)
        podman("rmi", "--all", "--force", check=False)
        for point in reversed(mounts_under(podman.root)):
            run(["umount", "-l", point], check=False)
        shutil.rmtree(podman.root, ignore_errors=True)


def folder_intact(folder: Path) -> bool:
    proc = run(["sha256sum", "-c", "--quiet", "--strict", "MANIFEST.sha256"], cwd=folder, check=False)
    return proc.returncode == 0


def test_the_daemonset_pod_under_podman_installs_audits_updates_and_repairs(node: Node, images: tuple[Image, Image],
                                                                           tmp_path: Path) -> None:
    ctd = node.ctd
    old, new = images
    conflist = ctd.conf_dir / "10-cnilcri.conflist"
    original = conflist.read_bytes()
    wait_until_loaded(ctd, ["bridge", "portmap"])

    # 1. The pod starts: the bundle unpacked under the install dir, the launcher on it, the entry in, ready.
    node.play(old)
    node.wait_ready()
    folder = node.install_dir / old.build_id
    assert (folder / "BUILD_ID").read_text().strip() == old.build_id and folder_intact(folder)
    # thick mode: the plugin is the shim, whose in-process path is the folder's interpreter
    assert read_config(node.launcher.read_bytes())["python"] == f"{folder}/bin/python3.11"
    assert json.loads(conflist.read_text())["plugins"][-1] == {"type": "logger", "logFile": str(node.trail)}
    assert node.healthz()[0] == 200, "the liveness probe's /healthz answers"
    wait_until_loaded(ctd, ["bridge", "portmap", "logger"])
    logs = node.logs()
    assert f"installing the bundle into {folder}" in logs
    for line in logs.splitlines():
        assert json.loads(line)["@timestamp"], line

    # 2. A pod created afterwards, as the kubelet creates it, is in the trail with its Kubernetes fields.
    assert ctd.client is not None
    uid = str(uuid.uuid4())
    sandbox = ctd.client.run_pod_sandbox(sandbox_config(ctd, uid, tmp_path / "pods" / uid))
    ctd.sandboxes.append(sandbox)
    ctd.pod_netns.append(Path(netns_of(dict(ctd.client.pod_sandbox_status(sandbox).info))).name)
    (add,) = read_events(node.trail)
    assert add["cni"]["command"] == "ADD" and add["event"]["outcome"] == "success", add
    assert add["container"]["id"] == sandbox
    assert add["orchestrator"]["namespace"] == POD_NAMESPACE
    assert (add["orchestrator"]["resource"]["name"], add["orchestrator"]["resource"]["id"]) == (POD_NAME, uid)
    assert add["cni"]["served_by"] == "agent", add["cni"]  # the watcher in the pod served containerd's ADD

    # 3. Stopped as the kubelet stops it (SIGTERM): the entry is out within the grace period, the file as it was.
    node.stop()
    assert conflist.read_bytes() == original, node.last_logs
    left = [e for e in read_events(node.trail, coverage=True) if e["event"]["action"] == "logger-left"]
    assert left and "(shutdown)" in left[-1]["message"], left
    assert node.launcher.exists(), "the launcher stays: pods set up with it still need it for DEL"

    # 4. A rolling update: the newer image's bundle goes in beside the old one and the launcher names it; the
    #    pod created under the old bundle is torn down through the new chain, successfully.
    node.play(new)
    node.wait_ready()
    newer = node.install_dir / new.build_id
    assert folder_intact(newer)
    assert read_config(node.launcher.read_bytes())["python"] == f"{newer}/bin/python3.11"
    assert folder.exists(), "the old folder stays while the launcher named it at start"
    wait_until_loaded(ctd, ["bridge", "portmap", "logger"])
    ctd.client.stop_pod_sandbox(sandbox)
    dels = [e for e in read_events(node.trail) if e["cni"]["command"] == "DEL"]
    assert [(e["container"]["id"], e["event"]["outcome"], e["cni"]["served_by"]) for e in dels] == \
        [(sandbox, "success", "agent")], dels
    assert dels[0]["orchestrator"]["resource"]["id"] == uid
    node.stop()
    assert conflist.read_bytes() == original, node.last_logs

    # 5. A damaged bundle on the host is replaced, not reused (and the old build, no longer named, is removed).
    module = newer / "lib" / "python3.11" / "site-packages" / "cni_logger" / "__init__.py"
    module.write_bytes(b"\0" * len(module.read_bytes()))
    assert not folder_intact(newer)
    node.play(new)
    node.wait_ready()
    logs = node.logs()
    assert f"{newer} is damaged" in logs and "unpacking the bundle anew" in logs, logs
    assert folder_intact(newer)
    assert not folder.exists(), "the old build, which the launcher no longer names, is removed"
    assert sorted(p.name for p in node.install_dir.iterdir()) == [new.build_id]
    node.stop()
    assert conflist.read_bytes() == original, node.last_logs


# --- both architectures in one image index ------------------------------------------------------------------------


def arm64_inputs() -> tuple[Path, Path]:
    """The arm64 bundle (scripts/build-bundle.sh --arch arm64, which scripts/test.sh runs up front) and an arm64
    Debian 11 root (scripts/build-node-root-arm64.sh; or $CNI_LOGGER_ARM64_ROOTFS, a rootfs tarball)."""
    bundle = REPO / "dist" / "cni-logger-0.1.0-linux-arm64.tar.gz"
    if not bundle.is_file():
        pytest.skip(f"no arm64 bundle at {bundle} (scripts/build-bundle.sh --arch arm64)")
    if os.environ.get("CNI_LOGGER_ARM64_ROOTFS"):
        return bundle, Path(os.environ["CNI_LOGGER_ARM64_ROOTFS"])
    script = REPO / "scripts" / "build-node-root-arm64.sh"
    if not script.is_file():
        pytest.skip("no arm64 Debian root: scripts/build-node-root-arm64.sh is not here")
    proc = run(["bash", str(script)], check=False, timeout=1800)
    if proc.returncode != 0:
        pytest.skip(f"no arm64 Debian root (build-node-root-arm64.sh: {proc.stderr.strip()[-300:]})")
    return bundle, Path(proc.stdout.strip().splitlines()[-1]) / "rootfs.tar"


def test_one_image_index_holds_the_amd64_and_the_arm64_image(bundle: Bundle, base_rootfs: Path,
                                                             tmp_path: Path) -> None:
    """``--arch amd64,arm64``: an OCI image index with both images, each with its own bundle, base and SBOM (no
    RUN step, so the arm64 image builds here without emulation)."""
    arm64_bundle, arm64_rootfs = arm64_inputs()
    dist = tmp_path / "dist"
    proc = run(["bash", str(BUILD_IMAGE), "--arch", "amd64,arm64", "--base-rootfs", f"amd64={base_rootfs}",
                "--base-rootfs", f"arm64={arm64_rootfs}", "--bundle", f"amd64={bundle.tarball}",
                "--bundle", f"arm64={arm64_bundle}"], env={**os.environ, "DIST": str(dist)}, timeout=1800)
    archive = Path(proc.stdout.strip().splitlines()[-1])
    assert archive == dist / "cni-logger-image-0.1.0.oci.tar"
    (top,) = json.loads(_index(archive))["manifests"]
    assert top["annotations"]["org.opencontainers.image.ref.name"] == "cni-logger:0.1.0"
    index = json.loads(oci_blob(archive, top["digest"]))
    platforms = {}
    for descriptor in index["manifests"]:
        manifest = json.loads(oci_blob(archive, descriptor["digest"]))
        config = json.loads(oci_blob(archive, manifest["config"]["digest"]))
        platforms[descriptor["platform"]["architecture"]] = (config["architecture"], manifest["layers"])
    assert set(platforms) == {"amd64", "arm64"}
    for arch, tarball in (("amd64", bundle.tarball), ("arm64", arm64_bundle)):
        assert platforms[arch][0] == arch
        layers = platforms[arch][1]
        with tarfile.open(fileobj=_bytes_io(oci_blob(archive, layers[1]["digest"]))) as tar:
            f = tar.extractfile(f"bundle/{tarball.name}")
            assert f is not None and f.read() == tarball.read_bytes(), f"the {arch} image carries the {arch} bundle"
        sbom = json.loads((dist / f"cni-logger-image-0.1.0-{arch}.spdx.json").read_text())
        debs = [r["referenceLocator"] for p in sbom["packages"] for r in p.get("externalRefs", [])
                if r["referenceLocator"].startswith("pkg:deb/")]
        assert debs and all(d.endswith((f"?arch={arch}", "?arch=all")) for d in debs), arch
