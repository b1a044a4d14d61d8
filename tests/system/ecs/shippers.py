"""The shippers' configurations in deploy/, read the way the tests need them, and which files each reads.

Glob semantics: Filebeat (Go ``filepath.Match``), Vector (``glob``) and Fluent Bit (``glob(3)`` for Path,
``fnmatch(3)`` for Exclude_Path) agree with ``fnmatch.fnmatchcase`` for these patterns on names without
a slash; Filebeat's ``exclude_files`` are regular expressions searched in the full path.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from typing import Any

from tests.system.ecs.ecs_schema import DEPLOY

LOG_DIR = "/var/log/cni"


def filebeat_config() -> dict[str, Any]:
    """The few settings of filebeat.yml the tests need (PyYAML is not a test dependency)."""
    text = (DEPLOY / "filebeat" / "filebeat.yml").read_text(encoding="utf-8")
    block = re.search(r"^\s*paths:\n((?:\s*(?:#.*|- .*)\n)+)", text, re.MULTILINE)
    excl = re.search(r"prospector\.scanner\.exclude_files:\n((?:\s*- .*\n)+)", text)
    length = re.search(r"^\s*prospector\.scanner\.fingerprint:\n(?:\s+\w+: .*\n)*?\s+length: (\d+)", text,
                       re.MULTILINE)
    assert block and excl and length, "filebeat.yml no longer has the expected layout"
    return {"text": text,
            "paths": re.findall(r"^\s*- (\S+)\s*$", block.group(1), re.MULTILINE),
            "exclude_files": re.findall(r"- '([^']+)'", excl.group(1)),
            "fingerprint_length": int(length.group(1))}


def fluent_bit_sections(name: str) -> list[tuple[str, dict[str, str]]]:
    """A classic Fluent Bit config: [SECTION] headers, then 'Key value' lines (keys case-insensitive)."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in (DEPLOY / "fluent-bit" / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].upper(), {}))
            continue
        key, _, value = line.partition(" ")
        sections[-1][1][key.lower()] = value.strip()
    return sections


def fluent_bit_section(name: str, section: str, plugin: str) -> dict[str, str]:
    [found] = [s for kind, s in fluent_bit_sections(name) if kind == section and s.get("name") == plugin]
    return found


def vector_config() -> dict[str, Any]:
    return tomllib.loads((DEPLOY / "vector" / "vector.toml").read_text(encoding="utf-8"))


def _match(pattern: str, path: str) -> bool:
    return fnmatch.fnmatchcase(path, pattern)


def filebeat_reads(name: str, directory: str = LOG_DIR) -> bool:
    config = filebeat_config()
    path = f"{directory}/{name}"
    paths = [p.replace(LOG_DIR, directory, 1) for p in config["paths"]]
    return any(_match(p, path) for p in paths) and not any(re.search(rx, path) for rx in config["exclude_files"])


def vector_reads(name: str, directory: str = LOG_DIR) -> bool:
    source = vector_config()["sources"]["cni_audit_files"]
    path = f"{directory}/{name}"
    include = [p.replace(LOG_DIR, directory, 1) for p in source["include"]]
    exclude = [p.replace(LOG_DIR, directory, 1) for p in source["exclude"]]
    return any(_match(p, path) for p in include) and not any(_match(p, path) for p in exclude)


def fluent_bit_reads(name: str, directory: str = LOG_DIR) -> bool:
    tail = fluent_bit_section("fluent-bit.conf", "INPUT", "tail")
    path = f"{directory}/{name}"
    included = _match(tail["path"].replace(LOG_DIR, directory, 1), path)
    return included and not fluent_bit_excludes(name, directory)


def fluent_bit_excludes(name: str, directory: str = LOG_DIR) -> bool:
    tail = fluent_bit_section("fluent-bit.conf", "INPUT", "tail")
    return any(_match(pattern, f"{directory}/{name}") for pattern in tail["exclude_path"].split(","))
