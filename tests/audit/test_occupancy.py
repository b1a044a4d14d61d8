"""Occupancy's sliced fields agree with decoding, on the plugin's own lines (hostile names included)."""

from __future__ import annotations

import json

from cni_logger.audit import record
from cni_logger.audit.occupancy import parse_network, sliced_fields
from tests.harness.trails import Trail, Writer


def test_sliced_fields_equal_decoded_fields(copy_of_trail: Trail) -> None:
    w = Writer(copy_of_trail)
    w.run("ADD", "ctr-q", address="10.1.0.60", pod='we"ird\\po\x1bd', namespace="ns/\u202e")
    w.run("ADD", "ctr-r", address="10.1.0.61", pod="plain", namespace="")
    lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in copy_of_trail.events]
    on_disk = copy_of_trail.log.read_bytes().splitlines()
    checked = 0
    for line in lines + [line for line in on_disk if record.is_canonical_line(line)]:
        doc = json.loads(line)
        sliced = sliced_fields(line)
        if sliced is None:  # escapes: decoded instead
            assert "\\" in line.decode() or '"' in record.pod(doc)
            continue
        assert sliced == (record.addresses(doc), record.namespace(doc), record.pod(doc)), line
        checked += 1
    assert checked >= len(lines) - 1


def test_parse_network_needs_a_subnet_without_host_bits() -> None:
    assert str(parse_network("10.244.1.0/24")) == "10.244.1.0/24"
    assert parse_network("10.244.1.17/24") is None
    assert parse_network("10.244.1.17") is None
    assert str(parse_network("fd00::/64")) == "fd00::/64"
