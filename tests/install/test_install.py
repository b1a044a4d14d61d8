"""``cni-logger install`` / ``uninstall`` against the config shapes real nodes have.

Each shape is installed into, checked (logger last, everything else unchanged, mode kept), installed
again (no write at all), and uninstalled (the original back byte for byte, the launcher gone).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cni_logger.install import atomicfile, launcher
from cni_logger.install import content as new_content
from tests.harness.nodes import Node, shape

LOGGER = {"type": "logger", "logFile": "/var/log/cni/cni-logger.log"}


def plugins_before(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["plugins"] if p["type"] != "logger"]


# ---------------------------------------------------------------------------------------------------------
# Plugin lists: the entry goes last, nothing else changes, idempotent, uninstall restores the bytes


LISTS = [
    ("10-containerd-net.conflist", "containerd", []),
    ("10-flannel.conflist", "containerd", []),
    ("10-calico.conflist", "containerd", []),
    ("05-cilium.conflist", "containerd", []),
    ("11-crio-ipv4-bridge.conflist", "crio", []),
    ("87-podman-bridge.conflist", "podman", []),
]


@pytest.mark.parametrize(("name", "runtime", "extra"), LISTS)
def test_list_shapes_round_trip(node: Node, name: str, runtime: str, extra: list[str]) -> None:
    original = node.put(name).read_bytes()
    before = json.loads(original)

    status, _, err = node.install("--runtime", runtime, *extra)
    assert status == 0, err
    after = node.doc(name)
    assert after["plugins"][-1] == LOGGER
    assert after["plugins"][:-1] == before["plugins"]
    assert {k: v for k, v in after.items() if k != "plugins"} == {k: v for k, v in before.items() if k != "plugins"}
    assert list(after) == list(before), "key order kept"
    launcher = node.launcher.read_text()
    assert launcher.startswith("#!/") and "# cni-logger CNI plugin launcher" in launcher
    assert os.access(node.launcher, os.X_OK)
    assert not [p.name for p in node.net_d.iterdir() if p.name != name], "no temporary or extra files left"

    snapshot = node.snapshot()
    status, _, err = node.install("--runtime", runtime, *extra)
    assert status == 0, err
    assert "nothing to change" in err
    assert node.snapshot() == snapshot, "a second install writes nothing (mtimes unchanged)"

    status, _, err = node.uninstall()
    assert status == 0, err
    assert (node.net_d / name).read_bytes() == original
    assert not node.launcher.exists()
    assert not (node.state_dir / "install.json").exists()


def test_indentation_is_kept_so_the_diff_is_only_the_entry(node: Node) -> None:
    """Podman writes 3-space JSON: the rewrite keeps it, so an operator's diff shows only the logger."""
    import difflib

    original = node.put("87-podman-bridge.conflist").read_text()
    assert node.install("--runtime", "podman")[0] == 0
    new = (node.net_d / "87-podman-bridge.conflist").read_text()
    removed = [line for line in difflib.unified_diff(original.splitlines(), new.splitlines(), lineterm="")
               if line.startswith("-") and not line.startswith("---")]
    assert removed in ([], ["-      }"]), removed  # at most: the previous last entry gains its comma


def test_calico_mode_0600_and_owner_are_kept(node: Node) -> None:
    path = node.put("10-calico.conflist", mode=0o600)
    if os.geteuid() == 0:
        os.chown(path, 1234, 2345)
    original = path.read_bytes()
    assert node.install()[0] == 0
    st = path.stat()
    assert st.st_mode & 0o7777 == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 2345)
    # The journal holds the original (which may carry Calico's token): only root may read it.
    assert (node.state_dir / "install.json").stat().st_mode & 0o777 == 0o600
    assert node.state_dir.stat().st_mode & 0o777 == 0o700
    assert node.uninstall()[0] == 0
    assert path.read_bytes() == original
    assert path.stat().st_mode & 0o7777 == 0o600


def test_cilium_warns_about_cni_exclusive(node: Node) -> None:
    node.put("05-cilium.conflist")
    status, _, err = node.install()
    assert status == 0
    assert "cni.exclusive=false" in err


def test_cilium_is_recognised_by_plugin_type_too(node: Node) -> None:
    node.put("10-mine.conflist", shape("05-cilium.conflist"))
    assert "cni.exclusive=false" in node.install()[2]


