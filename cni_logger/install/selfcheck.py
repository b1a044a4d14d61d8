"""Running the plugin exactly as a runtime would, before the logger is put into a chain (and, under
``--watch``, every interval while it is there).

A logger entry whose executable does not run fails every ADD of the network: no pod on the node starts.
The causes are ordinary — the bundle folder deleted by a clean-up, a damaged or half-copied interpreter,
a shared library or a standard-library module missing, a bin dir mounted ``noexec`` — and none of them
shows until a runtime executes the file. So the check executes the launcher file itself (never the
Python module in-process: that would prove only the installer's own interpreter), in a new session,
with a clean environment as a runtime passes it, and asks it what a runtime asks:

- ``VERSION`` with the network's ``cniVersion``: exit 0 and one JSON document on stdout whose
  ``supportedVersions`` lists that version;
- ``ADD`` of a minimal logger config (the entry's own options, its ``logFile`` moved into a private
  temporary directory, no ``prevResult``, a dummy container id and netns path): exit 0, one JSON result
  on stdout, and exactly one event line in the temporary log (a plugin that answers but cannot log is
  not the audit trail the operator installed).

Each call has a timeout (a plugin that hangs stalls pod creation as surely as one that fails); on
timeout the whole process group is killed. Nothing is written outside the temporary directory, which is
removed afterwards.

This module imports everything it needs when it is loaded, because ``--watch`` loads it at start-up
from the very bundle whose damage it has to detect later (a module imported lazily could be gone by then).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Any

from cni_logger.install import Refusal
from cni_logger.install.runtimes import DEFAULT_CHECK_TIMEOUT

CONTAINER_ID = "cni-logger-self-check"
IFNAME = "eth0"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STDERR_TAIL_CHARS = 800


class CheckFailed(Refusal):
    """The plugin did not execute or answer as a runtime needs it to; the message says what happened."""


def _scratch(state_dir: str) -> str:
    """A private temporary directory: the system's, or else one in the state dir (the DaemonSet's
    container sees the host's root read-only, so there only the state dir is writable)."""
    try:
        return tempfile.mkdtemp(prefix="cni-logger-check-")
    except OSError:
        pass
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        return tempfile.mkdtemp(prefix=".self-check-", dir=state_dir)
    except OSError as exc:
        raise Refusal(f"cannot create a temporary directory for the self-check, neither the system's "
                      f"(TMPDIR, /tmp) nor in {state_dir}: {exc}") from None


def check(executable: str, cni_version: str, network: str, entry: dict[str, Any], cni_path: str,
          state_dir: str, timeout: float = DEFAULT_CHECK_TIMEOUT, label: str | None = None) -> None:
    """Run VERSION and ADD through ``executable``; raise CheckFailed saying what failed, else return.

    ``label`` names the plugin in messages (default: ``executable``). A Refusal that is not a CheckFailed
    means the check could not be made at all.
    """
    name = label or executable
    work = _scratch(state_dir)
    try:
        env = {"PATH": CLEAN_PATH, "CNI_CONTAINERID": CONTAINER_ID, "CNI_NETNS": os.path.join(work, "netns"),
               "CNI_IFNAME": IFNAME, "CNI_PATH": cni_path, "CNI_ARGS": ""}
        answer = _call(executable, name, "VERSION", {"cniVersion": cni_version}, env, timeout)
        supported = answer.get("supportedVersions") if isinstance(answer, dict) else None
        if not isinstance(supported, list) or cni_version not in supported:
            raise CheckFailed(f"{name} VERSION answered {_short(answer)}, which does not list the "
                              f"network's cniVersion {cni_version!r}")
        log = os.path.join(work, "check.log")
        config = {"cniVersion": cni_version, "name": network, **entry, "logFile": log}
        result = _call(executable, name, "ADD", config, env, timeout)
        if not isinstance(result, dict) or result.get("cniVersion") != cni_version:
            raise CheckFailed(f"{name} ADD answered {_short(result)}, not a {cni_version} result")
        _check_log(name, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _call(executable: str, name: str, command: str, config: dict[str, Any], env: dict[str, str],
          timeout: float) -> Any:
    """One invocation, as a runtime makes it; its stdout parsed as the one JSON document it must be."""
    what = f"{name} {command}"
    try:
        child = subprocess.Popen([executable], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env={**env, "CNI_COMMAND": command}, cwd="/",
                                 start_new_session=True, preexec_fn=_unblock_signals)
    except OSError as exc:
        raise CheckFailed(f"cannot execute {name}: {exc.strerror or exc}{_interpreter_hint(executable, exc)}"
                          ) from None
    try:
        out, err = child.communicate(json.dumps(config).encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = child.communicate()
        raise CheckFailed(f"{what} did not answer within {timeout:g}s (killed){_tail(err)}") from None
    if child.returncode != 0:
        status = (f"was killed by signal {-child.returncode}" if child.returncode < 0
                  else f"exited with status {child.returncode}")
        raise CheckFailed(f"{what} {status}{_stdout_error(out)}{_tail(err)}")
    try:
        return json.loads(out.decode("utf-8"))
    except ValueError:
        raise CheckFailed(f"{what} did not print one JSON document on stdout (got {out[:200]!r}){_tail(err)}"
                          ) from None


def _check_log(name: str, log: str) -> None:
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


def _unblock_signals() -> None:
    """In the child: a runtime's plugin starts with no signal blocked (``--watch`` blocks SIGTERM/SIGINT)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _interpreter_hint(executable: str, exc: OSError) -> str:
    """For ENOENT on an existing file: the interpreter its ``#!`` line names is what is missing."""
    if not os.path.exists(executable):
        return ""
    try:
        with open(executable, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return ""
    if not first.startswith(b"#!"):
        return ""
    interpreter = first[2:].split()[0].decode("utf-8", "replace") if first[2:].split() else "?"
    if not os.path.exists(interpreter):
        return f" (its interpreter {interpreter} does not exist: was the bundle or virtualenv removed?)"
    return f" (its interpreter is {interpreter})"


def _stdout_error(out: bytes) -> str:
    """The CNI error object the plugin printed, if it printed one."""
    try:
        doc = json.loads(out.decode("utf-8"))
    except ValueError:
        return ""
    if isinstance(doc, dict) and "code" in doc:
        return f"; error {doc.get('code')}: {doc.get('msg')} {doc.get('details') or ''}".rstrip()
    return ""


def _tail(err: bytes) -> str:
    text = err.decode("utf-8", "replace").strip()
    if not text:
        return ""
    if len(text) > STDERR_TAIL_CHARS:
        text = "..." + text[-STDERR_TAIL_CHARS:]
    return "; its stderr ends: " + text.replace("\n", " | ")


def _short(doc: Any) -> str:
    text = json.dumps(doc)
    return text if len(text) <= 200 else text[:200] + "..."
