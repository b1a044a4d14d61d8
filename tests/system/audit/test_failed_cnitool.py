"""Failed pods in plain sight, on trails a real runtime wrote: cnitool (libcni) driving bridge + host-local + logger
in throw-away network namespaces. Needs root and cnitool (``scripts/setup-system.sh``); skips otherwise.

host-local's range holds two addresses and three containers are added: the third ADD fails (the range is
exhausted), and the runtime cleans up after it with a DEL, as kubelet does (cnitool itself sends none). With the
logger last that DEL is all the trail holds of the failure (no ADD before it, no cached result); with the logger
first and last (``install --bracket``) the attempt is in the trail too. A CHECK of the failed container fails as
well (libcni has no cached result for it): with the logger last it leaves no event, in bracket mode an attempt
without an outcome.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.harness import audit as helpers
from tests.harness.cnitool import CniSandbox, Network, cnitool_container_id

pytestmark = pytest.mark.integration


def _chain(sb: CniSandbox, net: Network, bracket: bool) -> None:
    ranges = [[{"subnet": str(net.subnet), "rangeStart": net.host(10), "rangeEnd": net.host(11)}]]
    bridge = net.bridge_plugin(ranges=ranges)
    plugins = [net.logger_plugin(role="attempt"), bridge, net.logger_plugin(role="outcome")] if bracket else \
        [bridge, net.logger_plugin()]
    sb.write_conflist(net, "1.0.0", plugins)


def _exhaust(sb: CniSandbox, net: Network) -> tuple[list[str], str]:
    """Three pods on a range of two: the first two run (ADD, CHECK), the third's ADD and CHECK fail and the
    runtime's clean-up DEL follows. The running containers' ids, and the failed one's."""
    containers = [sb.new_container() for _ in range(3)]
    cids = [cnitool_container_id(sb.netns_path(c)) for c in containers]
    for n, ctr in enumerate(containers):
        env = {"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-{n}"}
        add = sb.cnitool("add", net, ctr, env=env)
        check = sb.cnitool("check", net, ctr, env=env)
        if n < 2:
            assert (add.rc, check.rc) == (0, 0), add.describe() + check.describe()
            continue
        assert add.rc != 0 and "no IP addresses available" in add.stdout + add.stderr, add.describe()
        assert check.rc != 0, check.describe()
        cleanup = sb.cnitool("del", net, ctr, env=env)
        assert cleanup.rc == 0, cleanup.describe()
    return cids[:2], cids[2]


def _trail_text(net: Network) -> str:
    return "\n".join(json.dumps({k: e.get(k) for k in ("@timestamp", "cni", "event")}) for e in net.events())


@pytest.mark.parametrize("bracket", [False, True], ids=["logger-last", "bracket"])
def test_a_failed_add_is_counted_and_shown_by_stats_report_and_timeline(sandbox: CniSandbox, cni_logger_cli: Path,
                                                                        bracket: bool) -> None:
    sb = sandbox

    def cli(*args: str) -> helpers.Result:
        return helpers.cli(*args, executable=str(cni_logger_cli))

    net = sb.new_network("failed")
    _chain(sb, net, bracket)
    running, failed = _exhaust(sb, net)
    log = ["--log-file", str(net.log_file)]
    trail = _trail_text(net)

    stats = cli("stats", "--json", *log)
    assert stats.rc == 0, stats.stderr
    (summary,) = stats.json
    failures = summary["failed"]
    assert failures["by_command"]["ADD"] == 1, (failures, trail)
    assert failures["inferred_adds"] == (0 if bracket else 1), (failures, trail)
    assert failures["bracket"] is bracket
    if bracket:  # the CHECK's attempt has no outcome: it failed
        assert failures["by_command"]["CHECK"] == 1, (failures, trail)
        assert "--bracket" not in stats.stderr
    else:  # only the inference: said, with the way to see every attempt
        assert "install --bracket" in stats.stderr, stats.stderr
    text = cli("stats", *log)
    assert "failed invocations: " + str(failures["total"]) in text.stdout, text.stdout
    assert ("inferred from the runtime's clean-up DEL" in text.stdout) is not bracket, text.stdout

    report = cli("report", "--json", *log)
    assert report.rc == 0, report.stderr
    (data,) = report.json
    failed_adds = data["failed_adds"]
    assert (failed_adds["count"], failed_adds["inferred"], failed_adds["bracket"]) == (1, 0 if bracket else 1,
                                                                                     bracket), failed_adds
    (item,) = failed_adds["items"]
    assert (item["container"], item["pod"], item["namespace"], item["network"], item["ifname"]) == (
        failed, "web-2", "shop", net.name, "eth0")
    assert item["how"] == ("attempt-failed" if bracket else "cleanup-del")
    assert item["host"] and item["time"]
    assert set(item) >= {"time", "host", "network", "container", "pod", "namespace", "ifname", "how", "error"}
    report_text = cli("report", *log)
    assert "failed ADDs: 1" in report_text.stdout, report_text.stdout
    if not bracket:
        assert "install --bracket" in report_text.stdout + report_text.stderr
    else:
        assert "CHECK attempts: 3: succeeded 2, failed 1" in report_text.stdout, report_text.stdout

    timeline = cli("timeline", failed, "--json", *log)
    assert timeline.rc == 0, timeline.stderr
    (attachment,) = timeline.json
    verdicts = [(s["command"], s["role"], s["outcome"], s.get("failed_add")) for s in attachment["events"]]
    if bracket:
        assert verdicts[0] == ("ADD", "attempt", "success", "attempt-failed"), verdicts
    else:
        assert verdicts[0] == ("DEL", None, "success", "cleanup-del"), verdicts
    table = cli("timeline", failed, *log)
    assert "ADD success (attempt entry)" not in table.stdout
    assert "failed ADD" in table.stdout, table.stdout
    if bracket:
        assert "clean-up after the failed ADD attempt" in table.stdout, table.stdout
    for cid in running:
        (ok,) = cli("timeline", cid, "--json", *log).json
        assert all(s.get("failed_add") is None for s in ok["events"]), ok


