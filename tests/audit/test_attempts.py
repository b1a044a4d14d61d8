"""Bracket mode in the audit: ``attempts`` pairs attempt and outcome events written by the real plugin,
and ``stats``, ``leaks``, ``report``, ``timeline`` and ``who-had`` answer through its hooks.

The story, on network ``audit-net`` (``A`` = the attempt entry's event, ``O`` = the outcome entry's):

    ctr-ok    A ADD, O ADD 10.1.0.5                  succeeded; later O DEL, A DEL (cached result)
    ctr-fail  A ADD, (the chain fails), O DEL, A DEL  failed, cleaned up
    ctr-retry A ADD, A ADD, O ADD 10.1.0.6           the first failed (retried), the second succeeded
    ctr-hang  A ADD                                   no outcome, no DEL: in flight, or never cleaned up
    ctr-plain   ADD 10.1.0.7, DEL                     a logger-last network: nothing to pair
    ctr-ghost   O DEL, A DEL                          a DEL without ADD (no attempt before it either)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cni_logger import cli
from cni_logger.audit import attempts, record
from cni_logger.audit.attempts import Attempts
from cni_logger.audit.intervals import Tracker
from cni_logger.audit.record import Record
from tests.harness.trails import Trail, Writer

ATTEMPT = {"role": "attempt"}
OUTCOME = {"role": "outcome"}


def records(trail: Trail) -> list[Record]:
    found = []
    for line in trail.log.read_bytes().splitlines():
        rec = record.head_from_line(line) or record.head_from_doc(line, json.loads(line))
        assert rec is not None, line
        found.append(rec)
    return found


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    directory = tmp_path_factory.mktemp("bracket-trail")
    trail = Trail(directory, directory / "cni.log")
    w = Writer(trail)
    w.config = lambda network="audit-net", version="1.0.0", **extra: {  # type: ignore[method-assign]
        "cniVersion": version, "name": network, "type": "logger", "logFile": str(trail.log), **extra}
    w.run("ADD", "ctr-ok", pod="web-ok", extra=ATTEMPT)
    w.run("ADD", "ctr-ok", address="10.1.0.5", pod="web-ok", extra=OUTCOME)
    w.run("ADD", "ctr-fail", pod="web-fail", extra=ATTEMPT)
    w.run("DEL", "ctr-fail", pod="web-fail", extra=OUTCOME)
    w.run("DEL", "ctr-fail", pod="web-fail", extra=ATTEMPT)
    w.run("ADD", "ctr-retry", pod="web-retry", extra=ATTEMPT)
    w.run("ADD", "ctr-retry", pod="web-retry", extra=ATTEMPT)
    w.run("ADD", "ctr-retry", address="10.1.0.6", pod="web-retry", extra=OUTCOME)
    w.run("ADD", "ctr-plain", address="10.1.0.7", pod="plain")
    w.run("DEL", "ctr-plain", address="10.1.0.7", pod="plain")
    w.run("DEL", "ctr-ghost", pod="ghost", extra=OUTCOME)
    w.run("DEL", "ctr-ghost", pod="ghost", extra=ATTEMPT)
    w.run("DEL", "ctr-ok", address="10.1.0.5", pod="web-ok", extra=OUTCOME)
    w.run("DEL", "ctr-ok", address="10.1.0.5", pod="web-ok", extra=ATTEMPT)
    w.run("ADD", "ctr-hang", pod="web-hang", extra=ATTEMPT)
    return trail


def tool(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    status = cli.tool(list(argv))
    return status, capsys.readouterr().out


# -- recognising the attempt entry's events ----------------------------------------------------------


def test_the_attempt_role_is_read_with_the_head(story: Trail) -> None:
    recs = records(story)
    roles = [e["cni"].get("role", "") for e in story.events]
    assert [r.attempt for r in recs] == [role == "attempt" for role in roles]
    assert all(r._doc is None for r in recs if record.is_canonical_line(r.line)), "decided without decoding"


def test_the_attempt_role_on_decoded_lines_and_lookalikes(story: Trail) -> None:
    event = next(e for e in story.events if e["cni"].get("role") == "attempt")
    spaced = json.dumps(event, indent=1).encode()  # not the plugin's shape: decided from the decoded event
    rec = record.head_from_doc(spaced, json.loads(spaced))
    assert rec is not None and rec.attempt
    lookalike = json.loads(json.dumps(event))
    del lookalike["cni"]["role"]
    lookalike["cni"]["config"] = {"role": "attempt", "nested": {"role": "attempt"}}
    line = json.dumps(lookalike, separators=(",", ":")).encode()
    rec = record.head_from_line(line)
    assert rec is not None and b'"role":"attempt"' in line and not rec.attempt


# -- pairing -----------------------------------------------------------------------------------------


def test_pairing_counts_attempts_outcomes_and_clean_ups(story: Trail) -> None:
    pairing = Attempts()
    concluded = []
    for rec in records(story):
        pairing.feed(rec)
        if pairing.concluded is not None:
            concluded.append((pairing.concluded.key[1], pairing.concluded.concluded_by, rec.command))
    assert (pairing.attempts, pairing.succeeded, pairing.failed, pairing.cleaned_up) == (5, 2, 2, 1)
    assert pairing.events == 8
    assert concluded == [("ctr-fail", "DEL", "DEL"), ("ctr-retry", "retry", "ADD")]
    assert [f.key[1] for f in pairing.unresolved()] == ["ctr-hang"]
    assert pairing.latency.count == 2 and pairing.latency.min is not None and pairing.latency.min > 0
    answer = pairing.to_json()
    assert answer["no_outcome"] == 1 and answer["chain_latency_ms"]["count"] == 2


def test_the_attempt_entrys_own_failure_is_a_failed_attempt(tmp_path: Path) -> None:
    trail = Trail(tmp_path, tmp_path / "cni.log")
    w = Writer(trail)
    w.config = lambda network="audit-net", version="1.0.0", **extra: {  # type: ignore[method-assign]
        "cniVersion": version, "name": network, "type": "logger", "logFile": str(trail.log), **extra}
    failed = w.run("ADD", "ctr-x", version="9.9.9", extra=ATTEMPT)
    assert failed["event"]["outcome"] == "failure"
    pairing = Attempts()
    for rec in records(trail):
        pairing.feed(rec)
    assert (pairing.attempts, pairing.failed, len(pairing.pending)) == (1, 1, 0)
    assert pairing.concluded is not None and pairing.concluded.concluded_by == attempts.ATTEMPT


def test_attempt_events_open_no_interval(story: Trail) -> None:
    tracker = Tracker()
    closed = [i for rec in records(story) for i in tracker.feed(rec)]
    assert [i.key for i in tracker.open.values()] == [("audit-net", "ctr-retry", "eth0")]
    assert record.addresses(next(iter(tracker.open.values())).opened.doc) == ["10.1.0.6"]
    ended = {i.key[1]: (i.orphan, record.addresses(i.opened.doc)) for i in closed}
    assert ended == {"ctr-ok": (False, ["10.1.0.5"]), "ctr-plain": (False, ["10.1.0.7"]),
                     "ctr-fail": (True, []), "ctr-ghost": (True, [])}


# -- the questions ------------------------------------------------------------------------------------


def test_stats_counts_invocations_once_and_attempts_apart(story: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = tool(capsys, "stats", "--log-file", str(story.log), "--json")
    assert status == 0
    answer = json.loads(out)
    assert answer["events"] == len(story.events) - 8
    assert answer["commands"] == {"ADD": 3, "DEL": 4}
    assert {k: v for k, v in answer["attempts"].items() if k != "chain_latency_ms"} == {
        "events": 8, "attempts": 5, "succeeded": 2, "failed": 2, "cleaned_up": 1, "no_outcome": 1,
        "checks": {"attempts": 0, "succeeded": 0, "failed": 0, "no_outcome": 0}}
    # ctr-fail and ctr-retry's first attempt failed; ctr-ghost's DEL (no attempt, no ADD, no cached result) is
    # the clean-up of an ADD that failed before any entry recorded it: inferred
    assert answer["failed"] == {"total": 3, "by_command": {"ADD": 3}, "recorded": {}, "inferred_adds": 1,
                                "failed_attempts": {"ADD": 2}, "no_outcome": {"ADD": 1, "CHECK": 0},
                                "bracket": True}
    chain = answer["attempts"]["chain_latency_ms"]
    assert chain["count"] == 2 and 0 < chain["p50"] <= chain["max"]

    status, out = tool(capsys, "stats", "--log-file", str(story.log))
    assert "ADD attempts (bracket mode): 5: succeeded 2, failed 2 (cleaned up by a DEL: 1), no outcome yet 1" in out
    assert any(line.startswith("chain ") for line in out.splitlines())
    status, out = tool(capsys, "stats", "--log-file", str(story.log), "--format", "csv")
    rows = out.splitlines()
    assert "attempts,failed,2,,,,," in rows and any(r.startswith("latency,chain,2,") for r in rows)


def test_stats_of_a_trail_without_bracket_has_no_attempts(trail: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = tool(capsys, "stats", *trail.args(), "--json")
    assert status == 0 and "attempts" not in json.loads(out)


def test_leaks_lists_the_clean_up_apart_from_dels_without_add(story: Trail,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, out = tool(capsys, "leaks", "--log-file", str(story.log), "--json")
    assert status == 0
    found = [json.loads(line) for line in out.splitlines()]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for leak in found:
        by_kind.setdefault(leak["kind"], []).append(leak)
    # ctr-ghost's DEL has neither an ADD nor a cached result: the clean-up after an ADD that failed
    # before the logger (listed apart as ``cleanup-del``, as without bracket mode)
    assert sorted(by_kind) == ["cleanup-del", "failed-attempt", "never-deleted", "no-outcome"]
    assert [leak["container_id"] for leak in by_kind["cleanup-del"]] == ["ctr-ghost"]
    failed = {leak["container_id"]: leak for leak in by_kind["failed-attempt"]}
    assert sorted(failed) == ["ctr-fail", "ctr-retry"]
    fail_events = story.by_container("ctr-fail")
    assert failed["ctr-fail"]["from"] == fail_events[0]["@timestamp"]
    assert failed["ctr-fail"]["until"] == fail_events[1]["@timestamp"], "the first DEL cleaned up"
    assert failed["ctr-fail"]["ended_by"] == "DEL" and failed["ctr-fail"]["pod"] == "web-fail"
    assert failed["ctr-retry"]["until"] is None and failed["ctr-retry"]["ended_by"] == "retry"
    assert [leak["container_id"] for leak in by_kind["no-outcome"]] == ["ctr-hang"]
    assert [leak["container_id"] for leak in by_kind["never-deleted"]] == ["ctr-retry"]
    assert by_kind["never-deleted"][0]["addresses"] == ["10.1.0.6"]

    status, out = tool(capsys, "leaks", "--log-file", str(story.log))
    assert any(line.startswith("failed-attempt") and "cleaned up by DEL" in line for line in out.splitlines())
    status, out = tool(capsys, "leaks", "--log-file", str(story.log), "--older-than", "1d", "--json")
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert "no-outcome" not in kinds and "never-deleted" not in kinds and "failed-attempt" in kinds


def test_report_has_the_attempts_and_keeps_the_clean_up_out_of_dels_without_add(
        story: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = tool(capsys, "report", "--log-file", str(story.log), "--json")
    assert status == 0
    data = json.loads(out)
    # ctr-ghost's DEL has neither an ADD nor a cached result: a clean-up DEL (as ``leaks`` lists it), and
    # the attempt entry's clean-up DELs are not DELs without ADD either
    assert data["leaks"]["del_without_add"]["listed"] == []
    assert [o["container_id"] for o in data["leaks"]["cleanup_del"]["listed"]] == ["ctr-ghost"]
    assert data["attempts"]["failed"] == 2 and data["attempts"]["failed_attempts"]["count"] == 2
    # every failed ADD, however known: the two failed attempts, and ctr-ghost's clean-up (inferred)
    failed_adds = data["failed_adds"]
    assert (failed_adds["count"], failed_adds["inferred"], failed_adds["bracket"]) == (3, 1, True)
    assert sorted((i["container"], i["how"], i["pod"]) for i in failed_adds["items"]) == [
        ("ctr-fail", "attempt-failed", "web-fail"), ("ctr-ghost", "cleanup-del", "ghost"),
        ("ctr-retry", "attempt-failed", "web-retry")]
    assert all(i["host"] and i["time"] and i["network"] == "audit-net" for i in failed_adds["items"])
    assert data["stats"]["commands"] == {"ADD": 3, "DEL": 4}
    assert {n: u["holdings"] for n, u in data["networks"].items()} == {"audit-net": 3}
    status, out = tool(capsys, "report", "--log-file", str(story.log))
    assert "failed ADD attempts: 2" in out and "ADD attempts (bracket mode): 5" in out


def test_timeline_marks_the_entries_and_attaches_at_the_outcome(story: Trail,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    status, out = tool(capsys, "timeline", "ctr-fail", "--log-file", str(story.log), "--json")
    assert status == 0
    attachment = json.loads(out)
    assert [(s["command"], s["role"]) for s in attachment["events"]] == [
        ("ADD", "attempt"), ("DEL", "outcome"), ("DEL", "attempt")]
    assert attachment["periods"] == [], "a failed attempt was never attached"
    status, out = tool(capsys, "timeline", "ctr-ok", "--log-file", str(story.log), "--json")
    ok = json.loads(out)
    events = story.by_container("ctr-ok")
    assert [(p["attached"], p["detached"]) for p in ok["periods"]] == [(events[1]["@timestamp"],
                                                                       events[2]["@timestamp"])]
    status, out = tool(capsys, "timeline", "ctr-fail", "--log-file", str(story.log))
    assert "(attempt entry)" in out and "(outcome entry; clean-up after the failed ADD attempt at " in out
    first = out.splitlines()[2].split()
    assert first[2:4] == ["ADD", "failed"] and "(attempt entry; the chain: failed ADD)" in out, out


def test_who_had_is_unchanged_by_attempt_events(story: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = tool(capsys, "who-had", "10.1.0.5", "--log-file", str(story.log), "--json")
    assert status == 0
    holders = [json.loads(line) for line in out.splitlines()]
    events = story.by_container("ctr-ok")
    assert [(h["container_id"], h["from"], h["until"]) for h in holders] == [
        ("ctr-ok", events[1]["@timestamp"], events[2]["@timestamp"])]
