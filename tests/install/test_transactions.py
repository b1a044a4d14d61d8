"""Every change to a node is written ahead in the journal and reconciled by the next pass.

The installer runs here as a real ``cni-logger`` process and is killed (SIGKILL, through the
``CNI_LOGGER_TEST_KILL_AT`` hook of ``cni_logger.install.transaction``) at every step of an install, a
re-insert by ``--watch`` after an agent's rewrite, a failsafe withdrawal and an uninstall, or finds its
state dir full (a small tmpfs in a private mount namespace). After each: every chain that names the
logger executes it (the launcher is run as a runtime runs it), the journal matches the files, and the
next pass ends in the state the uninterrupted run would have reached; uninstall then gives the original
back byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_logger.install import selfcheck
from cni_logger.install.content import ChainEntry
from tests.harness.nodes import shape
from tests.harness.plugin import REPO
from tests.harness.waiting import wait_for

CNI_LOGGER = REPO / ".venv" / "bin" / "cni-logger"
KILL_ENV = "CNI_LOGGER_TEST_KILL_AT"
CONF = "10-flannel.conflist"
FOREIGN = b"#!/bin/sh\necho 'not the logger' >&2\nexit 1\n"
WAIT_LIMIT = 60.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Layout:
    """A node (conf dir, bin dir, state dir) driven by real ``cni-logger`` processes."""

    def __init__(self, root: Path, conf: str = CONF) -> None:
        self.root = root
        self.net_d, self.bin_dir, self.state = root / "net.d", root / "bin", root / "state"
        self.net_d.mkdir()
        self.bin_dir.mkdir()
        self.conf = self.net_d / conf
        self.conf.write_bytes(shape(conf))
        self.original = self.conf.read_bytes()
        self.launcher = self.bin_dir / "logger"
        self.ready = root / "ready"

    def argv(self, command: str, *extra: str) -> list[str]:
        if command == "uninstall":
            return [str(CNI_LOGGER), "uninstall", "--state-dir", str(self.state), *extra]
        return [str(CNI_LOGGER), "install", "--conf-dir", str(self.net_d), "--bin-dir", str(self.bin_dir),
                "--state-dir", str(self.state), *extra]

    def run(self, command: str, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
        if kill_at:
            env[KILL_ENV] = kill_at
        return subprocess.run(self.argv(command, *extra), env=env, capture_output=True, text=True, timeout=120,
                              check=False)

    def watch(self, kill_at: str | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
        if kill_at:
            env[KILL_ENV] = kill_at
        return subprocess.Popen(self.argv("install", "--watch", "--interval", "0.1", "--ready-file", str(self.ready)),
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def journal(self) -> dict[str, Any] | None:
        path = self.state / "install.json"
        return json.loads(path.read_text()) if path.exists() else None

    def logger_entries(self) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
        """Every logger entry any config names: (file, its network, the entry)."""
        found = []
        for path in sorted(self.net_d.iterdir()):
            if path.name.startswith(".") or not path.name.endswith((".conf", ".conflist", ".json")):
                continue
            doc = json.loads(path.read_bytes())
            for plugin in doc.get("plugins", [doc]):
                if plugin.get("type") == "logger":
                    found.append((path, doc, plugin))
        return found

    def assert_chains_execute(self) -> None:
        """Every chain that names the logger executes it: the launcher answers VERSION and ADD, logs one event."""
        for path, doc, entry in self.logger_entries():
            assert self.launcher.exists(), f"{path} names the logger, but {self.launcher} does not exist"
            chain = [ChainEntry(str(path), doc["name"], doc["cniVersion"], entry)]
            selfcheck.check(str(self.launcher), chain, str(self.bin_dir), str(self.root / "check-state"), 60.0)

    def assert_journal_matches(self) -> None:
        """Each file a pending change names is in its old or its new state; a committed journal's records are
        the files as they are (what install wrote, or what the failsafe left)."""
        journal = self.journal()
        if journal is None:
            return
        for step in (journal.get("pending") or {}).get("steps", []):
            path = Path(step["path"])
            now = sha(path.read_bytes()) if path.exists() else None
            assert now in (step["old_sha256"], step["new_sha256"]), f"{path} is neither old nor new: {step}"
        if journal.get("pending"):
            return
        withdrawn = journal.get("withdrawn") or {}
        for path, record in journal["configs"].items():
            now = sha(Path(path).read_bytes()) if Path(path).exists() else None
            expected = withdrawn[path]["written_sha256"] if path in withdrawn else record["written_sha256"]
            assert now == expected, f"the journal's record for {path} is not the file"
        if journal.get("launcher"):
            assert Path(journal["launcher"]).exists(), "the journal records a launcher that is not there"


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    yield Layout(tmp_path)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def killed(proc: subprocess.Popen[str]) -> str:
    """Wait for a watcher to be killed by the hook."""
    try:
        _, err = proc.communicate(timeout=WAIT_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the watcher was never killed at its step:\n{err}")
    assert proc.returncode == -signal.SIGKILL, err
    return err


def has_logger(path: Path) -> bool:
    try:
        return any(p.get("type") == "logger" for p in json.loads(path.read_bytes())["plugins"])
    except (ValueError, KeyError, FileNotFoundError):
        return False


# ---------------------------------------------------------------------------------------------------------
# Killed at every step


@pytest.mark.parametrize("point", ["install:intent", "install:step-1", "install:step-2"])
def test_an_install_killed_at_any_step_leaves_a_chain_that_executes(layout: Layout, point: str) -> None:
    proc = layout.run("install", kill_at=point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    layout.assert_chains_execute()
    layout.assert_journal_matches()

    again = layout.run("install")
    assert again.returncode == 0, again.stderr
    assert has_logger(layout.conf)
    layout.assert_chains_execute()
    layout.assert_journal_matches()
    assert "pending" not in (layout.journal() or {})

    done = layout.run("uninstall")
    assert done.returncode == 0, done.stderr
    assert layout.conf.read_bytes() == layout.original
    assert not layout.launcher.exists() and layout.journal() is None


@pytest.mark.parametrize("point", ["install:step-1", "install:step-2", "install:step-3"])
def test_a_conversion_killed_at_any_step(tmp_path: Path, point: str) -> None:
    """A single config becomes a plugin list: write the .conflist, then remove the .conf (three steps)."""
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    layout = Layout(tmp_path, "100-crio-bridge.conf")
    converted = layout.conf.with_suffix(".conflist")
    proc = layout.run("install", "--runtime", "crio", kill_at=point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    layout.assert_chains_execute()
    layout.assert_journal_matches()
    again = layout.run("install", "--runtime", "crio")
    assert again.returncode == 0, again.stderr
    assert has_logger(converted) and not layout.conf.exists()
    layout.assert_journal_matches()
    assert layout.run("uninstall").returncode == 0
    assert layout.conf.read_bytes() == layout.original and not converted.exists()


@pytest.mark.parametrize("point", ["uninstall:intent", "uninstall:step-1", "uninstall:step-2"])
def test_an_uninstall_killed_at_any_step_never_leaves_an_entry_without_its_launcher(layout: Layout,
                                                                                      point: str) -> None:
    assert layout.run("install").returncode == 0
    proc = layout.run("uninstall", kill_at=point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    layout.assert_chains_execute()
    layout.assert_journal_matches()

    again = layout.run("uninstall")
    assert again.returncode == 0, again.stderr
    assert layout.conf.read_bytes() == layout.original
    assert not layout.launcher.exists() and layout.journal() is None


AGENT_VERSION = shape(CONF).replace(b'"hairpinMode": true', b'"hairpinMode": false')


@pytest.mark.parametrize("point", ["agent-rewrite:intent", "agent-rewrite:step-1"])
def test_a_reinsert_after_an_agent_rewrite_killed_at_any_step(layout: Layout, point: str) -> None:
    assert shape(CONF) != AGENT_VERSION
    watcher = layout.watch(kill_at=point)
    try:
        assert wait_for(layout.ready.exists), "not ready"
        tmp = layout.net_d / ".agent-tmp"
        tmp.write_bytes(AGENT_VERSION)
        os.replace(tmp, layout.conf)
        killed(watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    layout.assert_chains_execute()
    layout.assert_journal_matches()

    again = layout.run("install")
    assert again.returncode == 0, again.stderr
    assert has_logger(layout.conf) and b'"hairpinMode": false' in layout.conf.read_bytes()
    layout.assert_chains_execute()
    layout.assert_journal_matches()
    assert layout.run("uninstall").returncode == 0
    assert layout.conf.read_bytes() == AGENT_VERSION, "the agent's version is the one uninstall gives back"


@pytest.mark.parametrize("point", ["failsafe:intent", "failsafe:step-1"])
def test_a_failsafe_withdrawal_killed_at_any_step(layout: Layout, point: str) -> None:
    assert layout.run("install").returncode == 0
    installed = layout.conf.read_bytes()
    launcher = layout.launcher.read_bytes()
    watcher = layout.watch(kill_at=point)
    try:
        assert wait_for(layout.ready.exists), "not ready"
        tmp = layout.bin_dir / ".foreign"
        tmp.write_bytes(FOREIGN)
        tmp.chmod(0o755)
        os.replace(tmp, layout.launcher)           # a damaged launcher: the failsafe must take the entry out
        killed(watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    layout.assert_journal_matches()

    # The DaemonSet restarts the watcher: it finishes taking the entry out, then puts it back once the plugin runs.
    watcher = layout.watch()
    try:
        assert wait_for(lambda: not has_logger(layout.conf)), "never taken out"
        layout.assert_journal_matches()
        tmp = layout.bin_dir / ".repaired"
        tmp.write_bytes(launcher)
        tmp.chmod(0o755)
        os.replace(tmp, layout.launcher)
        assert wait_for(lambda: layout.ready.exists() and layout.conf.read_bytes() == installed), "never put back"
        layout.assert_chains_execute()
        layout.assert_journal_matches()
    finally:
        status, err = stop(watcher)
    assert status == 0, err
    assert layout.conf.read_bytes() == layout.original, "SIGTERM took the entry out"
    assert layout.run("uninstall").returncode == 0
    assert layout.conf.read_bytes() == layout.original
    assert not layout.launcher.exists() and layout.journal() is None


# ---------------------------------------------------------------------------------------------------------
# A full state dir


def full_state_dir(layout: Layout, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``cni-logger COMMAND`` with the state dir a full 16 KiB tmpfs (in a private mount namespace)."""
    script = ('mount -t tmpfs -o size=16k,mode=0700 tmpfs "$1" && cp -a "$2"/. "$1"/ '
              '&& (dd if=/dev/zero of="$1/.fill" bs=1k count=64 2>/dev/null; true) && shift 2 && "$@"')
    saved = layout.root / "state-saved"
    layout.state.mkdir(exist_ok=True)
    shutil.copytree(layout.state, saved, dirs_exist_ok=True)
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(layout.state), str(saved), *command],
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_full_state_dir_changes_nothing_and_says_refused(layout: Layout) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private mount namespace for the small tmpfs)")
    proc = full_state_dir(layout, *layout.argv("install"))
    assert proc.returncode == 1, proc.stderr
    assert "refused" in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
    assert layout.conf.read_bytes() == layout.original, "refused, yet the chain was changed"
    assert not layout.launcher.exists(), "refused, yet the launcher was written"

    # Installed with room, then uninstalled with none: the chain stays as it was, launcher included.
    assert layout.run("install").returncode == 0
    installed = layout.conf.read_bytes()
    proc = full_state_dir(layout, *layout.argv("uninstall"))
    assert proc.returncode == 1, proc.stderr
    assert layout.conf.read_bytes() == installed and layout.launcher.exists()
    layout.assert_chains_execute()
    assert layout.run("uninstall").returncode == 0
    assert layout.conf.read_bytes() == layout.original


