"""Each audit question against a trail with known answers (see conftest.py for the story)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.harness.audit import cli
from tests.harness.coverage_lines import HOST
from tests.harness.trails import DAMAGED, NET, STORAGE, Trail

SKIPPED = f"skipped {DAMAGED} lines"


def epoch(stamp: str) -> float:
    """A trail timestamp as epoch seconds, computed here independently of the tool."""
    return round(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp(), 6)


def file_lines(trail: Trail) -> list[bytes]:
    """Every event line in the trail's files, straight from disk (plain and gzipped)."""
    found = []
    for path in sorted(trail.directory.iterdir()):
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        found += data.split(b"\n")
    return found


# -- the reader: everything, in order, damage skipped ---------------------------------------------


def test_the_trail_rotated_and_was_partly_gzipped(trail: Trail) -> None:
    names = sorted(p.name for p in trail.directory.iterdir())
    assert sum(n.endswith(".gz") for n in names) >= 3, names
    assert sum(n.startswith("cni.log.") and not n.endswith(".gz") for n in names) == 1, names  # the newest backup


def test_events_reads_every_event_once_oldest_first_across_rotation_and_gzip(trail: Trail) -> None:
    result = cli("events", "--json", *trail.args())
    assert result.rc == 0
    ids = [e["event"]["id"] for e in result.json]
    assert ids == trail.ids
    assert SKIPPED in result.stderr


def test_json_output_is_the_original_lines(trail: Trail) -> None:
    result = cli("events", "--json", *trail.args())
    on_disk = set(file_lines(trail))
    for line in result.stdout.encode().splitlines():
        assert line in on_disk


def test_damage_is_counted_not_fatal_and_every_question_counts_the_same(trail: Trail) -> None:
    for argv in (["events"], ["stats"], ["leaks"], ["who-had", "10.1.0.5"], ["timeline", "ctr-a"],
                 ["events", "--container", "ctr-b"], ["events", "--pod", "web-a"]):
        result = cli(*argv, *trail.args())
        assert result.rc == 0, (argv, result.stderr)
        assert f"cni-logger {argv[0]}: {SKIPPED} (not events: damaged or foreign)" in result.stderr, argv


def test_any_file_of_the_trail_or_a_glob_stands_for_the_whole_trail(trail: Trail) -> None:
    gz = sorted(trail.directory.glob("*.gz"))[0]
    expected = cli("events", "--json", *trail.args()).stdout
    for spec in (str(gz), str(trail.directory / "cni.log*"), str(trail.directory / "*")):
        assert cli("events", "--json", "--log-file", spec).stdout == expected, spec


# -- events ---------------------------------------------------------------------------------------


def ids_of(trail: Trail, *argv: str) -> list[str]:
    result = cli("events", "--json", *argv, *trail.args())
    assert result.rc in (0, 1), result.stderr
    return [e["event"]["id"] for e in result.json]


def expected_ids(trail: Trail, predicate: object) -> list[str]:
    assert callable(predicate)
    return [e["event"]["id"] for e in trail.events if predicate(e)]


def test_events_by_container_prefix(trail: Trail) -> None:
    assert ids_of(trail, "--container", "ctr-a") == expected_ids(trail, lambda e: e["cni"]["container_id"] == "ctr-a")
    assert len(ids_of(trail, "-c", "ctr-a")) == 3
    assert ids_of(trail, "-c", "ctr-") == expected_ids(trail, lambda e: e["cni"]["container_id"])


