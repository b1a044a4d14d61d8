"""Coverage on the record (docs/coverage-events.md): what install, ``--watch`` and the plugin write into the
trail about the trail's own coverage, run as real processes against real files.

* ``install --watch`` starts with an inventory of libcni's result cache, as the real cnitool chain left
  it (the pod's namespace, name and address), writes another after the plugin rotated the live file and
  after the entry was put back into a chain, and heartbeats.
* Events the plugin could not write (its log directory read-only, in a private mount namespace) are
  counted and become one ``logger-dropped`` event once writing works again: by the watcher's next pass,
  or by the plugin's own next successful append.
* ``record_change`` writes entered/left events through the rotating sink, rotation honoured.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_logger.filesink import dropped_path, list_backups
from tests.harness.cnitool import RESULTS_DIR, CniSandbox, cnitool_container_id, ipv4_cidrs
from tests.harness.coverage import cache_record, events_of, run_python
from tests.harness.plugin import REPO, cni_env, parse_single_json, plugin_executable, run_plugin
from tests.harness.waiting import wait_for

CNI_LOGGER = REPO / ".venv" / "bin" / "cni-logger"
PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"interface": 0, "address": "10.250.3.7/24", "gateway": "10.250.3.1"}], "dns": {}}


def trail(log: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every event of the trail of ``log`` (backups, oldest first, then the live file) with its file."""
    files = [Path(stem) for stem in list_backups(str(log))] + [log]
    return [(path, event) for path in files for event in events_of(path, dataset=None)]


def coverage(log: Path, action: str) -> list[dict[str, Any]]:
    return [e for _, e in trail(log) if e["event"]["action"] == action]


@pytest.fixture
def watcher() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    procs: list[subprocess.Popen[str]] = []

    def start(conf_dir: Path, bin_dir: Path, state: Path, log: Path, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(CNI_LOGGER), "install", "--watch", "--interval", "0.2", "--conf-dir", str(conf_dir),
             "--bin-dir", str(bin_dir), "--state-dir", str(state), "--log-file", str(log), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=20)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def chain(path: Path, name: str) -> None:
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": name,
                                "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}}]},
                               indent=2) + "\n")


def logger_config(conflist: Path) -> dict[str, Any]:
    """The request a runtime sends the installed logger entry: the entry with the network's name and version."""
    doc = json.loads(conflist.read_text())
    [entry] = [p for p in doc["plugins"] if p["type"] == "logger"]
    return {"cniVersion": doc["cniVersion"], "name": doc["name"], **entry}


# -- inventories ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_watch_starts_with_an_inventory_of_the_real_libcni_cache(bare_sandbox: CniSandbox,
                                                                 watcher: Callable[..., subprocess.Popen[str]]
                                                                 ) -> None:
    """The pod attached before the watcher started (its ADD is not in this trail) is in the trail's first
    checkpoint, read from the cache cnitool (libcni) wrote: container, pod namespace and name, address."""
    sb = bare_sandbox
    net = sb.new_network("cov")
    sb.write_conflist(net, "1.0.0", [net.bridge_plugin()])
    ctr = sb.new_container()
    add = sb.cnitool("add", net, ctr, env={"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1"})
    assert add.rc == 0, add.describe()
    container_id = cnitool_container_id(sb.netns_path(ctr))
    assert net.cache_file(container_id).exists(), "cnitool did not write libcni's result cache where expected"
    [address] = [cidr.split("/")[0] for cidr in ipv4_cidrs(ctr, "eth0")]

    proc = watcher(sb.netconf_dir, sb.bin_dir, sb.tmp / "state", net.log_file, "--results-cache", str(RESULTS_DIR))
    assert wait_for(lambda: bool(coverage(net.log_file, "logger-inventory"))), proc.stderr
    stop(proc)

    [inventory] = coverage(net.log_file, "logger-inventory")
    summary = inventory["cni"]["coverage"]
    assert (summary["trigger"], summary["networks"], summary["attachments"]) == ("start", [net.name], 1)
    assert summary["cache_dir"] == str(RESULTS_DIR)
    [attachment] = coverage(net.log_file, "cni-attachment")
    assert attachment["cni"]["coverage"]["inventory"] == summary["inventory"]
    assert attachment["container"]["id"] == container_id == attachment["cni"]["container_id"]
    assert attachment["network"]["name"] == net.name
    assert attachment["orchestrator"]["namespace"] == "shop"
    assert attachment["orchestrator"]["resource"]["name"] == "web-1"
    assert attachment["related"]["ip"] == [address]
    assert attachment["cni"]["ifname"] == "eth0"
    assert [ip["address"].split("/")[0] for ip in attachment["cni"]["prev_result"]["ips"]] == [address]
    [heartbeat] = coverage(net.log_file, "logger-heartbeat")  # at start; the next one is 300 s away
    assert heartbeat["cni"]["coverage"] == {"networks": [net.name], "interval": 300.0}
    delete = sb.cnitool("del", net, ctr)
    assert delete.rc == 0, delete.describe()


