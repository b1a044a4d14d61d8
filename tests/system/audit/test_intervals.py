"""The attachment state machine behind who-had and leaks, event by event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cni_logger.audit.intervals import Interval, Tracker, qualifications
from cni_logger.audit.record import Record, head_from_doc
from cni_logger.audit.stats import Histogram
from tests.harness.audit import cli

T = "2026-11-28T02:20:{:02d}.000000Z"


def rec(n: int, command: str, cid: str, address: str = "", *, ok: bool = True, ifname: str = "eth0",
        network: str = "net", **cni: Any) -> Record:
    doc: dict[str, Any] = {"@timestamp": T.format(n), "event": {"outcome": "success" if ok else "failure",
                                                                 "duration": 5},
                           "network": {"name": network},
                           "cni": {"command": command, "container_id": cid, "ifname": ifname, **cni}}
    if address:
        doc["cni"]["prev_result"] = {"ips": [{"address": address + "/24"}]}
        doc["related"] = {"ip": [address]}
    record = head_from_doc(json.dumps(doc).encode(), doc)
    assert record is not None
    return record


def feed(tracker: Tracker, *records: Record) -> list[Interval]:
    return [closed for r in records for closed in tracker.feed(r)]


def spans(intervals: list[Interval]) -> list[tuple[str, str | None, str | None, str]]:
    return [(i.key[1], i.start and i.start[17:19], i.end and i.end[17:19], i.closed_by) for i in intervals]


def test_add_del_and_address_reuse() -> None:
    tracker = Tracker("10.0.0.5")
    closed = feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(2, "ADD", "x", "10.0.0.6"),
                  rec(3, "DEL", "a", "10.0.0.5"), rec(4, "ADD", "b", "10.0.0.5"), rec(5, "DEL", "x", "10.0.0.6"))
    assert spans(closed) == [("a", "01", "03", "DEL")]
    assert [i.key for i in tracker.open.values()] == [("net", "b", "eth0")]
    assert tracker.open_ids == {b"b": 1}
    assert closed[0].covers(T.format(1)) and closed[0].covers(T.format(3)) and not closed[0].covers(T.format(4))


def test_del_without_cached_result_closes_and_failed_del_does_not() -> None:
    tracker = Tracker("10.0.0.5")
    assert feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(2, "DEL", "a", ok=False)) == []
    assert spans(feed(tracker, rec(3, "DEL", "a"))) == [("a", "01", "03", "DEL")]
    assert tracker.open_ids == {}


def test_readd_with_another_address_ends_the_interval() -> None:
    tracker = Tracker("10.0.0.5")
    assert spans(feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(2, "ADD", "a", "10.0.0.9"))) == [
        ("a", "01", "02", "ADD")]


def test_evidence_of_an_attachment_whose_add_rotated_away() -> None:
    tracker = Tracker("10.0.0.5")
    feed(tracker, rec(1, "CHECK", "a", "10.0.0.5"))
    (interval,) = feed(tracker, rec(4, "DEL", "a", "10.0.0.5"))
    assert (interval.start, interval.seen, interval.end) == (None, T.format(1), T.format(4))
    assert not interval.orphan and not interval.covers(T.format(0))
    (alone,) = feed(tracker, rec(6, "DEL", "b", "10.0.0.5"))  # a DEL naming the address, nothing before it
    assert alone.orphan and alone.covers(T.format(6))


def test_leaks_mode_orphans_repeats_and_failed_adds() -> None:
    tracker = Tracker()
    closed = feed(tracker, rec(1, "ADD", "a"), rec(2, "DEL", "a"), rec(3, "DEL", "a"),  # a repeated DEL
                  rec(4, "ADD", "f", ok=False), rec(5, "DEL", "f"),                     # cleanup after a failure
                  rec(6, "DEL", "ghost"), rec(7, "DEL", "ghost"),                       # no ADD, DEL retried
                  rec(8, "ADD", "leak"))
    assert [(i.key[1], i.orphan) for i in closed] == [("a", False), ("ghost", True)]
    assert [i.key for i in tracker.open.values()] == [("net", "leak", "eth0")]


def test_recently_ended_attachments_are_bounded() -> None:
    tracker = Tracker(recent_limit=2)
    feed(tracker, *(r for n, cid in enumerate("abc") for r in (rec(2 * n, "ADD", cid), rec(2 * n + 1, "DEL", cid))))
    assert len(tracker.recent.counts) == 2
    assert [i.key[1] for i in feed(tracker, rec(10, "DEL", "a"), rec(11, "DEL", "c"))] == ["a"]  # "a" forgotten


def test_gc_closes_what_is_not_valid_unless_the_list_was_cut_short() -> None:
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    tracker = Tracker()
    feed(tracker, rec(1, "ADD", "keep"), rec(2, "ADD", "gone"), rec(3, "ADD", "other", network="net2"))
    assert feed(tracker, rec(4, "GC", "", network="net", valid_attachments=[*valid, "[truncated: 9 more items]"])) == []
    assert feed(tracker, rec(4, "GC", "", network="net", valid_attachments=valid,
                         truncated=["cni.valid_attachments"])) == []
    assert feed(tracker, rec(4, "GC", "", network="net", valid_attachments=valid, ok=False)) == []
    assert spans(feed(tracker, rec(5, "GC", "", network="net", valid_attachments=valid))) == [
        ("gone", "02", "05", "GC")]
    assert sorted(k[1] for k in tracker.open) == ["keep", "other"]


def test_who_had_an_ipv6_address_in_any_spelling(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    lines = [rec(1, "ADD", "a", "fd00::5").line, rec(2, "DEL", "a").line, rec(3, "ADD", "b", "FD00:0:0::5").line]
    log.write_bytes(b"\n".join(lines) + b"\n")
    result = cli("who-had", "fd00:0000::5", "--json", "--log-file", str(log))
    assert [(h["container_id"], h["until"]) for h in result.json] == [("a", T.format(2)), ("b", None)]


def test_histogram_is_exact_below_256_and_within_one_percent_above() -> None:
    h = Histogram()
    values = [0, 1, 255, 256, 1000, 10**6, 123_456_789, 10**10]
    for v in values:
        low, high = Histogram.bounds(Histogram.index(v))
        assert low <= v <= high and (high - low) <= max(v / 128, 0)
        h.add(v)
    assert h.percentile(0) == 0 and h.percentile(100) == 10**10
    assert h.percentile(50) == 256  # nearest rank: the 4th of 8
    p75 = h.percentile(75)  # the 6th: 10**6, within a bucket's width
    assert p75 is not None and abs(p75 - 10**6) / 10**6 < 1 / 128
    assert Histogram().percentile(50) is None


# -- trust: a lost DEL, an unknown start, a re-ADD ------------------------------------------------------


def test_a_lost_del_is_superseded_by_the_next_holder_not_a_co_holder() -> None:
    """a's DEL is lost; b gets the address: a's interval ends there, its end known only to follow its last evidence."""
    for address in ("10.0.0.5", None):  # who-had, and leaks (every address)
        tracker = Tracker(address)
        closed = feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(2, "CHECK", "a", "10.0.0.5"),
                      rec(6, "ADD", "b", "10.0.0.5"))
        assert spans(closed) == [("a", "01", "06", "superseded")]
        (a,) = closed
        assert (a.last_seen[17:19], a.superseded_by and a.superseded_by.container_id) == ("02", "b")
        assert not a.end_known
        assert [a.certainty(T.format(n)) for n in (0, 1, 2, 4, 6, 7)] == [None, "held", "held", "possibly",
                                                                           "possibly", None]
        assert [i.key for i in tracker.open.values()] == [("net", "b", "eth0")]
        assert feed(tracker, rec(8, "DEL", "a")) == []  # its late clean-up DEL: no orphan, no conflict
        assert not a.conflict


def test_a_superseded_holder_seen_holding_again_is_a_conflict() -> None:
    tracker = Tracker("10.0.0.5")
    (a,) = feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(6, "ADD", "b", "10.0.0.5"))
    assert feed(tracker, rec(7, "DEL", "a", "10.0.0.5")) == []
    assert (a.conflict, a.end and a.end[17:19], a.closed_by, a.certainty(T.format(7))) == (True, "07", "DEL", "held")


def test_a_superseded_holder_checked_holding_again_held_it_until_that_check() -> None:
    tracker = Tracker("10.0.0.5")
    (a,) = feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(6, "ADD", "b", "10.0.0.5"))
    assert feed(tracker, rec(8, "CHECK", "a", "10.0.0.5")) == []
    assert (a.conflict, a.last_seen[17:19], a.end and a.end[17:19]) == (True, "08", "08")
    assert [a.certainty(T.format(n)) for n in (6, 7, 8)] == ["held", "held", "held"]


def test_a_re_added_attachment_is_noted_once() -> None:
    tracker = Tracker("10.0.0.5")
    (first,) = feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(5, "ADD", "a", "10.0.0.5"))
    notes = qualifications(first, None)["notes"]
    assert len(notes) == 1 and "ADDed again" in notes[0]


def test_other_networks_and_hosts_do_not_supersede() -> None:
    tracker = Tracker("10.0.0.5")
    assert feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(2, "ADD", "b", "10.0.0.5", network="other")) == []
    assert len(tracker.open) == 2


def test_unknown_start_is_possible_back_to_the_previous_holders_end() -> None:
    tracker = Tracker("10.0.0.5")
    closed = feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(3, "DEL", "a", "10.0.0.5"),
                  rec(9, "DEL", "b", "10.0.0.5"))  # b's ADD is not in the trail
    b = closed[-1]
    assert (b.start, b.floor and b.floor[17:19]) == (None, "03")
    assert [b.certainty(T.format(n)) for n in (2, 3, 5, 9, 10)] == [None, "possibly", "possibly", "held", None]


def test_a_second_add_of_an_open_attachment_ends_the_first_with_an_unknown_end() -> None:
    tracker = Tracker("10.0.0.5")
    (first,) = feed(tracker, rec(1, "ADD", "a", "10.0.0.5"), rec(5, "ADD", "a", "10.0.0.5"))
    assert (first.closed_by, first.end_known, first.certainty(T.format(3))) == ("ADD", False, "possibly")
    assert tracker.open[("net", "a", "eth0", "")].start == T.format(5)  # (an event without host.name: "")
