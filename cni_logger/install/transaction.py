"""Write-ahead: every change to a node is recorded in the journal before it is made, and reconciled by the
next pass if it was interrupted.

A pass that changes files (a config, the launcher, a removal) first saves the journal with a *pending
intent* (``journal["pending"]``): each step's path, the sha256 of its old and new content and both
contents (to roll back or forward), and the journal as it will be once every step is done. The save is
durable (``atomicfile``: fsync of the file and its directory) before the first file is touched. Then the
steps are carried out, and the journal is committed (saved without the intent).

So a full state dir changes nothing (the intent cannot be saved: refused, truthfully), and a pass killed
at any point leaves every file in its old or its new state, with the journal saying which. The next
pass of any kind (install, uninstall, ``--watch``, the failsafe) reconciles first (``reconcile``): it
carries out the steps not yet done (the files are in their old state) — unless the launcher is not
written yet, which was never executed by the self-check: then the steps done are undone. Either way no
chain names a launcher that is not there: install writes the launcher before any config, uninstall
removes it after every config, and a launcher removal is skipped while a config step could not be done.
A file that is in neither state was written by someone else meanwhile: it is left as it is, and so is its
journal record (the next pass treats it as an agent's rewrite).

When a step fails in the pass itself (a write vetoed or failing), the steps done are undone at once, so
that "refused" means "nothing was changed" (the failsafe keeps what it took out instead: see ``KEEP``);
if that fails too, the intent stays for the next pass and ``Incomplete`` says what was changed.

``CNI_LOGGER_TEST_KILL_AT=<reason>:<point>`` (tests only) makes the process SIGKILL itself at that step
boundary: ``intent`` (the intent is saved, nothing done yet) or ``step-N`` (step N, counted from 1, done),
for a pass of that reason (``install``, ``agent-rewrite``, ``failsafe``, ``restored``, ``uninstall``,
``shutdown``: ``apply.apply``'s). Unset, it costs one environment lookup per step. The tests use it to
kill a real installer at every step (tests/install/test_transactions.py).

The recorder (``Recorder``, the coverage events' source) is told of every config file changed, by a pass
or by reconciling (reason ``reconciled``; a step the interrupted pass had done is told again, with
``since`` its file's mtime, as that pass may have died before telling it: a duplicate, never a gap).
"""

from __future__ import annotations

import copy
import hashlib
import os
import signal
import sys
from typing import Any, Protocol

from cni_logger.install import Refusal, atomicfile
from cni_logger.install.journal import load_journal, save_journal
from cni_logger.install.runtimes import CONFIG_EXTENSIONS

KILL_ENV = "CNI_LOGGER_TEST_KILL_AT"
BACK, FORWARD, KEEP = "back", "forward", "keep"
"""What to do with an intent whose steps are not all done: undo the steps done, carry out the rest, or
keep what is done (the failsafe: each entry it took out is a broken logger less) and drop the rest."""
SECTIONS = ("configs", "withdrawn")
"""The journal's sections keyed by config path: a step's ``key`` names the entries its path owns."""


class Recorder(Protocol):
    """Told of every config file written or removed (see ``apply.apply``): the coverage events' source."""

    def __call__(self, path: str, old: bytes | None, new: bytes | None, reason: str,
                 since: float | None = None, detail: str | None = None) -> None: ...


class Incomplete(Refusal):
    """A change was interrupted and could not be undone: some files were changed (the message says which);
    the intent stays in the journal, and the next pass completes or undoes it."""


def boundary(reason: str, point: str) -> None:
    """The tests' fault-injection hook (see the module docstring): SIGKILL at ``<reason>:<point>``."""
    if os.environ.get(KILL_ENV) == f"{reason}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "surrogateescape")


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8", "surrogateescape")


def step_record(path: str, old: bytes | None, new: bytes | None, *, mode: int = 0o644, uid: int | None = None,
                gid: int | None = None, launcher: bool = False, key: str | None = None) -> dict[str, Any]:
    """One step of an intent: ``path`` goes from ``old`` to ``new`` (None: absent). ``key``: the config path
    whose journal entries the step belongs to (None: the launcher's)."""
    return {"path": path, "old": _text(old), "new": _text(new), "old_sha256": sha256(old), "new_sha256": sha256(new),
            "mode": mode, "uid": uid, "gid": gid, "launcher": launcher, "key": key}


