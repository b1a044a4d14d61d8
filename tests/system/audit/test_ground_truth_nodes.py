"""Ground truth over two nodes' trails merged, and over an export of them read from stdin.

Two cnitool sandboxes are two nodes: each its own host namespace, bridge, host-local data dir and trail,
and both the *same* network name with the *same* five-address range, as every node of a cluster has. The
plugin writes ``host.name`` from ``uname`` (``cni_logger.events``), so each node's cnitool runs in a UTS
namespace of its own whose host name is the node's (``unshare --uts``, then ``hostname``): the real plugin,
run by the real libcni, names its node itself; nothing in its lines is rewritten. Containers come and go on
both at random (seeded), so the same address is held on both nodes at once most of the time; partway
through, node A's runtime garbage-collects (CNI 1.1 GC, the logger run as libcni runs a GC, listing node A's
attachments as valid): it must not end node B's.

The questions are those of ``test_ground_truth`` (``who-had ADDRESS --at`` many moments, ``who-had ADDRESS``,
``leaks``), asked of the merged trails per node (``--host``: each answer judged against that node's truth by
the same judges) and without ``--host`` (every node's holder, each on its own row, status 0; nobody anywhere,
status 1). Then the same over an NDJSON export of the events as Elasticsearch stores them (``_source``
documents, with what the ingest pipeline and a shipper add, keys re-ordered), read from stdin: the same
answers as the node files give.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.audit import CLI, Result, cli, now
from tests.harness.cnitool import (
    CniSandbox,
    Network,
    Proc,
    cnitool_container_id,
    environment_problem,
    ipv4_cidrs,
    opened,
    runtime_plugin,
)
from tests.harness.trails import wait_for_compression
from tests.system.audit.test_ground_truth import ADDRESSES, Tally, Truth, judge_at, judge_listing

pytestmark = pytest.mark.integration

NODES = ("node-a", "node-b")
CONTAINERS = 8
"""Per node."""
STEPS = 48
"""Steps in all, alternating between the nodes."""
GC_AT = 24
SEED = 1818
NETWORK_NAME = f"cluster-{os.getpid()}"
"""The network's name on every node."""
SUBNET_OFFSET = 10


class Node(CniSandbox):
    """A cnitool sandbox whose runtime (and so every plugin it runs) has the node's own host name."""

    def __init__(self, tmp: Path, hostname: str) -> None:
        super().__init__(tmp)
        self.hostname = hostname

    def named(self, argv: list[str]) -> list[str]:
        """``argv`` in a UTS namespace of its own, named as the node (root only, as every cnitool test)."""
        return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *argv]

    def cnitool(self, command: str, net: Network, container_ns: str, *, env: dict[str, str] | None = None,
                timeout: float = 30.0) -> Proc:
        from tests.harness.cnitool import CNITOOL, run

        argv = ["ip", "netns", "exec", self.host_ns, str(CNITOOL), command, net.name, self.netns_path(container_ns)]
        return run(self.named(argv), env=self.cnitool_env(env), timeout=timeout)

    def gc(self, net: Network, valid: list[str]) -> dict[str, Any]:
        """CNI 1.1 GC of the network as libcni runs it for the logger: ``cni.dev/valid-attachments`` in the config."""
        config = {"cniVersion": "1.1.0", "name": net.name, "type": "logger", "logFile": str(net.log_file),
                  "logOptions": {"maxSize": 0.016, "maxBackups": 0, "compress": True},
                  "cni.dev/valid-attachments": [{"containerID": cid, "ifname": "eth0"} for cid in valid]}
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "GC", "CNI_PATH": str(self.bin_dir)}
        proc = subprocess.run(self.named([str(self.bin_dir / "logger")]), input=json.dumps(config), env=env,
                              capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        return {"stdout": proc.stdout, "stderr": proc.stderr}


class Story:
    """Two nodes' truths: a ``Truth`` each (``test_ground_truth``'s), on the same addresses."""

    def __init__(self, addresses: list[str]) -> None:
        self.truths = {node: Truth(addresses) for node in NODES}
        self.logs: dict[str, Path] = {}
        self.gc_at = ""

    @property
    def addresses(self) -> list[str]:
        return self.truths[NODES[0]].addresses

    def args(self) -> list[str]:
        return [a for node in NODES for a in ("--log-file", str(self.logs[node]))]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, cni_logger_cli: Path) -> Iterator[Story]:
    problem = environment_problem()
    if problem:
        pytest.skip(problem)
    tmp = tmp_path_factory.mktemp("ground-truth-nodes")
    logger = runtime_plugin(cni_logger_cli)
    with _node(tmp / "a", NODES[0], logger) as a, _node(tmp / "b", NODES[1], logger) as b:
        yield run_story({NODES[0]: a, NODES[1]: b})


