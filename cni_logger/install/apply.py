"""Carrying out a plan: every write atomic, abandoned if another agent wrote the file meanwhile, the whole
plan under the state dir's lock; and one install or uninstall pass, which plans, checks, then applies.

An install pass executes the plugin (``selfcheck``) before the entry goes into any chain, and refuses
(``CheckFailed``) when it does not run:

- when the launcher must be written (new, or an update for another interpreter or bundle), the new file
  is executed under its temporary name in the bin dir — complete, mode 0755, the very inode that is then
  renamed into place — and a failure vetoes the rename. So "changing nothing" holds for both cases: a
  fresh node keeps having no ``logger`` (and no bin dir if the install created it), an update keeps the
  previous launcher, which pods set up with it still need for DEL. Replacing the launcher first and
  restoring it after a failed check would instead let every ADD during the check (up to its timeout)
  execute the broken file;
- when the launcher is current, the installed file itself is executed (without the lock: every
  ``--watch`` interval does this).

Either way nothing the runtime reads, nor the journal, has changed when the check fails (only the state
dir's lock file may have been created). ``--dry-run`` executes nothing.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from cni_logger.install import Refusal, atomicfile, failsafe, launcher, selfcheck, transaction
from cni_logger.install.configs import ConfigFile
from cni_logger.install.journal import StateLock, load_journal, save_journal
from cni_logger.install.plan import Plan, Remove, Write, plan_install, plan_uninstall
from cni_logger.install.runtimes import LOGGER_TYPE, Options
from cni_logger.install.transaction import Recorder


def write_atomic(path: str, data: bytes, mode: int, uid: int | None = None, gid: int | None = None,
                 expect: ConfigFile | None = None) -> None:
    """``atomicfile.write_atomic``, abandoning the rename if ``expect``'s file changed since it was read."""

    def unchanged() -> None:
        if expect is not None and expect.changed():
            raise Refusal(f"{path} changed while it was being updated (another agent wrote it); will retry")

    atomicfile.write_atomic(path, data, mode, uid, gid, before_replace=unchanged)


