"""The trail's coverage end to end: a real ``install --watch``, its real failsafe and a real uninstall write the
coverage events, a real runtime (cnitool: bridge + host-local + logger in throw-away namespaces) drives the
chain, and the audit answers from the trail they left.

``test_coverage_cnitool`` asks the same questions of contract-conformant lines written at chosen moments; here
nothing is simulated: the logger's bundle folder is really moved away (the failsafe takes the entry out and
writes ``logger-left``), really put back (the watcher restores it and writes ``logger-entered`` and an inventory
of libcni's result cache), the watcher is really stopped (``shutdown``) and the logger installed again. The test
keeps its own ground truth and judges every answer: right, or qualified (exit 3 with the row marked, or exit
4); never a wrong answer with exit 0 or 1.

The retention test is the issue's: with a small ``maxSize`` and ``maxBackups`` 1, a pod's ADD rotates out of
the trail while ``--watch`` runs; the inventories the watcher writes after each rotation keep it answered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness import audit as helpers
from tests.harness.audit import now
from tests.harness.bundle import Bundle, unpack
from tests.harness.cnitool import (
    RESULTS_DIR,
    CniSandbox,
    Network,
    cnitool_container_id,
    ipv4_cidrs,
)

pytestmark = pytest.mark.integration

WAIT = 60.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def coverage_events(net: Network) -> list[dict[str, Any]]:
    """The coverage events in the network's trail (live file and backups), oldest file first."""
    found = []
    for path in sorted(net.log_file.parent.glob(net.log_file.name + "*")):
        for line in path.read_bytes().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event", {}).get("dataset") == "cni.coverage":
                found.append(doc)
    return found


def actions(net: Network) -> list[str]:
    return [e["event"]["action"] for e in coverage_events(net)]