def test_watch_writes_an_inventory_after_a_rotation_and_after_the_entry_is_put_back(
        tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]) -> None:
    net_d, bin_dir, cache = tmp_path / "net.d", tmp_path / "bin", tmp_path / "results"
    log = tmp_path / "log" / "cni.log"
    for directory in (net_d, bin_dir, cache):
        directory.mkdir()
    conflist = net_d / "10-pods.conflist"
    chain(conflist, "pods")
    (cache / "pods-abc123-eth0").write_text(json.dumps(cache_record(
        "pods", "abc123", "eth0", PREV, [["K8S_POD_NAMESPACE", "shop"], ["K8S_POD_NAME", "web-2"]])))
    (cache / "other-def456-eth0").write_text(json.dumps(cache_record("other", "def456", "eth0", PREV)))

    proc = watcher(net_d, bin_dir, tmp_path / "state", log, "--results-cache", str(cache), "--max-size", "0.01",
                   "--max-backups", "5", "--heartbeat", "0")
    assert wait_for(lambda: bool(coverage(log, "logger-inventory"))), proc.stderr
    config = logger_config(conflist)
    config["prevResult"] = PREV
    # The plugin's own events fill the live file past maxSize (10 KiB): the plugin rotates it.
    for n in range(40):
        ran = run_plugin("ADD", config, env=cni_env("ADD", CNI_CONTAINERID=f"ctr-{n}"))
        assert ran.rc == 0, ran.stderr
        if list_backups(str(log)):
            break
    assert list_backups(str(log)), "the plugin never rotated the live file"
    assert wait_for(lambda: any(e["cni"]["coverage"]["trigger"] == "rotation"
                                for e in coverage(log, "logger-inventory"))), proc.stderr

    # An agent rewrites its file without the entry; the watcher puts it back and checks in again.
    chain(conflist, "pods")
    assert wait_for(lambda: any(e["cni"]["coverage"]["trigger"] == "restored"
                                for e in coverage(log, "logger-inventory"))), proc.stderr
    stop(proc)

    events = trail(log)
    inventories = [(path, e["cni"]["coverage"]) for path, e in events if e["event"]["action"] == "logger-inventory"]
    assert [c["trigger"] for _, c in inventories] == ["start", "rotation", "restored"]
    for _, summary in inventories:
        assert (summary["networks"], summary["attachments"], summary["complete"]) == (["pods"], 1, True)
    # The rotation's checkpoint is in a later file of the trail than the start's: that file has its evidence.
    files = [path for path, _ in events]
    assert files.index(inventories[1][0]) > files.index(inventories[0][0])
    attachments = [e for _, e in events if e["event"]["action"] == "cni-attachment"]
    assert {a["container"]["id"] for a in attachments} == {"abc123"}, "another network's attachment listed"
    assert len(attachments) == 3
    assert not coverage(log, "logger-heartbeat"), "--heartbeat 0 writes none"


# -- dropped events ------------------------------------------------------------------------------


DRIVER = """
import json, subprocess, sys
plugin, config = sys.argv[1], sys.argv[2]
runs = []
for command, container in json.loads(sys.argv[3]):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": container,
           "CNI_NETNS": "/run/netns/test-ns", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": ""}
    with open(config, "rb") as stdin:
        proc = subprocess.run([plugin], stdin=stdin, env=env, capture_output=True, timeout=60)
    runs.append({"rc": proc.returncode, "stdout": proc.stdout.decode(), "stderr": proc.stderr.decode()})
print(json.dumps(runs))
"""
LOST = [("ADD", "ctr-lost-1"), ("ADD", "ctr-lost-2"), ("DEL", "ctr-lost-1")]


