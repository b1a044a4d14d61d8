"""The report page's parts that other parts of the report feed (``failed_adds``, leaks' ``state``, rows' ``host``),
and its time axis: rendered from a real report of a trail the plugin wrote, then read back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cni_logger.audit import page, report, sources
from cni_logger.audit.reader import Scan
from tests.harness.trails import Trail, Writer


@pytest.mark.parametrize(("span", "step"), [(2.0, 0.2), (59.0, 10), (3600.0, 600), (5 * 3600.0, 1800),
                                            (6 * 3600.0, 3600), (86400.0, 3 * 3600), (7 * 86400.0, 86400),
                                            (0.0, 0.001)])
def test_ticks_fall_on_round_times(span: float, step: float) -> None:
    t0 = 1764989100.123
    found_step, found = page.ticks(t0, t0 + span)
    assert found_step == step
    assert 1 <= len(found) <= page.MAX_TICKS
    assert all(abs(t - round(t / step) * step) < 1e-4 and t0 - 1e-4 <= t <= t0 + span + 1e-4 for t in found)
    if span >= 2:
        assert len(found) >= 4


def rendered(tmp_path: Path, change: Any) -> str:
    trail = Trail(tmp_path, tmp_path / "cni.log")
    w = Writer(trail)
    w.run("ADD", "ctr-run", address="10.1.0.2", pod="running")
    w.run("ADD", "ctr-gone", address="10.1.0.3", pod="leaked")
    trails, problems = sources.resolve([str(trail.log)])
    assert not problems
    built = report.build(Scan(trails), report.Window(), gap_seconds=3600.0)
    data = built.to_json()
    change(data)
    return page.render(built, data)


def card(source: str, key: str) -> tuple[str, str]:
    found = re.search(rf"<div class='card( alarm| warn)?' data-card='{key}'><span class='n' id='count-{key}'>(\d+)<",
                      source)
    assert found, key
    return (found[1] or "").strip(), found[2]


def test_failed_adds_and_leaked_pods_are_the_alarms_running_ones_are_not(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:  # as the report finds them on the trail's own node
        data["failed_adds"] = {"count": 3, "inferred": 1, "bracket": False, "items": [
            {"time": "2026-12-06T10:00:00.000000Z", "host": "node-b", "network": "audit-net", "container": "ctr-f",
             "pod": "web-f", "namespace": "shop", "ifname": "eth0", "how": "add-failed", "error": "range exhausted"}]}
        leaks = data["leaks"]
        rows = leaks["never_deleted"]["listed"]
        for row in rows:
            row["state"] = "running" if row["container_id"] == "ctr-run" else "leaked"
            row["host"] = "node-a"
        leaks["running"] = {"count": 1, "listed": [r for r in rows if r["state"] == "running"]}
        leaks["never_deleted"] = {"count": 1, "listed": [r for r in rows if r["state"] == "leaked"]}
        data["still_open"] = {"running": 1, "leaked": 1, "unknown": 0}

    source = rendered(tmp_path, change)
    assert card(source, "failed-adds") == ("alarm", "3")
    assert "1 inferred from clean-up DELs" in source
    assert card(source, "leaked") == ("alarm", "1")  # ctr-gone; ctr-run is running, not an alarm
    assert card(source, "running") == ("", "1")
    assert card(source, "never-deleted") == ("", "1")
    assert "<h2 id='failed-adds'>Failed ADDs: 3 (first 1 listed)</h2>" in source
    assert "<td>node-b</td>" in source and "range exhausted" in source  # the HOST column, from the rows' host
    assert re.search(r"<th>host</th><th>state</th>", source)
    assert re.search(r"<h2 id='running'>Still running \(not leaks\)", source)


def test_a_report_that_could_not_look_raises_no_leak_alarm(tmp_path: Path) -> None:
    source = rendered(tmp_path, lambda data: None)  # built without looking at the node: both states unknown
    assert card(source, "failed-adds") == ("", "0")
    assert "data-card='leaked'" not in source  # running and leaked cannot be told apart: no alarm either way
    assert card(source, "never-deleted") == ("", "2")
    assert "running or leaked: not told here" in source
    assert "Failed ADDs" not in source.split("Nothing found in:")[0].split("<div class='cards")[0]
