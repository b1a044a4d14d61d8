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

The page stands alone as an artefact in an incident ticket: its header names the hosts whose events are
in the window, the window, the trail's span, when and by which build (``cli.version``) it was made, and
the time zone (UTC) of every time on it. The alarm cards come first: failed ADDs (the report's
``failed_adds``: failed attempts, failed ADDs, and the ones inferred from clean-up DELs) and conflicts,
and leaked attachments when the report ran on the trail's node and could tell running pods from leaked
ones (``still_open``); a running pod is never an alarm, and is listed apart. The time axis has ticks
at round times (1, 2, 5, 10, 15, 30 s or min, 1, 2, 3, 6, 12 h, days: ``ticks``), a bar carries its
pod's name only when the name fits (``text_width``), every title's lines are real lines, and a filter
box hides the table rows and dims the bars that do not name the pod, namespace, container or address
typed. Conflicts name both holders by pod; empty sections are folded into one "Nothing found in: ..."
line. The page fits a window 1400 pixels wide: the picture is 1200, long cells wrap.
"""

from __future__ import annotations

import html
import json
import math
import os
from typing import TYPE_CHECKING, Any

from cni_logger.audit.formats import plural, visible
from cni_logger.audit.output import pod_label
from cni_logger.audit.timeparse import from_epoch, human_duration, short, to_epoch

if TYPE_CHECKING:
    from cni_logger.audit.occupancy import Holding
    from cni_logger.audit.report import Report

LABEL_WIDTH = 150
PLOT_WIDTH = 1000
RIGHT_MARGIN = 50
"""Room right of the plot for the last tick's label: the picture is 1200 pixels wide, the page fits 1400."""
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
    parts.append(_header(data))
    pods = _pods(report, data)
    tables, empty = _tables(data, pods)
    parts.append(_summary(data))
    if empty:
        parts.append(f"<p class='note' id='nothing-found'>Nothing found in: {esc(', '.join(empty))}.</p>")
    parts.append(_picture(report, data, start, end, pods))
    parts.append(tables)
    parts.append(SCRIPT)
    parts.append("</body></html>\n")
    return "".join(parts)


def _header(data: dict[str, Any]) -> str:
    """Who, what and when, for a page read alone in a ticket: the hosts, the window, the trail's span, when and by
    which build the page was made, and the time zone of every time on it."""
    import socket
    import time

    from cni_logger.cli import version

    trail, window = data["trail"], data["window"]
    hosts = trail.get("hosts")
    if hosts is None:  # rows may name them (``host``)
        hosts = sorted({row["host"] for section in data["leaks"].values() for row in section["listed"]
                        if row.get("host")})
    shown = ", ".join(hosts[:MAX_HOSTS]) + (f" and {len(hosts) - MAX_HOSTS} more" if len(hosts) > MAX_HOSTS else "")
    span = (f"{_time(window['since']) if window['since'] else 'the start of the trail'} .. "
            f"{_time(window['until']) if window['until'] else 'the end of the trail'}"
            if window["since"] or window["until"] else "the whole trail")
    made = _time(from_epoch(time.time()))
    rows = [("hosts", "hosts", f"{plural(len(hosts), 'host')}: {shown}" if hosts else "no host named in the events"),
            ("window", "window", span),
            ("trail", "trail", f"events from {_time(trail['first'])} to {_time(trail['last'])}, "
                               f"{plural(trail['events_in_window'], 'event')} in the window, in "
                               f"{plural(len(trail['files']), 'file')}"),
            ("made", "made", f"{made} by cni-logger {version()} on {socket.gethostname()}"),
            ("timezone", "times", "UTC: every time on this page is UTC (ISO 8601, Z)")]
    meta = "".join(f"<dt>{label}</dt><dd id='{key}'>{esc(text)}</dd>" for key, label, text in rows)
    return ("<header id='report-header'><div class='title'><h1>cni-logger report</h1>"
            "<label class='search'>Filter <input id='search' type='search' autocomplete='off' "
            "placeholder='pod, namespace, container or address'></label><span id='search-count' class='note'>"
            "</span></div>"
            f"<dl class='meta'>{meta}</dl></header>")


