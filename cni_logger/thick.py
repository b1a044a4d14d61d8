"""Thick mode: the same plugin, run for the shim by a resident agent or, failing that, in-process.

In thick mode the runtime executes a small C shim (``shim/cni-logger-shim.c``) as ``logger``. The shim names
the request (a random version-4 UUID), reads stdin, and hands the environment and stdin to the agent that
``install --watch --agent`` runs (``install.agent``: a root-only unix socket), which answers through
``answer`` below; the shim relays the answer's stdout, stderr and exit status. When the agent is absent,
refuses, is slow to greet, or dies or stalls mid-request, the shim executes the interpreter with ``main``
below as the program instead, with the same environment and stdin. Either way the invocation runs
``skel.run`` with ``plugin.LoggerPlugin``: one implementation of the protocol and of the event. What differs is
only where it runs, which the event says (``cni.served_by``: ``agent`` or ``fallback``, and
``cni.fallback_reason``), and whose process it names: the shim's pid, parent pid and node name, as the
in-process plugin (whose process the runtime started) would record its own.

**Recorded once.** The request's name becomes the event's ``event.id`` on both paths. A request the agent may
already have recorded (the shim gave up waiting for its reply, or it died before replying: ``maybe``) is told
apart by that id: the fallback looks for it at the end of the live log file before appending
(``already_recorded``), and an agent whose shim has gone (closed the connection: it is falling back) does not
append at all (``install.agent``). The only window left — the agent appending after the fallback looked, a
stall of the agent of more than the fallback's whole start-up — leaves two lines with the same ``event.id``,
which every reader of the trail counts once (the audit de-duplicates by id, as ``metrics`` does).
"""

from __future__ import annotations

import os

from cni_logger import skel

TYPE_CHECKING = False  # typing costs start-up time on the fallback path
if TYPE_CHECKING:
    from collections.abc import Callable

SERVED_BY_AGENT = "agent"
SERVED_BY_FALLBACK = "fallback"
FALLBACK_REASONS = frozenset({"off", "stdin", "absent", "not-listening", "denied", "busy", "connect-error", "refused",
                              "slow", "closed", "timeout", "died", "garbled"})
"""Why the shim ran the in-process plugin (``shim/cni-logger-shim.c``): ``off`` (``CNI_LOGGER_SHIM=inprocess``,
the install self-check's way to check this path), ``stdin`` (a terminal, or no end of input soon enough: the
plugin reads the rest itself), no agent (``absent``, ``not-listening``: a stale socket file, ``denied``, ``busy``,
``connect-error``), the agent said no (``refused``), did not greet in time (``slow``) or hung up (``closed``),
and, once the whole request was sent, no complete reply (``timeout``, ``died``, ``garbled``)."""
TAIL_BYTES = 256 * 1024
"""How much of the live log file's end ``already_recorded`` reads: far more than the agent writes in the few
seconds the shim waits for it (the request's event is among the last lines when it was recorded at all)."""


class Caller:
    """The process the runtime started for an invocation served by thick mode, and how it was served."""

    __slots__ = ("event_id", "node", "parent_pid", "pid", "reason", "served_by")

    def __init__(self, event_id: str, pid: int, parent_pid: int, node: str, served_by: str, reason: str = "") -> None:
        self.event_id, self.pid, self.parent_pid, self.node = event_id, pid, parent_pid, node
        self.served_by, self.reason = served_by, reason


