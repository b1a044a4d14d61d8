"""An operator's own logger entry survives ``cni-logger install`` and comes back on ``uninstall``.

The entry may carry settings that matter for security (``redactKeys``: secrets masked), for strictness
(``failOnLogError``) and for where events go (``logFile``, ``logOptions``): install keeps all of them,
options given on the command line change only what they name, and uninstall puts the entry back where
it was — byte for byte when nobody changed the file, and into the changed file otherwise.
"""

from __future__ import annotations

import json
from typing import Any

from cni_logger.install.journal import JOURNAL_NAME
from tests.harness.nodes import Node, shape

OPERATOR = {
    "type": "logger",
    "logFile": "/var/log/audit/cni.log",
    "failOnLogError": True,
    "redactKeys": ["k8s_auth_token", "apiKey"],
    "logOptions": {"maxSize": 20, "maxBackups": 9, "compress": True},
    "capabilities": {"portMappings": True},
}


def flannel_with(entry: dict[str, Any], at: int) -> str:
    doc = json.loads(shape("10-flannel.conflist"))
    doc["plugins"].insert(at, entry)
    return json.dumps(doc, indent=2) + "\n"


def plugins(node: Node) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = node.doc("10-flannel.conflist")["plugins"]
    return result


def uninstall_putting_the_entry_back(node: Node) -> None:
    """The operator's own entry comes back, and it names the logger: the launcher stays (exit 3, the file named)."""
    status, _, err = node.uninstall()
    assert status == 3, err
    assert node.launcher.exists() and "kept" in err and str(node.net_d) in err, err


def test_install_keeps_every_setting_of_the_operators_entry_and_uninstall_restores_it(node: Node) -> None:
    original = node.put("10-flannel.conflist", flannel_with(OPERATOR, 1)).read_bytes()
    status, _, err = node.install()
    assert status == 0, err
    assert [p["type"] for p in plugins(node)] == ["flannel", "portmap", "logger"], "moved last"
    assert plugins(node)[-1] == OPERATOR, "nothing of the operator's entry is dropped or changed"
    uninstall_putting_the_entry_back(node)
    assert (node.net_d / "10-flannel.conflist").read_bytes() == original


def test_an_entry_without_log_file_keeps_the_plugins_default(node: Node) -> None:
    """Install writes logFile into a fresh entry, never into an operator's entry that does not name one."""
    entry = {"type": "logger", "redactKeys": ["token"]}
    node.put("10-flannel.conflist", flannel_with(entry, 2))
    assert node.install()[0] == 0
    assert plugins(node)[-1] == entry


def test_options_given_change_only_what_they_name(node: Node) -> None:
    node.put("10-flannel.conflist", flannel_with(OPERATOR, 2))
    status, _, err = node.install("--max-size", "5", "--rotation", "external", "--capabilities", "bandwidth")
    assert status == 0, err
    assert plugins(node)[-1] == {
        **OPERATOR,
        "logOptions": {"maxSize": 5, "maxBackups": 9, "compress": True, "rotation": "external"},
        "capabilities": {"portMappings": True, "bandwidth": True},
    }
    status, _, err = node.install("--log-file", "/var/log/other.log")
    assert status == 0, err
    assert plugins(node)[-1] == {**OPERATOR, "logFile": "/var/log/other.log"}, (
        "each install applies its options to the operator's entry, not to the previous install's result")
    assert node.install()[0] == 0
    assert plugins(node)[-1] == OPERATOR
    uninstall_putting_the_entry_back(node)
    assert plugins(node)[2] == OPERATOR


def test_the_dry_run_diff_shows_only_the_named_change(node: Node) -> None:
    node.put("10-flannel.conflist", flannel_with(OPERATOR, 2))
    snapshot = node.snapshot()
    status, out, err = node.install("--dry-run", "--max-backups", "3")
    assert status == 0, err
    assert node.snapshot() == snapshot
    conf_diff = out[out.index(f"--- {node.net_d / '10-flannel.conflist'}"):]
    conf = [line for line in conf_diff.splitlines()[2:] if line[:1] in "+-"]
    changed = [line for line in conf if '"maxBackups"' in line]
    assert changed == ['-        "maxBackups": 9,', '+        "maxBackups": 3,'], out
    assert not any("redactKeys" in line or "failOnLogError" in line for line in conf), out


