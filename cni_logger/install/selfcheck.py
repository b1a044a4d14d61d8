"""Running the plugin exactly as a runtime would, before the logger is put into a chain (and, under
``--watch``, every interval while it is there).

A logger entry whose executable does not run fails every ADD of the network: no pod on the node starts.
The causes are ordinary — the bundle folder deleted by a clean-up, a damaged or half-copied interpreter,
a shared library or a standard-library module missing, a bin dir mounted ``noexec`` — and none of them
shows until a runtime executes the file. So the check executes the launcher file itself (never the
Python module in-process: that would prove only the installer's own interpreter), in a new session,
with a clean environment as a runtime passes it, and asks it what a runtime asks, for exactly the entries
install writes (``plan.Plan.entries``: the operator's entry merged with the command line, and in bracket
mode both the attempt and the outcome entry):

- ``VERSION`` with each network's ``cniVersion``: exit 0 and one JSON document on stdout whose
  ``supportedVersions`` lists that version;
- ``ADD`` through each entry, as its network's runtime passes it (the network's name and ``cniVersion``,
  the entry's own settings, ``role`` included), with its ``logFile`` moved into the scratch directory, no
  ``prevResult``, a dummy container id and netns path: exit 0, one JSON result on stdout, and exactly one
  event line in the scratch log (a plugin that answers but cannot log is not the audit trail the operator
  installed).

What the relocated ADD cannot see is checked apart: an entry with ``failOnLogError: true`` and a setting
the plugin rejects fails every ADD with code 7 (``plugin._record``), whichever the setting (its
``logFile`` too), so it fails the check; and the real ``logFile`` is probed without writing or creating
anything (``_log_problem``): one that cannot be written fails every ADD with code 11 under
``failOnLogError`` (a failed check), and otherwise costs the events only (a warning: the plugin fails open).
A probe that does not finish within the timeout (a hung network mount) fails the check either way: the
plugin's open would hang every ADD just as long.

The scratch directory is ``<state dir>/check/``, root-only (0700), never ``$TMPDIR`` or ``/tmp``: any user
can fill a shared ``/tmp``, and a check that then failed would take the logger out of every chain. When the
scratch space itself cannot hold a test write (``_probe_scratch``, before the plugin runs and again after a
failed ADD), the answer is ``CannotCheck``: the check was not made, which is not a broken plugin (``--watch``
does not withdraw the entry for it; install refuses, saying it could not check).

Each call has a timeout (a plugin that hangs stalls pod creation as surely as one that fails); on
timeout the whole process group is killed. Nothing is written outside the scratch directory, whose
per-check subdirectory is removed afterwards.

This module imports everything it needs when it is loaded, because ``--watch`` loads it at start-up
from the very bundle whose damage it has to detect later (a module imported lazily could be gone by then).
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

from cni_logger import settings
from cni_logger.filesink import RotatingFile, SinkError
from cni_logger.install import Refusal
from cni_logger.install.content import ChainEntry
from cni_logger.install.launcher import shebang_limit
from cni_logger.install.runtimes import DEFAULT_CHECK_TIMEOUT, DEFAULT_CNI_VERSION
from cni_logger.settings import Settings
from cni_logger.skel import LATEST_VERSION

CONTAINER_ID = "cni-logger-self-check"
AGENT_CHECK_NETWORK = "cni-logger-agent-check"
SHIM_SWITCH = "CNI_LOGGER_SHIM"
"""Set to ``inprocess``, thick mode's shim runs the in-process plugin without asking the agent (the check of
that path, which the failsafe relies on)."""
IFNAME = "eth0"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STDERR_TAIL_CHARS = 800
SCRATCH_DIR = "check"
"""The scratch directory's name in the state dir."""
SCRATCH_TEST_BYTES = 64 * 1024
"""What the scratch space must take before the plugin runs: many times the events of a check."""


