"""Unit tests for cni_logger.events.render: one ECS-shaped JSON line per invocation."""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

import pytest

from cni_logger import events, settings
from cni_logger.skel import CNIError, Outcome, Request
from tests.harness.plugin import CNITOOL_RESULT_100

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IjRhZjEyMyJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0"
       ".c2lnbmF0dXJlLWJ5dGVzLWhlcmU")
K8S_ARGS = ("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d4b9c-x2kq;"
            "K8S_POD_INFRA_CONTAINER_ID=5f1a8c0d2b7e;K8S_POD_UID=0d9a2c1e-7b5f-4e3a-9c8d-1f2e3a4b5c6d")
CNITOOL_PREV = copy.deepcopy(CNITOOL_RESULT_100)
# (category, type, action) as documented in events.py and the README.
CLASSIFICATION = {
    "ADD": (["network", "configuration"], ["start", "creation"], "cni-add"),
    "DEL": (["network", "configuration"], ["end", "deletion"], "cni-del"),
    "CHECK": (["network"], ["info"], "cni-check"),
    "STATUS": (["network"], ["info"], "cni-status"),
    "VERSION": (["configuration"], ["info"], "cni-version"),
    "GC": (["configuration"], ["deletion"], "cni-gc"),
}


def make_config(version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "k8s-pod-network", "type": "logger", **extra}


def make_request(command: str, config: dict[str, Any] | None = None, *, container_id: str = "ctr-0123",
                 netns: str = "/var/run/netns/cni-1c4b", ifname: str = "eth0", args: str = "",
                 path: str = "/opt/cni/bin:/usr/lib/cni", traceparent: str = "") -> Request:
    request = Request(command, container_id=container_id, netns=netns, ifname=ifname, args=args, path=path,
                      traceparent=traceparent)
    if config is not None:
        request.config = config
        request.stdin = json.dumps(config).encode()
        request.cni_version = str(config.get("cniVersion", "1.1.0"))
    return request