MAX_HOSTS = 20
"""Hosts named in the header; the others counted."""


def _summary(data: dict[str, Any]) -> str:
    """The cards: first the alarms (failed ADDs, conflicts, and leaks once running pods are told from leaked ones),
    then what the trail cannot vouch for (cautions), then the plain counts. A running pod is not an alarm."""
    trail = data["trail"]
    leaks = data["leaks"]
    failed = data["failed_adds"]
    how = f" ({failed['inferred']} inferred from clean-up DELs)" if failed["inferred"] else ""
    states = data["still_open"]
    told = states["running"] + states["leaked"] > 0  # the report ran on the trail's own node and could look
    alarms = [("failed-adds", "failed ADDs" + how, failed["count"]),
              ("conflicts", "conflicts (an address held twice)", data["conflicts"]["count"])]
    if told:
        alarms.append(("leaked", "leaked (not running, never deleted)", states["leaked"]))
    cautions = [("superseded", "superseded (DEL lost)", leaks["superseded"]["count"]),
                ("failures", "failed invocations", data["failures"]["count"]),
                ("damaged", "damaged lines", trail["skipped_lines"]),
                ("possible-gaps", "gaps", trail["possible_gaps"]["count"]),
                ("outages", "outages (logger out)", data["coverage"]["outages"]["count"]),
                ("dropped", "events not written", data["coverage"]["dropped"]["events"])]
    plain = [("events", "events in window", trail["events_in_window"]), ("files", "files", len(trail["files"])),
             ("holdings", "holdings", sum(n["holdings"] for n in data["networks"].values())),
             ("running", "still running (not leaks)", states["running"]),
             ("never-deleted", "never deleted" + (f" ({states['unknown']} not told running or leaked)"
                                                  if told and states["unknown"] else
                                                  "" if told else " (running or leaked: not told here)"),
              leaks["never_deleted"]["count"]),
             ("del-without-add", "DELs without ADD", leaks["del_without_add"]["count"]),
             ("quiet", "quiet periods", trail["quiet_periods"]["count"])]

    def card(key: str, label: str, value: int, kind: str) -> str:
        level = f" {kind}" if kind and value else ""
        return (f"<div class='card{level}' data-card='{key}'><span class='n' id='count-{key}'>{value}</span>"
                f"<span class='l'>{esc(label)}</span></div>")

    return ("<div class='cards alarms'>" + "".join(card(k, label, v, "alarm") for k, label, v in alarms) + "</div>"
            "<div class='cards'>" + "".join(card(k, label, v, "warn") for k, label, v in cautions)
            + "".join(card(k, label, v, "") for k, label, v in plain) + "</div>")


def _pods(report: Report, data: dict[str, Any]) -> dict[str, str]:
    """Container id -> ``namespace/pod``, from the holdings drawn and the rows listed: a conflict's other holder is
    known in the data by its container id only, and a responder looks for pods."""
    found: dict[str, str] = {}
    for bar in report.bars:
        label = pod_label(bar.namespace, bar.pod)
        if label:
            found.setdefault(bar.container_id, label)
    for section in [*data["leaks"].values(), data["conflicts"], data["failures"]]:
        for row in section["listed"]:
            label = pod_label(row.get("namespace"), row.get("pod"))
            if label and row.get("container_id"):
                found.setdefault(row["container_id"], label)
    return found


def _named(container_id: str, pods: dict[str, str]) -> str:
    """``shop/web-a (ctr-a)``: a holder by its pod first, its container id after."""
    pod = pods.get(container_id)
    return f"{pod} ({container_id})" if pod else container_id


