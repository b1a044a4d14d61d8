"""Is an attachment still open at the end of the trail running, or leaked? ``leaks`` and ``report`` ask the node.

The trail alone cannot tell a pod that is still running from one whose DEL never came: both are an ADD
without a DEL. The node can, for the attachments the trail's own host made:

* the network namespace the ADD was given (``cni.netns``, ``CNI_NETNS``) still exists while the sandbox
  lives: the runtime removes it when the sandbox goes;
* libcni's result cache (``<dir>/<network>-<container id>-<ifname>``, the ``results`` directory of libcni's
  cache dir, ``/var/lib/cni/results`` by default; the installer's ``--results-cache``) keeps the result of
  every ADD until its DEL: the runtime will DEL what it still caches.

``running``: both still there (or the cache entry, when the event names no namespace). ``leaked``: the namespace
is gone (the sandbox is gone, and its DEL never came), or, when the event names none, the cache entry is.

A namespace named by a process (``/proc/PID/ns/net``, as some runtimes pass it) exists as long as *a* process has
that PID, and PIDs are reused: the path then names another process's namespace, and would make a leaked
attachment look running. So the process's start time (``process_start``: ``/proc/PID/stat``'s ``starttime``
after boot, on ``CLOCK_BOOTTIME``, to the clock tick) is compared with the attachment's first evidence (its ADD):
the sandbox's process was started before its ADD, so one started later (by more than ``START_TOLERANCE``) is
another process, the sandbox's is gone, and the attachment is ``leaked``; one started around the ADD itself, or
whose start cannot be read, is ``unknown``, never ``running``. (The event records the path, not the namespace's
inode, so nothing better can be compared; the node's clock stepped since the pod started can mislead it.)
``unknown``: the trail's host is another node (this one cannot look), neither the namespace's directory nor
the cache can be seen here (a container without the node's mounts), the cache cannot be read, or the
namespace still exists with no cache entry (a DEL the trail did not record, or a runtime that caches
elsewhere: ``--results-cache``).

The host is compared as the plugin writes it (``host.name``: ``os.uname().nodename``).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from cni_logger.audit.timeparse import from_epoch, to_epoch

RESULTS_CACHE = "/var/lib/cni/results"
"""libcni's default (``/var/lib/cni`` + ``results``), as ``install --results-cache`` has it."""
RUNNING, LEAKED, UNKNOWN = "running", "leaked", "unknown"
START_TOLERANCE = 0.05
"""Seconds by which a process's start may follow the ADD and still be told apart from it: the start time is read
to the clock tick (10 ms at the usual ``CLK_TCK`` of 100), the event's time to the microsecond."""
_PROCESS_NETNS = re.compile(r"^/proc/(\d+)/(?:task/\d+/)?ns/net$")


def process_start(pid: int) -> float | None:
    """When process ``pid`` started, in epoch seconds (``None``: no such process, or unreadable): its ``starttime``
    (clock ticks after boot) from ``/proc/PID/stat``, whose command name may hold spaces and parentheses (the fields
    after the last ``)``), on the boot-time clock (suspend included, as ``starttime`` counts it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
        ticks = int(raw[raw.rindex(b")") + 2:].split()[19])
        hertz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return booted + ticks / hertz


def this_host() -> str:
    """This node's name as the plugin records it in ``host.name``."""
    return os.uname().nodename


def netns_of(doc: dict[str, Any]) -> str:
    """The network namespace path an event names (``cni.netns``), or ""."""
    cni = doc.get("cni")
    netns = cni.get("netns") if isinstance(cni, dict) else None
    return netns if isinstance(netns, str) else ""


