"""who-had and timeline over a trail that a real runtime produced: cnitool (libcni) driving bridge + host-local
+ logger in throw-away network namespaces. Needs root and cnitool (``scripts/setup-system.sh``); skips otherwise.

host-local's range is pinned to a single address, so the second container necessarily gets the first one's
address after its DEL: the reuse who-had must tell apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import audit as helpers
from tests.harness.audit import now
from tests.harness.cnitool import (
    CniSandbox,
    cnitool_container_id,
    ipv4_cidrs,
)

pytestmark = pytest.mark.integration


def test_who_had_and_timeline_for_two_containers_sharing_an_address(sandbox: CniSandbox,
                                                                     cni_logger_cli: Path) -> None:
    sb = sandbox

    def cli(*args: str) -> helpers.Result:  # the same install's audit commands (the bundle's)
        return helpers.cli(*args, executable=str(cni_logger_cli))

    net = sb.new_network("audit")
    address = net.host(50)
    pinned = [[{"subnet": str(net.subnet), "rangeStart": address, "rangeEnd": address}]]
    sb.write_conflist(net, "1.0.0", [
        net.bridge_plugin(ranges=pinned),
        net.logger_plugin(logOptions={"maxSize": 0.002, "maxBackups": 0, "compress": True}),
    ])
    containers = [sb.new_container(), sb.new_container()]
    cids = [cnitool_container_id(sb.netns_path(c)) for c in containers]
    marks: list[str] = []
    for n, ctr in enumerate(containers):
        env = {"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=audit;K8S_POD_NAME=web-{n}"}
        for command in ("add", "check"):
            proc = sb.cnitool(command, net, ctr, env=env)
            assert proc.rc == 0, proc.describe()
        assert ipv4_cidrs(ctr, "eth0") == [f"{address}/{net.subnet.prefixlen}"]
        marks.append(now())  # ctr n holds the address
        proc = sb.cnitool("del", net, ctr, env=env)
        assert proc.rc == 0, proc.describe()
        marks.append(now())  # nobody does
    assert len(list(net.log_file.parent.glob(net.log_file.name + ".*"))) >= 3  # the trail rotated
    log = ["--log-file", str(net.log_file)]

    for at, expected in zip(marks, [cids[0], None, cids[1], None], strict=True):
        result = cli("who-had", address, "--at", at, "--json", *log)
        if expected is None:
            assert (result.rc, result.stdout) == (1, ""), (at, result.stderr)
        else:
            assert result.rc == 0, result.stderr
            assert [(h["container_id"], h["network"], h["ifname"]) for h in result.json] == [(expected, net.name,
                                                                                             "eth0")]
    everyone = cli("who-had", address, "--json", *log)
    assert [(h["container_id"], h["pod"], h["namespace"], h["ended_by"]) for h in everyone.json] == [
        (cids[0], "web-0", "audit", "DEL"), (cids[1], "web-1", "audit", "DEL")]

    (attachment,) = cli("timeline", cids[1], "--json", *log).json
    assert (attachment["network"], attachment["ifname"], attachment["pod"]) == (net.name, "eth0", "web-1")
    assert [(s["command"], s["outcome"]) for s in attachment["events"]] == [("ADD", "success"), ("CHECK", "success"),
                                                                            ("DEL", "success")]
    for step in attachment["events"]:
        assert step["addresses"] == [f"{address}/{net.subnet.prefixlen}"]
        assert step["duration_ms"] > 0
        assert {"name": "eth0", "sandbox": sb.netns_path(containers[1])}.items() <= step["interfaces"][-1].items()
    assert len(attachment["periods"]) == 1 and attachment["periods"][0]["detached"] is not None
    assert cli("leaks", *log).rc == 1  # every ADD had its DEL
