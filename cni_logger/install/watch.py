"""``install --watch``, for a DaemonSet: re-insert the entry whenever an agent's rewrite drops it, back off
when another agent keeps removing it, take it out while the plugin fails its self-check, and take it out
again on SIGTERM (leaving the launcher).

Every pass is an install pass, so every interval the installed plugin is executed as a runtime would
(``selfcheck``). When it stops executing or answering — the bundle deleted or damaged, a library
missing — every logger entry of every watched chain is taken out at once (``apply.withdraw``, see
``failsafe``: the operator's own entries too, which run the same launcher), so pods keep starting,
unaudited, rather than all failing; the reason is printed on stderr, the ready file removed, and
the check goes on: once the plugin runs again, the next pass puts the entry back and the watcher is
ready again. The first failed check is enough: a broken logger fails every ADD on the node, a flap
only costs an unaudited interval.

This process is the DaemonSet's PID 1: whatever a pass raises is reported and the loop goes on.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cni_logger.install import Refusal
from cni_logger.install.apply import install_once, uninstall_once, withdraw
from cni_logger.install.runtimes import LOGGER_TYPE, Options
from cni_logger.install.selfcheck import CannotCheck, CheckFailed
from cni_logger.install.transaction import Recorder
from cni_logger.install.watchlog import Note

if TYPE_CHECKING:
    from cni_logger.install.agent import Agent

FIGHT_WINDOW_SECONDS = 60.0
FIGHT_REWRITES = 3
MAX_BACKOFF_SECONDS = 300.0
"""--watch: having to re-insert the entry FIGHT_REWRITES times within the window means another agent keeps
reverting it (Cilium with cni.exclusive=true): the wait then doubles, up to MAX_BACKOFF_SECONDS, rather
than the two rewriting the file (and the runtime reloading it) in a loop."""


class Observer(Protocol):
    """What watches the watcher (``metrics.Metrics``): started once the signals are blocked (a thread it starts
    inherits the mask), told of every pass."""

    def start(self) -> None: ...

    def passed(self, check: str | None, ready: bool, wait: float) -> list[str]: ...


def _touch(path: str | None, ready: bool) -> str | None:
    """Create or remove the ready file; the problem, if that failed (reported, never raised: PID 1)."""
    if not path:
        return None
    try:
        if ready:
            with open(path, "a"):
                pass
        else:
            os.unlink(path)
    except FileNotFoundError:
        return None if not ready else f"cannot create the ready file {path}: its directory does not exist"
    except OSError as exc:
        return f"cannot {'create' if ready else 'remove'} the ready file {path}: {exc}"
    return None


def _withdraw(opts: Options, failure: CheckFailed, interval: float, previous: str | None,
              recorder: Recorder | None = None) -> list[str]:
    """After a failed self-check: take the entries out of the chains; the report (none while nothing is news).

    The files are read back first: the logger is said to be out only of chains that no longer name it. The
    first note is the failure's, with its details for the JSON line (``watchlog``)."""
    reason = str(failure)
    done: list[str] = []
    remaining: list[str] = []
    try:
        withdrew, remaining = withdraw(opts, reason, done, recorder)
    except Exception as exc:  # see watch's own loop
        withdrew = False
        detail = str(exc) if isinstance(exc, Refusal) else traceback.format_exc().rstrip()
        done = [f"ERROR: could not take the logger out of the chain ({detail}); pods on this network may fail "
                "to start until the plugin runs again"]
    if reason == previous and not done and not remaining:
        return []
    notes: list[str] = [Note(f"the logger plugin fails its self-check: {reason}", "error",
                             event={"action": "self-check-failed", "reason": reason},
                             cni={"check": failure.details})]
    if withdrew:
        notes.append(Note("took the logger out of the chain so that pods keep starting, NOT audited until it "
                          f"runs again: {'; '.join(done)}", "error", event={"action": "failsafe-removal"}))
    else:
        notes += done
    notes += [f"ERROR: the logger is NOT out of the chain in {path}: it still names the logger (a file the "
              "installer cannot rewrite); every ADD of that network fails until the plugin runs again or the "
              "entry is removed by hand" for path in remaining]
    if previous is None:
        notes.append(f"not ready; checking again every {interval:g}s: the logger goes back into the chain once "
                     "the plugin runs again")
    return notes


def _signalled(signals: set[signal.Signals], wait: float) -> bool:
    """Wait up to ``wait`` seconds for one of ``signals``; whether one came.

    CPython's ``sigtimedwait`` answers a siginfo with ``si_signo`` 0, not None, when the process was stopped
    (SIGSTOP, a debugger) past the deadline: the call is interrupted and the retry finds the time up. That is
    no SIGTERM, and must not uninstall the entry."""
    info = signal.sigtimedwait(signals, wait)
    return info is not None and info.si_signo in signals


def _start_agent(agent: Agent, previous: str | None) -> tuple[list[str], str | None]:
    """Start the agent if it is not running; the report (none while nothing is news) and the problem, if any."""
    if agent.running:
        return [], None
    try:
        agent.start()
    except (Refusal, OSError) as exc:
        problem = str(exc)
        if problem == previous:
            return [], problem
        return [Note(f"the agent is not serving ({problem}): the shim runs the plugin in-process (slower, audited "
                     "all the same); retrying every pass", "warning",
                     event={"action": "agent-not-serving", "reason": problem})], problem
    return [Note(f"the agent serves {agent.path}", "info", event={"action": "agent-serving"})], None


