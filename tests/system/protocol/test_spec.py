"""The protocol suite: every operation in every spec version, derived from the CNI specification.

Each test runs the installed plugin as a fresh process with CNI_* variables and a config on stdin,
exactly as libcni does, and checks stdout, the exit status and the audit event.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.plugin import SUPPORTED_VERSIONS, cni_env, read_events, run_plugin

CHECK_VERSIONS = [v for v in SUPPORTED_VERSIONS if v >= "0.4.0"]
PRE_CHECK_VERSIONS = [v for v in SUPPORTED_VERSIONS if v < "0.4.0"]
GC_VERSIONS = ["1.1.0"]
PRE_GC_VERSIONS = [v for v in SUPPORTED_VERSIONS if v != "1.1.0"]
FAMILY = {"0.1.0": "020", "0.2.0": "020", "0.3.0": "040", "0.3.1": "040", "0.4.0": "040",
          "1.0.0": "100", "1.1.0": "100"}


def bridge_result(version: str) -> dict[str, Any]:
    """The result the bridge plugin prints (real-clients.md §3), in ``version``'s format."""
    if FAMILY[version] == "020":
        return {"cniVersion": version,
                "ip4": {"ip": "10.250.77.2/24", "gateway": "10.250.77.1",
                        "routes": [{"dst": "0.0.0.0/0", "gw": "10.250.77.1"}]},
                "dns": {}}
    ip: dict[str, Any] = {"interface": 2, "address": "10.250.77.2/24", "gateway": "10.250.77.1"}
    if FAMILY[version] == "040":
        ip["version"] = "4"
    return {"cniVersion": version,
            "interfaces": [{"name": "rcbr0", "mac": "c6:60:67:4b:5d:76"},
                           {"name": "veth24e0f2cc", "mac": "62:dc:de:d3:77:14"},
                           {"name": "eth0", "mac": "ca:4d:f4:32:50:b1", "sandbox": "/run/netns/rc-ctr"}],
            "ips": [ip],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.250.77.1"}],
            "dns": {}}


def config(version: str, log_file: Path | None = None, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"cniVersion": version, "name": "testnet", "type": "logger", **extra}
    if log_file is not None:
        conf["logFile"] = str(log_file)
    return conf


def assert_error(run: Any, code: int, version: str | None = None) -> dict[str, Any]:
    assert run.rc != 0, run
    doc = run.doc
    assert set(doc) <= {"cniVersion", "code", "msg", "details"}, doc
    assert doc["code"] == code, doc
    assert isinstance(doc["msg"], str) and doc["msg"], doc
    if version is not None:
        assert doc["cniVersion"] == version
    assert b"Traceback" not in run.stderr
    return dict(doc)


