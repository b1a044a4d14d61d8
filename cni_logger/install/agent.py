"""``install --watch --agent``: the resident agent that thick mode's shim hands each invocation to.

The runtime executes the shim (``shim/cni-logger-shim.c``) as ``logger``; the shim connects to this agent's
unix socket and sends the invocation (its request id, pid, parent pid, node name, environment and stdin); the
agent runs it with the plugin code already loaded (``thick.answer``: ``skel.run`` and ``LoggerPlugin``, the
same code as a plugin process) and sends back the exit status, stdout and stderr, which the shim relays. A
pod's ADD then costs the shim's exec and a few hundred microseconds of Python, instead of an interpreter's
start-up and the imports. The wire format is in ``shim/PROTOCOL.md``.

Who may connect: the socket is ``0600`` in a ``0700`` directory, both root's, and each peer's credentials
(``SO_PEERCRED``) are checked: a peer whose uid is not 0 (a rootless runtime's plugin: its uid as this
namespace sees it) is refused with a reason, and its shim runs the plugin in-process instead.

Requests are served concurrently by worker threads, started as needed and kept waiting for the next one (a
thread's start costs more than the plugin's work); at most ``MAX_CONCURRENT``, beyond which the shim is told
``busy`` and falls back. The agent never makes a pod fail: whatever goes wrong here, the shim runs the
in-process plugin with the same input (``thick``, which also says how an event is kept from being recorded
twice). A request whose shim has gone (it gave up waiting and is falling back) is answered by nobody and not
recorded by the agent.

The listening socket is made under a temporary name and renamed into place, so a shim never meets a
half-made one; a stale socket file (a killed agent's) is replaced. Another live agent on the same path is a
refusal: two watchers must not serve (and count) the same node.
"""

from __future__ import annotations

import errno
import os
import queue
import select
import socket
import stat
import struct
import threading
import traceback
from collections.abc import Callable
from typing import Any

from cni_logger import thick
from cni_logger.install import Refusal
from cni_logger.install.runtimes import DEFAULT_AGENT_SOCKET

MAGIC = b"CNIL1"
FIELDS = 6
MAX_FIELD_BYTES = 64 * 1024 * 1024
"""A request field longer than this is not a shim's (stdin itself stops at 16 MiB + 1): the connection is dropped."""
REQUEST_TIMEOUT_SECONDS = 10.0
"""How long a connected shim may take to send its whole request (it has read stdin before connecting)."""
MAX_CONCURRENT = 256
MAX_SOCKET_PATH = 107
"""``sun_path`` holds 108 bytes, its NUL included."""
GREETING_READY = b"R"
GREETING_REFUSED = b"N"
REPLY = b"A"
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_U32 = struct.Struct("<I")


class AgentRefusal(Refusal):
    """The agent cannot serve on this path (another live agent, a directory it must not use)."""