class Node:
    """A node: one network's conflist, the logger bundle unpacked in its own folder, and the watcher."""

    def __init__(self, sb: CniSandbox, bundle: Bundle, *, log_options: list[str] | None = None) -> None:
        self.sb = sb
        self.net = sb.new_network("real")
        plugins = [self.net.bridge_plugin(ranges=[[{"subnet": str(self.net.subnet), "rangeStart": self.net.host(10),
                                                    "rangeEnd": self.net.host(14)}]])]
        self.conflist = sb.write_conflist(self.net, "1.0.0", plugins)
        self.folder = unpack(bundle.tarball, sb.tmp / "opt")
        self.cli = self.folder / "bin" / "cni-logger"
        self.state = sb.tmp / "state"
        self.ready = sb.tmp / "ready"
        self.stderr = sb.tmp / "watch.err"
        self.options = log_options or []
        self.watcher: subprocess.Popen[bytes] | None = None

    def install_args(self) -> list[str]:
        return ["install", "--conf-dir", str(self.sb.netconf_dir), "--bin-dir", str(self.sb.bin_dir),
                "--conf-file", self.conflist.name, "--state-dir", str(self.state), "--log-file",
                str(self.net.log_file), *self.options]

    def in_chain(self) -> bool:
        plugins = json.loads(self.conflist.read_bytes())["plugins"]
        return any(p.get("type") == "logger" for p in plugins)

    def watch(self) -> None:
        with open(self.stderr, "ab") as err:
            self.watcher = subprocess.Popen(
                [str(self.cli), *self.install_args(), "--watch", "--interval", "0.2", "--heartbeat", "0",
                 "--results-cache", str(RESULTS_DIR), "--ready-file", str(self.ready)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: self.ready.exists() and self.in_chain(), "the watcher to put the logger in")

    def stop(self) -> None:
        assert self.watcher is not None
        self.watcher.send_signal(signal.SIGTERM)
        assert self.watcher.wait(timeout=WAIT) == 0, self.stderr.read_text()
        self.watcher = None

    def run(self, command: str, container: str) -> None:
        proc = self.sb.cnitool(command, self.net, container,
                               env={"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME={container}"})
        assert proc.rc == 0, proc.describe()

    def ask(self, *args: str) -> helpers.Result:
        return helpers.cli(*args, "--json", "--log-file", str(self.net.log_file), executable=str(self.cli))

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.kill()
            self.watcher.wait()
        moved = self.folder.with_name(self.folder.name + ".moved")
        if moved.exists() and not self.folder.exists():
            os.rename(moved, self.folder)


@pytest.fixture
def node(bare_sandbox: CniSandbox, bundle: Bundle) -> Iterator[Node]:
    """The node of a test: ``bare_sandbox`` has no logger; install writes it, as on a node."""
    n = Node(bare_sandbox, bundle)
    try:
        yield n
    finally:
        n.close()


def held_by(result: helpers.Result, container_id: str) -> bool:
    return any(r["container_id"] == container_id and r["certainty"] == "held" for r in result.json)


def test_a_release_while_the_failsafe_had_the_logger_out_and_an_uninstall_window(node: Node) -> None:
    sb, net = node.sb, node.net
    a, b = sb.new_container(), sb.new_container()
    cid = {n: cnitool_container_id(sb.netns_path(n)) for n in (a, b)}
    node.watch()
    node.run("add", a)  # recorded
    (address_a,) = [c.split("/")[0] for c in ipv4_cidrs(a, "eth0")]
    held = now()

    # The bundle folder disappears (a clean-up): the failsafe takes the entry out and says so in the trail.
    os.rename(node.folder, node.folder.with_name(node.folder.name + ".moved"))
    wait_for(lambda: not node.in_chain(), "the failsafe to take the logger out")
    left = [e for e in coverage_events(net) if e["event"]["action"] == "logger-left"]
    assert [e["cni"]["coverage"]["reason"] for e in left] == ["failsafe"], left
    node.run("del", a)  # not recorded: the logger is out of the chain
    released = now()
    os.rename(node.folder.with_name(node.folder.name + ".moved"), node.folder)
    wait_for(lambda: node.in_chain() and node.ready.exists(), "the watcher to put the logger back")
    wait_for(lambda: "logger-inventory" in actions(net)[actions(net).index("logger-left"):],
             "the inventory written when the logger re-entered the chain")
    restored = now()
    assert [e["cni"]["coverage"]["reason"] for e in coverage_events(net)
            if e["event"]["action"] == "logger-entered"][-1] == "restored"

    # Ground truth: a held the address at `held`, nobody at `released` and since.
    result = node.ask("who-had", address_a, "--at", held)
    assert result.rc == 0 and held_by(result, cid[a]), result
    for at in (released, restored):
        result = node.ask("who-had", address_a, "--at", at)
        assert not held_by(result, cid[a]), f"a was released while the logger was out, yet 'held' at {at}: {result}"
        assert result.rc in (1, 3, 4), result
        assert result.rc != 0, result
    leaks = node.ask("leaks", "--older-than", "0")
    assert cid[a] not in {r["container_id"] for r in leaks.json if r["kind"] == "never-deleted"}, leaks

    # An uninstall window: the watcher stops (its entry comes out), b comes and goes unseen, install again.
    node.stop()
    assert not node.in_chain()
    assert coverage_events(net)[-1]["event"]["action"] == "logger-left"
    assert coverage_events(net)[-1]["cni"]["coverage"]["reason"] == "shutdown"
    node.run("add", b)
    (address_b,) = [c.split("/")[0] for c in ipv4_cidrs(b, "eth0")]
    window = now()
    node.run("del", b)
    proc = subprocess.run([str(node.cli), *node.install_args()], capture_output=True, text=True, timeout=WAIT,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert coverage_events(net)[-1]["event"]["action"] == "logger-entered"
    assert coverage_events(net)[-1]["cni"]["coverage"]["reason"] == "install"

    # Truth at `window`: b held address_b, and the trail has no trace of it; "nobody" (exit 1) would be wrong.
    for question in (address_b, str(net.subnet)):
        result = node.ask("who-had", question, "--at", window)
        assert result.rc in (3, 4), f"{question} at {window} inside the uninstall window: {result}"
    node.run("del", b)  # idempotent DEL: the runtime's retry after the window


def test_a_pod_whose_add_rotated_away_is_held_or_qualified_never_nobody(bare_sandbox: CniSandbox,
                                                                          bundle: Bundle) -> None:
    """maxSize of a few events, maxBackups 1, --watch running: p's ADD leaves the trail, the inventories stay."""
    node = Node(bare_sandbox, bundle, log_options=["--max-size", "0.004", "--max-backups", "1"])
    try:
        sb, net = node.sb, node.net
        p, q = sb.new_container(), sb.new_container()
        pid = cnitool_container_id(sb.netns_path(p))
        node.watch()
        node.run("add", p)
        (address_p,) = [c.split("/")[0] for c in ipv4_cidrs(p, "eth0")]

        def add_gone() -> bool:
            return not any(
                f'"command":"ADD","container_id":"{pid}"' in line
                for path in net.log_file.parent.glob(net.log_file.name + "*")
                for line in path.read_text(errors="replace").splitlines())

        for _ in range(20):  # other pods come and go until p's ADD has rotated out of the trail
            node.run("add", q)
            node.run("del", q)
            if add_gone():
                break
        assert add_gone(), "p's ADD is still in the trail: the test did not rotate it out"
        # The watcher's next pass writes an inventory into the file the last rotation began.
        wait_for(lambda: any(e["event"]["action"] == "logger-inventory" for e in coverage_events(net)),
                 "an inventory in the trail")
        listed = [e for e in coverage_events(net)
                  if e["event"]["action"] == "cni-attachment" and e["container"]["id"] == pid]
        assert listed, "the inventory does not list p"
        at = now()
        result = node.ask("who-had", address_p, "--at", at)
        assert result.rc in (0, 3), f"p holds {address_p}, yet: {result}"
        assert pid in {r["container_id"] for r in result.json}, result
        result = node.ask("who-had", str(net.subnet), "--at", at)
        assert result.rc in (0, 3), result
        assert (address_p, pid) in {(r["address"], r["container_id"]) for r in result.json}, result
        node.run("del", p)
    finally:
        node.close()