def test_options_become_the_entry(node: Node) -> None:
    node.put("10-flannel.conflist")
    status, _, err = node.install("--log-file", "/var/log/audit/cni.log", "--fail-on-log-error", "--max-size", "50",
                                  "--max-backups", "3", "--max-age", "7.5", "--compress", "--rotation", "external",
                                  "--capabilities", "portMappings, bandwidth")
    assert status == 0, err
    assert node.doc("10-flannel.conflist")["plugins"][-1] == {
        "type": "logger",
        "capabilities": {"portMappings": True, "bandwidth": True},
        "logFile": "/var/log/audit/cni.log",
        "failOnLogError": True,
        "logOptions": {"maxSize": 50, "maxBackups": 3, "maxAge": 7.5, "compress": True, "rotation": "external"},
    }


def test_changed_options_replace_the_entry_and_uninstall_still_restores(node: Node) -> None:
    original = node.put("10-flannel.conflist").read_bytes()
    assert node.install()[0] == 0
    assert node.install("--max-size", "10")[0] == 0
    plugins = node.doc("10-flannel.conflist")["plugins"]
    assert [p["type"] for p in plugins] == ["flannel", "portmap", "logger"]
    assert plugins[-1]["logOptions"] == {"maxSize": 10}
    assert node.uninstall()[0] == 0
    assert (node.net_d / "10-flannel.conflist").read_bytes() == original


def test_an_existing_logger_entry_is_moved_last_with_its_settings_and_restored_on_uninstall(node: Node) -> None:
    """(tests/install/test_operator_entry.py has the rest: options, changed files, journals.)"""
    doc = json.loads(shape("10-flannel.conflist"))
    doc["plugins"].insert(1, {"type": "logger", "logFile": "/tmp/old.log"})
    original = node.put("10-flannel.conflist", json.dumps(doc, indent=2) + "\n").read_bytes()
    assert node.install()[0] == 0
    assert [p["type"] for p in node.doc("10-flannel.conflist")["plugins"]] == ["flannel", "portmap", "logger"]
    assert node.doc("10-flannel.conflist")["plugins"][-1] == {"type": "logger", "logFile": "/tmp/old.log"}
    status, _, err = node.uninstall()
    assert status == 3 and node.launcher.exists(), f"the operator's own entry names it: kept ({err})"
    assert (node.net_d / "10-flannel.conflist").read_bytes() == original, "the operator's own entry is back"


# ---------------------------------------------------------------------------------------------------------
# Single-plugin configs are converted to lists


def test_crio_single_conf_is_converted_and_restored(node: Node) -> None:
    original = node.put("100-crio-bridge.conf").read_bytes()
    before = json.loads(original)
    status, _, err = node.install("--runtime", "crio")
    assert status == 0, err
    assert not (node.net_d / "100-crio-bridge.conf").exists()
    after = node.doc("100-crio-bridge.conflist")
    inner = {k: v for k, v in before.items() if k not in ("cniVersion", "name")}
    assert after == {"cniVersion": "0.3.1", "name": "crio", "plugins": [inner, LOGGER]}
    assert list(after["plugins"][0]) == list(inner), "key order kept"

    snapshot = node.snapshot()
    assert node.install("--runtime", "crio")[0] == 0
    assert node.snapshot() == snapshot

    assert node.uninstall()[0] == 0
    assert sorted(p.name for p in node.net_d.iterdir()) == ["100-crio-bridge.conf"]
    assert (node.net_d / "100-crio-bridge.conf").read_bytes() == original


def test_a_conf_without_cni_version_gets_0_4_0(node: Node) -> None:
    node.put("10-net.conf", '{"name": "net", "type": "bridge"}')
    assert node.install()[0] == 0
    assert node.doc("10-net.conflist") == {"cniVersion": "0.4.0", "name": "net",
                                           "plugins": [{"type": "bridge"}, LOGGER]}


def test_json_files_are_considered_and_are_single_configs(node: Node) -> None:
    """containerd and CRI-O load *.json too, as single-plugin configs (only .conflist is a list)."""
    node.put("05-net.json", '{"cniVersion": "1.0.0", "name": "jnet", "type": "ptp"}\n')
    node.put("10-flannel.conflist")
    assert node.install()[0] == 0
    assert not (node.net_d / "05-net.json").exists()
    assert node.doc("05-net.conflist")["plugins"] == [{"type": "ptp"}, LOGGER]
    assert "logger" not in (node.net_d / "10-flannel.conflist").read_text()
    assert node.uninstall()[0] == 0
    assert (node.net_d / "05-net.json").read_text() == '{"cniVersion": "1.0.0", "name": "jnet", "type": "ptp"}\n'


