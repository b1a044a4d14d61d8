"""A throw-away node layout for ``cni-logger install`` / ``uninstall`` tests (conf dir, bin dir, state dir
in a temporary directory: nothing here ever touches /etc, /opt or /var), and the real config shapes.

The commands run in-process through ``cni_logger.cli.tool``: the same argument parsing as the console
script.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cni_logger import cli

HERE = Path(__file__).resolve().parent
SHAPES = HERE.parent / "install" / "configs"
EXAMPLES = HERE.parents[1] / "config"


def without_logger_entries(text: str) -> str:
    """A repository example (which already has the logger) as its runtime ships it: logger entries removed."""
    doc = json.loads(text)
    doc["plugins"] = [p for p in doc["plugins"] if p["type"] != "logger"]
    indent = 3 if text.startswith("{\n   \"") else 2
    return json.dumps(doc, indent=indent) + "\n"


def shape(name: str) -> bytes:
    """A real config shape: ``tests/install/configs/<name>``, or a repository example under ``config/``."""
    local = SHAPES / name
    if local.exists():
        return local.read_bytes()
    examples = {
        "10-containerd-net.conflist": EXAMPLES / "containerd" / "10-containerd-net.conflist",
        "11-crio-ipv4-bridge.conflist": EXAMPLES / "crio" / "11-crio-ipv4-bridge.conflist",
        "87-podman-bridge.conflist": EXAMPLES / "podman" / "87-podman-bridge.conflist",
    }
    if name in examples:
        return without_logger_entries(examples[name].read_text()).encode()
    return (EXAMPLES / "rkt" / name).read_bytes()


@dataclass
class Node:
    """One fake node: where the runtime's files live and how to run the commands against them."""

    root: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def net_d(self) -> Path:
        return self.root / "net.d"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def launcher(self) -> Path:
        return self.bin_dir / "logger"

    def put(self, name: str, content: bytes | str | None = None, mode: int = 0o644) -> Path:
        path = self.net_d / name
        data = shape(name) if content is None else content
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        return path

    def install(self, *args: str) -> tuple[int, str, str]:
        """``cni-logger install --conf-dir <net.d> --bin-dir <bin> --state-dir <state> ARGS``."""
        return self.run("install", "--conf-dir", str(self.net_d), "--bin-dir", str(self.bin_dir),
                        "--state-dir", str(self.state_dir), *args)

    def uninstall(self, *args: str) -> tuple[int, str, str]:
        return self.run("uninstall", "--state-dir", str(self.state_dir), *args)

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = cli.tool(list(argv))
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    def snapshot(self) -> dict[str, tuple[str, int, int]]:
        """Every file under the node: content hash, mode and mtime — equal snapshots mean nothing was written.

        The self-check's scratch directory (``<state dir>/check``, whose per-check subdirectories come and go)
        is left out: it holds nothing a runtime or uninstall reads."""
        found = {}
        scratch = self.state_dir / "check"
        for path in sorted(self.root.rglob("*")):
            if path == scratch or scratch in path.parents:
                continue
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            found[str(path.relative_to(self.root))] = (digest, st.st_mode, st.st_mtime_ns)
        return found

    def doc(self, name: str) -> Any:
        return json.loads((self.net_d / name).read_text())
