"""Issue 17's new-user case and an uninstall/reinstall window, on a chain a real runtime drives.

cnitool (libcni) runs bridge + host-local + logger in throw-away namespaces (``tests/harness/cnitool.py``). The
logger really leaves the chain (the conflist is rewritten without it, as the failsafe and ``uninstall`` do) and
comes back; the coverage events those write are appended by ``tests.harness.coverage_lines`` (contract-conformant
lines, until the real writer's are swapped in), and the inventory is read from libcni's own result cache, as
``--watch`` reads it. The test keeps its own ground truth (which container holds which address, from the
namespaces) and judges every answer: right, or qualified (exit 3 with the row marked, or exit 4); never a wrong
answer with exit 0 or 1.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from cni_logger.audit.coverage import INVENTORY_GRACE
from tests.harness import audit as helpers
from tests.harness.audit import now
from tests.harness.cnitool import (
    CniSandbox,
    Network,
    cnitool_container_id,
    ipv4_cidrs,
)
from tests.harness.coverage_lines import append, attachment, coverage_line, inventory_lines

pytestmark = pytest.mark.integration


class Node:
    """One network's chain on this node, with the logger in it or not, and the coverage events that say so."""

    def __init__(self, sb: CniSandbox, net: Network) -> None:
        self.sb, self.net = sb, net
        self.conflist = Path()
        self.chain(with_logger=True)

    def chain(self, *, with_logger: bool) -> None:
        plugins = [self.net.bridge_plugin(ranges=[[{"subnet": str(self.net.subnet), "rangeStart": self.net.host(10),
                                                    "rangeEnd": self.net.host(14)}]])]
        if with_logger:
            plugins.append(self.net.logger_plugin(logOptions={"maxSize": 1, "maxBackups": 2}))
        self.conflist = self.sb.write_conflist(self.net, "1.0.0", plugins)

    def leave(self, reason: str, detail: str = "") -> str:
        at = now()
        more = {"detail": detail} if detail else {}
        append(self.net.log_file, [coverage_line("logger-left", at, network=self.net.name, file=str(self.conflist),
                                                 roles=["outcome"], reason=reason, **more)])
        self.chain(with_logger=False)
        return at

    def enter(self, reason: str) -> str:
        self.chain(with_logger=True)
        at = now()
        append(self.net.log_file, [coverage_line("logger-entered", at, network=self.net.name, file=str(self.conflist),
                                                 roles=["outcome"], reason=reason)])
        return at

    def inventory(self, trigger: str) -> str:
        """An inventory of libcni's result cache for this network, as ``--watch`` writes it."""
        time.sleep(INVENTORY_GRACE + 0.5)  # its evidence must be older than the grace for it to end anything
        found = []
        for path in sorted(self.net.cache_file("x").parent.glob(f"{self.net.name}-*")):
            cached: dict[str, Any] = json.loads(path.read_text())
            ips = (cached.get("result") or {}).get("ips") or [{}]
            found.append(attachment(cached["containerId"], ips[0].get("address", "").split("/")[0],
                                    network=self.net.name, ifname=cached.get("ifName", "eth0")))
        at = now()
        append(self.net.log_file, inventory_lines(at, found, [self.net.name], trigger=trigger))
        return at

    def run(self, command: str, container: str) -> None:
        env = {"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={container}"}
        proc = self.sb.cnitool(command, self.net, container, env=env)
        assert proc.rc == 0, proc.describe()


def test_a_release_while_the_logger_was_out_and_an_uninstall_window_are_qualified(sandbox: CniSandbox,
                                                                                 cni_logger_cli: Path) -> None:
    sb = sandbox

    def who_had(address: str, *more: str) -> helpers.Result:
        return helpers.cli("who-had", address, "--json", *more, "--log-file", str(net.log_file),
                           executable=str(cni_logger_cli))

    net = sb.new_network("cover")
    node = Node(sb, net)
    a, b, c = sb.new_container(), sb.new_container(), sb.new_container()
    cid = {n: cnitool_container_id(sb.netns_path(n)) for n in (a, b, c)}

    # (a) ADD recorded; the failsafe takes the logger out; the DEL happens while it is out; restored.
    node.run("add", a)
    (cidr,) = ipv4_cidrs(a, "eth0")
    address_a = cidr.split("/")[0]
    held = now()
    node.leave("failsafe", "the self-check failed")
    node.run("del", a)  # not recorded: the logger is not in the chain
    released = now()
    node.enter("restored")
    restored = now()
    rc_rows = who_had(address_a, "--at", restored)
    assert rc_rows.rc == 3, rc_rows  # truth: nobody; the trail cannot tell, and says so
    assert [(r["container_id"], r["certainty"]) for r in rc_rows.json] == [(cid[a], "possibly")]
    assert any("the logger was out of network" in n and "failsafe" in n for n in rc_rows.json[0]["notes"])
    assert who_had(address_a, "--at", released).rc == 3
    assert who_had(address_a, "--at", held).rc == 0
    # The restored watcher's inventory of the cache does not list a: its DEL happened, unrecorded.
    node.inventory("restored")
    after = now()
    result = who_had(address_a, "--at", after)
    assert (result.rc, result.json) == (1, []), result.stderr  # the truth: nobody holds it
    (row,) = who_had(address_a).json
    assert (row["container_id"], row["ended_by"]) == (cid[a], "inventory")

    # (b) uninstall, then b comes and goes unseen, then the logger is installed again.
    node.leave("uninstall")
    node.run("add", b)
    (cidr,) = ipv4_cidrs(b, "eth0")
    address_b = cidr.split("/")[0]
    window = now()
    node.run("del", b)
    node.enter("install")
    node.run("add", c)
    later = now()
    result = who_had(address_b, "--at", window)
    assert result.rc in (3, 4) and cid[b] not in {r["container_id"] for r in result.json if r["certainty"] == "held"}
    assert result.rc != 1, result.stderr
    subnet = f"{net.subnet}"
    result = who_had(subnet, "--at", window)
    assert result.rc in (3, 4), result.stderr
    result = who_had(subnet, "--at", later)
    (cidr,) = ipv4_cidrs(c, "eth0")
    assert {r["container_id"] for r in result.json if r["certainty"] == "held"} == {cid[c]}
    assert result.rc in (0, 3)
    leaks = helpers.cli("leaks", "--json", "--older-than", "0", "--log-file", str(net.log_file),
                        executable=str(cni_logger_cli))
    assert {(r["container_id"], r["kind"]) for r in leaks.json} == {(cid[a], "unrecorded-del"),
                                                                    (cid[c], "never-deleted")}
    node.run("del", c)


