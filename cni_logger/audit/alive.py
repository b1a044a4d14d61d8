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
``unknown``: the trail's host is another node (this one cannot look), neither the namespace's directory nor
the cache can be seen here (a container without the node's mounts), the cache cannot be read, or the
namespace still exists with no cache entry (a DEL the trail did not record, or a runtime that caches
elsewhere: ``--results-cache``).

The host is compared as the plugin writes it (``host.name``: ``os.uname().nodename``).
"""

from __future__ import annotations

import os
from typing import Any

RESULTS_CACHE = "/var/lib/cni/results"
"""libcni's default (``/var/lib/cni`` + ``results``), as ``install --results-cache`` has it."""
RUNNING, LEAKED, UNKNOWN = "running", "leaked", "unknown"


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

    def state(self, host: str, network: str, container_id: str, ifname: str, netns: str) -> tuple[str, str]:
        """(state, why) of an attachment still open at the end of the trail."""
        found = self._state(host, network, container_id, ifname, netns)
        self.counts[found[0]] = self.counts.get(found[0], 0) + 1
        return found

    def _state(self, host: str, network: str, container_id: str, ifname: str, netns: str) -> tuple[str, str]:
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