def default_outcome(command: str, request: Request) -> Outcome:
    if command == "ADD":
        return Outcome(result={"cniVersion": request.cni_version, "dns": {}})
    if command == "VERSION":
        return Outcome(result={"cniVersion": "0.4.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    return Outcome()


def strict_json(raw: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def render(request: Request, outcome: Outcome | None = None, warnings: list[str] | None = None
           ) -> tuple[bytes, dict[str, Any]]:
    if outcome is None:
        outcome = default_outcome(request.command, request)
    line = events.render(request, outcome, settings.load(request.config), list(warnings or []))
    assert isinstance(line, bytes)
    assert line.endswith(b"\n") and line.count(b"\n") == 1, line
    assert b"\r" not in line
    assert not any(b < 0x20 for b in line[:-1]), "raw control character in the line"
    doc = strict_json(line[:-1])
    assert isinstance(doc, dict)
    return line, doc


def dotted_keys(value: Any, where: str = "") -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "." in key:
                found.append(f"{where}/{key}")
            found += dotted_keys(item, f"{where}/{key}")
    elif isinstance(value, list):
        for item in value:
            found += dotted_keys(item, where)
    return found


def config_for(command: str) -> dict[str, Any] | None:
    if command == "VERSION":
        return None
    if command == "GC":
        return make_config(**{"cni.dev/valid-attachments": [{"containerID": "ctr-0123", "ifname": "eth0"}]})
    if command in ("ADD", "CHECK", "DEL"):
        return make_config(prevResult=CNITOOL_PREV)
    return make_config()


def request_for(command: str) -> Request:
    if command in ("VERSION", "GC", "STATUS"):
        return make_request(command, config_for(command), container_id="", netns="", ifname="", args="")
    return make_request(command, config_for(command), args=K8S_ARGS)


# -- shape of every event --------------------------------------------------------------------------


@pytest.mark.parametrize("command", list(CLASSIFICATION))
def test_event_is_one_nested_ecs_line(command: str) -> None:
    request = request_for(command)
    _, doc = render(request)
    assert next(iter(doc)) == "@timestamp"
    assert TIMESTAMP.match(doc["@timestamp"]), doc["@timestamp"]
    assert doc["ecs"] == {"version": "9.4.0"}
    assert doc["log"] == {"level": "info", "logger": "cni-logger"}
    assert isinstance(doc["message"], str) and command in doc["message"] and "succeeded" in doc["message"]
    category, type_, action = CLASSIFICATION[command]
    event = doc["event"]
    assert event["kind"] == "event"
    assert event["category"] == category and event["type"] == type_ and event["action"] == action
    assert event["outcome"] == "success"
    assert isinstance(event["duration"], int) and event["duration"] >= 0
    assert UUID4.match(event["id"]), event["id"]
    assert event["module"] == "cni" and event["dataset"] == "cni.audit"
    assert "code" not in event and "error" not in doc
    assert doc["host"]["name"] == doc["host"]["hostname"] == os.uname().nodename
    assert doc["process"] == {"pid": os.getpid(), "parent": {"pid": os.getppid()}}
    cni = doc["cni"]
    assert cni["command"] == command
    assert cni["path"] == ["/opt/cni/bin", "/usr/lib/cni"]
    assert isinstance(cni["args"], dict)
    assert dotted_keys(doc) == []


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_attachment_commands_identify_container_network_and_pod(command: str) -> None:
    _, doc = render(request_for(command))
    assert doc["container"] == {"id": "ctr-0123"}
    assert doc["network"] == {"name": "k8s-pod-network"}
    assert doc["related"] == {"ip": ["10.250.77.2"]}
    assert doc["orchestrator"] == {
        "type": "kubernetes", "namespace": "shop",
        "resource": {"type": "pod", "name": "web-7d4b9c-x2kq", "id": "0d9a2c1e-7b5f-4e3a-9c8d-1f2e3a4b5c6d",
                     "ip": ["10.250.77.2"]},
    }
    cni = doc["cni"]
    assert cni["container_id"] == "ctr-0123" and cni["netns"] == "/var/run/netns/cni-1c4b"
    assert cni["ifname"] == "eth0" and cni["version"] == "1.1.0" and cni["plugin_type"] == "logger"
    assert cni["args"] == {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "shop",
                           "K8S_POD_NAME": "web-7d4b9c-x2kq", "K8S_POD_INFRA_CONTAINER_ID": "5f1a8c0d2b7e",
                           "K8S_POD_UID": "0d9a2c1e-7b5f-4e3a-9c8d-1f2e3a4b5c6d"}
    assert cni["config"] == {"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "logger"}
    assert cni["prev_result"] == {"cni_version": "1.0.0", "interfaces": CNITOOL_PREV["interfaces"],
                                  "ips": CNITOOL_PREV["ips"], "dns": {}}


def test_version_event_has_no_container_and_reports_the_answered_version() -> None:
    _, doc = render(request_for("VERSION"))
    assert "container" not in doc and "network" not in doc and "orchestrator" not in doc
    assert doc["cni"]["version"] == "0.4.0"
    assert "config" not in doc["cni"]


def test_gc_event_lists_valid_attachments_outside_the_config() -> None:
    _, doc = render(request_for("GC"))
    assert doc["cni"]["valid_attachments"] == [{"containerID": "ctr-0123", "ifname": "eth0"}]
    assert "cni.dev/valid-attachments" not in doc["cni"]["config"]
    assert doc["network"] == {"name": "k8s-pod-network"}


def test_timestamp_is_the_invocation_start_in_utc_with_microseconds() -> None:
    request = request_for("ADD")
    request.started_ns = 1_700_000_000_123_456_789
    _, doc = render(request)
    assert doc["@timestamp"] == "2023-11-14T22:13:20.123456Z"


def test_duration_counts_from_the_invocation_start() -> None:
    request = request_for("ADD")
    request.started_monotonic_ns -= 5_000_000_000
    _, doc = render(request)
    assert doc["event"]["duration"] >= 5_000_000_000


def test_every_event_gets_its_own_id() -> None:
    ids = {render(request_for("ADD"))[1]["event"]["id"] for _ in range(20)}
    assert len(ids) == 20


# -- failures, warnings, DEL ------------------------------------------------------------------------


def test_failure_has_error_fields_and_event_code() -> None:
    error = CNIError(7, "invalid logger setting", "invalid value for 'logFile': 'x'")
    _, doc = render(request_for("ADD"), Outcome(error=error))
    assert doc["log"]["level"] == "error"
    assert doc["event"]["outcome"] == "failure"
    assert doc["event"]["code"] == "7"
    assert doc["error"] == {"code": "7", "type": "CNIError",
                            "message": "invalid logger setting; invalid value for 'logFile': 'x'"}
    assert "failed" in doc["message"] and "invalid logger setting" in doc["message"]


def test_failure_without_config_is_still_recorded() -> None:
    request = make_request("ADD", None, args="K8S_POD_NAME=p")
    _, doc = render(request, Outcome(error=CNIError(6, "error decoding network config", "invalid UTF-8")))
    assert doc["event"]["code"] == "6" and doc["error"]["code"] == "6"
    assert "network" not in doc and "config" not in doc["cni"]
    assert doc["container"] == {"id": "ctr-0123"}


def test_del_that_succeeded_despite_an_error_records_it_as_a_warning() -> None:
    problem = CNIError(4, "invalid interface name in CNI_IFNAME", "'eth 0': contains whitespace")
    _, doc = render(request_for("DEL"), Outcome(suppressed=problem))
    assert doc["event"]["outcome"] == "success" and "code" not in doc["event"]
    assert doc["log"]["level"] == "warning"
    assert doc["error"]["code"] == "4"
    assert "succeeded despite" in doc["message"]


def test_warnings_are_listed_and_raise_the_level() -> None:
    warnings = ["invalid value for 'logToStderr': 'yes'", "audit log file not written: /x: is a directory"]
    _, doc = render(request_for("ADD"), warnings=warnings)
    assert doc["log"]["level"] == "warning"
    assert doc["cni"]["warnings"] == warnings
    assert doc["event"]["outcome"] == "success"


# -- cni.* details ---------------------------------------------------------------------------------


def test_cni_args_with_odd_pairs_become_a_mapping() -> None:
    request = make_request("ADD", make_config(), args="A=b=c;FLAG;;K8S_POD_NAME=p;K=1;K=2;=orphan")
    _, doc = render(request)
    assert doc["cni"]["args"] == {"A": "b=c", "FLAG": "", "K8S_POD_NAME": "p", "K": "2"}


def test_cni_path_becomes_a_list_without_empty_entries() -> None:
    _, doc = render(make_request("ADD", make_config(), path=":/opt/cni/bin::/usr/libexec/cni:"))
    assert doc["cni"]["path"] == ["/opt/cni/bin", "/usr/libexec/cni"]
    _, doc = render(make_request("ADD", make_config(), path=""))
    assert doc["cni"]["path"] == []


def test_config_is_recorded_without_prev_result() -> None:
    config = make_config(prevResult=CNITOOL_PREV, logFile="/var/log/cni/cni.log",
                         capabilities={"portMappings": True},
                         runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                          "protocol": "tcp"}]})
    _, doc = render(make_request("ADD", config))
    expected = {k: v for k, v in config.items() if k != "prevResult"}
    assert doc["cni"]["config"] == expected


def test_older_prev_result_is_summarised_in_the_1x_shape() -> None:
    prev = {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1"},
            "ip6": {"ip": "fd00::5/64"}, "dns": {"nameservers": ["10.96.0.10"]}}
    _, doc = render(make_request("ADD", make_config("0.2.0", prevResult=prev)))
    assert doc["cni"]["prev_result"] == {
        "cni_version": "0.2.0",
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}, {"address": "fd00::5/64"}],
        "dns": {"nameservers": ["10.96.0.10"]}}
    assert doc["related"] == {"ip": ["10.1.0.5", "fd00::5"]}


