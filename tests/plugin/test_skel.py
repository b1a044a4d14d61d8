"""Unit tests for the building blocks of cni_logger.skel (the whole protocol is in tests/system/protocol)."""

from __future__ import annotations

import ast
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_logger import skel
from cni_logger.skel import CNIError


class Pipe:
    """A pipe whose ends are closed at teardown unless a test handed them off or closed them itself."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self.open = {self.r, self.w}

    def close(self, fd: int) -> None:
        self.open.discard(fd)
        os.close(fd)

    def hand_off(self, fd: int) -> int:
        self.open.discard(fd)
        return fd


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    for fd in p.open:
        os.close(fd)


def write_and_close(fd: int, data: bytes) -> threading.Thread:
    """Feed a pipe from a thread (more than a pipe buffer would block the test otherwise)."""

    def feed() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            pass  # the reader gave up early, as it should for oversized input
        finally:
            os.close(fd)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


# -- parse_cni_args --------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("", {}),
    (";", {}),
    ("K8S_POD_NAME=web;K8S_POD_NAMESPACE=shop", {"K8S_POD_NAME": "web", "K8S_POD_NAMESPACE": "shop"}),
    ("K8S_POD_NAMESPACE=shop;IgnoreUnknown=1;K8S_POD_NAME=web",
     {"K8S_POD_NAMESPACE": "shop", "IgnoreUnknown": "1", "K8S_POD_NAME": "web"}),
    ("A=b=c", {"A": "b=c"}),
    ("A==", {"A": "="}),
    ("FLAG", {"FLAG": ""}),
    ("FLAG;X=1", {"FLAG": "", "X": "1"}),
    ("A=;B=2", {"A": "", "B": "2"}),
    ("K=1;K=2;K=3", {"K": "3"}),
    (";;A=1;;", {"A": "1"}),
    ("=orphan;B=2", {"B": "2"}),
    (" A =x y", {"A": "x y"}),
])
def test_parse_cni_args(raw: str, expected: dict[str, str]) -> None:
    assert skel.parse_cni_args(raw) == expected


def test_parse_cni_args_order_does_not_matter() -> None:
    pairs = ["A=1", "B=2=3", "FLAG", "K8S_POD_NAME=x"]
    assert skel.parse_cni_args(";".join(pairs)) == skel.parse_cni_args(";".join(reversed(pairs)))


# -- version_tuple ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "expected"), [
    ("0.1.0", (0, 1, 0)), ("0.3.1", (0, 3, 1)), ("1.1.0", (1, 1, 0)), ("1.10.0", (1, 10, 0)), ("2", (2,)),
    ("", (-1,)), ("x", (-1,)), ("1.0.x", (-1,)), ("1..0", (-1,)),
])
def test_version_tuple(version: str, expected: tuple[int, ...]) -> None:
    assert skel.version_tuple(version) == expected


def test_version_tuple_orders_versions_numerically() -> None:
    versions = ["1.1.0", "0.4.0", "0.10.0", "0.3.1", "1.0.0", "0.2.0", "bogus"]
    ordered = sorted(versions, key=skel.version_tuple)
    assert ordered == ["bogus", "0.2.0", "0.3.1", "0.4.0", "0.10.0", "1.0.0", "1.1.0"]


def test_supported_versions_are_in_order() -> None:
    tuples = [skel.version_tuple(v) for v in skel.SUPPORTED_VERSIONS]
    assert tuples == sorted(tuples)
    assert skel.LATEST_VERSION == "1.1.0"


# -- read_stdin ------------------------------------------------------------------------------------


def test_read_stdin_reads_everything_until_eof(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    data = b'{"cniVersion":"1.0.0"}' * 10_000  # more than a pipe buffer
    thread = write_and_close(pipe.hand_off(w), data)
    assert skel.read_stdin(r, timeout=30) == data
    thread.join(timeout=30)


def test_read_stdin_empty_input(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    pipe.close(w)
    assert skel.read_stdin(r, timeout=5) == b""


def test_read_stdin_at_the_limit_is_accepted(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    write_and_close(pipe.hand_off(w), b"x" * 1000)
    assert skel.read_stdin(r, limit=1000, timeout=30) == b"x" * 1000


def test_read_stdin_over_the_limit_is_invalid_config(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    write_and_close(pipe.hand_off(w), b"x" * 1001)
    with pytest.raises(CNIError) as info:
        skel.read_stdin(r, limit=1000, timeout=30)
    assert info.value.code == 7
    assert "1000" in info.value.details


def test_read_stdin_over_max_stdin_bytes_is_invalid_config(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(skel.MAX_STDIN_BYTES + 1)  # sparse: no 16 MiB written to disk
    fd = os.open(big, os.O_RDONLY)
    try:
        with pytest.raises(CNIError) as info:
            skel.read_stdin(fd, timeout=60)
    finally:
        os.close(fd)
    assert info.value.code == 7
    assert str(skel.MAX_STDIN_BYTES) in info.value.details


def test_read_stdin_from_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "conf.json"
    path.write_bytes(b'{"name":"n"}')
    fd = os.open(path, os.O_RDONLY)
    try:
        assert skel.read_stdin(fd, timeout=5) == b'{"name":"n"}'
    finally:
        os.close(fd)


def test_read_stdin_pipe_never_closed_is_io_failure_after_the_timeout(pipe: Pipe) -> None:
    r = pipe.r  # the write end stays open: the "runtime" never closes stdin
    with pytest.raises(CNIError) as info:
        skel.read_stdin(r, timeout=0.2)
    assert info.value.code == 5
    assert "0.2 seconds" in info.value.details


def test_read_stdin_partial_input_then_silence_is_io_failure(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, b'{"cniVersion":')
    with pytest.raises(CNIError) as info:
        skel.read_stdin(r, timeout=0.2)
    assert info.value.code == 5


def test_read_stdin_refuses_a_terminal() -> None:
    controller, terminal = os.openpty()
    try:
        with pytest.raises(CNIError) as info:
            skel.read_stdin(terminal, timeout=0.2)
    finally:
        os.close(controller)
        os.close(terminal)
    assert info.value.code == 5


def test_read_stdin_closed_descriptor_is_io_failure(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    pipe.close(w)
    pipe.close(r)
    with pytest.raises(CNIError) as info:
        skel.read_stdin(r, timeout=0.2)
    assert info.value.code == 5


# -- decode_config ---------------------------------------------------------------------------------


def test_decode_config_object() -> None:
    assert skel.decode_config(b' {"cniVersion": "1.0.0", "name": "n", "x": [1, 2.5, null]}\n') == {
        "cniVersion": "1.0.0", "name": "n", "x": [1, 2.5, None]}


def test_decode_config_keeps_non_ascii() -> None:
    assert skel.decode_config('{"name": "réseau ☃"}'.encode()) == {"name": "réseau ☃"}


@pytest.mark.parametrize("data", [b'{"name": "\xff\xfe"}', b"\xc3\x28", b'{"name":"\xed\xa0\x80"}'])
def test_decode_config_invalid_utf8_is_a_decoding_failure(data: bytes) -> None:
    with pytest.raises(CNIError) as info:
        skel.decode_config(data)
    assert info.value.code == 6
    assert "UTF-8" in info.value.details


@pytest.mark.parametrize("data", [b"[" * 200_000 + b"]" * 200_000,
                                  b'{"a":' * 200_000 + b"1" + b"}" * 200_000])
def test_decode_config_deep_nesting_is_a_decoding_failure(data: bytes) -> None:
    with pytest.raises(CNIError) as info:
        skel.decode_config(data)
    assert info.value.code == 6


@pytest.mark.parametrize(("data", "kind"), [
    (b"[]", "list"), (b'"config"', "str"), (b"42", "int"), (b"null", "NoneType"), (b"true", "bool"),
])
def test_decode_config_non_object_is_a_decoding_failure(data: bytes, kind: str) -> None:
    with pytest.raises(CNIError) as info:
        skel.decode_config(data)
    assert info.value.code == 6
    assert kind in info.value.details


@pytest.mark.parametrize("data", [b"", b"   ", b"{", b'{"a":1}x', b'{"a":1}{"b":2}', b"{'a': 1}",
                                  b'\xef\xbb\xbf{"a":1}'])
def test_decode_config_invalid_json_is_a_decoding_failure(data: bytes) -> None:
    with pytest.raises(CNIError) as info:
        skel.decode_config(data)
    assert info.value.code == 6
    assert info.value.msg == "error decoding network config"


# -- interface names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eth0", "net1", "a", "x" * 15, "veth24e0f2cc", "eth0.100", "br-int",
                                  "wlan_0", "é" * 7, "-"])
def test_valid_interface_names(name: str) -> None:
    skel._check_ifname(name)


@pytest.mark.parametrize(("name", "why"), [
    ("x" * 16, "15 bytes"),
    ("é" * 8, "15 bytes"),  # 8 characters, 16 bytes
    (".", "'.'"),
    ("..", "'.'"),
    ("eth/0", "'/'"),
    ("eth:0", "'/'"),
    ("eth 0", "whitespace"),
    ("eth\t0", "whitespace"),
    ("eth0\n", "whitespace"),
    ("eth\x000", "control"),
    ("eth\x1b", "control"),
    ("eth\xa00", "whitespace"),
    ("eth\udcff", "control"),
])
def test_invalid_interface_names(name: str, why: str) -> None:
    with pytest.raises(CNIError) as info:
        skel._check_ifname(name)
    assert info.value.code == 4
    assert "CNI_IFNAME" in info.value.msg
    assert why in info.value.details
    assert repr(name) in info.value.details


# -- CNIError and small helpers --------------------------------------------------------------------


def test_cni_error_json_has_details_only_when_given() -> None:
    assert CNIError(7, "missing network name").to_json("1.0.0") == {
        "cniVersion": "1.0.0", "code": 7, "msg": "missing network name"}
    assert CNIError(1, "incompatible", "config is x").to_json("0.4.0") == {
        "cniVersion": "0.4.0", "code": 1, "msg": "incompatible", "details": "config is x"}
    assert str(CNIError(1, "incompatible", "config is x")) == "incompatible; config is x"


@pytest.mark.parametrize(("config", "expected"), [
    ({}, "0.1.0"), ({"cniVersion": ""}, "0.1.0"), ({"cniVersion": None}, "0.1.0"),
    ({"cniVersion": "1.0.0"}, "1.0.0"),
])
def test_config_version(config: dict[str, Any], expected: str) -> None:
    assert skel.config_version(config) == expected


def test_config_version_not_a_string_is_invalid_config() -> None:
    with pytest.raises(CNIError) as info:
        skel.config_version({"cniVersion": 1.0})
    assert info.value.code == 7


# -- network_name_problem: the one network-name rule -----------------------------------------------


@pytest.mark.parametrize("name", ["n", "k8s-pod-network", "podman", "net_1.a-b", "0", "A"])
def test_valid_network_names(name: str) -> None:
    assert skel.network_name_problem(name) is None


@pytest.mark.parametrize(("name", "problem"), [
    (None, "missing network name"), ("", "missing network name"), (5, "missing network name"),
    ("a b", "invalid characters in network name 'a b'"), ("-n", "invalid characters in network name '-n'"),
    ("../x", "invalid characters in network name '../x'"), (".", "invalid characters in network name '.'"),
    ("réseau", "invalid characters in network name 'réseau'"), ("n\n", "invalid characters in network name 'n\\n'"),
])
def test_invalid_network_names(name: object, problem: str) -> None:
    assert skel.network_name_problem(name) == problem


# -- run: what the plugin declares, and exactly one JSON document -----------------------------------


class DeclaringPlugin:
    """A minimal real plugin: ADD answers ``result``; ``finish`` keeps what it saw (or raises ``fail``)."""

    about = "test plugin"
    versions = ("0.4.0", "1.0.0")
    internal_error = "internal error in the test plugin"
    always_succeed = frozenset({"DEL"})

    def __init__(self, result: dict[str, Any], fail: Exception | None = None) -> None:
        self.result = result
        self.fail = fail
        self.seen: list[skel.Outcome] = []

    def add(self, request: skel.Request) -> dict[str, Any]:
        return self.result

    def check(self, request: skel.Request) -> None:
        raise CNIError(skel.ERR_INVALID_NETWORK_CONFIG, "check refused")

    def delete(self, request: skel.Request) -> None:
        raise CNIError(skel.ERR_INVALID_NETWORK_CONFIG, "delete refused")

    def gc(self, request: skel.Request) -> None:
        return None

    def status(self, request: skel.Request) -> None:
        return None

    def finish(self, request: skel.Request, outcome: skel.Outcome) -> skel.Outcome:
        self.seen.append(outcome)
        if self.fail is not None:
            raise self.fail
        return outcome


def serve(plugin: DeclaringPlugin, command: str, config: bytes, tmp_path: Path) -> tuple[int, bytes]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}
    (tmp_path / "in").write_bytes(config)
    with open(tmp_path / "in", "rb") as src, open(tmp_path / "out", "w+b") as out:
        rc = skel.run(plugin, env, src.fileno(), out.fileno())
        out.seek(0)
        return rc, out.read()


CONFIG = b'{"cniVersion": "1.0.0", "name": "n", "type": "t"}'


def test_a_result_that_cannot_be_encoded_is_an_internal_error_the_plugin_sees(tmp_path: Path) -> None:
    plugin = DeclaringPlugin({"cniVersion": "1.0.0", "mtu": float("inf")})
    rc, out = serve(plugin, "ADD", CONFIG, tmp_path)
    assert rc == 1 and out.count(b"\n") == 1
    doc = skel.jsonio.loads_bytes(out)
    assert (doc["code"], doc["msg"]) == (skel.ERR_INTERNAL, "internal error in the test plugin"), doc
    assert doc["cniVersion"] == "1.0.0" and "ValueError" in doc["details"]
    [seen] = plugin.seen  # finish recorded the failure, not a success
    assert seen.error is not None and seen.error.code == skel.ERR_INTERNAL


def test_a_failing_finish_hook_still_answers_one_error_object(tmp_path: Path) -> None:
    rc, out = serve(DeclaringPlugin({"cniVersion": "1.0.0"}, fail=RuntimeError("boom")), "ADD", CONFIG, tmp_path)
    doc = skel.jsonio.loads_bytes(out)
    assert rc == 1 and (doc["code"], doc["details"]) == (skel.ERR_INTERNAL, "RuntimeError: boom")


def test_always_succeed_commands_succeed_and_pass_the_error_on_as_suppressed(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    plugin = DeclaringPlugin({})
    assert serve(plugin, "DEL", CONFIG, tmp_path) == (0, b"")
    [seen] = plugin.seen
    assert seen.ok and seen.suppressed is not None and seen.suppressed.msg == "delete refused"
    assert serve(plugin, "CHECK", CONFIG, tmp_path)[0] == 1  # only the declared commands
    failing = DeclaringPlugin({}, fail=RuntimeError("boom"))
    assert serve(failing, "DEL", CONFIG, tmp_path) == (0, b"")
    assert capfd.readouterr().err == "internal error in the test plugin: RuntimeError: boom\n"


def test_the_declared_versions_are_the_ones_answered(tmp_path: Path) -> None:
    plugin = DeclaringPlugin({"cniVersion": "1.0.0"})
    rc, out = serve(plugin, "VERSION", b"", tmp_path)
    assert rc == 0 and skel.jsonio.loads_bytes(out) == {"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}
    rc, out = serve(plugin, "ADD", CONFIG.replace(b"1.0.0", b"1.1.0"), tmp_path)
    doc = skel.jsonio.loads_bytes(out)
    assert rc == 1 and doc["code"] == skel.ERR_INCOMPATIBLE_VERSION and doc["cniVersion"] == "1.0.0", doc
    assert skel.about(plugin) == "test plugin\nCNI protocol versions supported: 0.4.0, 1.0.0"


def test_skel_says_nothing_about_the_logger() -> None:
    """Every word the skeleton answers or prints comes from the plugin's declarations."""
    tree = ast.parse(Path(skel.__file__).read_text())
    texts = [node.value.lower() for node in ast.walk(tree) if isinstance(node, ast.Constant)
             and isinstance(node.value, str)]
    assert not [t for t in texts if "logger" in t or "audit" in t or "event" in t]