def _node(tmp: Path, hostname: str, logger: Path) -> contextlib.AbstractContextManager[Node]:
    """A ``Node`` set up, and always cleaned up (``cnitool.opened``)."""
    tmp.mkdir(parents=True)
    return opened(Node(tmp, hostname), logger)


def run_story(nodes: dict[str, Node]) -> Story:
    """Containers come and go on both nodes over the same five-address range; node A GCs halfway."""
    nets: dict[str, Network] = {}
    for name, node in nodes.items():
        own = node.new_network("truth")
        net = Network(name=NETWORK_NAME, bridge=own.bridge, subnet=nodes[NODES[0]].names.subnet(0),
                      ipam_dir=own.ipam_dir, log_file=own.log_file)
        node.networks[-1] = net
        addresses = [net.host(SUBNET_OFFSET + n) for n in range(ADDRESSES)]
        ranges = [[{"subnet": str(net.subnet), "rangeStart": addresses[0], "rangeEnd": addresses[-1]}]]
        node.write_conflist(net, "1.0.0", [
            net.bridge_plugin(ranges=ranges),
            net.logger_plugin(logOptions={"maxSize": 0.016, "maxBackups": 0, "compress": True}),
        ])
        nets[name] = net
    story = Story(addresses)
    for name in NODES:
        story.logs[name] = nets[name].log_file
        story.truths[name].before = now()
    rng = random.Random(SEED)
    names = {n: [node.new_container() for _ in range(CONTAINERS)] for n, node in nodes.items()}
    cids = {n: {c: cnitool_container_id(node.netns_path(c)) for c in names[n]} for n, node in nodes.items()}
    attached: dict[str, dict[str, tuple[str, int]]] = {n: {} for n in NODES}
    for step in range(STEPS):
        name = NODES[step % 2]
        node, net, truth, here = nodes[name], nets[name], story.truths[name], attached[name]
        if step == GC_AT:
            node.gc(net, [cids[name][c] for c in here])  # a correct GC: node A's own attachments are valid
            story.gc_at = now()
        free = [c for c in names[name] if c not in here]
        if here and (len(here) == ADDRESSES or rng.random() < 0.4 or step >= STEPS - 4):
            container = rng.choice(sorted(here))
            if step >= STEPS - 4 and len(here) <= 2:
                container = ""
            if container:
                env = {"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={container}"}
                proc = node.cnitool("del", net, container, env=env)
                assert proc.rc == 0, proc.describe()
                truth.deleted(here.pop(container)[1])
        else:
            container = rng.choice(free)
            added = now()
            proc = node.cnitool("add", net, container, env={"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={container}"})
            assert proc.rc == 0, proc.describe()
            (cidr,) = ipv4_cidrs(container, "eth0")
            address = cidr.split("/")[0]
            assert address in story.addresses
            here[container] = (address, truth.added(cids[name][container], address, added))
        moment = now()
        for other in NODES:
            story.truths[other].marks.append((moment, {a: cids[other][c] for c, (a, _) in attached[other].items()}))
    time.sleep(0.05)
    for name in NODES:
        wait_for_compression(story.logs[name].parent)
    return story


# -- judging the merged answers -------------------------------------------------------------------------------


def judge_merged(tally: Tally, address: str, at: str, holders: set[str], result: Result) -> None:
    """``who-had --at`` over both nodes: every node's holder on a row of its own, for certain; nobody: status 1."""
    tally.count(result)
    rows = result.json
    where = f"who-had {address} --at {at}: truth {holders}, rc {result.rc}, rows {rows}, {result.stderr}"
    if holders:
        ok = result.rc == 0 and sorted(r["container_id"] for r in rows) == sorted(holders) \
            and all(r["certainty"] == "held" and not r["conflict"] for r in rows)
    else:
        ok = result.rc == 1 and not rows and "nobody held" in result.stderr
    tally.right += ok
    if not ok:
        tally.wrong.append(where)