def _current(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return b""


def state(step: dict[str, Any]) -> str:
    """``done``, ``undone`` (still the old content) or ``foreign`` (someone else wrote it meanwhile)."""
    now = sha256(_current(step["path"]))
    if now == step["new_sha256"]:
        return "done"
    if now == step["old_sha256"]:
        return "undone"
    return "foreign"


def _put(step: dict[str, Any], data: bytes | None) -> None:
    path = step["path"]
    if data is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        atomicfile.fsync_dir(os.path.dirname(path) or ".")
    else:
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        atomicfile.write_atomic(path, data, step["mode"], step["uid"], step["gid"])


def begin(state_dir: str, journal: dict[str, Any], steps: list[dict[str, Any]], after: dict[str, Any],
          reason: str, on_error: str, detail: str | None = None) -> dict[str, Any]:
    """Save the intent durably (an OSError here means nothing was changed); returns the journal saved."""
    saved = copy.deepcopy(journal)
    saved["pending"] = {"reason": reason, "detail": detail, "on_error": on_error, "steps": steps,
                        "after": {k: v for k, v in after.items() if k != "pending"}}
    save_journal(state_dir, saved)
    boundary(reason, "intent")
    return saved


def commit(state_dir: str, journal: dict[str, Any]) -> dict[str, Any]:
    """The journal once the intent's steps are as they are now, saved: each key (a config path, or the
    launcher) takes its new entries only when all its steps are done, and keeps its old ones otherwise."""
    pending = journal["pending"]
    before = {k: v for k, v in journal.items() if k != "pending"}
    result: dict[str, Any] = copy.deepcopy(pending["after"])
    for step in pending["steps"]:
        if state(step) == "done":
            continue
        key = step.get("key")
        if key is None:
            result["launcher"] = before.get("launcher")
            continue
        for section in SECTIONS:
            old = (before.get(section) or {}).get(key)
            entries = result.setdefault(section, {})
            if old is None:
                entries.pop(key, None)
            else:
                entries[key] = copy.deepcopy(old)
    for section in SECTIONS[1:]:
        if not result.get(section):
            result.pop(section, None)
    save_journal(state_dir, result)
    return result


def settle(state_dir: str, journal: dict[str, Any], direction: str, recorder: Recorder | None,
           reason: str, notes: list[str]) -> dict[str, Any]:
    """Bring the files of a pending intent to one state, record it, and commit; the journal committed.

    ``direction`` is FORWARD (carry out the steps not done; the launcher never unverified), BACK (undo the
    steps done) or KEEP. Raises ``Incomplete`` (leaving the intent) when a file cannot be written.
    """
    steps = journal["pending"]["steps"]
    if direction == FORWARD and any(s["launcher"] and s["new"] is not None and state(s) != "done" for s in steps):
        direction = BACK  # a launcher not yet in place was never executed by the self-check: do not put it there
    changed: list[str] = []
    try:
        if direction == FORWARD:
            stuck = False
            for step in steps:
                now = state(step)
                if now == "foreign":
                    stuck = stuck or not step["launcher"]
                    notes.append(f"warning: {step['path']} was written by someone else meanwhile: left as it is")
                elif now == "undone" and not (step["launcher"] and stuck):
                    _put(step, _bytes(step["new"]))
                    changed.append(step["path"])
                    tell(recorder, step, _bytes(step["old"]), _bytes(step["new"]), reason)
        elif direction == BACK:
            for step in reversed(steps):
                if state(step) == "done":
                    _put(step, _bytes(step["old"]))
                    changed.append(step["path"])
                    tell(recorder, step, _bytes(step["new"]), _bytes(step["old"]), reason)
    except OSError as exc:
        raise Incomplete(f"an interrupted change could not be {'completed' if direction == FORWARD else 'undone'} "
                         f"({exc}); files changed: {', '.join(_changed(steps)) or 'none'}; the journal "
                         f"({state_dir}) records it, and the next pass completes or undoes it") from exc
    if changed:
        notes.append(f"{'completed' if direction == FORWARD else 'undid'} an interrupted change: "
                     f"{', '.join(changed)}")
    return commit(state_dir, journal)


def _changed(steps: list[dict[str, Any]]) -> list[str]:
    return [s["path"] for s in steps if state(s) == "done" and s["old_sha256"] != s["new_sha256"]]


def tell(recorder: Recorder | None, step: dict[str, Any], old: bytes | None, new: bytes | None, reason: str,
          since: float | None = None, detail: str | None = None) -> None:
    """Call the recorder for a config file (never the launcher, nor the registry of installs beside it); its
    failure never fails the pass."""
    if recorder is None or step["launcher"] or not step["path"].endswith(CONFIG_EXTENSIONS):
        return
    try:
        recorder(step["path"], old, new, reason, since, detail)
    except Exception as exc:  # the coverage record must not decide whether the chain is changed
        sys.stderr.write(f"cni-logger: warning: could not record the change of {step['path']}: {exc}\n")


def reconcile(state_dir: str, recorder: Recorder | None, notes: list[str]) -> bool:
    """A pending intent (an interrupted pass's) brought to one state and committed; the caller holds the lock.

    False when there was none.
    """
    journal = load_journal(state_dir)
    if not journal.get("pending"):
        return False
    for step in journal["pending"]["steps"]:
        if state(step) == "done" and step["old_sha256"] != step["new_sha256"]:
            # Done by the interrupted pass, which may have died before telling the recorder.
            try:
                since: float | None = os.stat(step["path"]).st_mtime
            except OSError:
                since = None
            tell(recorder, step, _bytes(step["old"]), _bytes(step["new"]), "reconciled", since)
    settle(state_dir, journal, FORWARD, recorder, "reconciled", notes)
    return True


def pending(state_dir: str) -> bool:
    """Whether the journal holds an intent (read without the lock: only a hint to take it)."""
    try:
        return bool(load_journal(state_dir).get("pending"))
    except Refusal:
        return False