def test_conversion_refuses_to_overwrite_a_conflist_of_the_same_stem(node: Node) -> None:
    node.put("10-a.conf", '{"cniVersion": "1.0.0", "name": "a", "type": "ptp"}')
    node.put("10-a.conflist", shape("10-flannel.conflist"))
    snapshot = node.snapshot()
    status, _, err = node.install()
    assert status == 1 and "exists already" in err
    assert node.snapshot() == snapshot


def test_conversion_is_repeated_when_the_agent_writes_its_conf_again(node: Node) -> None:
    node.put("100-crio-bridge.conf")
    assert node.install("--runtime", "crio")[0] == 0
    agent_version = shape("100-crio-bridge.conf").replace(b"10.85.0.0/16", b"10.86.0.0/16")
    node.put("100-crio-bridge.conf", agent_version)       # sorts before our .conflist: primary again
    assert node.install("--runtime", "crio")[0] == 0
    assert not (node.net_d / "100-crio-bridge.conf").exists()
    assert "10.86.0.0/16" in (node.net_d / "100-crio-bridge.conflist").read_text()
    assert node.uninstall()[0] == 0
    assert (node.net_d / "100-crio-bridge.conf").read_bytes() == agent_version, "the agent's latest version is back"
    assert not (node.net_d / "100-crio-bridge.conflist").exists()


# ---------------------------------------------------------------------------------------------------------
# Which file: the runtime's order


def test_lexicographic_order_picks_100_before_11(node: Node) -> None:
    node.put("100-crio-bridge.conf")
    node.put("11-crio-ipv4-bridge.conflist")
    node.put("99-loopback.conf")
    assert node.install("--runtime", "crio")[0] == 0
    assert node.doc("100-crio-bridge.conflist")["plugins"][-1] == LOGGER
    assert "logger" not in (node.net_d / "11-crio-ipv4-bridge.conflist").read_text()
    assert "logger" not in (node.net_d / "99-loopback.conf").read_text()


@pytest.mark.parametrize(("bad_name", "content", "why"), [
    ("00-broken.conf", '{"cniVersion": "0.4.0", "name": ', "not valid JSON"),
    ("00-empty.conflist", '{"cniVersion": "1.0.0", "name": "e", "plugins": []}', "no plugins"),
    ("00-list-in-conf.conf", shape("10-flannel.conflist").decode(), "has no 'type'"),
    ("00-untyped.conflist", '{"cniVersion": "1.0.0", "name": "u", "plugins": [{"bridge": "x"}]}', "'type'"),
    ("00-nan.conf", '{"cniVersion": "1.0.0", "name": "n", "type": "x", "mtu": NaN}', "not valid JSON"),
    ("00-array.json", "[]", "not a JSON object"),
])
def test_files_the_runtime_cannot_load_are_skipped_loudly(node: Node, bad_name: str, content: str, why: str) -> None:
    node.put(bad_name, content)
    node.put("10-flannel.conflist")
    status, _, err = node.install()
    assert status == 0, err
    assert node.doc("10-flannel.conflist")["plugins"][-1] == LOGGER
    assert f"skipped {node.net_d / bad_name}" in err and why in err
    assert "containerd stops at the first file it cannot load" in err
    assert (node.net_d / bad_name).read_text() == content


