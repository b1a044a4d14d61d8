"""Bracket mode in a real chain: ``cni-logger install --bracket`` into a bridge + host-local network whose
range runs out, driven by cnitool (libcni) in throw-away namespaces, next to the same chain with the logger
last only. The failed ADDs, invisible to a logger placed last, are in the trail; the audit pairs them with
the DELs that cleaned up; the successful ADDs' results are the bridge's, exactly as without bracket mode."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.harness.cnitool import (
    CniSandbox,
    Network,
    cnitool_container_id,
    dig,
    result_mismatches,
    run,
)

ADDS = 4
"""Containers started on each network; the range holds two addresses, so the last two ADDs fail."""


def cni_logger(cli: Path, *argv: str) -> tuple[int, str, str]:
    proc = run([str(cli), *argv])
    return proc.rc, proc.stdout, proc.stderr


def two_address_bridge(net: Network) -> dict[str, Any]:
    return net.bridge_plugin(ranges=[[{"subnet": str(net.subnet), "rangeStart": net.host(2),
                                       "rangeEnd": net.host(3)}]])


def shape(result: dict[str, Any], net: Network) -> str:
    """A result with what differs between two networks (names, MACs, addresses, namespaces) masked."""
    text = json.dumps(result, sort_keys=True)
    for value in {i["mac"] for i in result["interfaces"]} | {i["name"] for i in result["interfaces"]}:
        text = text.replace(f'"{value}"', '"X"')
    text = text.replace(str(net.subnet.network_address)[:-1], "NET.")
    text = re.sub(r'"/run/netns/[^"]*"', '"NETNS"', text)
    return "".join(c if not c.isdigit() else "9" for c in text)


def start(sb: CniSandbox, net: Network) -> tuple[list[str], list[dict[str, Any]]]:
    """ADD ``ADDS`` containers; the results of the ADDs that succeeded, each checked against the kernel."""
    containers, results = [], []
    for number in range(ADDS):
        ctr = sb.new_container()
        containers.append(ctr)
        add = sb.cnitool("add", net, ctr)
        if number < 2:
            assert add.rc == 0, add.describe()
            printed = json.loads(add.stdout)
            assert result_mismatches(printed, sb.bridge_result(net, ctr, "1.0.0")) == []
            results.append(printed)
        else:
            assert add.rc == 1, add.describe()
            assert 'plugin type="bridge"' in add.stderr and "no IP addresses available" in add.stderr
    return containers, results


def test_bracket_records_failed_attempts_of_an_exhausted_range(sandbox: CniSandbox, tmp_path: Path,
                                                                cni_logger_cli: Path) -> None:
    sb = sandbox
    plain, bracketed = sb.new_network("last"), sb.new_network("bracket")
    sb.write_conflist(plain, "1.0.0", [two_address_bridge(plain), plain.logger_plugin()])
    conf = sb.write_conflist(bracketed, "1.0.0", [two_address_bridge(bracketed)])
    status, _, err = cni_logger(cni_logger_cli, "install", "--conf-dir", str(sb.netconf_dir), "--conf-file", conf.name,
                                "--bin-dir", str(sb.bin_dir), "--state-dir", str(tmp_path / "state"),
                                "--log-file", str(bracketed.log_file), "--bracket")
    assert status == 0, err
    plugins = json.loads(conf.read_text())["plugins"]
    assert [(p["type"], p.get("role")) for p in plugins] == [("logger", "attempt"), ("bridge", None),
                                                              ("logger", "outcome")]

    _, plain_results = start(sb, plain)
    ctrs, results = start(sb, bracketed)
    ids = [cnitool_container_id(sb.netns_path(c)) for c in ctrs]

    # The final results are the bridge's, exactly as in the chain without bracket mode.
    assert [shape(r, bracketed) for r in results] == [shape(r, plain) for r in plain_results]
    assert result_mismatches(json.loads(bracketed.cache_file(ids[0]).read_text())["result"], results[0]) == []
    check = sb.cnitool("check", bracketed, ctrs[0])  # both entries and the bridge check the cached result
    assert check.rc == 0, check.describe()

    # With the logger last, the failed ADDs are not in the trail; with bracket mode they are.
    assert [e["cni"]["command"] for e in plain.events()] == ["ADD", "ADD"]
    events = bracketed.events()
    assert [(e["cni"]["command"], e["cni"]["role"], e["container"]["id"]) for e in events] == [
        ("ADD", "attempt", ids[0]), ("ADD", "outcome", ids[0]), ("ADD", "attempt", ids[1]),
        ("ADD", "outcome", ids[1]), ("ADD", "attempt", ids[2]), ("ADD", "attempt", ids[3]),
        ("CHECK", "attempt", ids[0]), ("CHECK", "outcome", ids[0])]
    attempt, outcome = events[0], events[1]
    assert attempt["message"].endswith("(attempt entry) attempted") and "prev_result" not in attempt["cni"]
    assert [ip["address"] for ip in dig(outcome, "cni.prev_result.ips")] == [results[0]["ips"][0]["address"]]

    for ctr in reversed(ctrs):  # the runtime's clean-up DELs for the failed ones, then the real teardowns
        delete = sb.cnitool("del", bracketed, ctr)
        assert delete.rc == 0, delete.describe()
    dels = [(e["cni"]["role"], e["container"]["id"]) for e in bracketed.events() if e["cni"]["command"] == "DEL"]
    assert dels == [(role, cid) for cid in reversed(ids) for role in ("outcome", "attempt")], \
        "libcni runs DEL in reverse: the outcome entry first, the attempt entry last"

    log = ["--log-file", str(bracketed.log_file)]
    status, out, err = cni_logger(cni_logger_cli, "stats", *log, "--json")
    assert status == 0, err
    stats = json.loads(out)
    assert stats["commands"] == {"ADD": 2, "DEL": 4, "CHECK": 1}
    attempts = stats["attempts"]
    assert {k: attempts[k] for k in ("attempts", "succeeded", "failed", "cleaned_up", "no_outcome")} == {
        "attempts": 4, "succeeded": 2, "failed": 2, "cleaned_up": 2, "no_outcome": 0}
    chain = attempts["chain_latency_ms"]
    assert chain["count"] == 2 and 0 < chain["p50"] <= chain["p99"] <= chain["max"]
    status, out, _ = cni_logger(cni_logger_cli, "stats", *log)
    assert "ADD attempts (bracket mode): 4: succeeded 2, failed 2 (cleaned up by a DEL: 2)" in out

    status, out, err = cni_logger(cni_logger_cli, "leaks", *log, "--json")
    assert status == 1, err  # failed attempts, each cleaned up by its DEL, are not leaks
    found = [json.loads(line) for line in out.splitlines()]
    assert sorted((f["kind"], f["container_id"]) for f in found) == sorted(
        [("failed-attempt", ids[2]), ("failed-attempt", ids[3])]), "clean-ups listed as such, no DEL without ADD"
    by_id = {f["container_id"]: f for f in found}
    cleanup_del = {e["container"]["id"]: e["@timestamp"] for e in reversed(bracketed.events())
                   if e["cni"]["command"] == "DEL"}
    for cid in ids[2:]:
        assert by_id[cid]["ended_by"] == "DEL"
        assert by_id[cid]["until"] == cleanup_del[cid], "paired with the first (outcome entry's) DEL"

    # The same question on the logger-last trail cannot tell: nothing failed there, as far as it knows.
    status, out, _ = cni_logger(cni_logger_cli, "stats", "--log-file", str(plain.log_file), "--json")
    assert "attempts" not in json.loads(out) and json.loads(out)["outcomes"] == {"success": 2}

    status, _, err = cni_logger(cni_logger_cli, "uninstall", "--state-dir", str(tmp_path / "state"), "--keep-launcher")
    assert status == 0, err
    assert [p["type"] for p in json.loads(conf.read_text())["plugins"]] == ["bridge"]
