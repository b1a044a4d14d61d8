"""Coverage events (``docs/coverage-events.md``) as the audit reads them: record, reader, outages, inventories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cni_logger.audit import record, sources
from cni_logger.audit.coverage import INVENTORY_GRACE
from cni_logger.audit.evidence import Evidence
from cni_logger.audit.intervals import Interval, Tracker, qualifications
from cni_logger.audit.occupancy import Occupancy
from cni_logger.audit.reader import Scan
from cni_logger.audit.record import Record, head_from_doc, head_from_line
from tests.harness.coverage_lines import attachment, coverage_line, inventory_lines

T = "2026-11-28T02:20:{:02d}.000000Z"
HOST = "node-1"
NET = "net"
PLUGIN_LINE = (b'{"@timestamp":"2026-11-28T02:20:01.000000Z","message":"CNI ADD eth0 of container a succeeded",'
               b'"log":{"level":"info","logger":"cni-logger"},"ecs":{"version":"9.4.0"},"event":{"kind":"event",'
               b'"outcome":"success","duration":5,"id":"e1","module":"cni","dataset":"cni.audit"},'
               b'"network":{"name":"net"},"host":{"name":"node-1"},"related":{"ip":["10.0.0.5"]},'
               b'"cni":{"command":"ADD","container_id":"a","netns":"/x","ifname":"eth0"}}')


def decoded(line: bytes) -> Record:
    rec = head_from_doc(line, json.loads(line))
    assert rec is not None
    return rec


def rec(n: int, command: str, cid: str, address: str = "", *, host: str = HOST, network: str = NET,
        cached: bool = True) -> Record:
    doc: dict[str, Any] = {"@timestamp": T.format(n), "event": {"outcome": "success", "duration": 5},
                           "network": {"name": network}, "host": {"name": host},
                           "cni": {"command": command, "container_id": cid, "ifname": "eth0"}}
    if address and cached:
        doc["cni"]["prev_result"] = {"ips": [{"address": address + "/24"}]}
        doc["related"] = {"ip": [address]}
    return decoded(json.dumps(doc).encode())


def left(n: int, *, since: int | None = None, host: str = HOST, network: str = NET, reason: str = "failsafe") -> Record:
    more = {"since": T.format(since)} if since is not None else {}
    return decoded(coverage_line("logger-left", T.format(n), host, network, file="/etc/cni/net.d/x.conflist",
                                 roles=["outcome"], reason=reason, **more))


def entered(n: int, *, host: str = HOST, network: str = NET) -> Record:
    return decoded(coverage_line("logger-entered", T.format(n), host, network, file="/etc/cni/net.d/x.conflist",
                                 roles=["outcome"], reason="restored"))


def inventory(n: int, listed: list[tuple[str, str]], *, host: str = HOST, networks: tuple[str, ...] = (NET,),
              **more: Any) -> list[Record]:
    items = [attachment(cid, address, network=NET) for cid, address in listed]
    return [decoded(line) for line in inventory_lines(T.format(n), items, list(networks), host, **more)]


def feed(tracker: Tracker, found: Evidence, *records: Record) -> list[Interval]:
    closed = []
    for r in records:
        if r.coverage:
            found.note(r)
        closed += tracker.feed(r)
    return closed


# -- reading them -----------------------------------------------------------------------------------------


def test_a_coverage_line_is_never_sliced_as_an_invocation_and_decodes_as_its_own_kind() -> None:
    lines = [coverage_line("logger-left", T.format(1), HOST, NET, file="f", roles=["outcome"], reason="failsafe"),
             *inventory_lines(T.format(2), [attachment("ctr-a", "10.0.0.5", network=NET, pod="p", namespace="ns")],
                              [NET], HOST)]
    for line in lines:
        assert record.is_canonical_line(line) and record.may_be_coverage(line)
        assert head_from_line(line) is None
        rec = decoded(line)
        assert rec.coverage and rec.command == "" and rec.duration is None
    attached = decoded(lines[1])
    assert (attached.coverage, attached.key) == ("cni-attachment", (NET, "ctr-a", "eth0"))
    assert record.placed(attached) == (HOST, ["10.0.0.5"], "ns", "p")
    assert not record.may_be_coverage(PLUGIN_LINE) and head_from_line(PLUGIN_LINE) is not None
    plugin = head_from_line(PLUGIN_LINE)
    assert plugin is not None and plugin.coverage == ""


def test_a_prefilter_that_rejects_every_line_still_lets_coverage_through(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    log.write_bytes(b"\n".join([PLUGIN_LINE, left(2).line, entered(3).line]) + b"\n")
    trails, problems = sources.resolve([str(log)])
    assert problems == []
    for decode in (True, False):
        scan = Scan(trails)
        found = list(scan.records(lambda line: False, decode=decode))
        assert [r.coverage for r in found] == ["logger-left", "logger-entered"]
        (outage,) = scan.evidence.coverage.outages
        assert (outage.start, outage.end, outage.reason) == (T.format(2), T.format(3), "failsafe")
        assert scan.evidence.incomplete


# -- outages ----------------------------------------------------------------------------------------------


def test_an_outage_runs_from_since_to_the_next_entered_of_the_same_host_and_network() -> None:
    found = Evidence()
    for r in (left(5, since=3), left(6), entered(7, network="other"), left(8, host="node-2"), entered(9)):
        found.note(r)
    first, second = found.coverage.outages
    assert (first.host, first.start, first.end, first.left_at) == (HOST, T.format(3), T.format(9), T.format(5))
    assert (second.host, second.start, second.end) == ("node-2", T.format(8), None)  # open: to the end of the trail
    assert found.unwatched(T.format(4)).startswith(f"{T.format(4)} is in an outage: the logger was out of network")
    assert found.unwatched(T.format(2)) == ""
    assert found.unwatched(T.format(30)) != ""  # node-2 is still out


def test_an_open_attachment_across_an_outage_is_possibly_held_after_it_and_held_before() -> None:
    found, tracker = Evidence(), Tracker("10.0.0.5")
    feed(tracker, found, rec(1, "ADD", "a", "10.0.0.5"), left(3), entered(5))
    (interval,) = tracker.open.values()
    assert [interval.certainty(T.format(n), found) for n in (0, 2, 4, 6)] == [None, "held", "possibly", "possibly"]
    notes = qualifications(interval, found)["notes"]
    assert len(notes) == 1 and notes[0].startswith("possibly deleted while the logger was out, unrecorded: ")
    # Another network's or host's outage says nothing about it.
    found2, tracker2 = Evidence(), Tracker("10.0.0.5")
    feed(tracker2, found2, rec(1, "ADD", "a", "10.0.0.5"), left(3, network="other"), left(3, host="node-2"))
    (other,) = tracker2.open.values()
    assert other.certainty(T.format(6), found2) == "held" and qualifications(other, found2)["notes"] == []


def test_a_del_after_an_outage_does_not_vouch_for_the_attachment_during_it() -> None:
    """A restart may have DELed and ADDed it again while the logger was out: the cached result of the later DEL
    is the second life's."""
    for cached in (True, False):
        found, tracker = Evidence(), Tracker("10.0.0.5")
        closed = feed(tracker, found, rec(1, "ADD", "a", "10.0.0.5"), left(3), entered(5),
                      rec(7, "DEL", "a", "10.0.0.5", cached=cached))
        (interval,) = closed
        assert [interval.certainty(T.format(n), found) for n in (2, 4, 6, 8)] == ["held", "possibly", "possibly",
                                                                                  None]
        assert len(qualifications(interval, found)["notes"]) == 1
    # Evidence after the outage (a CHECK, an inventory's attachment) vouches from then on.
    found, tracker = Evidence(), Tracker("10.0.0.5")
    feed(tracker, found, rec(1, "ADD", "a", "10.0.0.5"), left(3), entered(5), rec(6, "CHECK", "a", "10.0.0.5"))
    (interval,) = tracker.open.values()
    assert interval.certainty(T.format(7), found) == "held" and qualifications(interval, found)["notes"] == []


