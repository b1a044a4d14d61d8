"""After ``cni-logger install`` a real chain still works through cnitool (libcni), and uninstall restores it.

Uses the integration harness (``tests/harness/cnitool.py``): throw-away network namespaces, a CNI
bin dir of the system's reference plugins, and a conf dir in a temporary directory. Needs root and cnitool;
skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.harness.cnitool import (
    CniSandbox,
    cnitool_container_id,
    result_mismatches,
    run,
)

pytestmark = pytest.mark.integration


def test_installed_chain_runs_through_cnitool_and_uninstall_restores(bare_sandbox: CniSandbox,
                                                                    cni_logger_cli: Path) -> None:
    sb = bare_sandbox
    net = sb.new_network("install")
    conflist = sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    original = conflist.read_bytes()
    cni_logger = str(cni_logger_cli)
    state = sb.tmp / "state"

    run([cni_logger, "install", "--conf-dir", str(sb.netconf_dir), "--bin-dir", str(sb.bin_dir),
         "--log-file", str(net.log_file), "--state-dir", str(state)], check=True)
    plugins = json.loads(conflist.read_text())["plugins"]
    assert [p["type"] for p in plugins] == ["bridge", "logger"]
    # The plugin the runtime runs is that install's interpreter (the bundle's, unless CNI_LOGGER_CLI is set).
    assert (sb.bin_dir / "logger").read_text().startswith(f"#!{cni_logger_cli.resolve().parent}/python")

    ctr = sb.new_container()
    add = sb.cnitool("add", net, ctr)
    assert add.rc == 0, add.describe()
    assert result_mismatches(json.loads(add.stdout), sb.bridge_result(net, ctr, "1.0.0")) == []
    check = sb.cnitool("check", net, ctr)
    assert check.rc == 0, check.describe()
    delete = sb.cnitool("del", net, ctr)
    assert delete.rc == 0, delete.describe()

    events = net.events()
    assert [e["cni"]["command"] for e in events] == ["ADD", "CHECK", "DEL"]
    add_event = events[0]
    assert add_event["event"]["outcome"] == "success"
    assert add_event["container"]["id"] == cnitool_container_id(sb.netns_path(ctr))
    assert add_event["network"]["name"] == net.name
    assert add_event["cni"]["prev_result"]["ips"], "the logger, last, saw the bridge's result"

    run([cni_logger, "uninstall", "--state-dir", str(state)], check=True)
    assert conflist.read_bytes() == original
    assert not (sb.bin_dir / "logger").exists()


@pytest.mark.parametrize("point", ["install:intent", "install:step-1", "install:step-2",
                                   "uninstall:intent", "uninstall:step-1", "uninstall:step-2"])
def test_an_installer_killed_at_any_step_leaves_a_chain_the_runtime_runs(bare_sandbox: CniSandbox,
                                                                         cni_logger_cli: Path, point: str) -> None:
    """SIGKILL at each step boundary (``CNI_LOGGER_TEST_KILL_AT``): libcni's ADD and DEL still succeed, and
    the next pass finishes the change (tests/install/test_transactions.py kills every kind of pass)."""
    sb = bare_sandbox
    net = sb.new_network("killed")
    conflist = sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    original = conflist.read_bytes()
    cni_logger = str(cni_logger_cli)
    state = sb.tmp / "state"
    install = [cni_logger, "install", "--conf-dir", str(sb.netconf_dir), "--bin-dir", str(sb.bin_dir),
               "--log-file", str(net.log_file), "--state-dir", str(state)]
    uninstall = [cni_logger, "uninstall", "--state-dir", str(state)]
    command = install if point.startswith("install:") else uninstall
    if command is uninstall:
        run(install, check=True)

    killed = run(command, env={**os.environ, "CNI_LOGGER_TEST_KILL_AT": point})
    assert killed.rc == -signal.SIGKILL, killed.describe()
    for _ in range(2):  # as the interrupted pass left it, then as the next pass leaves it
        ctr = sb.new_container()
        add = sb.cnitool("add", net, ctr)
        assert add.rc == 0, add.describe()
        delete = sb.cnitool("del", net, ctr)
        assert delete.rc == 0, delete.describe()
        again = run(command)
        assert again.rc == 0, again.describe()
    logged = {e["container"]["id"] for e in net.events() if e["cni"]["command"] == "ADD"}
    assert (cnitool_container_id(sb.netns_path(ctr)) in logged) == (command is install)

    run(uninstall, check=True)
    assert conflist.read_bytes() == original
    assert not (sb.bin_dir / "logger").exists()
