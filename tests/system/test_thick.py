"""Thick mode end to end: the installed shim, the agent inside a real ``install --watch --agent`` process, and
the in-process fallback, under the failures the agent can meet (SIGKILL between and during requests, the socket
removed, a stale socket file, a hung agent, a flood, a peer that is not root).

Whatever happens to the agent, every invocation is answered exactly as the in-process plugin answers it, and
recorded exactly once (one event per request in the trail; the request's id is the event's id).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.bundle import Bundle, unpack
from tests.harness.plugin import CNITOOL_RESULT_100, Run, cni_env
from tests.harness.shim import built as built_shim
from tests.harness.thick import CNI_LOGGER, ThickNode, served
from tests.harness.waiting import wait_for

VOLATILE = (("@timestamp",), ("event", "duration"), ("event", "id"), ("process",), ("cni", "served_by"),
            ("cni", "fallback_reason"))
"""What differs between two runs of the same invocation whichever path serves it."""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ThickNode]:
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    made = ThickNode(tmp_path, built_shim())
    yield made
    made.stop()


def add_config(node: ThickNode, version: str = "1.0.0") -> dict[str, Any]:
    return node.config(version, prevResult=CNITOOL_RESULT_100)


def stable(event: dict[str, Any]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(event))
    for path in VOLATILE:
        holder = copy
        for key in path[:-1]:
            holder = holder.get(key, {})
        holder.pop(path[-1], None)
    return copy


def big_result(addresses: int) -> dict[str, Any]:
    """A previous result with many addresses: seconds of work for the plugin, so a request is in flight long
    enough to be interrupted."""
    return {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"interface": 0, "address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/8"}
                    for i in range(addresses)]}


def cases(node: ThickNode) -> list[tuple[str, dict[str, str], bytes]]:
    """Invocations of every kind, good and bad: (name, environment, stdin)."""
    good = json.dumps(add_config(node)).encode()
    out: list[tuple[str, dict[str, str], bytes]] = []
    for version in ("0.3.1", "0.4.0", "1.0.0", "1.1.0"):
        conf = json.dumps(node.config(version, prevResult={**CNITOOL_RESULT_100, "cniVersion": version})).encode()
        out.append((f"ADD {version}", cni_env("ADD"), conf))
        out.append((f"DEL {version}", cni_env("DEL"), conf))
    out += [
        ("CHECK", cni_env("CHECK"), good),
        ("VERSION", cni_env("VERSION"), b'{"cniVersion":"0.4.0"}'),
        ("VERSION no stdin", cni_env("VERSION"), b""),
        ("GC", cni_env("GC"), json.dumps(node.config("1.1.0")).encode()),
        ("STATUS", cni_env("STATUS"), json.dumps(node.config("1.1.0")).encode()),
        ("ADD bad JSON", cni_env("ADD"), b"{not json"),
        ("ADD no container id", {k: v for k, v in cni_env("ADD").items() if k != "CNI_CONTAINERID"}, good),
        ("ADD version unknown", cni_env("ADD"), json.dumps(node.config("9.9.9")).encode()),
        ("CHECK before 0.4.0", cni_env("CHECK"), json.dumps(node.config("0.3.1")).encode()),
        ("unknown command", cni_env("FROB"), good),
        ("no CNI_COMMAND (the banner)", {"PATH": "/usr/bin:/bin"}, b""),
        ("DEL bad JSON (always succeeds)", cni_env("DEL"), b"[1,2"),
        ("ADD odd environment", {**cni_env("ADD"), "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p\u00e9",
                                 "EMPTY": "", "SPACES": " a  b "}, good),
        ("ADD binary stdin", cni_env("ADD"), b"\x00\xff{}"),
        ("ADD too large", cni_env("ADD"), b" " * (16 * 1024 * 1024 + 1)),
    ]
    return out


def test_answers_are_the_in_process_plugins_whichever_path_serves_them(node: ThickNode) -> None:
    """The shim never changes what is answered or recorded: stdout and exit status byte for byte, and the event
    but for its time, id, process and path, equal the plain launcher's for the same input."""
    node.start()
    paths = {"agent": {}, "fallback": {"CNI_LOGGER_SHIM": "inprocess"}}
    for name, env, stdin in cases(node):
        plain = node.run("", stdin=stdin, env=env, executable=node.plain)
        for expected, extra in paths.items():
            thick = node.run("", stdin=stdin, env={**env, **extra})
            assert (thick.rc, thick.stdout) == (plain.rc, plain.stdout), (name, expected, thick, plain)
            assert [stable(e) for e in thick.stderr_events] == [stable(e) for e in plain.stderr_events], \
                (name, expected)
            for event in thick.stderr_events:
                assert event["cni"]["served_by"] == expected, (name, event["cni"])
                assert ("fallback_reason" in event["cni"]) == (expected == "fallback"), (name, event["cni"])
    # the trail holds each recorded invocation once per run, the shim's with the path that served it
    by = [e["cni"].get("served_by", "launcher") for e in node.events()]
    assert by.count("agent") == by.count("fallback") == by.count("launcher") > 0