def test_events_by_pod_namespace_network_command_outcome_ip(trail: Trail) -> None:
    assert ids_of(trail, "--pod", "web-b") == expected_ids(trail, lambda e: e["cni"]["container_id"] == "ctr-b")
    assert ids_of(trail, "--pod", "job-e") == expected_ids(trail, lambda e: e["cni"]["container_id"] == "ctr-e")
    assert ids_of(trail, "--pod", "web-*") == expected_ids(
        trail, lambda e: e["cni"]["container_id"] in ("ctr-a", "ctr-b", "ctr-f"))
    assert ids_of(trail, "--namespace", "batch") == expected_ids(trail, lambda e: e["cni"]["container_id"] == "ctr-g")
    assert ids_of(trail, "--network", STORAGE) == expected_ids(trail, lambda e: e["network"]["name"] == STORAGE)
    assert ids_of(trail, "--command", "del", "--command", "CHECK") == expected_ids(
        trail, lambda e: e["cni"]["command"] in ("DEL", "CHECK"))
    failures = ids_of(trail, "--outcome", "failure")
    assert failures == expected_ids(trail, lambda e: e["event"]["outcome"] == "failure")
    assert len(failures) == 1
    assert ids_of(trail, "--ip", "10.1.0.5") == expected_ids(trail, lambda e: "10.1.0.5" in e.get("related", {})
                                                             .get("ip", []))
    assert ids_of(trail, "--ip", "10.1.0.5/24", "--command", "ADD", "--network", NET) == expected_ids(
        trail, lambda e: e["cni"]["command"] == "ADD" and e["cni"]["container_id"] in ("ctr-a", "ctr-b"))


def test_events_by_time_range(trail: Trail) -> None:
    m = trail.marks
    between = expected_ids(trail, lambda e: m["t2"] <= e["@timestamp"] < m["t5"])
    assert len(between) == 4  # ADD ctr-b, DEL ctr-orphan, ADD ctr-e, DEL ctr-e
    assert ids_of(trail, "--since", m["t2"], "--until", m["t5"]) == between
    assert ids_of(trail, "--since", m["t4"]) == trail.ids[-1:]
    assert ids_of(trail, "--until", m["t1"]) == trail.ids[:1]
    assert ids_of(trail, "--since", "1h") == trail.ids  # relative: written moments ago
    assert ids_of(trail, "--until", "1h") == []
    assert ids_of(trail, "--since", m["t4"][:10]) == trail.ids  # a date alone: that midnight


def test_events_table_for_people(trail: Trail) -> None:
    result = cli("events", "--container", "ctr-b", *trail.args())
    assert result.rc == 0
    header = result.stdout.splitlines()[0].split()
    assert header == ["TIME", "COMMAND", "OUTCOME", "MS", "HOST", "NETWORK", "IFNAME", "CONTAINER", "POD", "ADDRESSES"]
    rows = result.rows
    assert [r[1] for r in rows] == ["ADD", "DEL", "DEL"]
    assert rows[0][4:] == [HOST, NET, "eth0", "ctr-b", "shop/web-b", "10.1.0.5"]
    assert rows[2][-1] == "-"  # the repeated DEL carried no cached result


def test_events_that_match_nothing_exit_1_quietly(trail: Trail) -> None:
    result = cli("events", "--pod", "nobody", *trail.args())
    assert (result.rc, result.stdout) == (1, "")


# -- timeline -------------------------------------------------------------------------------------


def test_timeline_of_one_container(trail: Trail) -> None:
    result = cli("timeline", "ctr-a", "--json", *trail.args())
    assert result.rc == 0
    (attachment,) = result.json
    assert (attachment["network"], attachment["container_id"], attachment["ifname"]) == (NET, "ctr-a", "eth0")
    assert (attachment["pod"], attachment["namespace"]) == ("web-a", "shop")
    assert [s["command"] for s in attachment["events"]] == ["ADD", "CHECK", "DEL"]
    assert all(s["addresses"] == ["10.1.0.5/24"] and s["outcome"] == "success" for s in attachment["events"])
    assert attachment["events"][0]["interfaces"][2] == {"name": "eth0", "mac": "ca:4d:f4:32:50:b1",
                                                        "sandbox": "/run/netns/ctr-a"}
    events = trail.by_container("ctr-a")
    assert [s["duration_ms"] for s in attachment["events"]] == [round(e["event"]["duration"] / 1e6, 3)
                                                                 for e in events]
    assert attachment["periods"] == [{"attached": events[0]["@timestamp"], "detached": events[2]["@timestamp"],
                                      "attached_epoch": epoch(events[0]["@timestamp"]),
                                      "detached_epoch": epoch(events[2]["@timestamp"]),
                                      "seen": events[0]["@timestamp"], "ended_by": "DEL", "notes": []}]
    assert [s["epoch"] for s in attachment["events"]] == [epoch(e["@timestamp"]) for e in events]


