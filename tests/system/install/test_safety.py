"""The logger never takes pod networking down: install executes the plugin before it inserts the entry,
``install --watch`` takes the entry out while the plugin does not run (and puts it back when it runs
again), and replacing the bundle by a new build loses no ADD.

Real chains: cnitool (libcni) runs bridge + host-local + logger in throw-away network namespaces (the
integration harness, tests/harness/cnitool.py); the logger is installed from private copies of
the relocatable bundle (``bundle`` fixture, ``unpack``), which these tests damage, repair and replace
the way a clean-up job, a bad copy or the DaemonSet's node script (deploy/kubernetes/cni-logger-node.sh)
would. The time limits below bound waiting only; nothing asserts speed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.bundle import PYTHON_VERSION, Bundle, unpack
from tests.harness.cnitool import (
    CniSandbox,
    Network,
    cnitool_container_id,
    run,
)
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.integration

INTERVAL = 0.5
"""--watch's interval here: short, so that the tests wait little."""
WAIT_LIMIT = 60.0
"""Seconds to wait for something the watcher does within a few intervals (a limit, not a measurement)."""


def logger_in(conflist: Path) -> bool:
    return any(p.get("type") == "logger" for p in json.loads(conflist.read_text())["plugins"])


def tree(path: Path) -> dict[str, str]:
    """Every entry under ``path`` with its content hash (or link target) and mode."""
    found = {}
    for entry in sorted(path.rglob("*")):
        st = entry.lstat()
        if entry.is_symlink():
            what = "-> " + os.readlink(entry)
        elif entry.is_file():
            what = hashlib.sha256(entry.read_bytes()).hexdigest()
        else:
            what = "dir"
        found[str(entry.relative_to(path))] = f"{what} {st.st_mode:o}"
    return found


@dataclass
class Attempt:
    """One cnitool call made by the ADD loop."""

    thread: int
    command: str
    container_id: str
    started: float
    rc: int
    output: str


class AddLoop:
    """ADD then DEL, each on a fresh container namespace, in ``threads`` threads until stopped."""

    def __init__(self, sandbox: CniSandbox, net: Network, threads: int = 1) -> None:
        self.sandbox, self.net = sandbox, net
        self.attempts: list[Attempt] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> AddLoop:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _loop(self, thread: int) -> None:
        try:
            while not self.stopping.is_set():
                with self.lock:
                    ns = self.sandbox.new_container()
                container_id = cnitool_container_id(self.sandbox.netns_path(ns))
                for command in ("add", "del"):
                    started = time.monotonic()
                    proc = self.sandbox.cnitool(command, self.net, ns)
                    with self.lock:
                        self.attempts.append(Attempt(thread, command.upper(), container_id, started, proc.rc,
                                                     proc.describe()))
                run(["ip", "netns", "del", ns])
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)

    def completed(self, command: str = "ADD", since: float = 0.0) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if a.command == command and a.started >= since]

    def wait_for_each_thread(self, since: float) -> None:
        """Until every thread has finished a call begun at ``since`` or later (so all its earlier ones too)."""
        def done() -> bool:
            with self.lock:
                return {a.thread for a in self.attempts if a.started >= since} == set(range(len(self.threads)))

        assert wait_for(lambda: done() or bool(self.errors)), f"a loop finished no call in {WAIT_LIMIT:g}s"
        assert not self.errors, self.errors

    def wait_for_adds(self, count: int, since: float) -> None:
        assert wait_for(lambda: len(self.completed("ADD", since)) >= count or bool(self.errors)), \
            f"fewer than {count} ADDs in {WAIT_LIMIT:g}s"
        assert not self.errors, self.errors


def install_args(sb: CniSandbox, net: Network, *extra: str) -> list[str]:
    return ["install", "--conf-dir", str(sb.netconf_dir), "--bin-dir", str(sb.bin_dir), "--log-file",
            str(net.log_file), "--state-dir", str(sb.tmp / "state"), *extra]


def cli(folder: Path) -> str:
    return str(folder / "bin" / "cni-logger")


def launcher_names(sb: CniSandbox, folder: Path) -> bool:
    first = (sb.bin_dir / "logger").read_text().split("\n", 1)[0]
    return first == f"#!{folder / 'bin' / f'python{PYTHON_VERSION}'} -IS"


