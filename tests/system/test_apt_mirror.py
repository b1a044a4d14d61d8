"""scripts/lib/apt-mirror.sh: the Debian archive comes from the machine's apt configuration (users run
internal mirrors), never from a host written into the tree.

No host is named here either: the sources lists below use host names made up at run time, and the check
of the tree looks for the archive this machine's apt is configured with, read at run time as the scripts
read it, and for apt source lines with a literal host.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.harness.plugin import REPO

LIB = REPO / "scripts" / "lib" / "apt-mirror.sh"
SOURCE_LINE = re.compile(r"^[\s#]*(?:deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)https?://[A-Za-z0-9]",
                         re.MULTILINE | re.IGNORECASE)
"""An apt source (one-line ``deb http://...`` or deb822 ``URIs: http://...``, also commented out) whose host
is written out, not taken from a variable."""


def mirror(etc: Path | None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``debian_mirror`` with the apt configuration in ``etc`` (``None``: the machine's own)."""
    where = {"APT_ETC": str(etc)} if etc is not None else {}
    return subprocess.run(["bash", "-c", f'. "{LIB}" && debian_mirror'], capture_output=True, text=True,
                          check=False, timeout=30, env={"PATH": "/usr/bin:/bin", **where, **(env or {})})


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


@pytest.fixture
def host() -> Callable[[], str]:
    """A new made-up host name (one label of random hex) each call."""
    return lambda: f"h{secrets.token_hex(6)}"


def test_deb822_skips_the_security_archive_and_disabled_entries(etc: Path, host: Callable[[], str]) -> None:
    security, disabled, chosen, second = host(), host(), host(), host()
    (etc / "sources.list.d" / "debian.sources").write_text(
        f"Types: deb\n# a comment\nURIs: http://{security}/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        f"Types: deb\nEnabled: no\nURIs: http://{disabled}/debian\nSuites: bookworm\nComponents: main\n\n"
        f"types: deb deb-src\nuris: https://{chosen}/debian/ http://{second}/debian\n"
        "suites: bookworm bookworm-updates\ncomponents: contrib main\n")
    proc = mirror(etc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"https://{chosen}/debian\n"


def test_one_line_sources_list_with_options(etc: Path, host: Callable[[], str]) -> None:
    commented, security, chosen = host(), host(), host()
    (etc / "sources.list").write_text(
        f"# deb http://{commented}/debian bookworm main\n"
        f"deb [signed-by=/k.gpg arch=amd64] http://{security}/debian-security bullseye-security main\n"
        f"deb http://{security}/debian-security buster/updates main\n"
        f"deb [trusted=yes] http://{chosen}:3142/debian bookworm main contrib\n")
    assert mirror(etc).stdout == f"http://{chosen}:3142/debian\n"


def test_deb822_wins_over_the_one_line_list(etc: Path, host: Callable[[], str]) -> None:
    old, new = host(), host()
    (etc / "sources.list").write_text(f"deb http://{old}/debian bookworm main\n")
    (etc / "sources.list.d" / "x.sources").write_text(
        f"Types: deb\nURIs: http://{new}/debian\nSuites: trixie\nComponents: main\n")
    assert mirror(etc).stdout == f"http://{new}/debian\n"


def test_none_configured_fails_and_the_override_wins(etc: Path, host: Callable[[], str]) -> None:
    proc = mirror(etc)
    assert proc.returncode == 1 and proc.stdout == ""
    override = host()
    assert mirror(etc, {"DEBIAN_MIRROR": f"http://{override}/debian/"}).stdout == f"http://{override}/debian\n"


def tree_files() -> list[Path]:
    """The tracked text files: scripts, tests, docs, deploy and the rest."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True,
                           timeout=60).stdout.decode().split("\0")
    return [REPO / name for name in names if name and (REPO / name).is_file()]


def configured_archive() -> str | None:
    """What names this machine's Debian archive, read as the scripts read it: its host name, or its whole
    URI when the host is an address (an address alone also turns up in unrelated examples)."""
    proc = mirror(None)
    uri = proc.stdout.strip()
    host = urlsplit(uri).hostname if proc.returncode == 0 else None
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return uri


def test_the_tree_names_neither_this_machines_archive_nor_any_apt_host() -> None:
    """The archive this machine uses appears nowhere in the tree, and no apt source line is written with a
    host of its own: the scripts write the one ``debian_mirror`` prints."""
    archive = configured_archive()
    named = re.compile(rf"(?<![\w.-]){re.escape(archive)}(?![\w-]|\.\w)", re.IGNORECASE) if archive else None
    problems = []
    for path in tree_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        if named is not None and named.search(text):
            problems.append(f"{path.relative_to(REPO)} names this machine's Debian archive")
        if SOURCE_LINE.search(text):
            problems.append(f"{path.relative_to(REPO)} has an apt source line with a written-out host")
    assert not problems, "\n".join(problems)
    if archive is None:
        pytest.skip("this machine's apt configuration names no Debian archive: only the source lines were checked")