def test_timeline_groups_by_network_and_interface(trail: Trail) -> None:
    result = cli("timeline", "ctr-m", "--json", *trail.args())
    assert [(a["network"], a["ifname"], [s["command"] for s in a["events"]]) for a in result.json] == [
        (NET, "eth0", ["ADD", "DEL"]), (STORAGE, "net1", ["ADD", "DEL"])]
    assert [a["events"][0]["addresses"] for a in result.json] == [["10.1.0.20/24"], ["10.2.0.20/24"]]
    table = cli("timeline", "ctr-m", *trail.args()).stdout
    assert f"container ctr-m  network {STORAGE}  ifname net1  pod shop/multi" in table
    assert table.count("detached") == 2


def test_timeline_shows_failures_and_still_attached(trail: Trail) -> None:
    (failed,) = cli("timeline", "ctr-f", "--json", *trail.args()).json
    assert [(s["command"], s["outcome"]) for s in failed["events"]] == [("ADD", "failure"), ("DEL", "success")]
    assert "unsupported" in failed["events"][0]["error"].lower() or failed["events"][0]["error"]
    assert failed["periods"] == []
    text = cli("timeline", "ctr-c", *trail.args()).stdout
    assert "still attached at the end of the trail" in text


def test_timeline_prefix_matching_several_containers_says_so(trail: Trail) -> None:
    result = cli("timeline", "ctr-", "--json", *trail.args())
    assert result.rc == 0
    assert "matches 8 containers" in result.stderr
    assert cli("timeline", "no-such", *trail.args()).rc == 1


# -- who-had --------------------------------------------------------------------------------------


def holders(trail: Trail, ip: str, *argv: str) -> list[tuple[str, str | None, str | None]]:
    result = cli("who-had", ip, "--json", *argv, *trail.args())
    assert result.rc in (0, 1), result.stderr
    return [(h["container_id"], h["from"], h["until"]) for h in result.json]


def test_who_had_a_reused_address_at_each_time(trail: Trail) -> None:
    m, a, b = trail.marks, trail.by_container("ctr-a"), trail.by_container("ctr-b")
    assert holders(trail, "10.1.0.5", "--at", m["t1"]) == [("ctr-a", a[0]["@timestamp"], a[2]["@timestamp"])]
    assert holders(trail, "10.1.0.5", "--at", m["t3"]) == [("ctr-b", b[0]["@timestamp"], b[1]["@timestamp"])]
    for free in ("t2", "t4"):
        result = cli("who-had", "10.1.0.5", "--at", m[free], *trail.args())
        assert (result.rc, result.stdout) == (1, ""), free
        assert "nobody held 10.1.0.5" in result.stderr
    result = cli("who-had", "10.1.0.5", "--at", m["t0"], *trail.args())  # before the trail's first event
    assert (result.rc, result.stdout) == (4, ""), result.stderr
    assert "no evidence about 10.1.0.5" in result.stderr and "before the trail" in result.stderr
    # The moments of the events themselves belong to the holder (intervals are closed at both ends).
    assert holders(trail, "10.1.0.5", "--at", a[0]["@timestamp"])[0][0] == "ctr-a"
    assert holders(trail, "10.1.0.5", "--at", a[2]["@timestamp"])[0][0] == "ctr-a"


