"""Counts and plugin latency over the trail: ``stats``.

Latency percentiles come from a log-linear histogram (HDR-style: 128 sub-buckets per power of two),
so memory stays constant however long the trail is, at a relative error below 0.8% (values under
256 ns are exact). Percentiles are nearest-rank; minimum, maximum and mean are exact.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from cni_logger.audit.record import Record

_SUB_BITS = 7
_SUB = 1 << _SUB_BITS
_LINEAR = 2 * _SUB
"""Below this many nanoseconds, each value has a bucket of its own."""
PERCENTILES = (50, 90, 99)


class Histogram:
    """Non-negative integers, counted in buckets of width < 1/128 of their value."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    @staticmethod
    def index(value: int) -> int:
        if value < 2 * _SUB:
            return max(value, 0)
        shift = value.bit_length() - _SUB_BITS - 1
        return (shift << _SUB_BITS) + (value >> shift)

    @staticmethod
    def bounds(index: int) -> tuple[int, int]:
        """The smallest and largest value counted in ``index``."""
        if index < 2 * _SUB:
            return index, index
        shift = (index >> _SUB_BITS) - 1
        mantissa = index - (shift << _SUB_BITS)
        return mantissa << shift, ((mantissa + 1) << shift) - 1

    def add(self, value: int) -> None:
        self.counts[self.index(value)] += 1
        self.count += 1
        self.total += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    def percentile(self, p: float) -> int | None:
        """The nearest-rank ``p``-th percentile (a bucket's midpoint, clamped to the exact extremes)."""
        if not self.count or self.min is None or self.max is None:
            return None
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = self.bounds(index)
                return min(max((low + high) // 2, self.min), self.max)
        return self.max

    def summary_ms(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"count": self.count}
        for p in PERCENTILES:
            value = self.percentile(p)
            summary[f"p{p}"] = None if value is None else round(value / 1e6, 3)
        summary["max"] = None if self.max is None else round(self.max / 1e6, 3)
        summary["mean"] = round(self.total / self.count / 1e6, 3) if self.count else None
        return summary


class Stats:
    """Everything ``stats`` reports, accumulated one record at a time.

    The per-record work is one dictionary lookup: a cell per command, outcome, network and latency bucket
    (``Histogram.index``; -1 without a duration) holding [count, min, max, sum] of its durations. Totals, the
    histograms and the "all" latency are derived from the cells at the end.
    """

    def __init__(self) -> None:
        self.first = ""
        self.last = ""
        self.cells: dict[tuple[str, str, str, int], list[int]] = {}

    @property
    def events(self) -> int:
        return sum(found[0] for found in self.cells.values())

    def add(self, rec: Record) -> None:
        stamp = rec.timestamp
        if stamp > self.last:  # the usual case: times come in order (give or take a few milliseconds)
            self.last = stamp
            if not self.first:
                self.first = stamp
        elif stamp and stamp < self.first:
            self.first = stamp
        duration = rec.duration
        if duration is None:
            index = -1
        elif duration < _LINEAR:  # ``Histogram.index``, inlined: this runs once per event of the trail
            index = duration if duration > 0 else 0
        else:
            shift = duration.bit_length() - _SUB_BITS - 1
            index = (shift << _SUB_BITS) + (duration >> shift)
        cell = (rec.command, rec.outcome, rec.network, index)  # "" is named "(none)" at the end (``_named``)
        found = self.cells.get(cell)
        if found is None:
            self.cells[cell] = [1, duration, duration, duration] if duration is not None else [1, 0, 0, 0]
        elif duration is not None:
            found[0] += 1
            if duration < found[1]:
                found[1] = duration
            elif duration > found[2]:
                found[2] = duration
            found[3] += duration
        else:
            found[0] += 1

    def _named(self) -> list[tuple[tuple[str, str, str, int], list[int]]]:
        """The cells, an empty command, outcome or network named ``(none)``."""
        return [((command or "(none)", outcome or "(none)", network or "(none)", index), found)
                for (command, outcome, network, index), found in self.cells.items()]

    def histograms(self) -> dict[str, Histogram]:
        """Latency per command, and over all of them under ``"all"``."""
        found: dict[str, Histogram] = {"all": Histogram()}
        for (command, _, _, index), (count, low, high, total) in self._named():
            if index < 0:
                continue
            for name in ("all", command):
                histogram = found.get(name)
                if histogram is None:
                    histogram = found[name] = Histogram()
                histogram.counts[index] += count
                histogram.count += count
                histogram.min = low if histogram.min is None else min(histogram.min, low)
                histogram.max = high if histogram.max is None else max(histogram.max, high)
                histogram.total += total
        return found

    def _totals(self, position: int) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for cell, found in self._named():
            totals[cell[:3][position]] += found[0]
        return dict(totals.most_common())

    def by_outcome(self) -> dict[tuple[str, str], int]:
        """Events per (command, outcome): what ``attempts.failures`` counts the recorded failures from."""
        found: dict[tuple[str, str], int] = {}
        for (command, outcome, _, _), cell in self._named():
            found[command, outcome] = found.get((command, outcome), 0) + cell[0]
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events, "first": self.first or None, "last": self.last or None,
            "commands": self._totals(0), "outcomes": self._totals(1), "networks": self._totals(2),
            "latency_ms": {name: h.summary_ms() for name, h in self.histograms().items()},
        }
