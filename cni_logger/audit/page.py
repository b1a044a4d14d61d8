"""``report --html FILE``: the report as one self-contained page, with a picture of address occupancy.

One file, nothing fetched: styles, the SVG picture and a small script are inline, and a Content
Security Policy (``default-src 'none'``) makes the browser refuse any fetch that might slip in. The
page works without the script (every bar has an SVG ``<title>``, which browsers show on hover);
the script adds an information box that follows the pointer, pins on click, and highlights the
other holdings of the same container.

The picture: one row per address (sorted numerically), one bar per holding from its start (or its
first evidence, drawn with a dashed outline when the ADD is not in the trail) to its end (or the end
of the window, with an open right edge when still held), coloured per network. Conflicting
holdings have a red outline and their address a red label, superseded ones (their DEL lost) a
dotted one, with the notes in their titles; quiet periods are grey hatched bands, possible gaps (a
missing backup, ``evidence``) light orange bands, outages (the logger out of a chain, from the trail's
coverage events: ``coverage``) light red bands, and damaged stretches orange lines across all rows.
Bounds (``report.Builder``): at most ``max_bars`` holdings (those that ended last) on at most
``max_addresses`` rows; what is left out is said above the picture. Text from the trail is
HTML-escaped and its control characters shown as escapes.
"""

from __future__ import annotations

import html
import json
import os
from typing import TYPE_CHECKING, Any

from cni_logger.audit.formats import visible
from cni_logger.audit.output import pod_label
from cni_logger.audit.timeparse import from_epoch, human_duration, short, to_epoch

if TYPE_CHECKING:
    from cni_logger.audit.occupancy import Holding
    from cni_logger.audit.report import Report

LABEL_WIDTH = 150
PLOT_WIDTH = 1000
ROW_HEIGHT = 16
AXIS_HEIGHT = 34
MIN_BAR = 2.0
PALETTE = ("#3b7dd8", "#2a9d8f", "#8e6cc9", "#c28a1e", "#5b8c3a", "#b0527d", "#4f6d7a", "#d07a3a")


def esc(value: Any) -> str:
    """Trail text for the page: escaped for HTML, control characters written out."""
    return html.escape(visible("" if value is None else str(value)), quote=True)


def _time(stamp: str | None) -> str:
    return short(stamp) if stamp else "-"


MODE = 0o640
"""The page's mode, whatever the umask: the trail's (the plugin creates its log files 0640), since the page
shows what the trail holds (pods, addresses, containers) to whoever may read it."""