def test_an_unknown_start_after_an_outage_says_its_add_may_have_been_then() -> None:
    found, tracker = Evidence(), Tracker()
    feed(tracker, found, left(1), entered(3), rec(5, "CHECK", "a", "10.0.0.5"))
    (interval,) = tracker.open.values()
    assert any(n.startswith("its ADD may have happened while the logger was out") for n in
               qualifications(interval, found)["notes"])


def test_dropped_events_are_a_stretch_for_the_containers_listed_or_anyone() -> None:
    found = Evidence()
    found.note(decoded(coverage_line("logger-dropped", T.format(9), HOST, dropped=4, first=T.format(2),
                                     last=T.format(6), commands={"DEL": 4}, containers=["a"])))
    found.note(decoded(coverage_line("logger-dropped", T.format(20), HOST, dropped=100, first=T.format(12),
                                     last=T.format(16), commands={"ADD": 100}, containers=["b"],
                                     containers_truncated=True)))
    mine, anyone = found.stretches
    assert (mine.kind, mine.after, mine.before, mine.containers) == ("dropped", T.format(2), T.format(6), {"a"})
    assert anyone.containers is None and found.coverage.dropped_events == 104
    tracker = Tracker("10.0.0.5")
    feed(tracker, found, rec(1, "ADD", "a", "10.0.0.5"))
    (interval,) = tracker.open.values()
    assert [interval.certainty(T.format(n), found) for n in (1, 3)] == ["held", "possibly"]
    assert "dropped: host node-1" in qualifications(interval, found)["notes"][0]


# -- inventories ------------------------------------------------------------------------------------------