def _check_agent(opts: Options, agent: Agent) -> list[str]:
    """Ask the installed shim what a runtime asks, expecting the agent to answer; restart the agent if it does not."""
    from cni_logger.install.selfcheck import check_agent

    try:
        check_agent(os.path.join(opts.bin_dir, LOGGER_TYPE), opts.bin_dir, opts.state_dir, opts.check_timeout)
    except Refusal as exc:
        agent.stop()
        notes: list[str] = [Note(f"the agent failed its check ({exc}): restarted it; meanwhile the shim ran the "
                                 "plugin in-process", "warning",
                                 event={"action": "agent-restarted", "reason": str(exc)})]
        notes += _start_agent(agent, None)[0]
        return notes
    return []


def watch(opts: Options, interval: float, ready_file: str | None,
          emit: Callable[[list[str]], None], recorder: Recorder | None = None,
          coverage: Callable[[bool], list[str]] | None = None, observer: Observer | None = None,
          agent: Agent | None = None) -> int:
    """Install, then re-check every ``interval`` seconds until SIGTERM/SIGINT, then take the entry out.

    ``recorder`` (see ``apply.apply``) hears of every config change with its reason: ``install`` (the first
    pass that succeeds), ``agent-rewrite`` (a re-insert by a later pass), ``failsafe``, ``restored``,
    ``shutdown`` (SIGTERM), ``reconciled`` (an interrupted pass settled).

    Signals are blocked and collected with ``sigtimedwait`` between passes, so a pass (and its rename)
    is never interrupted halfway. Identical consecutive reports are printed once. ``coverage`` runs once
    per pass, after the install pass, told whether it changed anything (``coverage.Keeper.tick``:
    inventories, heartbeats, dropped events), and returns its problems to report. On exit the launcher
    stays: CRI-O runs DEL with the config cached at ADD, so pods created while the logger was in the
    chain still execute it on teardown, and libcni fails a DEL whose plugin is missing.
    """
    signals = {signal.SIGTERM, signal.SIGINT}
    for signum in signals:
        # A handler of our own, because as a container's PID 1 a signal left at SIG_DFL is discarded by the
        # kernel; blocked, the signal stays pending for sigtimedwait and the handler never actually runs.
        signal.signal(signum, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    if observer is not None:
        observer.start()
    _touch(ready_file, False)
    agent_problem: str | None = None
    last: list[str] = []
    last_problem: str | None = None
    rewrites: list[float] = []
    first = True
    broken: str | None = None          # why the last self-check failed, while it keeps failing
    wait = interval
    while True:
        notes: list[str] = []
        ok = changed = False
        check: str | None = None       # the self-check's result, for the observer (None: the pass made none)
        if agent is not None:  # before the install pass, whose self-check runs the shim
            started, agent_problem = _start_agent(agent, agent_problem)
            notes += started
        try:
            changed = install_once(opts, notes, recorder=recorder, reason="install" if first else "agent-rewrite")
            ok = True
            check = "pass"
            if agent is not None and agent.running:
                notes += _check_agent(opts, agent)
        except CheckFailed as exc:
            check = "fail"
            notes = _withdraw(opts, exc, interval, broken, recorder)
            broken = str(exc)
        except CannotCheck as exc:
            check = "cannot_check"
            notes.append(f"not ready: {exc}; the chains are left as they are (retrying every {interval:g}s)")
        except Refusal as exc:
            notes.append(f"not installed: {exc} (retrying every {interval:g}s)")
        except Exception:  # PID 1 of the DaemonSet: report, stay not-ready, keep checking
            notes.append(f"not installed: unexpected error (retrying every {interval:g}s):\n"
                         + traceback.format_exc().rstrip())
        if coverage is not None:  # the trail's record of its own coverage (never raises)
            notes += coverage(changed)
        now = time.monotonic()
        if ok and broken is not None:
            notes.append("the plugin passes its self-check again: the logger is back in the chain; ready")
            broken = None
        elif changed and not first:
            rewrites = [t for t in rewrites if now - t < FIGHT_WINDOW_SECONDS] + [now]
            if len(rewrites) >= FIGHT_REWRITES:
                wait = min(wait * 2, MAX_BACKOFF_SECONDS)
                notes.append(f"warning: the entry had to be put back {len(rewrites)} times within "
                             f"{FIGHT_WINDOW_SECONDS:g}s: another agent keeps removing it (Cilium with "
                             f"cni.exclusive=true?); next check in {wait:g}s")
        if (ok and not changed) or broken is not None:
            wait = interval
        first = first and not ok
        problem = _touch(ready_file, ok)
        if problem and problem != last_problem:
            notes.append(f"warning: {problem}")
        last_problem = problem
        if observer is not None:
            notes += observer.passed(check, ok, wait)
        report = [n for n in notes if not n.startswith("already installed")]
        if report and report != last:
            emit(report)
        last = report
        if _signalled(signals, wait):
            break
    problem = _touch(ready_file, False)
    notes = [f"warning: {problem}"] if problem else []
    if agent is not None:
        agent.stop()  # shims fall back at once: the shim stays as the plugin (DELs of pods it set up need it)
    try:
        uninstall_once(opts.state_dir, keep_launcher=True, dry_run=False, notes=notes, recorder=recorder,
                       reason="shutdown")
        status = 0
    except Refusal as exc:
        notes.append(f"uninstall: {exc}")
        status = 1
    emit(notes)
    return status
