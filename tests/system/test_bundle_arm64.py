"""The arm64 bundle (``scripts/build-bundle.sh --arch arm64``: CPython cross-compiled in the Debian 11 build
root with Debian 11's own cross toolchain, glibc 2.31) on an arm64 Debian 11 node without Python.

Nothing here is arm64 hardware: the node is an arm64 debootstrap root (scripts/build-node-root-arm64.sh, cached
under /var/cache/cni-logger), and every arm64 program in it (its /bin/sh, getconf, the bundle's interpreter,
bullseye's arm64 bridge and host-local) runs under Debian's qemu-user-static through binfmt_misc
(scripts/lib/qemu-binfmt.sh), chrooted as the x86_64 node-root tests are. Where binfmt_misc cannot be used
(a container without it), the tests that run arm64 code skip, saying so; the ELF check needs no emulation
(readelf reads any architecture). Cold cost, on 2 busy cores: the cross build ~7 min (no PGO; the x86_64
interpreter, its build Python, must exist), the root ~5 min (debootstrap's second stage emulated); both cached.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.bundle import GLIBC_LIBRARIES, PYTHON_VERSION, Bundle, build, elf_files, unpack
from tests.harness.cnitool import CNITOOL, cnitool_container_id, ipv4_cidrs
from tests.harness.plugin import CNITOOL_RESULT_100, REPO, cni_env, parse_single_json, read_events
from tests.system.test_node_without_python import (
    CNI_BIN_DIR,
    CNI_VERSION,
    CONF_DIR,
    HOST_PATH_VOLUMES,
    READY_FILE,
    chrooted_cnitool,
    netns,
    start_entry_point,
    stop,
    wait_until_ready,
)

pytestmark = pytest.mark.integration

NODE_ROOT_SCRIPT = REPO / "scripts" / "build-node-root-arm64.sh"
BINFMT_LIB = REPO / "scripts" / "lib" / "qemu-binfmt.sh"
GLIBC_FLOOR = (2, 31)
INSTALL_DIR = "/opt/cni-logger"
LAUNCHER = "/opt/cni/bin/cni-logger"   # the unit tests' own launcher, beside the entry point's /opt/cni/bin/logger
LOG_FILE = "/var/log/cni/cni-logger.log"


def run(argv: list[str], *, check: bool = True, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[Any]:
    proc = subprocess.run(argv, capture_output=True, check=False, timeout=timeout, **kw)
    if check:
        assert proc.returncode == 0, f"$ {' '.join(argv)}\nrc={proc.returncode}\n{proc.stdout!r}\n{proc.stderr!r}"
    return proc


def readelf(flag: str, path: Path) -> str:
    return str(run(["readelf", "-W", flag, str(path)], text=True).stdout)


@pytest.fixture(scope="module")
def arm64_tarball() -> Path:
    """The arm64 bundle, built (or its cross-compiled interpreter reused from the cache: seconds)."""
    if os.geteuid() != 0:
        pytest.skip("building the bundle needs root (debootstrap, chroot)")
    if os.uname().machine != "x86_64":
        pytest.skip("the arm64 bundle is cross-compiled on x86_64")
    tarball = build("--arch", "arm64")
    assert tarball.name.endswith("-linux-arm64.tar.gz"), tarball
    return tarball


@pytest.fixture(scope="module")
def arm64_folder(arm64_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(arm64_tarball, tmp_path_factory.mktemp("arm64-bundle"))


@pytest.fixture(scope="module")
def emulation() -> str:
    """The binfmt_misc handler that runs aarch64 executables under qemu-aarch64-static (registered if need be)."""
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static is not installed (scripts/setup-system.sh)")
    proc = run(["bash", "-c", f'. "{BINFMT_LIB}" && binfmt_aarch64'], check=False, text=True)
    if proc.returncode != 0:
        pytest.skip(f"this machine cannot run arm64 programs: {proc.stderr.strip()}")
    return str(proc.stdout.strip())


@pytest.fixture(scope="module")
def node_cache(emulation: str) -> Path:
    """The cached pristine arm64 root tarball and bullseye's arm64 plugins (built on first use: debootstrap,
    second stage under qemu)."""
    for tool in ("debootstrap", "unshare", "chroot", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup-system.sh)")
    if not CNITOOL.is_file():
        pytest.skip(f"{CNITOOL} is not built (scripts/setup-system.sh)")
    proc = run(["bash", str(NODE_ROOT_SCRIPT)], check=False, timeout=1800, text=True)
    assert proc.returncode == 0, f"build-node-root-arm64.sh failed:\n{proc.stderr[-4000:]}"
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert (folder / "rootfs.tar").is_file() and (folder / "cni" / "bridge").is_file(), folder
    return folder


@pytest.fixture
def node_root(node_cache: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the pristine arm64 root, deleted afterwards."""
    root = tmp_path / "node"
    root.mkdir()
    run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(node_cache / "rootfs.tar")], timeout=300)
    yield root
    shutil.rmtree(root)


