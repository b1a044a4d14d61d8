"""Which file the runtime uses (its own rule, re-read while a file may be half-written), and whether the
logger could run in that network at all."""

from __future__ import annotations

import os
import time
from typing import Any

from cni_logger import skel
from cni_logger.install import Refusal
from cni_logger.install.configs import ConfigFile, order, read_config, scan
from cni_logger.install.runtimes import Options, Runtime

SETTLE_SECONDS = 1.0
SETTLE_ATTEMPTS = 3
"""A file that does not parse is read again this many times, this far apart, before it is believed:
Calico writes its conflist in place (truncate, then write), so a reader can catch it half-written."""


def conf_path(opts: Options, name: str) -> str:
    """A file named on the command line: a name in the conf dir, or a path."""
    return os.path.abspath(os.path.join(opts.conf_dir, name))


def choose(opts: Options, files: list[ConfigFile], notes: list[str]) -> ConfigFile:
    """The file to insert into. Raises Refusal when there is none or the choice would be a guess."""
    runtime = opts.runtime
    if opts.conf_file:
        path = conf_path(opts, opts.conf_file)
        if not path.endswith(runtime.extensions):
            raise Refusal(f"{path}: {runtime.name} loads only {', '.join(runtime.extensions)} files")
        for cfg in files:
            if cfg.path == path:
                if cfg.problem:
                    raise Refusal(f"{path} {cfg.problem}")
                return cfg
        try:
            cfg = read_config(path)
        except FileNotFoundError:
            raise Refusal(f"{path} does not exist") from None
        if cfg.problem:
            raise Refusal(f"{path} {cfg.problem}")
        return cfg

    if opts.network:
        matches = [c for c in files if not c.problem and c.network == opts.network]
        if len(matches) > 1:
            raise Refusal(f"network {opts.network!r} is defined by {len(matches)} files "
                          f"({', '.join(c.name for c in matches)}); the runtime uses the first, which may not be "
                          "the one meant: name it with --conf-file")
        if not matches:
            raise Refusal(f"no valid file in {opts.conf_dir} defines network {opts.network!r}")
        _note_skipped(opts, [c for c in files if c.problem and _before(c.path, matches[0].path)], notes)
        return matches[0]

    valid = [c for c in files if not c.problem]
    if runtime.name == "podman":
        if len(valid) != 1:
            names = ", ".join(f"{c.name} ({c.network})" for c in valid) or "none"
            raise Refusal(f"Podman uses each .conflist as a separate named network and has no primary one "
                          f"(found: {names}; its default network 'podman' may exist only in memory): "
                          "name the network's file with --conf-file or its name with --network")
        return valid[0]
    for cfg in files:
        if cfg.ambiguous:
            raise Refusal(f"{cfg.path} {cfg.problem}; it sorts before any usable config, so the runtime "
                          "may use it: fix it or name the file with --conf-file")
        if not cfg.problem:
            _note_skipped(opts, [c for c in files if c.problem and _before(c.path, cfg.path)], notes)
            return cfg
    _note_skipped(opts, files, notes)
    raise Refusal(f"no valid network config in {opts.conf_dir} (has the network provider started?)")


def _before(path: str, other: str) -> bool:
    return order(path) < order(other)


def runtime_pick(runtime: Runtime, files: list[ConfigFile], network: str | None = None) -> ConfigFile | None:
    """The file the runtime itself takes from ``files`` (in its order), with no refusals and no notes.

    The first valid config (with ``network``: the first of that name, as CRI-O's cni_default_network);
    a file the installer only refuses to rewrite (duplicate keys, a symlink) counts, the runtime loads
    it. containerd stops at the first file it cannot load: that file is its "pick" (no network at all).
    ``plan`` compares this before and after a change, so an install never changes which network is used.
    """
    for cfg in files:
        usable = not cfg.problem or cfg.ambiguous
        if network is not None:
            if usable and cfg.network == network:
                return cfg
        elif usable or runtime.name == "containerd":
            return cfg
    return None


def _note_skipped(opts: Options, skipped: list[ConfigFile], notes: list[str]) -> None:
    for cfg in skipped:
        consequence = ""
        if opts.runtime.name == "containerd":
            consequence = ("; WARNING: containerd stops at the first file it cannot load and then loads NO "
                           "network at all (pods cannot start) until it is fixed or removed")
        notes.append(f"warning: skipped {cfg.path}: it {cfg.problem}{consequence}")


_known_broken: dict[str, tuple[int, int, int]] = {}
"""Files already read again SETTLE_ATTEMPTS times and still unparsable, with their (inode, size, mtime):
believed at once while they stay the same, so a lasting broken file costs the settle time only once."""


def settled_choice(opts: Options, notes: list[str]) -> tuple[ConfigFile, list[ConfigFile]]:
    """``choose`` over a scan, re-reading while a file that sorts before the choice does not parse (it may
    be half-written) or the named file does not parse, so a torn write is never mistaken for the truth.

    Returns the choice and the scan it was made from (the directory as the plan finds it)."""
    def unsettled(files: list[ConfigFile], before: str | None) -> list[ConfigFile]:
        return [c for c in files if c.unparsable and (before is None or _before(c.path, before))
                and _known_broken.get(c.path) != (c.stat.st_ino, c.stat.st_size, c.stat.st_mtime_ns)]

    for attempt in range(SETTLE_ATTEMPTS + 1):
        files = scan(opts.conf_dir, opts.runtime)
        last = attempt == SETTLE_ATTEMPTS
        if last:
            _known_broken.update({c.path: (c.stat.st_ino, c.stat.st_size, c.stat.st_mtime_ns)
                                  for c in unsettled(files, None)})
        attempt_notes: list[str] = []
        try:
            target = choose(opts, files, attempt_notes)
        except Refusal:
            if last or not unsettled(files, None):
                raise
        else:
            if last or not unsettled(files, target.path):
                notes.extend(attempt_notes)
                return target, files
        time.sleep(SETTLE_SECONDS)
    raise AssertionError("unreachable")


def check_runnable(cfg: ConfigFile, doc: dict[str, Any]) -> str:
    """Refuse a network the logger could not run in (the whole ADD would fail); its ``cniVersion`` otherwise
    (``classify`` has refused one that is not a string)."""
    version = skel.config_version(doc)
    if version not in skel.SUPPORTED_VERSIONS:
        raise Refusal(f"{cfg.path} has cniVersion {version!r}; the logger supports "
                      f"{', '.join(skel.SUPPORTED_VERSIONS)}")
    problem = skel.network_name_problem(doc.get("name"))
    if problem:
        raise Refusal(f"{cfg.path}: {problem}")
    return version
