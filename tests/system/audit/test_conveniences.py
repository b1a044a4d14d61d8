"""What people expect from kubectl and journalctl: ``--no-headers``, ``--limit N``,
``-o`` for ``--format`` (on ``report`` too), ``--version`` with the build id, bash completion generated from the
parsers, and counts in good grammar ("1 file", "2 lines").

Every case runs a real ``cni-logger`` as a process, on a trail the real plugin wrote.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from cni_logger import __version__
from tests.harness.audit import CLI, cli
from tests.harness.plugin import REPO
from tests.harness.trails import Trail, Writer


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    directory = tmp_path_factory.mktemp("conveniences-trail")
    built = Trail(directory, directory / "cni.log")
    w = Writer(built)
    for number in range(1, 6):
        w.run("ADD", f"ctr-{number}", address=f"10.1.0.{number}", pod=f"web-{number}")
    w.run("DEL", "ctr-1", address="10.1.0.1", pod="web-1")
    w.run("ADD", "ctr-9", address="10.1.0.1", pod="web-9")
    return built


# -- --no-headers -------------------------------------------------------------------------------------


def test_no_headers_prints_the_rows_only(trail: Trail) -> None:
    for argv in (["events"], ["who-had", "10.1.0.1"], ["who-had", "10.1.0.0/24"], ["timeline", "ctr-1"]):
        plain = cli(*argv, *trail.args()).stdout.splitlines()
        bare = cli(*argv, "--no-headers", *trail.args()).stdout.splitlines()
        assert plain[0].split()[0] in ("TIME", "FROM", "ADDRESS", "container"), plain
        assert bare == [line for line in plain if line.split()[0] not in ("TIME", "FROM", "ADDRESS")], argv
    report = cli("report", "--no-headers", *trail.args()).stdout
    assert "NETWORK" in cli("report", *trail.args()).stdout and "NETWORK" not in report and "audit-net" in report
    leaks = cli("leaks", "--no-headers", *trail.args()).stdout.splitlines()
    assert len(leaks) == 5 and all(line.startswith("never-deleted ") for line in leaks)
    rows = cli("events", "-o", "csv", "--no-headers", *trail.args()).stdout.splitlines()
    assert len(rows) == len(trail.events) and not rows[0].startswith("time,")


# -- --limit N ----------------------------------------------------------------------------------------


def test_limit_prints_the_first_rows_and_says_so_on_stderr(trail: Trail) -> None:
    full = cli("events", *trail.args())
    limited = cli("events", "--limit", "2", *trail.args())
    assert limited.rc == 0
    assert limited.stdout.splitlines() == full.stdout.splitlines()[:3]  # the header and two rows
    wanted = f"cni-logger events: output limited to the first 2 of {len(trail.events)} events (--limit 2)\n"
    assert limited.stderr == wanted
    as_json = cli("events", "--limit", "3", "--json", *trail.args())
    assert [e["event"]["id"] for e in as_json.json] == trail.ids[:3]
    one = cli("leaks", "--limit", "1", "--json", *trail.args())
    assert len(one.json) == 1 and "output limited to the first 1 of 5 rows (--limit 1)" in one.stderr
    assert one.rc == 0  # the status is the whole answer's
    holders = cli("who-had", "10.1.0.1", "--limit", "1", "--json", *trail.args())
    assert [h["container_id"] for h in holders.json] == ["ctr-1"]
    assert "the first 1 of 2 holders (--limit 1)" in holders.stderr
    # as many as there are: nothing was left out, nothing to say
    enough = cli("events", "--limit", str(len(trail.events)), *trail.args())
    assert enough.stderr == "" and enough.stdout == full.stdout
    assert cli("events", "--limit", "0", *trail.args()).rc == 2


def test_stats_limit_keeps_the_largest_counts_of_each_table(trail: Trail) -> None:
    """``stats --limit N``: each count table keeps its N largest rows, in every format; the totals and the latency
    stay whole, and stderr says what was left out."""
    full = json.loads(cli("stats", "--json", *trail.args()).stdout)
    assert full["commands"] == {"ADD": 6, "DEL": 1}
    limited = cli("stats", "--json", "--limit", "1", *trail.args())
    assert limited.rc == 0
    data = json.loads(limited.stdout)
    assert data["commands"] == {"ADD": 6} and data["events"] == 7 and data["latency_ms"] == full["latency_ms"]
    assert limited.stderr.splitlines()[-1] == ("cni-logger stats: output limited to the first 1 rows of each table "
                                               "(--limit 1): 1 command not shown")
    table = cli("stats", "--limit", "1", *trail.args()).stdout.split("\n\n")
    assert "COMMAND                   EVENTS\nADD                       6" in table  # the DEL row left out
    assert any(block.startswith("LATENCY") and "\nDEL " in block for block in table)  # the latency stays whole
    rows = cli("stats", "-o", "csv", "--limit", "1", *trail.args()).stdout.splitlines()
    assert any(r.startswith("command,ADD,6") for r in rows) and not any(r.startswith("command,DEL") for r in rows)
    assert cli("stats", "--limit", "2", *trail.args()).stderr == cli("stats", *trail.args()).stderr  # all shown
    assert cli("stats", "--limit", "0", *trail.args()).rc == 2


def test_report_limit_lists_the_first_rows_of_each_list(trail: Trail) -> None:
    """``report --limit N``: each list shows its first N rows, every one still counted (text, JSON and the page
    alike); stderr says how many were not listed; the exit status is the whole report's."""
    full = json.loads(cli("report", "--json", *trail.args()).stdout)
    never = full["leaks"]["never_deleted"]
    assert never["count"] == 5 and len(never["listed"]) == 5
    limited = cli("report", "--json", "--limit", "2", *trail.args())
    assert limited.rc == 0
    data = json.loads(limited.stdout)
    assert data["leaks"]["never_deleted"] == {"count": 5, "listed": never["listed"][:2]}
    assert data["stats"] == full["stats"] and data["networks"] == full["networks"]
    assert ("cni-logger report: output limited to the first 2 rows of each list (--limit 2): 3 rows not listed"
            in limited.stderr.splitlines())
    text = cli("report", "--limit", "2", *trail.args()).stdout
    assert "never deleted (still held at the end of the trail): 5 (first 2 listed)" in text.splitlines()
    assert "output limited" not in cli("report", "--limit", "5", *trail.args()).stderr