def test_who_had_without_at_lists_every_holder(trail: Trail) -> None:
    result = cli("who-had", "10.1.0.5", "--json", *trail.args())
    assert result.rc == 0
    assert [(h["container_id"], h["pod"], h["namespace"], h["network"], h["ifname"], h["ended_by"])
            for h in result.json] == [("ctr-a", "web-a", "shop", NET, "eth0", "DEL"),
                                      ("ctr-b", "web-b", "shop", NET, "eth0", "DEL")]
    assert all(h["address"] == "10.1.0.5" and h["addresses"] == ["10.1.0.5"] for h in result.json)
    table = cli("who-had", "10.1.0.5", *trail.args())
    assert [r[5] for r in table.rows] == ["ctr-a", "ctr-b"]
    assert table.stdout.splitlines()[0].split()[:4] == ["FROM", "UNTIL", "HOST", "NETWORK"]


def test_who_had_closes_at_a_del_without_cached_result(trail: Trail) -> None:
    """DEL ctr-e carried no prevResult (no address in the line): it closes the interval by container id."""
    e = trail.by_container("ctr-e")
    assert "prev_result" not in e[1]["cni"]
    assert holders(trail, "10.1.0.8") == [("ctr-e", e[0]["@timestamp"], e[1]["@timestamp"])]
    assert cli("who-had", "10.1.0.8", "--at", trail.marks["t5"], *trail.args()).rc == 1


def test_who_had_closes_at_gc_and_keeps_the_still_held(trail: Trail) -> None:
    (g,) = cli("who-had", "10.1.0.9", "--json", *trail.args()).json
    assert (g["container_id"], g["ended_by"]) == ("ctr-g", "GC")
    (c,) = cli("who-had", "10.1.0.7", "--json", *trail.args()).json
    assert (c["container_id"], c["until"], c["ended_by"]) == ("ctr-c", None, None)
    assert cli("who-had", "10.1.0.7", *trail.args()).rows[0][1] == "(still held)"
    assert holders(trail, "10.1.0.7", "--at", "now")[0][0] == "ctr-c"


def test_who_had_ignores_failed_adds_and_unknown_addresses(trail: Trail) -> None:
    # Nobody in the events read, but the end of the live file holds a lost event (a glued, cut-short ADD of
    # ctr-m): it might have been anyone's, so "never held" is not certain: no evidence, status 4.
    assert cli("who-had", "10.1.0.6", *trail.args()).rc == 4  # ctr-f's ADD failed
    result = cli("who-had", "192.0.2.1", *trail.args())
    assert (result.rc, result.stdout) == (4, "")
    assert "events of ctr-m may be missing" in result.stderr


def test_who_had_answers_the_same_without_the_prefilter(trail: Trail) -> None:
    for ip in ("10.1.0.5", "10.1.0.8", "10.1.0.9", "10.1.0.7", "10.2.0.20"):
        fast = cli("who-had", ip, "--json", *trail.args())
        slow = cli("who-had", ip, "--json", "--no-prefilter", *trail.args())
        assert fast.stdout == slow.stdout and fast.rc == slow.rc == 0, ip


# -- leaks ----------------------------------------------------------------------------------------


def test_leaks_finds_the_never_deleted_and_the_del_without_add(trail: Trail) -> None:
    result = cli("leaks", "--json", *trail.args())
    assert result.rc == 0
    found = [(x["kind"], x["container_id"]) for x in result.json]
    # The orphan DEL has no cached result: the runtime's clean-up after a failed ADD, listed apart.
    assert found == [("never-deleted", "ctr-c"), ("cleanup-del", "ctr-orphan")]
    leak, orphan = result.json
    assert leak["addresses"] == ["10.1.0.7"] and leak["pod"] == "db-c" and leak["age_seconds"] > 0
    assert leak["from"] == trail.by_container("ctr-c")[0]["@timestamp"]
    assert (orphan["cached_result"], orphan["del_outcome"], orphan["pod"]) == (False, "success", "ghost")
    # Not reported: the repeated DEL of ctr-b, the DEL after ctr-f's failed ADD, ctr-g (collected by GC).


