"""cni-logger in real chains driven by cnitool (libcni 1.1.2), inside throw-away network namespaces."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cnitool import (
    DEBUG_PLUGIN,
    CniSandbox,
    Network,
    canonical,
    cnitool_container_id,
    dig,
    ip_json,
    ipv4_cidrs,
    load_example,
    read_events,
    result_mismatches,
    retarget_example,
    run,
    stderr_events,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def assert_ok(proc: Any) -> None:
    assert proc.rc == 0, proc.describe()


def assert_common_event(ev: dict[str, Any], *, command: str, net: Network, container_id: str,
                        netns_path: str, ifname: str = "eth0", cni_version: str) -> None:
    """The fields every successful event must carry for this invocation."""
    where = json.dumps(ev)[:2000]
    assert ev["event"]["action"] == f"cni-{command.lower()}", where
    assert ev["event"]["outcome"] == "success", where
    assert ev["event"]["kind"] == "event", where
    assert ev["event"]["module"] == "cni" and ev["event"]["dataset"] == "cni.audit", where
    assert isinstance(ev["event"]["duration"], int) and ev["event"]["duration"] > 0, where
    assert UUID.match(ev["event"]["id"]), where
    assert ev["ecs"]["version"] == "9.4.0", where
    assert ev["@timestamp"].endswith("Z"), where
    datetime.fromisoformat(ev["@timestamp"].removesuffix("Z") + "+00:00")
    assert ev["log"]["logger"] == "cni-logger", where
    assert ev["container"]["id"] == container_id, where
    assert ev["network"]["name"] == net.name, where
    cni = ev["cni"]
    assert cni["command"] == command, where
    assert cni["container_id"] == container_id, where
    assert cni["netns"] == netns_path, where
    assert cni["ifname"] == ifname, where
    assert cni["version"] == cni_version, where
    assert cni["plugin_type"] == "logger", where
    assert cni["config"]["name"] == net.name and cni["config"]["type"] == "logger", where
    assert "prevResult" not in cni["config"], where
    assert "error" not in ev, where


# ---------------------------------------------------------------------------------------------------------
# Control: the harness's oracle against a reference plugin, without the logger.


@pytest.mark.parametrize("cni_version", ["1.0.0", "0.4.0"])
def test_oracle_matches_reference_chain(bare_sandbox: CniSandbox, cni_version: str) -> None:
    """bridge + host-local + Go `debug` (a known pass-through): what cnitool prints equals the result rebuilt
    from kernel state. This validates the oracle the logger tests rely on, independently of the logger."""
    sb = bare_sandbox
    if not DEBUG_PLUGIN.exists():
        pytest.skip(f"{DEBUG_PLUGIN} is not built (scripts/setup-system.sh builds it)")
    net, ctr = sb.new_network(), sb.new_container()
    debug_log = sb.tmp / "debug.log"
    sb.write_conflist(net, cni_version, [net.bridge_plugin(),
                                         {"type": "debug", "cniOutput": str(debug_log)}])
    add = sb.cnitool("add", net, ctr)
    assert_ok(add)
    expected = sb.bridge_result(net, ctr, cni_version)
    assert result_mismatches(json.loads(add.stdout), expected) == []
    assert "CmdAdd" in debug_log.read_text()
    assert_ok(sb.cnitool("del", net, ctr))
    assert not net.cache_file(cnitool_container_id(sb.netns_path(ctr))).exists()


# ---------------------------------------------------------------------------------------------------------
# bridge + host-local + logger: add, check, del


@pytest.mark.parametrize("cni_version", ["1.0.0", "0.4.0"])
def test_bridge_chain_add_check_del(sandbox: CniSandbox, network: Network, cni_version: str) -> None:
    sb, net = sandbox, network
    ctr = sb.new_container()
    netns_path = sb.netns_path(ctr)
    cid = cnitool_container_id(netns_path)
    sb.write_conflist(net, cni_version, [net.bridge_plugin(), net.logger_plugin()])

    # ADD: the result cnitool prints is the bridge's, untouched.
    add = sb.cnitool("add", net, ctr)
    assert_ok(add)
    printed = json.loads(add.stdout)
    bridge_result = sb.bridge_result(net, ctr, cni_version)
    assert result_mismatches(printed, bridge_result) == []
    cache = json.loads(net.cache_file(cid).read_text())
    assert result_mismatches(cache["result"], printed) == []

    events = net.events()
    assert len(events) == 1, events
    add_ev = events[0]
    assert_common_event(add_ev, command="ADD", net=net, container_id=cid, netns_path=netns_path,
                        cni_version=cni_version)
    # The recorded address is the one the container really has.
    (in_netns,) = ipv4_cidrs(ctr, "eth0")
    recorded = [ip["address"] for ip in dig(add_ev, "cni.prev_result.ips", [])]
    assert recorded == [in_netns]
    assert dig(add_ev, "related.ip") == [in_netns.split("/")[0]]
    lease = net.ipam_dir / net.name / in_netns.split("/")[0]        # host-local's reservation file
    assert lease.read_text().startswith(cid)
    # The whole recorded prevResult is the bridge's result (the logger saw what it passed on).
    assert result_mismatches(canonical(add_ev["cni"]["prev_result"]), canonical(printed)) == []
    assert dig(add_ev, "orchestrator.type") != "kubernetes"       # no K8S_POD_NAMESPACE/UID were sent
    assert dig(add_ev, "cni.config.logFile") == str(net.log_file)
    # logToStderr (default true): cnitool forwards the plugin's stderr on success; same event there.
    assert [e["event"]["id"] for e in stderr_events(add.stderr)] == [add_ev["event"]["id"]]

    # CHECK: nothing printed; the event carries the cached final result.
    check = sb.cnitool("check", net, ctr)
    assert_ok(check)
    assert check.stdout == ""
    events = net.events()
    assert [e["cni"]["command"] for e in events] == ["ADD", "CHECK"]
    assert_common_event(events[1], command="CHECK", net=net, container_id=cid, netns_path=netns_path,
                        cni_version=cni_version)
    assert result_mismatches(canonical(dig(events[1], "cni.prev_result")), canonical(cache["result"])) == []

    # DEL: nothing printed; the event carries the cached final result; everything is released.
    delete = sb.cnitool("del", net, ctr)
    assert_ok(delete)
    assert delete.stdout == ""
    events = net.events()
    assert [e["cni"]["command"] for e in events] == ["ADD", "CHECK", "DEL"]
    assert_common_event(events[2], command="DEL", net=net, container_id=cid, netns_path=netns_path,
                        cni_version=cni_version)
    assert result_mismatches(canonical(dig(events[2], "cni.prev_result")), canonical(cache["result"])) == []
    assert len({e["event"]["id"] for e in events}) == 3
    assert not net.cache_file(cid).exists()
    assert ipv4_cidrs(ctr, "eth0") == []
    assert not lease.exists()


# ---------------------------------------------------------------------------------------------------------
# rkt-style single .conf: the logger alone


def test_rkt_single_conf_logger_alone(sandbox: CniSandbox, network: Network) -> None:
    sb, net = sandbox, network
    conf = load_example("rkt/lab-test-net-1.conf")
    assert conf == {"cniVersion": "0.4.0", "name": "lab-test-net-1", "type": "logger"}
    sb.write_conf(net, {**conf, "name": net.name, "logFile": str(net.log_file)})
    ctr = sb.new_container()
    netns_path = sb.netns_path(ctr)
    cid = cnitool_container_id(netns_path)

    add = sb.cnitool("add", net, ctr)
    assert_ok(add)
    assert json.loads(add.stdout) == {"cniVersion": "0.4.0", "dns": {}}
    (add_ev,) = net.events()
    assert_common_event(add_ev, command="ADD", net=net, container_id=cid, netns_path=netns_path,
                        cni_version="0.4.0")
    assert dig(add_ev, "cni.prev_result") in (None, {})          # first in the chain: nothing before it
    assert dig(add_ev, "related.ip") in (None, [])
    assert [link["ifname"] for link in ip_json(ctr, "link", "show")] == ["lo"]   # it configured nothing
    cached = json.loads(net.cache_file(cid).read_text())["result"]
    assert cached == {"cniVersion": "0.4.0", "dns": {}}

    delete = sb.cnitool("del", net, ctr)
    assert_ok(delete)
    events = net.events()
    assert [e["cni"]["command"] for e in events] == ["ADD", "DEL"]
    assert_common_event(events[1], command="DEL", net=net, container_id=cid, netns_path=netns_path,
                        cni_version="0.4.0")
    assert result_mismatches(canonical(dig(events[1], "cni.prev_result")), canonical(cached)) == []
    assert not net.cache_file(cid).exists()


# ---------------------------------------------------------------------------------------------------------
# portmap + CAP_ARGS: runtimeConfig reaches the logger (containerd's example config, retargeted)


def test_portmap_runtime_config_recorded(sandbox: CniSandbox, network: Network) -> None:
    sb, net = sandbox, network
    conflist = retarget_example(load_example("containerd/10-containerd-net.conflist"), net)
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "logger"]
    # ipMasq would need NAT rules on the real host; this test is about portmap.
    conflist["plugins"][0]["ipMasq"] = False
    (sb.netconf_dir / f"{net.name}.conflist").write_text(json.dumps(conflist))
    ctr = sb.new_container()
    netns_path = sb.netns_path(ctr)
    cid = cnitool_container_id(netns_path)
    host_port = 20000 + sb.names.n
    mappings = [{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]
    env = {
        "CAP_ARGS": json.dumps({"portMappings": mappings}),
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=uid-1234",
        "CNI_IFNAME": "eth1",
    }

    add = sb.cnitool("add", net, ctr, env=env)
    assert_ok(add)
    routes = conflist["plugins"][0]["ipam"].get("routes")
    printed = json.loads(add.stdout)
    assert result_mismatches(printed, sb.bridge_result(net, ctr, "1.0.0", ifname="eth1", routes=routes)) == []
    (address,) = ipv4_cidrs(ctr, "eth1")
    ip = address.split("/")[0]
    # portmap really got CAP_ARGS: its DNAT rule for this container exists in the runtime's namespace.
    nat = run(["ip", "netns", "exec", sb.host_ns, "iptables-save", "-t", "nat"], check=True).stdout
    assert f"--to-destination {ip}:8080" in nat and f"--dport {host_port}" in nat, nat

    (add_ev,) = net.events()
    assert_common_event(add_ev, command="ADD", net=net, container_id=cid, netns_path=netns_path,
                        ifname="eth1", cni_version="1.0.0")
    assert dig(add_ev, "cni.config.runtimeConfig") == {"portMappings": mappings}
    assert dig(add_ev, "cni.config.capabilities") == {"portMappings": True}
    assert dig(add_ev, "cni.args.K8S_POD_NAME") == "web-0"
    assert dig(add_ev, "orchestrator.type") == "kubernetes"
    assert dig(add_ev, "orchestrator.namespace") == "team-a"
    resource = dig(add_ev, "orchestrator.resource")
    assert {k: resource.get(k) for k in ("type", "name", "id")} == {"type": "pod", "name": "web-0",
                                                                    "id": "uid-1234"}, resource
    assert resource.get("ip", [ip]) == [ip], resource            # ECS orchestrator.resource.ip, if recorded
    assert dig(add_ev, "related.ip") == [ip]

    # (No CHECK here: portmap 1.1.1's CHECK fails on its IPv6 chain - "could not check ipv6 dnat".)
    delete = sb.cnitool("del", net, ctr, env=env)
    assert_ok(delete)
    del_ev = net.events()[-1]
    assert_common_event(del_ev, command="DEL", net=net, container_id=cid, netns_path=netns_path,
                        ifname="eth1", cni_version="1.0.0")
    assert dig(del_ev, "cni.config.runtimeConfig") == {"portMappings": mappings}
    nat = run(["ip", "netns", "exec", sb.host_ns, "iptables-save", "-t", "nat"], check=True).stdout
    assert f"--to-destination {ip}:8080" not in nat


# ---------------------------------------------------------------------------------------------------------
# A failure upstream of the logger: what the audit trail records, and what it cannot see


def test_upstream_failure_exhausted_range(sandbox: CniSandbox, network: Network) -> None:
    sb, net = sandbox, network
    only = net.host(2)
    sb.write_conflist(net, "1.0.0", [
        net.bridge_plugin(ranges=[[{"subnet": str(net.subnet), "rangeStart": only, "rangeEnd": only}]]),
        net.logger_plugin(),
    ])
    first, second = sb.new_container(), sb.new_container()
    cid_first = cnitool_container_id(sb.netns_path(first))
    cid_second = cnitool_container_id(sb.netns_path(second))

    assert_ok(sb.cnitool("add", net, first))
    assert ipv4_cidrs(first, "eth0") == [f"{only}/24"]

    failed = sb.cnitool("add", net, second)
    assert failed.rc == 1, failed.describe()
    assert failed.stdout == ""
    assert 'plugin type="bridge"' in failed.stderr and "no IP addresses available" in failed.stderr
    # The chain stopped at the bridge: the logger never ran for the failed ADD, nothing was cached.
    events = net.events()
    assert [(e["cni"]["command"], e["container"]["id"]) for e in events] == [("ADD", cid_first)]
    assert not net.cache_file(cid_second).exists()

    # cnitool does not DEL after a failed ADD; the runtime's cleanup DEL is recorded...
    assert_ok(sb.cnitool("del", net, second))
    events = net.events()
    assert [(e["cni"]["command"], e["container"]["id"]) for e in events] == [
        ("ADD", cid_first), ("DEL", cid_second)]
    del_ev = events[1]
    assert del_ev["event"]["outcome"] == "success"
    # ...but it cannot tell what happened: no cached result, so no address and no trace of the error.
    assert dig(del_ev, "cni.prev_result") in (None, {})
    assert dig(del_ev, "related.ip") in (None, [])
    assert "no IP addresses available" not in net.log_file.read_text()

    assert_ok(sb.cnitool("del", net, first))
    assert [(e["cni"]["command"], e["container"]["id"]) for e in net.events()][-1] == ("DEL", cid_first)
    assert [ip["address"] for ip in dig(net.events()[-1], "cni.prev_result.ips", [])] == [f"{only}/24"]


# ---------------------------------------------------------------------------------------------------------
# An unusable audit sink


TEE_WRAPPER = """#!/bin/sh
# Records the real plugin's raw stdout and exit status, passes both through unchanged.
out=$("{real}"); rc=$?
printf '%s' "$out" > "{record}.$CNI_COMMAND.stdout"
printf '%s' "$rc" > "{record}.$CNI_COMMAND.rc"
printf '%s' "$out"
exit $rc
"""


def unusable_log_file(tmp: Path, kind: str) -> Path:
    if kind == "parent-is-a-file":
        (tmp / "not-a-dir").write_text("")
        return tmp / "not-a-dir" / "audit.log"
    (tmp / "a-directory.log").mkdir()
    return tmp / "a-directory.log"


@pytest.mark.parametrize("kind", ["parent-is-a-file", "log-file-is-a-directory"])
def test_fail_on_log_error_with_unusable_sink(sandbox: CniSandbox, network: Network, kind: str) -> None:
    sb, net = sandbox, network
    real = sb.bin_dir / "logger.real"     # the installed launcher, moved aside for the recording wrapper
    (sb.bin_dir / "logger").rename(real)
    record = sb.tmp / "logger-record"
    sb.write_plugin_script("logger", TEE_WRAPPER.format(real=real, record=record))
    log_file = unusable_log_file(sb.tmp, kind)
    sb.write_conflist(net, "1.0.0", [net.bridge_plugin(),
                                     {"type": "logger", "logFile": str(log_file), "failOnLogError": True}])
    ctr = sb.new_container()

    add = sb.cnitool("add", net, ctr)
    assert add.rc == 1, add.describe()
    assert add.stdout == ""
    assert 'plugin type="logger" failed (add): audit log' in add.stderr, add.stderr
    raw = json.loads((sb.tmp / "logger-record.ADD.stdout").read_text())
    assert (sb.tmp / "logger-record.ADD.rc").read_text() == "1"
    assert raw["code"] == 11 and raw["msg"].startswith("audit log unavailable"), raw
    assert raw["cniVersion"] == "1.0.0"
    assert not net.cache_file(cnitool_container_id(sb.netns_path(ctr))).exists()


@pytest.mark.parametrize("kind", ["parent-is-a-file", "log-file-is-a-directory"])
def test_unusable_sink_without_fail_on_log_error_keeps_network(sandbox: CniSandbox, network: Network,
                                                               kind: str) -> None:
    """Default failOnLogError=false: the network comes up untouched; the event still reaches stderr."""
    sb, net = sandbox, network
    log_file = unusable_log_file(sb.tmp, kind)
    sb.write_conflist(net, "1.0.0", [net.bridge_plugin(), {"type": "logger", "logFile": str(log_file)}])
    ctr = sb.new_container()
    add = sb.cnitool("add", net, ctr)
    assert_ok(add)
    assert result_mismatches(json.loads(add.stdout), sb.bridge_result(net, ctr, "1.0.0")) == []
    assert [dig(e, "event.action") for e in stderr_events(add.stderr)] == ["cni-add"]
    assert_ok(sb.cnitool("del", net, ctr))


# ---------------------------------------------------------------------------------------------------------
# The chain check is not vacuous: an altered plugin output is detected


TAMPER_WRAPPER = """#!/bin/sh
# Runs the real logger, then drops "ips" from whatever it printed (simulates a plugin that alters results).
out=$("{real}"); rc=$?
if [ -n "$out" ]; then printf '%s' "$out" | jq -c 'del(.ips)'; fi
exit $rc
"""


def test_chain_check_detects_altered_output(sandbox: CniSandbox, network: Network) -> None:
    sb, net = sandbox, network
    sb.write_plugin_script("logger-tampered", TAMPER_WRAPPER.format(real=(sb.bin_dir / "logger").resolve()))
    sb.write_conflist(net, "1.0.0", [net.bridge_plugin(), {**net.logger_plugin(), "type": "logger-tampered"}])
    ctr = sb.new_container()
    add = sb.cnitool("add", net, ctr)
    assert_ok(add)
    printed = json.loads(add.stdout)
    mismatches = result_mismatches(printed, sb.bridge_result(net, ctr, "1.0.0"))
    assert any(m.startswith("result.ips: missing") for m in mismatches), mismatches
    # The logger itself saw the complete result (it was the wrapper that altered the output).
    (add_ev,) = read_events(net.log_file)
    assert [ip["address"] for ip in dig(add_ev, "cni.prev_result.ips", [])] == ipv4_cidrs(ctr, "eth0")
    assert_ok(sb.cnitool("del", net, ctr))