def test_a_half_written_primary_is_waited_for_not_skipped(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calico writes 10-calico.conflist in place: a reader can see it truncated. The installer reads again
    before believing it, and so inserts into Calico's file, not into the next one."""
    calico = node.put("10-calico.conflist", shape("10-calico.conflist")[:40])
    node.put("20-other.conflist", shape("10-flannel.conflist"))
    reads = []
    sleep = time.sleep

    def finish_write(seconds: float) -> None:
        if reads:                   # a later sleep (the self-check waiting for the plugin): an ordinary one
            sleep(seconds)
            return
        reads.append(seconds)
        calico.write_bytes(shape("10-calico.conflist"))

    monkeypatch.setattr("time.sleep", finish_write)
    status, _, err = node.install()
    assert status == 0, err
    assert reads, "the torn file was read again"
    assert node.doc("10-calico.conflist")["plugins"][-1] == LOGGER
    assert "logger" not in (node.net_d / "20-other.conflist").read_text()


def test_directories_and_other_extensions_are_ignored(node: Node) -> None:
    (node.net_d / "00-dir.conf").mkdir()
    node.put("00-notes.txt", "{")
    node.put("00-old.conflist.bak", "{")
    node.put("10-flannel.conflist")
    status, _, err = node.install()
    assert status == 0 and "skipped" not in err


def test_conf_file_names_the_target(node: Node) -> None:
    node.put("05-cilium.conflist")
    node.put("10-flannel.conflist")
    assert node.install("--conf-file", "10-flannel.conflist")[0] == 0
    assert node.doc("10-flannel.conflist")["plugins"][-1] == LOGGER
    assert "logger" not in (node.net_d / "05-cilium.conflist").read_text()


def test_network_names_the_target(node: Node) -> None:
    node.put("10-containerd-net.conflist")
    node.put("20-flannel.conflist", shape("10-flannel.conflist"))
    assert node.install("--network", "cbr0")[0] == 0
    assert node.doc("20-flannel.conflist")["plugins"][-1] == LOGGER
    assert "logger" not in (node.net_d / "10-containerd-net.conflist").read_text()


# ---------------------------------------------------------------------------------------------------------
# Refusals: exit status 1, a reason, and nothing written (no launcher, no journal either)


def _dup_keys() -> str:
    return '{"cniVersion": "1.0.0", "name": "a", "name": "b", "plugins": [{"type": "bridge"}]}'


REFUSALS: list[tuple[str, dict[str, str], list[str], str]] = [
    ("duplicate keys first", {"00-dup.conflist": _dup_keys(), "10-flannel.conflist": ""}, [],
     "duplicate key 'name'"),
    ("named file invalid JSON", {"10-x.conflist": "{"}, ["--conf-file", "10-x.conflist"], "not valid JSON"),
    ("named conflist without plugins", {"10-x.conflist": '{"cniVersion": "1.0.0", "name": "x", "plugins": []}'},
     ["--conf-file", "10-x.conflist"], "no plugins"),
    ("named conf without type", {"10-x.conf": '{"cniVersion": "1.0.0", "name": "x"}'},
     ["--conf-file", "10-x.conf"], "no 'type'"),
    ("named file missing", {}, ["--conf-file", "10-x.conflist"], "does not exist"),
    ("named file with duplicate keys", {"10-x.conflist": _dup_keys()}, ["--conf-file", "10-x.conflist"],
     "duplicate key"),
    ("unsupported cniVersion", {"10-x.conflist": '{"cniVersion": "9.9.9", "name": "x", "plugins": [{"type": "b"}]}'},
     [], "cniVersion '9.9.9'"),
    ("invalid characters in network name", {"10-x.conflist": '{"cniVersion": "1.0.0", "name": "a b", "plugins": '
                                                           '[{"type": "b"}]}'}, [], "network name"),
    ("conf without a name cannot be wrapped", {"10-x.conf": '{"cniVersion": "1.0.0", "type": "bridge"}'}, [],
     "missing network name"),
    ("no config at all", {}, [], "no valid network config"),
    ("only broken configs", {"10-x.conflist": "{"}, [], "no valid network config"),
    ("two files for the named network", {"10-a.conflist": "", "20-b.conflist": ""}, ["--network", "cbr0"],
     "defined by 2 files"),
    ("named network absent", {"10-flannel.conflist": ""}, ["--network", "nope"], "defines network 'nope'"),
    ("podman with two networks", {"87-podman-bridge.conflist": "", "88-other.conflist": ""},
     ["--runtime", "podman"], "no primary one"),
    ("podman .conf", {"10-x.conf": '{"cniVersion": "0.4.0", "name": "x", "type": "b"}'},
     ["--runtime", "podman", "--conf-file", "10-x.conf"], "loads only .conflist"),
    ("relative log file", {"10-flannel.conflist": ""}, ["--log-file", "cni.log"], "absolute path"),
    ("zero max size", {"10-flannel.conflist": ""}, ["--max-size", "0"], "maxSize"),
    ("symlinked primary", {"00-link.conflist": "->10-flannel.conflist", "10-flannel.conflist": ""}, [],
     "symbolic link"),
    ("foreign executable named logger", {"10-flannel.conflist": "", "BIN": "#!/bin/sh\nexit 0\n"}, [],
     "not a cni-logger launcher"),
]


@pytest.mark.parametrize(("files", "args", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_write_nothing(node: Node, files: dict[str, str], args: list[str], message: str) -> None:
    for name, content in files.items():
        if name == "BIN":
            node.launcher.write_text(content)
        elif content.startswith("->"):
            (node.net_d / name).symlink_to(content[2:])
        elif content:
            node.put(name, content)
        else:
            node.put(name, shape("10-flannel.conflist") if name not in ("10-containerd-net.conflist",) else None)
    snapshot = node.snapshot()
    status, out, err = node.install(*args)
    assert status == 1, err
    assert "refused:" in err and message in err, err
    assert out == ""
    assert node.snapshot() == snapshot


def test_dry_run_prints_a_diff_and_writes_nothing(node: Node) -> None:
    node.put("100-crio-bridge.conf")
    snapshot = node.snapshot()
    status, out, err = node.install("--runtime", "crio", "--dry-run")
    assert status == 0, err
    assert node.snapshot() == snapshot
    assert not node.state_dir.exists()
    assert f"+++ {node.launcher}" in out
    assert f"+++ {node.net_d / '100-crio-bridge.conflist'}" in out
    assert f"--- {node.net_d / '100-crio-bridge.conf'}\n+++ /dev/null" in out
    assert any(line.startswith("+") and '"type": "logger"' in line for line in out.splitlines())


def test_dry_run_when_installed_says_nothing_to_change(node: Node) -> None:
    node.put("10-flannel.conflist")
    assert node.install()[0] == 0
    status, out, err = node.install("--dry-run")
    assert (status, out) == (0, "") and "nothing to change" in err


# ---------------------------------------------------------------------------------------------------------
# Uninstall when someone else changed things in between


def test_agent_rewrite_then_reinstall_then_uninstall_gives_the_agents_version(node: Node) -> None:
    path = node.put("10-calico.conflist", mode=0o600)
    assert node.install()[0] == 0
    rewritten = shape("10-calico.conflist").replace(b'"mtu": 0', b'"mtu": 1450')
    path.write_bytes(rewritten)                            # calico-node restarted: our entry is gone
    assert node.install()[0] == 0
    assert node.doc("10-calico.conflist")["plugins"][-1] == LOGGER
    assert node.uninstall()[0] == 0
    assert path.read_bytes() == rewritten


def test_uninstall_after_someone_else_edited_removes_only_the_logger(node: Node) -> None:
    node.put("10-flannel.conflist")
    assert node.install()[0] == 0
    doc = node.doc("10-flannel.conflist")
    doc["plugins"].insert(2, {"type": "bandwidth", "capabilities": {"bandwidth": True}})
    (node.net_d / "10-flannel.conflist").write_text(json.dumps(doc, indent=4))
    assert node.uninstall()[0] == 0
    assert [p["type"] for p in node.doc("10-flannel.conflist")["plugins"]] == ["flannel", "portmap", "bandwidth"]


def test_uninstall_of_a_changed_converted_file_keeps_it_a_list(node: Node) -> None:
    node.put("100-crio-bridge.conf")
    assert node.install("--runtime", "crio")[0] == 0
    doc = node.doc("100-crio-bridge.conflist")
    doc["plugins"].insert(1, {"type": "portmap", "capabilities": {"portMappings": True}})
    (node.net_d / "100-crio-bridge.conflist").write_text(json.dumps(doc))
    assert node.uninstall()[0] == 0
    assert sorted(p.name for p in node.net_d.iterdir()) == ["100-crio-bridge.conflist"]
    assert [p["type"] for p in node.doc("100-crio-bridge.conflist")["plugins"]] == ["bridge", "portmap"]


def test_uninstall_leaves_a_launcher_that_is_no_longer_ours(node: Node) -> None:
    node.put("10-flannel.conflist")
    assert node.install()[0] == 0
    node.launcher.write_text("#!/bin/sh\n# someone else's logger\n")
    status, _, err = node.uninstall()
    assert status == 0 and "not a cni-logger launcher" in err
    assert node.launcher.read_text() == "#!/bin/sh\n# someone else's logger\n"


def test_uninstall_keep_launcher_and_dry_run(node: Node) -> None:
    original = node.put("10-flannel.conflist").read_bytes()
    assert node.install()[0] == 0
    snapshot = node.snapshot()
    status, out, _ = node.uninstall("--dry-run")
    assert status == 0 and node.snapshot() == snapshot
    assert '-      "type": "logger",' in out and "+++ /dev/null" in out
    assert node.uninstall("--keep-launcher")[0] == 0
    assert (node.net_d / "10-flannel.conflist").read_bytes() == original
    assert node.launcher.exists()
    assert node.uninstall()[0] == 0, "a later uninstall still removes the launcher it recorded"
    assert not node.launcher.exists()


def test_uninstall_with_nothing_recorded(node: Node) -> None:
    status, _, err = node.uninstall()
    assert status == 0 and "nothing recorded" in err


def test_a_logger_entry_already_in_place_without_journal_is_not_claimed(node: Node) -> None:
    """An operator's identical entry: install writes nothing to the file and uninstall leaves it."""
    doc = json.loads(shape("10-flannel.conflist"))
    doc["plugins"].append(dict(LOGGER))
    node.put("10-flannel.conflist", json.dumps(doc, indent=2) + "\n")
    assert node.install()[0] == 0
    status, _, err = node.uninstall()
    assert status == 3 and node.launcher.exists(), "the operator's entry still names it: kept"
    assert f"{node.net_d / '10-flannel.conflist'} (network 'cbr0')" in err, err
    assert node.doc("10-flannel.conflist") == doc


# ---------------------------------------------------------------------------------------------------------
# rkt: no chaining, so the logger is a network of its own


def test_rkt_gets_a_separate_logger_network(node: Node) -> None:
    bridge = node.put("10-rkt-bridge.conf").read_bytes()
    other = node.put("lab-test-net-1.conf").read_bytes()
    status, _, err = node.install("--runtime", "rkt")
    assert status == 0, err
    assert "--net=default,cni-logger" in err
    assert node.doc("zz-cni-logger.conf") == {"cniVersion": "0.4.0", "name": "cni-logger", **LOGGER}
    assert (node.net_d / "10-rkt-bridge.conf").read_bytes() == bridge
    assert (node.net_d / "lab-test-net-1.conf").read_bytes() == other
    snapshot = node.snapshot()
    assert node.install("--runtime", "rkt")[0] == 0
    assert node.snapshot() == snapshot
    status, _, err = node.uninstall()
    assert status == 3 and node.launcher.exists(), "lab-test-net-1.conf is a logger network of its own: kept"
    assert "lab-test-net-1.conf" in err, err
    assert sorted(p.name for p in node.net_d.iterdir()) == ["10-rkt-bridge.conf", "lab-test-net-1.conf"]


def test_rkt_refuses_a_foreign_file_at_its_name_and_a_second_cni_logger_network(node: Node) -> None:
    node.put("zz-cni-logger.conf", '{"name": "x", "type": "bridge"}')
    assert node.install("--runtime", "rkt")[0] == 1
    (node.net_d / "zz-cni-logger.conf").unlink()
    node.put("50-mine.conf", '{"name": "cni-logger", "type": "logger"}')
    status, _, err = node.install("--runtime", "rkt")
    assert status == 1 and "already defines network 'cni-logger'" in err
    assert not (node.net_d / "zz-cni-logger.conf").exists()


# ---------------------------------------------------------------------------------------------------------
# Pieces


def test_a_package_missing_for_this_interpreter_is_a_launcher_error_saying_what_to_run() -> None:
    with pytest.raises(launcher.LauncherError) as caught:
        launcher.import_paths(["cni_logger", "no_such_package_for_cni_logger"])
    message = str(caught.value)
    assert "'no_such_package_for_cni_logger' is not installed for " + sys.executable in message
    assert "bin/cni-logger" in message


def test_temporary_names_are_never_loaded_by_a_runtime() -> None:
    for ext in (".conf", ".conflist", ".json"):
        assert not f".10-calico.conflist{atomicfile.TMP_SUFFIX}".endswith(ext)


def test_a_leftover_temporary_file_is_replaced(node: Node) -> None:
    node.put("10-flannel.conflist")
    (node.net_d / f".10-flannel.conflist{atomicfile.TMP_SUFFIX}").symlink_to("/etc/passwd")
    assert node.install()[0] == 0
    assert not (node.net_d / f".10-flannel.conflist{atomicfile.TMP_SUFFIX}").exists()
    assert Path("/etc/passwd").read_text()  # untouched, the symlink itself was replaced


def test_style_detection() -> None:
    assert new_content._style(b'{"a":1}') == (None, (",", ":"), False)
    assert new_content._style(b'{"a": 1}\n') == (None, (", ", ": "), True)
    assert new_content._style(b'{\n\t"a": 1\n}') == ("\t", None, False)
    assert new_content._style(b'{\n    "a": 1\n}\n') == (4, None, True)
    assert new_content._style(None) == (2, None, True)


def test_rkt_creates_its_directories_and_refuses_network(node: Node) -> None:
    conf_dir, bin_dir = node.root / "etc-rkt-net.d", node.root / "usr-lib-rkt-plugins-net"
    args = ["install", "--runtime", "rkt", "--conf-dir", str(conf_dir), "--bin-dir", str(bin_dir),
            "--state-dir", str(node.state_dir)]
    status, _, err = node.run(*args, "--network", "x")
    assert status == 1 and "--network does not apply to rkt" in err
    assert not conf_dir.exists() and not bin_dir.exists()
    status, _, err = node.run(*args)
    assert status == 0, err
    assert json.loads((conf_dir / "zz-cni-logger.conf").read_text())["type"] == "logger"
    assert (bin_dir / "logger").exists()


# ---------------------------------------------------------------------------------------------------------
# --bracket: a logger entry first (the attempt) and last (the outcome)

ATTEMPT = {"type": "logger", "role": "attempt", "logFile": "/var/log/cni/cni-logger.log"}
OUTCOME = {"type": "logger", "role": "outcome", "logFile": "/var/log/cni/cni-logger.log"}


@pytest.mark.parametrize(("name", "runtime"), [(n, r) for n, r, _ in LISTS if n != "05-cilium.conflist"])
def test_bracket_puts_the_logger_first_and_last_idempotently_and_uninstall_restores(
        node: Node, name: str, runtime: str) -> None:
    original = node.put(name).read_bytes()
    before = json.loads(original)
    status, _, err = node.install("--runtime", runtime, "--bracket")
    assert status == 0, err
    after = node.doc(name)
    assert after["plugins"] == [ATTEMPT, *before["plugins"], OUTCOME]
    assert {k: v for k, v in after.items() if k != "plugins"} == {k: v for k, v in before.items() if k != "plugins"}
    journal = json.loads((node.state_dir / "install.json").read_text())
    assert journal["configs"][str(node.net_d / name)]["bracket"] is True

    snapshot = node.snapshot()
    status, _, err = node.install("--runtime", runtime, "--bracket")
    assert status == 0 and "nothing to change" in err, err
    assert node.snapshot() == snapshot, "a second --bracket install writes nothing"

    status, _, err = node.uninstall()
    assert status == 0, err
    assert (node.net_d / name).read_bytes() == original


def test_bracket_entries_carry_every_option(node: Node) -> None:
    node.put("10-flannel.conflist")
    status, _, err = node.install("--bracket", "--log-file", "/var/log/audit/cni.log", "--fail-on-log-error",
                                  "--capabilities", "portMappings", "--max-size", "5")
    assert status == 0, err
    plugins = node.doc("10-flannel.conflist")["plugins"]
    common = {"capabilities": {"portMappings": True}, "logFile": "/var/log/audit/cni.log", "failOnLogError": True,
              "logOptions": {"maxSize": 5}}
    assert plugins[0] == {"type": "logger", "role": "attempt", **common}
    assert plugins[-1] == {"type": "logger", "role": "outcome", **common}
    assert list(plugins[0])[:2] == ["type", "role"]
    assert [p["type"] for p in plugins[1:-1]] == ["flannel", "portmap"]


def test_bracket_and_back_switch_the_placement(node: Node) -> None:
    """--bracket adds the first entry, --no-bracket takes it out; without either the chain keeps its mode."""
    original = node.put("10-flannel.conflist").read_bytes()
    assert node.install()[0] == 0
    assert [p["type"] for p in node.doc("10-flannel.conflist")["plugins"]] == ["flannel", "portmap", "logger"]
    assert node.install("--bracket")[0] == 0
    assert [p.get("role") for p in node.doc("10-flannel.conflist")["plugins"]] == ["attempt", None, None, "outcome"]
    assert node.install()[0] == 0
    assert [p.get("role") for p in node.doc("10-flannel.conflist")["plugins"]] == ["attempt", None, None, "outcome"]
    assert node.install("--no-bracket")[0] == 0
    assert node.doc("10-flannel.conflist")["plugins"][-1] == LOGGER
    assert len(node.doc("10-flannel.conflist")["plugins"]) == 3
    assert node.uninstall()[0] == 0
    assert (node.net_d / "10-flannel.conflist").read_bytes() == original


def test_bracket_uninstall_after_an_agent_edit_removes_both_entries(node: Node) -> None:
    node.put("10-flannel.conflist")
    assert node.install("--bracket")[0] == 0
    doc = node.doc("10-flannel.conflist")
    doc["plugins"].insert(2, {"type": "bandwidth"})  # another agent edits the file in between
    node.put("10-flannel.conflist", json.dumps(doc, indent=2) + "\n")
    assert node.uninstall()[0] == 0
    assert [p["type"] for p in node.doc("10-flannel.conflist")["plugins"]] == ["flannel", "bandwidth", "portmap"]


def test_bracket_converts_a_single_conf(node: Node) -> None:
    original = node.put("100-crio-bridge.conf").read_bytes()
    status, _, err = node.install("--runtime", "crio", "--bracket")
    assert status == 0, err
    plugins = node.doc("100-crio-bridge.conflist")["plugins"]
    assert plugins[0] == ATTEMPT and plugins[-1] == OUTCOME and [p["type"] for p in plugins[1:-1]] == ["bridge"]
    assert node.uninstall()[0] == 0
    assert (node.net_d / "100-crio-bridge.conf").read_bytes() == original


def test_bracket_dry_run_shows_both_entries_and_writes_nothing(node: Node) -> None:
    node.put("10-flannel.conflist")
    snapshot = node.snapshot()
    status, out, err = node.install("--bracket", "--dry-run")
    assert status == 0, err
    assert node.snapshot() == snapshot
    added = [line for line in out.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert sum('"role": "attempt"' in line for line in added) == 1
    assert sum('"role": "outcome"' in line for line in added) == 1
    assert sum('"type": "logger"' in line for line in added) == 2


def test_bracket_is_refused_for_rkt_and_writes_nothing(node: Node) -> None:
    node.put("10-rkt-bridge.conf")
    snapshot = node.snapshot()
    status, _, err = node.install("--runtime", "rkt", "--bracket")
    assert status == 1
    assert "refused: --bracket needs a plugin chain, and rkt has none" in err
    assert node.snapshot() == snapshot
    assert not node.state_dir.exists()


def test_bracket_entries_helper_keeps_type_first() -> None:
    first, last = new_content.bracket_entries({"type": "logger", "logFile": "/x"})
    assert first == {"type": "logger", "role": "attempt", "logFile": "/x"}
    assert last == {"type": "logger", "role": "outcome", "logFile": "/x"}


@pytest.mark.parametrize("main", [{"type": "cilium-cni"}, {"type": "ipvlan", "ipam": {"type": "host-local"}}])
def test_bracket_is_refused_before_a_main_plugin_that_fails_on_a_prev_result(node: Node, main: dict[str, Any]) -> None:
    """Cilium as the main plugin, and ipvlan without master, fail every ADD given the attempt's result."""
    node.put("10-net.conflist", json.dumps({"cniVersion": "1.0.0", "name": "net", "plugins": [main]}))
    node.put("05-cilium.conflist")  # Cilium's own file, first in the runtime's order, is refused the same way
    status, _, err = node.install("--bracket", "--conf-file", str(node.net_d / "05-cilium.conflist"))
    assert status == 1 and "cilium-cni is the main plugin" in err
    (node.net_d / "05-cilium.conflist").unlink()
    snapshot = node.snapshot()
    status, _, err = node.install("--bracket")
    assert status == 1
    assert f"refused: --bracket in {node.net_d / '10-net.conflist'}: " in err and "every ADD fails" in err
    assert "install with --no-bracket (the logger last only)" in err
    assert node.snapshot() == snapshot
    assert node.install()[0] == 0  # last only is fine
    assert [p["type"] for p in node.doc("10-net.conflist")["plugins"]] == [main["type"], "logger"]


@pytest.mark.parametrize("plugins", [
    [{"type": "ipvlan", "master": "eth0", "ipam": {"type": "host-local"}}],
    [{"type": "aws-cni"}, {"type": "cilium-cni"}],  # Cilium chained behind another main plugin
])
def test_bracket_is_allowed_where_the_main_plugin_copes(node: Node, plugins: list[dict[str, Any]]) -> None:
    node.put("10-net.conflist", json.dumps({"cniVersion": "1.0.0", "name": "net", "plugins": plugins}))
    status, _, err = node.install("--bracket")
    assert status == 0, err
    roles = [p.get("role") for p in node.doc("10-net.conflist")["plugins"]]
    assert roles == ["attempt", *[None] * len(plugins), "outcome"]
