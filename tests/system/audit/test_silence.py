"""The audit tool never leaves an operator guessing: an empty answer says so, a page it cannot write is refused
before the scan, and the command line always means the tool.

Every case runs the virtualenv's real ``cni-logger`` as a process, on a trail the real plugin wrote.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from cni_logger import cli
from tests.harness.audit import CLI
from tests.harness.plugin import cni_env
from tests.harness.trails import Trail, Writer

ADDRESS = "10.1.0.5"


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    directory = tmp_path_factory.mktemp("silence-trail")
    built = Trail(directory, directory / "cni.log")
    w = Writer(built)
    w.run("ADD", "ctr-a", address=ADDRESS, pod="web")
    w.run("DEL", "ctr-a", address=ADDRESS, pod="web")
    return built


def tool(*args: str, env: dict[str, str] | None = None, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    def preexec() -> None:
        if umask is not None:
            os.umask(umask)

    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL, env=env, preexec_fn=preexec)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# -- an empty answer says so, once, on stderr ---------------------------------------------------------


@pytest.mark.parametrize(("args", "wanted"), [
    (["events", "--pod", "nosuchpod"], "cni-logger events: no events match (searched 2 events in 1 file)"),
    (["events", "--json", "--ip", "10.9.9.9"], "cni-logger events: no events match (searched 2 events in 1 file)"),
    (["timeline", "nosuchcontainer"], "cni-logger timeline: no ADD, CHECK or DEL of a container whose id starts "
                                      "with 'nosuchcontainer' (searched 2 events in 1 file)"),
    (["timeline", "--pod", "shop/nosuch"], "cni-logger timeline: no ADD, CHECK or DEL of pod 'shop/nosuch' "
                                           "(searched 2 events in 1 file)"),
    (["who-had", "10.9.9.9"], "cni-logger who-had: nobody held 10.9.9.9 in the trail (searched 2 events in 1 file)"),
    (["who-had", "10.9.9.0/24"], "cni-logger who-had: nobody held 10.9.9.0/24 in the trail "
                                 "(searched 2 events in 1 file)"),
    (["leaks"], "cni-logger leaks: no leaks: every ADD has its DEL and every DEL its ADD (searched 2 events in 1 "
                "file)"),
])
def test_an_empty_answer_says_so_on_stderr(trail: Trail, args: list[str], wanted: str) -> None:
    proc = tool(*args, *trail.args())
    assert (proc.returncode, proc.stdout) == (1, "")
    assert lines(proc.stderr) == [wanted]


def test_stats_with_filters_matching_nothing_says_so(trail: Trail) -> None:
    proc = tool("stats", "--pod", "nosuchpod", *trail.args())
    assert proc.returncode == 1
    assert lines(proc.stderr) == ["cni-logger stats: no events match (searched 2 events in 1 file)"]


def test_an_empty_report_window_says_so(trail: Trail) -> None:
    proc = tool("report", "--since", "2099-01-01T00:00:00Z", *trail.args())
    assert proc.returncode == 1
    assert lines(proc.stderr) == ["cni-logger report: no events in the window (read 2 events in 1 file)"]


def test_who_had_at_a_time_says_nobody_only_once(trail: Trail) -> None:
    at = trail.events[0]["@timestamp"]
    proc = tool("who-had", "10.9.9.9", "--at", at, *trail.args())
    assert (proc.returncode, proc.stdout) == (1, "")
    assert len(lines(proc.stderr)) == 1 and "nobody held 10.9.9.9" in proc.stderr


def test_an_answer_found_adds_no_line(trail: Trail) -> None:
    proc = tool("events", "--pod", "web", *trail.args())
    assert proc.returncode == 0 and proc.stdout and proc.stderr == ""


# -- report --html: refused before the scan, written whole and with the trail's mode ---------------------


def test_an_unwritable_page_path_is_one_line_and_status_2(trail: Trail, tmp_path: Path) -> None:
    for target in (tmp_path / "missing" / "page.html", tmp_path):
        proc = tool("report", "--html", str(target), *trail.args())
        assert (proc.returncode, proc.stdout) == (2, "")
        assert len(lines(proc.stderr)) == 1 and proc.stderr.startswith("cni-logger report: cannot write "), \
            proc.stderr


def test_a_read_only_directory_is_refused(trail: Trail, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory")
    tmp_path.chmod(0o555)
    try:
        proc = tool("report", "--html", str(tmp_path / "page.html"), *trail.args())
    finally:
        tmp_path.chmod(0o755)
    assert (proc.returncode, proc.stdout) == (2, "")


def test_the_page_has_the_trails_mode_and_replaces_atomically(trail: Trail, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("old")
    proc = tool("report", "--html", str(page), *trail.args(), umask=0o022)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(page.stat().st_mode) == 0o640
    assert page.read_text().startswith("<!DOCTYPE html>") or "<html" in page.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]  # no temporary file left behind


# -- the command line means the tool ------------------------------------------------------------------


def test_a_subcommand_means_the_tool_even_with_cni_command_exported(trail: Trail) -> None:
    env = {**cni_env("ADD"), "PATH": "/usr/bin:/bin"}
    proc = tool("events", *trail.args(), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "ctr-a" in proc.stdout and not proc.stdout.startswith("{")


def test_no_arguments_prints_the_banner_then_the_subcommands() -> None:
    proc = tool(env={"PATH": "/usr/bin:/bin"})
    assert (proc.returncode, proc.stdout) == (0, "")
    text = proc.stderr.splitlines()
    assert text[1].startswith("CNI protocol versions supported: ")
    listed = {line.split()[0] for line in text[2:] if line.startswith("  ")}
    assert listed == set(cli.build_parser()[1])  # the list in the banner is the parsers' list


def test_a_typo_gets_did_you_mean() -> None:
    proc = tool("evnets")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert "did you mean 'events'?" in proc.stderr


def test_a_bad_option_shows_the_subcommands_usage(trail: Trail) -> None:
    proc = tool("events", "--bogus", *trail.args())
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: cni-logger events "), proc.stderr
    assert "--bogus" in proc.stderr




def test_follow_that_times_out_empty_says_so(trail: Trail) -> None:
    proc = tool("follow", "--timeout", "0.3", "--interval", "0.05", *trail.args())
    assert (proc.returncode, proc.stdout) == (1, "")
    assert lines(proc.stderr) == ["cni-logger follow: no new events in 0.3s"]
    proc = tool("follow", "--from-start", "--pod", "nosuchpod", "--timeout", "0.3", "--interval", "0.05",
                *trail.args())
    assert (proc.returncode, proc.stdout) == (1, "")
    assert lines(proc.stderr) == ["cni-logger follow: no events match in 0.3s"]