def test_sigkill_between_requests_falls_back_and_a_new_watcher_replaces_the_stale_socket(node: ThickNode) -> None:
    node.start()
    assert served(node.run("ADD", add_config(node))) == ("agent", "")
    node.kill()
    assert node.socket.exists(), "SIGKILL cleans nothing up: the socket file is stale now"
    run = node.run("ADD", add_config(node))
    assert run.rc == 0 and run.doc == CNITOOL_RESULT_100
    assert served(run) == ("fallback", "not-listening")
    node.start()
    assert served(node.run("ADD", add_config(node))) == ("agent", "")
    ids = [e["event"]["id"] for e in node.events()]
    assert len(ids) == 3 == len(set(ids))


def test_sigkill_mid_request_falls_back_and_records_once(node: ThickNode) -> None:
    node.start("--interval", "60")  # no pass while the request is in flight
    config = node.config(prevResult=big_result(200_000))
    idle = node.cpu_ticks()
    shim = subprocess.Popen([str(node.plugin)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cni_env("ADD"))
    assert shim.stdin is not None
    shim.stdin.write(json.dumps(config).encode())
    shim.stdin.close()
    shim.stdin = None  # closed: communicate() only reads
    assert wait_for(lambda: node.cpu_ticks() > idle + 10, 30), "the agent never started on the request"
    node.kill()
    out, err = shim.communicate(timeout=120)
    run = Run(shim.returncode, out, err)
    assert run.rc == 0 and run.doc["ips"] == config["prevResult"]["ips"]
    assert served(run) == ("fallback", "died")
    events = node.events()
    assert len(events) == 1 and events[0]["event"]["id"] == run.stderr_events[0]["event"]["id"]


def test_an_agent_too_slow_to_answer_is_left_and_the_request_is_recorded_once(tmp_path: Path) -> None:
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    node = ThickNode(tmp_path, built_shim(), agent_timeout=0.1)
    try:
        node.start("--interval", "60")
        run = node.run("ADD", node.config(prevResult=big_result(200_000)))  # seconds of work, 0.1 s allowed
        assert run.rc == 0
        assert served(run) == ("fallback", "timeout")
        request = run.stderr_events[0]["event"]["id"]
        assert wait_for(lambda: f"the shim of request {request}" in node.said(), 120), \
            "the agent never finished the request its shim left"
        # once, by whichever path got there first: the agent (the fallback then found the id at the end of the
        # trail) or the fallback (the agent then saw its shim gone)
        events = node.events()
        assert [e["event"]["id"] for e in events] == [request]
    finally:
        node.stop()


def test_a_hung_agent_is_passed_over_and_serves_again_once_it_runs(node: ThickNode) -> None:
    node.start()
    node.signal(signal.SIGSTOP)
    try:
        run = node.run("ADD", add_config(node))
        assert run.rc == 0 and run.doc == CNITOOL_RESULT_100
        assert served(run) == ("fallback", "slow")
    finally:
        node.signal(signal.SIGCONT)
    assert served(node.run("ADD", add_config(node))) == ("agent", "")
    assert len(node.events()) == 2


def test_a_removed_socket_means_in_process_until_the_watcher_restarts_the_agent(node: ThickNode) -> None:
    node.start()
    node.socket.unlink()
    run = node.run("ADD", add_config(node))
    assert run.rc == 0 and served(run) == ("fallback", "absent")
    assert wait_for(node.socket.exists, 30), "the watcher never restarted its agent"
    assert served(node.run("ADD", add_config(node))) == ("agent", "")
    out = node.stop()
    assert "the agent failed its check" in out


def test_a_flood_of_concurrent_adds_is_answered_and_recorded_once_each(node: ThickNode) -> None:
    node.start("--interval", "60")
    count = 200
    config = json.dumps(add_config(node)).encode()
    procs = []
    for number in range(count):
        proc = subprocess.Popen([str(node.plugin)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=cni_env("ADD", CNI_CONTAINERID=f"flood-{number:04d}"))
        procs.append(proc)
    runs = []
    for proc in procs:
        out, err = proc.communicate(config, timeout=300)
        runs.append(Run(proc.returncode, out, err))
    assert all(r.rc == 0 and r.doc == CNITOOL_RESULT_100 for r in runs)
    events = node.events()
    assert sorted(e["container"]["id"] for e in events) == [f"flood-{n:04d}" for n in range(count)]
    assert len({e["event"]["id"] for e in events}) == count
    paths = [e["cni"]["served_by"] for e in events]
    print(f"flood of {count}: {paths.count('agent')} served by the agent, {paths.count('fallback')} in-process")
    assert paths.count("agent") > 0


def test_a_peer_that_is_not_root_is_refused_and_runs_in_process(node: ThickNode, tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    node.start()
    tmp_path.chmod(0o755)
    for part in (node.root, node.bin_dir):
        part.chmod(0o755)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # with CAP_DAC_OVERRIDE it gets past the socket's 0600 and its 0700 directory: the agent checks the peer itself
    capable = [*nobody, "--inh-caps=+dac_override", "--ambient-caps=+dac_override"]
    run = node.run("ADD", add_config(node), wrapper=capable)
    assert run.rc == 0 and run.doc == CNITOOL_RESULT_100, run
    assert served(run) == ("fallback", "refused")
    run = node.run("ADD", add_config(node), wrapper=nobody)
    assert run.rc == 0 and run.doc == CNITOOL_RESULT_100, run
    assert served(run) == ("fallback", "denied")


def in_chain(node: ThickNode) -> bool:
    doc = json.loads((node.net_d / "10-thick.conflist").read_text())
    return any(p.get("type") == "logger" for p in doc["plugins"])


def test_the_failsafe_takes_the_logger_out_when_the_in_process_path_breaks_even_with_the_agent_up(
        bundle: Bundle, tmp_path: Path) -> None:
    """The agent can be gone at any moment, so the entry stays only while the in-process path works: a damaged
    bundle (its standard library's ``encodings`` gone) is withdrawn although the agent, loaded before, still
    answers; repaired, the logger goes back in."""
    folder = unpack(bundle.tarball, tmp_path / "opt")
    node = ThickNode(tmp_path / "node", folder / "libexec" / "cni-logger-shim", cli=folder / "bin" / "cni-logger")
    try:
        node.start()
        assert in_chain(node)
        assert served(node.run("ADD", add_config(node))) == ("agent", "")
        encodings = next(folder.glob("lib/python3*/encodings"))
        encodings.rename(encodings.with_name("encodings.away"))
        assert wait_for(lambda: not in_chain(node), 60), node.said()[-2000:]
        assert wait_for(lambda: not node.ready.exists(), 30)  # at the end of that pass
        assert "fails its self-check" in node.said()
        encodings.with_name("encodings.away").rename(encodings)
        assert wait_for(lambda: in_chain(node) and node.ready.exists(), 60), node.said()[-2000:]
        assert served(node.run("ADD", add_config(node))) == ("agent", "")
    finally:
        node.stop()


def test_metrics_count_invocations_by_path_and_the_agents_requests(tmp_path: Path) -> None:
    import socket
    import urllib.request

    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = ThickNode(tmp_path, built_shim())
    try:
        node.start("--metrics-address", f"127.0.0.1:{port}")
        for _ in range(2):
            assert served(node.run("ADD", add_config(node)))[0] == "agent"
        assert served(node.run("ADD", add_config(node), env=cni_env("ADD", CNI_LOGGER_SHIM="inprocess"))) == \
            ("fallback", "off")
        assert node.run("ADD", add_config(node), executable=node.plain).rc == 0

        def scrape() -> dict[str, float]:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith(("cni_logger_invocations_served_total", "cni_logger_agent_"))}

        wanted = {'cni_logger_invocations_served_total{by="agent"}': 2.0,
                  'cni_logger_invocations_served_total{by="fallback"}': 1.0,
                  'cni_logger_invocations_served_total{by="launcher"}': 1.0, "cni_logger_agent_up": 1.0}
        assert wait_for(lambda: all(scrape().get(k) == v for k, v in wanted.items()), 30), scrape()
        # the agent's own requests: the two ADDs and the watcher's checks of the agent path, all served
        assert scrape()['cni_logger_agent_requests_total{result="served"}'] >= 2
        assert scrape()['cni_logger_agent_requests_total{result="refused"}'] == 0
    finally:
        node.stop()


def test_sigterm_leaves_the_shim_for_dels_and_uninstall_removes_it(node: ThickNode) -> None:
    node.start()
    node.stop()
    assert not node.socket.exists(), "the agent's socket goes with it"
    assert node.plugin.exists(), "the shim stays: pods set up with it still need it for DEL"
    run = node.run("DEL", add_config(node))
    assert run.rc == 0 and served(run) == ("fallback", "absent")
    done = subprocess.run([str(CNI_LOGGER), "uninstall", "--state-dir", str(node.state)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not node.plugin.exists(), done.stderr
