"""The failsafe: no chain on this node executes a broken logger.

When the plugin fails its self-check (``--watch``), every logger entry of every watched network comes out:
the files install recorded, and every config in the conf dir whose chain names the logger — the
operator's own entries included, because each of them executes the same launcher (``<bin dir>/logger``)
and would fail every ADD just the same. Restoring the file install found is not enough: it may hold the
operator's own entry, and an entry that was already last was never recorded at all.

What was taken out is remembered in the journal (``withdrawn``: the file as it was, byte for byte, the
entries with their positions, and the file as the failsafe left it), and put back once the plugin runs
again: the file as it was when nobody wrote it since, else the entries inserted where they were (settings
intact). A logger network of its own (rkt's file, or a single config whose type is ``logger``) and a list
left with no other plugin are removed, and written back the same way.

Whether the logger is out is then read back from the files, not assumed: a file the failsafe cannot
rewrite (a duplicate key, which the runtime reads and the installer refuses to guess at) keeps its entry,
and the watcher says so.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from cni_logger.install import Refusal
from cni_logger.install.configs import read_config, scan
from cni_logger.install.content import has_logger, logger_entries, render, without_logger
from cni_logger.install.plan import Plan, Remove, Write
from cni_logger.install.runtimes import Options
from cni_logger.install.transaction import sha256


def watched(opts: Options, journal: dict[str, Any]) -> list[str]:
    """The config files whose chains may execute the launcher: those the journal records or the failsafe took
    the logger out of, and every file of the conf dir the runtime would load."""
    paths = set(journal["configs"]) | set(journal.get("withdrawn") or {})
    try:
        paths |= {cfg.path for cfg in scan(opts.conf_dir, opts.runtime)}
    except Refusal:
        pass  # no conf dir: only the recorded files
    return sorted(paths)


def plan_withdraw(opts: Options, journal: dict[str, Any], notes: list[str]) -> Plan:
    """Take every logger entry out of every watched file (see the module docstring)."""
    new_journal = copy.deepcopy(journal)
    plan = Plan(journal=new_journal)
    withdrawn = new_journal.setdefault("withdrawn", {})
    for path in watched(opts, journal):
        try:
            cfg = read_config(path)
        except FileNotFoundError:
            continue
        doc = cfg.doc
        if cfg.problem or not has_logger(doc):
            continue
        mode, uid, gid = cfg.stat.st_mode & 0o7777, cfg.stat.st_uid, cfg.stat.st_gid
        plugins = doc.get("plugins")
        if isinstance(plugins, list):
            taken = logger_entries(plugins)
            rest = without_logger(doc)
            new: bytes | None = render(rest, cfg.data) if rest["plugins"] else None
        else:
            taken, new = [(0, doc)], None
        if new is None:
            plan.steps.append(Remove(path, cfg.data, cfg))
        else:
            plan.steps.append(Write(path, new, cfg.data, mode, uid, gid, cfg))
        withdrawn[path] = {"original": cfg.data.decode("utf-8", "surrogateescape"), "written_sha256": sha256(new),
                           "entries": [[index, entry] for index, entry in taken], "mode": mode, "uid": uid,
                           "gid": gid}
        notes.append(f"took {len(taken)} logger entr{'y' if len(taken) == 1 else 'ies'} out of {path}")
    if not withdrawn:
        new_journal.pop("withdrawn")
    if not plan.steps:
        plan.journal = None  # nothing taken out: nothing to save (every pass while the check keeps failing)
    return plan


def plan_restore(journal: dict[str, Any], notes: list[str]) -> Plan:
    """Put back everything the failsafe took out (the plugin runs again)."""
    new_journal = copy.deepcopy(journal)
    plan = Plan(journal=new_journal)
    for path, taken in (journal.get("withdrawn") or {}).items():
        restore_steps(path, taken, plan, notes, managed=path in journal["configs"])
    new_journal.pop("withdrawn", None)
    return plan


def restore_steps(path: str, taken: dict[str, Any], plan: Plan, notes: list[str], managed: bool = False) -> None:
    """The file as it was when nobody wrote it since the failsafe; else its entries inserted where they were.

    ``managed``: a file install records; rewritten meanwhile (an agent), it is left to the install pass,
    which puts the entry back into the agent's version as after any agent rewrite (with the recorded
    settings), and keeps the journal's record of the file true."""
    original = taken["original"].encode("utf-8", "surrogateescape")
    try:
        cfg = read_config(path)
    except FileNotFoundError:
        cfg = None
    if (sha256(cfg.data) if cfg else None) == taken.get("written_sha256"):
        if cfg is None or cfg.data != original:
            plan.steps.append(Write(path, original, cfg.data if cfg else None, taken.get("mode", 0o644),
                                    taken.get("uid"), taken.get("gid"), cfg))
        return
    if managed:
        return
    if cfg is None or cfg.problem or not isinstance(cfg.doc.get("plugins"), list) or has_logger(cfg.doc):
        notes.append(f"warning: {path} was written by someone else while the logger was out: its logger "
                     "entries are not put back")
        return
    doc = dict(cfg.doc)
    doc["plugins"] = list(doc["plugins"])
    for index, entry in sorted(taken.get("entries") or [], key=lambda pair: pair[0]):
        doc["plugins"].insert(min(index, len(doc["plugins"])), entry)
    mode = cfg.stat.st_mode & 0o7777
    plan.steps.append(Write(path, render(doc, cfg.data), cfg.data, mode, cfg.stat.st_uid, cfg.stat.st_gid, cfg))


def still_in(paths: list[str]) -> list[str]:
    """The files among ``paths`` whose chain still names the logger, read as a runtime reads them (a duplicate
    key: the last one wins, as in Go)."""
    found = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError, RecursionError):
            continue
        if has_logger(doc) and os.path.isfile(path):
            found.append(path)
    return found