def _other_host(source: Path, target: Path) -> None:
    """A copy of the trail as another node wrote it: every event's ``host.name`` (and ``host.hostname``) changed."""
    lines = []
    for line in source.read_text().splitlines():
        event = json.loads(line)
        event["host"] = {"name": "node-elsewhere", "hostname": "node-elsewhere"}
        lines.append(json.dumps(event, separators=(",", ":")))
    target.write_text("\n".join(lines) + "\n")


def test_leaks_tells_a_running_pod_from_a_leaked_one_on_its_node(sandbox: CniSandbox, cni_logger_cli: Path,
                                                                  tmp_path: Path) -> None:
    sb = sandbox

    def cli(*args: str) -> helpers.Result:
        return helpers.cli(*args, executable=str(cni_logger_cli))

    net = sb.new_network("leaks")
    sb.write_conflist(net, "1.0.0", [net.bridge_plugin(), net.logger_plugin()])
    ctr = sb.new_container()
    cid = cnitool_container_id(sb.netns_path(ctr))
    add = sb.cnitool("add", net, ctr, env={"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=db-0"})
    assert add.rc == 0, add.describe()
    assert net.cache_file(cid).exists()
    log = ["--log-file", str(net.log_file)]

    # running: its namespace and libcni's cached result are still there. Not a leak: status 1, listed apart
    running = cli("leaks", "--json", *log)
    assert running.rc == 1, running.stderr
    assert [(r["kind"], r["container_id"], r["state"]) for r in running.json] == [("never-deleted", cid, "running")]
    assert "no leaks" in running.stderr and "1 attachment still open is running" in running.stderr, running.stderr
    table = cli("leaks", *log)
    lines = table.stdout.splitlines()
    assert lines[0].startswith("not leaks"), table.stdout  # the block listed apart has its heading
    assert lines[1].split()[:2] == ["KIND", "STATE"] and lines[2].split()[:2] == ["never-deleted", "running"]
    as_csv = cli("leaks", "--format", "csv", *log).stdout.splitlines()
    assert "state" in as_csv[0].split(",") and ",running," in as_csv[1] + ",", as_csv
    (data,) = cli("report", "--json", *log).json
    assert data["leaks"]["never_deleted"]["count"] == 0, data["leaks"]
    assert [(h["container_id"], h["state"]) for h in data["leaks"]["running"]["listed"]] == [(cid, "running")]
    assert "still running (not leaks: their network namespace and libcni's cached result are there): 1" in \
        cli("report", *log).stdout
    # another results cache (the installer's --results-cache): no entry there, the namespace still exists
    elsewhere = tmp_path / "results"
    elsewhere.mkdir()
    other_cache = cli("leaks", "--json", "--results-cache", str(elsewhere), *log)
    assert [r["state"] for r in other_cache.json] == ["unknown"], other_cache.stdout
    assert other_cache.rc == 3

    # the trail of another node: this one cannot look, and says so
    copy = tmp_path / "elsewhere.log"
    _other_host(net.log_file, copy)
    unknown = cli("leaks", "--json", "--log-file", str(copy))
    assert [(r["container_id"], r["state"]) for r in unknown.json] == [(cid, "unknown")]
    assert unknown.rc == 3
    assert "cannot tell running from leaked" in unknown.stderr and "node-elsewhere" in unknown.stderr, unknown.stderr
    assert cli("leaks", "--log-file", str(copy)).stdout.splitlines()[1].split()[:2] == ["never-deleted", "unknown"]

    # leaked: the namespace and the cache entry are gone, no DEL was ever run (host-local still holds the address)
    net.cache_file(cid).unlink()
    subprocess.run(["ip", "netns", "del", ctr], check=True)
    leaked = cli("leaks", "--json", *log)
    assert leaked.rc == 0, leaked.stderr
    assert [(r["kind"], r["container_id"], r["state"]) for r in leaked.json] == [("never-deleted", cid, "leaked")]
    assert cli("leaks", *log).stdout.splitlines()[1].split()[:2] == ["never-deleted", "leaked"]
    (data,) = cli("report", "--json", *log).json
    assert [(h["container_id"], h["state"]) for h in data["leaks"]["never_deleted"]["listed"]] == [(cid, "leaked")]