def test_a_config_write_that_fails_after_the_intent_is_undone_at_once(layout: Layout) -> None:
    """The conf dir full (its own small tmpfs): the launcher, written first, is taken back; refused is true."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private mount namespace for the small tmpfs)")
    saved = layout.root / "net.d-saved"
    shutil.copytree(layout.net_d, saved)
    script = ('dir=$1 saved=$2; shift 2; mount -t tmpfs -o size=16k tmpfs "$dir" && cp -a "$saved"/. "$dir"/ '
              '&& (dd if=/dev/zero of="$dir/.fill" bs=1k count=64 2>/dev/null; true) && rm -f "$saved"/* && "$@"; '
              'status=$?; rm -f "$dir/.fill"; cp -a "$dir"/. "$saved"/; exit $status')
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(layout.net_d), str(saved),
                           *layout.argv("install")], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
    assert (saved / CONF).read_bytes() == layout.original
    assert not layout.launcher.exists(), "the launcher written before the failed config write is still there"
    assert layout.journal() is None, "the journal records a change that was not made"


@pytest.mark.parametrize("point", ["restored:intent", "restored:step-1"])
def test_putting_back_what_the_failsafe_took_out_killed_at_any_step(layout: Layout, point: str) -> None:
    assert layout.run("install").returncode == 0
    installed = layout.conf.read_bytes()
    launcher = layout.launcher.read_bytes()
    watcher = layout.watch(kill_at=point)
    try:
        assert wait_for(layout.ready.exists), "not ready"
        tmp = layout.bin_dir / ".foreign"
        tmp.write_bytes(FOREIGN)
        tmp.chmod(0o755)
        os.replace(tmp, layout.launcher)
        assert wait_for(lambda: not has_logger(layout.conf)), "never taken out"
        tmp.write_bytes(launcher)
        tmp.chmod(0o755)
        os.replace(tmp, layout.launcher)
        killed(watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    layout.assert_chains_execute()
    layout.assert_journal_matches()

    again = layout.run("install")
    assert again.returncode == 0, again.stderr
    assert layout.conf.read_bytes() == installed
    layout.assert_journal_matches()
    assert layout.run("uninstall").returncode == 0
    assert layout.conf.read_bytes() == layout.original and layout.journal() is None