# -- -o, --format on report -----------------------------------------------------------------------------


def test_o_is_format(trail: Trail) -> None:
    for argv in (["events"], ["timeline", "ctr-1"], ["stats"], ["who-had", "10.1.0.1"]):
        for fmt in ("json", "csv"):
            assert cli(*argv, "-o", fmt, *trail.args()).stdout == cli(*argv, "--format", fmt, *trail.args()).stdout


def test_report_takes_format(trail: Trail) -> None:
    (data,) = cli("report", "-o", "json", *trail.args()).json
    assert data["trail"]["events_in_window"] == len(trail.events)
    assert cli("report", "--format", "json", *trail.args()).json[0]["trail"]["files"] == data["trail"]["files"]
    assert cli("report", "--json", *trail.args()).json[0]["networks"] == data["networks"]
    text = cli("report", "--format", "table", *trail.args())
    assert text.rc == 0 and text.stdout.startswith("report for the whole trail")
    rows = list(csv.DictReader(io.StringIO(cli("report", "-o", "csv", *trail.args()).stdout, newline="")))
    counts = {(r["section"], r["name"]): int(r["count"]) for r in rows}
    assert counts[("trail", "events_in_window")] == len(trail.events)
    assert counts[("trail", "files")] == len(data["trail"]["files"])
    assert counts[("leaks", "never_deleted")] == 5  # ctr-2..5 and ctr-9
    tsv = cli("report", "-o", "tsv", *trail.args()).stdout.splitlines()
    assert tsv[0].split("\t") == ["section", "name", "count"] and len(tsv) == len(rows) + 1


# -- --version ------------------------------------------------------------------------------------------


def test_version_names_the_build(tmp_path: Path) -> None:
    plain = cli("--version")
    assert (plain.rc, plain.stdout.strip()) == (0, f"cni-logger {__version__}")  # not a bundle: no build id
    # a bundle's layout: <folder>/BUILD_ID beside lib/python3.11/site-packages/cni_logger
    folder = tmp_path / "cni-logger-bundle"
    site = folder / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "cni_logger").symlink_to(REPO / "cni_logger")
    (folder / "BUILD_ID").write_text("0123456789abcdef\n")
    # -S: no .pth files, so the virtualenv's editable install cannot take cni_logger from the checkout instead
    venv_site = next((REPO / ".venv" / "lib").glob("python3.*/site-packages"))
    program = f"import sys; sys.path[:0] = [{str(site)!r}, {str(venv_site)!r}]; from cni_logger.cli import main; main()"
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-I", "-S", "-c", program, "--version"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"cni-logger {__version__} (build 0123456789abcdef)")