# -- ground truth: containers come and go while the logger leaves and re-enters the chain --------------------


STEPS = 40
LEAVE = {8: "failsafe", 22: "uninstall"}
ENTER = {14: "restored", 28: "install"}
INVENTORY = (15, 34)


def test_every_answer_across_outages_is_right_or_qualified(sandbox: CniSandbox, cni_logger_cli: Path) -> None:
    """The ground-truth story of ``test_ground_truth`` (seeded, five addresses reused all the time, the same
    containers ADDed again after their DEL), with the logger out of the chain twice (the failsafe, an
    uninstall) and inventories of the result cache: every ``who-had`` answer is right, or qualified."""
    from tests.system.audit.test_ground_truth import Tally, Truth, judge_at, judge_listing

    sb = sandbox
    net = sb.new_network("truth")
    node = Node(sb, net)
    names = [sb.new_container() for _ in range(8)]
    cids = {name: cnitool_container_id(sb.netns_path(name)) for name in names}
    truth = Truth([net.host(10 + n) for n in range(5)])
    truth.before = now()
    rng = random.Random(1717)
    attached: dict[str, tuple[str, int]] = {}
    for step in range(STEPS):
        if step in LEAVE:
            node.leave(LEAVE[step], "the self-check failed" if LEAVE[step] == "failsafe" else "")
        if step in ENTER:
            node.enter(ENTER[step])
        if step in INVENTORY:
            node.inventory("restored" if step in ENTER or step - 1 in ENTER else "rotation")
        free = [n for n in names if n not in attached]
        if len(attached) == 5 or (attached and rng.random() < 0.45) or not free:
            name = rng.choice(sorted(attached))
            node.run("del", name)
            truth.deleted(attached.pop(name)[1])
        else:
            name = rng.choice(free)
            added = now()
            node.run("add", name)
            (cidr,) = ipv4_cidrs(name, "eth0")
            attached[name] = (cidr.split("/")[0], truth.added(cids[name], cidr.split("/")[0], added))
        truth.marks.append((now(), {a: cids[n] for n, (a, _) in attached.items()}))

    def cli(*args: str) -> helpers.Result:
        return helpers.cli(*args, "--log-file", str(net.log_file), executable=str(cni_logger_cli))

    tally = Tally()
    for at, _ in [(truth.before, {}), *truth.marks[::2], truth.marks[-1]]:
        for address in truth.addresses:
            expected = None if at == truth.before else truth.holder(address, at)
            judge_at(tally, address, at, expected, cli("who-had", address, "--at", at, "--json"))
    for address in truth.addresses:
        judge_listing(tally, truth, address, cli("who-had", address, "--json"))
    for at, holders in truth.marks[::3]:  # the subnet form: its certain rows must be exactly the truth
        result = cli("who-had", str(net.subnet), "--at", at, "--json")
        tally.count(result)
        firm = {(r["address"], r["container_id"]) for r in result.json if r["certainty"] == "held"
                and not r["conflict"]}
        wrong = not firm <= set(holders.items()) or any(
            r["certainty"] == "held" and not r["conflict"] and holders.get(r["address"]) != r["container_id"]
            for r in result.json)
        if result.rc == 0:
            wrong = wrong or firm != set(holders.items())
        elif result.rc == 1:
            wrong = bool(holders)
        elif result.rc == 4:
            wrong = bool(result.json)
        elif result.rc == 3:
            named = {(r["address"], r["container_id"]) for r in result.json}
            wrong = wrong or not (set(holders.items()) <= named or "others may have held" in result.stderr)
        else:
            wrong = True
        if wrong:
            tally.wrong.append(f"who-had {net.subnet} --at {at}: truth {holders}, rc {result.rc}, rows "
                               f"{result.json}, {result.stderr}")
    assert tally.wrong == [], "\n".join(tally.wrong)
    print(f"\nacross outages: {tally.right} right, {tally.qualified} qualified, statuses {tally.statuses}")
    assert tally.statuses.get(3) and tally.statuses.get(0)  # the outages were felt, and the rest is certain
    for name in attached:
        node.run("del", name)