def problem(path: str) -> str | None:
    """Why the page cannot be written to ``path``, or ``None``: checked before the scan, which may be long."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"cannot write the page to {path}: it is a directory"
    if not os.path.isdir(directory):
        return f"cannot write the page to {path}: no directory {directory}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot write the page to {path}: the directory {directory} is not writable"
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        return f"cannot write the page to {path}: the file is not writable"
    return None


def write(path: str, report: Report, data: dict[str, Any]) -> None:
    """Write the page to ``path``, mode ``MODE``, atomically: a reader (a browser, a ticket's upload) never sees
    half a page, and an earlier page stays whole if this one cannot be written (``OSError``)."""
    import tempfile

    text = render(report, data).encode("utf-8")
    directory, name = os.path.split(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)  # 0600 until complete
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), MODE)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def render(report: Report, data: dict[str, Any]) -> str:
    trail, window = data["trail"], data["window"]
    start = window["since"] or trail["first"] or trail["first_in_window"]
    end = window["until"] or trail["last"] or start
    parts = [HEAD.replace("{title}", esc(f"cni-logger report {_time(start)} .. {_time(end)}"))]
    span = (f"window {esc(_time(window['since']))} .. {esc(_time(window['until']))}"
            if window["since"] or window["until"] else "the whole trail")
    parts.append(f"<h1>cni-logger report</h1><p class='sub'>{span}; events in the trail from "
                 f"{esc(_time(trail['first']))} to {esc(_time(trail['last']))}</p>")
    parts.append(_summary(data))
    parts.append(_picture(report, data, start, end))
    parts.append(_tables(data))
    parts.append(SCRIPT)
    parts.append("</body></html>\n")
    return "".join(parts)


def _summary(data: dict[str, Any]) -> str:
    trail = data["trail"]
    leaks = data["leaks"]
    cards = [("events", "events in window", trail["events_in_window"]), ("files", "files", len(trail["files"])),
             ("holdings", "holdings", sum(n["holdings"] for n in data["networks"].values())),
             ("conflicts", "conflicts", data["conflicts"]["count"]),
             ("never-deleted", "never deleted", leaks["never_deleted"]["count"]),
             ("del-without-add", "DELs without ADD", leaks["del_without_add"]["count"]),
             ("superseded", "superseded (DEL lost)", leaks["superseded"]["count"]),
             ("failures", "failed invocations", data["failures"]["count"]),
             ("damaged", "damaged lines", trail["skipped_lines"]),
             ("possible-gaps", "gaps", trail["possible_gaps"]["count"]),
             ("quiet", "quiet periods", trail["quiet_periods"]["count"]),
             ("outages", "outages (logger out)", data["coverage"]["outages"]["count"]),
             ("dropped", "events not written", data["coverage"]["dropped"]["events"])]
    alarming = {"conflicts", "never-deleted", "superseded", "failures", "damaged", "possible-gaps", "outages",
                "dropped"}
    return "<div class='cards'>" + "".join(
        f"<div class='card{' warn' if key in alarming and value else ''}'><span class='n' id='count-{key}'>{value}"
        f"</span><span class='l'>{label}</span></div>" for key, label, value in cards) + "</div>"


def _picture(report: Report, data: dict[str, Any], start: str | None, end: str | None) -> str:
    picture = data["picture"]
    note = (f"{picture['bars']} holdings drawn on {picture['rows']} address rows "
            f"(at most {picture['max_bars']} holdings, those that ended last, on at most "
            f"{picture['max_addresses']} rows).")
    if picture["bars_not_drawn"] or picture["rows_not_drawn"]:
        note += (f" <strong>{picture['bars_not_drawn']} more holdings and {picture['rows_not_drawn']} more "
                 "addresses not drawn</strong>: narrow the window with --since/--until, or raise --max-bars and "
                 "--max-addresses.")
    head = (f"<h2>Address occupancy</h2><p class='note' id='picture-note'>{note} "
            f"<span id='drawn' data-bars='{len(report.bars)}'></span></p>")
    if not report.rows or not start or not end:
        return head + "<p>No address was held in the window.</p>"
    t0, t1 = to_epoch(start), to_epoch(end)
    if t1 <= t0:
        t1 = t0 + 1.0
    scale = PLOT_WIDTH / (t1 - t0)

    def x(stamp: str | None, default: float) -> float:
        if not stamp:
            return default
        return min(max((to_epoch(stamp) - t0) * scale, 0.0), PLOT_WIDTH)

    rows = {address: number for number, address in enumerate(report.rows)}
    height = AXIS_HEIGHT + len(report.rows) * ROW_HEIGHT + 4
    width = LABEL_WIDTH + PLOT_WIDTH + 10
    colours = {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(sorted(data["networks"]))}
    conflicted = {bar.address for bar in report.bars if bar.conflicts_with}
    svg = [f"<div class='scroll'><svg id='occupancy' width='{width}' "
           f"height='{height}' viewBox='0 0 {width} {height}'>",
           "<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' "
           "patternTransform='rotate(45)'><rect width='3' height='6' fill='#c9c9c9'/></pattern></defs>"]
    for number in range(len(report.rows)):
        if number % 2:
            svg.append(f"<rect class='stripe' x='{LABEL_WIDTH}' y='{AXIS_HEIGHT + number * ROW_HEIGHT}' "
                       f"width='{PLOT_WIDTH}' height='{ROW_HEIGHT}'/>")
    svg.append(_axis(t0, t1, len(report.rows)))
    for address, number in rows.items():
        y = AXIS_HEIGHT + number * ROW_HEIGHT + ROW_HEIGHT - 4
        mark = " conflict" if address in conflicted else ""
        svg.append(f"<text class='addr{mark}' x='{LABEL_WIDTH - 6}' y='{y}' text-anchor='end'>{esc(address)}"
                   f"{' !' if mark else ''}</text>")
    plot_bottom = AXIS_HEIGHT + len(report.rows) * ROW_HEIGHT
    for quiet in data["trail"]["quiet_periods"]["listed"]:
        left, right = x(quiet["from"], 0.0), x(quiet["until"], PLOT_WIDTH)
        if right > left:
            svg.append(f"<rect class='gap' x='{LABEL_WIDTH + left:.1f}' y='{AXIS_HEIGHT}' width='{right - left:.1f}' "
                       f"height='{plot_bottom - AXIS_HEIGHT}' data-from='{esc(quiet['from'])}' "
                       f"data-until='{esc(quiet['until'])}'><title>quiet period: no event from "
                       f"{esc(_time(quiet['from']))} to {esc(_time(quiet['until']))} "
                       f"({esc(human_duration(quiet['seconds']))})</title></rect>")
    for gap in data["trail"]["possible_gaps"]["listed"]:
        left, right = x(gap["after"], 0.0), x(gap["before"], PLOT_WIDTH)
        svg.append(f"<rect class='possible-gap' x='{LABEL_WIDTH + left:.1f}' y='{AXIS_HEIGHT}' "
                   f"width='{max(right - left, MIN_BAR):.1f}' height='{plot_bottom - AXIS_HEIGHT}' "
                   f"data-from='{esc(gap['after'])}' data-until='{esc(gap['before'])}'><title>gap: "
                   f"{esc(gap['what'])} ({esc(gap['file'])})</title></rect>")
    for outage in data["coverage"]["outages"]["listed"]:
        left, right = x(outage["from"], 0.0), x(outage["until"], PLOT_WIDTH)
        why = outage["reason"] + (f": {outage['detail']}" if outage["detail"] else "")
        svg.append(f"<rect class='outage' x='{LABEL_WIDTH + left:.1f}' y='{AXIS_HEIGHT}' "
                   f"width='{max(right - left, MIN_BAR):.1f}' height='{plot_bottom - AXIS_HEIGHT}' "
                   f"data-from='{esc(outage['from'])}' data-until='{esc(outage['until'] or '')}' "
                   f"data-network='{esc(outage['network'])}' data-host='{esc(outage['host'])}'><title>outage: the "
                   f"logger was out of {esc(outage['network'])} on {esc(outage['host'])} from "
                   f"{esc(_time(outage['from']))} to {esc(_time(outage['until']) if outage['until'] else 'the end')}"
                   f" ({esc(why)}): nothing there is in the trail</title></rect>")
    for damage in data["trail"]["damaged"]["listed"]:
        at = x(damage["before"] or damage["after"], PLOT_WIDTH)
        svg.append(f"<line class='damaged' x1='{LABEL_WIDTH + at:.1f}' x2='{LABEL_WIDTH + at:.1f}' "
                   f"y1='{AXIS_HEIGHT - 6}' y2='{plot_bottom}' data-lines='{damage['lines']}'><title>"
                   f"{esc(damage['kind'])}: {damage['lines']} lines of {esc(damage['file'])} between "
                   f"{esc(_time(damage['after']))} and {esc(_time(damage['before']))}: {esc(damage['what'])}"
                   f"{'; events may be missing' if damage['lost_events_possible'] else ''}</title></line>")
    for bar, lane, lanes in _lanes(report.bars):
        svg.append(_bar(bar, rows[bar.address], x, colours.get(bar.network, PALETTE[0]), lane, lanes))
    svg.append("</svg></div>")
    legend = ("<p class='legend'>" + "".join(
        f"<span><i style='background:{colour}'></i>{esc(name or '-')}</span>" for name, colour in colours.items())
        + "<span><i class='lc'></i>conflict</span><span><i class='lu'></i>start not in the trail</span>"
          "<span><i class='lo'></i>still held</span><span><i class='lg'></i>quiet period</span>"
          "<span><i class='lp'></i>gap (a missing backup)</span>"
          "<span><i class='lx'></i>outage (the logger out of a chain)</span>"
          "<span><i class='ld'></i>damaged lines</span></p>")
    info = "<div id='info' class='info' hidden></div>"
    return head + legend + "".join(svg) + info


def _axis(t0: float, t1: float, rows: int) -> str:
    ticks = 5 if t1 - t0 >= 10 else 6  # labels of about 125 or 80 pixels, 200 or 166 apart
    bottom = AXIS_HEIGHT + rows * ROW_HEIGHT
    parts = [f"<line class='axis' x1='{LABEL_WIDTH}' x2='{LABEL_WIDTH + PLOT_WIDTH}' y1='{AXIS_HEIGHT - 2}' "
             f"y2='{AXIS_HEIGHT - 2}'/>"]
    for tick in range(ticks + 1):
        at = tick * PLOT_WIDTH / ticks
        stamp = from_epoch(t0 + (t1 - t0) * tick / ticks)
        label = stamp[:10] + " " + stamp[11:19] if t1 - t0 >= 10 else stamp[11:23]
        anchor = "start" if tick == 0 else "end" if tick == ticks else "middle"
        parts.append(f"<line class='tick' x1='{LABEL_WIDTH + at:.1f}' x2='{LABEL_WIDTH + at:.1f}' "
                     f"y1='{AXIS_HEIGHT - 6}' y2='{bottom}'/>"
                     f"<text class='tl' x='{LABEL_WIDTH + at:.1f}' y='{AXIS_HEIGHT - 10}' "
                     f"text-anchor='{anchor}'>{label}</text>")
    return "".join(parts)


def _lanes(bars: list[Holding]) -> list[tuple[Holding, int, int]]:
    """Each bar with its lane in its address row, and the row's lane count: holdings that overlap (a
    conflict) share the row's height side by side instead of hiding one another."""
    by_address: dict[str, list[Holding]] = {}
    for bar in bars:
        by_address.setdefault(bar.address, []).append(bar)
    placed: list[tuple[Holding, int, int]] = []
    for group in by_address.values():
        group.sort(key=lambda h: h.since)
        ends: list[str | None] = []  # per lane: where its last bar ends (None: still held)
        lanes: list[int] = []
        for bar in group:
            lane = next((n for n, end in enumerate(ends) if end is not None and end < bar.since), len(ends))
            if lane == len(ends):
                ends.append(bar.end)
            else:
                ends[lane] = bar.end
            lanes.append(lane)
        placed += [(bar, lane, len(ends)) for bar, lane in zip(group, lanes, strict=True)]
    return placed


