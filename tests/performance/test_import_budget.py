"""Start-up regressions show up here as failing tests, not as slow nodes.

Each case runs one invocation in a fresh interpreter started the way the launcher starts it
(``-I -S`` with the plugin's import paths appended) and inspects ``sys.modules`` afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni_logger import jsonio
from cni_logger.install import launcher
from tests.conftest import REPO, cni_env

PYTHON = str(REPO / ".venv" / "bin" / "python")
DRIVER = """
import sys
sys.path.extend({paths!r})
from cni_logger import deferred, plugin
deferred.install()
rc = plugin.run()
loaded = [name for name, mod in sys.modules.items() if not isinstance(mod, deferred.DeferredPackage)]
with open({out!r}, "w") as out:
    out.write("\\n".join(sorted(loaded)))
"""
PIPELINE = {"cni_logger.events", "structlog", "pythonjsonlogger", "logging"}
NEVER_USED = {"asyncio", "ssl", "socket", "selectors", "subprocess", "uuid", "platform", "inspect", "ast", "dis",
              # structlog's bundled processors and package __init__ bring these; the plugin uses neither
              "logging", "json", "dataclasses", "traceback", "structlog.processors", "structlog.dev",
              "structlog.stdlib", "pickle"}


def loaded_modules(tmp_path: Path, command: str, config: dict[str, object]) -> set[str]:
    out = tmp_path / "modules.txt"
    code = DRIVER.format(paths=launcher.import_paths(), out=str(out))
    proc = subprocess.run([PYTHON, "-I", "-S", "-c", code], input=json.dumps(config).encode(),
                          env=cni_env(command), capture_output=True, timeout=60, check=False)
    assert out.exists(), proc.stderr.decode()
    return set(out.read_text().split("\n"))


@pytest.mark.parametrize(("command", "config"), [
    ("VERSION", {"cniVersion": "1.1.0"}),
    ("STATUS", {"cniVersion": "1.1.0", "name": "n", "type": "logger"}),
    ("STATUS", {"cniVersion": "1.1.0", "name": "n", "type": "logger", "logFile": "/tmp/x.log",
                "failOnLogError": True}),
])
def test_version_and_status_do_not_load_the_event_pipeline_or_json(tmp_path: Path, command: str,
                                                                   config: dict[str, object]) -> None:
    modules = loaded_modules(tmp_path, command, config)
    assert "cni_logger.skel" in modules  # the driver really ran the plugin
    unwanted = PIPELINE | {"json", "re", "typing", "enum", "cni_logger.redact"}
    assert not modules & unwanted, sorted(modules & unwanted)


def test_add_loads_the_pipeline_but_nothing_it_never_uses(tmp_path: Path) -> None:
    config = {"cniVersion": "1.0.0", "name": "n", "type": "logger", "logFile": str(tmp_path / "cni.log"),
              "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}}
    modules = loaded_modules(tmp_path, "ADD", config)
    assert {"cni_logger.events", "structlog._generic"} <= modules
    assert (tmp_path / "cni.log").read_text().count("\n") == 1
    assert not modules & NEVER_USED, sorted(modules & NEVER_USED)
    assert "pythonjsonlogger" not in modules  # diagnostics are imported only when there is a problem
    assert "ipaddress" not in modules  # only cross-family result conversions need it


def test_a_deferred_package_still_works_when_its_namespace_is_used() -> None:
    code = ("import sys; from cni_logger import deferred; deferred.install(); import structlog._generic; "
            "assert isinstance(sys.modules['structlog'], deferred.DeferredPackage); "
            "assert 'structlog.stdlib' not in sys.modules; "
            "log = structlog.get_logger(); "  # the real __init__ runs here
            "print(type(sys.modules['structlog']).__name__, 'structlog.stdlib' in sys.modules, callable(log.info))")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "module True True"


def test_the_fast_json_path_is_active_on_this_python() -> None:
    assert jsonio._scan is not None and jsonio._encode is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@given(json_values, st.sampled_from(["", " ", "\n\t", " \r\n"]))
def test_jsonio_matches_the_json_module(value: object, pad: str) -> None:
    assert jsonio.dumps(value) == json.dumps(value, separators=(",", ":"))
    text = pad + json.dumps(value) + pad
    assert jsonio.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", "{not json", '{"a": 1} x', "[1,]", '"\\ud800"'])
def test_jsonio_errors_and_oddities_match_the_json_module(text: str) -> None:
    try:
        expected: object = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError, match=str(exc).split(":")[0]):
            jsonio.loads(text)
        return
    got = jsonio.loads(text)
    assert json.dumps(got) == json.dumps(expected)


@pytest.mark.parametrize("text", ["NaN", "-Infinity", '{"mtu": Infinity}', "[1, NaN]"])
def test_jsonio_refuses_what_is_not_json(text: str) -> None:
    """Python's json accepts these; RFC 8259 and Go's decoder (libcni) do not, and neither does the plugin."""
    with pytest.raises(ValueError, match="is not valid JSON"):
        jsonio.loads(text)
    with pytest.raises(ValueError):
        jsonio.dumps(json.loads(text))