def chrooted(root: Path, argv: list[str], *, env: dict[str, str] | None = None, stdin: bytes = b"",
             ) -> subprocess.CompletedProcess[bytes]:
    """``argv`` chrooted into ``root`` (arm64, so under qemu), with /proc mounted in a mount namespace that
    dies with it; ``env`` is the whole environment (as a runtime gives a plugin)."""
    script = 'mount -t proc proc "$0/proc"; exec chroot "$0" "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", script,
                           str(root), *argv], input=stdin, capture_output=True, check=False, timeout=180,
                          env=env if env is not None else {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def install_bundle(root: Path, tarball: Path) -> str:
    """Unpack the bundle as the DaemonSet's entry point does (INSTALL_DIR/<BUILD_ID>/) and return that path."""
    staging = unpack(tarball, root / "tmp" / "bundle")
    build_id = (staging / "BUILD_ID").read_text().strip()
    target = root / INSTALL_DIR.lstrip("/") / build_id
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    return f"{INSTALL_DIR}/{build_id}"


# --- the bundle's files: built for arm64 against glibc <= 2.31 -----------------------------------------------


def test_every_elf_file_is_aarch64_and_needs_at_most_glibc_2_31_and_only_glibc_libraries(arm64_folder: Path) -> None:
    python = arm64_folder / "bin" / f"python{PYTHON_VERSION}"
    elves = elf_files(arm64_folder)
    assert python in elves
    newest: dict[Path, tuple[int, int]] = {}
    for elf in elves:
        name = str(elf.relative_to(arm64_folder))
        assert re.search(r"^\s*Machine:\s+AArch64$", readelf("-h", elf), re.MULTILINE), f"{name} is not AArch64"
        versions = {(int(a), int(b)) for a, b in re.findall(r"\bGLIBC_(\d+)\.(\d+)\b", readelf("-V", elf))}
        if versions:
            newest[elf] = max(versions)
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", elf)))
        assert needed <= GLIBC_LIBRARIES, f"{name} needs {sorted(needed - GLIBC_LIBRARIES)}"
    assert python in newest, "the interpreter's version needs name no glibc version"
    assert "[Requesting program interpreter: /lib/ld-linux-aarch64.so.1]" in readelf("-l", python)
    too_new = {str(p.relative_to(arm64_folder)): v for p, v in newest.items() if v > GLIBC_FLOOR}
    assert not too_new, f"these need a glibc newer than {GLIBC_FLOOR}: {too_new}"


def test_the_shim_is_a_static_aarch64_executable_that_runs_unconfigured(arm64_folder: Path) -> None:
    """Static: qemu-aarch64-static runs it with no arm64 root at all (no loader, no library to find)."""
    shim = arm64_folder / "libexec" / "cni-logger-shim"
    assert re.search(r"^\s*Machine:\s+AArch64$", readelf("-h", shim), re.MULTILINE)
    assert "Requesting program interpreter" not in readelf("-l", shim)
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static is not installed (scripts/setup-system.sh)")
    proc = run(["qemu-aarch64-static", str(shim)], check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and json.loads(proc.stdout)["msg"] == "cni-logger shim not configured", proc


def test_it_holds_the_same_files_as_the_x86_64_bundle(arm64_folder: Path, bundle: Bundle) -> None:
    """Same configuration as the native build (build-python.sh's Setup.local, the same trimming): the two
    folders list the same files, the architecture in the names of the extension modules and sysconfigdata
    aside, and the same project layer byte for byte."""
    x86 = bundle.folder

    def listing(folder: Path) -> set[str]:
        return {str(p.relative_to(folder)).replace("x86_64", "ARCH").replace("aarch64", "ARCH")
                for p in folder.rglob("*") if p.is_file()}

    assert listing(arm64_folder) == listing(x86)

    def project_layer(folder: Path) -> set[str]:
        lines = (folder / "MANIFEST.sha256").read_text().splitlines()
        return {line for line in lines if "/site-packages/" in line}

    assert project_layer(arm64_folder) == project_layer(x86)
    assert any(line.endswith("/site-packages/cni_logger/plugin.py") for line in project_layer(x86))


# --- on an arm64 Debian 11 node without Python, under qemu ---------------------------------------------------


def test_the_node_root_is_arm64_debian_11_with_glibc_2_31_and_no_python(node_root: Path) -> None:
    assert "bullseye" in (node_root / "etc" / "os-release").read_text()
    arch = chrooted(node_root, ["dpkg", "--print-architecture"])
    assert arch.returncode == 0 and arch.stdout.decode().strip() == "arm64", arch
    glibc = chrooted(node_root, ["getconf", "GNU_LIBC_VERSION"])
    assert glibc.stdout.decode().strip() == "glibc 2.31", glibc
    assert not [p for pattern in ("python*", "libpython*") for p in node_root.rglob(pattern) if not p.is_dir()]
    missing = chrooted(node_root, ["/bin/sh", "-c", "command -v python3 python"])
    assert missing.returncode != 0 and missing.stdout == b"", missing


def test_version_add_and_del_through_the_launcher_are_answered_and_logged_on_arm64(
        node_root: Path, arm64_tarball: Path) -> None:
    folder = install_bundle(node_root, arm64_tarball)
    python = f"{folder}/bin/python{PYTHON_VERSION}"

    where = chrooted(node_root, [python, "-I", "-c",
                                 "import platform, sys; print(platform.machine(), sys.prefix)"])
    assert where.returncode == 0, where
    assert where.stdout.decode().split() == ["aarch64", folder]

    said = chrooted(node_root, [f"{folder}/bin/cni-logger", "--version"])
    assert said.returncode == 0, said
    build_id = (node_root / folder.lstrip("/") / "BUILD_ID").read_text().strip()
    assert said.stdout.decode().strip().endswith(f"(build {build_id})")

    written = chrooted(node_root, [f"{folder}/bin/cni-logger", "launcher", LAUNCHER])
    assert written.returncode == 0, written
    assert (node_root / LAUNCHER.lstrip("/")).read_text().startswith(f"#!{python} -IS\n")

    version = chrooted(node_root, [LAUNCHER], env=cni_env("VERSION"), stdin=b'{"cniVersion": "1.0.0"}')
    assert version.returncode == 0, version
    assert "1.1.0" in parse_single_json(version.stdout)["supportedVersions"]

    conf = {"cniVersion": "1.0.0", "name": "arm64net", "type": "cni-logger", "logFile": LOG_FILE,
            "prevResult": CNITOOL_RESULT_100}
    add = chrooted(node_root, [LAUNCHER], env=cni_env("ADD"), stdin=json.dumps(conf).encode())
    assert add.returncode == 0, add
    assert parse_single_json(add.stdout) == CNITOOL_RESULT_100

    delete = chrooted(node_root, [LAUNCHER], env=cni_env("DEL"), stdin=json.dumps(conf).encode())
    assert delete.returncode == 0, delete
    assert delete.stdout.strip() == b"", delete

    events = read_events(node_root / LOG_FILE.lstrip("/"))
    assert [(e["cni"]["command"], e["event"]["outcome"]) for e in events] == [("ADD", "success"), ("DEL", "success")]
    assert {e["container"]["id"] for e in events} == {cni_env("ADD")["CNI_CONTAINERID"]}


def test_an_unknown_architecture_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("build-bundle.sh needs root")
    env = dict(os.environ, CNI_LOGGER_VENV=str(REPO / ".venv"), CNI_LOGGER_CACHE=str(tmp_path / "cache"),
               DIST=str(tmp_path / "dist"))
    proc = run(["bash", str(REPO / "scripts" / "build-bundle.sh"), "--arch", "riscv64"], check=False, text=True,
               env=env)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "--arch must be amd64 or arm64, not 'riscv64'" in proc.stderr, proc.stderr
    assert not (tmp_path / "dist").exists() and not list((tmp_path / "cache").glob("cpython-*"))


def test_the_daemonsets_entry_point_installs_the_arm64_bundle_and_a_real_arm64_chain_is_logged(
        node_cache: Path, node_root: Path, arm64_tarball: Path, tmp_path: Path) -> None:
    """deploy/kubernetes/cni-logger-node.sh against the arm64 root, as test_node_without_python.py does with the
    x86_64 one: it unpacks the bundle, checks it runs (VERSION, chrooted: under qemu) and execs `install --watch`
    on the bundle's interpreter, which inserts the logger into the node's conflist and writes the readiness
    file; then cnitool runs the chain (bullseye's arm64 bridge and host-local, then the logger) in throw-away
    network namespaces; SIGTERM takes the entry out again."""
    root = node_root
    pid = os.getpid()
    network, bridge = f"cnilarm-{pid}", f"cnilarm{pid % 100000}"
    subnet = ipaddress.IPv4Network(f"10.97.{pid % 250 + 1}.0/24")
    host_ns, ctr_ns = f"cnilarm-{pid}-host", f"cnilarm-{pid}-ctr"

    def at(path: str) -> Path:
        return root / path.lstrip("/")

    for volume in HOST_PATH_VOLUMES:
        at(volume).mkdir(parents=True, exist_ok=True)
    at("/run/netns").mkdir(parents=True, exist_ok=True)
    for plugin in ("bridge", "host-local"):
        shutil.copy2(node_cache / "cni" / plugin, at(f"{CNI_BIN_DIR}/{plugin}"))
        assert "AArch64" in readelf("-h", at(f"{CNI_BIN_DIR}/{plugin}"))
    shutil.copy2(CNITOOL, at(f"{CNI_BIN_DIR}/cnitool"))   # static, x86_64: the runtime's part, not the node's
    conflist = at(f"{CONF_DIR}/10-{network}.conflist")
    conflist.write_text(json.dumps({
        "cniVersion": CNI_VERSION, "name": network,
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": str(subnet)}]]}}]}, indent=2) + "\n")
    original = conflist.read_bytes()
    build_id = run(["tar", "-xzOf", str(arm64_tarball), "--wildcards", "*/BUILD_ID"], text=True).stdout.strip()

    entry_log = tmp_path / "entry-point.log"
    entry = start_entry_point(root, arm64_tarball, entry_log)
    try:
        wait_until_ready(entry, at(READY_FILE), entry_log)
        interpreter = f"{INSTALL_DIR}/{build_id}/bin/python{PYTHON_VERSION}"
        assert "AArch64" in readelf("-h", at(interpreter))
        assert at(f"{CNI_BIN_DIR}/logger").read_text().startswith(f"#!{interpreter} -IS\n")
        plugins = json.loads(conflist.read_text())["plugins"]
        assert [p["type"] for p in plugins] == ["bridge", "logger"]

        with netns(host_ns), netns(ctr_ns):
            add = chrooted_cnitool(root, host_ns, "add", network, ctr_ns)
            assert add.returncode == 0, add.stderr
            [address] = ipv4_cidrs(ctr_ns, "eth0")
            assert ipaddress.IPv4Interface(address).network == subnet
            assert [ip["address"] for ip in json.loads(add.stdout)["ips"]] == [address]
            check = chrooted_cnitool(root, host_ns, "check", network, ctr_ns)
            assert check.returncode == 0, check.stderr
            delete = chrooted_cnitool(root, host_ns, "del", network, ctr_ns)
            assert delete.returncode == 0, delete.stderr
    finally:
        stop(entry, entry_log)

    events = read_events(at(LOG_FILE))
    assert [e["cni"]["command"] for e in events] == ["ADD", "CHECK", "DEL"]
    for event in events:
        assert event["event"]["outcome"] == "success", event
        assert event["container"]["id"] == cnitool_container_id(f"/run/netns/{ctr_ns}")
        assert event["network"]["name"] == network
    assert events[0]["related"]["ip"] == [address.split("/")[0]]
    assert conflist.read_bytes() == original
    assert not at(READY_FILE).exists()