# -- VERSION ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_version_echoes_the_asked_version_and_lists_all(version: str) -> None:
    run = run_plugin("VERSION", {"cniVersion": version}, env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin"})
    assert run.rc == 0
    assert run.doc == {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def test_version_as_libcni_calls_it_and_with_empty_stdin() -> None:
    env = cni_env("VERSION", CNI_NETNS="dummy", CNI_IFNAME="dummy", CNI_PATH="dummy", CNI_CONTAINERID="")
    assert run_plugin("VERSION", {"cniVersion": "1.0.0"}, env=env).doc["cniVersion"] == "1.0.0"
    empty = run_plugin("VERSION", stdin=b"", env=env)
    assert empty.rc == 0 and empty.doc["supportedVersions"] == list(SUPPORTED_VERSIONS)


def test_version_is_not_recorded_unless_asked(tmp_path: Path) -> None:
    quiet = run_plugin("VERSION", {"cniVersion": "1.1.0"})
    assert quiet.stderr_events == []
    loud = run_plugin("VERSION", {"cniVersion": "1.1.0"},
                      env={**cni_env("VERSION"), "CNI_LOGGER_RECORD_VERSION": "1"})
    [event] = loud.stderr_events
    assert event["event"]["action"] == "cni-version" and event["cni"]["version"] == "1.1.0"


# -- ADD ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_alone_answers_a_minimal_valid_result(version: str, tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    run = run_plugin("ADD", config(version, log))
    assert run.rc == 0, run.stderr
    assert run.doc == {"cniVersion": version, "dns": {}}
    [event] = read_events(log)
    assert event["event"]["outcome"] == "success" and event["cni"]["command"] == "ADD"


@pytest.mark.parametrize("version", [v for v in SUPPORTED_VERSIONS if FAMILY[v] != "020"])
def test_add_passes_prev_result_through_unchanged_in_its_own_version(version: str) -> None:
    prev = bridge_result(version)
    prev["custom"] = {"kept": True}  # a key this plugin does not know must survive
    run = run_plugin("ADD", config(version, prevResult=prev))
    assert run.rc == 0
    assert run.doc == prev


@pytest.mark.parametrize("target", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("source", ["0.2.0", "0.4.0", "1.0.0", "1.1.0"])
def test_add_converts_prev_result_to_the_config_version(source: str, target: str) -> None:
    run = run_plugin("ADD", config(target, prevResult=bridge_result(source)))
    assert run.rc == 0, run.stdout
    doc = run.doc
    assert doc["cniVersion"] == target
    if FAMILY[target] == "020":
        assert doc["ip4"]["ip"] == "10.250.77.2/24" and doc["ip4"]["gateway"] == "10.250.77.1"
        assert "ips" not in doc and "interfaces" not in doc
    else:
        assert [ip["address"] for ip in doc["ips"]] == ["10.250.77.2/24"]
        versions = {ip.get("version") for ip in doc["ips"]}
        assert versions == ({"4"} if FAMILY[target] == "040" else {None})
        if FAMILY[source] != "020":
            assert doc["interfaces"] == bridge_result(source)["interfaces"]


def test_add_prev_result_without_addresses_cannot_become_0_2_0() -> None:
    run = run_plugin("ADD", config("0.2.0", prevResult={"cniVersion": "1.0.0", "interfaces": []}))
    assert_error(run, 1, "0.2.0")


@pytest.mark.parametrize("prev", ["a string", [1, 2], 7])
def test_add_unusable_prev_result_is_a_decoding_error(prev: Any) -> None:
    assert_error(run_plugin("ADD", config("1.0.0", prevResult=prev)), 6, "1.0.0")


def test_add_prev_result_of_unknown_version_is_refused() -> None:
    assert_error(run_plugin("ADD", config("1.0.0", prevResult={"cniVersion": "9.9.9"})), 1)


# -- DEL ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_del_prints_nothing_and_succeeds(version: str, tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    run = run_plugin("DEL", config(version, log, prevResult=bridge_result(version)))
    assert (run.rc, run.stdout) == (0, b"")
    [event] = read_events(log)
    assert event["event"]["action"] == "cni-del" and event["event"]["outcome"] == "success"
    assert event["related"]["ip"] == ["10.250.77.2"]


@pytest.mark.parametrize("case", ["no-netns", "bad-prev", "not-json", "bad-version", "no-env"])
def test_del_always_succeeds(case: str, tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    conf = config("1.0.0", log)
    env = cni_env("DEL")
    stdin = None
    if case == "no-netns":
        env.pop("CNI_NETNS")
    elif case == "bad-prev":
        conf["prevResult"] = "garbage"
    elif case == "not-json":
        stdin = b"{not json"
    elif case == "bad-version":
        conf["cniVersion"] = "42.0.0"
    elif case == "no-env":
        env = {"CNI_COMMAND": "DEL", "PATH": "/usr/bin"}
    run = run_plugin("DEL", conf, stdin=stdin, env=env)
    assert (run.rc, run.stdout) == (0, b""), run.stderr
    assert b"Traceback" not in run.stderr


def test_del_twice_succeeds_and_records_both(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    for _ in range(2):
        run = run_plugin("DEL", config("1.0.0", log))
        assert (run.rc, run.stdout) == (0, b"")
    assert [e["cni"]["command"] for e in read_events(log)] == ["DEL", "DEL"]


# -- CHECK ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", CHECK_VERSIONS)
def test_check_prints_nothing(version: str, tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    run = run_plugin("CHECK", config(version, log, prevResult=bridge_result(version)))
    assert (run.rc, run.stdout) == (0, b"")
    [event] = read_events(log)
    assert event["event"]["type"] == ["info"] and event["cni"]["prev_result"]["ips"][0]["address"]


@pytest.mark.parametrize("version", PRE_CHECK_VERSIONS)
def test_check_before_0_4_0_is_refused(version: str, tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    doc = assert_error(run_plugin("CHECK", config(version, log)), 1, version)
    assert "CHECK" in doc["msg"]
    [event] = read_events(log)  # failures are events too
    assert event["event"]["outcome"] == "failure" and event["error"]["code"] == "1"


# -- GC and STATUS --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["GC", "STATUS"])
@pytest.mark.parametrize("version", PRE_GC_VERSIONS)
def test_gc_and_status_before_1_1_0_are_refused(command: str, version: str) -> None:
    doc = assert_error(run_plugin(command, config(version)), 1, version)
    assert command in doc["msg"]


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_accept_empty_cni_variables(command: str) -> None:
    env = cni_env(command, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="", CNI_PATH="", CNI_ARGS="")
    run = run_plugin(command, config("1.1.0"), env=env)
    assert (run.rc, run.stdout) == (0, b"")


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments", "both"])
def test_gc_accepts_either_attachment_key_and_records_them(key: str, tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    attachments = [{"containerID": "abc", "ifname": "eth0"}]
    extra = ({"cni.dev/valid-attachments": attachments, "cni.dev/attachments": attachments} if key == "both"
             else {key: attachments})
    run = run_plugin("GC", config("1.1.0", log, **extra))
    assert (run.rc, run.stdout) == (0, b"")
    [event] = read_events(log)
    assert event["cni"]["valid_attachments"] == attachments
    assert not any(k.startswith("cni.dev/") for k in event["cni"]["config"])


def test_status_is_recorded_only_when_configured(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    assert run_plugin("STATUS", config("1.1.0", log)).rc == 0
    assert read_events(log) == []
    assert run_plugin("STATUS", config("1.1.0", log, recordStatus=True)).rc == 0
    [event] = read_events(log)
    assert event["event"]["action"] == "cni-status"


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "missing"), [
    ("ADD", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
    ("CHECK", ["CNI_NETNS"]),
    ("ADD", ["CNI_IFNAME"]),
])
def test_missing_variables_are_named(command: str, missing: list[str]) -> None:
    env = cni_env(command)
    for name in missing:
        env.pop(name)
    doc = assert_error(run_plugin(command, config("1.0.0"), env=env), 4, "1.0.0")
    for name in missing:
        assert name in doc["msg"]


def test_unknown_command_is_code_4() -> None:
    doc = assert_error(run_plugin("FROB", config("1.0.0")), 4)
    assert "FROB" in doc["msg"]


@pytest.mark.parametrize("stdin", [b"{not json", b"\xff\xfe{}", b"[1,2]", b"", b"[" * 100000,
                                   b'{"cniVersion":"1.0.0","name":"n","type":"logger","mtu":NaN}'])
def test_undecodable_config_is_code_6(stdin: bytes) -> None:
    assert_error(run_plugin("ADD", stdin=stdin), 6)


def test_missing_network_name_is_code_7() -> None:
    doc = assert_error(run_plugin("ADD", {"cniVersion": "1.0.0", "type": "logger"}), 7, "1.0.0")
    assert "name" in doc["msg"]


def test_unsupported_config_version_is_code_1() -> None:
    doc = assert_error(run_plugin("ADD", config("2.0.0")), 1)
    assert "2.0.0" in doc["details"]


@pytest.mark.parametrize(("variable", "value"), [("CNI_CONTAINERID", "-bad id"), ("CNI_IFNAME", "a/b"),
                                                 ("CNI_IFNAME", "waytoolonginterfacename")])
def test_invalid_attachment_identifiers_are_code_4(variable: str, value: str) -> None:
    assert_error(run_plugin("ADD", config("1.0.0"), env=cni_env("ADD", **{variable: value})), 4)


def test_no_cni_command_describes_the_plugin() -> None:
    run = run_plugin(None)
    assert (run.rc, run.stdout) == (0, b"")
    text = run.stderr.decode()
    assert "CNI protocol versions supported: " + ", ".join(SUPPORTED_VERSIONS) in text


# -- what real runtimes send ----------------------------------------------------------------------


CONVENTIONAL_RUNTIME_CONFIG = {
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                     {"hostPort": 8053, "containerPort": 53, "protocol": "udp", "hostIP": "10.0.0.1"}],
    "bandwidth": {"ingressRate": 1000000, "ingressBurst": 2000000, "egressRate": 1000000, "egressBurst": 2000000},
    "ipRanges": [[{"subnet": "10.22.0.0/16", "rangeStart": "10.22.0.10", "rangeEnd": "10.22.0.200",
                   "gateway": "10.22.0.1"}]],
    "dns": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": ["ndots:5"]},
}
RUNTIME_CONFIGS = {
    # containerd's go-cni: structs without JSON tags, so Go's field names (measured: test_containerd_cri.py).
    "containerd": {
        "portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""},
                         {"HostPort": 8053, "ContainerPort": 53, "Protocol": "udp", "HostIP": "10.0.0.1"}],
        "bandwidth": {"IngressRate": 1000000, "IngressBurst": 2000000, "EgressRate": 1000000,
                      "EgressBurst": 2000000},
        "ipRanges": [[{"Subnet": "10.22.0.0/16", "RangeStart": "10.22.0.10", "RangeEnd": "10.22.0.200",
                       "Gateway": "10.22.0.1"}]],
        "dns": {"Servers": ["10.96.0.10"], "Searches": ["svc.cluster.local"], "Options": ["ndots:5"]},
    },
    # Podman and CRI-O: the conventions' spelling.
    "podman": CONVENTIONAL_RUNTIME_CONFIG,
}


@pytest.mark.parametrize("runtime", sorted(RUNTIME_CONFIGS))
def test_capability_arguments_are_recorded_in_the_conventions_spelling(tmp_path: Path, runtime: str) -> None:
    """One Elasticsearch query on ``cni.config.runtimeConfig.portMappings.hostPort`` finds every runtime's events."""
    log = tmp_path / "cni.log"
    capabilities = dict.fromkeys(RUNTIME_CONFIGS[runtime], True)
    conf = config("1.0.0", log, capabilities=capabilities, runtimeConfig=RUNTIME_CONFIGS[runtime],
                  prevResult=bridge_result("1.0.0"))
    run = run_plugin("ADD", conf)
    assert run.rc == 0 and run.doc == bridge_result("1.0.0")
    [event] = read_events(log)
    assert event["cni"]["config"]["runtimeConfig"] == CONVENTIONAL_RUNTIME_CONFIG
    assert event["cni"]["config"]["capabilities"] == capabilities


def test_unknown_capability_fields_are_kept_as_sent(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    runtime_config = {"portMappings": [{"HostPort": 8080, "hostPort": 9090, "ContainerPort": 80, "Extra": 1}],
                      "dns": "not-an-object", "mac": "c2:11:22:33:44:55"}
    run = run_plugin("ADD", config("1.0.0", log, runtimeConfig=runtime_config, prevResult=bridge_result("1.0.0")))
    assert run.rc == 0
    [event] = read_events(log)
    # Both spellings sent: the conventional one is recorded under its name, the other as sent.
    assert event["cni"]["config"]["runtimeConfig"] == {
        "portMappings": [{"HostPort": 8080, "hostPort": 9090, "containerPort": 80, "Extra": 1}],
        "dns": "not-an-object", "mac": "c2:11:22:33:44:55"}


def test_cni_args_in_any_order_with_odd_pairs(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    args = "IgnoreUnknown=1;K8S_POD_UID=1234-abcd;A=b=c;FLAG;;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=prod"
    run = run_plugin("ADD", config("1.0.0", log, prevResult=bridge_result("1.0.0")),
                     env=cni_env("ADD", CNI_ARGS=args))
    assert run.rc == 0
    [event] = read_events(log)
    assert event["cni"]["args"] == {"IgnoreUnknown": "1", "K8S_POD_UID": "1234-abcd", "A": "b=c", "FLAG": "",
                                    "K8S_POD_NAME": "web-0", "K8S_POD_NAMESPACE": "prod"}
    assert event["orchestrator"] == {"type": "kubernetes", "namespace": "prod",
                                     "resource": {"type": "pod", "name": "web-0", "id": "1234-abcd",
                                                  "ip": ["10.250.77.2"]}}


def test_rkt_single_conf_with_the_logger_alone(tmp_path: Path) -> None:
    conf = {"cniVersion": "0.4.0", "name": "lab-test-net-1", "type": "logger", "logFile": str(tmp_path / "l.log")}
    add = run_plugin("ADD", conf)
    assert add.rc == 0 and add.doc == {"cniVersion": "0.4.0", "dns": {}}
    assert run_plugin("DEL", conf).rc == 0
    assert [e["cni"]["command"] for e in read_events(tmp_path / "l.log")] == ["ADD", "DEL"]


def test_stdout_is_one_document_and_events_are_one_line(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    run = run_plugin("ADD", config("1.0.0", log, note="line1\nline2\r\x00\x1b[31m"),
                     env=cni_env("ADD", CNI_ARGS="K8S_POD_NAME=a\nb"))
    assert run.rc == 0
    assert run.stdout.count(b"\n") == 1 and json.loads(run.stdout)
    raw = log.read_bytes()
    assert raw.count(b"\n") == 1
    assert read_events(log)[0]["cni"]["config"]["note"] == "line1\nline2\r\x00\x1b[31m"
