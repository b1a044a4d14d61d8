"""The docs name only what exists: commands and their options, files in the tree, the logger's config keys.

A reader copies what the docs show, so a renamed option, a moved file or a key added to the parser but not
to the reference must fail here, not on a node. Fast: no root, no network, no subprocess but one
``git ls-files``; the command line is asked in-process (``cni_logger.cli.build_parser``).

The files: ``README.md`` and every ``*.md`` under ``docs/``, ``config/`` and ``deploy/`` (``CHANGELOG.md`` is
history: it may name what no longer exists). The rules, kept simple:

* **Commands.** In fenced code blocks and inline code, ``cni-logger`` in command position (first on a line,
  after a shell separator, ``sudo``/``$``/``VAR=x``, or as the last part of a path) starts a command; so does
  an inline span that starts with a subcommand name followed by a long option (``install --bracket``; not
  ``install -d``, which is coreutils'). The word after the program, when it is a lower-case word, must be a
  subcommand, and every ``-x``/``--option`` after it (up to ``--``, a ``|``, ``;`` or ``#``) must be listed
  as an option in that subcommand's ``--help`` (mentioned in a help sentence is not enough); options right
  after the program are checked against the top-level ``--help``. A word that is not lower-case
  (``COMMAND``, ``<cmd>``, a version) is a placeholder or output, and the rest is not checked; so are the
  words the program's own messages put after its name (``MESSAGE_WORDS``), when a doc quotes a message.
* **Paths.** Anywhere in the text, a path that starts with one of the tree's top-level directories
  (``scripts/``, ``deploy/``, ``docs/``, ...; a ``/`` or word before it makes it another path) must exist
  relative to the root; ``::test`` and ``#anchor`` tails are ignored. A segment with a placeholder
  (``<version>``, ``$ARCH``, ``{a,b}``, ``...``) stops the check there: the folder before it must exist.
  A glob (``*``) must match something. Every relative link target must exist relative to its page, and a
  ``#fragment`` into a Markdown page must be one of its headings as GitHub makes anchors of them.
* **Config keys.** The keys the plugin's parser (``cni_logger.settings.load``) reads, found by handing it a
  config that notes every key asked for and the default passed with it, must equal the ``Key`` column of
  the key tables of ``docs/configuration.md`` and ``config/README.md``, with the same defaults (the
  ``Default`` cell's first code span as JSON; no code span: no default). In ``docs/configuration.md`` the
  logger entries of its JSON examples together set every key, each with a value of the type its row
  names, and the parser accepts them; the ``Type`` cells of the keys with a fixed set of values list
  exactly the code's values.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from cni_logger import settings
from cni_logger.cli import build_parser
from tests.harness import docs
from tests.harness.docs import NO_DEFAULT, Doc
from tests.harness.plugin import REPO
from tests.harness.settings_keys import code_keys

if TYPE_CHECKING:
    import argparse

DOCS = sorted({Doc("README.md"), *(Doc(str(p.relative_to(REPO))) for top in ("docs", "config", "deploy")
                                   for p in (REPO / top).rglob("*.md"))}, key=str)
REFERENCE = Doc("docs/configuration.md")
EXAMPLES_README = Doc("config/README.md")
MESSAGE_WORDS = frozenset(("left", "entered", "could"))
"""Words after ``cni-logger`` in the program's own messages (``cni-logger left the chain of network ...``,
``cni-logger could not write N events ...``): a doc quoting one is not naming a subcommand."""
TYPES: dict[str, tuple[type, ...]] = {"boolean": (bool,), "string": (str,), "number": (int, float),
                                      "integer": (int,), "object": (dict,), "list": (list,)}
"""The first word of a ``Type`` cell, and the JSON values it admits (a boolean is no number)."""
ENUMS: dict[str, tuple[str, ...]] = {"role": settings.ROLES, "logOptions.rotation": settings.ROTATION_MODES}


@functools.cache
def parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    return build_parser()


@functools.cache
def listed_options(subcommand: str) -> frozenset[str]:
    """The options ``cni-logger [subcommand] --help`` lists: those on the lines that start with an option,
    before the help text's column (``--format {table,json}, -o {table,json}``)."""
    top, subs = parsers()
    found: set[str] = set()
    for line in (subs[subcommand] if subcommand else top).format_help().splitlines():
        if line.strip().startswith("-"):
            head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            found.update(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", head))
    return frozenset(found)


def command_problems(command: docs.Command) -> list[str]:
    """What in one ``cni-logger ...`` does not exist (see the module docstring)."""
    if not command.words:
        return []
    head = command.words[0]
    if head.startswith("-"):
        subcommand, rest = "", command.words
    elif docs.SUBCOMMAND.match(head) and head not in MESSAGE_WORDS:
        if head not in parsers()[1]:
            return [f"no subcommand {head!r}: {command}"]
        subcommand, rest = head, command.words[1:]
    else:
        return []
    return [f"{option} is not in `cni-logger {subcommand or ''} --help`: {command}".replace("  ", " ")
            for option in docs.options(rest) if option not in listed_options(subcommand)]


def doc_commands(doc: Doc) -> list[docs.Command]:
    text = doc.text
    bare = frozenset(parsers()[1])
    found = [c for block in docs.fenced_blocks(text) for c in docs.commands(block, f"{doc}, a code block")]
    return found + [c for span in docs.code_spans(text) for c in docs.commands(span, f"{doc}, `{span}`", bare)]


@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_commands_and_options_exist(doc: Doc) -> None:
    problems = [problem for command in doc_commands(doc) for problem in command_problems(command)]
    assert not problems, "\n".join(problems)


@functools.cache
def tops() -> frozenset[str]:
    return docs.tracked_top_level()


@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_named_paths_and_links_exist(doc: Doc) -> None:
    text = doc.text
    problems = [f"{doc}: no {path} in the tree" for path in dict.fromkeys(docs.repo_paths(text, tops()))
                if not docs.path_exists(path)]
    for target in dict.fromkeys(docs.links(text)):
        local = docs.local_link(target)
        if local is None:
            continue
        page = doc.path.parent / local[0] if local[0] else doc.path
        if not page.exists():
            problems.append(f"{doc}: the link {target} leads nowhere")
        elif local[1] and page.suffix == ".md" and local[1] not in docs.anchors(page.read_text(encoding="utf-8")):
            problems.append(f"{doc}: the link {target} names no heading of {page.relative_to(REPO)}")
    assert not problems, "\n".join(problems)


# -- the logger's config keys ------------------------------------------------------------------------


def same_default(documented: Any, code: Any) -> bool:
    if documented is NO_DEFAULT:
        return code is None
    if isinstance(documented, bool) or isinstance(code, bool):
        return type(documented) is type(code) and documented == code
    return bool(documented == code)


def key_table_problems(doc: Doc) -> list[str]:
    table = docs.key_table(doc.text)
    code = code_keys()
    problems = [f"{doc}: {key} is read by cni_logger/settings.py but not in the key table" for key in code
                if key not in table]
    problems += [f"{doc}: {key} is in the key table but cni_logger/settings.py does not read it" for key in table
                 if key not in code]
    for key, row in table.items():
        if key in code and "Default" in row:
            documented = docs.documented_default(row["Default"])
            if not same_default(documented, code[key]):
                problems.append(f"{doc}: {key}: documented default {row['Default']!r}, the code's {code[key]!r}")
    return problems


def test_the_code_keys_are_found() -> None:
    """The way keys are found sees a top-level key, a nested one, and a key read only when present."""
    keys = code_keys()
    assert keys["logFile"] is None and keys["logOptions.maxSize"] == settings.DEFAULT_MAX_SIZE_MB
    assert "redactKeys" in keys and keys["logToStderr"] is True


def test_configuration_reference_lists_every_key_with_its_default() -> None:
    problems = key_table_problems(REFERENCE)
    table = docs.key_table(REFERENCE.text)
    for key, values in ENUMS.items():
        listed = {json.loads(span) for span in docs.code_spans(table.get(key, {}).get("Type", ""))}
        if listed != set(values):
            problems.append(f"{REFERENCE}: {key}: the Type cell lists {sorted(listed)}, the code {sorted(values)}")
    assert not problems, "\n".join(problems)


def logger_entries(block: str) -> list[dict[str, Any]]:
    """The logger entries of a JSON example: the config itself, or the logger entries of its ``plugins``."""
    try:
        doc = json.loads(block)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    plugins = doc.get("plugins")
    listed: list[Any] = plugins if isinstance(plugins, list) else [doc]
    return [p for p in listed if isinstance(p, dict) and p.get("type") == "logger"]


def flat(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry's keys as the key table names them (``logOptions.maxSize``)."""
    out = dict(entry)
    if isinstance(entry.get("logOptions"), dict):
        out.update({f"logOptions.{k}": v for k, v in entry["logOptions"].items()})
    return out


def test_configuration_examples_set_every_key_with_its_documented_type() -> None:
    entries = [e for block in docs.fenced_blocks(REFERENCE.text) for e in logger_entries(block)]
    assert entries, f"{REFERENCE}: no JSON example with a logger entry"
    problems = [f"{REFERENCE}: an example's value is rejected: {problem}"
                for entry in entries for problem in settings.load(entry).problems]
    table = docs.key_table(REFERENCE.text)
    seen: dict[str, Any] = {}
    for entry in entries:
        seen.update(flat(entry))
    problems += [f"{REFERENCE}: no example sets {key}" for key in code_keys() if key not in seen]
    for key, value in seen.items():
        if key in table:
            kind = table[key].get("Type", "").split(" ", 1)[0].rstrip(":,")
            admitted = TYPES.get(kind)
            if admitted is None:
                problems.append(f"{REFERENCE}: {key}: the Type cell does not start with one of {sorted(TYPES)}")
            elif not isinstance(value, admitted) or (isinstance(value, bool) and bool not in admitted):
                problems.append(f"{REFERENCE}: {key}: the example's {value!r} is not a {kind}")
    assert not problems, "\n".join(problems)


def test_config_readme_lists_every_key_with_its_default() -> None:
    problems = key_table_problems(EXAMPLES_README)
    assert not problems, "\n".join(problems)