def run_with_read_only_logs(log_dir: Path, config: dict[str, Any], calls: list[tuple[str, str]]
                            ) -> list[dict[str, Any]]:
    """Run the plugin (as a process, once per call) while ``log_dir`` is read-only: a read-only bind mount
    in a private mount namespace, so nothing else on the machine sees it and it ends with the process."""
    config_file = log_dir.parent / "config.json"
    config_file.write_text(json.dumps(config))
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(log_dir),
         sys.executable, "-c", DRIVER, plugin_executable(), str(config_file), json.dumps(calls)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    runs: list[dict[str, Any]] = json.loads(proc.stdout)
    return runs


@pytest.fixture
def read_only_logs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A log dir, its (future) log file; the dropped-events file of that log is removed afterwards."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a read-only bind mount in a private mount namespace)")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    log = log_dir / "cni.log"
    yield log_dir, log
    for leftover in Path(dropped_path(str(log))).parent.glob(Path(dropped_path(str(log))).name + "*"):
        leftover.unlink()


def lose_events(log_dir: Path, config: dict[str, Any]) -> None:
    """Three invocations whose events cannot be written: each still succeeds, with one JSON answer."""
    log = log_dir / "cni.log"
    before = log.read_bytes() if log.exists() else None
    runs = run_with_read_only_logs(log_dir, config, LOST)
    for (command, _), ran in zip(LOST, runs, strict=True):
        assert ran["rc"] == 0, ran
        answer = parse_single_json(ran["stdout"].encode()) if command == "ADD" else None
        assert command != "ADD" or answer["ips"] == PREV["ips"]
        assert command == "ADD" or ran["stdout"] == ""
        assert "read-only" in ran["stderr"]
    assert (log.read_bytes() if log.exists() else None) == before, "nothing was written to the read-only log"


def assert_one_dropped(log: Path) -> None:
    [event] = coverage(log, "logger-dropped")
    recorded = event["cni"]["coverage"]
    assert recorded["dropped"] == 3 and recorded["complete"] is True
    assert recorded["commands"] == {"ADD": 2, "DEL": 1}
    assert recorded["containers"] == ["ctr-lost-1", "ctr-lost-2"] and recorded["containers_truncated"] is False
    assert recorded["first"] <= recorded["last"] < event["@timestamp"]
    assert event["log"]["level"] == "warning"
    assert not Path(dropped_path(str(log))).exists(), "the records stayed after they were put on the record"


def test_events_lost_to_a_read_only_log_are_put_on_the_record_by_the_watcher(
        tmp_path: Path, read_only_logs: tuple[Path, Path], watcher: Callable[..., subprocess.Popen[str]]) -> None:
    log_dir, log = read_only_logs
    net_d, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    net_d.mkdir()
    bin_dir.mkdir()
    conflist = net_d / "10-pods.conflist"
    chain(conflist, "pods")
    subprocess.run([str(CNI_LOGGER), "install", "--conf-dir", str(net_d), "--bin-dir", str(bin_dir),
                    "--state-dir", str(tmp_path / "state"), "--log-file", str(log)], check=True, timeout=120,
                   capture_output=True)
    [entered] = coverage(log, "logger-entered")  # the install's own record of putting the logger in the chain
    assert (entered["cni"]["coverage"]["reason"], entered["network"]["name"]) == ("install", "pods")
    config = logger_config(conflist)
    lose_events(log_dir, {**config, "prevResult": PREV})
    assert Path(dropped_path(str(log))).read_text().count("\n") == 3

    proc = watcher(net_d, bin_dir, tmp_path / "state", log, "--results-cache", str(tmp_path / "no-cache"),
                   "--heartbeat", "0.3")
    assert wait_for(lambda: bool(coverage(log, "logger-dropped"))), proc.stderr
    assert wait_for(lambda: len(coverage(log, "logger-heartbeat")) >= 3), proc.stderr
    stop(proc)
    assert_one_dropped(log)
    assert {tuple(h["cni"]["coverage"]["networks"]) for h in coverage(log, "logger-heartbeat")} == {("pods",)}
    [inventory] = coverage(log, "logger-inventory")
    assert inventory["cni"]["coverage"]["complete"] is False, "a missing cache is no proof that nothing is attached"


