"""Property-based tests: whatever the environment and stdin, stdout is exactly one JSON document
(or nothing, where the spec says so) and the exit status agrees with it.

Two layers: many examples through ``skel.run`` in this process (fast), and fewer through the
installed executable as a real process (catches anything printed outside the protocol layer).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cni_logger import skel
from cni_logger.plugin import LoggerPlugin
from tests.harness.plugin import SUPPORTED_VERSIONS, parse_single_json, run_plugin

ERROR_KEYS = {"cniVersion", "code", "msg", "details"}
COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"]

env_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=80)
versions = st.sampled_from([*SUPPORTED_VERSIONS, "", "0.0.1", "2.0.0", "1.0", "x"])
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
ips = st.lists(st.fixed_dictionaries({"address": st.sampled_from(["10.0.0.2/24", "fd00::2/64", "bogus", ""]),
                                      "version": st.sampled_from(["4", "6"])}), max_size=3)
prev_results = st.none() | json_values | st.fixed_dictionaries(
    {"cniVersion": versions, "ips": ips}, optional={"interfaces": json_values, "dns": json_values})
# Keys that would make the plugin write files are left out: a property test must not create files
# at paths hypothesis invents.
config_keys = st.text(max_size=12).filter(lambda k: k not in ("logFile",))


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    conf: dict[str, Any] = draw(st.dictionaries(config_keys, json_values, max_size=4))
    if draw(st.booleans()):
        conf["cniVersion"] = draw(versions)
    if draw(st.booleans()):
        conf["name"] = draw(st.sampled_from(["net", "", "bad name", "n-1.2_3"]))
    if draw(st.booleans()):
        conf["type"] = "logger"
    prev = draw(prev_results)
    if prev is not None:
        conf["prevResult"] = prev
    for key in ("logToStderr", "failOnLogError", "logOptions", "recordStatus", "redactKeys"):
        if draw(st.integers(0, 5)) == 0:
            conf[key] = draw(json_values)
    return conf


stdins = configs().map(lambda c: json.dumps(c).encode()) | st.binary(max_size=200) | st.just(b"")


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin"}
    command = draw(st.sampled_from(COMMANDS) | env_text)
    if command:
        env["CNI_COMMAND"] = command
    for name, default in (("CNI_CONTAINERID", "ctr1"), ("CNI_NETNS", "/run/netns/x"), ("CNI_IFNAME", "eth0"),
                          ("CNI_PATH", "/opt/cni/bin"), ("CNI_ARGS", "K8S_POD_NAME=p")):
        choice = draw(st.integers(0, 3))
        if choice == 1:
            env[name] = default
        elif choice == 2:
            env[name] = draw(env_text)
    return env


def check_answer(rc: int, stdout: bytes, command: str | None) -> None:
    if rc != 0:
        doc = parse_single_json(stdout)
        assert isinstance(doc, dict) and set(doc) <= ERROR_KEYS, doc
        assert isinstance(doc["code"], int) and doc["code"] >= 1
        assert isinstance(doc["msg"], str) and doc["msg"]
        assert doc["cniVersion"] in SUPPORTED_VERSIONS
        assert command != "DEL", "DEL must always succeed"
        return
    if command in ("ADD", "VERSION"):
        doc = parse_single_json(stdout)
        assert isinstance(doc, dict) and isinstance(doc.get("cniVersion"), str)
        assert not ({"code", "msg"} <= set(doc) and set(doc) <= ERROR_KEYS), "error object with exit 0"
    else:
        assert stdout == b"", "this command prints nothing on success"


def run_in_process(env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout:
        fin.write(stdin)
        fin.seek(0)
        rc = skel.run(LoggerPlugin(env), env, fin.fileno(), fout.fileno())
        fout.seek(0)
        return rc, fout.read()


@settings(max_examples=int(os.environ.get("CNI_LOGGER_FUZZ_EXAMPLES", "400")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(env=environments(), stdin=stdins)
def test_in_process_answer_is_one_json_document_matching_the_exit_status(env: dict[str, str],
                                                                         stdin: bytes) -> None:
    rc, stdout = run_in_process(env, stdin)
    check_answer(rc, stdout, env.get("CNI_COMMAND"))


@settings(max_examples=int(os.environ.get("CNI_LOGGER_FUZZ_PROCESS_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(env=environments(), stdin=stdins)
def test_real_process_answer_is_one_json_document_matching_the_exit_status(env: dict[str, str],
                                                                           stdin: bytes) -> None:
    run = run_plugin(env.get("CNI_COMMAND"), stdin=stdin, env=env)
    if "CNI_COMMAND" not in env:
        assert (run.rc, run.stdout) == (0, b"")
    else:
        check_answer(run.rc, run.stdout, env["CNI_COMMAND"])
    assert b"Traceback" not in run.stderr