def _missing_dirs(directory: str) -> list[str]:
    """``directory`` and those of its parents that do not exist, deepest first."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return missing


def _step_record(step: Write | Remove) -> dict[str, Any]:
    if isinstance(step, Write):
        return transaction.step_record(step.path, step.old, step.data, mode=step.mode, uid=step.uid, gid=step.gid,
                                       launcher=step.launcher, key=None if step.launcher else step.key)
    st = step.expect.stat if step.expect is not None else None
    mode = st.st_mode & 0o7777 if st is not None else (0o755 if step.launcher else 0o644)
    return transaction.step_record(step.path, step.old, None, mode=mode, uid=st.st_uid if st else None,
                                   gid=st.st_gid if st else None, launcher=step.launcher,
                                   key=None if step.launcher else step.key)


def apply(plan: Plan, state_dir: str, verify: Callable[[str], None] | None = None,
          recorder: Recorder | None = None, reason: str = "install", detail: str | None = None,
          on_error: str = transaction.BACK) -> bool:
    """Carry out the steps in order, written ahead in the journal, then commit the plan's journal (the caller
    holds the state dir's lock, and has reconciled any earlier intent); False if the journal could not
    record it (only with ``on_error`` KEEP, the failsafe's: the steps are then carried out all the same).

    ``verify`` executes a new launcher under its temporary name before it is renamed into place; when it
    raises, nothing has been written (directories created for the launcher are removed again). When the
    intent cannot be saved (a full state dir), nothing is changed: a Refusal. When a step fails, the steps
    done are undone at once (``on_error``: see ``transaction``) and the step's error is raised; if they
    cannot be undone, ``transaction.Incomplete``. ``recorder`` is called after each config file written or
    removed, with ``reason`` (and ``detail``; ``since``: the file's mtime as found, for an agent's rewrite).
    """
    if not plan.steps:
        if plan.journal is not None:
            save_journal(state_dir, plan.journal)
        return True
    journal = load_journal(state_dir)
    if journal.get("pending"):
        raise Refusal(f"{state_dir} records an interrupted change that was not reconciled first; will retry")
    records = [_step_record(step) for step in plan.steps]
    try:
        saved = transaction.begin(state_dir, journal, records, plan.journal if plan.journal is not None else journal,
                                  reason, on_error, detail)
    except OSError as exc:
        if on_error != transaction.KEEP:
            raise Refusal(f"cannot record the change in the journal in {state_dir} ({exc.strerror or exc}): "
                          "nothing was changed") from exc
        # The failsafe: a broken logger out of the chains matters more than the record of it.
        for step in plan.steps:
            _carry_out(step, verify)
            transaction.tell(recorder, _step_record(step), step.old, step.data if isinstance(step, Write) else None,
                             reason, None, detail)
        return False
    try:
        for number, (step, record) in enumerate(zip(plan.steps, records, strict=True), 1):
            _carry_out(step, verify)
            since = step.expect.stat.st_mtime if reason == "agent-rewrite" and step.expect is not None else None
            transaction.tell(recorder, record, step.old, step.data if isinstance(step, Write) else None, reason,
                             since, detail)
            transaction.boundary(reason, f"step-{number}")
    except Exception as exc:
        transaction.settle(state_dir, saved, on_error, recorder, "reconciled", [])
        if isinstance(exc, OSError) and on_error == transaction.BACK:
            raise Refusal(f"{exc}; what this pass had changed was undone: nothing was changed") from exc
        raise
    transaction.commit(state_dir, saved)
    return True


def _carry_out(step: Write | Remove, verify: Callable[[str], None] | None) -> None:
    created = _missing_dirs(os.path.dirname(step.path)) if isinstance(step, Write) else []
    if isinstance(step, Write):
        os.makedirs(os.path.dirname(step.path), mode=0o755, exist_ok=True)  # e.g. rkt's plugin dir
    if isinstance(step, Write) and step.launcher:
        check = functools.partial(verify, atomicfile.temporary_path(step.path)) if verify else None
        try:
            atomicfile.write_atomic(step.path, step.data, 0o755, before_replace=check)
        except selfcheck.CheckFailed:
            for directory in created:
                try:
                    os.rmdir(directory)
                except OSError:
                    break
            raise
    elif isinstance(step, Write):
        write_atomic(step.path, step.data, step.mode, step.uid, step.gid, step.expect)
    else:
        if step.expect is not None and step.expect.changed():
            raise Refusal(f"{step.path} changed while it was being updated; will retry")
        os.unlink(step.path)
        atomicfile.fsync_dir(os.path.dirname(step.path) or ".")


def _reconcile(state_dir: str, recorder: Recorder | None, notes: list[str]) -> bool:
    """Settle an interrupted pass's intent, if there is one (every pass does this first); True if it did."""
    if not transaction.pending(state_dir):
        return False
    with StateLock(state_dir):
        return transaction.reconcile(state_dir, recorder, notes)


def install_once(opts: Options, notes: list[str], out: Callable[[str], object] | None = None,
                 recorder: Recorder | None = None, reason: str = "install") -> bool:
    """One install pass; True when something was (or, with dry_run, would be) changed.

    Raises ``selfcheck.CheckFailed`` (a Refusal) when the plugin does not run, having changed nothing (but
    what reconciling an interrupted pass changed: the notes say so). ``reason`` is the recorder's: ``install``,
    or ``agent-rewrite`` for ``--watch``'s passes after its first. Entries the failsafe took out are put back
    (reason ``restored``) once the plugin passes its check.
    """
    try:
        return _install_once(opts, notes, out or sys.stdout.write, recorder, reason)
    except launcher.LauncherError as exc:
        # This interpreter lacks the plugin's packages: a launcher written for it could not run either. Under
        # --watch that is the installation the launcher runs, lost since start (its folder removed or damaged).
        raise selfcheck.CheckFailed(f"the installation the launcher runs is incomplete: {exc}") from exc
    except OSError as exc:
        raise Refusal(str(exc)) from exc


def _install_once(opts: Options, notes: list[str], out: Callable[[str], object], recorder: Recorder | None,
                  reason: str) -> bool:
    if opts.dry_run:
        plan = plan_install(opts, load_journal(opts.state_dir), notes)
        if plan.steps:
            out(plan.diff())
        else:
            notes.append("nothing to change")
        return bool(plan.steps)
    reconciled = _reconcile(opts.state_dir, recorder, notes)
    # Plan without the lock first: a pass with nothing to change (every --watch check, normally) or a
    # refusal then writes nothing at all, not even the state dir.
    plan = plan_install(opts, load_journal(opts.state_dir), notes)
    installed = os.path.join(opts.bin_dir, LOGGER_TYPE)

    def verify(executable: str) -> None:
        label = None if executable == installed else f"the new {installed} (run as {executable} before it goes in)"
        # thick mode: the in-process path, which must work whenever the agent is not there (the agent's own path
        # is checked by --watch after each pass: a failing agent is restarted, never a reason to withdraw)
        served_by = "fallback" if opts.agent_socket is not None else None
        warnings = selfcheck.check(executable, plan.entries, opts.bin_dir, opts.state_dir, opts.check_timeout, label,
                                   served_by)
        notes.extend(w for w in warnings if w not in notes)

    if not plan.writes_launcher:
        verify(installed)
    restored = False
    if load_journal(opts.state_dir).get("withdrawn"):
        restored = _restore(opts, plan, verify, recorder, notes)
        plan = plan_install(opts, load_journal(opts.state_dir), [])
    if plan.steps or plan.journal is not None:
        with StateLock(opts.state_dir):
            reconciled = transaction.reconcile(opts.state_dir, recorder, notes) or reconciled  # a racing pass's
            first = plan
            plan = plan_install(opts, load_journal(opts.state_dir), [])
            if first.writes_launcher and not plan.writes_launcher:
                verify(installed)  # another installer wrote it meanwhile: what runs now is its file
            apply(plan, opts.state_dir, verify, recorder, reason)
    for step in plan.steps:
        notes.append(f"{'wrote' if isinstance(step, Write) else 'removed'} {step.path}")
    if not plan.steps and not restored and not reconciled:
        notes.append("already installed: nothing to change")
    return bool(plan.steps) or restored or reconciled


def _restore(opts: Options, plan: Plan, verify: Callable[[str], None], recorder: Recorder | None,
             notes: list[str]) -> bool:
    """The plugin passes its check: put back what the failsafe took out (the launcher first, if it must be
    written: checked under its temporary name, as always). True if a file was written."""
    with StateLock(opts.state_dir):
        transaction.reconcile(opts.state_dir, recorder, notes)
        journal = load_journal(opts.state_dir)
        steps: list[Write | Remove] = [step for step in plan.steps if isinstance(step, Write) and step.launcher]
        if steps:
            launcher_plan = Plan(journal={**journal, "launcher": steps[0].path})
            launcher_plan.steps = steps
            apply(launcher_plan, opts.state_dir, verify, recorder, "restored")
            notes.append(f"wrote {steps[0].path}")
        restore = failsafe.plan_restore(load_journal(opts.state_dir), notes)
        apply(restore, opts.state_dir, None, recorder, "restored")
    for step in restore.steps:
        notes.append(f"put back the logger entries the failsafe took out: wrote {step.path}")
    return bool(restore.steps) or bool(steps)


def withdraw(opts: Options, detail: str, notes: list[str], recorder: Recorder | None = None) -> tuple[bool, list[str]]:
    """The failsafe: take every logger entry out of every watched chain (``failsafe``), leaving the launcher;
    then read the files back. Returns whether anything was taken out, and the files whose chain still names
    the logger (the watcher must not say the logger is out while there is one)."""
    with StateLock(opts.state_dir):
        transaction.reconcile(opts.state_dir, recorder, notes)
        plan = failsafe.plan_withdraw(opts, load_journal(opts.state_dir), notes)
        if not apply(plan, opts.state_dir, None, recorder, "failsafe", detail, on_error=transaction.KEEP):
            notes.append(f"warning: the withdrawal could not be recorded in {opts.state_dir} (no space?): the "
                         "entries taken out of files install did not write are not put back automatically")
        remaining = failsafe.still_in(failsafe.watched(opts, load_journal(opts.state_dir)))
    return bool(plan.steps), remaining


def uninstall_once(state_dir: str, keep_launcher: bool, dry_run: bool, notes: list[str],
                   out: Callable[[str], object] | None = None, recorder: Recorder | None = None,
                   reason: str = "uninstall") -> list[tuple[str, str | None]]:
    """Undo what the journal records; returns the configs (file, network) for which the launcher was kept.
    ``reason``: ``uninstall``, or ``shutdown`` (``--watch`` on SIGTERM: what the failsafe took out stays out,
    see ``plan_uninstall``)."""
    try:
        return _uninstall_once(state_dir, keep_launcher, dry_run, notes, out or sys.stdout.write, recorder, reason)
    except OSError as exc:
        raise Refusal(str(exc)) from exc


def _uninstall_once(state_dir: str, keep_launcher: bool, dry_run: bool, notes: list[str],
                    out: Callable[[str], object], recorder: Recorder | None,
                    reason: str) -> list[tuple[str, str | None]]:
    if dry_run:
        plan = plan_uninstall(state_dir, keep_launcher, notes)
        out(plan.diff())
        return plan.kept_launcher
    with StateLock(state_dir):
        transaction.reconcile(state_dir, recorder, notes)
        plan = plan_uninstall(state_dir, keep_launcher, notes, keep_withdrawn=reason == "shutdown")
        apply(plan, state_dir, None, recorder, reason)
    for step in plan.steps:
        notes.append(f"{'wrote' if isinstance(step, Write) else 'removed'} {step.path}")
    if not plan.steps:
        notes.append("nothing recorded to undo")
    return plan.kept_launcher
