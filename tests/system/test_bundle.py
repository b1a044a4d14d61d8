"""The relocatable bundle (scripts/build-bundle.sh): it needs nothing from a node but glibc >= 2.31 and
/proc, runs from wherever it is unpacked, and carries only what the plugin and operator commands use."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from tests.harness.bundle import GLIBC_LIBRARIES, PYTHON_VERSION, Bundle, build, elf_files, unpack
from tests.harness.plugin import CNITOOL_RESULT_100, cni_env, parse_single_json, read_events
from tests.system.install.test_watch_metrics import free_port

GLIBC_FLOOR = (2, 31)
"""Debian 11 and Ubuntu 20.04: the oldest glibc the bundle supports (docs/bundle.md)."""
MAX_UNPACKED_BYTES = 40 * 1000 * 1000


def objdump(flag: str, path: Path) -> str:
    """objdump's output; a static executable (the shim) has no dynamic symbols, which objdump -T fails on."""
    proc = subprocess.run(["objdump", flag, str(path)], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0 or "not a dynamic object" in proc.stderr, proc.stderr
    return proc.stdout


def test_every_elf_file_needs_at_most_glibc_2_31_and_only_glibc_libraries(bundle: Bundle) -> None:
    elves = elf_files(bundle.folder)
    assert bundle.python in elves
    newest: dict[Path, tuple[int, int]] = {}
    for elf in elves:
        versions = {(int(a), int(b)) for a, b in re.findall(r"\bGLIBC_(\d+)\.(\d+)", objdump("-T", elf))}
        if versions:
            newest[elf] = max(versions)
        needed = set(re.findall(r"^\s*NEEDED\s+(\S+)$", objdump("-p", elf), re.MULTILINE))
        assert needed <= GLIBC_LIBRARIES, f"{elf.relative_to(bundle.folder)} needs {sorted(needed - GLIBC_LIBRARIES)}"
    assert bundle.python in newest, "the interpreter's dynamic symbols name no glibc version"
    too_new = {str(p.relative_to(bundle.folder)): v for p, v in newest.items() if v > GLIBC_FLOOR}
    assert not too_new, f"these need a glibc newer than {GLIBC_FLOOR}: {too_new}"


def test_the_shim_is_a_static_executable_that_runs_unconfigured(bundle: Bundle) -> None:
    """libexec/cni-logger-shim (built in the Debian 11 root by scripts/build-shim.sh) is where install --agent
    takes it from; static, it needs no loader and no library, and before the installer configures it, it says so."""
    shim = bundle.folder / "libexec" / "cni-logger-shim"
    assert shim.is_file() and os.access(shim, os.X_OK)
    assert "INTERP" not in objdump("-p", shim) and "NEEDED" not in objdump("-p", shim)
    proc = subprocess.run([str(shim)], stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=60)
    assert proc.returncode == 1 and json.loads(proc.stdout)["msg"] == "cni-logger shim not configured", proc


def test_the_dynamic_loader_resolves_every_library_of_the_interpreter(bundle: Bundle) -> None:
    proc = subprocess.run(["ldd", str(bundle.python)], capture_output=True, text=True, check=True, timeout=60)
    assert "not found" not in proc.stdout, proc.stdout
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", proc.stdout, re.MULTILINE))
    assert "libc.so.6" in resolved, proc.stdout
    assert set(resolved) <= GLIBC_LIBRARIES, proc.stdout
    assert all(re.match(r"/(usr/)?lib(64)?/", path) for path in resolved.values()), proc.stdout


def test_only_what_the_plugin_and_the_operator_commands_use_is_inside(bundle: Bundle) -> None:
    stdlib = bundle.folder / "lib" / f"python{PYTHON_VERSION}"
    assert (stdlib / "os.py").is_file()
    for name in ("test", "ensurepip", "tkinter", "idlelib", "lib2to3", "turtledemo", "distutils"):
        assert not (stdlib / name).exists(), name
    site = stdlib / "site-packages"
    assert {p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith("-info")} >= {
        "cni_logger", "structlog", "pythonjsonlogger", "prometheus_client"}
    assert not (site / "pip").exists() and not (site / "bin").exists()
    assert not list(bundle.folder.rglob("libpython*")), "libpython is linked into the interpreter"
    assert not (bundle.folder / "include").exists()
    assert not list(bundle.folder.rglob("*.opt-[12].pyc"))
    total = sum(p.stat().st_size for p in bundle.folder.rglob("*") if p.is_file() and not p.is_symlink())
    assert total <= MAX_UNPACKED_BYTES, f"{total / 1e6:.1f} MB unpacked"


def test_the_interpreter_lacks_the_modules_that_would_need_host_libraries(bundle: Bundle) -> None:
    code = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
            "('_ssl', '_ctypes', '_bz2', '_lzma', '_dbm', '_gdbm', '_curses', '_tkinter', '_crypt', 'nis',"
            " 'readline', '_sqlite3', '_uuid', 'zlib', 'binascii', '_json', '_socket', 'fcntl', 'select')}))")
    found = json.loads(subprocess.run([str(bundle.python), "-I", "-c", code], capture_output=True, text=True,
                                      check=True, timeout=60).stdout)
    assert [m for m, present in found.items() if present] == ["zlib", "binascii", "_json", "_socket", "fcntl",
                                                               "select"]