# ---------------------------------------------------------------------------------------------------------
# install refuses a plugin that does not run, and changes nothing


def damage_plugin_only(folder: Path) -> None:
    """Break the plugin but not the installer: a module only the plugin's path imports goes missing."""
    module = folder / "lib" / f"python{PYTHON_VERSION}" / "site-packages" / "cni_logger" / "deferred.py"
    module.rename(module.with_name("deferred.py.away"))


def test_install_refuses_a_plugin_that_fails_its_self_check_and_changes_nothing(
        bare_sandbox: CniSandbox, bundle: Bundle) -> None:
    sb = bare_sandbox
    net = sb.new_network("refuse")
    conflist = sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    damaged = unpack(bundle.tarball, sb.tmp / "damaged")
    damage_plugin_only(damaged)
    state = sb.tmp / "state"

    # A fresh node: no launcher yet.
    before = {"bin": tree(sb.bin_dir), "net.d": tree(sb.netconf_dir)}
    proc = run([cli(damaged), *install_args(sb, net)], timeout=120)
    assert proc.rc != 0, proc.describe()
    assert "self-check" in proc.stderr and "VERSION exited with status 1" in proc.stderr, proc.stderr
    assert "deferred" in proc.stderr, "the plugin's own error is quoted"
    assert "nothing was changed" in proc.stderr
    assert {"bin": tree(sb.bin_dir), "net.d": tree(sb.netconf_dir)} == before
    assert not (state / "install.json").exists()

    # An update: a working older build is installed; the damaged one must not replace it.
    older = unpack(bundle.tarball, sb.tmp / "older")
    run([cli(older), *install_args(sb, net)], check=True, timeout=120)
    assert logger_in(conflist) and launcher_names(sb, older)
    before = {"bin": tree(sb.bin_dir), "net.d": tree(sb.netconf_dir)}
    journal = (state / "install.json").read_text()
    proc = run([cli(damaged), *install_args(sb, net)], timeout=120)
    assert proc.rc != 0, proc.describe()
    assert "self-check" in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
    assert {"bin": tree(sb.bin_dir), "net.d": tree(sb.netconf_dir)} == before
    assert (state / "install.json").read_text() == journal
    assert launcher_names(sb, older)

    ctr = sb.new_container()
    add = sb.cnitool("add", net, ctr)
    assert add.rc == 0, add.describe()
    assert [e["cni"]["command"] for e in net.events()] == ["ADD"], "the older build still runs and logs"
    assert sb.cnitool("del", net, ctr).rc == 0


# ---------------------------------------------------------------------------------------------------------
# --watch takes the entry out while the plugin does not run


def hide(path: Path) -> Callable[[], None]:
    """Move ``path`` away (the running watcher keeps what it has loaded); returns the repair."""
    away = path.with_name(path.name + ".away")
    path.rename(away)

    def repair() -> None:
        away.rename(path)

    return repair


