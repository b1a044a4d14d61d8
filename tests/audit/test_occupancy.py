"""Occupancy: where and whose an address is, sliced as decoding says (hostile names included), and its holdings."""

from __future__ import annotations

import json
from typing import Any

from cni_logger.audit import record
from cni_logger.audit.occupancy import Holding, Occupancy, parse_network
from tests.harness.trails import Trail, Writer


def test_sliced_placement_equals_decoded_placement(copy_of_trail: Trail) -> None:
    w = Writer(copy_of_trail)
    w.run("ADD", "ctr-q", address="10.1.0.60", pod='we"ird\\po\x1bd', namespace="ns/\u202e")
    w.run("ADD", "ctr-r", address="10.1.0.61", pod="plain", namespace="")
    w.run("ADD", "ctr-s", address="10.1.0.62", pod="p\u00e9", namespace="caf\u00e9")
    lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in copy_of_trail.events]
    on_disk = copy_of_trail.log.read_bytes().splitlines()
    checked = 0
    for line in lines + [line for line in on_disk if record.is_canonical_line(line)]:
        doc = json.loads(line)
        sliced = record.sliced_placed(line)
        if sliced is None:  # escapes: decoded instead
            assert "\\" in line.decode() or '"' in record.pod(doc)
            continue
        decoded = (doc["host"]["name"], record.addresses(doc), record.namespace(doc), record.pod(doc))
        assert sliced == decoded, line
        checked += 1
    assert checked >= len(lines) - 1


def test_an_orchestrator_inside_the_config_is_not_the_events_own() -> None:
    line = (b'{"@timestamp":"2026-11-28T02:20:15.000000Z","event":{"outcome":"success","duration":1},'
            b'"network":{"name":"n"},"host":{"name":"h"},"related":{"ip":["10.0.0.9"]},"cni":{"command":"ADD",'
            b'"container_id":"c","netns":"/x","ifname":"eth0","config":{"x":{"a":1,"orchestrator":{"namespace":"fake",'
            b'"resource":{"name":"fake"}}}}}}')
    doc = json.loads(line)
    assert record.sliced_placed(line) == ("h", ["10.0.0.9"], "", "") == (
        doc["host"]["name"], record.addresses(doc), record.namespace(doc), record.pod(doc))


def test_parse_network_needs_a_subnet_without_host_bits() -> None:
    assert str(parse_network("10.244.1.0/24")) == "10.244.1.0/24"
    assert parse_network("10.244.1.17/24") is None
    assert parse_network("10.244.1.17") is None
    assert str(parse_network("fd00::/64")) == "fd00::/64"


T = "2026-11-28T02:20:{:02d}.000000Z"


def _rec(n: int, command: str, cid: str, address: str = "", network: str = "net") -> record.Record:
    doc: dict[str, Any] = {"@timestamp": T.format(n), "event": {"outcome": "success", "id": f"{n}-{cid}"},
                           "network": {"name": network}, "cni": {"command": command, "container_id": cid,
                                                                 "ifname": "eth0"}}
    if address:
        doc["cni"]["prev_result"] = {"ips": [{"address": address + "/24"}]}
        doc["related"] = {"ip": [address]}
    found = record.head_from_doc(json.dumps(doc).encode(), doc)
    assert found is not None
    return found


def _feed(occupancy: Occupancy, *records: record.Record) -> list[Holding]:
    return [h for r in records for h in occupancy.feed(r)]


def test_a_lost_del_is_superseded_not_a_conflict_and_other_networks_never_conflict() -> None:
    occupancy = Occupancy(at=T.format(3))
    ended = _feed(occupancy, _rec(1, "ADD", "a", "10.0.0.5"), _rec(2, "ADD", "o", "10.0.0.5", network="other"),
                  _rec(4, "ADD", "b", "10.0.0.5"))
    assert ended == []  # a is held back: its DEL may yet show a conflict
    parked, still = occupancy.finish()
    (a,) = parked
    assert (a.container_id, a.ended_by, a.end, a.conflict, a.conflicts_with) == ("a", "superseded", T.format(4),
                                                                               False, [])
    assert a.certainty == "possibly" and any("superseded by b" in note for note in a.notes)
    assert sorted(h.container_id for h in still) == ["b", "o"] and occupancy.conflicts == 0


def test_a_superseded_holder_seen_again_conflicts_with_the_holder_then() -> None:
    occupancy = Occupancy()
    _feed(occupancy, _rec(1, "ADD", "a", "10.0.0.5"), _rec(4, "ADD", "b", "10.0.0.5"))
    assert _feed(occupancy, _rec(5, "CHECK", "a", "10.0.0.5")) == []
    assert [(h.container_id, other, at) for h, other, at in occupancy.found_conflicts] == [("a", "b", T.format(5))]
    (a,) = _feed(occupancy, _rec(6, "DEL", "a", "10.0.0.5"))
    assert (a.conflict, a.conflicts_with, a.end, a.ended_by) == (True, ["b"], T.format(6), "DEL")
    (b,) = _feed(occupancy, _rec(7, "DEL", "b", "10.0.0.5"))
    assert (b.conflict, b.conflicts_with) == (False, ["a"]) and occupancy.conflicts == 1  # b's ADD is certain