def test_related_ip_has_no_prefix_and_no_duplicates() -> None:
    prev = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"},
                                           {"version": "6", "address": "2001:db8::2/64"},
                                           {"version": "4", "address": "10.0.0.2/24"}]}
    _, doc = render(make_request("ADD", make_config("0.4.0", prevResult=prev)))
    assert doc["related"] == {"ip": ["10.0.0.2", "2001:db8::2"]}


def test_unconvertible_prev_result_is_recorded_as_given() -> None:
    prev = {"cniVersion": "9.9.9", "ips": [{"address": "10.0.0.2/24"}]}
    _, doc = render(make_request("CHECK", make_config(prevResult=prev)))
    assert doc["cni"]["prev_result"] == {"cni_version": "9.9.9", "ips": [{"address": "10.0.0.2/24"}]}


def test_podman_style_args_give_no_orchestrator_type() -> None:
    request = make_request("ADD", make_config(prevResult=CNITOOL_PREV),
                           args="IgnoreUnknown=1;K8S_POD_NAME=festive_lamport")
    _, doc = render(request)
    assert "type" not in doc["orchestrator"]
    assert doc["orchestrator"] == {"resource": {"name": "festive_lamport", "ip": ["10.250.77.2"]}}


def test_no_k8s_args_no_orchestrator() -> None:
    _, doc = render(make_request("ADD", make_config(prevResult=CNITOOL_PREV), args="IgnoreUnknown=1"))
    assert "orchestrator" not in doc


