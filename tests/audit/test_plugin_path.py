"""The audit and install tools stay off the plugin's path: a runtime's ADD must not pay for an operator's commands."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

from cni_logger import cli
from cni_logger.install import launcher
from tests.conftest import REPO, cni_env

PYTHON = str(REPO / ".venv" / "bin" / "python")
# The real entry point, as the launcher runs it (-I -S, paths appended); main() ends in os._exit, so the
# module list is written just before that.
DRIVER = """
import sys
sys.path.extend({paths!r})
from cni_logger import skel
_exit = skel.main_exit
def dump_and_exit(code):
    with open({out!r}, "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
    _exit(code)
skel.main_exit = dump_and_exit
from cni_logger.cli import main
main()
"""


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_no_audit_module_is_imported_by_an_invocation(tmp_path: Path, command: str) -> None:
    out = tmp_path / "modules.txt"
    config = {"cniVersion": "1.0.0", "name": "n", "type": "logger", "logFile": str(tmp_path / "cni.log"),
              "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}}
    code = DRIVER.format(paths=launcher.import_paths(), out=str(out))
    proc = subprocess.run([PYTHON, "-I", "-S", "-c", code], input=json.dumps(config).encode(), env=cni_env(command),
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    modules = set(out.read_text().split("\n"))
    assert "cni_logger.skel" in modules and (tmp_path / "cni.log").exists()  # it really ran
    assert not {m for m in modules if m == "cni_logger.audit" or m.startswith("cni_logger.audit.")}
    assert not {m for m in modules if m == "cni_logger.install" or m.startswith("cni_logger.install.")}
    assert "argparse" not in modules


def test_only_the_cli_tool_names_the_audit_and_install_commands() -> None:
    """No top-level module imports either package; ``cli`` names them only as COMMAND_MODULES strings."""
    assert "cni_logger.audit.commands" in cli.COMMAND_MODULES
    assert "cni_logger.install.cli" in cli.COMMAND_MODULES
    for path in (REPO / "cni_logger").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(("cni_logger.audit", "cni_logger.install")) for n in names), (path, names)


def test_registering_the_commands_imports_no_implementation() -> None:
    code = ("import sys; from cni_logger import cli\n"
            "try:\n    cli.tool(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('cni_logger.audit', 'cni_logger.install'))))")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=REPO)
    assert proc.stdout.strip().splitlines()[-1] == str(["cni_logger.audit", "cni_logger.audit.commands",
                                                        "cni_logger.install", "cni_logger.install.cli",
                                                        "cni_logger.install.runtimes"])
