"""One room per job: the top level of ``cni_logger`` is exactly the plugin's path.

A runtime's ADD must not pay for an operator's commands, and VERSION / STATUS (asked every few seconds
under CNI 1.1.0) must not pay for the event pipeline. Each invocation case runs in a fresh interpreter
started the way the launcher starts it (``-I -S``, the plugin's import paths appended, ``cli.main`` as
the entry point) and inspects ``sys.modules`` just before the process exits; the AST check covers
imports that no invocation happens to reach. Start-up regressions show up here as failing tests, not
as slow nodes.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cni_logger import cli
from cni_logger.install import launcher
from tests.harness.plugin import REPO, cni_env

PYTHON = str(REPO / ".venv" / "bin" / "python")
# main() ends in os._exit, so the module list is written just before that; placeholders that
# ``deferred`` put in for packages whose __init__ never ran do not count as loaded.
DRIVER = """
import sys
sys.path.extend({paths!r})
from cni_logger import deferred, skel
_exit = skel.main_exit
def dump_and_exit(code):
    loaded = [name for name, mod in sys.modules.items() if not isinstance(mod, deferred.DeferredPackage)]
    with open({out!r}, "w") as out:
        out.write("\\n".join(sorted(loaded)))
    _exit(code)
skel.main_exit = dump_and_exit
from cni_logger.cli import main
main()
"""
OPERATOR_PACKAGES = ("cni_logger.audit", "cni_logger.install")
PIPELINE = {"cni_logger.events", "structlog", "pythonjsonlogger", "logging"}
NEVER_USED = {"asyncio", "ssl", "socket", "selectors", "subprocess", "uuid", "platform", "inspect", "ast", "dis",
              # structlog's bundled processors and package __init__ bring these; the plugin uses neither
              "logging", "json", "dataclasses", "traceback", "structlog.processors", "structlog.dev",
              "structlog.stdlib", "pickle", "argparse"}
PREV_100 = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}


def loaded_modules(tmp_path: Path, command: str, config: dict[str, Any]) -> tuple[set[str], int]:
    out = tmp_path / f"modules-{command}.txt"
    code = DRIVER.format(paths=launcher.import_paths(), out=str(out))
    proc = subprocess.run([PYTHON, "-I", "-S", "-c", code], input=json.dumps(config).encode(),
                          env=cni_env(command), capture_output=True, timeout=60, check=False)
    assert out.exists(), proc.stderr.decode()
    modules = set(out.read_text().split("\n"))
    assert "cni_logger.skel" in modules  # the driver really ran the plugin
    return modules, proc.returncode


def operator_modules(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith(OPERATOR_PACKAGES)}


def logger_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "n", "type": "logger", "logFile": str(tmp_path / "cni.log"), **extra}


@pytest.mark.parametrize(("command", "config"), [
    ("VERSION", {"cniVersion": "1.1.0"}),
    ("STATUS", {"cniVersion": "1.1.0", "name": "n", "type": "logger"}),
    ("STATUS", {"cniVersion": "1.1.0", "name": "n", "type": "logger", "logFile": "/tmp/x.log",
                "failOnLogError": True}),
])
def test_version_and_status_load_neither_the_event_pipeline_nor_json(tmp_path: Path, command: str,
                                                                       config: dict[str, Any]) -> None:
    modules, rc = loaded_modules(tmp_path, command, config)
    assert rc == 0
    unwanted = PIPELINE | {"json", "re", "typing", "enum", "cni_logger.redact"}
    assert not modules & unwanted, sorted(modules & unwanted)
    assert not operator_modules(modules)


def test_an_unrecorded_invocation_with_a_diagnostic_still_skips_the_event_pipeline(tmp_path: Path) -> None:
    """A rejected setting on STATUS is reported (diagnostics, in the events' schema) without the events' module."""
    config = {"cniVersion": "1.1.0", "name": "n", "type": "logger", "logToStderr": "maybe"}
    modules, rc = loaded_modules(tmp_path, "STATUS", config)
    assert rc == 0
    assert "cni_logger.diagnostics" in modules  # the problem was reported
    assert not modules & {"cni_logger.events", "structlog", "structlog._generic"}, sorted(modules)


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_a_recorded_invocation_loads_the_pipeline_and_nothing_an_operator_runs(tmp_path: Path, command: str) -> None:
    modules, rc = loaded_modules(tmp_path, command, logger_config(tmp_path, prevResult=PREV_100))
    assert rc == 0
    assert (tmp_path / "cni.log").read_text().count("\n") == 1  # it really recorded the event
    assert {"cni_logger.events", "structlog._generic"} <= modules
    assert not modules & NEVER_USED, sorted(modules & NEVER_USED)
    assert not operator_modules(modules), sorted(operator_modules(modules))
    assert "pythonjsonlogger" not in modules  # diagnostics are imported only when there is a problem
    assert "ipaddress" not in modules  # only cross-family result conversions need it


def test_every_top_level_module_is_on_the_plugins_path(tmp_path: Path) -> None:
    """The top level holds the plugin and nothing else: each module is loaded by some invocation (a plain
    ADD, an ADD that converts a 0.2.0 prevResult, an ADD with a rejected setting, so diagnostics run, an ADD
    whose sink fails, so the lost event is counted)."""
    from cni_logger.filesink import dropped_path

    seen: set[str] = set()
    (tmp_path / "a-file").write_text("")
    blocked = str(tmp_path / "a-file" / "cni.log")
    for config in (logger_config(tmp_path, prevResult=PREV_100),
                   logger_config(tmp_path, prevResult={"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}),
                   logger_config(tmp_path, logFile=str(tmp_path / "missing" / "\0bad")),
                   logger_config(tmp_path, logFile=blocked)):
        modules, _ = loaded_modules(tmp_path, "ADD", config)
        seen |= modules
    Path(dropped_path(blocked)).unlink(missing_ok=True)
    top_level = {f"cni_logger.{p.stem}" for p in (REPO / "cni_logger").glob("*.py")} - {"cni_logger.__init__"}
    # __main__ is the entry point of ``python -m cni_logger`` itself; thick is the plugin's path in thick mode
    # (thick.main, run by the shim instead of the launcher: tests/system/test_thick.py): the other ways in.
    assert top_level - {"cni_logger.__main__", "cni_logger.thick"} <= seen, sorted(top_level - seen)
    assert {p.name for p in (REPO / "cni_logger").iterdir() if p.is_dir() and p.name != "__pycache__"} == \
        {"audit", "install"}


def test_no_top_level_module_imports_the_operator_packages() -> None:
    """``cli`` names them only as COMMAND_MODULES strings, imported when an operator runs a subcommand."""
    assert set(cli.COMMAND_MODULES) == {"cni_logger.audit.commands", "cni_logger.install.cli"}
    for path in (REPO / "cni_logger").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(OPERATOR_PACKAGES) for n in names), (path, names)


SHARED_ACROSS_ROOMS = {("install/metrics.py", "cni_logger.audit.follow")}
"""The one crossing: the watcher's metrics count the trail's events with the audit's rotation-aware follower
(``follow.Tail``), rather than a second copy of what it knows about rotation."""


def test_the_operator_packages_do_not_import_each_other() -> None:
    """Imports are one-way: each operator package builds on the plugin's modules, never on the other room
    (but for ``SHARED_ACROSS_ROOMS``)."""
    for room, other in (("audit", "cni_logger.install"), ("install", "cni_logger.audit")):
        for path in (REPO / "cni_logger" / room).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names = [n for n in names if (f"{room}/{path.name}", n) not in SHARED_ACROSS_ROOMS]
                assert not any(n.startswith(other) for n in names), (path, names)


def test_registering_the_commands_imports_no_implementation() -> None:
    code = ("import sys; from cni_logger import cli\n"
            "try:\n    cli.tool(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('cni_logger.audit', 'cni_logger.install'))))")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=REPO)
    assert proc.stdout.strip().splitlines()[-1] == str(["cni_logger.audit", "cni_logger.audit.commands",
                                                        "cni_logger.install", "cni_logger.install.cli",
                                                        "cni_logger.install.runtimes"])