def plugin_runs(executable: Path) -> bool:
    try:
        version = subprocess.run([str(executable)], input=b'{"cniVersion": "1.0.0"}', capture_output=True,
                                 env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"}, check=False, timeout=60)
    except FileNotFoundError:      # its interpreter is gone
        return False
    return version.returncode == 0


DAMAGE: dict[str, tuple[Callable[[Path], Callable[[], None]], str]] = {
    "interpreter-removed": (lambda f: hide(f / "bin" / f"python{PYTHON_VERSION}"), "does not exist"),
    "module-missing": (lambda f: hide(f / "lib" / f"python{PYTHON_VERSION}" / "site-packages" / "cni_logger"
                                      / "deferred.py"), "deferred"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_watch_takes_the_entry_out_while_the_plugin_does_not_run_and_puts_it_back(
        bare_sandbox: CniSandbox, bundle: Bundle, damage: str) -> None:
    sb = bare_sandbox
    net = sb.new_network("watch")
    conflist = sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    original = conflist.read_bytes()
    folder = unpack(bundle.tarball, sb.tmp / "bundle")
    ready = sb.tmp / "ready"
    stderr_path = sb.tmp / "watch.stderr"
    with stderr_path.open("wb") as stderr:
        # The watcher runs from the very copy that is damaged, as the DaemonSet's does.
        watcher = subprocess.Popen([cli(folder), *install_args(sb, net, "--watch", "--interval", str(INTERVAL),
                                                               "--ready-file", str(ready))],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        assert wait_for(ready.exists), stderr_path.read_text()
        assert logger_in(conflist)
        damage_it, why = DAMAGE[damage]
        with AddLoop(sb, net) as adds:
            adds.wait_for_adds(2, since=0.0)
            repair = damage_it(folder)
            assert not plugin_runs(sb.bin_dir / "logger"), "the damage must break the plugin, or this proves nothing"

            assert wait_for(lambda: not logger_in(conflist)), f"never taken out:\n{stderr_path.read_text()}"
            removed = time.monotonic()
            assert conflist.read_bytes() == original, "taken out by restoring the original"
            assert wait_for(lambda: not ready.exists()), "still ready"
            adds.wait_for_adds(3, since=removed)
            assert watcher.poll() is None, stderr_path.read_text()

            repair()
            assert wait_for(lambda: logger_in(conflist)), f"never put back:\n{stderr_path.read_text()}"
            back = time.monotonic()
            assert wait_for(ready.exists), "not ready again"
            adds.wait_for_adds(2, since=back)
        assert not adds.errors, adds.errors

        after_removal = [a for a in adds.attempts if a.started >= removed]
        failed = [a.output for a in after_removal if a.rc != 0]
        assert not failed, "a call that started after the entry was taken out failed:\n" + "\n".join(failed)
        logged = {e["container"]["id"] for e in net.events() if e["cni"]["command"] == "ADD"}
        assert {a.container_id for a in adds.completed("ADD", since=back)} <= logged, "logging again once back"

        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=60) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    err = stderr_path.read_text()
    print(err, *(f"{a.command} rc={a.rc} {'after' if a.started >= removed else 'before'} removal"
                 for a in adds.attempts), sep="\n")
    assert "fails its self-check" in err and why in err, err
    assert "took the logger out of the chain" in err and "not ready" in err, err
    assert "passes its self-check again" in err, err
    assert err.count("fails its self-check") == 1, f"a lasting failure is reported once:\n{err}"
    assert conflist.read_bytes() == original, "SIGTERM took the entry out again"

    # The journal stayed consistent through removal and re-insertion: uninstall removes what is left.
    run([cli(folder), "uninstall", "--state-dir", str(sb.tmp / "state")], check=True, timeout=120)
    assert not (sb.bin_dir / "logger").exists()
    assert conflist.read_bytes() == original


# ---------------------------------------------------------------------------------------------------------
# A new build replaces the old one while ADDs run


def test_replacing_the_bundle_by_a_new_build_loses_no_add(bare_sandbox: CniSandbox, bundle: Bundle) -> None:
    """As the node script does on every start: unpack the new build into a folder of its own, install from
    it (the launcher is renamed over the old one), and remove an older folder once no launcher names it."""
    sb = bare_sandbox
    net = sb.new_network("replace")
    conflist = sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    original = conflist.read_bytes()
    builds = [unpack(bundle.tarball, sb.tmp / name) for name in ("build-a", "build-b", "build-c")]
    run([cli(builds[0]), *install_args(sb, net)], check=True, timeout=120)

    with AddLoop(sb, net, threads=2) as adds:
        adds.wait_for_adds(2, since=0.0)
        for old, new in itertools.pairwise(builds):
            installed = run([cli(new), *install_args(sb, net)], timeout=120)
            assert installed.rc == 0, installed.describe()
            assert launcher_names(sb, new)
            # Once every loop has finished a call begun after the switch, nothing runs from the old folder.
            adds.wait_for_each_thread(since=time.monotonic())
            shutil.rmtree(old)
            adds.wait_for_adds(2, since=time.monotonic())
    assert not adds.errors, adds.errors

    failed = [a.output for a in adds.attempts if a.rc != 0]
    assert not failed, "\n".join(failed)
    events = net.events()
    for command in ("ADD", "DEL"):
        done = {a.container_id for a in adds.attempts if a.command == command}
        logged = {e["container"]["id"] for e in events
                  if e["cni"]["command"] == command and e["event"]["outcome"] == "success"}
        assert done <= logged, f"{command} without an event: {sorted(done - logged)}"
    assert len(adds.completed("ADD")) >= 10

    run([cli(builds[-1]), "uninstall", "--state-dir", str(sb.tmp / "state")], check=True, timeout=120)
    assert conflist.read_bytes() == original