def _picture(report: Report, data: dict[str, Any], start: str | None, end: str | None, pods: dict[str, str]) -> str:
    picture = data["picture"]
    note = (f"{plural(picture['bars'], 'holding')} drawn on {plural(picture['rows'], 'address row')} "
            f"(at most {plural(picture['max_bars'], 'holding')}, those that ended last, on at most "
            f"{plural(picture['max_addresses'], 'row')}).")
    if picture["bars_not_drawn"] or picture["rows_not_drawn"]:
        note += (f" <strong>{plural(picture['bars_not_drawn'], 'more holding')} and "
                 f"{plural(picture['rows_not_drawn'], 'more address', 'more addresses')} not drawn</strong>: narrow "
                 "the window with --since/--until, or raise --max-bars and --max-addresses.")
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
    width = LABEL_WIDTH + PLOT_WIDTH + RIGHT_MARGIN
    names = sorted({use.get("network", name) for name, use in data["networks"].items()})  # several hosts: one colour
    colours = {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(names)}
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
                   f"{esc(damage['kind'])}: {plural(damage['lines'], 'line')} of {esc(damage['file'])} between "
                   f"{esc(_time(damage['after']))} and {esc(_time(damage['before']))}: {esc(damage['what'])}"
                   f"{'; events may be missing' if damage['lost_events_possible'] else ''}</title></line>")
    for bar, lane, lanes in _lanes(report.bars):
        svg.append(_bar(bar, rows[bar.address], x, colours.get(bar.network, PALETTE[0]), lane, lanes, pods))
    svg.append("</svg></div>")
    legend = ("<p class='legend'>" + "".join(
        f"<span><i style='background:{colour}'></i>{esc(name or '-')}</span>" for name, colour in colours.items())
        + "<span><i class='lc'></i>conflict</span><span><i class='lu'></i>start not in the trail</span>"
          "<span><i class='lo'></i>still held</span><span><i class='lg'></i>quiet period</span>"
          "<span><i class='lp'></i>gap (a missing backup)</span>"
          "<span><i class='lx'></i>outage (the logger out of a chain)</span>"
          "<span><i class='ld'></i>damaged lines</span><span>times in UTC</span></p>")
    info = "<div id='info' class='info' hidden></div>"
    return head + legend + "".join(svg) + info


TICK_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
              3600, 7200, 10800, 21600, 43200, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400,
              182 * 86400, 365 * 86400)
"""Round steps of the time axis, in seconds (1/2/5/10/15/30 s and min, 1/2/3/6/12 h, days...)."""
MAX_TICKS = 10


def ticks(t0: float, t1: float) -> tuple[float, list[float]]:
    """The step and the ticks (epoch seconds, round in UTC) of the axis from ``t0`` to ``t1``: the smallest round
    step that gives at most ``MAX_TICKS`` of them (so about 4 to 10)."""
    span = max(t1 - t0, 0.001)
    step = next((s for s in TICK_STEPS if span / s <= MAX_TICKS), TICK_STEPS[-1])
    slack = step / 1000  # t0 and t1 themselves when they are round, whatever floating point makes of them
    first = math.ceil((t0 - slack) / step) * step
    found = []
    number = 0
    while first + number * step <= t1 + slack:
        found.append(round(first + number * step, 3))
        number += 1
    return step, found


def _tick_label(stamp: str, step: float) -> str:
    """A tick's label, as precise as its step: ``2026-11-28``, ``02:20``, ``02:20:15``, ``02:20:15.5``."""
    if step >= 86400:
        return stamp[:10]
    if step >= 60:
        return stamp[11:16]
    if step >= 1:
        return stamp[11:19]
    digits = 1 if step >= 0.1 else 2 if step >= 0.01 else 3
    return stamp[11:20 + digits]


