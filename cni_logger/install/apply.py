"""Carrying out a plan: every write atomic, abandoned if another agent wrote the file meanwhile, the whole
plan under the state dir's lock; and one install or uninstall pass, which plans, then applies."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from cni_logger.install import Refusal, atomicfile, launcher
from cni_logger.install.configs import ConfigFile
from cni_logger.install.journal import StateLock, load_journal, save_journal
from cni_logger.install.plan import Plan, Write, plan_install, plan_uninstall
from cni_logger.install.runtimes import Options


def write_atomic(path: str, data: bytes, mode: int, uid: int | None = None, gid: int | None = None,
                 expect: ConfigFile | None = None) -> None:
    """``atomicfile.write_atomic``, abandoning the rename if ``expect``'s file changed since it was read."""

    def unchanged() -> None:
        if expect is not None and expect.changed():
            raise Refusal(f"{path} changed while it was being updated (another agent wrote it); will retry")

    atomicfile.write_atomic(path, data, mode, uid, gid, before_replace=unchanged)


def apply(plan: Plan, state_dir: str) -> None:
    """Carry out the steps in order, then save the plan's journal (the caller holds the state dir's lock)."""
    for step in plan.steps:
        if isinstance(step, Write):
            os.makedirs(os.path.dirname(step.path), mode=0o755, exist_ok=True)  # e.g. rkt's plugin dir
        if isinstance(step, Write) and step.launcher:
            launcher.write(step.path)
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
    """One install pass; True when something was (or, with dry_run, would be) changed."""
    try:
        return _install_once(opts, notes, out or sys.stdout.write)
    except (OSError, launcher.LauncherError) as exc:
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
    if plan.steps or plan.journal is not None:
        with StateLock(opts.state_dir):
            plan = plan_install(opts, load_journal(opts.state_dir), [])
            apply(plan, opts.state_dir)
    for step in plan.steps:
        notes.append(f"{'wrote' if isinstance(step, Write) else 'removed'} {step.path}")
    if not plan.steps:
        notes.append("already installed: nothing to change")
    return bool(plan.steps)


def uninstall_once(state_dir: str, keep_launcher: bool, dry_run: bool, notes: list[str],
                   out: Callable[[str], object] | None = None) -> None:
    try:
        _uninstall_once(state_dir, keep_launcher, dry_run, notes, out or sys.stdout.write)
    except OSError as exc:
        raise Refusal(str(exc)) from exc


def _uninstall_once(state_dir: str, keep_launcher: bool, dry_run: bool, notes: list[str],
                    out: Callable[[str], object]) -> None:
    if dry_run:
        plan = plan_uninstall(state_dir, keep_launcher, notes)
        out(plan.diff())
        return
    with StateLock(state_dir):
        plan = plan_uninstall(state_dir, keep_launcher, notes)
        apply(plan, state_dir)
    for step in plan.steps:
        notes.append(f"{'wrote' if isinstance(step, Write) else 'removed'} {step.path}")
    if not plan.steps:
        notes.append("nothing recorded to undo")