def test_an_attachment_is_evidence_as_a_check_is() -> None:
    found, tracker = Evidence(), Tracker("10.0.0.5")
    feed(tracker, found, rec(1, "ADD", "a", "10.0.0.5"), *inventory(4, [("a", "10.0.0.5"), ("b", "10.0.0.6")]))
    assert [(i.key, i.last_seen) for i in tracker.open.values()] == [((NET, "a", "eth0"), T.format(4))]
    # b does not hold the address
    found, tracker = Evidence(), Tracker()
    feed(tracker, found, *inventory(4, [("old", "10.0.0.9")]))
    (interval,) = tracker.open.values()
    assert (interval.key[1], interval.start, interval.seen, interval.host) == ("old", None, T.format(4), HOST)
    assert interval.certainty(T.format(5), found) == "held" and interval.certainty(T.format(3), found) == "possibly"
    # An attachment that ended lately is the cache lagging its DEL, not a new one.
    found, tracker = Evidence(), Tracker()
    feed(tracker, found, rec(1, "ADD", "c", "10.0.0.7"), rec(2, "DEL", "c", "10.0.0.7"),
         *inventory(4, [("c", "10.0.0.7")]))
    assert tracker.open == {}


def test_a_complete_inventory_ends_what_it_does_not_list_on_its_host_and_networks() -> None:
    found, tracker = Evidence(), Tracker()
    feed(tracker, found, rec(1, "ADD", "gone", "10.0.0.5"), rec(2, "ADD", "kept", "10.0.0.6"),
         rec(3, "ADD", "elsewhere", "10.0.0.7", host="node-2"), rec(4, "ADD", "othernet", "10.0.0.8", network="n2"),
         rec(20, "ADD", "recent", "10.0.0.9"))
    late = 20 + int(INVENTORY_GRACE) - 1  # "recent" was ADDed within the grace: the cache may not show it yet
    closed = feed(tracker, found, *inventory(late, [("kept", "10.0.0.6")]))
    assert [(i.key[1], i.end, i.closed_by, i.end_known) for i in closed] == [("gone", T.format(late), "inventory",
                                                                             False)]
    (gone,) = closed
    assert [gone.certainty(T.format(n), found) for n in (1, 10, late, late + 1)] == ["held", "possibly", "possibly",
                                                                                     None]
    assert any(n.startswith(f"DEL not recorded: not listed by the inventory of {HOST}") for n in
               qualifications(gone, found)["notes"])
    assert sorted(k[1] for k in tracker.open) == ["elsewhere", "kept", "othernet", "recent"]


def test_an_incomplete_or_partly_read_inventory_ends_nothing() -> None:
    for more in ({"complete": False}, {"count": 2}):
        found, tracker = Evidence(), Tracker()
        feed(tracker, found, rec(1, "ADD", "a", "10.0.0.5"))
        assert feed(tracker, found, *inventory(30, [("b", "10.0.0.6")], **more)) == []
        assert (NET, "a", "eth0") in [i.key for i in tracker.open.values()]


def test_occupancy_holds_an_inventoried_address_and_ends_an_unlisted_one() -> None:
    found = Evidence()
    occupancy = Occupancy(found=found, at=T.format(40))
    ended = []
    for r in [rec(1, "ADD", "gone", "10.0.0.5"), *inventory(30, [("old", "10.0.0.9")])]:
        if r.coverage:
            found.note(r)
        ended += occupancy.feed(r)
    assert [(h.container_id, h.ended_by, h.end) for h in ended] == [("gone", "inventory", T.format(30))]
    _, still = occupancy.finish()
    assert [(h.address, h.container_id, h.start, h.certainty) for h in still] == [("10.0.0.9", "old", None, "held")]


def test_before_the_oldest_inventory_an_unnamed_address_is_unwatched() -> None:
    found = Evidence()
    assert found.unwatched(T.format(5), named=False) == ""  # no inventories: the rule does not apply
    for r in inventory(10, []):
        found.note(r)
    assert found.coverage.first_inventory == T.format(10)
    assert "before the trail's oldest inventory" in found.unwatched(T.format(5), named=False)
    assert found.unwatched(T.format(5), named=True) == "" and found.unwatched(T.format(11), named=False) == ""
    # A host whose watcher writes coverage events counts from its own oldest complete inventory on.
    found.note(left(12, host="node-2"))
    found.note(entered(13, host="node-2"))
    assert "none complete of node-2" in found.unwatched(T.format(14), named=False)
    for r in inventory(15, [], host="node-2", complete=False):
        found.note(r)
    assert "none complete of node-2" in found.unwatched(T.format(16), named=False)
    for r in inventory(17, [], host="node-2"):
        found.note(r)
    assert T.format(17) in found.unwatched(T.format(16), named=False)
    assert found.unwatched(T.format(18), named=False) == ""
