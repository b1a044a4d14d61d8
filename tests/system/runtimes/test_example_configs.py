"""The example network configs under config/ are valid and put the logger where a runtime expects it.
(No root needed; the cnitool and Podman tests also run the containerd, rkt and podman examples for real.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cnitool import CONFIG_EXAMPLES
from tests.harness.settings_keys import STANDARD_KEYS, code_keys

EXAMPLES = sorted(p for p in CONFIG_EXAMPLES.rglob("*") if p.suffix in (".conf", ".conflist", ".json"))
KNOWN_VERSIONS = {"0.3.1", "0.4.0", "1.0.0"}
LOGGER_KEYS = STANDARD_KEYS | {key for key in code_keys() if "." not in key}
LOG_OPTIONS = {key.split(".", 1)[1] for key in code_keys() if key.startswith("logOptions.")}


def test_examples_exist() -> None:
    names = {str(p.relative_to(CONFIG_EXAMPLES)) for p in EXAMPLES}
    assert {"rkt/lab-test-net-1.conf", "containerd/10-containerd-net.conflist",
            "crio/11-crio-ipv4-bridge.conflist", "podman/87-podman-bridge.conflist"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(CONFIG_EXAMPLES)))
def test_example_is_a_valid_network_config(path: Path) -> None:
    doc: dict[str, Any] = json.loads(path.read_text())
    assert doc["cniVersion"] in KNOWN_VERSIONS
    assert isinstance(doc["name"], str) and doc["name"]
    if path.suffix == ".conflist":
        plugins = doc["plugins"]
        assert plugins[-1]["type"] == "logger", "the logger goes last, so it sees the final result"
        assert [p["type"] for p in plugins].count("logger") == 1
        logger = plugins[-1]
        with_portmap = any(p["type"] == "portmap" for p in plugins)
        assert (logger.get("capabilities") == {"portMappings": True}) == with_portmap
    else:
        assert "plugins" not in doc
        logger = doc
        assert logger["type"] == "logger"
    unknown = (set(logger) - LOGGER_KEYS) | (set(logger.get("logOptions", {})) - LOG_OPTIONS)
    assert not unknown, f"keys the logger does not define: {unknown}"
    if "logFile" in logger:
        assert Path(logger["logFile"]).is_absolute()


def test_example_names_are_unique_per_directory() -> None:
    """Runtimes load a directory and match networks by name: two files with one name would be ambiguous."""
    seen: dict[tuple[Path, str], Path] = {}
    for path in EXAMPLES:
        key = (path.parent, json.loads(path.read_text())["name"])
        assert key not in seen, f"{path} and {seen[key]} both define network {key[1]!r}"
        seen[key] = path