def valid_event_id(text: str) -> bool:
    """Whether ``text`` is a lowercase version-4 UUID, as the shim makes them (anything else is not trusted)."""
    parts = text.split("-")
    return ([len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdef" for c in "".join(parts))
            and parts[2][0] == "4" and parts[3][0] in "89ab")


def already_recorded(log_file: str, event_id: str) -> bool:
    """Whether the live log file's last ``TAIL_BYTES`` hold an event with this ``event.id``."""
    needle = f'"id":"{event_id}"'.encode("ascii")
    try:
        fd = os.open(log_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        return needle in os.pread(fd, TAIL_BYTES, max(size - TAIL_BYTES, 0))
    except OSError:
        return False
    finally:
        os.close(fd)


def answer(environ: dict[str, str], stdin: bytes, caller: Caller,
           still_wanted: Callable[[], bool]) -> tuple[int, bytes, bytes]:
    """Run one invocation for the shim, in this (the agent's) process: (exit status, stdout, stderr).

    stdout and this thread's stderr (``skel.streams``) are memory files, and stdin the bytes the shim read
    followed by an end of input, so that ``skel.run`` reads and writes exactly as in a plugin process of its own;
    ``still_wanted`` is asked before the event is appended."""
    from cni_logger.plugin import LoggerPlugin

    if "CNI_COMMAND" not in environ:
        return 0, b"", banner()
    fds = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), os.memfd_create("cni-logger-stdout", os.MFD_CLOEXEC),
           os.memfd_create("cni-logger-stderr", os.MFD_CLOEXEC)]
    end_of_input, stdout_fd, stderr_fd = fds
    try:
        skel.streams.stderr = stderr_fd
        try:
            # stdin is all read already: given as the prefix, then an empty file's end of input
            status = skel.run(LoggerPlugin(environ, may_record=lambda _: still_wanted()), environ, end_of_input,
                              stdout_fd, caller=caller, stdin_prefix=stdin)
        finally:
            skel.streams.stderr = 2
        return status, _contents(stdout_fd), _contents(stderr_fd)
    finally:
        for fd in fds:
            os.close(fd)


def banner() -> bytes:
    """What the plugin prints when run without ``CNI_COMMAND`` (``cli.main``): on stderr, exit status 0."""
    from cni_logger.cli import SUMMARY
    from cni_logger.plugin import LoggerPlugin

    return (skel.about(LoggerPlugin()) + "\n" + SUMMARY).encode("utf-8")


def _contents(fd: int) -> bytes:
    size = os.lseek(fd, 0, os.SEEK_END)
    return os.pread(fd, size, 0) if size else b""


def main() -> None:
    """The shim's in-process path, as a process (``python -IS -c <program> ID REASON MAYBE PREFIX``): ``cli.main``'s
    plugin path without ``cli`` itself (the shim has already spent its own exec on this path)."""
    import gc
    import sys

    gc.disable()  # one short-lived invocation allocates little; collection only costs time
    from cni_logger import deferred

    deferred.install()
    skel.main_exit(fallback(sys.argv[1:]))


def fallback(argv: list[str]) -> int:
    """The in-process plugin as the shim runs it: ``python -IS -c <program> ID REASON MAYBE PREFIX``.

    ``ID``: the request's name (the event's id); ``REASON``: why the agent did not serve it; ``MAYBE``: ``1``
    when the agent may have recorded it already; ``PREFIX``: ``-``, or a descriptor holding the bytes of stdin
    the shim read before handing stdin over. Arguments that are not the shim's make this the plain plugin."""
    from cni_logger import plugin

    if "CNI_COMMAND" not in os.environ:
        skel.write_stderr(banner())
        return 0
    if len(argv) != 4 or not valid_event_id(argv[0]) or argv[1] not in FALLBACK_REASONS or argv[2] not in ("0", "1"):
        return plugin.run()
    event_id, reason, maybe, prefix_arg = argv
    prefix = b""
    if prefix_arg != "-":
        prefix = _read_prefix(prefix_arg)
    caller = Caller(event_id, os.getpid(), os.getppid(), os.uname().nodename, SERVED_BY_FALLBACK, reason)
    may_record = (lambda log_file: not already_recorded(log_file, event_id)) if maybe == "1" else None
    return skel.run(plugin.LoggerPlugin(may_record=may_record), caller=caller, stdin_prefix=prefix)


def _read_prefix(fd_text: str) -> bytes:
    """The stdin bytes the shim read, from the descriptor it names (closed afterwards)."""
    try:
        fd = int(fd_text)
    except ValueError:
        return b""
    chunks = []
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except OSError:
        pass
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return b"".join(chunks)