# -- completion -----------------------------------------------------------------------------------------


def complete(words: str) -> list[str]:
    """What bash offers after ``words`` (the cursor at the end), with the script ``cni-logger completion bash``
    printed, sourced into a real bash, and its function called as bash calls it on TAB."""
    script = cli("completion", "bash")
    assert script.rc == 0, script.stderr
    line = f"cni-logger {words}"
    program = ('source /dev/stdin <<< "$1"; read -ra COMP_WORDS <<< "$2"; [[ $2 == *" " ]] && COMP_WORDS+=("")\n'
               'COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_LINE=$2; COMP_POINT=${#COMP_LINE}\n'
               'complete -p cni-logger\n'
               '_cni_logger_complete cni-logger "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
               'printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", program, "bash", script.stdout, line],
                          capture_output=True, text=True, timeout=60, check=False, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    registered, *offered = proc.stdout.splitlines()
    assert registered.endswith(" cni-logger") and "-F _cni_logger_complete" in registered, registered
    return sorted(o for o in offered if o)


def test_completion_offers_subcommands_and_their_options() -> None:
    assert complete("wh") == ["who-had"]
    assert set(complete("")) >= {"events", "who-had", "leaks", "report", "install", "completion"}
    assert complete("report --ht") == ["--html"]
    assert set(complete("events --no-")) == {"--no-headers", "--no-prefilter", "--no-trunc"}
    assert complete("events --format c") == ["csv"]  # an option's choices
    assert complete("events -o t") == ["table", "tsv"]
    assert "--older-than" in complete("leaks --")
    assert "--max-bars" not in complete("leaks --")  # each subcommand its own options


def test_completion_is_generated_from_the_parsers() -> None:
    from cni_logger import cli as tool

    script = cli("completion", "bash").stdout
    for name, parser in tool.build_parser()[1].items():
        assert name in script
        for action in parser._actions:
            for option in action.option_strings:
                assert option in script, (name, option)
    bad = cli("completion", "fish")
    assert bad.rc == 2 and "bash" in bad.stderr


# -- counts in good grammar ----------------------------------------------------------------------------


def test_a_mistyped_option_gets_a_suggestion() -> None:
    result = cli("who-had", "10.1.0.9", "--hots", "node-a", "--log-file", "/dev/null")
    assert result.rc == 2 and "unrecognized arguments: --hots node-a (--hots: did you mean --host?)" in result.stderr
    assert "usage: cni-logger who-had" in result.stderr  # the subcommand's usage, where --host is
    assert "did you mean" not in cli("who-had", "10.1.0.9", "--zzzzzz", "--log-file", "/dev/null").stderr


def test_one_is_singular(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    trail = Trail(tmp_path, log)
    Writer(trail).run("ADD", "ctr-1", address="10.1.0.1", pod="web-1")
    with log.open("ab") as out:
        out.write(b"not an event\n")
    text = cli("report", *trail.args())
    assert "trail: 1 file," in text.stdout, text.stdout
    assert "skipped 1 line (not events" in text.stderr, text.stderr
    events = cli("events", *trail.args())
    assert "skipped 1 line (not events" in events.stderr and "1 lines" not in events.stderr


def test_report_json_is_one_object(trail: Trail) -> None:
    proc = subprocess.run([CLI, "report", "-o", "json", *trail.args()], capture_output=True, text=True, timeout=60,
                          check=False)
    assert len(proc.stdout.splitlines()) == 1 and isinstance(json.loads(proc.stdout), dict)


def test_follow_stops_at_the_limit(trail: Trail, tmp_path: Path) -> None:
    live = tmp_path / "cni.log"  # every event in the live file, which --from-start prints first
    live.write_text("".join(json.dumps(e) + "\n" for e in trail.events))
    proc = cli("follow", "--from-start", "--limit", "2", "--no-headers", "--timeout", "30", "--interval", "0.05",
               "--log-file", str(live))
    assert proc.rc == 0
    assert [line.split()[7] for line in proc.stdout.splitlines()] == ["ctr-1", "ctr-2"]
