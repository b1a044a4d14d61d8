"""No confident wrong answer the surviving data could have avoided, in every form of the question.

Each trail is written by the real plugin (``tests.harness.trails.Writer``); damage is added the way it happens to
real files (a cut-short line appended, a backup replaced by an older copy), and the questions are asked of the
real ``cni-logger`` as a process:

* "nobody" after a damaged stretch that may hold the holder's ADD (between the asked time and the address's last
  evidence before it) is no evidence (4), not "nobody" (1); rows there are qualified (3);
* ``timeline`` ends an attachment whose DEL was lost where ``who-had`` and ``leaks`` do (superseded);
* a holding known only from a DEL with its cached result is listed by ``who-had CIDR`` and counted by ``report``;
* a holder first seen through a CHECK supersedes the still-open previous holder; an unknown start has the same
  floor (the previous holder's end) in the CIDR form as in the IP form;
* a backup smaller than the ``maxSize`` in force when it was rotated is reported as damage;
* a proven conflict is said as a certain answer, in one voice (ENDED BY and NOTE agree, ids as the column has them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.harness.audit import cli
from tests.harness.trails import NET, Trail, Writer

BIG = {"logOptions": {"maxSize": 10, "maxBackups": 0}}
"""No rotation: one file."""
A64 = "a" * 63 + "1"
B64 = "b" * 63 + "2"


def new_trail(tmp_path: Path) -> tuple[Trail, Writer]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    trail = Trail(tmp_path, tmp_path / "cni.log")
    return trail, Writer(trail)


def run(w: Writer, command: str, cid: str, address: str = "", extra: dict[str, Any] | None = None,
        **more: Any) -> dict[str, Any]:
    return w.run(command, cid, address=address, pod=cid[:8], extra=BIG if extra is None else extra, **more)


def cut_short(trail: Trail, command: str, cid: str) -> None:
    """A write cut short (the writer killed mid-line), the next event on a line of its own: its container is named."""
    with open(trail.log, "ab") as out:
        out.write(b'{"@timestamp":"2026-01-01T00:00:00.000000Z","message":"CNI ' + command.encode()
                  + b" eth0 of container " + cid.encode() + b"\n")


# -- 1. "nobody" after damage that may hold the ADD ----------------------------------------------------------


def test_nobody_after_a_damaged_stretch_that_may_hold_an_add_is_no_evidence(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    run(w, "ADD", "ctr-a", "10.1.0.5")
    run(w, "DEL", "ctr-a", "10.1.0.5")
    cut_short(trail, "ADD", "ctr-b")  # ctr-b's ADD of 10.1.0.5, lost
    run(w, "ADD", "ctr-x", "10.1.0.30")
    w.mark("later")  # nothing covers this moment: the trail goes on after the damage
    at = trail.marks["later"]
    result = cli("who-had", "10.1.0.5", "--at", at, "--json", *trail.args())
    assert result.rc == 4 and result.json == [], (result.rc, result.stdout, result.stderr)
    assert "no evidence about 10.1.0.5" in result.stderr and "damaged" in result.stderr
    # The subnet form: 10.1.0.30 is held for certain, but 10.1.0.5 may be held unseen.
    subnet = cli("who-had", "10.1.0.0/24", "--at", at, "--json", *trail.args())
    assert subnet.rc == 3, (subnet.rc, subnet.stdout, subnet.stderr)
    assert [r["address"] for r in subnet.json] == ["10.1.0.30"]
    assert "others may have held" in subnet.stderr


def test_a_possible_holder_after_damage_says_others_may_have_held_it(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    run(w, "ADD", "ctr-a", "10.1.0.5")
    cut_short(trail, "DEL", "ctr-a")  # ctr-a's DEL lost: and someone may have been given the address since
    run(w, "ADD", "ctr-x", "10.1.0.30")
    w.mark("later")
    result = cli("who-had", "10.1.0.5", "--at", trail.marks["later"], "--json", *trail.args())
    assert result.rc == 3
    assert [(r["container_id"], r["certainty"]) for r in result.json] == [("ctr-a", "possibly")]
    assert "others may have held 10.1.0.5" in result.stderr


def test_a_holder_re_added_without_the_address_does_not_prove_it_free(tmp_path: Path) -> None:
    """ctr-a let 10.1.0.5 go somewhere in the damage (its re-ADD has another address): to whom is not known."""
    trail, w = new_trail(tmp_path)
    run(w, "ADD", "ctr-a", "10.1.0.5")
    cut_short(trail, "ADD", "ctr-b")  # ctr-a's DEL and ctr-b's ADD of 10.1.0.5 may be lost here
    run(w, "ADD", "ctr-a", "10.1.0.6")
    w.mark("later")
    result = cli("who-had", "10.1.0.5", "--at", trail.marks["later"], "--json", *trail.args())
    assert result.rc == 4 and "no evidence about 10.1.0.5" in result.stderr, (result.rc, result.stderr)


def test_damage_before_the_address_was_handed_out_again_leaves_nobody_certain(tmp_path: Path) -> None:
    """An ADD after the damage proves the address was free then (an IPAM hands it to one at a time)."""
    trail, w = new_trail(tmp_path)
    run(w, "ADD", "ctr-x", "10.1.0.30")
    cut_short(trail, "ADD", "ctr-b")
    run(w, "ADD", "ctr-c", "10.1.0.5")
    run(w, "DEL", "ctr-c", "10.1.0.5")
    w.mark("later")
    result = cli("who-had", "10.1.0.5", "--at", trail.marks["later"], "--json", *trail.args())
    assert result.rc == 1 and "nobody held 10.1.0.5" in result.stderr, (result.rc, result.stderr)


# -- 2. timeline: one rule with who-had and leaks --------------------------------------------------------------


def test_timeline_ends_a_superseded_attachment_as_who_had_and_leaks_do(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    run(w, "ADD", "ctr-a", "10.1.0.5")  # its DEL is lost
    added = run(w, "ADD", "ctr-b", "10.1.0.5")
    rows = cli("who-had", "10.1.0.5", "--json", *trail.args()).json
    assert [(r["container_id"], r["ended_by"]) for r in rows] == [("ctr-a", "superseded"), ("ctr-b", None)]
    leaks = cli("leaks", "--json", *trail.args()).json
    assert {(r["kind"], r["container_id"]) for r in leaks} == {("superseded", "ctr-a"), ("never-deleted", "ctr-b")}
    table = cli("timeline", "ctr-a", *trail.args())
    assert table.rc == 0
    assert "still attached" not in table.stdout, table.stdout
    assert "superseded by ctr-b" in table.stdout
    (attachment,) = cli("timeline", "ctr-a", "--json", *trail.args()).json
    (period,) = attachment["periods"]
    assert (period["detached"], period["ended_by"]) == (added["@timestamp"], "superseded")
    still = cli("timeline", "ctr-b", *trail.args())
    assert "still attached at the end of the trail" in still.stdout


# -- 3. a holding known only from a DEL with its cached result ---------------------------------------------------


def test_subnet_and_report_list_a_holding_known_only_from_its_del(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    run(w, "ADD", "ctr-x", "10.1.0.30")
    deleted = run(w, "DEL", "ctr-z", "10.1.0.5")  # its ADD is not in the trail; the DEL carries the cached result
    single = cli("who-had", "10.1.0.5", "--json", *trail.args()).json
    assert [(r["container_id"], r["from"], r["until"]) for r in single] == [("ctr-z", None, deleted["@timestamp"])]
    subnet = cli("who-had", "10.1.0.0/24", "--json", *trail.args())
    assert sorted((r["address"], r["container_id"], r["until"]) for r in subnet.json) == [
        ("10.1.0.30", "ctr-x", None), ("10.1.0.5", "ctr-z", deleted["@timestamp"])]
    (z,) = [r for r in subnet.json if r["container_id"] == "ctr-z"]
    assert z["from"] is None and z["ended_by"] == "DEL" and "start unknown" in z["notes"][0]
    (data,) = cli("report", "--json", *trail.args()).json
    assert data["networks"][NET]["holdings"] == 2 and data["networks"][NET]["addresses"] == 2


# -- 4. a CHECK supersedes; the floor in the CIDR form --------------------------------------------------------


def test_a_holder_first_seen_by_a_check_supersedes_the_previous_one(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    run(w, "ADD", "ctr-a", "10.1.0.5")  # its DEL is lost
    checked = run(w, "CHECK", "ctr-b", "10.1.0.5")  # its ADD is lost
    rows = cli("who-had", "10.1.0.5", "--json", *trail.args()).json
    assert [(r["container_id"], r["ended_by"], r["until"]) for r in rows] == [
        ("ctr-a", "superseded", checked["@timestamp"]), ("ctr-b", None, None)]
    subnet = cli("who-had", "10.1.0.0/24", "--json", *trail.args()).json
    assert [(r["container_id"], r["ended_by"]) for r in subnet] == [("ctr-a", "superseded"), ("ctr-b", None)]


def test_an_unknown_start_has_the_previous_holders_end_as_floor_in_the_subnet_form(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    run(w, "ADD", "ctr-a", "10.1.0.5")
    w.mark("a-held")
    run(w, "DEL", "ctr-a", "10.1.0.5")
    w.mark("free")
    run(w, "CHECK", "ctr-b", "10.1.0.5")  # its ADD is not in the trail: after ctr-a's DEL
    run(w, "DEL", "ctr-b", "10.1.0.5")
    for form in ("10.1.0.5", "10.1.0.0/24"):
        held = cli("who-had", form, "--at", trail.marks["a-held"], "--json", *trail.args())
        assert (held.rc, [(r["container_id"], r["certainty"]) for r in held.json]) == (0, [("ctr-a", "held")]), \
            (form, held.stdout, held.stderr)
        free = cli("who-had", form, "--at", trail.marks["free"], "--json", *trail.args())
        assert (free.rc, [(r["container_id"], r["certainty"]) for r in free.json]) == (3, [("ctr-b", "possibly")])


# -- 5. a backup restored from an older copy --------------------------------------------------------------------


def test_a_backup_smaller_than_its_max_size_is_reported_as_damage(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    small = {"logOptions": {"maxSize": 0.004, "maxBackups": 0}}
    copies: list[bytes] = []
    for n in range(8):
        run(w, "ADD", f"ctr-{n}", f"10.1.0.{10 + n}", extra=small)
        if trail.log.exists():
            copies.append(trail.log.read_bytes())
    backups = sorted(p for p in tmp_path.iterdir() if p.name.startswith("cni.log."))
    assert len(backups) >= 2, backups
    intact = cli("stats", "--json", "--strict", *trail.args())
    assert intact.rc == 0 and intact.json[0]["evidence"]["stretches"] == [], intact.stderr
    # The first backup is replaced by an older copy of the live file it was (before its last events).
    first = backups[0]
    older = next(c for c in copies if c and first.read_bytes().startswith(c) and c != first.read_bytes())
    first.write_bytes(older)
    for command in (["stats"], ["events"], ["leaks"], ["who-had", "10.1.0.10"], ["timeline", "ctr-0"]):
        result = cli(*command, *trail.args())
        assert f"shrunk: {first}" in result.stderr, (command, result.stderr)
        assert "smaller than the maxSize" in result.stderr
    (stats,) = cli("stats", "--json", *trail.args()).json
    (stretch,) = stats["evidence"]["stretches"]
    assert (stretch["kind"], stretch["file"], stretch["lost_events_possible"]) == ("shrunk", str(first), True)
    (data,) = cli("report", "--json", *trail.args()).json
    assert [d["kind"] for d in data["trail"]["damaged"]["listed"]] == ["shrunk"]
    assert "shrunk" in cli("report", *trail.args()).stdout


def test_a_backup_of_the_right_size_is_not_reported(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    small = {"logOptions": {"maxSize": 0.004, "maxBackups": 0, "compress": True}}
    for n in range(12):
        run(w, "ADD", f"ctr-{n}", f"10.1.0.{10 + n}", extra=small)
    from tests.harness.trails import wait_for_compression

    wait_for_compression(tmp_path)
    assert any(p.name.endswith(".gz") for p in tmp_path.iterdir())
    result = cli("events", "--strict", *trail.args())
    assert result.rc == 0 and "shrunk" not in result.stderr, result.stderr


# -- 6. a conflict is a certain answer, said in one voice -------------------------------------------------------


def test_a_proven_conflict_is_a_certain_answer(tmp_path: Path) -> None:
    trail, w = new_trail(tmp_path)
    run(w, "ADD", A64, "10.1.0.5")
    run(w, "ADD", B64, "10.1.0.5")  # the IPAM handed the address out again...
    w.mark("both")
    run(w, "DEL", A64, "10.1.0.5")  # ...while A64 still held it: its DEL names it
    at = trail.marks["both"]
    result = cli("who-had", "10.1.0.5", "--at", at, *trail.args())
    assert result.rc == 0, (result.rc, result.stdout, result.stderr)
    assert "cannot tell for certain" not in result.stderr
    assert f"conflict: 10.1.0.5 was held by 2 attachments at once at {at}" in result.stderr, result.stderr
    rows = {row[5]: row for row in result.rows}
    assert set(rows) == {A64[:12], B64[:12]}, result.stdout
    a = rows[A64[:12]]
    assert a[7] == "DEL" and "DEL missing" not in a[8], a
    assert "conflict" in a[8] and B64[:12] in a[8]
    assert not re.search(r"[0-9a-f]{13,}", result.stdout), result.stdout  # 12-hex ids everywhere in the table
    full = cli("who-had", "10.1.0.5", "--at", at, "--no-trunc", *trail.args())
    assert B64 in full.stdout
    # Listing (no --at) and the JSON keep the whole story.
    listing = cli("who-had", "10.1.0.5", "--json", *trail.args())
    assert listing.rc == 0, listing.stderr  # nothing in it is uncertain
    rows_json = listing.json
    (mine,) = [r for r in rows_json if r["container_id"] == A64]
    assert mine["conflict"] and mine["ended_by"] == "DEL"
    assert not any("DEL missing" in n for n in mine["notes"]), mine["notes"]