def _axis(t0: float, t1: float, rows: int) -> str:
    step, found = ticks(t0, t1)
    bottom = AXIS_HEIGHT + rows * ROW_HEIGHT
    scale = PLOT_WIDTH / (t1 - t0)
    parts = [f"<line class='axis' x1='{LABEL_WIDTH}' x2='{LABEL_WIDTH + PLOT_WIDTH}' y1='{AXIS_HEIGHT - 2}' "
             f"y2='{AXIS_HEIGHT - 2}'/>"]
    day = ""
    for seconds in found:
        at = LABEL_WIDTH + (seconds - t0) * scale
        stamp = from_epoch(seconds)
        parts.append(f"<line class='tick' x1='{at:.1f}' x2='{at:.1f}' y1='{AXIS_HEIGHT - 6}' y2='{bottom}'/>"
                     f"<text class='tl' x='{at:.1f}' y='{AXIS_HEIGHT - 10}' text-anchor='middle' "
                     f"data-epoch='{seconds:.3f}' data-step='{step:g}'>{_tick_label(stamp, step)}</text>")
        if step < 86400 and stamp[:10] != day:  # the date where it changes (and at the first tick)
            day = stamp[:10]
            parts.append(f"<text class='dl' x='{at:.1f}' y='{AXIS_HEIGHT - 22}' text-anchor='middle'>{day}</text>")
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


def _bar(bar: Holding, row: int, x: Any, colour: str, lane: int = 0, lanes: int = 1,
         pods: dict[str, str] | None = None) -> str:
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
    others = [_named(c, pods or {}) for c in bar.conflicts_with]
    lines = [f"{bar.address} held by {pod or 'no pod'} ({bar.container_id}) on {bar.network or '-'} "
             f"{bar.ifname or '-'}",
             f"from {_time(bar.start) if bar.start else '<= ' + _time(bar.seen)}",
             f"until {_time(bar.end) if bar.end else '(still held)'}"
             + (f" (ended by {bar.ended_by})" if bar.ended_by else "")]
    if others:
        lines.append(f"conflicts with {', '.join(others)}")
    lines += [f"NOTE: {note}" for note in bar.notes]
    title = "\n".join(esc(line) for line in lines)  # real newlines: each line escaped alone, none written as \x0a
    attributes = {"address": bar.address, "container": bar.container_id, "pod": pod, "network": bar.network,
                  "ifname": bar.ifname, "from": bar.start or "", "seen": bar.seen, "until": bar.end or "",
                  "ended-by": bar.ended_by, "conflicts": ", ".join(others), "notes": "; ".join(bar.notes)}
    data = " ".join(f"data-{key}='{esc(value)}'" for key, value in attributes.items())
    height = (ROW_HEIGHT - 4) / lanes
    y = AXIS_HEIGHT + row * ROW_HEIGHT + 2 + lane * height
    drawn = (f"<rect class='{' '.join(classes)}' x='{LABEL_WIDTH + left:.1f}' y='{y:.1f}' width='{width:.1f}' "
             f"height='{height:.1f}' fill='{colour}' {data}><title>{title}</title></rect>")
    # the longest name the bar holds: namespace/pod, the pod, the container id (short); else the title says it
    fits = [name for name in (visible(pod), visible(bar.pod or ""), visible(bar.container_id[:12]))
            if name and text_width(name) + 2 * LABEL_PAD <= width]
    if lanes == 1 and fits:
        label = fits[0]
        drawn += (f"<text class='bl' x='{LABEL_WIDTH + left + LABEL_PAD:.1f}' y='{y + height - 2.5:.1f}' "
                  f"data-width='{width:.1f}'>{html.escape(label)}</text>")
    return drawn


BAR_FONT = 10.0
"""Pixels: the font of the labels on bars (monospace)."""
CHAR_WIDTH = 0.62
"""A monospace character's width, in ems (DejaVu Sans Mono: 0.602)."""
LABEL_PAD = 3.0


def text_width(text: str) -> float:
    """About how wide ``text`` is on a bar, in pixels: characters times the font's character width."""
    return len(text) * BAR_FONT * CHAR_WIDTH


def _table(title: str, key: str, section: dict[str, Any] | None, columns: list[str], rows: list[list[Any]],
           empty: list[str]) -> str:
    """A section: its heading with the count, and its rows; an empty one is only named in ``empty``, which the page
    folds into one line ("nothing found in: ...")."""
    count = section["count"] if section is not None else len(rows)
    if not count:
        empty.append(title)
        return ""
    more = f" (first {len(rows)} listed)" if section is not None and len(rows) < count else ""
    head = f"<h2 id='{key}'>{esc(title)}: {count}{more}</h2>"
    if not rows:
        return head
    return (head + f"<table class='list' data-section='{key}'><thead><tr>"
            + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
            + "</tbody></table>")