class Liveness:
    """Looks on this node, once per attachment, and remembers what it could not look at (``elsewhere``, ``problem``)
    for the caller to say on stderr."""

    def __init__(self, cache_dir: str = RESULTS_CACHE, host: str | None = None) -> None:
        self.cache_dir = cache_dir
        self.host = this_host() if host is None else host
        self.elsewhere: dict[str, int] = {}
        """Attachments whose host is another node, by host."""
        self.problem = ""
        """Why the cache could not be read ("" when it could, or was not needed)."""
        self.counts: dict[str, int] = {}
        self._readable: bool | None = None

    def _cache_readable(self) -> bool:
        if self._readable is None:
            try:
                os.listdir(self.cache_dir)
                self._readable = True
            except OSError as exc:
                self.problem = f"cannot read libcni's result cache {self.cache_dir}: {exc.strerror or exc}"
                self._readable = False
        return self._readable

    def state(self, host: str, network: str, container_id: str, ifname: str, netns: str,
              since: str = "") -> tuple[str, str]:
        """(state, why) of an attachment still open at the end of the trail; ``since``: its first evidence (its ADD),
        before which the process a ``/proc/PID/ns/net`` path names must have started ("": not asked)."""
        found = self._state(host, network, container_id, ifname, netns, since)
        self.counts[found[0]] = self.counts.get(found[0], 0) + 1
        return found

    def _state(self, host: str, network: str, container_id: str, ifname: str, netns: str,
               since: str) -> tuple[str, str]:
        if host != self.host:
            self.elsewhere[host or "(no host)"] = self.elsewhere.get(host or "(no host)", 0) + 1
            return UNKNOWN, f"recorded on {host or 'an unnamed host'}, not this node ({self.host}): run leaks there"
        if netns and not os.path.isdir(os.path.dirname(netns)) and not self._cache_readable():
            return UNKNOWN, (f"neither {os.path.dirname(netns)} nor {self.cache_dir} can be seen here (not the node's "
                             "view?): cannot look for it")
        if netns and not os.path.exists(netns):  # the sandbox is gone; its DEL never came
            cached = self._cache_readable() and os.path.exists(self._entry(network, container_id, ifname))
            return LEAKED, f"its network namespace {netns} is gone" + (
                f", yet {self.cache_dir} still lists it" if cached else "") + ", and no DEL was recorded"
        reused = _reused(netns, since)
        if reused is not None:
            return reused
        if not self._cache_readable():
            return UNKNOWN, self.problem
        if os.path.exists(self._entry(network, container_id, ifname)):
            return RUNNING, ""
        if not netns:
            return LEAKED, f"{self.cache_dir} no longer lists it, and no DEL was recorded"
        return UNKNOWN, (f"its network namespace {netns} still exists but {self.cache_dir} has no entry for it (a DEL "
                         "not recorded, or a runtime that caches its results elsewhere: --results-cache)")

    def _entry(self, network: str, container_id: str, ifname: str) -> str:
        """libcni's cache file of an attachment (``libcni.CNIConfig.getCacheFilePath``'s ``results`` name)."""
        return os.path.join(self.cache_dir, f"{network}-{container_id}-{ifname}")

    def warnings(self) -> list[str]:
        """What to say on stderr: the hosts this node cannot look at, a cache it could not read."""
        said = [f"cannot tell running from leaked for {n} attachment{'s' if n > 1 else ''} of {host}: only that "
                f"node can look at its network namespaces and libcni's result cache (this is {self.host})"
                for host, n in sorted(self.elsewhere.items())]
        if self.problem:
            said.append(f"{self.problem}; cannot tell running from leaked here (--results-cache names another)")
        return said


def _reused(netns: str, since: str) -> tuple[str, str] | None:
    """A ``/proc/PID/ns/net`` path that exists: is the process there the sandbox's (``None``: nothing against it),
    or another one that was given the PID since (``leaked``), or can this node not tell (``unknown``)?"""
    named = _PROCESS_NETNS.match(netns)
    if named is None or not since:
        return None
    pid = int(named[1])
    started = process_start(pid)
    if started is None:
        return UNKNOWN, (f"its network namespace {netns} names process {pid}, whose start cannot be read here: "
                         "cannot tell whether it is still the sandbox's (PIDs are reused)")
    try:
        added = to_epoch(since)
    except ValueError:
        return UNKNOWN, f"its first event's time {since!r} cannot be read: cannot tell whether process {pid} is its own"
    if started > added + START_TOLERANCE:
        return LEAKED, (f"its network namespace {netns} names process {pid}, which started at {from_epoch(started)}, "
                        f"after the ADD at {since}: the PID was reused, the sandbox's process is gone, and no DEL was "
                        "recorded")
    if started > added:
        return UNKNOWN, (f"its network namespace {netns} names process {pid}, which started within "
                         f"{START_TOLERANCE:g}s of the ADD at {since}: cannot tell whether it is the sandbox's")
    return None