@pytest.mark.parametrize("args", ["K8S_POD_NAMESPACE=kube-system", "K8S_POD_UID=0d9a"])
def test_namespace_or_uid_alone_means_kubernetes(args: str) -> None:
    _, doc = render(make_request("ADD", make_config(), args=args))
    assert doc["orchestrator"]["type"] == "kubernetes"
    assert doc["orchestrator"]["resource"]["type"] == "pod"


@pytest.mark.parametrize(("traceparent", "expected"), [
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),
    ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),
    ("not a traceparent", None),
    ("", None),
])
def test_traceparent_gives_trace_id(traceparent: str, expected: str | None) -> None:
    _, doc = render(make_request("ADD", make_config(), traceparent=traceparent))
    if expected is None:
        assert "trace" not in doc
    else:
        assert doc["trace"] == {"id": expected}


# -- redaction -------------------------------------------------------------------------------------


def test_secrets_in_config_and_args_are_redacted() -> None:
    config = make_config(
        kubernetes={"kubeconfig": "/etc/cni/net.d/calico-kubeconfig", "k8s_auth_token": JWT},
        etcd_endpoints="https://root:hunter2@10.0.0.1:2379",
        note=f"Bearer {JWT}",
        runtimeConfig={"io.kubernetes.cri.pod-annotations": {"team": "shop", "db-password-hint": "hunter2"}},
        redactKeys=["pin"], pin="1234",
        prevResult=CNITOOL_PREV,
    )
    line, doc = render(make_request("ADD", config, args="K8S_POD_NAME=p;AUTH_TOKEN=abc123def"))
    for secret in (b"eyJhbGci", b"hunter2", b"calico-kubeconfig", b"1234", b"abc123def"):
        assert secret not in line, secret
    conf = doc["cni"]["config"]
    assert conf["kubernetes"] == {"kubeconfig": "[REDACTED]", "k8s_auth_token": "[REDACTED]"}
    assert conf["etcd_endpoints"] == "https://[REDACTED]@10.0.0.1:2379"
    assert conf["note"] == "Bearer [REDACTED]"
    assert conf["runtimeConfig"]["io.kubernetes.cri.pod-annotations"] == {"team": "[REDACTED]",
                                                                         "db-password-hint": "[REDACTED]"}
    assert conf["pin"] == "[REDACTED]"
    assert doc["cni"]["args"]["AUTH_TOKEN"] == "[REDACTED]"
    assert doc["cni"]["args"]["K8S_POD_NAME"] == "p"
    assert doc["network"] == {"name": "k8s-pod-network"}