def ask(story: Story, args: list[str], run: Any = cli) -> Tally:
    """Every question, per node (``--host``) and merged; ``run``: how the CLI is run (with stdin or not)."""
    tally = Tally()
    truth_a = story.truths[NODES[0]]
    moments = [truth_a.marks[n][0] for n in range(0, len(truth_a.marks), 3)] + [truth_a.marks[-1][0]]
    for at in moments:
        for address in story.addresses:
            holders = {truth.holder(address, at) for truth in story.truths.values()} - {None}
            judge_merged(tally, address, at, holders,  # type: ignore[arg-type]
                         run("who-had", address, "--at", at, "--json", *args))
            for node, truth in story.truths.items():
                judge_at(tally, address, at, truth.holder(address, at),
                         run("who-had", address, "--at", at, "--host", node, "--json", *args))
    for address in story.addresses:
        for node, truth in story.truths.items():
            judge_listing(tally, truth, address, run("who-had", address, "--host", node, "--json", *args))
    # The attachments still open are the nodes' (node-a, node-b), not this machine's: only their node can tell
    # running from leaked, so every one is ``unknown`` and the answer qualified (status 3).
    leaks = run("leaks", "--json", *args)
    expected = {(node, c) for node, truth in story.truths.items() for c in truth.attached_at_end()}
    found = {(r["host"], r["container_id"]) for r in leaks.json if r["kind"] == "never-deleted"}
    if leaks.rc != 3 or found != expected or any(r["kind"] != "never-deleted" or r["state"] != "unknown"
                                                   for r in leaks.json):
        tally.wrong.append(f"leaks: expected {sorted(expected)}, rc {leaks.rc}, rows {leaks.json}")
    return tally


# -- the tests ------------------------------------------------------------------------------------------------


def test_two_nodes_merged_every_answer_is_right(story: Story) -> None:
    args = story.args()
    from tests.system.audit.test_ground_truth import files_of, read_lines

    for node, log in story.logs.items():  # every line names its node, as the plugin wrote it
        assert {json.loads(line)["host"]["name"] for path in files_of(log) for line in read_lines(path)} == {node}
    b = story.truths[NODES[1]]
    open_at_gc = [c for c, _, added, deleted in b.held if added < story.gc_at and (deleted is None or
                                                                                    deleted > story.gc_at)]
    assert open_at_gc, "node B held addresses when node A's GC ran"
    tally = ask(story, args)
    assert tally.wrong == [], "\n".join(tally.wrong)
    print(f"\ntwo nodes merged: {tally.right} right, {tally.qualified} qualified, statuses {tally.statuses}")
    both = [(at, a) for at, held in story.truths[NODES[0]].marks for a in held
            if a in dict(story.truths[NODES[1]].marks).get(at, {})]
    assert both, "the same address was held on both nodes at once"


def shipped(doc: dict[str, Any], number: int) -> dict[str, Any]:
    from tests.system.audit.test_hosts import shipped as as_stored

    return as_stored(doc, number)


def test_an_ndjson_export_from_stdin_gives_the_same_right_answers(story: Story) -> None:
    from tests.system.audit.test_ground_truth import files_of, read_lines

    docs = [json.loads(line) for log in story.logs.values() for path in files_of(log) for line in read_lines(path)]
    random.Random(SEED).shuffle(docs)  # Elasticsearch returns them in any order
    export = "".join(json.dumps(shipped(d, n)) + "\n" for n, d in enumerate(docs))

    def run(*args: str) -> Result:
        proc = subprocess.run([CLI, *args, "--log-file", "-"], input=export, capture_output=True, text=True,
                              timeout=60, check=False, env={**os.environ})
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    tally = ask(story, [], run)
    assert tally.wrong == [], "\n".join(tally.wrong)
    print(f"\nexport from stdin: {tally.right} right, {tally.qualified} qualified, statuses {tally.statuses}")
    for question in (["who-had", story.addresses[0], "--json"], ["report", "--json"]):
        mine, theirs = run(*question), cli(*question, *story.args())
        if question[0] == "report":
            assert json.loads(mine.stdout)["leaks"] == json.loads(theirs.stdout)["leaks"]
        else:
            assert (mine.rc, mine.stdout) == (theirs.rc, theirs.stdout)
