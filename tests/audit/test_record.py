"""Slicing an event line's identifying fields must agree with decoding it, for whatever the plugin writes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cni_logger import events
from cni_logger import settings as logger_settings
from cni_logger.audit.record import (
    Record,
    addresses,
    head_from_doc,
    head_from_line,
    host,
    is_canonical_line,
    namespace,
    pod,
    sliced_placed,
)
from cni_logger.skel import CNIError, Outcome, Request
from tests.harness.trails import Trail

FIELDS = ("timestamp", "command", "outcome", "container_id", "ifname", "network", "duration", "event_id", "node",
          "slot")


def fields(rec: Record | None) -> tuple[Any, ...] | None:
    return None if rec is None else tuple(getattr(rec, name) for name in FIELDS)


def agree(line: bytes) -> Record | None:
    """The sliced head, after checking it against the decoded one (``None`` if slicing gave up)."""
    fast = head_from_line(line)
    slow = head_from_doc(line, json.loads(line))
    if fast is not None:
        assert fields(fast) == fields(slow), line
        assert slow is not None
        assert fast.attempt is slow.attempt, line  # the role sliced with the head, as decoding reads it
        assert fast.node == host(json.loads(line)), line  # the node, sliced with the network
    place = sliced_placed(line)
    if place is not None:
        doc = json.loads(line)
        # ``related.ip``: the result's addresses that are addresses (the plugin keeps junk out of ECS ip fields)
        assert place == (doc["host"]["name"], doc.get("related", {}).get("ip", []), namespace(doc), pod(doc)), line
        assert set(place[1]) <= set(addresses(doc))
    return fast


def test_the_plugin_lines_of_the_trail_are_sliced_and_agree(trail: Trail) -> None:
    lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in trail.events]
    for line in lines:
        assert is_canonical_line(line)
        assert agree(line) is not None or b'"network":{' not in line  # only GC (no container) may fall back


PLAIN = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=12)
HOSTILE = st.text(max_size=24) | st.sampled_from([
    '","cni":{"command":"DEL","container_id":"x","netns":"y","ifname":"z"', '\\', '"', '\n', "é", "\ud800",
    ',"network":{"name":"evil"}', '"outcome":"failure","duration":1,', "eyJhbGciOi.eyJzdWIiOi.sig",
    '"},"host":{"name":"evil"}', 'a"b'])


@st.composite
def invocation(draw: st.DrawFn) -> tuple[Request, Outcome]:
    text = HOSTILE if draw(st.booleans()) else PLAIN
    command = draw(st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS"]) | text)
    config: dict[str, Any] = {"cniVersion": "1.0.0", "name": draw(text), "type": "logger"}
    config.update(draw(st.dictionaries(st.sampled_from(["cni", "network", "outcome", "event", "x"]),
                                       st.dictionaries(st.sampled_from(["command", "name", "duration"]), text,
                                                       max_size=2) | text, max_size=3)))
    if draw(st.booleans()):
        config["prevResult"] = {"cniVersion": "1.0.0", "ips": [{"address": draw(text)}],
                                "interfaces": [{"name": draw(text)}]}
    request = Request(command, container_id=draw(text), netns=draw(text), ifname=draw(text),
                      args=draw(st.sampled_from(["", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME="]) | text))
    if draw(st.booleans()):
        config["role"] = draw(st.sampled_from(["attempt", "outcome"]))
    request.config = config
    failure = draw(st.booleans())
    outcome = Outcome(error=CNIError(7, draw(text))) if failure else Outcome(result={"cniVersion": "1.0.0"})
    return request, outcome


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(invocation())
def test_slicing_agrees_with_decoding_for_any_invocation(case: tuple[Request, Outcome]) -> None:
    request, outcome = case
    line = events.render(request, outcome, logger_settings.load(request.config), [])[:-1]
    assert is_canonical_line(line)
    agree(line)


def test_slicing_engages_for_ordinary_lines() -> None:
    request = Request("ADD", container_id="abc", netns="/run/netns/x", ifname="eth0",
                      args="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p")
    request.config = {"cniVersion": "1.0.0", "name": "net", "type": "logger",
                      "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}}
    line = events.render(request, Outcome(result={}), logger_settings.load(request.config), [])[:-1]
    rec = agree(line)
    assert rec is not None
    assert (rec.command, rec.container_id, rec.ifname, rec.network, rec.outcome) == ("ADD", "abc", "eth0", "net",
                                                                                     "success")
    assert rec.doc["cni"]["args"]["K8S_POD_NAME"] == "p"


def test_escapes_make_slicing_give_up_rather_than_guess() -> None:
    request = Request("ADD", container_id='a"b', netns="/x", ifname="eth0")
    request.config = {"cniVersion": "1.0.0", "name": "net", "type": "logger"}
    line = events.render(request, Outcome(result={}), logger_settings.load(request.config), [])[:-1]
    assert head_from_line(line) is None
    assert fields(head_from_doc(line, json.loads(line)))[3] == 'a"b'  # type: ignore[index]


def test_a_time_not_in_the_plugin_shape_is_decoded_not_sliced() -> None:
    request = Request("ADD", container_id="abc", netns="/x", ifname="eth0")
    request.config = {"cniVersion": "1.0.0", "name": "net", "type": "logger"}
    line = events.render(request, Outcome(result={}), logger_settings.load(request.config), [])[:-1]
    assert head_from_line(line) is not None
    stamp = line[15:42]
    for bad in (stamp[:5] + b"x" + stamp[6:], stamp[:26] + b"0", stamp[:10] + b" " + stamp[11:],
                stamp.replace(b"-", b"/"), stamp[:-1], stamp + b"0", stamp[:20] + "\u0663".encode() + stamp[21:],
                b"2026-11-28T02:20:15+00:00"):
        damaged = line[:15] + bad + line[42:]
        assert is_canonical_line(damaged)
        assert head_from_line(damaged) is None, bad
        decoded = head_from_doc(damaged, json.loads(damaged))
        assert decoded is not None and decoded.timestamp != bad.decode(), bad  # normalised, or no time


def test_what_is_not_an_event_has_no_head() -> None:
    for doc in ({}, {"event": "x"}, [1], "s", {"message": "hi"}):
        assert head_from_doc(b"", doc) is None
    rec = head_from_doc(b"", {"event": {"action": "cni-del", "outcome": "success", "duration": True},
                              "@timestamp": "2026-11-28T02:20:15+00:00", "container": {"id": "c"}})
    assert fields(rec) == ("2026-11-28T02:20:15.000000Z", "DEL", "success", "c", "", "", None, "", "",
                           ("", "c", "", ""))