def test_the_watchers_metrics_work_without_ssl(bundle: Bundle) -> None:
    """prometheus_client imports ``ssl`` at its top; the bundle has no ``_ssl``: ``install --watch
    --metrics-address`` still serves its metrics, and ``ssl`` stays missing for everything else."""
    code = ("import sys, urllib.request\n"
            "from cni_logger.install import metrics\n"
            f"m = metrics.Metrics('127.0.0.1:{free_port()}', '/nonexistent', 1, 1)\n"
            "m.start(); m.passed('pass', True, 1)\n"
            "url = f'http://127.0.0.1:{m.server.server_port}/metrics'\n"
            "body = urllib.request.urlopen(url).read().decode()\n"
            "print('cni_logger_ready 1.0' in body, 'ssl' in sys.modules)\n")
    proc = subprocess.run([str(bundle.python), "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"], proc.stdout


def add_config(log: Path) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "bundlenet", "type": "logger", "logFile": str(log),
                       "prevResult": CNITOOL_RESULT_100}).encode()


def test_it_runs_from_wherever_it_is_unpacked(bundle: Bundle, tmp_path: Path) -> None:
    """Two copies in two places: each one's launcher names its own interpreter, answers VERSION and ADD
    and logs; the interpreter's prefix follows the folder, and running writes nothing into it."""
    for place in ("a", "b/deeper/still"):
        folder = unpack(bundle.tarball, tmp_path / place)
        before = sorted(str(p) for p in folder.rglob("*"))
        launcher = tmp_path / place / "cni" / "bin" / "logger"          # its directory does not exist yet
        written = subprocess.run([str(folder / "bin" / "cni-logger"), "launcher", str(launcher)],
                                 capture_output=True, text=True, check=False, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert written.returncode == 0, written.stderr
        assert launcher.read_text().startswith(f"#!{folder / 'bin' / f'python{PYTHON_VERSION}'} -IS\n")
        assert str(bundle.folder) not in launcher.read_text()

        version = subprocess.run([str(launcher)], input=b'{"cniVersion": "1.0.0"}', env=cni_env("VERSION"),
                                 capture_output=True, check=False, timeout=60)
        assert version.returncode == 0, version.stderr
        assert "1.1.0" in parse_single_json(version.stdout)["supportedVersions"]

        log = tmp_path / place / "cni.log"
        add = subprocess.run([str(launcher)], input=add_config(log), env=cni_env("ADD"), capture_output=True,
                             check=False, timeout=60)
        assert add.returncode == 0, add.stderr
        assert parse_single_json(add.stdout) == CNITOOL_RESULT_100
        [event] = read_events(log)
        assert event["cni"]["command"] == "ADD" and event["event"]["outcome"] == "success"

        prefix = subprocess.run([str(folder / "bin" / f"python{PYTHON_VERSION}"), "-I", "-c",
                                 "import sys, json; print(json.dumps([sys.prefix, sys.exec_prefix, sys.path]))"],
                                capture_output=True, text=True, check=True, timeout=60)
        sys_prefix, exec_prefix, path = json.loads(prefix.stdout)
        assert sys_prefix == exec_prefix == str(folder)
        assert all(p.startswith(str(folder) + os.sep) for p in path if p), path
        assert sorted(str(p) for p in folder.rglob("*")) == before, "running wrote into the bundle (.pyc?)"


def test_the_cli_wrapper_works_through_a_symlink_from_elsewhere(bundle: Bundle, tmp_path: Path) -> None:
    link = tmp_path / "usr-local-bin" / "cni-logger"
    link.parent.mkdir()
    link.symlink_to(bundle.cli)
    proc = subprocess.run([str(link), "--version"], capture_output=True, text=True, check=False, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nonexistent", "PYTHONHOME": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("cni-logger ")


def test_the_tarball_is_named_for_the_version_and_architecture(bundle: Bundle) -> None:
    said = subprocess.run([str(bundle.cli), "--version"], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    version = said.split()[1]
    assert said.strip().endswith(f"(build {bundle.build_id})")  # which build made a report, for a ticket
    assert bundle.tarball.name == f"cni-logger-{version}-linux-{os.uname().machine}.tar.gz"
    assert bundle.folder.name == f"cni-logger-{version}"
    assert re.fullmatch(r"[0-9a-f]{16}", bundle.build_id)


def test_the_build_id_names_the_content_so_a_rebuild_keeps_it(bundle: Bundle, tmp_path: Path) -> None:
    """The DaemonSet installs a build as /opt/cni-logger/<BUILD_ID>: rebuilding the same tree (the
    interpreter from the cache, the project layer anew) must give the same id, not a new folder per run."""
    again = unpack(build(), tmp_path)
    assert (again / "BUILD_ID").read_text().strip() == bundle.build_id


def test_the_manifest_lists_every_file_with_its_hash_and_the_build_id_names_it(bundle: Bundle) -> None:
    """MANIFEST.sha256 (sha256sum's format) lists every file of the folder (symlinks to files too) but itself
    and BUILD_ID; the node script checks an unpacked folder against it, and BUILD_ID is the start of its own
    hash, so the folder's name pins its content."""
    manifest = (bundle.folder / "MANIFEST.sha256").read_bytes()
    assert bundle.build_id == hashlib.sha256(manifest).hexdigest()[:16]
    listed = [line.split("  ", 1)[1] for line in manifest.decode().splitlines()]
    present = sorted(f"./{p.relative_to(bundle.folder)}" for p in bundle.folder.rglob("*") if p.is_file())
    assert listed == sorted(set(present) - {"./MANIFEST.sha256", "./BUILD_ID"})
    assert f"./bin/python{PYTHON_VERSION}" in listed and "./lib/python3.11/site-packages/cni_logger/cli.py" in listed
    check = subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "MANIFEST.sha256"], cwd=bundle.folder,
                           capture_output=True, text=True, check=False, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
