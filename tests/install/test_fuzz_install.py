"""Any conf dir gets a clear refusal or a correct install from ``cni-logger install``, never a traceback.

A traceback in ``install --watch`` crash-loops the DaemonSet, so the reader and the planner are fuzzed
with hypothesis over config-shaped JSON text (escapes Python and Go read differently — lone surrogates —,
numbers at the edge of float64, duplicate keys, deep nesting, an operator's logger entry) and raw bytes,
in files whose names collide in the runtimes' order; then a sample through the real process, and the
cases found so far as named tests (process level: ``install``, ``install --dry-run``, ``--watch``,
``uninstall``).

``CNI_LOGGER_FUZZ_EXAMPLES`` / ``CNI_LOGGER_FUZZ_PROCESS_EXAMPLES`` set the number of examples (300 / 15).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cni_logger import cli, jsonio
from cni_logger.install import users
from tests.harness.nodes import shape
from tests.system.install.test_watch import CNI_LOGGER, wait_for

IN_PROCESS = int(os.environ.get("CNI_LOGGER_FUZZ_EXAMPLES", "300"))
PROCESS = int(os.environ.get("CNI_LOGGER_FUZZ_PROCESS_EXAMPLES", "15"))

# JSON text pieces: strings (as the escapes a file can hold), numbers, literals.
STRINGS = ['"\\ud800"', '"\\udfff"', '"a\\uDC00b"', '"\\ud83d\\ude00"', '"\\ud83d"', '"\\u0000"', '"\\/"',
           '"\u00e9"', '"\\u2028"', '""', '"bridge"', '"logger"', '"portmap"', '"cilium-cni"', '"net"',
           '"a b"', '"1.0.0"', '"0.4.0"', '"9.9.9"', '"/var/log/x.log"', '"rel.log"']
NUMBERS = ["0", "-0", "1", "2.5", "1E5", "1e-400", "123456789012345678901234567890", "1.7976931348623157e308"]
REFUSED_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "9" * 310]
LITERALS = ["null", "true", "false"]
KEYS = ['"logFile"', '"redactKeys"', '"logOptions"', '"maxSize"', '"capabilities"', '"failOnLogError"', '"ipam"',
        '"\\ud800"', '"\\udc00k"', '"k"']
STRUCTURAL_KEYS = ['"type"', '"name"', '"cniVersion"', '"plugins"']
NAMES = ["10-a.conf", "10-a.conflist", "10-a.json", "10-a.conf.json", "10-a.conf-1.conflist", "05-b.conflist",
         "zz-cni-logger.conf", os.fsdecode(b"10-\xff.conflist"), "10-a.conf.bak"]
OPTIONS = [[], ["--max-size", "3"], ["--log-file", "/var/log/o.log"], ["--runtime", "crio"],
           ["--runtime", "podman"], ["--runtime", "rkt"], ["--dry-run"], ["--network", "net"],
           ["--conf-file", "10-a.conf"], ["--conf-file", "10-a.conflist"], ["--capabilities", "portMappings"]]



def usually(common: list[str], rare: list[str]) -> st.SearchStrategy[str]:
    """Mostly values a runtime accepts (so most examples reach the planner), sometimes ones it refuses."""
    return st.one_of(*[st.sampled_from(common)] * 9, st.sampled_from(rare))


leaf = usually(STRINGS + NUMBERS + LITERALS, REFUSED_NUMBERS)
value = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(usually(KEYS, STRUCTURAL_KEYS), inner), max_size=4).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"),
    ),
    max_leaves=12,
)
deep = st.one_of(st.integers(1, 80), st.integers(900, 3000)).map(lambda n: "[" * n + "]" * n)
extra = st.lists(st.tuples(usually(KEYS, STRUCTURAL_KEYS), st.one_of(value, value, value, deep)), max_size=3)
"""Keys and values added to a config or plugin: mostly shallow, and often what the named keys expect."""


@st.composite
def plugin(draw: st.DrawFn) -> str:
    pairs = [('"type"', draw(usually(['"bridge"', '"logger"', '"portmap"', '"cilium-cni"'], ['""', "5"])))]
    pairs += draw(extra)
    return "{" + ", ".join(f"{k}: {v}" for k, v in draw(st.permutations(pairs))) + "}"


@st.composite
def config(draw: st.DrawFn) -> str:
    pairs = [('"cniVersion"', draw(usually(['"1.0.0"', '"0.4.0"', '"0.3.1"'], ['"9.9.9"', "1", '"\\ud800"']))),
             ('"name"', draw(usually(['"net"', '"other"'], ['"a b"', '"\\ud800"', '"n\\u00e9t"', "null"])))]
    if draw(st.booleans()):
        pairs.append(('"plugins"', "[" + ", ".join(draw(st.lists(plugin(), min_size=1, max_size=4))) + "]"))
    else:
        pairs.append(('"type"', draw(st.sampled_from(['"bridge"', '"logger"', '"ptp"']))))
    pairs += draw(extra)
    return "{" + ", ".join(f"{k}: {v}" for k, v in draw(st.permutations(pairs))) + "}"


# The same shapes as documents, written by json.dumps: any text, lone surrogates included (as escapes,
# or — ensure_ascii off — as bytes that are not UTF-8), any JSON number Go can read.
text = st.text(st.characters(categories=["L", "N", "P", "S", "Zs", "Cc", "Cs"]), max_size=8)
document_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
extra_keys = st.dictionaries(
    st.sampled_from(["logFile", "redactKeys", "logOptions", "capabilities", "failOnLogError", "ipam", "bridge"])
    | text, document_value, max_size=3)
plugin_document = st.builds(lambda kind, more: {"type": kind, **more},
                            st.sampled_from(["bridge", "logger", "portmap", "cilium-cni"]), extra_keys)
document = st.builds(
    lambda version, name, body, more: {"cniVersion": version, "name": name, **body, **more},
    st.sampled_from(["1.0.0", "0.4.0", "0.3.1"]), st.sampled_from(["net", "other"]),
    st.one_of(st.lists(plugin_document, min_size=1, max_size=4).map(lambda plugins: {"plugins": plugins}),
              st.sampled_from(["bridge", "ptp", "logger"]).map(lambda kind: {"type": kind})),
    extra_keys)
written = st.builds(lambda doc, indent, ascii_only: json.dumps(doc, indent=indent, ensure_ascii=ascii_only),
                    document, st.sampled_from([None, 2, 4, "\t"]), st.booleans())

whole = config().map(lambda text: text.encode("utf-8", "surrogatepass"))
content = st.one_of(
    written.map(lambda text: text.encode("utf-8", "surrogatepass")),
    written.map(lambda text: text.encode("utf-8", "surrogatepass")),
    whole, whole,
    st.tuples(config(), st.integers(0, 400)).map(lambda t: t[0].encode()[: t[1]]),
    value.map(str.encode),
    st.binary(max_size=64),
    st.sampled_from([b"\xef\xbb\xbf{}", b'{"type": "\xff"}', b"\xed\xa0\x80", b""]),
)
conf_dir = st.dictionaries(st.sampled_from(NAMES), content, min_size=1, max_size=3)


class Streams:
    """stdout and stderr as the real process has them: UTF-8, strict on stdout, backslashreplace on stderr."""

    def __enter__(self) -> Streams:
        self.saved = sys.stdout, sys.stderr
        self.out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
        self.err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
        sys.stdout, sys.stderr = self.out, self.err
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self.saved

    def run(self, *argv: str) -> tuple[int, str]:
        """``cni-logger ARGV`` in this process: the exit status and stderr (stdout must encode, strictly)."""
        status = cli.tool(list(argv))
        for stream in (self.out, self.err):
            stream.flush()
        err = self.err.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
        self.err.buffer.seek(0)
        self.err.buffer.truncate()
        return status, err


def check_install(root: Path, files: dict[str, bytes], options: list[str]) -> None:
    """One node through install (and uninstall): a refusal or a correct install, nothing else."""
    (root / "net.d").mkdir()
    (root / "bin").mkdir()
    for name, data in files.items():
        (root / "net.d" / name).write_bytes(data)
    with Streams() as streams:
        status, err = streams.run("install", *node_args(root), *options)
        assert status in (0, 1), err
        if status == 1:
            assert "refused:" in err, err
            return
        for path in (root / "net.d").iterdir():
            data = path.read_bytes()
            if path.name.endswith((".conf", ".conflist", ".json")) and data not in files.values():
                jsonio.loads_bytes(data, unique_keys=True)  # what install wrote parses, strictly
        status, err = streams.run("uninstall", "--state-dir", str(root / "state"))
        # A dry run installed nothing (no launcher, no journal): uninstall has nothing to keep or remove.
        named = [] if "--dry-run" in options else still_named(root / "net.d")
        assert status == (3 if named else 0), err
        assert (root / "bin" / "logger").exists() == bool(named), "kept exactly while a config names it"


def still_named(conf_dir: Path) -> list[str]:
    """The configs that name the logger (as ``users.configs_naming`` reads them), which keep the launcher."""
    return [path for path, _ in users.configs_naming([str(conf_dir)], {})]


@settings(max_examples=IN_PROCESS, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=conf_dir, options=st.sampled_from(OPTIONS))
def test_fuzz_the_reader_and_planner(files: dict[str, bytes], options: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check_install(Path(tmp), files, options)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    return subprocess.run([str(CNI_LOGGER), *args], capture_output=True, text=True, errors="replace", timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def node_args(root: Path) -> list[str]:
    return ["--conf-dir", str(root / "net.d"), "--bin-dir", str(root / "bin"), "--state-dir", str(root / "state")]


@settings(max_examples=PROCESS, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])
@given(files=conf_dir, options=st.sampled_from(OPTIONS))
def test_fuzz_sample_through_the_real_process(files: dict[str, bytes], options: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "net.d").mkdir()
        (root / "bin").mkdir()
        for name, data in files.items():
            (root / "net.d" / name).write_bytes(data)
        for command in (["install", "--dry-run"], ["install"], ["uninstall"]):
            args = [*command, *(node_args(root) if command[0] == "install" else ["--state-dir", str(root / "state")])]
            done = run(*args, *(o for o in options if o != "--dry-run" and command[0] == "install"))
            if command[0] == "uninstall" and done.returncode == 3:
                assert still_named(root / "net.d") and "kept" in done.stderr, done.stderr
                continue
            assert done.returncode in (0, 1), done.stderr
            assert "Traceback" not in done.stderr, done.stderr
            assert done.returncode == 0 or "refused:" in done.stderr, done.stderr


# ---------------------------------------------------------------------------------------------------------
# The cases found, through the real process


SURROGATE_CASES = {
    "value": b'{"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge", "bridge": "br\\ud800"}]}\n',
    "key": b'{"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge", "\\udc00": 1}]}\n',
    "operator's redactKeys": b'{"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge"}, '
                             b'{"type": "logger", "redactKeys": ["\\uDFFF"]}]}\n',
    "single .conf": b'{"cniVersion": "1.0.0", "name": "net", "type": "bridge", "x": ["\\ud83d", "\\ud83d\\ude00"]}',
}


@pytest.mark.parametrize("case", list(SURROGATE_CASES))
def test_lone_surrogate_escapes_are_kept_as_escapes(tmp_path: Path, case: str) -> None:
    """Go reads an unpaired surrogate escape as U+FFFD; the rewrite keeps the escape itself, so the runtime
    reads every value exactly as before, and uninstall gives the original bytes back."""
    data = SURROGATE_CASES[case]
    name = "10-net.conf" if case == "single .conf" else "10-net.conflist"
    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "net.d" / name).write_bytes(data)
    dry = run("install", "--dry-run", "--max-size", "5", *node_args(tmp_path))
    assert dry.returncode == 0 and "Traceback" not in dry.stderr, dry.stderr
    done = run("install", "--max-size", "5", *node_args(tmp_path))
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "net.d" / "10-net.conflist").read_bytes()
    assert written.isascii() or b"\xed" not in written, "no surrogate encoded as bytes"
    before, after = json.loads(data), json.loads(written)
    plugins = before["plugins"] if "plugins" in before else [
        {k: v for k, v in before.items() if k not in ("cniVersion", "name")}]
    assert after["plugins"][:-1] == [p for p in plugins if p["type"] != "logger"]
    assert after["plugins"][-1]["logOptions"] == {"maxSize": 5}
    assert dry.stdout.count("\\u") >= 1
    done = run("uninstall", "--state-dir", str(tmp_path / "state"))
    assert done.returncode == (3 if b'"logger"' in data else 0), done.stderr  # the operator's entry keeps it
    assert (tmp_path / "net.d" / name).read_bytes() == data


@pytest.mark.parametrize(("name", "data", "message"), [
    ("10-net.conf", b'{"cniVersion": "1.0.0", "name": "net", "type": "bridge", "plugins": 5}', None),
    ("10-net.conflist", b'{"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge", "x": '
     + b"[" * 800 + b"]" * 800 + b"}]}", "nested"),
    ("10-net.conflist", b'{"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge"}, {"type": '
     b'"logger", "x": ' + b"[" * 900 + b"]" * 900 + b"}]}", "nested"),
    ("10-net.conflist", b'{"cniVersion": "1.0.0", "name": "\\ud800", "plugins": [{"type": "bridge"}]}',
     "network name"),
])
def test_config_shapes_that_crashed_install(tmp_path: Path, name: str, data: bytes, message: str | None) -> None:
    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "net.d" / name).write_bytes(data)
    for extra in (["--dry-run"], []):
        done = run("install", *extra, *node_args(tmp_path))
        assert "Traceback" not in done.stderr, done.stderr
        if message is None:
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode == 1 and "refused:" in done.stderr and message in done.stderr, done.stderr


def test_a_file_name_that_is_not_utf8_is_shown_in_the_dry_run(tmp_path: Path) -> None:
    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "net.d" / os.fsdecode(b"10-\xff.conflist")).write_bytes(shape("10-flannel.conflist"))
    done = run("install", "--dry-run", *node_args(tmp_path))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "10-\\xff.conflist" in done.stdout


@pytest.mark.parametrize("data", [SURROGATE_CASES["value"], SURROGATE_CASES["operator's redactKeys"],
                                  b'{"cniVersion": "1.0.0", "name": "net", "type": "bridge", "plugins": 5}'])
def test_watch_never_crashes_on_config_content(tmp_path: Path, data: bytes) -> None:
    """The DaemonSet's process: it installs, stays up, and takes the entry out on SIGTERM."""
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    name = "10-net.conf" if b'"type": "bridge", "plugins"' in data else "10-net.conflist"
    (tmp_path / "net.d" / name).write_bytes(data)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([str(CNI_LOGGER), "install", "--watch", "--interval", "0.2", *node_args(tmp_path),
                             "--ready-file", str(ready)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        assert wait_for(lambda: ready.exists() or proc.poll() is not None)
        time.sleep(0.5)  # a few more passes over the installed file
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert (tmp_path / "net.d" / name).read_bytes() == data