def test_secret_shaped_values_are_masked_outside_cni_too() -> None:
    request = make_request("ADD", make_config(), netns=f"/run/netns/{JWT}")
    line, doc = render(request, Outcome(error=CNIError(7, "bad", f"see https://u:pw@host {JWT}")))
    assert b"eyJhbGci" not in line and b"u:pw@" not in line
    assert doc["error"]["message"] == "bad; see https://[REDACTED]@host [REDACTED]"


# -- size ------------------------------------------------------------------------------------------


def test_huge_config_is_dropped_to_fit_and_says_so() -> None:
    config = make_config(prevResult=CNITOOL_PREV, blob={f"k{i}": "v" * 2000 for i in range(300)})
    line, doc = render(make_request("ADD", config, args=K8S_ARGS))
    assert len(line) <= events.MAX_EVENT_BYTES
    assert doc["cni"]["truncated"] == ["cni.config"]
    assert "config" not in doc["cni"]
    assert doc["container"] == {"id": "ctr-0123"} and doc["network"] == {"name": "k8s-pod-network"}
    assert doc["cni"]["prev_result"]["ips"] == CNITOOL_PREV["ips"]
    assert UUID4.match(doc["event"]["id"])


def test_shrinking_drops_the_bulkiest_detail_in_the_documented_order() -> None:
    prev = {"cniVersion": "1.0.0",
            "ips": [{"address": "10.0.0.2/24"}],
            "routes": [{"dst": f"10.{i // 256}.{i % 256}.0/24", "gw": "10.0.0.1"} for i in range(250)],
            "dns": {"search": [f"ns{i}.svc.cluster.example.com" for i in range(250)]}}
    args = ";".join(f"ARG{i}={'a' * 200}" for i in range(100))
    config = make_config(prevResult=prev, blob="b" * 2000)
    line, doc = render(make_request("ADD", config, args=f"K8S_POD_NAMESPACE=ns;{args}"))
    assert len(line) <= events.MAX_EVENT_BYTES
    order = ["cni.config", "cni.prev_result.routes", "cni.prev_result.dns", "cni.args"]
    truncated = doc["cni"]["truncated"]
    assert truncated == order[: len(truncated)] and len(truncated) >= 3, truncated
    assert doc["cni"]["prev_result"]["ips"] == [{"address": "10.0.0.2/24"}]
    assert doc["related"] == {"ip": ["10.0.0.2"]}


def test_small_event_is_not_truncated() -> None:
    _, doc = render(request_for("ADD"))
    assert "truncated" not in doc["cni"]


def test_long_error_message_keeps_the_line_within_the_limit() -> None:
    details = "; ".join(f"problem {i}: " + "z" * 1500 for i in range(60))
    line, doc = render(request_for("ADD"), Outcome(error=CNIError(7, "invalid", details)))
    assert len(line) <= events.MAX_EVENT_BYTES
    assert doc["error"]["message"].startswith("invalid; problem 0: ")


def test_prev_result_with_many_addresses_still_fits() -> None:
    prev = {"cniVersion": "1.0.0",
            "ips": [{"address": f"2001:db8:4001:1234:5678:9abc:{i // 65536:x}:{i % 65536:x}/64"}
                    for i in range(400)]}
    line, doc = render(make_request("ADD", make_config(prevResult=prev), args=K8S_ARGS))
    assert len(line) <= events.MAX_EVENT_BYTES
    assert doc["container"] == {"id": "ctr-0123"}


# -- hostile text ----------------------------------------------------------------------------------

NASTY = "a\nb\rc\td\x00e\x1bf\x7fg\u2028h\u2029i\x85j\"k\\l"


