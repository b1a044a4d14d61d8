"""The audit reads the trail's coverage events: outages, dropped events and inventories qualify its answers.

Invocation events are written by the real plugin (``tests.harness.trails.Writer``); the coverage events
(``docs/coverage-events.md``) by ``tests.harness.coverage_lines``, contract-conformant lines appended through the
plugin's own rotating sink, with the times of moments taken between the plugin's calls. The cases:

(a) a new user's case: ADD recorded, the failsafe takes the logger out, the DEL happens while
    it is out (so it is not in the trail), the logger is restored: ``who-had IP --at now`` must not answer
    "still held", exit 0;
(b) an uninstall/reinstall window: an ADD and DEL inside it are invisible, so answers about the window are
    "no evidence" or "possibly", never "nobody", exit 1;
(c) a pod whose ADD rotated away but which an inventory lists: held;
(d) an address no event names, asked about before the oldest inventory: no evidence;
(e) a complete inventory that does not list an open attachment closes it (its DEL was not recorded).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cni_logger.audit.coverage import INVENTORY_GRACE
from cni_logger.audit.timeparse import from_epoch, to_epoch
from tests.harness.audit import cli
from tests.harness.coverage_lines import append, attachment, coverage_line, inventory_lines
from tests.harness.trails import NET, Trail, Writer

CONF = "/etc/cni/net.d/10-audit.conflist"


def new_trail(tmp_path: Path) -> tuple[Trail, Writer]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    trail = Trail(tmp_path, tmp_path / "cni.log")
    return trail, Writer(trail)


def left(trail: Trail, at: str, reason: str, **more: Any) -> None:
    append(trail.log, [coverage_line("logger-left", at, network=NET, file=CONF, roles=["outcome"], reason=reason,
                                     **more)])


def entered(trail: Trail, at: str, reason: str) -> None:
    append(trail.log, [coverage_line("logger-entered", at, network=NET, file=CONF, roles=["outcome"],
                                     reason=reason)])


def later(trail: Trail, name: str, after: str, seconds: float) -> str:
    """A moment ``seconds`` after the moment ``after``, named ``name``: an inventory that closes an attachment is
    written more than ``INVENTORY_GRACE`` after its last evidence (the writer reads the result cache before it
    writes, and libcni caches an ADD's result after the logger recorded it); no sleeping, no event after it."""
    trail.marks[name] = from_epoch(to_epoch(trail.marks[after]) + seconds)
    return trail.marks[name]


def who_had(trail: Trail, address: str, *more: str) -> tuple[int, list[dict[str, Any]], str]:
    if "--at" in more:  # a time still to come is no evidence (test_grammar): ask about a moment made up ahead once
        time.sleep(max(0.0, to_epoch(more[more.index("--at") + 1]) - time.time() + 0.01))  # it has passed
    result = cli("who-had", address, "--json", *more, *trail.args())
    return result.rc, result.json, result.stderr


# -- (a) ADD recorded, failsafe out, DEL while out, restored ------------------------------------------------


def failsafe_story(tmp_path: Path) -> Trail:
    trail, w = new_trail(tmp_path)
    w.run("ADD", "ctr-a", address="10.1.0.5", pod="web-a")
    w.mark("held")
    w.mark("left")
    left(trail, trail.marks["left"], "failsafe", detail="the self-check failed: VERSION exited 1")
    w.mark("out")  # ctr-a's DEL happens now: the logger is not in the chain, nothing is recorded
    w.mark("entered")
    entered(trail, trail.marks["entered"], "restored")
    w.run("ADD", "ctr-x", address="10.1.0.30", pod="other")  # the trail goes on
    w.mark("now")
    return trail


def test_an_address_released_while_the_logger_was_out_is_possibly_held_not_held(tmp_path: Path) -> None:
    trail = failsafe_story(tmp_path)
    rc, rows, err = who_had(trail, "10.1.0.5", "--at", trail.marks["now"])
    assert rc == 3, (rows, err)
    (row,) = rows
    assert row["container_id"] == "ctr-a" and row["certainty"] == "possibly"
    note = " ".join(row["notes"])
    assert "the logger was out of network audit-net" in note and "failsafe" in note
    assert trail.marks["left"] in note and trail.marks["entered"] in note

    # Before the outage the trail is whole: held, for certain.
    rc, rows, _ = who_had(trail, "10.1.0.5", "--at", trail.marks["held"])
    assert rc == 0 and [r["certainty"] for r in rows] == ["held"]
    # While out: possibly.
    rc, rows, _ = who_had(trail, "10.1.0.5", "--at", trail.marks["out"])
    assert rc == 3 and [r["certainty"] for r in rows] == ["possibly"]
    # The listing form notes the outage on the open interval.
    rc, rows, _ = who_had(trail, "10.1.0.5")
    assert rc == 3 and any("the logger was out" in n for n in rows[0]["notes"])
    # The CIDR form, with --at and without.
    rc, rows, _ = who_had(trail, "10.1.0.0/24", "--at", trail.marks["now"])
    assert rc == 3
    assert {r["container_id"]: r["certainty"] for r in rows} == {"ctr-a": "possibly", "ctr-x": "held"}
    rc, rows, _ = who_had(trail, "10.1.0.0/24")
    assert rc == 3 and [r["container_id"] for r in rows if r["notes"]] == ["ctr-a"]


def test_leaks_does_not_call_an_attachment_deleted_while_the_logger_was_out_never_deleted(tmp_path: Path) -> None:
    trail = failsafe_story(tmp_path)
    result = cli("leaks", "--json", "--older-than", "0", *trail.args())
    kinds = {r["container_id"]: r["kind"] for r in result.json}
    assert kinds == {"ctr-a": "possibly-deleted", "ctr-x": "never-deleted"}, result.json
    (row,) = [r for r in result.json if r["container_id"] == "ctr-a"]
    assert any("possibly deleted while the logger was out" in n for n in row["notes"])
    assert result.rc == 0  # ctr-x is a leak


def test_a_restored_inventory_that_does_not_list_it_ends_it(tmp_path: Path) -> None:
    trail = failsafe_story(tmp_path)
    append(trail.log, inventory_lines(later(trail, "inventory", "now", INVENTORY_GRACE + 1),
                                      [attachment("ctr-x", "10.1.0.30", network=NET, pod="other")], [NET],
                                      trigger="restored"))
    later(trail, "after", "inventory", 1)
    rc, rows, err = who_had(trail, "10.1.0.5", "--at", trail.marks["after"])
    assert rc == 1 and rows == [], (rows, err)
    rc, rows, _ = who_had(trail, "10.1.0.5", "--at", trail.marks["out"])
    assert rc == 3 and [r["certainty"] for r in rows] == ["possibly"]
    rc, rows, _ = who_had(trail, "10.1.0.5")
    assert rc == 3 and [(r["until"], r["ended_by"]) for r in rows] == [(trail.marks["inventory"], "inventory")]
    leaks = cli("leaks", "--json", "--older-than", "0", *trail.args())
    assert {r["container_id"]: r["kind"] for r in leaks.json} == {"ctr-a": "unrecorded-del", "ctr-x": "never-deleted"}


# -- (b) an uninstall/reinstall window --------------------------------------------------------------------


def test_answers_about_an_uninstall_window_are_never_nobody(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    w.run("ADD", "ctr-a", address="10.1.0.6", pod="web-a")
    w.run("ADD", "ctr-b", address="10.1.0.8", pod="web-b")
    w.run("DEL", "ctr-b", address="10.1.0.8", pod="web-b")
    w.mark("before")
    w.mark("uninstalled")
    left(trail, trail.marks["uninstalled"], "uninstall")
    w.mark("window")  # ctr-x ADDs 10.1.0.7 and DELs it here: invisible
    w.mark("installed")
    entered(trail, trail.marks["installed"], "install")
    w.run("ADD", "ctr-c", address="10.1.0.9", pod="web-c")
    w.mark("after")
    # Nobody named 10.1.0.7 in the trail; in the window that is no evidence, outside it nobody.
    rc, rows, err = who_had(trail, "10.1.0.7", "--at", trail.marks["window"])
    assert (rc, rows) == (4, []) and "no evidence" in err and "the logger was out of network audit-net" in err, err
    rc, rows, err = who_had(trail, "10.1.0.7", "--at", trail.marks["before"])
    assert (rc, rows) == (1, []), err
    rc, rows, err = who_had(trail, "10.1.0.7")
    assert (rc, rows) == (4, []), err
    # 10.1.0.8 was released before the window: in the window, anyone may have got it.
    rc, rows, err = who_had(trail, "10.1.0.8", "--at", trail.marks["window"])
    assert (rc, rows) == (4, []), err
    # ctr-a's hold spans the window: possibly.
    rc, rows, _ = who_had(trail, "10.1.0.6", "--at", trail.marks["window"])
    assert rc == 3 and [r["certainty"] for r in rows] == ["possibly"]
    rc, rows, _ = who_had(trail, "10.1.0.6", "--at", trail.marks["before"])
    assert rc == 0
    # The subnet at that moment: qualified, never a certain partial answer.
    rc, rows, err = who_had(trail, "10.1.0.0/24", "--at", trail.marks["window"])
    assert rc == 3 and "others may have held" in err, err
    rc, rows, _ = who_had(trail, "10.1.0.0/24", "--at", trail.marks["after"])
    assert rc == 3  # ctr-a may have been deleted in the window; ctr-c is certain
    assert {r["container_id"]: r["certainty"] for r in rows} == {"ctr-a": "possibly", "ctr-c": "held"}


# -- (c), (d): an inventory as the trail's checkpoint --------------------------------------------------


def rotated_story(tmp_path: Path) -> Trail:
    """ctr-old's ADD rotates out of a trail that keeps one backup; an inventory then lists it."""
    trail, w = new_trail(tmp_path)
    small = {"logOptions": {"maxSize": 0.002, "maxBackups": 1, "compress": False}}
    w.run("ADD", "ctr-old", address="10.1.0.9", pod="old", extra=small)
    for n in range(8):
        w.run("ADD", f"ctr-{n}", address=f"10.1.0.{40 + n}", pod=f"p{n}", extra=small)
        w.run("DEL", f"ctr-{n}", address=f"10.1.0.{40 + n}", pod=f"p{n}", extra=small)
        w.mark(f"m{n}")
    w.mark("inventory")
    append(trail.log, inventory_lines(trail.marks["inventory"],
                                      [attachment("ctr-old", "10.1.0.9", network=NET, pod="old", namespace="shop")],
                                      [NET], trigger="rotation"))
    w.run("ADD", "ctr-new", address="10.1.0.10", pod="new", extra=small)
    w.mark("now")
    assert b"ctr-old" not in b"".join(p.read_bytes() for p in trail.directory.iterdir()
                                       if b"inventory" not in p.read_bytes())
    return trail


def first_event(trail: Trail) -> str:
    result = cli("stats", "--json", *trail.args())
    return str(result.json[0]["first"])


def test_a_pod_whose_add_rotated_away_but_is_in_an_inventory_is_held(tmp_path: Path) -> None:
    trail = rotated_story(tmp_path)
    rc, rows, err = who_had(trail, "10.1.0.9", "--at", trail.marks["now"])
    assert rc == 0, (rows, err)
    (row,) = rows
    assert (row["container_id"], row["certainty"], row["from"], row["pod"]) == ("ctr-old", "held", None, "old")
    rc, rows, _ = who_had(trail, "10.1.0.0/24", "--at", trail.marks["now"])
    assert {r["address"]: r["container_id"] for r in rows} == {"10.1.0.9": "ctr-old", "10.1.0.10": "ctr-new"}
    assert rc == 0
    leaks = cli("leaks", "--json", "--older-than", "0", *trail.args())
    assert "ctr-old" in {r["container_id"] for r in leaks.json if r["kind"] == "never-deleted"}


def test_before_the_oldest_inventory_an_address_no_event_names_is_no_evidence(tmp_path: Path) -> None:
    trail = rotated_story(tmp_path)
    start = first_event(trail)
    before = [m for n, m in sorted(trail.marks.items()) if n.startswith("m") and start < m < trail.marks["inventory"]]
    assert before, (start, trail.marks)
    rc, rows, err = who_had(trail, "10.1.0.99", "--at", before[-1])
    assert (rc, rows) == (4, []) and "no evidence" in err and "inventory" in err, err
    rc, rows, err = who_had(trail, "10.1.0.99", "--at", trail.marks["now"])
    assert (rc, rows) == (1, []), err
    # ctr-old before its inventory: its start is unknown, so possibly.
    rc, rows, _ = who_had(trail, "10.1.0.9", "--at", before[-1])
    assert rc == 3 and [r["certainty"] for r in rows] == ["possibly"]
    rc, rows, err = who_had(trail, "10.1.0.0/24", "--at", before[-1])
    assert rc == 3 and "others may have held" in err, err


# -- (e) a complete inventory closes what it does not list ------------------------------------------------


def test_an_inventory_not_listing_an_open_attachment_closes_it(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    w.run("ADD", "ctr-e", address="10.1.0.11", pod="web-e")  # its DEL was never recorded (lost)
    w.run("ADD", "ctr-k", address="10.1.0.12", pod="web-k")
    w.mark("between")
    append(trail.log, inventory_lines(later(trail, "inventory", "between", INVENTORY_GRACE + 1),
                                      [attachment("ctr-k", "10.1.0.12", network=NET, pod="web-k")], [NET]))
    later(trail, "after", "inventory", 1)
    rc, rows, err = who_had(trail, "10.1.0.11", "--at", trail.marks["after"])
    assert (rc, rows) == (1, []), (rows, err)
    rc, rows, _ = who_had(trail, "10.1.0.11", "--at", trail.marks["between"])
    assert rc == 3 and [r["certainty"] for r in rows] == ["possibly"]
    rc, rows, _ = who_had(trail, "10.1.0.11")
    assert rc == 3 and [(r["until"], r["ended_by"]) for r in rows] == [(trail.marks["inventory"], "inventory")]
    assert any("not listed by the inventory" in n for n in rows[0]["notes"])
    rc, rows, _ = who_had(trail, "10.1.0.12", "--at", trail.marks["after"])
    assert rc == 0
    rc, rows, _ = who_had(trail, "10.1.0.0/24", "--at", trail.marks["after"])
    assert rc == 0 and [r["container_id"] for r in rows] == ["ctr-k"]
    leaks = cli("leaks", "--json", "--older-than", "0", *trail.args())
    assert {r["container_id"]: r["kind"] for r in leaks.json} == {"ctr-e": "unrecorded-del", "ctr-k": "never-deleted"}


def test_an_incomplete_inventory_closes_nothing(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    w.run("ADD", "ctr-e", address="10.1.0.11", pod="web-e")
    w.mark("added")
    append(trail.log, inventory_lines(later(trail, "inventory", "added", INVENTORY_GRACE + 1), [], [NET],
                                      complete=False))
    later(trail, "after", "inventory", 1)
    rc, rows, _ = who_had(trail, "10.1.0.11", "--at", trail.marks["after"])
    assert rc == 0 and [r["certainty"] for r in rows] == ["held"]


# -- every command reads them ------------------------------------------------------------------------


def test_every_command_reads_coverage_events(tmp_path: Path) -> None:
    trail = failsafe_story(tmp_path)
    w = Writer(trail)
    w.mark("dropped")
    append(trail.log, [coverage_line("logger-dropped", trail.marks["dropped"], dropped=3,
                                     first=trail.marks["held"], last=trail.marks["dropped"],
                                     commands={"ADD": 2, "DEL": 1}, containers=["ctr-z"], why="disk full"),
                       coverage_line("logger-heartbeat", trail.marks["dropped"], networks=[NET], interval=60)])
    events = cli("events", *trail.args())
    assert events.rc == 0
    assert "logger-left" in events.stdout and "logger-entered" in events.stdout
    as_json = cli("events", "--json", *trail.args())
    assert len(as_json.json) == 6
    (stats,) = cli("stats", "--json", *trail.args()).json
    assert stats["events"] == 2 and stats["commands"] == {"ADD": 2}
    assert stats["coverage"]["actions"] == {"logger-left": 1, "logger-entered": 1, "logger-dropped": 1,
                                            "logger-heartbeat": 1}
    assert [o["reason"] for o in stats["coverage"]["outages"]] == ["failsafe"]
    table = cli("stats", *trail.args())
    assert table.rc == 0 and "coverage events: 4" in table.stdout
    assert cli("timeline", "ctr-a", *trail.args()).rc == 0
    follow = cli("follow", "--from-start", "--max-events", "2", "--timeout", "30", "--interval", "0.05",
                 *trail.args())  # the live file's lines (the plugin's small maxSize rotated the rest away)
    assert follow.rc == 0 and [line.split()[1] for line in follow.stdout.splitlines()[1:]] == [
        "logger-dropped", "logger-heartbeat"], follow.stdout
    assert cli("events", "--container", "ctr-a", *trail.args()).rc == 0
    # Events of ctr-z may be lost in [held, dropped]: its absence then is no evidence.
    report = cli("report", "--json", *trail.args())
    assert report.rc == 0
    coverage = report.json[0]["coverage"]
    assert [(o["network"], o["from"], o["until"], o["reason"]) for o in coverage["outages"]["listed"]] == [
        (NET, trail.marks["left"], trail.marks["entered"], "failsafe")]
    assert coverage["dropped"]["events"] == 3 and coverage["heartbeats"]["count"] == 1
    html = tmp_path / "report.html"
    assert cli("report", "--html", str(html), *trail.args()).rc == 0
    page = html.read_text()
    assert "class='outage'" in page and "Outages" in page
    text = cli("report", *trail.args())
    assert "outages (the logger was out of a chain" in text.stdout