class Counts:
    """Requests met, by what became of them (for metrics and the heartbeat): ``served``, ``refused`` (not root),
    ``busy``, ``abandoned`` (the shim left before the reply), ``failed`` (a malformed request, or an error here)."""

    KINDS = ("served", "refused", "busy", "abandoned", "failed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.KINDS, 0)

    def add(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def _prepare_directory(directory: str) -> None:
    """The socket's directory: created 0700, or an existing one made 0700 if root owns it; refused otherwise."""
    os.makedirs(os.path.dirname(directory) or "/", mode=0o755, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise AgentRefusal(f"{directory} is not a directory: the agent's socket cannot be made there")
    if st.st_uid != 0:
        raise AgentRefusal(f"{directory} belongs to uid {st.st_uid}, not root: the agent's socket must be in a "
                           "root-only directory (remove it, or choose another --agent-socket)")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def _live(path: str) -> bool:
    """Whether an agent already listens on ``path`` (a stale socket file refuses the connection)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


class Agent:
    """The socket server; ``start`` once (from the watcher, signals already blocked), ``stop`` on the way out."""

    def __init__(self, path: str = DEFAULT_AGENT_SOCKET, on_error: Callable[[str], None] | None = None) -> None:
        self.path = os.path.abspath(path)
        self.counts = Counts()
        self.on_error = on_error
        self._server: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._queue: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0      # workers waiting on the queue, not yet promised a connection
        self._workers = 0

    @property
    def running(self) -> bool:
        return self._server is not None

    def state(self) -> dict[str, Any]:
        """For the heartbeat: whether it serves now, and its requests since start by what became of them."""
        return {"serving": self.running, **self.counts.snapshot()}

    def start(self) -> None:
        """Listen on ``path`` (raises AgentRefusal or OSError when it cannot) and serve from a daemon thread."""
        from cni_logger import diagnostics, events, filesink, plugin, redact, results, settings  # noqa: F401
        # ^ loaded now, as selfcheck is: the bundle on disk may be damaged later, the agent must not be

        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise AgentRefusal(f"the agent's socket path is longer than the {MAX_SOCKET_PATH} bytes a unix socket "
                               f"can have: {self.path} (choose a shorter --agent-socket)")
        directory = os.path.dirname(self.path)
        _prepare_directory(directory)
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise AgentRefusal(f"{self.path} exists and is not a socket: remove it or choose another "
                                   "--agent-socket")
            if _live(self.path):
                raise AgentRefusal(f"another agent already serves {self.path} (a second watcher on this node?)")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        temporary = os.path.join(directory, f".{os.getpid():x}")  # no longer than the final name's "agent.sock"
        try:
            if os.path.lexists(temporary):
                os.unlink(temporary)
            old_umask = os.umask(0o177)  # the socket is made 0600: only root may connect
            try:
                server.bind(temporary)
            finally:
                os.umask(old_umask)
            server.listen(MAX_CONCURRENT)
            os.rename(temporary, self.path)  # replaces a stale socket file atomically
        except BaseException:
            server.close()
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        st = os.lstat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), name="agent", daemon=True).start()

    def stop(self) -> None:
        """Stop accepting and remove the socket file if it is still ours (shims then fall back at once)."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        try:
            server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        server.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError as exc:
                if self._server is not server:
                    return  # stopped
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    threading.Event().wait(0.05)  # shims fall back meanwhile
                continue
            with self._lock:
                if self._idle:
                    self._idle -= 1
                elif self._workers < MAX_CONCURRENT:
                    self._workers += 1
                    threading.Thread(target=self._work, name="agent-worker", daemon=True).start()
                else:
                    self._refuse(conn, "busy", b"busy: too many requests in flight")
                    continue
            self._queue.put(conn)

    def _work(self) -> None:
        """A worker: serve connections from the queue, one at a time, for as long as the process lives."""
        while True:
            conn = self._queue.get()
            self._serve(conn)
            with self._lock:
                self._idle += 1

    def _refuse(self, conn: socket.socket, kind: str, why: bytes) -> None:
        self.counts.add(kind)
        try:
            conn.sendall(GREETING_REFUSED + why)
        except OSError:
            pass
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._serve_one(conn)
        except Exception:  # a bug here: the shim falls back; say it once on the watcher's log
            self.counts.add("failed")
            if self.on_error is not None:
                self.on_error("agent: unexpected error serving a request (the shim ran the plugin in-process):\n"
                              + traceback.format_exc().rstrip())
        finally:
            conn.close()

    def _serve_one(self, conn: socket.socket) -> None:
        pid, uid, _ = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        if uid != 0:
            self._refuse(conn, "refused", f"refused: peer uid {uid} (pid {pid}) is not root".encode())
            return
        conn.sendall(GREETING_READY)
        conn.settimeout(REQUEST_TIMEOUT_SECONDS)
        fields = _read_request(conn)
        if fields is None:
            self.counts.add("failed")
            return
        event_id, shim_pid, parent_pid, node, environ_block, stdin = fields
        try:
            environ = _environ(environ_block)
            caller = thick.Caller(event_id.decode("ascii"), int(shim_pid), int(parent_pid),
                                  node.decode("utf-8", "surrogateescape"), thick.SERVED_BY_AGENT)
        except (UnicodeDecodeError, ValueError):
            self.counts.add("failed")
            return
        if not thick.valid_event_id(caller.event_id):
            self.counts.add("failed")
            return
        status, out, err = thick.answer(environ, stdin, caller, lambda: _waiting(conn))
        conn.settimeout(REQUEST_TIMEOUT_SECONDS)  # a shim that stops reading must not hold this thread forever
        reply = b"".join((REPLY, _U32.pack(status & 0xFFFFFFFF), _U32.pack(len(out)), out, _U32.pack(len(err)), err))
        try:
            if not _waiting(conn):
                raise BrokenPipeError("the shim closed the connection")
            conn.sendall(reply)
        except OSError:
            self.counts.add("abandoned")
            if self.on_error is not None:
                self.on_error(f"agent: the shim of request {caller.event_id} (pid {caller.pid}) left before the answer "
                              "and ran the plugin in-process; the agent did not record it")
            return
        self.counts.add("served")


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        try:
            got = conn.recv_into(view)
        except OSError:
            return None
        if not got:
            return None
        view = view[got:]
    return bytes(buffer)


def _read_request(conn: socket.socket) -> list[bytes] | None:
    """The request's six fields, or None when it is not a whole, well-formed shim request."""
    if _recv_exactly(conn, len(MAGIC)) != MAGIC:
        return None
    fields: list[bytes] = []
    for _ in range(FIELDS):
        head = _recv_exactly(conn, _U32.size)
        if head is None:
            return None
        (size,) = _U32.unpack(head)
        if size > MAX_FIELD_BYTES:
            return None
        body = _recv_exactly(conn, size) if size else b""
        if body is None:
            return None
        fields.append(body)
    return fields


def _environ(block: bytes) -> dict[str, str]:
    """``KEY=VALUE\\0...`` as the runtime gave it to the shim, decoded as ``os.environ`` decodes its own."""
    environ: dict[str, str] = {}
    for entry in block.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            environ.setdefault(os.fsdecode(key), os.fsdecode(value))  # the first of a repeated name, as os.environ
    return environ


def _waiting(conn: socket.socket) -> bool:
    """Whether the shim still waits for the reply. It sends nothing after its request, and closes the connection
    when it gives up and falls back: anything to read (its end of file) or a hang-up means it has gone. (A poll,
    not a peeking ``recv``: on a socket with a timeout, Python waits for data before a ``recv`` even when told not
    to.)"""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLRDHUP)
    return not poller.poll(0)
