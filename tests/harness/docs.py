"""Reading the project's Markdown the way the docs check needs: code, commands, paths, links and key tables.

Deliberately small and tolerant (no Markdown library): the check must fail on a wrong name, not on a
sentence it cannot parse, so anything this module cannot read as a command, a path or a table row it
skips. ``tests/system/test_docs.py`` states the rules it applies to what this module finds.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.plugin import REPO

PROGRAM = "cni-logger"
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})([^\n]*)\n(.*?)^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
"""A fenced code block, at any indentation (a block in a list item is indented)."""
SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
SEPARATORS = re.compile(r"\|\|?|&&|;|\$\(|[()`]")
"""What ends one shell command and may start another on the same line."""
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PREFIXES = frozenset(("sudo", "exec", "time", "env", "$", "nohup", "command"))
"""Words in front of a program that leave the program in command position (``sudo cni-logger ...``)."""
OPTION = re.compile(r"^(--?[A-Za-z][A-Za-z0-9-]*)(?:=.*)?$")
SUBCOMMAND = re.compile(r"^[a-z][a-z0-9-]*$")
PLACEHOLDER = re.compile(r"[<>{}$%]|\.\.\.|…")
"""Marks a path segment as written for the reader to fill in (``<version>``, ``$ARCH``, ``...``)."""


@dataclass(frozen=True)
class Doc:
    """One Markdown file of the tree, by its path relative to the repository root."""

    relative: str

    @property
    def path(self) -> Path:
        return REPO / self.relative

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def __str__(self) -> str:
        return self.relative


@dataclass(frozen=True)
class Command:
    """A ``cni-logger`` invocation found in code: the words after the program name, and where it was."""

    words: tuple[str, ...]
    source: str

    def __str__(self) -> str:
        return f"{PROGRAM} {' '.join(self.words)}  (in {self.source})"


def fenced_blocks(text: str) -> list[str]:
    """The bodies of the fenced code blocks."""
    return [match.group(3) for match in FENCE.finditer(text)]


def without_fences(text: str) -> str:
    """The text with every fenced block blanked out (line count kept): prose and inline code only."""
    return FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)


def code_spans(text: str) -> list[str]:
    """The inline code spans outside fenced blocks, their content stripped of the padding space."""
    return [match.group(2).strip() for match in SPAN.finditer(without_fences(text))]


def _logical_lines(code: str) -> Iterator[str]:
    """Lines of shell, a trailing backslash joining a line to the next; comments dropped."""
    for line in code.replace("\\\n", " ").splitlines():
        yield re.sub(r"(^|\s)#.*", "", line)


def commands(code: str, source: str, bare: frozenset[str] = frozenset()) -> Iterator[Command]:
    """Every ``cni-logger ...`` in command position in ``code`` (a fenced block or an inline span).

    Command position: first on a line or after a shell separator (``|``, ``;``, ``&&``, ``$(``, ...), after
    ``sudo``-like words or ``VAR=value``; the program may be named by a path (``/opt/cni-logger/bin/cni-logger``).
    With ``bare`` (the subcommand names: given for inline spans), a span that starts with a subcommand name
    and a long option (``install --bracket``; not ``install -d``, coreutils') counts as one too.
    """
    first = True
    for line in _logical_lines(code):
        for segment in SEPARATORS.split(line):
            words = [word.strip("'\"") for word in segment.split()]
            while words and (words[0] in PREFIXES or ASSIGNMENT.match(words[0])):
                words.pop(0)
            if words and words[0].rsplit("/", 1)[-1] == PROGRAM:
                yield Command(tuple(words[1:]), source)
            elif first and len(words) > 1 and words[0] in bare and words[1].startswith("--"):
                yield Command(tuple(words), source)
            first = False


def options(words: tuple[str, ...]) -> list[str]:
    """The option names among ``words`` (``--since=1h`` gives ``--since``), up to a ``--`` that ends them."""
    found = []
    for word in words:
        if word == "--":
            break
        match = OPTION.match(word.strip("[],"))
        if match:
            found.append(match.group(1))
    return found


def tracked_top_level() -> frozenset[str]:
    """The top-level directories of the tree (from git: build outputs such as ``dist/`` are not in it)."""
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                                check=True, timeout=60).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        listed = [f"{p.name}/x" for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return frozenset(name.split("/", 1)[0] for name in listed if "/" in name and not name.startswith("."))


def repo_paths(text: str, tops: frozenset[str]) -> Iterator[str]:
    """Every path in ``text`` (prose or code) that starts with one of the tree's top-level directories."""
    pattern = re.compile(r"(?<![\w.~/$@:+-])(?:\./)?((?:" + "|".join(map(re.escape, sorted(tops)))
                         + r")/[^\s`'\"()\[\]|;,]*)")
    for match in pattern.finditer(text):
        path = match.group(1).split("::", 1)[0].split("#", 1)[0]
        yield path.rstrip(".:!?")


def path_exists(path: str) -> bool:
    """Whether ``path`` (relative to the root) names something in the tree: up to its first placeholder
    segment, which only its folder must exist for; a glob must match something."""
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if PLACEHOLDER.search(segment):
            return (REPO / "/".join(segments[:index])).is_dir()
    if any(c in path for c in "*?"):
        return any(REPO.glob(path.rstrip("/")))
    target = REPO / path
    return target.is_dir() if path.endswith("/") else target.exists()


def links(text: str) -> list[str]:
    """The targets of the Markdown links and images (inline and reference style) outside code."""
    prose = re.sub(SPAN, "", without_fences(text))
    return [*LINK.findall(prose), *REFERENCE.findall(prose)]


HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)[ \t#]*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def anchors(text: str) -> set[str]:
    """The ``#fragments`` a page has, as GitHub makes them from its headings (lower case, punctuation but
    ``-`` and ``_`` dropped, blanks as ``-``, ``-1``, ``-2``... after repeats), and its ``<a id=...>``."""
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(without_fences(text)):
        slug = re.sub(r"[^\w\- ]", "", re.sub(LINK, lambda m: m.group(0).split("](")[0][1:], heading).lower())
        slug = slug.replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(f"{slug}-{count}" if count else slug)
    return found


def local_link(target: str) -> tuple[str, str] | None:
    """A link into the tree as (file, fragment): the file ``""`` for an anchor of the page itself; ``None``
    for a URL or a ``mailto:``."""
    if SCHEME.match(target):
        return None
    file, _, fragment = target.partition("#")
    return file.split("?", 1)[0], fragment


def cells(row: str) -> list[str]:
    """A Markdown table row's cells (a ``|`` inside inline code, or written ``\\|``, does not split)."""
    body = row.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    out, current, ticks = [], "", 0
    for char in body:
        if char == "`":
            ticks ^= 1
        if char == "|" and not ticks and not current.endswith("\\"):
            out.append(current.strip())
            current = ""
        else:
            current = current[:-1] + char if char == "|" and current.endswith("\\") else current + char
    out.append(current.strip())
    return out


def key_table(text: str) -> dict[str, dict[str, str]]:
    """The rows of every table whose first column is headed ``Key``: by the key (its first code span),
    each row a mapping from column heading to cell."""
    rows: dict[str, dict[str, str]] = {}
    lines = without_fences(text).splitlines()
    for index, line in enumerate(lines[:-1]):
        header = cells(line) if line.lstrip().startswith("|") else []
        if not header or header[0] != "Key" or not re.match(r"^\s*\|?\s*:?-{3,}", lines[index + 1]):
            continue
        for row in lines[index + 2:]:
            if not row.lstrip().startswith("|"):
                break
            found = dict(zip(header, cells(row), strict=False))
            spans = code_spans(found.get("Key", ""))
            if spans:
                rows[spans[0]] = found
    return rows


NO_DEFAULT = object()
"""A Default cell without a code span: the key has no default value (absent, it changes nothing)."""


def documented_default(cell: str) -> Any:
    """A Default cell's value: its first code span read as JSON, or ``NO_DEFAULT`` when it has none."""
    spans = code_spans(cell)
    return json.loads(spans[0]) if spans else NO_DEFAULT
