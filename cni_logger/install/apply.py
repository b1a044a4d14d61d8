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

from cni_logger.install import Refusal, atomicfile, launcher, selfcheck
from cni_logger.install.configs import ConfigFile
from cni_logger.install.journal import StateLock, load_journal, save_journal
from cni_logger.install.plan import Plan, Write, plan_install, plan_uninstall
from cni_logger.install.runtimes import LOGGER_TYPE, Options


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


def apply(plan: Plan, state_dir: str, verify: Callable[[str], None] | None = None) -> None:
    """Carry out the steps in order, then save the plan's journal (the caller holds the state dir's lock).

    ``verify`` executes a new launcher under its temporary name before it is renamed into place; when it
    raises, nothing has been written (directories created for the launcher are removed again).
    """
    for step in plan.steps:
        created = _missing_dirs(os.path.dirname(step.path)) if isinstance(step, Write) else []
        if isinstance(step, Write):
            os.makedirs(os.path.dirname(step.path), mode=0o755, exist_ok=True)  # e.g. rkt's plugin dir
        if isinstance(step, Write) and step.launcher:
            check = functools.partial(verify, atomicfile.temporary_path(step.path)) if verify else None
            try:
                launcher.write(step.path, before_replace=check)
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
    if plan.journal is not None:
        save_journal(state_dir, plan.journal)


def install_once(opts: Options, notes: list[str], out: Callable[[str], object] | None = None) -> bool:
    """One install pass; True when something was (or, with dry_run, would be) changed.

    Raises ``selfcheck.CheckFailed`` (a Refusal) when the plugin does not run, having changed nothing.
    """
    try:
        return _install_once(opts, notes, out or sys.stdout.write)
    except launcher.LauncherError as exc:
        # This interpreter lacks the plugin's packages: a launcher written for it could not run either.
        raise selfcheck.CheckFailed(str(exc)) from exc
    except OSError as exc:
        raise Refusal(str(exc)) from exc


def _install_once(opts: Options, notes: list[str], out: Callable[[str], object]) -> bool:
    if opts.dry_run:
        plan = plan_install(opts, load_journal(opts.state_dir), notes)
        if plan.steps:
            out(plan.diff())
        else:
            notes.append("nothing to change")
        return bool(plan.steps)
    # Plan without the lock first: a pass with nothing to change (every --watch check, normally) or a
    # refusal then writes nothing at all, not even the state dir.
    plan = plan_install(opts, load_journal(opts.state_dir), notes)
    installed = os.path.join(opts.bin_dir, LOGGER_TYPE)

    def verify(executable: str) -> None:
        label = None if executable == installed else f"the new {installed} (run as {executable} before it goes in)"
        warnings = selfcheck.check(executable, plan.entries, opts.bin_dir, opts.state_dir, opts.check_timeout, label)
        notes.extend(w for w in warnings if w not in notes)

    if not plan.writes_launcher:
        verify(installed)
    if plan.steps or plan.journal is not None:
        with StateLock(opts.state_dir):
            first = plan
            plan = plan_install(opts, load_journal(opts.state_dir), [])
            if first.writes_launcher and not plan.writes_launcher:
                verify(installed)  # another installer wrote it meanwhile: what runs now is its file
            apply(plan, opts.state_dir, verify)
    for step in plan.steps:
        notes.append(f"{'wrote' if isinstance(step, Write) else 'removed'} {step.path}")
    if not plan.steps:
        notes.append("already installed: nothing to change")
    return bool(plan.steps)


def withdraw(state_dir: str, notes: list[str]) -> bool:
    """Take the logger out of every chain install put it into, as uninstall does, leaving the launcher (and
    its journal entry, so a later uninstall still removes it); False when no chain recorded it.

    The journal then records no config, so the next install pass records each file afresh: a later
    uninstall restores exactly what was there before the entry was put back."""
    if not load_journal(state_dir)["configs"]:
        return False
    uninstall_once(state_dir, keep_launcher=True, dry_run=False, notes=notes)
    return True


def uninstall_once(state_dir: str, keep_launcher: bool, dry_run: bool, notes: list[str],
                   out: Callable[[str], object] | None = None) -> list[tuple[str, str | None]]:
    """One uninstall pass; returns the configs (file, network) for which the launcher was kept."""
    try:
        return _uninstall_once(state_dir, keep_launcher, dry_run, notes, out or sys.stdout.write)
    except OSError as exc:
        raise Refusal(str(exc)) from exc


def _uninstall_once(state_dir: str, keep_launcher: bool, dry_run: bool, notes: list[str],
                    out: Callable[[str], object]) -> list[tuple[str, str | None]]:
    if dry_run:
        plan = plan_uninstall(state_dir, keep_launcher, notes)
        out(plan.diff())
        return plan.kept_launcher
    with StateLock(state_dir):
        plan = plan_uninstall(state_dir, keep_launcher, notes)
        apply(plan, state_dir)
    for step in plan.steps:
        notes.append(f"{'wrote' if isinstance(step, Write) else 'removed'} {step.path}")
    if not plan.steps:
        notes.append("nothing recorded to undo")
    return plan.kept_launcher