class CheckFailed(Refusal):
    """The plugin did not execute or answer as a runtime needs it to; the message says what happened.

    ``details``: what the watcher's log line and metrics carry besides the message, where the call got that
    far: ``call`` (e.g. ``<plugin> VERSION``), ``exit_status`` or ``signal``, ``timed_out``, ``stderr_tail``."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = {k: v for k, v in details.items() if v is not None}


class CannotCheck(Refusal):
    """The check could not be made (its scratch space cannot be written): no verdict on the plugin."""


def _scratch(state_dir: str) -> str:
    """A new private directory in ``<state dir>/check/`` (made root-only), proven to hold a test write."""
    root = os.path.join(state_dir, SCRATCH_DIR)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        try:
            os.mkdir(root, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise CannotCheck(f"cannot check the plugin: its scratch directory {root} is not a directory owned by "
                              "this user; remove it")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(root, 0o700)
        work = tempfile.mkdtemp(prefix="run-", dir=root)
    except OSError as exc:
        raise CannotCheck(f"cannot check the plugin: cannot create its scratch directory in {root}: "
                          f"{exc.strerror or exc}") from None
    problem = _probe_scratch(work)
    if problem:
        shutil.rmtree(work, ignore_errors=True)
        raise CannotCheck(problem)
    return work


def _probe_scratch(work: str) -> str:
    """Why the scratch directory cannot hold a test write ("" when it can): the check's own space, not the plugin."""
    path = os.path.join(work, "space-test")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            block = b"\0" * SCRATCH_TEST_BYTES
            written = 0
            while written < len(block):
                written += os.write(fd, block[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(path)
    except OSError as exc:
        return (f"cannot check the plugin: its scratch directory {os.path.dirname(work)} cannot hold a test write "
                f"({exc.strerror or exc}; the state dir's filesystem full or read-only?); this says nothing about "
                "the plugin itself")
    return ""


def check(executable: str, entries: Sequence[ChainEntry], cni_path: str, state_dir: str,
          timeout: float = DEFAULT_CHECK_TIMEOUT, label: str | None = None, served_by: str | None = None) -> list[str]:
    """Run VERSION and, through each entry, ADD with ``executable``; raise CheckFailed saying what failed.

    Returns warnings (a real ``logFile`` the plugin cannot write, which it fails open on). ``label`` names the
    plugin in messages (default: ``executable``). ``CannotCheck`` (a Refusal, not a CheckFailed) means the
    check could not be made at all. ``served_by`` (thick mode's shim): ``fallback`` checks the in-process path
    (the shim told ``CNI_LOGGER_SHIM=inprocess``), the one the failsafe depends on, since the agent can be gone
    at any time; ``agent`` checks that the agent answered (``check_agent``). Each event must say so.
    """
    name = label or executable
    loaded = [(item, settings.load(item.entry)) for item in entries]
    for item, conf in loaded:
        if conf.fail_on_log_error and conf.problems:
            raise CheckFailed(f"the logger entry for {item.where} has failOnLogError true and a setting the plugin "
                              f"rejects, so every ADD would fail (error 7, invalid logger setting): "
                              f"{'; '.join(conf.problems)}")
    _run(executable, entries, cni_path, state_dir, timeout, name, served_by)
    return _check_logs(loaded, timeout)


def _run(executable: str, entries: Sequence[ChainEntry], cni_path: str, state_dir: str, timeout: float, name: str,
         served_by: str | None) -> None:
    """``check``'s calls: VERSION, then ADD through each entry into the scratch directory."""
    env = {"PATH": CLEAN_PATH, "CNI_CONTAINERID": CONTAINER_ID, "CNI_NETNS": "", "CNI_IFNAME": IFNAME,
           "CNI_PATH": cni_path, "CNI_ARGS": ""}
    if served_by == "fallback":
        env[SHIM_SWITCH] = "inprocess"
        name = f"{name} (in-process, as the shim runs it without the agent)"
    elif served_by == "agent":
        name = f"{name} (through the agent)"
    # VERSION first, before the scratch space is needed: a plugin that does not even execute is a failed check
    # whatever the state of the scratch space (a full /var must not keep a broken logger in the chains).
    versions = list(dict.fromkeys(item.cni_version for item in entries)) or [DEFAULT_CNI_VERSION]
    for version in versions:
        check_version(executable, version, timeout, name, env)
    work = _scratch(state_dir)
    try:
        env["CNI_NETNS"] = os.path.join(work, "netns")
        for number, item in enumerate(entries):
            log = os.path.join(work, f"check-{number}.log")
            config = {"cniVersion": item.cni_version, "name": item.network, **item.entry, "logFile": log}
            what = f"{name} ADD (the entry for {item.where})" if len(entries) > 1 else f"{name} ADD"
            try:
                result = _call(executable, name, what, config, env, timeout, "ADD")
                if not isinstance(result, dict) or result.get("cniVersion") != item.cni_version:
                    raise CheckFailed(f"{what} answered {_short(result)}, not a {item.cni_version} result")
                _check_log(what, log, served_by)
            except CheckFailed:
                problem = _probe_scratch(work)
                if problem:
                    raise CannotCheck(problem) from None
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_version(executable: str, cni_version: str, timeout: float, label: str | None = None,
                  env: dict[str, str] | None = None) -> None:
    """VERSION through ``executable``, as a runtime asks it; CheckFailed unless it lists ``cni_version``."""
    name = label or executable
    env = env or {"PATH": CLEAN_PATH}
    answer = _call(executable, name, f"{name} VERSION", {"cniVersion": cni_version}, env, timeout, "VERSION")
    supported = answer.get("supportedVersions") if isinstance(answer, dict) else None
    if not isinstance(supported, list) or cni_version not in supported:
        raise CheckFailed(f"{name} VERSION answered {_short(answer)}, which does not list the "
                          f"network's cniVersion {cni_version!r}")


def _check_logs(loaded: Sequence[tuple[ChainEntry, Settings]], timeout: float) -> list[str]:
    """Probe each real ``logFile`` (the entries with their settings): CheckFailed where the plugin would fail ADD
    for it, else warnings."""
    warnings: list[str] = []
    seen: set[str] = set()
    for item, conf in loaded:
        if conf.log_file is None or conf.log_file in seen:
            continue
        seen.add(conf.log_file)
        problem = _probe_log(conf.log_file, timeout)
        if problem is None:
            raise CheckFailed(f"the audit log {conf.log_file} of the entry for {item.where} did not answer a probe "
                              f"within {timeout:g}s (a hung network filesystem?): every ADD would hang on it")
        if not problem:
            continue
        if any(other.fail_on_log_error for _, other in loaded if other.log_file == conf.log_file):
            raise CheckFailed(f"the audit log of the entry for {item.where} cannot be written ({problem}) and the "
                              "entry has failOnLogError true: every ADD would fail (error 11, audit log unavailable)")
        warnings.append(f"warning: the audit log of the entry for {item.where} cannot be written now ({problem}): "
                        "pods start (the plugin fails open) but their events are not recorded")
    return warnings


def _probe_log(path: str, timeout: float) -> str | None:
    """``_log_problem(path)`` in a child process: None when it did not finish within ``timeout`` (the child
    is killed), so a path that blocks (a hung network mount) costs the check no more than that."""
    _reap()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python-level clean-up, nothing but the probe
        try:
            os.close(read_end)
            os.write(write_end, (_log_problem(path) or "ok").encode("utf-8", "replace")[:4000])
        finally:
            os._exit(0)
    os.close(write_end)
    ready: list[int] = []
    try:
        ready, _, _ = select.select([read_end], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return None
        text = os.read(read_end, 4096).decode("utf-8", "replace")
    finally:
        os.close(read_end)
        if ready:  # it answered: it is exiting now
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        else:
            _UNREAPED.append(pid)
            _reap()
    return "" if text == "ok" else (text or f"{path}: the probe ended without an answer")


_UNREAPED: list[int] = []
"""Probe children killed at the timeout: one stuck in the kernel (a hung mount) dies only when that returns,
so it is reaped by a later probe rather than waited for (``--watch`` runs for months, as PID 1)."""


def _reap() -> None:
    for pid in list(_UNREAPED):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _UNREAPED.remove(pid)


def _log_problem(path: str) -> str:
    """Why the plugin could not append an event to ``path`` now ("" when it could), writing and creating nothing.

    An existing file is opened by the plugin's own sink (``RotatingFile.probe``: the same walk, the same
    refusals of FIFOs and untrusted symlinks), which then creates nothing; a missing one, which the plugin
    creates (with its missing directories) on its first event, needs its nearest existing directory to be
    writable. Either way the filesystem must have room left.
    """
    directory = os.path.dirname(path)
    try:
        exists = os.path.lexists(path) and os.path.isdir(directory)
        if exists:
            RotatingFile(path, 1, 0).probe()
        else:
            while not os.path.lexists(directory):
                directory = os.path.dirname(directory)
            if not os.path.isdir(directory):
                return f"{path}: {directory} is not a directory, so the plugin cannot create the log"
            if not os.access(directory, os.W_OK | os.X_OK):
                reason = "read-only filesystem" if _read_only(directory) else "permission denied"
                return f"{path}: the plugin cannot create it in {directory} ({reason})"
        fs = os.statvfs(directory)
        if (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) == 0:
            return f"{path}: {os.strerror(errno.ENOSPC).lower()} on its filesystem"
    except SinkError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return ""


def _read_only(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _call(executable: str, name: str, what: str, config: dict[str, Any], env: dict[str, str], timeout: float,
          command: str) -> Any:
    """One invocation, as a runtime makes it; its stdout parsed as the one JSON document it must be.

    ``name`` names the plugin in messages, ``what`` the call (e.g. ``<plugin> VERSION``)."""
    try:
        child = subprocess.Popen([executable], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env={**env, "CNI_COMMAND": command}, cwd="/",
                                 start_new_session=True, preexec_fn=_unblock_signals)
    except OSError as exc:
        raise CheckFailed(f"cannot execute {name}: {exc.strerror or exc}{_interpreter_hint(executable, exc)}",
                          call=what) from None
    try:
        out, err = child.communicate(json.dumps(config).encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = child.communicate()
        raise CheckFailed(f"{what} did not answer within {timeout:g}s (killed){_tail(err)}", call=what,
                          timed_out=True, stderr_tail=_tail_text(err)) from None
    if child.returncode != 0:
        status = (f"was killed by signal {-child.returncode}" if child.returncode < 0
                  else f"exited with status {child.returncode}")
        raise CheckFailed(f"{what} {status}{_stdout_error(out)}{_tail(err)}", call=what,
                          exit_status=child.returncode if child.returncode >= 0 else None,
                          signal=-child.returncode if child.returncode < 0 else None, stderr_tail=_tail_text(err))
    try:
        return json.loads(out.decode("utf-8"))
    except ValueError:
        raise CheckFailed(f"{what} did not print one JSON document on stdout (got {out[:200]!r}){_tail(err)}",
                          call=what, exit_status=0, stderr_tail=_tail_text(err)) from None


def _check_log(name: str, log: str, served_by: str | None = None) -> None:
    try:
        with open(log, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    if len(lines) != 1:
        raise CheckFailed(f"{name} ADD succeeded but wrote {len(lines)} event lines to its log, not 1: "
                          "the plugin runs but does not record events")
    try:
        event = json.loads(lines[0])
        command = event["cni"]["command"]
    except (ValueError, KeyError, TypeError):
        raise CheckFailed(f"{name} ADD wrote a log line that is not an event: {lines[0][:200]!r}") from None
    if command != "ADD":
        raise CheckFailed(f"{name} ADD logged an event for {command!r}, not ADD")
    served = event["cni"].get("served_by") if isinstance(event["cni"], dict) else None
    if served_by is not None and served != served_by:
        how = f"by the {served} ({event['cni'].get('fallback_reason', '')})" if served else "without the shim's request"
        raise CheckFailed(f"{name} ADD was served {how}, not by the {served_by}")


def check_agent(executable: str, cni_path: str, state_dir: str, timeout: float = DEFAULT_CHECK_TIMEOUT) -> None:
    """Thick mode: ADD through the installed shim, answered by the agent (CheckFailed if the shim had to fall
    back, or the answer is wrong). A plain entry of the latest version, recorded in the scratch directory; no
    real log file is probed (the pass's own check did that for the chains' entries)."""
    entry = ChainEntry("(the agent's check)", AGENT_CHECK_NETWORK, LATEST_VERSION, {"type": "logger"})
    _run(executable, [entry], cni_path, state_dir, timeout, executable, "agent")


def _unblock_signals() -> None:
    """In the child: a runtime's plugin starts with no signal blocked (``--watch`` blocks SIGTERM/SIGINT)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _interpreter_hint(executable: str, exc: OSError) -> str:
    """Why an existing file with a ``#!`` line does not execute: the interpreter the kernel reads from that line
    (up to the first blank, within the first ``launcher.shebang_limit()`` bytes) is missing or not the one
    meant. A virtualenv is blamed only when no interpreter the line could mean exists."""
    if not os.path.exists(executable):
        return ""
    try:
        with open(executable, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return ""
    if not first.startswith(b"#!"):
        return ""
    line = first[2:].rstrip(b"\n").strip(b" \t")
    words = line.split()
    interpreter = words[0].decode("utf-8", "replace") if words else "?"
    if exc.errno == errno.ENOEXEC and len(first) > shebang_limit():
        return (f" (its #! line is {len(first)} bytes, longer than the kernel reads: write the launcher again with "
                "this version, which gives such paths a /bin/sh preamble)")
    if os.path.exists(interpreter):
        return f" (its interpreter is {interpreter})"
    # The kernel ends the interpreter at the first blank: is the whole path (blanks and all) an interpreter?
    text = line.decode("utf-8", "replace")
    meant = next((text[:i] for i in range(len(text), 0, -1)
                  if (i == len(text) or text[i] in " \t") and text[:i] != interpreter and os.path.isfile(text[:i])),
                 None)
    if meant is not None:
        return (f" (its #! line names the interpreter {meant}, which exists, but the kernel ends the interpreter at "
                f"the first blank and looks for {interpreter}: write the launcher again with this version, which "
                "gives such paths a /bin/sh preamble)")
    return f" (its interpreter {interpreter} does not exist: was the bundle or virtualenv removed?)"


def _stdout_error(out: bytes) -> str:
    """The CNI error object the plugin printed, if it printed one."""
    try:
        doc = json.loads(out.decode("utf-8"))
    except ValueError:
        return ""
    if isinstance(doc, dict) and "code" in doc:
        return f"; error {doc.get('code')}: {doc.get('msg')} {doc.get('details') or ''}".rstrip()
    return ""


def _tail_text(err: bytes) -> str:
    """The end of a call's stderr, at most ``STDERR_TAIL_CHARS`` (its lines kept)."""
    text = err.decode("utf-8", "replace").strip()
    return "..." + text[-STDERR_TAIL_CHARS:] if len(text) > STDERR_TAIL_CHARS else text


def _tail(err: bytes) -> str:
    text = _tail_text(err)
    return "; its stderr ends: " + text.replace("\n", " | ") if text else ""


def _short(doc: Any) -> str:
    text = json.dumps(doc)
    return text if len(text) <= 200 else text[:200] + "..."