def test_leaks_older_than(trail: Trail) -> None:
    result = cli("leaks", "--older-than", "1h", "--json", *trail.args())
    assert [(x["kind"], result.rc) for x in result.json] == [("cleanup-del", 1)]  # not a leak: status 1
    table = cli("leaks", "--older-than", "0s", *trail.args())
    # listed apart, under a heading of their own
    assert [r[0] for r in table.rows] == ["never-deleted", "not leaks, listed apart: 1 clean-up DEL of a failed ADD",
                                          "KIND", "cleanup-del"]
    assert table.rows[0][1] == "leaked", table.stdout  # written here; its namespace /run/netns/ctr-c never existed


def test_who_had_on_a_trail_without_events_has_no_evidence(tmp_path: Path) -> None:
    """An empty file, or an export that is empty, covers no time: "nobody held it" would be an answer the trail
    cannot vouch for."""
    empty = tmp_path / "cni.log"
    empty.write_bytes(b"")
    for question in (["10.1.0.9"], ["10.1.0.0/24"]):
        for source in (str(empty), "-"):  # stdin: nothing
            result = cli("who-had", *question, "--log-file", source)
            assert (result.rc, result.stdout) == (4, ""), (question, source)
            assert f"no evidence about {question[0]}: the trail has no events" in result.stderr
            assert "nobody held" not in result.stderr


def test_leaks_on_a_trail_without_events_has_no_evidence(tmp_path: Path) -> None:
    """``leaks`` on an empty file, or an empty export on stdin, cannot say "no leaks": the trail covers no time,
    so it answers as ``who-had`` does there (no evidence, status 4, said on stderr)."""
    empty = tmp_path / "cni.log"
    empty.write_bytes(b"")
    for source in (str(empty), "-"):  # stdin: nothing
        for fmt in ("table", "json"):
            result = cli("leaks", "--format", fmt, "--log-file", source)
            assert (result.rc, result.stdout) == (4, ""), (source, fmt, result)
            assert "no evidence about leaks: the trail has no events" in result.stderr, result
            assert "no leaks" not in result.stderr, result


def test_leaks_on_a_clean_trail_exit_1(tmp_path: Path, trail: Trail) -> None:
    clean = tmp_path / "clean.log"
    a = [json.dumps(e) for e in trail.by_container("ctr-a")]
    clean.write_text("\n".join(a) + "\n")
    result = cli("leaks", "--log-file", str(clean))
    assert (result.rc, result.stdout) == (1, "")  # stdout empty for scripts; the empty answer said on stderr:
    assert result.stderr == "cni-logger leaks: no leaks: every ADD has its DEL and every DEL its ADD (searched 3 " \
                            "events in 1 file)\n"


# -- stats ----------------------------------------------------------------------------------------