def test_events_lost_to_a_read_only_log_are_put_on_the_record_by_the_next_write(
        read_only_logs: tuple[Path, Path]) -> None:
    log_dir, log = read_only_logs
    config = {"cniVersion": "1.0.0", "name": "pods", "type": "logger", "logFile": str(log), "prevResult": PREV}
    lose_events(log_dir, config)
    ran = run_plugin("ADD", config, env=cni_env("ADD", CNI_CONTAINERID="ctr-after"))
    assert ran.rc == 0 and parse_single_json(ran.stdout)["ips"] == PREV["ips"]
    assert [e["event"]["action"] for _, e in trail(log)] == ["cni-add", "logger-dropped"]
    assert_one_dropped(log)
    again = run_plugin("DEL", config, env=cni_env("DEL", CNI_CONTAINERID="ctr-after"))
    assert again.rc == 0 and again.stdout == b""
    assert len(coverage(log, "logger-dropped")) == 1, "written once"


# -- entered and left ----------------------------------------------------------------------------


def test_entered_and_left_go_through_the_rotating_sink_of_each_entry(tmp_path: Path) -> None:
    """Each entry's own logFile and logOptions: a tiny maxSize rotates, maxBackups prunes; a trail that
    cannot be written is a returned problem, not an exception."""
    log, other = tmp_path / "a" / "cni.log", tmp_path / "b" / "cni.log"
    code = f"""
import json
from cni_logger.install import coverage
def conflist(*entries):
    return json.dumps({{"cniVersion": "1.0.0", "name": "pods", "plugins": [{{"type": "bridge"}}, *entries]}}).encode()
small = {{"type": "logger", "logFile": {str(log)!r}, "logOptions": {{"maxSize": 0.001, "maxBackups": 2}}}}
attempt = {{"type": "logger", "role": "attempt", "logFile": {str(other)!r}}}
problems = []
for n in range(6):
    problems += coverage.record_change("/etc/cni/net.d/10-pods.conflist", conflist(), conflist(small), "install")
    problems += coverage.record_change("/etc/cni/net.d/10-pods.conflist", conflist(small), conflist(), "uninstall")
problems += coverage.record_change("/x.conflist", None, conflist(attempt, dict(small, role="outcome")), "reconciled",
                                   since=1764989100.0)
problems += coverage.record_change("/x.conflist", conflist(small), conflist(small), "install")
blocked = {{"type": "logger", "logFile": {str(tmp_path / "file" / "under-a-file.log")!r}}}
open({str(tmp_path / "file")!r}, "w").close()
problems += coverage.record_change("/y.conflist", None, conflist(blocked), "install")
print(json.dumps(problems))
"""
    problems = json.loads(run_python(code).strip().splitlines()[-1])
    assert len(problems) == 1 and "not a directory" in problems[0] and "not written" in problems[0], problems
    backups = list_backups(str(log))
    assert len(backups) == 2, "maxBackups 2: older backups pruned"
    lines = [line for path in [*map(Path, backups), log] if path.exists() for line in path.read_bytes().splitlines()]
    assert all(len(line) < 16 * 1024 for line in lines)
    events = [json.loads(line) for line in lines]
    assert {e["event"]["action"] for e in events} <= {"logger-entered", "logger-left"}
    last = events[-1]
    assert last["event"]["action"] == "logger-entered" and last["cni"]["coverage"]["reason"] == "reconciled"
    assert last["cni"]["coverage"]["roles"] == ["outcome"] and last["cni"]["coverage"]["since"].startswith("2025-12-06")
    [attempt] = events_of(other)
    assert attempt["cni"]["coverage"]["roles"] == ["attempt"] and attempt["network"]["name"] == "pods"


def test_an_inventory_line_stays_within_the_line_cap_and_keeps_who_holds_what(tmp_path: Path) -> None:
    """A cached attachment with bulky arguments and result is shrunk as an ADD's event is (events.serialize):
    the bulk goes, the container, pod and address stay; secrets in its arguments are masked."""
    cache, log = tmp_path / "results", tmp_path / "cni.log"
    cache.mkdir()
    bulky = [["K8S_POD_NAMESPACE", "shop"], ["K8S_POD_NAME", "web-3"], ["DB_PASSWORD", "hunter2"],
             *([f"ANNOTATION_{n}", "v" * 1500] for n in range(20))]
    result = {**PREV, "routes": [{"dst": f"10.{n // 250}.{n % 250}.0/24"} for n in range(800)]}
    (cache / "pods-big-eth0").write_text(json.dumps(cache_record("pods", "big", "eth0", result, bulky)))
    (cache / "pods-small-eth0").write_text(json.dumps(cache_record("pods", "small", "eth0", PREV,
                                                                   [["DB_PASSWORD", "hunter2"]])))
    code = f"""
import json
from cni_logger.install import coverage
conf = coverage.trail_settings({{"type": "logger", "logFile": {str(log)!r}}})
print(json.dumps(coverage.write_inventory(conf, ["pods"], {str(cache)!r}, "start")))
"""
    assert json.loads(run_python(code).strip().splitlines()[-1]) == []
    lines = log.read_bytes().splitlines()
    assert all(len(line) <= 16 * 1024 for line in lines)
    attachment, small, inventory = (json.loads(line) for line in lines)
    assert attachment["event"]["action"] == "cni-attachment" and "cni.args" in attachment["cni"]["truncated"]
    assert small["cni"]["args"] == {"DB_PASSWORD": "[REDACTED]"}
    assert attachment["container"]["id"] == "big" and attachment["related"]["ip"] == ["10.250.3.7"]
    assert attachment["orchestrator"]["resource"]["name"] == "web-3"
    assert b"hunter2" not in log.read_bytes()
    assert inventory["cni"]["coverage"]["attachments"] == 2 and inventory["cni"]["coverage"]["complete"] is True