LONG_CELL = 40
"""Characters: a longer cell may wrap anywhere (a pod name, a path, an error), so the page keeps to the window's
width; shorter ones (times, addresses, ids) stay on one line."""


def _cell(value: Any) -> str:
    text = esc(value)
    return f"<td class='w'>{text}</td>" if len(text) > LONG_CELL else f"<td>{text}</td>"


def _hosted(columns: list[str], rows: list[list[Any]], listed: list[dict[str, Any]]) -> tuple[list[str],
                                                                                              list[list[Any]]]:
    """A HOST column first when the rows name their host (trails of several nodes merged)."""
    if not any(item.get("host") for item in listed):
        return columns, rows
    return ["host", *columns], [[item.get("host") or "-", *row] for item, row in zip(listed, rows, strict=True)]


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


def _tables(data: dict[str, Any], pods: dict[str, str]) -> tuple[str, list[str]]:
    """The sections, alarms first, and the titles of the empty ones."""
    trail = data["trail"]
    empty: list[str] = []
    parts: list[str] = []

    def table(title: str, key: str, section: dict[str, Any] | None, columns: list[str], rows: list[list[Any]],
              listed: list[dict[str, Any]] | None = None) -> None:
        if listed is not None:
            columns, rows = _hosted(columns, rows, listed)
        parts.append(_table(title, key, section, columns, rows, empty))

    failed = data["failed_adds"]
    items = failed["items"]
    table("Failed ADDs", "failed-adds", {"count": failed["count"]},
          ["at", "network", "pod", "container", "ifname", "how", "error"],
          [[_time(f.get("time")), f.get("network") or "-", pod_label(f.get("namespace"), f.get("pod")) or "-",
            f.get("container") or "-", f.get("ifname") or "-", f.get("how") or "-", f.get("error") or ""]
           for f in items], items)
    conflicts = data["conflicts"]["listed"]
    table("Conflicts (an address held by two attachments at once)", "conflicts", data["conflicts"],
          ["at", "address", "network", "pod (container)", "while held by"],
          [[_time(c["at"]), c["address"], c["network"],
            _named(c["container_id"], {c["container_id"]: pod_label(c["namespace"], c["pod"])} if c["pod"] else pods),
            _named(c["other_container_id"], pods)] for c in conflicts], conflicts)
    never = data["leaks"]["never_deleted"]["listed"]
    table("Never deleted (leaked, or not told from running here)", "never-deleted", data["leaks"]["never_deleted"],
          ["state", "since", "address", "network", "ifname", "pod", "container"],
          [[h.get("state") or "-", _time(h["from"]) if h["from"] else "<= " + _time(h["seen"]), h["address"],
            h["network"], h["ifname"], pod_label(h["namespace"], h["pod"]), h["container_id"]] for h in never], never)
    running = data["leaks"]["running"]["listed"]
    table("Still running (not leaks)", "running", data["leaks"]["running"],
          ["since", "address", "network", "ifname", "pod", "container"],
          [[_time(h["from"]) if h["from"] else "<= " + _time(h["seen"]), h["address"], h["network"], h["ifname"],
            pod_label(h["namespace"], h["pod"]), h["container_id"]] for h in running], running)
    if any("host" in u for u in data["networks"].values()):  # several hosts: an address is one holder's per node
        table("Per network and host", "networks", None,
              ["network", "host", "addresses", "holdings", "peak at once", "conflicts", "still held"],
              [[u["network"] or "-", u["host"] or "-", u["addresses"], u["holdings"], u["peak"], u["conflicts"],
                u["still_held"]] for u in data["networks"].values()])
    else:
        table("Per network", "networks", None,
              ["network", "addresses", "holdings", "peak at once", "conflicts", "still held"],
              [[name or "-", u["addresses"], u["holdings"], u["peak"], u["conflicts"], u["still_held"]]
               for name, u in data["networks"].items()])
    orphans = data["leaks"]["del_without_add"]["listed"]
    table("DELs without ADD", "del-without-add", data["leaks"]["del_without_add"],
          ["at", "network", "ifname", "pod", "container"],
          [[_time(o["seen"]), o["network"], o["ifname"], pod_label(o["namespace"], o["pod"]), o["container_id"]]
           for o in orphans], orphans)
    superseded = data["leaks"]["superseded"]["listed"]
    table("Superseded (their DEL was lost; not leaks)", "superseded", data["leaks"]["superseded"],
          ["since", "until", "address", "network", "pod", "container", "note"],
          [[_time(h["from"]) if h["from"] else "<= " + _time(h["seen"]), _time(h["until"]),
            h["address"], h["network"], pod_label(h["namespace"], h["pod"]), h["container_id"],
            "; ".join(h["notes"])] for h in superseded], superseded)
    cleanups = data["leaks"]["cleanup_del"]["listed"]
    table("Clean-up DELs (no ADD, no cached result; not leaks)", "cleanup-del", data["leaks"]["cleanup_del"],
          ["at", "network", "ifname", "pod", "container"],
          [[_time(o["seen"]), o["network"], o["ifname"], pod_label(o["namespace"], o["pod"]), o["container_id"]]
           for o in cleanups], cleanups)
    failures = data["failures"]["listed"]
    table("Failed invocations", "failures", data["failures"], ["at", "command", "network", "pod", "container", "error"],
          [[_time(f["@timestamp"]), f["command"], f["network"], pod_label(f["namespace"], f["pod"]),
            f["container_id"], f["error"] or ""] for f in failures], failures)
    stats = data["stats"]
    table("Latency (ms)", "latency", None, ["command", "count", "p50", "p90", "p99", "max", "mean"],
          [[name, s["count"], s["p50"], s["p90"], s["p99"], s["max"], s["mean"]]
           for name, s in stats["latency_ms"].items() if s["count"]])
    table("Files read", "files", None, ["file", "bytes on disk"], [[f["path"], f["bytes"]] for f in trail["files"]])
    table("Damaged stretches", "damaged", trail["damaged"],
          ["kind", "file", "lines", "after", "before", "events may be missing"],
          [[d["kind"], d["file"], _line_span(d), _time(d["after"]),
            _time(d["before"]) if d["before"] else "(end of trail)", _whose(d)] for d in trail["damaged"]["listed"]])
    table("Gaps (a backup missing, or possibly missing)", "possible-gaps", trail["possible_gaps"],
          ["between", "after", "before", "why"],
          [[g["file"], _time(g["after"]), _time(g["before"]), g["what"]] for g in trail["possible_gaps"]["listed"]])
    coverage = data["coverage"]
    table("Outages (the logger was out of a chain: nothing there is in the trail)", "outages", coverage["outages"],
          ["host", "network", "from", "until", "why"],
          [[o["host"], o["network"], _time(o["from"]), _time(o["until"]) if o["until"] else "(end of trail)",
            o["reason"] + (f": {o['detail']}" if o["detail"] else "")] for o in coverage["outages"]["listed"]])
    table("Events the plugin could not write", "dropped", coverage["dropped"],
          ["host", "from", "until", "events", "containers"],
          [[d["host"], _time(d["first"]), _time(d["last"]), d["dropped"],
            "anyone's" if d["containers"] is None else ", ".join(d["containers"])]
           for d in coverage["dropped"]["listed"]])
    inventories, heartbeats = coverage["inventories"], coverage["heartbeats"]
    if inventories["count"] or heartbeats["count"]:
        parts.append(f"<p class='note' id='coverage-note'>Inventories: {inventories['count']}"
                     + (f" ({esc(_time(inventories['first']))} .. {esc(_time(inventories['last']))})"
                        if inventories["count"] else "")
                     + f"; heartbeats: {heartbeats['count']}"
                     + (f" ({esc(_time(heartbeats['first']))} .. {esc(_time(heartbeats['last']))})"
                        if heartbeats["count"] else "") + ".</p>")
    else:
        empty.append("inventories and heartbeats")
    leaks = data["leaks"]
    for title, key in (("Possibly deleted while the logger was out (not leaks for certain)", "possibly_deleted"),
                       ("DEL not recorded (a complete inventory no longer listed them; not leaks)", "unrecorded_del")):
        listed = leaks[key]["listed"]
        table(title, key.replace("_", "-"), leaks[key],
              ["since", "until", "address", "network", "pod", "container", "note"],
              [[_time(h["from"]) if h["from"] else "<= " + _time(h["seen"]), _time(h["until"]),
                h["address"], h["network"], pod_label(h["namespace"], h["pod"]), h["container_id"],
                "; ".join(h["notes"])] for h in listed], listed)
    quiet = trail["quiet_periods"]
    table(f"Quiet periods (no event for {human_duration(quiet['min_seconds'])} or more; not evidence of loss)", "quiet",
          quiet, ["from", "until", "length"],
          [[_time(g["from"]), _time(g["until"]), human_duration(g["seconds"])] for g in quiet["listed"]])
    parts.append("<script type='application/json' id='report-data'>"
                 + json.dumps({k: v for k, v in data.items() if k != "stats"}, ensure_ascii=True)
                 .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                 + "</script>")
    return "".join(parts), [title.split(" (")[0] for title in empty]


HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
*{box-sizing:border-box}
body{font:13px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:16px 20px;color:#1d2329;background:#fff;
max-width:1360px}
h1{font-size:20px;margin:0 12px 2px 0;display:inline-block}h2{font-size:15px;margin:22px 0 6px}
.sub,.note{color:#555;margin:2px 0 8px}
header{border-bottom:1px solid #d4d9de;padding-bottom:6px;margin-bottom:4px}
header .title{display:flex;flex-wrap:wrap;align-items:center;gap:6px 14px}
.search input{font:inherit;width:320px;max-width:60vw;padding:3px 6px;margin-left:6px;border:1px solid #aab2ba;
border-radius:4px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:1px 12px;margin:6px 0 0}
dl.meta dt{color:#555}dl.meta dd{margin:0;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0}
.card{border:1px solid #d4d9de;border-radius:6px;padding:6px 12px;min-width:90px;background:#f7f9fa}
.cards.alarms .card{min-width:170px;padding:8px 14px}.cards.alarms .n{font-size:26px}
.card.alarm{border:2px solid #c62828;background:#fdecea}.card.alarm .n{color:#b71c1c}
.card.warn{border-color:#e0a030;background:#fff8e6}.card .n{display:block;font-size:20px;font-weight:600}
.card .l{color:#555;font-size:12px}
.scroll{overflow:auto;max-height:75vh;border:1px solid #d4d9de;border-radius:4px;max-width:100%}
svg text{font:11px "DejaVu Sans Mono",monospace;fill:#333}svg .addr.conflict{fill:#c62828;font-weight:bold}
svg text.bl{font-size:10px;fill:#fff;pointer-events:none}svg text.dl{fill:#222;font-weight:bold}
.stripe{fill:#f3f5f7}.axis{stroke:#888}.tick{stroke:#e3e6e9}.tl{fill:#555}
.bar{stroke:#fff;stroke-width:0.5;cursor:pointer}.bar:hover,.bar.hl{stroke:#111;stroke-width:1.5}
.bar.conflict{stroke:#d32f2f;stroke-width:2}.bar.unknown-start{stroke:#333;stroke-dasharray:3 2;stroke-width:1}
.bar.open{fill-opacity:.6}.bar.dim{opacity:.12}text.bl.dim{opacity:0}
.gap{fill:url(#hatch);opacity:.7}.damaged{stroke:#ef7d00;stroke-width:2}
.legend span{margin-right:14px;white-space:nowrap;display:inline-block}.legend i{display:inline-block;width:14px;
height:10px;margin-right:4px;vertical-align:middle;border-radius:2px}.legend .lc{border:2px solid #d32f2f}
.legend .lu{border:1px dashed #333}.legend .lo{background:#3b7dd8;opacity:.6}
.legend .lg{background:repeating-linear-gradient(45deg,#c9c9c9 0 3px,#fff 3px 6px)}
.legend .ld{background:#ef7d00;width:3px}
.possible-gap{fill:#ef7d00;opacity:.25}.bar.superseded{stroke-dasharray:1 2;stroke:#555}
.legend .lp{background:#ef7d00;opacity:.25}
.outage{fill:#c0392b;opacity:.18}.legend .lx{background:#c0392b;opacity:.3}
.info{position:fixed;z-index:2;background:#fff;border:1px solid #888;border-radius:4px;padding:6px 9px;
box-shadow:0 2px 8px rgba(0,0,0,.2);font:12px/1.45 "DejaVu Sans Mono",monospace;white-space:pre-wrap;
max-width:640px;pointer-events:none}
table.list{border-collapse:collapse;font-size:12px;max-width:100%}table.list th,table.list td{border:1px solid #dde1e5;
padding:2px 8px;text-align:left;font-family:"DejaVu Sans Mono",monospace;vertical-align:top;white-space:nowrap}
table.list td.w{white-space:normal;overflow-wrap:anywhere;min-width:16em}table.list td:last-child{white-space:normal}
table.list th{background:#f0f3f5;white-space:nowrap}
</style></head><body>
"""

SCRIPT = """<script>
(function () {
  var bars = document.querySelectorAll('rect.bar');
  var drawn = document.getElementById('drawn');
  if (drawn) { drawn.textContent = '(' + bars.length + ' bars on the page)'; drawn.dataset.rendered = bars.length; }
  var search = document.getElementById('search');
  var counted = document.getElementById('search-count');
  function filter() {
    var wanted = search.value.trim().toLowerCase();
    var rows = 0, shown = 0, lit = 0;
    document.querySelectorAll('table.list tbody tr').forEach(function (row) {
      var match = !wanted || row.textContent.toLowerCase().indexOf(wanted) >= 0;
      row.hidden = !match;
      rows += 1; shown += match ? 1 : 0;
    });
    bars.forEach(function (bar) {
      var d = bar.dataset;
      var text = [d.address, d.container, d.pod, d.network, d.conflicts].join(' ').toLowerCase();
      var match = !wanted || text.indexOf(wanted) >= 0;
      bar.classList.toggle('dim', !match);
      var label = bar.nextElementSibling;
      if (label && label.classList.contains('bl')) { label.classList.toggle('dim', !match); }
      lit += match ? 1 : 0;
    });
    counted.textContent = wanted ? shown + ' of ' + rows + ' rows and ' + lit + ' of ' + bars.length +
      ' bars match' : '';
  }
  if (search) { search.addEventListener('input', filter); if (search.value) { filter(); } }
  var info = document.getElementById('info');
  if (!info) { return; }
  var pinned = null;
  function describe(bar) {
    var d = bar.dataset;
    return d.address + '\\ncontainer ' + d.container + '\\npod       ' + (d.pod || '-') +
      '\\nnetwork   ' + d.network + ' ' + d.ifname + '\\nfrom      ' + (d.from || '<= ' + d.seen) +
      '\\nuntil     ' + (d.until || '(still held)') + (d.endedBy ? ' (' + d.endedBy + ')' : '') +
      (d.conflicts ? '\\nconflicts ' + d.conflicts : '') + (d.notes ? '\\nnote      ' + d.notes : '');
  }
  function highlight(bar, on) {
    var id = bar.dataset.container;
    bars.forEach(function (other) { if (other.dataset.container === id) { other.classList.toggle('hl', on); } });
  }
  function show(bar, event) {
    info.textContent = describe(bar);
    info.hidden = false;
    info.style.left = Math.max(Math.min(event.clientX + 14, window.innerWidth - info.offsetWidth - 8), 0) + 'px';
    info.style.top = Math.max(Math.min(event.clientY + 14, window.innerHeight - info.offsetHeight - 8), 0) + 'px';
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