def test_stats_counts_and_latency(trail: Trail) -> None:
    result = cli("stats", "--json", *trail.args())
    assert result.rc == 0
    (report,) = result.json
    commands: dict[str, int] = {}
    for e in trail.events:
        commands[e["cni"]["command"]] = commands.get(e["cni"]["command"], 0) + 1
    assert report["events"] == len(trail.events)
    assert report["commands"] == dict(sorted(commands.items(), key=lambda kv: -kv[1])) or \
        sorted(report["commands"].items()) == sorted(commands.items())
    assert report["outcomes"] == {"success": len(trail.events) - 1, "failure": 1}
    assert report["networks"] == {NET: len(trail.events) - 2, STORAGE: 2}
    assert (report["first"], report["last"]) == (trail.events[0]["@timestamp"], trail.events[-1]["@timestamp"])
    durations = sorted(e["event"]["duration"] for e in trail.events)
    for p in (50, 90, 99):
        exact = durations[max(0, -(-p * len(durations) // 100) - 1)] / 1e6  # nearest rank
        assert report["latency_ms"]["all"][f"p{p}"] == pytest.approx(exact, rel=0.01), p
    assert report["latency_ms"]["all"]["max"] == round(durations[-1] / 1e6, 3)
    assert report["latency_ms"]["ADD"]["count"] == commands["ADD"]


def test_stats_counts_the_failed_adds_recorded_and_inferred(trail: Trail) -> None:
    (report,) = cli("stats", "--json", *trail.args()).json
    # ctr-f's ADD failed in the logger (recorded); ctr-orphan's DEL, with no ADD and no cached result, is the
    # clean-up of an ADD that failed before the logger (inferred). Not inferred: ctr-f's DEL after its failed
    # ADD, ctr-b's repeated DEL, ctr-e's DEL without a result after its ADD.
    assert report["failed"] == {"total": 2, "by_command": {"ADD": 2}, "recorded": {"ADD": 1}, "inferred_adds": 1,
                                "failed_attempts": {}, "no_outcome": {"ADD": 0, "CHECK": 0}, "bracket": False}
    table = cli("stats", *trail.args())
    assert "failed invocations: 2 (ADD 2)" in table.stdout and "  ADD 2: 1 recorded as failed; 1 inferred from the " \
        "runtime's clean-up DEL (no ADD, no cached result)" in table.stdout, table.stdout
    assert "'cni-logger install --bracket' records every attempt" in table.stderr  # only the inference here
    rows = cli("stats", "--format", "csv", *trail.args()).stdout.splitlines()
    assert "failed,ADD,2,,,,," in rows


def test_stats_table_and_filters(trail: Trail) -> None:
    result = cli("stats", "--network", STORAGE, *trail.args())
    assert result.rc == 0
    assert result.stdout.startswith("events: 2  (")
    assert "LATENCY (ms)" in result.stdout and "P99" in result.stdout
    (report,) = cli("stats", "--json", "--pod", "web-b", *trail.args()).json
    assert report["commands"] == {"DEL": 2, "ADD": 1}
    assert cli("stats", "--since", "now", *trail.args()).rc == 1


# -- conventions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["events", "--since", "tomorrowish"], ["events", "--until", "2h30"], ["who-had", "not-an-ip"],
    ["who-had", "10.0.0.1", "--at", "soon"], ["leaks", "--older-than", "ages"], ["events", "--command", "FROB"],
    ["events", "--outcome", "meh"], ["follow", "--max-events", "0"], ["timeline"], ["frobnicate"],
])
def test_usage_errors_exit_2_with_a_message_on_stderr(argv: list[str], trail: Trail) -> None:
    result = cli(*argv, *trail.args())
    assert result.rc == 2
    assert result.stdout == ""
    assert "error:" in result.stderr


def test_a_missing_log_file_exits_2(tmp_path: Path) -> None:
    result = cli("events", "--log-file", str(tmp_path / "nope.log"))
    assert result.rc == 2
    assert "nope.log: no such file" in result.stderr
    assert cli("events", "--log-file", str(tmp_path / "*.log")).stderr.endswith("no files match\n")
    assert cli("events", "--log-file", str(tmp_path)).rc == 2


def test_a_missing_file_next_to_a_good_one_still_answers_but_exits_2(trail: Trail, tmp_path: Path) -> None:
    result = cli("events", "--json", *trail.args(), "--log-file", str(tmp_path / "nope.log"))
    assert result.rc == 2
    assert len(result.json) == len(trail.ids)


def test_broken_pipe_is_quiet(copy_of_trail: Trail) -> None:
    """``cni-logger events | head -1`` over more output than a pipe holds: no traceback, status 0."""
    import subprocess

    from tests.harness.audit import CLI

    lines = [line for line in copy_of_trail.log.read_bytes().split(b"\n") if line.startswith(b'{"@timestamp"')
             and line.count(b'"@timestamp"') == 1 and line.endswith(b"}")]
    big = copy_of_trail.directory / "big.log"
    # Each copy with ids of its own: copies of one event are duplicates, printed once.
    big.write_bytes(b"\n".join(line.replace(b'"id":"', b'"id":"%d-' % n) for n in range(400) for line in lines)
                    + b"\n")
    proc = subprocess.run(["bash", "-c", f'set -o pipefail; "{CLI}" events --json --log-file "{big}" | head -n 1'],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    assert proc.stderr == ""


def test_no_progress_when_stderr_is_not_a_terminal(trail: Trail) -> None:
    result = cli("events", *trail.args())
    assert "scanned" not in result.stderr and "\r" not in result.stderr