def _bar(bar: Holding, row: int, x: Any, colour: str, lane: int = 0, lanes: int = 1) -> str:
    left = x(bar.since, 0.0)
    right = x(bar.end, PLOT_WIDTH)
    width = max(right - left, MIN_BAR)
    if left + width > PLOT_WIDTH:
        left = max(PLOT_WIDTH - width, 0.0)
    classes = ["bar"]
    if bar.conflicts_with:
        classes.append("conflict")
    if bar.start is None:
        classes.append("unknown-start")
    if bar.end is None:
        classes.append("open")
    if bar.ended_by == "superseded":
        classes.append("superseded")
    pod = pod_label(bar.namespace, bar.pod)
    title = (f"{bar.address} held by {bar.container_id} ({pod or 'no pod'}) on {bar.network or '-'} "
             f"{bar.ifname or '-'}\nfrom {_time(bar.start) if bar.start else '<= ' + _time(bar.seen)}\n"
             f"until {_time(bar.end) if bar.end else '(still held)'}"
             + (f" (ended by {bar.ended_by})" if bar.ended_by else "")
             + (f"\nconflicts with {', '.join(bar.conflicts_with)}" if bar.conflicts_with else "")
             + "".join(f"\nNOTE: {note}" for note in bar.notes))
    attributes = {"address": bar.address, "container": bar.container_id, "pod": pod, "network": bar.network,
                  "ifname": bar.ifname, "from": bar.start or "", "seen": bar.seen, "until": bar.end or "",
                  "ended-by": bar.ended_by, "conflicts": " ".join(bar.conflicts_with), "notes": "; ".join(bar.notes)}
    data = " ".join(f"data-{key}='{esc(value)}'" for key, value in attributes.items())
    height = (ROW_HEIGHT - 4) / lanes
    y = AXIS_HEIGHT + row * ROW_HEIGHT + 2 + lane * height
    return (f"<rect class='{' '.join(classes)}' x='{LABEL_WIDTH + left:.1f}' y='{y:.1f}' width='{width:.1f}' "
            f"height='{height:.1f}' fill='{colour}' {data}><title>{esc(title)}</title></rect>")


