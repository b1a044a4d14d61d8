"""The self-check executes exactly what install writes, and a full scratch space is "cannot check", never "broken".

Real processes throughout: ``cni-logger install`` (and ``--watch``) as a process, the launcher it writes, a
real chain driven with cnitool where the runtime's view matters, real full filesystems (small tmpfs mounts,
unmounted again by the test).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.cnitool import CniSandbox, run
from tests.harness.nodes import shape
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration


def install(cli: Path, sb: CniSandbox, state: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = run([str(cli), "install", "--conf-dir", str(sb.netconf_dir), "--bin-dir", str(sb.bin_dir),
                "--state-dir", str(state), *args], env=env)
    return proc.rc, proc.stderr


def add_and_del(sb: CniSandbox, net: object) -> None:
    ctr = sb.new_container()
    add = sb.cnitool("add", net, ctr)  # type: ignore[arg-type]
    assert add.rc == 0, add.describe()
    delete = sb.cnitool("del", net, ctr)  # type: ignore[arg-type]
    assert delete.rc == 0, delete.describe()


@pytest.fixture
def full_tmpfs() -> Iterator[Callable[..., Path]]:
    """``mount(path, fill=True)``: a 1 MiB tmpfs mounted at ``path`` and filled to the last byte (``fill(path)``
    fills it later); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mounted: list[Path] = []

    def mount(path: Path, fill: bool = True) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "tmpfs", str(path)], check=True)
        mounted.append(path)
        if fill:
            fill_up(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_up(path: Path) -> None:
    """Fill the filesystem holding ``path`` to the last byte, as a user filling /tmp would."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# item 3: the entry written is the entry checked


def test_an_operator_entry_merged_with_fail_on_log_error_is_checked(bare_sandbox: CniSandbox,
                                                                   cni_logger_cli: Path) -> None:
    """The operator's entry has a harmless bad value; with --fail-on-log-error every ADD would fail (code 7)."""
    sb = bare_sandbox
    net = sb.new_network("merged")
    conflist = sb.write_conflist(net, "1.0.0", [net.bridge_plugin(), net.logger_plugin(logOptions={"maxSize": -1})])
    state = sb.tmp / "state"
    status, err = install(cni_logger_cli, sb, state)
    assert status == 0, err
    assert "maxSize" in err, "the bad value is worth a warning"
    before = conflist.read_bytes()
    add_and_del(sb, net)

    status, err = install(cni_logger_cli, sb, state, "--fail-on-log-error")
    assert status == 1, err
    assert "self-check" in err and "failOnLogError" in err and "maxSize" in err, err
    assert conflist.read_bytes() == before, "nothing was changed"
    add_and_del(sb, net)


def test_a_real_log_the_plugin_cannot_write(bare_sandbox: CniSandbox, cni_logger_cli: Path) -> None:
    """A FIFO as the log: under failOnLogError every ADD would fail (code 11): refused. Without it: a warning."""
    sb = bare_sandbox
    net = sb.new_network("fifo")
    conflist = sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    original = conflist.read_bytes()
    fifo = sb.tmp / "audit.fifo"
    os.mkfifo(fifo)
    state = sb.tmp / "state"

    status, err = install(cni_logger_cli, sb, state, "--log-file", str(fifo), "--fail-on-log-error")
    assert status == 1, err
    assert "self-check" in err and str(fifo) in err and "not a regular file" in err, err
    assert conflist.read_bytes() == original

    status, err = install(cni_logger_cli, sb, state, "--log-file", str(fifo))
    assert status == 0, err
    assert "warning" in err and str(fifo) in err and "not recorded" in err, err
    add_and_del(sb, net)

    blocked = sb.tmp / "a-file"
    blocked.write_text("")
    status, err = install(cni_logger_cli, sb, state, "--log-file", str(blocked / "cni" / "audit.log"),
                          "--fail-on-log-error")
    assert status == 1 and "not a directory" in err, err
    assert not (blocked.is_dir()), "the probe creates nothing"


# ---------------------------------------------------------------------------------------------------------
# item 4: the scratch space is the state dir's, and a full one is "cannot check"


def test_a_full_tmp_is_not_used(bare_sandbox: CniSandbox, cni_logger_cli: Path,
                                    full_tmpfs: Callable[..., Path]) -> None:
    sb = bare_sandbox
    net = sb.new_network("fulltmp")
    sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    tmp = full_tmpfs(sb.tmp / "full-tmp")                   # (tempfile itself would skip it: a test write fails)
    state = sb.tmp / "state"
    status, err = install(cni_logger_cli, sb, state, "--log-file", str(net.log_file),
                          env={**os.environ, "TMPDIR": str(tmp)})
    assert status == 0, err
    assert (state / "check").is_dir() and (state / "check").stat().st_mode & 0o777 == 0o700
    assert list((state / "check").iterdir()) == [], "each check's directory is removed"
    add_and_del(sb, net)


def test_a_full_scratch_space_is_cannot_check(bare_sandbox: CniSandbox, cni_logger_cli: Path,
                                             full_tmpfs: Callable[..., Path]) -> None:
    sb = bare_sandbox
    net = sb.new_network("fullstate")
    conflist = sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    original = conflist.read_bytes()
    state = sb.tmp / "state"
    full_tmpfs(state / "check")
    status, err = install(cni_logger_cli, sb, state, "--log-file", str(net.log_file))
    assert status == 1, err
    assert "cannot check" in err and "fails its self-check" not in err, err
    assert conflist.read_bytes() == original


def watch(cli: Path, tmp: Path, stderr: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(cli), "install", "--watch", "--interval", "0.2", "--conf-dir", str(tmp / "net.d"), "--bin-dir",
         str(tmp / "bin"), "--state-dir", str(tmp / "state"), "--ready-file", str(tmp / "ready")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr.open("w"), text=True, env=env)


def has_logger(path: Path) -> bool:
    try:
        return json.loads(path.read_text())["plugins"][-1]["type"] == "logger"
    except (ValueError, KeyError, IndexError, FileNotFoundError):
        return False


@pytest.mark.parametrize("full", ["tmp", "state"])
def test_the_watcher_keeps_the_logger_in_when_scratch_space_is_full(tmp_path: Path, cni_logger_cli: Path,
                                                                    full_tmpfs: Callable[..., Path],
                                                                    full: str) -> None:
    """A user fills /tmp (or the state dir's filesystem is full) while the watcher runs: the logger must not be
    taken out of the chain. (Filled after start: Python's tempfile picks its directory once, with a test write.)"""
    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    flannel = tmp_path / "net.d" / "10-flannel.conflist"
    flannel.write_bytes(shape("10-flannel.conflist"))
    log = tmp_path / "stderr"
    env = dict(os.environ)
    if full == "tmp":
        env["TMPDIR"] = str(full_tmpfs(tmp_path / "full-tmp", fill=False))
    proc = watch(cni_logger_cli, tmp_path, log, env)
    try:
        assert wait_for((tmp_path / "ready").exists), log.read_text()
        assert has_logger(flannel)
        if full == "state":
            full_tmpfs(tmp_path / "state" / "check")
            assert wait_for(lambda: "cannot check" in log.read_text()), log.read_text()
        else:
            fill_up(tmp_path / "full-tmp")
            time.sleep(1.5)                                     # several more passes
            assert proc.poll() is None, log.read_text()
        assert has_logger(flannel), log.read_text()
        assert "took the logger out" not in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "took the logger out" not in log.read_text(), log.read_text()