def test_newlines_and_control_characters_stay_escaped_in_every_field() -> None:
    config = make_config(prevResult={"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}],
                                     "dns": {"domain": NASTY}},
                         **{NASTY: NASTY, "nested": [{"k": NASTY}]})
    config["name"] = f"net{NASTY}"
    request = make_request("ADD", config, container_id=f"c{NASTY}", netns=f"/run/netns/{NASTY}",
                           ifname=f"e{NASTY}", args=f"K8S_POD_NAME={NASTY};K8S_POD_NAMESPACE=n{NASTY}",
                           path=f"/opt/{NASTY}:/usr/lib/cni", traceparent=NASTY)
    warnings = [f"warning {NASTY}"]
    _, doc = render(request, Outcome(error=CNIError(7, f"msg {NASTY}", f"details {NASTY}")), warnings)
    assert doc["container"]["id"] == f"c{NASTY}"
    assert doc["cni"]["netns"] == f"/run/netns/{NASTY}"
    assert doc["cni"]["ifname"] == f"e{NASTY}"
    assert doc["cni"]["path"] == [f"/opt/{NASTY}", "/usr/lib/cni"]
    assert doc["cni"]["args"]["K8S_POD_NAME"] == NASTY
    assert doc["orchestrator"]["namespace"] == f"n{NASTY}"
    assert doc["cni"]["config"][NASTY] == NASTY and doc["cni"]["config"]["nested"] == [{"k": NASTY}]
    assert doc["network"]["name"] == f"net{NASTY}"
    assert doc["cni"]["prev_result"]["dns"] == {"domain": NASTY}
    assert doc["error"]["message"] == f"msg {NASTY}; details {NASTY}"
    assert doc["cni"]["warnings"] == warnings
    assert NASTY in doc["message"]


def test_undecodable_bytes_from_the_environment_make_an_encodable_line() -> None:
    raw_id = b"ctr\xff\xfe".decode("utf-8", "surrogateescape")  # what os.environ holds for such bytes
    request = make_request("DEL", make_config(), container_id=raw_id, args="K8S_POD_NAME=\udcff")
    _, doc = render(request, Outcome(suppressed=CNIError(4, "invalid characters in CNI_CONTAINERID", raw_id)))
    assert doc["container"]["id"].startswith("ctr\ufffd")
    assert doc["cni"]["args"]["K8S_POD_NAME"].startswith("\ufffd")



# -- bracket mode: the role of the entry ------------------------------------------------------------


@pytest.mark.parametrize("role", ["attempt", "outcome"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_role_is_recorded_right_after_ifname(role: str, command: str) -> None:
    config = make_config(role=role)
    if command != "ADD":
        config["prevResult"] = copy.deepcopy(CNITOOL_PREV)
    line, doc = render(make_request(command, config))
    assert doc["cni"]["role"] == role
    assert list(doc["cni"])[:5] == ["command", "container_id", "netns", "ifname", "role"]
    # the audit finds it in the raw line, behind the head it slices (cni_logger.audit.attempts)
    assert b'"ifname":"eth0","role":"' + role.encode() + b'"' in line


def test_no_role_no_field() -> None:
    _, doc = render(make_request("ADD", make_config()))
    assert "role" not in doc["cni"]


def test_attempt_add_message_says_attempted() -> None:
    _, doc = render(make_request("ADD", make_config(role="attempt")))
    assert doc["message"] == ("CNI ADD eth0 of container ctr-0123 on network k8s-pod-network (attempt entry) "
                              "attempted")
    assert doc["log"]["level"] == "info" and doc["event"]["outcome"] == "success"


def test_attempt_entry_failure_and_other_commands_name_the_entry() -> None:
    request = make_request("ADD", make_config(role="attempt"))
    _, doc = render(request, Outcome(error=CNIError(11, "audit log unavailable", "disk full")))
    assert doc["message"].startswith("CNI ADD eth0 of container ctr-0123 on network k8s-pod-network "
                                     "(attempt entry) failed: ")
    _, doc = render(make_request("DEL", make_config(role="attempt")))
    assert doc["message"].endswith("(attempt entry) succeeded")


def test_invalid_role_is_a_warning_not_a_field() -> None:
    config = make_config(role="first")
    conf = settings.load(config)
    line = events.render(make_request("ADD", config), Outcome(result={"cniVersion": "1.1.0", "dns": {}}), conf,
                         list(conf.problems))
    doc = json.loads(line)
    assert "role" not in doc["cni"] and "'role'" in doc["cni"]["warnings"][0]