def _table(title: str, key: str, section: dict[str, Any] | None, columns: list[str], rows: list[list[Any]]) -> str:
    count = section["count"] if section is not None else len(rows)
    more = f" (first {len(rows)} listed)" if section is not None and len(rows) < count else ""
    head = f"<h2 id='{key}'>{esc(title)}: {count}{more}</h2>"
    if not rows:
        return head
    return (head + f"<table class='list' data-section='{key}'><thead><tr>"
            + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows)
            + "</tbody></table>")


def _line_span(stretch: dict[str, Any]) -> str:
    """A damaged stretch's lines as ``first-last`` (``first-`` to the end of the file), or how many."""
    first, last = stretch["first_line"], stretch["last_line"]
    if first is None:
        return str(stretch["lines"])
    return f"{first}-{last or 'end'}" if last != first else str(first)


def _whose(stretch: dict[str, Any]) -> str:
    if not stretch["lost_events_possible"]:
        return "no (foreign lines)"
    return "anyone's" if stretch["containers"] is None else ", ".join(stretch["containers"])


def _tables(data: dict[str, Any]) -> str:
    trail = data["trail"]
    parts = [_table("Per network", "networks", None,
                    ["network", "addresses", "holdings", "peak at once", "conflicts", "still held"],
                    [[name or "-", u["addresses"], u["holdings"], u["peak"], u["conflicts"], u["still_held"]]
                     for name, u in data["networks"].items()])]
    parts.append(_table("Conflicts", "conflicts", data["conflicts"],
                        ["at", "address", "host", "network", "container", "pod", "while held by"],
                        [[_time(c["at"]), c["address"], c.get("host") or "", c["network"], c["container_id"],
                          pod_label(c["namespace"], c["pod"]), c["other_container_id"]]
                         for c in data["conflicts"]["listed"]]))
    parts.append(_table("Never deleted", "never-deleted", data["leaks"]["never_deleted"],
                        ["since", "address", "host", "network", "ifname", "container", "pod"],
                        [[_time(h["from"]) if h["from"] else "<= " + _time(h["seen"]), h["address"],
                          h.get("host") or "", h["network"],
                          h["ifname"], h["container_id"], pod_label(h["namespace"], h["pod"])]
                         for h in data["leaks"]["never_deleted"]["listed"]]))
    parts.append(_table("DELs without ADD", "del-without-add", data["leaks"]["del_without_add"],
                        ["at", "host", "network", "ifname", "container", "pod"],
                        [[_time(o["seen"]), o.get("host") or "", o["network"], o["ifname"], o["container_id"],
                          pod_label(o["namespace"], o["pod"])] for o in data["leaks"]["del_without_add"]["listed"]]))
    parts.append(_table("Superseded (their DEL was lost; not leaks)", "superseded", data["leaks"]["superseded"],
                        ["since", "until", "address", "host", "network", "container", "pod", "note"],
                        [[_time(h["from"]) if h["from"] else "<= " + _time(h["seen"]), _time(h["until"]),
                          h["address"], h.get("host") or "", h["network"], h["container_id"],
                          pod_label(h["namespace"], h["pod"]),
                          "; ".join(h["notes"])] for h in data["leaks"]["superseded"]["listed"]]))
    parts.append(_table("Clean-up DELs (no ADD, no cached result; not leaks)", "cleanup-del",
                        data["leaks"]["cleanup_del"], ["at", "host", "network", "ifname", "container", "pod"],
                        [[_time(o["seen"]), o.get("host") or "", o["network"], o["ifname"], o["container_id"],
                          pod_label(o["namespace"], o["pod"])] for o in data["leaks"]["cleanup_del"]["listed"]]))
    parts.append(_table("Failed invocations", "failures", data["failures"],
                        ["at", "command", "host", "network", "container", "pod", "error"],
                        [[_time(f["@timestamp"]), f["command"], f.get("host") or "", f["network"], f["container_id"],
                          pod_label(f["namespace"], f["pod"]), f["error"] or ""] for f in data["failures"]["listed"]]))
    stats = data["stats"]
    parts.append(_table("Latency (ms)", "latency", None, ["command", "count", "p50", "p90", "p99", "max", "mean"],
                        [[name, s["count"], s["p50"], s["p90"], s["p99"], s["max"], s["mean"]]
                         for name, s in stats["latency_ms"].items() if s["count"]]))
    parts.append(_table("Files read", "files", None, ["file", "bytes on disk"],
                        [[f["path"], f["bytes"]] for f in trail["files"]]))
    parts.append(_table("Damaged stretches", "damaged", trail["damaged"],
                        ["kind", "file", "lines", "after", "before", "events may be missing"],
                        [[d["kind"], d["file"], _line_span(d), _time(d["after"]),
                          _time(d["before"]) if d["before"] else "(end of trail)", _whose(d)]
                         for d in trail["damaged"]["listed"]]))
    parts.append(_table("Gaps (a backup missing, or possibly missing)", "possible-gaps", trail["possible_gaps"],
                        ["between", "after", "before", "why"],
                        [[g["file"], _time(g["after"]), _time(g["before"]), g["what"]]
                         for g in trail["possible_gaps"]["listed"]]))
    coverage = data["coverage"]
    parts.append(_table("Outages (the logger was out of a chain: nothing there is in the trail)", "outages",
                        coverage["outages"], ["host", "network", "from", "until", "why"],
                        [[o["host"], o["network"], _time(o["from"]), _time(o["until"]) if o["until"] else
                          "(end of trail)", o["reason"] + (f": {o['detail']}" if o["detail"] else "")]
                         for o in coverage["outages"]["listed"]]))
    parts.append(_table("Events the plugin could not write", "dropped", coverage["dropped"],
                        ["host", "from", "until", "events", "containers"],
                        [[d["host"], _time(d["first"]), _time(d["last"]), d["dropped"],
                          "anyone's" if d["containers"] is None else ", ".join(d["containers"])]
                         for d in coverage["dropped"]["listed"]]))
    inventories, heartbeats = coverage["inventories"], coverage["heartbeats"]
    parts.append(f"<p class='note' id='coverage-note'>Inventories: {inventories['count']}"
                 + (f" ({esc(_time(inventories['first']))} .. {esc(_time(inventories['last']))})"
                    if inventories["count"] else "")
                 + f"; heartbeats: {heartbeats['count']}"
                 + (f" ({esc(_time(heartbeats['first']))} .. {esc(_time(heartbeats['last']))})"
                    if heartbeats["count"] else "") + ".</p>")
    leaks = data["leaks"]
    for title, key in (("Possibly deleted while the logger was out (not leaks for certain)", "possibly_deleted"),
                       ("DEL not recorded (a complete inventory no longer listed them; not leaks)", "unrecorded_del")):
        parts.append(_table(title, key.replace("_", "-"), leaks[key],
                            ["since", "until", "address", "host", "network", "container", "pod", "note"],
                            [[_time(h["from"]) if h["from"] else "<= " + _time(h["seen"]), _time(h["until"]),
                              h["address"], h.get("host") or "", h["network"], h["container_id"],
                          pod_label(h["namespace"], h["pod"]),
                              "; ".join(h["notes"])] for h in leaks[key]["listed"]]))
    quiet = trail["quiet_periods"]
    parts.append(_table(f"Quiet periods (no event for {human_duration(quiet['min_seconds'])} or more; not evidence "
                        "of loss)", "quiet", quiet, ["from", "until", "length"],
                        [[_time(g["from"]), _time(g["until"]), human_duration(g["seconds"])]
                         for g in quiet["listed"]]))
    parts.append("<script type='application/json' id='report-data'>"
                 + json.dumps({k: v for k, v in data.items() if k != "stats"}, ensure_ascii=True)
                 .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                 + "</script>")
    return "".join(parts)


HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{font:13px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:16px 20px;color:#1d2329;background:#fff}
h1{font-size:20px;margin:0 0 2px}h2{font-size:15px;margin:22px 0 6px}.sub,.note{color:#555;margin:2px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0}
.card{border:1px solid #d4d9de;border-radius:6px;padding:6px 12px;min-width:90px;background:#f7f9fa}
.card.warn{border-color:#d9534f;background:#fdf1f0}.card .n{display:block;font-size:20px;font-weight:600}
.card .l{color:#555;font-size:12px}
.scroll{overflow:auto;max-height:75vh;border:1px solid #d4d9de;border-radius:4px}
svg text{font:11px "DejaVu Sans Mono",monospace;fill:#333}svg .addr.conflict{fill:#c62828;font-weight:bold}
.stripe{fill:#f3f5f7}.axis{stroke:#888}.tick{stroke:#e3e6e9}.tl{fill:#555}
.bar{stroke:#fff;stroke-width:0.5;cursor:pointer}.bar:hover,.bar.hl{stroke:#111;stroke-width:1.5}
.bar.conflict{stroke:#d32f2f;stroke-width:2}.bar.unknown-start{stroke:#333;stroke-dasharray:3 2;stroke-width:1}
.bar.open{fill-opacity:.6}.gap{fill:url(#hatch);opacity:.7}.damaged{stroke:#ef7d00;stroke-width:2}
.legend span{margin-right:14px;white-space:nowrap}.legend i{display:inline-block;width:14px;height:10px;
margin-right:4px;vertical-align:middle;border-radius:2px}.legend .lc{border:2px solid #d32f2f}
.legend .lu{border:1px dashed #333}.legend .lo{background:#3b7dd8;opacity:.6}
.legend .lg{background:repeating-linear-gradient(45deg,#c9c9c9 0 3px,#fff 3px 6px)}
.legend .ld{background:#ef7d00;width:3px}
.possible-gap{fill:#ef7d00;opacity:.25}.bar.superseded{stroke-dasharray:1 2;stroke:#555}
.legend .lp{background:#ef7d00;opacity:.25}
.outage{fill:#c0392b;opacity:.18}.legend .lx{background:#c0392b;opacity:.3}
.info{position:fixed;z-index:2;background:#fff;border:1px solid #888;border-radius:4px;padding:6px 9px;
box-shadow:0 2px 8px rgba(0,0,0,.2);font:12px/1.45 "DejaVu Sans Mono",monospace;white-space:pre;pointer-events:none}
table.list{border-collapse:collapse;font-size:12px}table.list th,table.list td{border:1px solid #dde1e5;
padding:2px 8px;text-align:left;font-family:"DejaVu Sans Mono",monospace;white-space:nowrap}
table.list td:last-child{white-space:normal}table.list th{background:#f0f3f5}
</style></head><body>
"""

SCRIPT = """<script>
(function () {
  var bars = document.querySelectorAll('rect.bar');
  var drawn = document.getElementById('drawn');
  if (drawn) { drawn.textContent = '(' + bars.length + ' bars on the page)'; drawn.dataset.rendered = bars.length; }
  var info = document.getElementById('info');
  if (!info) { return; }
  var pinned = null;
  function describe(bar) {
    var d = bar.dataset;
    return d.address + '\\ncontainer ' + d.container + '\\npod       ' + (d.pod || '-') +
      '\\nnetwork   ' + d.network + ' ' + d.ifname + '\\nfrom      ' + (d.from || '<= ' + d.seen) +
      '\\nuntil     ' + (d.until || '(still held)') + (d.endedBy ? ' (' + d.endedBy + ')' : '') +
      (d.conflicts ? '\\nconflicts ' + d.conflicts : '');
  }
  function highlight(bar, on) {
    var id = bar.dataset.container;
    bars.forEach(function (other) { if (other.dataset.container === id) { other.classList.toggle('hl', on); } });
  }
  function show(bar, event) {
    info.textContent = describe(bar);
    info.hidden = false;
    info.style.left = Math.min(event.clientX + 14, window.innerWidth - info.offsetWidth - 8) + 'px';
    info.style.top = Math.min(event.clientY + 14, window.innerHeight - info.offsetHeight - 8) + 'px';
  }
  bars.forEach(function (bar) {
    bar.addEventListener('mousemove', function (event) { if (!pinned) { show(bar, event); } });
    bar.addEventListener('mouseenter', function () { if (!pinned) { highlight(bar, true); } });
    bar.addEventListener('mouseleave', function () { if (!pinned) { info.hidden = true; highlight(bar, false); } });
    bar.addEventListener('click', function (event) {
      if (pinned) { highlight(pinned, false); }
      pinned = pinned === bar ? null : bar;
      if (pinned) { highlight(bar, true); show(bar, event); } else { info.hidden = true; }
      event.stopPropagation();
    });
  });
  document.addEventListener('click', function () {
    if (pinned) { highlight(pinned, false); pinned = null; info.hidden = true; }
  });
})();
</script>
"""