def test_a_checkpoint_the_trail_could_not_take_is_written_once_it_can(
        tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]) -> None:
    """The watcher reports the failed write (and keeps running); the start inventory is owed, not skipped."""
    net_d, bin_dir, cache = tmp_path / "net.d", tmp_path / "bin", tmp_path / "results"
    for directory in (net_d, bin_dir, cache):
        directory.mkdir()
    chain(net_d / "10-pods.conflist", "pods")
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be\n")
    log = blocker / "cni.log"
    proc = watcher(net_d, bin_dir, tmp_path / "state", log, "--results-cache", str(cache), "--heartbeat", "0")
    assert wait_for((tmp_path / "state" / "install.json").exists), proc.stderr
    time.sleep(1.0)  # several passes, each failing to write
    blocker.unlink()
    blocker.mkdir()
    assert wait_for(lambda: bool(coverage(log, "logger-inventory"))), proc.stderr
    err = stop(proc)
    assert "coverage (" in err and "not written" in err and "not a directory" in err, err
    [inventory] = coverage(log, "logger-inventory")
    assert inventory["cni"]["coverage"]["trigger"] == "start" and inventory["cni"]["coverage"]["networks"] == ["pods"]


def test_a_negative_heartbeat_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([str(CNI_LOGGER), "install", "--watch", "--heartbeat", "-1", "--conf-dir", str(tmp_path),
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1 and "--heartbeat must be >= 0" in done.stderr, done.stderr
    assert not (tmp_path / "state").exists()


RECORDER = """
import sys
from cni_logger import dropped
for n in range(int(sys.argv[3])):
    assert dropped.record(sys.argv[1], "ADD", f"{{sys.argv[4]}}-{{n}}", directory=sys.argv[2]) == ""
"""
FLUSHER = """
import sys, time
from cni_logger import dropped, events  # events imported now, not during the first flush
from cni_logger.filesink import RotatingFile
sink = RotatingFile(sys.argv[1], 1 << 30, 0)
open(sys.argv[3] + ".ready", "w").close()
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    assert dropped.flush(sink, (), sys.argv[2]) == []
    try:
        open(sys.argv[3]).close()
        break
    except FileNotFoundError:
        pass
assert dropped.flush(sink, (), sys.argv[2], dropped.pending(sys.argv[1], sys.argv[2])) == []
"""


def test_lost_events_are_counted_once_while_writers_and_a_flusher_race(tmp_path: Path) -> None:
    """Four processes count lost events while another keeps putting them on the record: every record ends
    up in exactly one logger-dropped event (the claim's rename and the writers' shared lock)."""
    log, drops, done = tmp_path / "cni.log", tmp_path / "dropped", tmp_path / "done"
    drops.mkdir(mode=0o700)
    flusher = subprocess.Popen([sys.executable, "-c", FLUSHER, str(log), str(drops), str(done)], cwd=REPO)
    assert wait_for((tmp_path / "done.ready").exists)
    writers = [subprocess.Popen([sys.executable, "-c", RECORDER.format(), str(log), str(drops), "1000", f"w{n}"],
                                cwd=REPO) for n in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    done.touch()
    assert flusher.wait(timeout=120) == 0
    events = coverage(log, "logger-dropped")
    assert sum(e["cni"]["coverage"]["dropped"] for e in events) == 4000, len(events)
    assert all(e["cni"]["coverage"]["complete"] for e in events)
    assert list(drops.iterdir()) == []