def test_uninstall_after_someone_else_changed_the_file_puts_the_operators_entry_back(node: Node) -> None:
    """The journal keeps the operator's entry: a file changed since install gets it back, where it was."""
    node.put("10-flannel.conflist", flannel_with(OPERATOR, 1))
    assert node.install("--max-size", "7")[0] == 0
    doc = node.doc("10-flannel.conflist")
    doc["plugins"].insert(2, {"type": "bandwidth", "capabilities": {"bandwidth": True}})
    (node.net_d / "10-flannel.conflist").write_text(json.dumps(doc, indent=4))
    uninstall_putting_the_entry_back(node)
    assert plugins(node) == [json.loads(shape("10-flannel.conflist"))["plugins"][0], OPERATOR,
                             json.loads(shape("10-flannel.conflist"))["plugins"][1],
                             {"type": "bandwidth", "capabilities": {"bandwidth": True}}]


def test_an_agent_rewrite_without_any_logger_keeps_the_operators_settings_in_place(node: Node) -> None:
    """calico-node rewrites its file from its template: the entry install puts back still masks the
    operator's redactKeys; uninstall then gives back the agent's latest version, byte for byte."""
    calico = json.loads(shape("10-calico.conflist"))
    calico["plugins"].insert(1, OPERATOR)
    path = node.put("10-calico.conflist", json.dumps(calico, indent=2) + "\n")
    assert node.install()[0] == 0
    rewritten = shape("10-calico.conflist").replace(b'"mtu": 0', b'"mtu": 1450')
    path.write_bytes(rewritten)
    assert node.install()[0] == 0
    assert node.doc("10-calico.conflist")["plugins"][-1] == OPERATOR
    snapshot = node.snapshot()
    assert node.install()[0] == 0 and node.snapshot() == snapshot, "stable: no rewrite on the next pass"
    assert node.uninstall()[0] == 0
    assert path.read_bytes() == rewritten


def test_a_journal_of_the_previous_version_still_gives_the_entry_back(node: Node) -> None:
    """Journals written before the operator's entry was recorded: it is read from the recorded original."""
    node.put("10-flannel.conflist", flannel_with(OPERATOR, 1))
    assert node.install()[0] == 0
    journal_path = node.state_dir / JOURNAL_NAME
    journal = json.loads(journal_path.read_text())
    for record in journal["configs"].values():
        for key in [k for k in record if k.startswith("entry")]:
            del record[key]
    journal_path.write_text(json.dumps(journal))
    doc = node.doc("10-flannel.conflist")
    doc["plugins"].insert(0, {"type": "tuning"})
    (node.net_d / "10-flannel.conflist").write_text(json.dumps(doc, indent=2))
    uninstall_putting_the_entry_back(node)
    assert [p["type"] for p in plugins(node)] == ["tuning", "logger", "flannel", "portmap"]
    assert plugins(node)[1] == OPERATOR


def test_two_logger_entries_are_refused_not_merged(node: Node) -> None:
    doc = json.loads(flannel_with(OPERATOR, 0))
    doc["plugins"].append({"type": "logger", "logFile": "/var/log/b.log"})
    node.put("10-flannel.conflist", json.dumps(doc, indent=2))
    snapshot = node.snapshot()
    status, _, err = node.install()
    assert status == 1
    assert "2 logger entries" in err
    assert node.snapshot() == snapshot


def test_an_operators_logger_network_for_rkt_keeps_its_settings(node: Node) -> None:
    own = {"cniVersion": "0.4.0", "name": "cni-logger", "type": "logger", "redactKeys": ["token"],
           "logFile": "/var/log/rkt-cni.log"}
    original = node.put("zz-cni-logger.conf", json.dumps(own, indent=2) + "\n").read_bytes()
    status, _, err = node.install("--runtime", "rkt", "--max-size", "9")
    assert status == 0, err
    assert node.doc("zz-cni-logger.conf") == {**own, "logOptions": {"maxSize": 9}}
    uninstall_putting_the_entry_back(node)
    assert (node.net_d / "zz-cni-logger.conf").read_bytes() == original
