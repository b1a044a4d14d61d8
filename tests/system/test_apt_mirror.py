"""scripts/lib/apt-mirror.sh: the Debian archive comes from the machine's apt configuration (users run
internal mirrors), never from a host written into the scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness.plugin import REPO

LIB = REPO / "scripts" / "lib" / "apt-mirror.sh"


def mirror(etc: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f'. "{LIB}" && debian_mirror'], capture_output=True, text=True,
                          check=False, timeout=30, env={"PATH": "/usr/bin:/bin", "APT_ETC": str(etc), **(env or {})})


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def test_deb822_skips_the_security_archive_and_disabled_entries(etc: Path) -> None:
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://disabled.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "types: deb deb-src\nuris: https://mirror.corp.example/debian/ http://second.example/debian\n"
        "suites: bookworm bookworm-updates\ncomponents: contrib main\n")
    proc = mirror(etc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "https://mirror.corp.example/debian\n"


def test_one_line_sources_list_with_options(etc: Path) -> None:
    (etc / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg arch=amd64] http://security.example/debian-security bullseye-security main\n"
        "deb http://security.example/debian-security buster/updates main\n"
        "deb [trusted=yes] http://apt.internal:3142/debian bookworm main contrib\n")
    assert mirror(etc).stdout == "http://apt.internal:3142/debian\n"


def test_deb822_wins_over_the_one_line_list(etc: Path) -> None:
    (etc / "sources.list").write_text("deb http://old.example/debian bookworm main\n")
    (etc / "sources.list.d" / "x.sources").write_text(
        "Types: deb\nURIs: http://new.example/debian\nSuites: trixie\nComponents: main\n")
    assert mirror(etc).stdout == "http://new.example/debian\n"


def test_none_configured_fails_and_the_override_wins(etc: Path) -> None:
    proc = mirror(etc)
    assert proc.returncode == 1 and proc.stdout == ""
    assert mirror(etc, {"DEBIAN_MIRROR": "http://override.example/debian/"}).stdout == (
        "http://override.example/debian\n")


def test_no_script_names_a_mirror_host() -> None:
    scripts = [*(REPO / "scripts").rglob("*.sh"), *(REPO / "scripts").rglob("*.py")]
    for script in [*scripts, REPO / "deploy" / "Containerfile"]:
        assert "deb.debian.org" not in script.read_text(), script
