"""The failsafe's goal is that no chain on the node executes a broken logger; and a pass that has nothing to
change writes nothing, keeping the chain's bracket mode.

The watcher runs as a real ``cni-logger install --watch`` process; the plugin is broken by replacing the
launcher with a foreign file, as a bad copy or another product's ``logger`` would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.nodes import Node, shape
from tests.install.test_transactions import CNI_LOGGER, FOREIGN, Layout, stop, wait_for

OPERATOR = {"type": "logger", "redactKeys": ["apiKey"], "logFile": "/var/log/audit/cni.log",
            "logOptions": {"maxSize": 20, "compress": True}, "failOnLogError": False}
CONF_NAME = "10-flannel.conflist"


def with_entry(name: str, entry: dict[str, Any], at: int | None) -> bytes:
    doc = json.loads(shape(name))
    doc["plugins"].insert(len(doc["plugins"]) if at is None else at, entry)
    return (json.dumps(doc, indent=2) + "\n").encode()


def entries(path: Path) -> list[dict[str, Any]]:
    return [p for p in json.loads(path.read_bytes())["plugins"] if p.get("type") == "logger"]


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    yield Layout(tmp_path)


def break_launcher(layout: Layout) -> bytes:
    good = layout.launcher.read_bytes()
    tmp = layout.bin_dir / ".foreign"
    tmp.write_bytes(FOREIGN)
    tmp.chmod(0o755)
    os.replace(tmp, layout.launcher)
    return good


def repair_launcher(layout: Layout, good: bytes) -> None:
    tmp = layout.bin_dir / ".repaired"
    tmp.write_bytes(good)
    tmp.chmod(0o755)
    os.replace(tmp, layout.launcher)


def test_the_failsafe_takes_out_every_entry_that_runs_the_launcher_and_puts_them_back_exactly(
        layout: Layout) -> None:
    # The operator's own entry, already last (install has nothing to change, so records nothing), and a
    # second network whose own logger entry runs the same launcher.
    primary = with_entry(layout.conf.name, OPERATOR, None)
    layout.conf.write_bytes(primary)
    other = layout.net_d / "20-other.conflist"
    second = with_entry("10-calico.conflist", {"type": "logger", "logFile": "/var/log/other.log"}, 1)
    other.write_bytes(second)

    watcher = layout.watch()
    try:
        assert wait_for(layout.ready.exists), "not ready"
        assert layout.conf.read_bytes() == primary, "nothing to change: nothing written"
        good = break_launcher(layout)
        assert wait_for(lambda: not entries(layout.conf) and not entries(other)), "a broken logger still runs"
        assert wait_for(lambda: not layout.ready.exists())
        layout.assert_journal_matches()
        assert [p for p in json.loads(layout.conf.read_bytes())["plugins"]] == json.loads(shape(CONF_NAME))["plugins"]

        repair_launcher(layout, good)
        assert wait_for(lambda: layout.conf.read_bytes() == primary and other.read_bytes() == second), \
            "not put back exactly"
        assert wait_for(layout.ready.exists)
        layout.assert_chains_execute()
    finally:
        status, err = stop(watcher)
    assert status == 0, err
    assert "is not a cni-logger launcher" in err and "took the logger out" in err, err
    assert str(other) in err, err
    assert "passes its self-check again" in err, err
    assert layout.conf.read_bytes() == primary and other.read_bytes() == second, "the operator's entries stay"


def test_the_watcher_says_the_logger_is_not_out_while_an_entry_remains(layout: Layout) -> None:
    """A file the failsafe cannot rewrite (duplicate keys: the runtime reads it, the installer refuses to
    guess) keeps its entry: the watcher must not claim the logger is out."""
    layout.conf.write_bytes(shape(CONF_NAME))
    stuck = layout.net_d / "30-stuck.conflist"
    stuck.write_bytes(b'{"cniVersion": "0.4.0", "name": "stuck", "name": "stuck", '
                      b'"plugins": [{"type": "bridge"}, {"type": "logger"}]}\n')
    watcher = layout.watch()
    try:
        assert wait_for(layout.ready.exists), "not ready"
        break_launcher(layout)
        assert wait_for(lambda: not entries(layout.conf))
        assert wait_for(lambda: not layout.ready.exists())
    finally:
        watcher.send_signal(signal.SIGTERM)
        _, err = watcher.communicate(timeout=60)
    assert f"the logger is NOT out of the chain in {stuck}" in err, err


# ---------------------------------------------------------------------------------------------------------
# Idempotent: nothing to change writes nothing; the bracket mode is kept


def test_a_second_install_of_an_operators_entry_writes_nothing(node: Node) -> None:
    entry = {"type": "logger", "redactKeys": ["apiKey"], "logFile": "/var/log/audit/cni.log",
             "logOptions": {"maxSize": 20, "compress": True}}
    node.put(CONF_NAME, with_entry(CONF_NAME, entry, 0))     # first in the list: install moves it last
    status, _, err = node.install()
    assert status == 0, err
    assert list(node.doc(CONF_NAME)["plugins"][-1]) == list(entry), "the entry keeps its key order"
    snapshot = node.snapshot()
    status, _, err = node.install()
    assert status == 0, err
    assert "nothing to change" in err, err
    assert node.snapshot() == snapshot, "a second install rewrote an unchanged chain"


def test_watch_without_bracket_keeps_a_bracketed_chain_bracketed(layout: Layout) -> None:
    proc = layout.run("install", "--bracket")
    assert proc.returncode == 0, proc.stderr
    bracketed = layout.conf.read_bytes()
    assert [p.get("role") for p in entries(layout.conf)] == ["attempt", "outcome"]
    watcher = layout.watch()
    try:
        assert wait_for(layout.ready.exists), "not ready"
        assert layout.conf.read_bytes() == bracketed, "--watch without --bracket rewrote the bracketed chain"
    finally:
        status, err = stop(watcher)
    assert status == 0, err
    assert f"wrote {layout.conf}" in err, "SIGTERM took the entries out"
    assert layout.run("install", "--bracket").returncode == 0
    assert layout.run("install").returncode == 0
    assert layout.conf.read_bytes() == bracketed, "an install without --bracket keeps the mode"
    proc = layout.run("install", "--no-bracket")
    assert proc.returncode == 0, proc.stderr
    assert [p.get("role") for p in entries(layout.conf)] == [None]


def test_a_second_install_by_a_process_rewrites_nothing(layout: Layout) -> None:
    layout.conf.write_bytes(with_entry(CONF_NAME, OPERATOR, 0))
    assert layout.run("install").returncode == 0
    stat = layout.conf.stat()
    proc = layout.run("install")
    assert proc.returncode == 0 and "nothing to change" in proc.stderr, proc.stderr
    assert layout.conf.stat().st_mtime_ns == stat.st_mtime_ns and layout.conf.stat().st_ino == stat.st_ino


def test_sigterm_while_the_plugin_fails_leaves_the_entries_out_and_a_later_pass_puts_them_back(
        layout: Layout) -> None:
    """SIGTERM must not put back entries that run a broken plugin; the journal keeps them for the next pass."""
    primary = with_entry(layout.conf.name, OPERATOR, None)
    layout.conf.write_bytes(primary)
    watcher = layout.watch()
    try:
        assert wait_for(layout.ready.exists), "not ready"
        good = break_launcher(layout)
        assert wait_for(lambda: not entries(layout.conf)), "a broken logger still runs"
    finally:
        status, err = stop(watcher)
    assert status == 0, err
    assert not entries(layout.conf), f"SIGTERM put a broken logger back into the chain:\n{err}"
    layout.assert_journal_matches()

    repair_launcher(layout, good)
    proc = layout.run("install")
    assert proc.returncode == 0, proc.stderr
    assert layout.conf.read_bytes() == primary, "put back exactly"
    proc = layout.run("uninstall")
    assert proc.returncode == 3, proc.stderr  # the operator's entry still runs the launcher: kept (exit 3)
    assert layout.conf.read_bytes() == primary, "the operator's own entry is theirs: it stays"
    assert layout.launcher.exists(), "removed although the operator's chain names it"


def test_the_failsafe_takes_the_entry_out_even_when_the_state_dir_is_full(layout: Layout) -> None:
    """The journal cannot record the withdrawal (/var full): pods starting matters more, the entry comes out."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private mount namespace for the small tmpfs)")
    assert layout.run("install").returncode == 0
    saved = layout.root / "state-saved"
    shutil.copytree(layout.state, saved)
    script = ('dir=$1 saved=$2; shift 2; mount -t tmpfs -o size=16k,mode=0700 tmpfs "$dir" && cp -a "$saved"/. '
              '"$dir"/ && (dd if=/dev/zero of="$dir/.fill" bs=1k count=64 2>/dev/null; true) && exec "$@"')
    watcher = subprocess.Popen(["unshare", "-m", "sh", "-c", script, "sh", str(layout.state), str(saved),
                                *layout.argv("install", "--watch", "--interval", "0.1", "--ready-file",
                                             str(layout.ready))],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Not ready: with the state dir full the self-check has no scratch space, so it cannot vouch for the
        # plugin (the entry stays). Once the plugin does not even execute, that is a failed check all the same.
        break_launcher(layout)
        assert wait_for(lambda: not entries(layout.conf)), "the failsafe did nothing: a broken logger still runs"
    finally:
        _, err = stop(watcher)
    assert "could not be recorded" in err, err


def test_uninstall_while_entries_are_out_puts_the_operators_back_and_keeps_the_launcher_they_run(
        layout: Layout) -> None:
    other = layout.net_d / "20-other.conflist"
    second = with_entry("10-calico.conflist", {"type": "logger", "logFile": "/var/log/other.log"}, 1)
    other.write_bytes(second)
    watcher = layout.watch()
    try:
        assert wait_for(layout.ready.exists), "not ready"
        good = break_launcher(layout)
        assert wait_for(lambda: not entries(layout.conf) and not entries(other)), "a broken logger still runs"
    finally:
        status, err = stop(watcher)
    assert status == 0, err
    repair_launcher(layout, good)

    proc = layout.run("uninstall")
    assert proc.returncode == 3, proc.stderr  # entries out, the launcher kept for the operator's chain
    assert layout.conf.read_bytes() == layout.original
    assert other.read_bytes() == second, "the operator's own entry is back where it was"
    assert layout.launcher.exists(), "removed although the operator's chain names it"
    assert f"the logger is still named by {other}" in proc.stderr, proc.stderr
    layout.assert_chains_execute()
