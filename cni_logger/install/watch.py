"""``install --watch``, for a DaemonSet: re-insert the entry whenever an agent's rewrite drops it, back off
when another agent keeps removing it, and take it out again on SIGTERM (leaving the launcher)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from cni_logger.install import Refusal
from cni_logger.install.apply import install_once, uninstall_once
from cni_logger.install.runtimes import Options

FIGHT_WINDOW_SECONDS = 60.0
FIGHT_REWRITES = 3
MAX_BACKOFF_SECONDS = 300.0
"""--watch: having to re-insert the entry FIGHT_REWRITES times within the window means another agent keeps
reverting it (Cilium with cni.exclusive=true): the wait then doubles, up to MAX_BACKOFF_SECONDS, rather
than the two rewriting the file (and the runtime reloading it) in a loop."""


def _touch(path: str | None, ready: bool) -> None:
    if not path:
        return
    if ready:
        with open(path, "a"):
            pass
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def watch(opts: Options, interval: float, ready_file: str | None,
          emit: Callable[[list[str]], None]) -> int:
    """Install, then re-check every ``interval`` seconds until SIGTERM/SIGINT, then take the entry out.

    Signals are blocked and collected with ``sigtimedwait`` between passes, so a pass (and its rename)
    is never interrupted halfway. Identical consecutive reports are printed once. On exit the launcher
    stays: CRI-O runs DEL with the config cached at ADD, so pods created while the logger was in the
    chain still execute it on teardown, and libcni fails a DEL whose plugin is missing.
    """
    signals = {signal.SIGTERM, signal.SIGINT}
    for signum in signals:
        # A handler of our own, because as a container's PID 1 a signal left at SIG_DFL is discarded by the
        # kernel; blocked, the signal stays pending for sigtimedwait and the handler never actually runs.
        signal.signal(signum, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    _touch(ready_file, False)
    last: list[str] = []
    rewrites: list[float] = []
    first = True
    wait = interval
    while True:
        notes: list[str] = []
        ok = False
        try:
            changed = install_once(opts, notes)
            ok = True
        except Refusal as exc:
            notes.append(f"not installed: {exc} (retrying every {interval:g}s)")
            changed = False
        now = time.monotonic()
        if changed and not first:
            rewrites = [t for t in rewrites if now - t < FIGHT_WINDOW_SECONDS] + [now]
            if len(rewrites) >= FIGHT_REWRITES:
                wait = min(wait * 2, MAX_BACKOFF_SECONDS)
                notes.append(f"warning: the entry had to be put back {len(rewrites)} times within "
                             f"{FIGHT_WINDOW_SECONDS:g}s: another agent keeps removing it (Cilium with "
                             f"cni.exclusive=true?); next check in {wait:g}s")
        elif ok and not changed:
            wait = interval
        first = first and not ok
        report = [n for n in notes if not n.startswith("already installed")]
        if report and report != last:
            emit(report)
        last = report
        _touch(ready_file, ok)
        if signal.sigtimedwait(signals, wait) is not None:
            break
    _touch(ready_file, False)
    notes = []
    try:
        uninstall_once(opts.state_dir, keep_launcher=True, dry_run=False, notes=notes)
        status = 0
    except Refusal as exc:
        notes.append(f"uninstall: {exc}")
        status = 1
    emit(notes)
    return status
