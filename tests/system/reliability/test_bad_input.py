"""Bad input through the real process: a spec error object or a correct answer, never a traceback or a
hang; the event stays one line (no log injection); nothing is written outside the configured logFile.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from cni_logger import skel
from tests.harness.plugin import cni_env, plugin_executable
from tests.harness.reliability import (
    MAX_EVENT_BYTES,
    PREV_RESULT,
    Timed,
    audit_log,
    json_lines,
    lines_of,
    net_config,
    run_in_process,
    run_proc,
)

ADD_ANSWER = {**PREV_RESULT, "cniVersion": "1.0.0"}
ERROR_KEYS = {"cniVersion", "code", "msg", "details"}
CODES = {1, 4, 5, 6, 7, 11, 50}


def assert_sane(run: Timed, *, code: int | None = None) -> Any:
    """One JSON document (or nothing) on stdout, agreeing with the exit status; no traceback; quick."""
    assert run.elapsed < 10
    assert b"Traceback" not in run.stderr and b"internal error" not in run.stderr, run.stderr[-2000:]
    for line in lines_of(run.stderr):  # every stderr line is one JSON document (event or diagnostic)
        json.loads(line)
    if run.rc == 0:
        assert code is None, f"expected code {code}, got success"
        return run.doc if run.stdout.strip() else None
    assert run.rc == 1, run
    doc = run.doc
    assert set(doc) <= ERROR_KEYS and doc["code"] in CODES, doc
    if code is not None:
        assert doc["code"] == code, doc
    return doc


def file_events(log: Path, count: int) -> list[dict[str, Any]]:
    """The file holds exactly ``count`` events, each on one line of its own."""
    data = log.read_bytes() if log.exists() else b""
    assert data.count(b"\n") == count and (not data or data.endswith(b"\n")), data[-300:]
    data.decode("utf-8")  # strictly valid UTF-8, whatever came in
    events = json_lines(data)
    assert all(len(line) + 1 <= MAX_EVENT_BYTES for line in lines_of(data))
    return events


# -- size ------------------------------------------------------------------------------------------


def padded(log: Path, size: int) -> bytes:
    conf = net_config(log, pad="")
    base = len(json.dumps(conf).encode())
    conf["pad"] = "x" * (size - base)
    data = json.dumps(conf).encode()
    assert len(data) == size
    return data


def test_stdin_exactly_at_the_limit(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    run = run_proc("ADD", stdin=padded(log, skel.MAX_STDIN_BYTES))
    assert assert_sane(run) == ADD_ANSWER
    [event] = file_events(log, 1)
    assert event["cni"]["config"]["pad"].endswith("characters]")  # capped, not 16 MiB in the log


def test_stdin_just_above_the_limit(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    run = run_proc("ADD", stdin=padded(log, skel.MAX_STDIN_BYTES + 1))
    doc = assert_sane(run, code=skel.ERR_INVALID_NETWORK_CONFIG)
    assert doc["msg"] == "network configuration too large"
    assert not log.exists()  # the config was never read, so neither was its logFile
    assert len(run.stderr_events) == 1


def test_endless_stdin_is_cut_off() -> None:
    with open("/dev/zero", "rb") as zero:
        run = run_proc("ADD", stdin_file=zero)
    assert assert_sane(run, code=skel.ERR_INVALID_NETWORK_CONFIG)["msg"] == "network configuration too large"


# -- structure -------------------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(("where", "depth", "code"), [
    ("config", 100_000, skel.ERR_DECODING_FAILURE),
    ("config", 5_000, skel.ERR_DECODING_FAILURE),
    ("config", 900, None),
    ("prevResult", 900, None),
    ("config", 60, None),
])
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_deeply_nested_json(tmp_path: Path, where: str, depth: int, code: int | None, command: str) -> None:
    log = tmp_path / "audit.log"
    base = json.dumps(net_config(log))[:-1]
    if where == "config":
        text = f'{base},"deep":{nested(depth)}}}'
    else:
        text = base.replace('"dns": {}', f'"dns": {{}}, "deep": {nested(depth)}') + "}"
    run = run_proc(command, stdin=text.encode(), env=cni_env(command))
    doc = assert_sane(run, code=None if command == "DEL" else code)
    if command == "ADD" and code is None:
        assert doc["ips"] == PREV_RESULT["ips"]
        if where == "prevResult":
            assert json.dumps(doc["deep"]) == json.dumps(json.loads(nested(depth)))  # passed through untouched
    [event] = file_events(log, 1) if code is None else [None]
    if event is not None and where == "config":
        assert "nested too deep" in json.dumps(event["cni"]["config"]["deep"])


@pytest.mark.parametrize("data", [
    b'{"cniVersion":"1.0.0","name":"n\xff","type":"logger"}',   # invalid byte
    b'{"cniVersion":"1.0.0","name":"n\xc0\xaf","type":"logger"}',  # overlong '/'
    b'{"cniVersion":"1.0.0","name":"n\xed\xa0\x80","type":"logger"}',  # UTF-8-encoded surrogate
    b'\xfe\xff\x00{',                                               # UTF-16 BOM
    b'{"cniVersion":"1.0.0","name":"n","type":"log\x00ger"}',       # raw NUL inside a string
    b'{"cniVersion":"1.0.0","name":"n","type":"logger"}\x00',       # NUL after the document
    b'\x00' * 1024,
    b'{"cniVersion":"1.0.0","name":"n","type":"logger"',            # truncated
    b'{"cniVersion":"1.0.0","name":"n"}{"cniVersion":"1.0.0"}',     # two documents
    b'[]', b'"x"', b'null', b'', b' \n\t ',
])
@pytest.mark.parametrize("command", ["ADD", "DEL", "VERSION"])
def test_undecodable_stdin(data: bytes, command: str) -> None:
    run = run_proc(command, stdin=data, env=cni_env(command))
    expected = None if command in ("DEL", "VERSION") else skel.ERR_DECODING_FAILURE
    doc = assert_sane(run, code=expected)
    if command == "VERSION":
        assert skel.LATEST_VERSION in doc["supportedVersions"]


# Numbers Go's decoder refuses: libcni and Go plugins read every number as a float64, and a value beyond its
# range is "json: cannot unmarshal number 1e400 into Go value of type float64" (a decoding error, code 6).
OUT_OF_RANGE = ["1e400", "-1e400", "1.7976931348623159e308", "1" + "0" * 400]


def number_config(log: Path, number: str, where: str) -> bytes:
    """The logger config with ``number`` spliced in raw (json.dumps could not write it) at ``where``."""
    text = json.dumps(net_config(log))
    if where == "prevResult":
        return text.replace('"dns": {}', f'"dns": {{}}, "mtu": {number}').encode()
    return (text[:-1] + f', "mtu": {number}}}').encode()


@pytest.mark.parametrize("where", ["config", "prevResult"])
@pytest.mark.parametrize("number", OUT_OF_RANGE)
@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_number_out_of_float64_range_is_a_decoding_error(tmp_path: Path, command: str, number: str,
                                                         where: str) -> None:
    log = tmp_path / "audit.log"
    run = run_proc(command, stdin=number_config(log, number, where), env=cni_env(command))
    doc = assert_sane(run, code=skel.ERR_DECODING_FAILURE)
    assert number[:40] in doc["details"], doc
    assert run.stdout.count(b"\n") == 1  # one document, nothing else
    # The config could not be read, so neither could its logFile: the event goes to stderr only.
    file_events(log, 0)
    [event] = run.stderr_events
    assert (event["event"]["outcome"], event["error"]["code"]) == ("failure", "6"), event


@pytest.mark.parametrize("where", ["config", "prevResult"])
@pytest.mark.parametrize("number", OUT_OF_RANGE[:2])
def test_number_out_of_float64_range_del_succeeds_and_says_why(number: str, where: str, tmp_path: Path) -> None:
    run = run_proc("DEL", stdin=number_config(tmp_path / "audit.log", number, where), env=cni_env("DEL"))
    assert assert_sane(run) is None and run.stdout == b""
    [event] = run.stderr_events
    assert event["event"]["outcome"] == "success"
    assert event["error"]["code"] == "6" and number in event["error"]["message"], event


@pytest.mark.parametrize("number", ["1.7976931348623157e308", "-1.7976931348623157e308", "1e-400", "4.9e-324",
                                    "1" + "0" * 300])
def test_numbers_at_the_edge_of_float64_range_pass_through(tmp_path: Path, number: str) -> None:
    log = tmp_path / "audit.log"
    run = run_proc("ADD", stdin=number_config(log, number, "prevResult"))
    doc = assert_sane(run)
    assert doc["mtu"] == json.loads(number)
    [event] = file_events(log, 1)
    assert event["event"]["outcome"] == "success"


def test_lone_surrogates_and_nul_escapes_in_json(tmp_path: Path) -> None:
    """Valid JSON that decodes to strings no encoder likes: passed through escaped, logged as valid UTF-8."""
    log = tmp_path / "audit.log"
    text = json.dumps(net_config(log))[:-1] + r', "\ud800key": "v\udfff\u0000\u001b[31m"}'
    text = text.replace('"dns": {}', r'"dns": {"domain": "x\ud800\u0000"}')
    run = run_proc("ADD", stdin=text.encode())
    doc = assert_sane(run)
    assert doc["dns"] == {"domain": "x\ud800\x00"}  # the answer keeps them (ASCII-escaped JSON)
    [event] = file_events(log, 1)
    assert "\ufffd" in json.dumps(event["cni"]["config"], ensure_ascii=False)


@pytest.mark.parametrize("variable", ["CNI_NETNS", "CNI_ARGS", "CNI_PATH", "TRACEPARENT", "CNI_CONTAINERID",
                                      "CNI_IFNAME", "CNI_COMMAND"])
def test_invalid_utf8_in_the_environment(tmp_path: Path, variable: str) -> None:
    log = tmp_path / "audit.log"
    env: dict[str, str | bytes] = dict(cni_env("ADD", CNI_ARGS="K8S_POD_NAME=p"))
    env[variable] = {"CNI_ARGS": b"K8S_POD_NAME=\xff\xfe;\xc0=\xed\xa0\x80"}.get(variable, b"bad\xff\xfe\x80")
    run = run_proc("ADD", net_config(log), env=env)
    rejected = variable in ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_COMMAND")
    doc = assert_sane(run, code=skel.ERR_INVALID_ENVIRONMENT if rejected else None)
    if not rejected:
        assert doc == ADD_ANSWER
    # An unknown command is refused before stdin is read, so its event goes to stderr only.
    file_events(log, 0 if variable == "CNI_COMMAND" else 1)
    assert len(run.stderr_events) == 1


def test_nul_bytes_in_the_environment_in_process(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """execve cannot pass NUL bytes, so this runs ``skel.run`` in-process with them."""
    log = tmp_path / "audit.log"
    env = cni_env("ADD", CNI_NETNS="/run/netns/a\0b", CNI_ARGS="K8S_POD_NAME=a\0b;X\0=y", CNI_PATH="/opt\0/x",
                  TRACEPARENT="00-\0")
    rc, out = run_in_process(env, json.dumps(net_config(log)).encode())
    assert rc == 0 and json.loads(out) == ADD_ANSWER
    [event] = file_events(log, 1)
    assert event["cni"]["netns"] == "/run/netns/a\0b"
    err = capfd.readouterr().err
    assert "Traceback" not in err and len(lines_of(err.encode())) == 1

    with pytest.raises(ValueError, match="embedded null byte"):  # and why: the OS refuses them
        subprocess.run([plugin_executable()], env={**env}, input=b"{}", capture_output=True, check=False)


def test_nul_in_log_file_setting(tmp_path: Path) -> None:
    text = json.dumps(net_config(None)).replace('"type": "logger"',
                                                f'"type": "logger", "logFile": "{tmp_path}/a\\u0000b.log"')
    run = run_proc("ADD", stdin=text.encode())
    assert assert_sane(run) == ADD_ANSWER
    assert "logFile" in run.stderr.decode()
    assert list(tmp_path.iterdir()) == []


# -- huge environment ------------------------------------------------------------------------------


def test_huge_cni_args_real_process(tmp_path: Path) -> None:
    """The largest single variable execve accepts (MAX_ARG_STRLEN, 128 KiB), as many pairs and as one value."""
    log = tmp_path / "audit.log"
    many = ";".join(f"K{i:05d}=value-{i:05d}" for i in range(7000))[: 128 * 1024 - 64]
    one = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=" + "p" * (128 * 1024 - 64)
    for args in (many, one):
        run = run_proc("ADD", net_config(log), env=cni_env("ADD", CNI_ARGS=args))
        assert assert_sane(run) == ADD_ANSWER
    first, second = file_events(log, 2)
    assert len(first["cni"].get("args", {})) <= 257
    assert len(second["orchestrator"]["resource"]["name"]) < 4096


def test_one_mib_cni_args_cannot_be_exec_ed() -> None:
    with pytest.raises(OSError) as caught:
        subprocess.run([plugin_executable()], env=cni_env("ADD", CNI_ARGS="A=" + "x" * (1 << 20)), input=b"{}",
                       capture_output=True, check=False)
    assert caught.value.errno == 7  # E2BIG: no runtime can send this through execve


@pytest.mark.parametrize("shape", ["pairs", "one-value", "separators"])
def test_one_mib_cni_args_in_process(tmp_path: Path, capfd: pytest.CaptureFixture[str], shape: str) -> None:
    log = tmp_path / "audit.log"
    args = {"pairs": ";".join(f"K{i}=v{i}" for i in range(100_000)),
            "one-value": "K8S_POD_NAME=" + "n" * (1 << 20),
            "separators": ";" * (1 << 20)}[shape]
    rc, out = run_in_process(cni_env("ADD", CNI_ARGS=args), json.dumps(net_config(log)).encode())
    assert rc == 0 and json.loads(out) == ADD_ANSWER
    [event] = file_events(log, 1)
    assert len(capfd.readouterr().err.encode()) <= MAX_EVENT_BYTES + 1
    if shape == "pairs":
        assert "cni.args" in event["cni"].get("truncated", []) or len(event["cni"]["args"]) <= 257


# -- newlines and control characters everywhere (log injection) ------------------------------------

INJECTION = '\n{"event":{"action":"cni-add","outcome":"injected"},"injected":true}\n'
NASTY = f"v\r\n\x01\x07\x08\x0b\x0c\x1b[31m\x1c\x1d\x1e\x7f\x85\u2028\u2029\t{INJECTION}end"


def nasty_cases() -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    cases: list[tuple[str, dict[str, str], dict[str, Any]]] = []
    for variable in ("CNI_NETNS", "CNI_PATH", "TRACEPARENT", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_COMMAND"):
        cases.append((variable, {variable: NASTY}, {}))
    cases.append(("CNI_ARGS", {"CNI_ARGS": f"K8S_POD_NAME={NASTY};K8S_POD_NAMESPACE={NASTY};{NASTY}={NASTY}"}, {}))
    cases.append(("config values", {}, {"type": NASTY, NASTY: NASTY, "runtimeConfig": {"x": [NASTY]},
                                        "redactKeys": [NASTY]}))
    cases.append(("prevResult", {}, {"prevResult": {**PREV_RESULT, "dns": {"domain": NASTY, "search": [NASTY]},
                                                    "interfaces": [{"name": NASTY, "mac": NASTY}]}}))
    cases.append(("name", {}, {"name": NASTY}))
    cases.append(("cniVersion", {}, {"cniVersion": NASTY}))
    cases.append(("logOptions", {}, {"logOptions": {"maxSize": NASTY, "rotation": NASTY}}))
    return cases


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_no_log_injection(tmp_path: Path, command: str) -> None:
    log = tmp_path / "audit.log"
    recorded = 0
    for label, env_overrides, config_overrides in nasty_cases():
        env = cni_env(command, **env_overrides) if "CNI_COMMAND" not in env_overrides else \
            {**cni_env(command), **env_overrides}
        config = {**net_config(log), **config_overrides}
        run = run_proc(command, config, env=env)
        assert_sane(run)
        assert len(lines_of(run.stdout)) <= 1, (label, run.stdout)
        for line in lines_of(run.stderr):
            assert b'"injected":true' not in line, (label, line)
        recorded = len(lines_of(log.read_bytes())) if log.exists() else 0
        events = file_events(log, recorded)
        assert all("injected" not in e for e in events), label
        assert all(e["event"].get("outcome") in ("success", "failure") for e in events), label
    # Every invocation is recorded as exactly one line; an unknown CNI_COMMAND is refused before the
    # config (and so the logFile) is read, so that one goes to stderr only.
    assert recorded == len(nasty_cases()) - 1


def test_unicode_line_separators_stay_inside_the_line(tmp_path: Path) -> None:
    """U+2028/U+2029/U+0085 are written raw (JSON allows it): JSON-lines readers split on b"\\n" only,
    but a reader using Python's str.splitlines() would break such a line in pieces."""
    log = tmp_path / "audit.log"
    run = run_proc("ADD", net_config(log, note="a\u2028b\u2029c\x85d"))
    assert assert_sane(run) == ADD_ANSWER
    [event] = file_events(log, 1)
    assert event["cni"]["config"]["note"] == "a\u2028b\u2029c\x85d"
    assert len(log.read_text("utf-8").splitlines()) == 4  # documented hazard for splitlines() readers


