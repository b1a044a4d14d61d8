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
