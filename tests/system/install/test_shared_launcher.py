"""One bin dir, two installs (two state dirs, two conf dirs): uninstalling one never removes the launcher the
other network still names. Real processes: ``cni-logger install``/``uninstall``, and the other network driven
with the real cnitool (libcni) afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.cnitool import CniSandbox, run

pytestmark = pytest.mark.integration


def test_uninstall_keeps_a_launcher_another_network_names(bare_sandbox: CniSandbox, cni_logger_cli: Path) -> None:
    sb = bare_sandbox
    cli = str(cni_logger_cli)
    net_a = sb.new_network("a")
    conf_a = sb.write_conflist(net_a, "1.0.0", [net_a.bridge_plugin()])
    conf_dir_b = sb.tmp / "net.d-b"
    conf_dir_b.mkdir()
    conf_b = conf_dir_b / "10-b.conflist"
    conf_b.write_text(json.dumps({"cniVersion": "1.0.0", "name": "network-b",
                                  "plugins": [{"type": "bridge", "bridge": "cnilb0"}]}, indent=2) + "\n")
    original_b = conf_b.read_bytes()
    state_a, state_b = sb.tmp / "state-a", sb.tmp / "state-b"
    for conf_dir, state, log in ((sb.netconf_dir, state_a, net_a.log_file), (conf_dir_b, state_b, sb.tmp / "b.log")):
        run([cli, "install", "--conf-dir", str(conf_dir), "--bin-dir", str(sb.bin_dir), "--state-dir", str(state),
             "--log-file", str(log)], check=True)
    assert [p["type"] for p in json.loads(conf_a.read_text())["plugins"]] == ["bridge", "logger"]
    done = run([cli, "uninstall", "--state-dir", str(state_b)])
    assert done.rc == 3, done.describe()
    assert conf_b.read_bytes() == original_b, "its own entry is out: the file is restored"
    assert (sb.bin_dir / "logger").exists(), "kept: network A still runs it"
    assert str(conf_a) in done.stderr and net_a.name in done.stderr, done.stderr

    ctr = sb.new_container()
    add = sb.cnitool("add", net_a, ctr)
    assert add.rc == 0, add.describe()
    delete = sb.cnitool("del", net_a, ctr)
    assert delete.rc == 0, delete.describe()
    assert [e["cni"]["command"] for e in net_a.events()] == ["ADD", "DEL"]
    registry = sb.bin_dir / ".logger.cni-logger-users"
    assert registry.exists(), "the installs are registered beside the launcher"

    again = run([cli, "uninstall", "--state-dir", str(state_b)])
    assert again.rc == 0, again.describe()
    assert (sb.bin_dir / "logger").exists()

    last = run([cli, "uninstall", "--state-dir", str(state_a)])
    assert last.rc == 0, last.describe()
    assert not (sb.bin_dir / "logger").exists(), "the last install's uninstall removes it"
    assert not registry.exists()


def test_an_unregistered_install_in_a_conf_dir_recorded_by_this_journal_keeps_it(bare_sandbox: CniSandbox,
                                                                                 cni_logger_cli: Path) -> None:
    """A config written by hand (no install recorded it) in the conf dir this install used names the logger."""
    sb = bare_sandbox
    cli = str(cni_logger_cli)
    net_a = sb.new_network("mine")
    sb.write_conflist(net_a, "1.0.0", [net_a.bridge_plugin()])
    state = sb.tmp / "state"
    run([cli, "install", "--conf-dir", str(sb.netconf_dir), "--bin-dir", str(sb.bin_dir), "--state-dir", str(state),
         "--log-file", str(net_a.log_file)], check=True)
    net_b = sb.new_network("byhand")
    by_hand = sb.write_conflist(net_b, "1.0.0", [net_b.bridge_plugin(), net_b.logger_plugin()])
    done = run([cli, "uninstall", "--state-dir", str(state)])
    assert done.rc == 3, done.describe()
    assert str(by_hand) in done.stderr
    ctr = sb.new_container()
    add = sb.cnitool("add", net_b, ctr)
    assert add.rc == 0, add.describe()
    assert sb.cnitool("del", net_b, ctr).rc == 0