# -- values that could end up in paths -------------------------------------------------------------


def test_path_like_values_cannot_redirect_writes(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    work = sandbox / "cwd"
    work.mkdir(parents=True)
    log = sandbox / "logs" / "audit.log"
    marker = f"cni-logger-escape-{uuid.uuid4().hex[:12]}"
    up = "../" * 12
    cases = [
        {"CNI_CONTAINERID": f"{up}tmp/{marker}"},
        {"CNI_CONTAINERID": f"..{marker}"},                # leading dots: refused like "../"
        {"CNI_IFNAME": f"../{marker}"[:15]},
        {"CNI_IFNAME": "a/b"},
        {"CNI_NETNS": f"{up}tmp/{marker}"},
        {"CNI_PATH": f"{up}tmp/{marker}:/{marker}"},
        {"CNI_ARGS": f"K8S_POD_NAME={up}tmp/{marker};K8S_POD_NAMESPACE=../{marker}"},
    ]
    before_tmp = set(os.listdir("/tmp"))
    recorded = 0
    for command in ("ADD", "CHECK", "DEL"):
        for overrides in cases:
            run = run_proc(command, net_config(log), env=cni_env(command, **overrides), cwd=work)
            assert_sane(run)
            recorded += 1
        for name in (f"../{marker}", f"{up}tmp/{marker}", "..", "."):
            run = run_proc(command, net_config(log, name=name), env=cni_env(command), cwd=work)
            assert_sane(run, code=None if command == "DEL" else skel.ERR_INVALID_NETWORK_CONFIG)
            recorded += 1
    files = sorted(str(p.relative_to(sandbox)) for p in sandbox.rglob("*"))
    assert files == ["cwd", "logs", "logs/audit.log"], files
    assert len(audit_log(log).events) == recorded
    assert not [n for n in set(os.listdir("/tmp")) - before_tmp if marker in n]
    assert not list(tmp_path.parent.glob(f"*{marker}*"))
